//! Row estimates: where the planner's row count was far from what ran.
//!
//! A misestimate is the root of most bad join orders and methods, so it is
//! reported on the node where it starts; nodes that merely pass their
//! input's count on, and shortfalls a parent caused by stopping early, are
//! not. Needs ANALYZE data; silent without it.

use serde_json::{Map, Value};

use super::plan::{actuals, fmt_num, node_type, num, relation_of};
use super::{Context, Finding, severity_at};

/// An estimate off by 10× is where join orders and methods start to go wrong.
const MISESTIMATE_WARNING_RATIO: f64 = 10.0;
/// Off by 1000×, the planner is effectively blind (stale or missing statistics).
const MISESTIMATE_CRITICAL_RATIO: f64 = 1000.0;
/// Below 100 rows on both sides, even a large ratio changes no plan decision.
const MISESTIMATE_MIN_ROWS: f64 = 100.0;

/// Nodes whose row count is their input's: a misestimate there is inherited from the
/// child, which is already reported.
const PASS_THROUGH: &[&str] = &[
    "Sort",
    "Incremental Sort",
    "Hash",
    "Materialize",
    "Memoize",
    "Gather",
    "Gather Merge",
    "Limit",
];

pub(super) fn row_misestimate(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
    if PASS_THROUGH.contains(&node_type(node)) {
        return None;
    }
    let estimated = num(node, "Plan Rows")?;
    let (actual, _) = actuals(node)?;
    let (high, low) = if actual > estimated {
        (actual, estimated)
    } else {
        (estimated, actual)
    };
    if high < MISESTIMATE_MIN_ROWS || (at.may_stop_early && actual <= estimated) {
        return None;
    }
    let ratio = high / low.max(1.0);
    if ratio < MISESTIMATE_WARNING_RATIO {
        return None;
    }
    let direction = if actual > estimated {
        "underestimated"
    } else {
        "overestimated"
    };
    let relation = relation_of(node);
    let action = match &relation {
        Some(table) => format!(
            "run ANALYZE {table} (statistics may be stale); \
             if the filtered columns are correlated, add CREATE STATISTICS on them"
        ),
        None => "run ANALYZE on the tables involved; \
                 for correlated columns or join keys, add extended statistics (CREATE STATISTICS)"
            .to_owned(),
    };
    Some(Finding {
        id: "row_misestimate",
        severity: severity_at(ratio, MISESTIMATE_CRITICAL_RATIO),
        node_path: at.path.clone(),
        relation,
        explanation: format!(
            "rows {direction} {}×: planned {}, actual {} per loop",
            fmt_ratio(ratio),
            fmt_num(estimated),
            fmt_num(actual)
        ),
        action,
    })
}

fn fmt_ratio(ratio: f64) -> String {
    if ratio >= 100.0 {
        format!("{ratio:.0}")
    } else {
        format!("{ratio:.1}")
    }
}
