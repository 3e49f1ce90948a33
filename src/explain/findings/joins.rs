//! Joins: nested loops whose inner side runs once per outer row, many times.
//!
//! Join row estimates are in `estimates.rs`; which join children may stop
//! early is the walker's business (`mod.rs`).

use serde_json::{Map, Value};

use super::plan::{actuals, children, fmt_num, node_label, node_type, num, subtree_relation, text};
use super::{Context, Finding, severity_at};

/// Re-running the inner side this many times is where nested loops start to hurt.
const NESTED_LOOP_WARNING_LOOPS: f64 = 1_000.0;
/// A hundred thousand inner executions is almost always the wrong join method.
const NESTED_LOOP_CRITICAL_LOOPS: f64 = 100_000.0;

pub(super) fn nested_loop_many_loops(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
    if node_type(node) != "Nested Loop" {
        return None;
    }
    let kids: Vec<_> = children(node).collect();
    let inner = kids
        .iter()
        .find(|child| text(child, "Parent Relationship") == Some("Inner"))
        .or_else(|| kids.get(1))?;
    let (_, loops) = actuals(inner)?;
    // A Memoize in front of the inner side answers repeats from its cache; only the
    // misses run the subtree again.
    let memoized = match (node_type(inner), num(inner, "Cache Misses")) {
        ("Memoize", Some(misses)) => Some(misses),
        _ => None,
    };
    let executions = memoized.unwrap_or(loops);
    if executions < NESTED_LOOP_WARNING_LOOPS {
        return None;
    }
    let work = if memoized.is_some() {
        children(inner).next().unwrap_or(inner)
    } else {
        inner
    };
    let explanation = match memoized {
        Some(misses) => format!(
            "inner side ({}) ran {} times: Memoize cache misses for {} outer rows",
            node_label(work),
            fmt_num(misses),
            fmt_num(loops)
        ),
        None => format!(
            "inner side ({}) ran {} times, once per outer row",
            node_label(work),
            fmt_num(loops)
        ),
    };
    Some(Finding {
        id: "nested_loop_many_loops",
        severity: severity_at(executions, NESTED_LOOP_CRITICAL_LOOPS),
        node_path: at.path.clone(),
        relation: subtree_relation(inner),
        explanation,
        action: "check the outer row estimate; a hash or merge join may be cheaper, or index the inner join key"
            .to_owned(),
    })
}
