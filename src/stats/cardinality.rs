//! Bounded cardinality: what keeps a family's series few whatever the
//! server holds. Everything left out is summed into one series whose
//! labels are all [`OTHER`].
//!
//! - [`TopN`]: membership with hysteresis (statements, tables): each cycle
//!   the N highest-scoring keys are (re)admitted; a member that falls out
//!   of the top N stays for `keep` more cycles; the member count is capped
//!   at `2·N` (the members longest out of the top go first), so the set
//!   does not churn every cycle and stays bounded.
//! - [`fold_rare`]: the largest groups of one reading, the rest summed
//!   (connections by application).

use std::collections::HashMap;
use std::hash::Hash;

/// The label value of the series that sums what is not published on its
/// own.
pub const OTHER: &str = "other";

/// Keeps the `max` largest groups of `[label; N]` values (ties broken by
/// labels, so the choice is stable) and sums the rest into one group per
/// value of the label at `keep`, the other labels [`OTHER`]. The total is
/// preserved.
pub fn fold_rare<const N: usize>(
    mut groups: Vec<([String; N], f64)>,
    max: usize,
    keep: usize,
) -> Vec<([String; N], f64)> {
    if groups.len() <= max {
        return groups;
    }
    groups.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest = groups.split_off(max.saturating_sub(1));
    let mut folded: std::collections::BTreeMap<String, f64> = Default::default();
    for (labels, n) in rest {
        *folded.entry(labels[keep].clone()).or_default() += n;
    }
    groups.extend(folded.into_iter().map(|(kept, n)| {
        let mut labels: [String; N] = std::array::from_fn(|_| OTHER.to_string());
        labels[keep] = kept;
        (labels, n)
    }));
    groups
}

/// Membership state.
#[derive(Debug)]
pub struct TopN<K> {
    top: usize,
    keep: u64,
    cycle: u64,
    members: HashMap<K, u64>,
}

impl<K: Hash + Eq + Clone + Ord> TopN<K> {
    /// Keeps the `top` best keys, each for `keep` cycles after it last was
    /// among them.
    pub fn new(top: usize, keep: u64) -> TopN<K> {
        TopN {
            top,
            keep,
            cycle: 0,
            members: HashMap::new(),
        }
    }

    /// The cap on members.
    pub fn capacity(&self) -> usize {
        2 * self.top
    }

    /// Starts a new cycle with these scores; only positive scores qualify.
    pub fn update(&mut self, scores: impl IntoIterator<Item = (K, f64)>) {
        self.cycle += 1;
        let mut ranked: Vec<(K, f64)> = scores.into_iter().filter(|(_, s)| *s > 0.0).collect();
        // Best first; ties by key so that the choice is stable.
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (key, _) in ranked.into_iter().take(self.top) {
            self.members.insert(key, self.cycle);
        }
        let cycle = self.cycle;
        let keep = self.keep;
        self.members.retain(|_, last| cycle - *last <= keep);
        if self.members.len() > self.capacity() {
            let mut by_age: Vec<(u64, K)> = self
                .members
                .iter()
                .map(|(k, last)| (*last, k.clone()))
                .collect();
            by_age.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            let excess = self.members.len() - self.capacity();
            for (_, key) in by_age.into_iter().take(excess) {
                self.members.remove(&key);
            }
        }
    }

    /// Whether `key` is a member.
    pub fn contains(&self, key: &K) -> bool {
        self.members.contains_key(key)
    }

    /// Number of members.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(app: &str, state: &str, n: f64) -> ([String; 4], f64) {
        (["db".into(), "u".into(), app.into(), state.into()], n)
    }

    #[test]
    fn rare_groups_fold_into_other_per_state_and_keep_the_total() {
        let groups = vec![
            group("big", "active", 10.0),
            group("a1", "idle", 1.0),
            group("a2", "idle", 2.0),
            group("a3", "active", 1.0),
        ];
        let folded = fold_rare(groups, 2, 3);
        let total: f64 = folded.iter().map(|g| g.1).sum();
        assert_eq!(total, 14.0);
        assert_eq!(folded[0], group("big", "active", 10.0));
        let other: Vec<_> = folded
            .iter()
            .filter(|g| g.0[0] == OTHER)
            .map(|g| (g.0[3].as_str(), g.1))
            .collect();
        assert_eq!(other, [("active", 1.0), ("idle", 3.0)]);
    }

    #[test]
    fn few_groups_are_left_alone() {
        let groups = vec![group("a", "idle", 1.0)];
        assert_eq!(fold_rare(groups.clone(), 2, 3), groups);
    }

    #[test]
    fn members_stay_for_keep_cycles_after_leaving_the_top() {
        let mut t = TopN::new(2, 2);
        // (scores this cycle, expected members after it)
        type Cycle<'a> = (&'a [(&'a str, f64)], &'a [&'a str]);
        let cycles: [Cycle; 6] = [
            (&[("a", 9.0), ("b", 5.0), ("c", 1.0)], &["a", "b"]),
            (&[("a", 9.0), ("c", 6.0), ("b", 1.0)], &["a", "b", "c"]), // b out of top, kept
            (&[("a", 9.0), ("c", 6.0), ("b", 1.0)], &["a", "b", "c"]),
            (&[("a", 9.0), ("c", 6.0), ("b", 1.0)], &["a", "c"]), // b's 2 cycles are up
            (&[("b", 3.0), ("d", 0.0)], &["a", "b", "c"]),        // zero scores never qualify
            (&[], &["a", "b", "c"]),
        ];
        for (i, (scores, want)) in cycles.iter().enumerate() {
            t.update(scores.iter().map(|(k, s)| (k.to_string(), *s)));
            let mut got: Vec<String> = t.members.keys().cloned().collect();
            got.sort();
            assert_eq!(got, *want, "cycle {i}");
        }
    }

    #[test]
    fn churn_never_exceeds_twice_the_top() {
        let mut t = TopN::new(10, 100);
        for cycle in 0..50u32 {
            // A completely new top 10 every cycle.
            t.update((0..10).map(|i| (cycle * 10 + i, 1.0 + f64::from(i))));
            assert!(t.len() <= 20, "cycle {cycle}: {}", t.len());
        }
        // The newest ten are certainly kept.
        assert!((490..500).all(|k| t.contains(&k)));
    }
}
