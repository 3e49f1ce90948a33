//! Counters by key with a cap on how many keys there are: label values a
//! log line names (a failed login may name any user) must not grow the
//! number of series without bound.
//!
//! Not for: which keys a collector counts, nor exporting them.

use std::collections::BTreeMap;

/// Counters by key, at most `max` keys; others are counted under `other`.
#[derive(Debug)]
pub struct Capped<K: Ord> {
    values: BTreeMap<K, f64>,
    other: K,
    max: usize,
}

impl<K: Ord + Clone> Capped<K> {
    /// No counts yet; at most `max` keys, then `other`.
    pub fn new(other: K, max: usize) -> Self {
        Capped {
            values: BTreeMap::new(),
            other,
            max,
        }
    }

    /// Counts one under `key`, or under `other` when `key` is new and
    /// there are `max` keys already.
    pub fn add(&mut self, key: K) {
        let key = if self.values.contains_key(&key) || self.values.len() < self.max {
            key
        } else {
            self.other.clone()
        };
        *self.values.entry(key).or_default() += 1.0;
    }

    /// The count under `key`, if any.
    pub fn get(&self, key: &K) -> Option<f64> {
        self.values.get(key).copied()
    }

    /// Every key with its count, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, f64)> {
        self.values.iter().map(|(k, v)| (k, *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_counters_fold_the_rest() {
        let mut c = Capped::new("other".to_string(), 2);
        for k in ["a", "b", "c", "a", "d"] {
            c.add(k.to_string());
        }
        assert_eq!(c.values["a"], 2.0);
        assert_eq!(c.values["b"], 1.0);
        assert_eq!(c.values["other"], 2.0);
        assert_eq!(c.values.len(), 3);
    }
}
