//! Monotonic running totals over PostgreSQL counters that can be reset.
//!
//! PostgreSQL's cumulative statistics go back to zero on `pg_stat_reset()`,
//! a crash, or an entry being evicted and re-created. We publish our own
//! running total instead: it starts at the first raw value seen (so numbers
//! look like PostgreSQL's), then only ever adds the growth between readings.
//! A reading below the previous one is taken as a reset, and the new raw
//! value is the growth since that reset.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug, Clone, Copy)]
struct Entry {
    last_raw: f64,
    total: f64,
    seen: bool,
}

/// Running totals keyed by whatever identifies one raw counter.
#[derive(Debug)]
pub struct Totals<K> {
    entries: HashMap<K, Entry>,
}

impl<K> Default for Totals<K> {
    fn default() -> Self {
        Totals {
            entries: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> Totals<K> {
    /// Feeds one raw reading and returns the monotonic total.
    pub fn observe(&mut self, key: K, raw: f64) -> f64 {
        self.observe_with_growth(key, raw).0
    }

    /// Like [`Totals::observe`], also returning the growth since the
    /// previous reading (0 for a key seen for the first time).
    pub fn observe_with_growth(&mut self, key: K, raw: f64) -> (f64, f64) {
        let raw = if raw.is_finite() && raw > 0.0 {
            raw
        } else {
            0.0
        };
        // A new key starts at its raw value: the delta below is then zero.
        let entry = self.entries.entry(key).or_insert(Entry {
            last_raw: raw,
            total: raw,
            seen: true,
        });
        let growth = delta(entry.last_raw, raw);
        entry.total += growth;
        entry.last_raw = raw;
        entry.seen = true;
        (entry.total, growth)
    }

    /// Forgets keys not observed since the previous sweep (a dropped
    /// database, say), so memory follows what exists.
    pub fn sweep(&mut self) {
        self.entries
            .retain(|_, e| std::mem::replace(&mut e.seen, false));
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Growth between two readings of one counter, treating a decrease as a
/// reset to zero in between.
pub fn delta(previous: f64, current: f64) -> f64 {
    if current >= previous {
        current - previous
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_never_decrease() {
        // (raw reading, expected published total)
        let cases = [
            (100.0, 100.0), // first reading is published as is
            (150.0, 150.0),
            (150.0, 150.0), // no change
            (20.0, 170.0),  // reset: 20 since the reset
            (25.0, 175.0),
            (0.0, 175.0),  // reset to exactly zero
            (-5.0, 175.0), // nonsense is treated as zero
            (10.0, 185.0),
        ];
        let mut t = Totals::default();
        for (raw, want) in cases {
            assert_eq!(t.observe("k", raw), want, "raw {raw}");
        }
    }

    #[test]
    fn sweep_forgets_keys_not_seen_since_the_last_sweep() {
        let mut t = Totals::default();
        t.observe("a", 1.0);
        t.observe("b", 1.0);
        t.sweep();
        t.observe("a", 2.0);
        t.sweep();
        assert_eq!(t.len(), 1);
        // "b" starts over as a new counter.
        assert_eq!(t.observe("b", 7.0), 7.0);
    }

    #[test]
    fn delta_cases() {
        let cases = [
            (1.0, 3.0, 2.0),
            (3.0, 3.0, 0.0),
            (5.0, 2.0, 2.0),
            (0.0, 0.0, 0.0),
        ];
        for (prev, cur, want) in cases {
            assert_eq!(delta(prev, cur), want);
        }
    }
}
