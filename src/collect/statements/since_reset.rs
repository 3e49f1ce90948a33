//! Statements since the last statistics reset: what `pgvigil once` shows
//! without `--interval` and the `/` page beside the last interval.
//!
//! pg_stat_statements keeps per entry the calls, total time, standard
//! deviation, min and max since the entry last started counting, which are
//! exactly the moments the interval estimator takes; so the cumulative
//! percentiles come from the same [`estimate`] as the interval ones, and
//! the instance-wide ones from the same mixture. Pure: the collector hands
//! in its merged cycle.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::report::{SINCE_RESET_TOP, SinceReset};
use super::texts::TextInfo;
use super::{Cycle, Merged, StmtKey, instance_summary, summary};
use crate::snapshot::unix_now;
use crate::stats::latency::{Mixture, Model, estimate};

/// Candidates for the since-reset list, by cumulative execution time,
/// largest first. pgvigil's own statements are only known after their
/// texts are, so this keeps a margin for them to be dropped later.
pub(super) fn leaders(merged: &FxHashMap<StmtKey, Merged>) -> Vec<StmtKey> {
    let mut all: Vec<(StmtKey, f64)> = merged
        .iter()
        .filter_map(|(k, m)| m.since_reset.map(|iv| (*k, iv.moments.total)))
        .filter(|(_, total)| *total > 0.0)
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all.into_iter()
        .take(SINCE_RESET_TOP * 5)
        .map(|(k, _)| k)
        .collect()
}

/// The since-reset report of one cycle. `text` gives a statement's text
/// when known; `stats_reset` is pg_stat_statements_info's.
pub(super) fn report(
    cycle: &Cycle,
    text: impl Fn(&StmtKey) -> Option<TextInfo>,
    dbs: &HashMap<u32, String>,
    roles: &HashMap<u32, String>,
    stats_reset: Option<f64>,
    buckets: &Arc<[f64]>,
) -> SinceReset {
    let mut instance = Mixture::new(buckets.clone());
    for m in cycle.merged.values().filter(|m| !m.own) {
        if let Some(iv) = &m.since_reset_toplevel
            && let Some(dist) = estimate(&iv.moments, Model::Auto)
        {
            instance.add(iv.moments.calls, dist, &dist.cdf_at(buckets));
        }
    }
    let name = |map: &HashMap<u32, String>, oid: u32| {
        map.get(&oid).cloned().unwrap_or_else(|| oid.to_string())
    };
    let statements = cycle
        .by_total
        .iter()
        .filter_map(|key| {
            let m = &cycle.merged[key];
            if m.own {
                return None;
            }
            let iv = m.since_reset.as_ref()?;
            let dist = estimate(&iv.moments, Model::Auto)?;
            let text = text(key).unwrap_or_else(|| TextInfo::from_text(key.2, None));
            let labels = [
                name(dbs, key.0),
                name(roles, key.1),
                key.2.to_string(),
                text.fingerprint.clone(),
            ];
            Some(summary(&labels, &text, iv, &dist))
        })
        .take(SINCE_RESET_TOP)
        .collect();
    SinceReset {
        stats_reset,
        collected_at: unix_now(),
        instance: instance_summary(&instance),
        statements,
    }
}
