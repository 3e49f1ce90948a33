//! Growth of PostgreSQL's cumulative counters between two readings, for
//! the sums pgvigil makes itself.
//!
//! Counters are published as PostgreSQL reports them: a statistics reset
//! (`pg_stat_reset()`, a crash, an evicted pg_stat_statements entry) shows
//! as a counter going down, which Prometheus' `rate()` and `increase()`
//! read as a reset, and an agent restart changes nothing. pgvigil keeps a
//! synthetic total only where it adds several raw counters into one series
//! of its own (the `"other"` folds of tables and statements): such a total
//! starts at 0 when the agent starts and grows by each member's growth
//! between two readings, which is what this module computes.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug, Clone, Copy)]
struct Entry {
    last_raw: f64,
    seen: bool,
}

/// The last raw reading of each counter, keyed by whatever identifies one.
#[derive(Debug)]
pub struct Growth<K> {
    entries: HashMap<K, Entry>,
}

impl<K> Default for Growth<K> {
    fn default() -> Self {
        Growth {
            entries: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> Growth<K> {
    /// Feeds one raw reading and returns the growth since the previous
    /// reading of the same key: 0 for a key seen for the first time (its
    /// past belongs to no interval the agent saw), the whole reading after
    /// a reset.
    pub fn observe(&mut self, key: K, raw: f64) -> f64 {
        let raw = if raw.is_finite() && raw > 0.0 {
            raw
        } else {
            0.0
        };
        let entry = self.entries.entry(key).or_insert(Entry {
            last_raw: raw,
            seen: true,
        });
        let growth = delta(entry.last_raw, raw);
        entry.last_raw = raw;
        entry.seen = true;
        growth
    }

    /// Forgets keys not observed since the previous sweep (a dropped
    /// table, say), so memory follows what exists.
    pub fn sweep(&mut self) {
        self.entries
            .retain(|_, e| std::mem::replace(&mut e.seen, false));
    }

    /// Number of keys tracked.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
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
    fn growth_between_readings_with_resets() {
        // (raw reading, expected growth)
        let cases = [
            (100.0, 0.0), // first reading: no interval yet
            (150.0, 50.0),
            (150.0, 0.0), // no change
            (20.0, 20.0), // reset: 20 since the reset
            (25.0, 5.0),
            (0.0, 0.0),  // reset to exactly zero
            (-5.0, 0.0), // nonsense is treated as zero
            (10.0, 10.0),
        ];
        let mut g = Growth::default();
        for (raw, want) in cases {
            assert_eq!(g.observe("k", raw), want, "raw {raw}");
        }
    }

    #[test]
    fn sweep_forgets_keys_not_seen_since_the_last_sweep() {
        let mut g = Growth::default();
        g.observe("a", 1.0);
        g.observe("b", 1.0);
        g.sweep();
        g.observe("a", 2.0);
        g.sweep();
        assert_eq!(g.len(), 1);
        // "b" starts over as a new counter: no growth on its first reading.
        assert_eq!(g.observe("b", 7.0), 0.0);
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
