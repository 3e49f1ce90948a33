//! work_mem spills: sorts, hashes and hash aggregates that went to disk, and
//! bitmaps that turned lossy.
//!
//! All four mean the same remedy (more work_mem for the query, or less data
//! through the node), so they live together. Needs ANALYZE data.

use serde_json::{Map, Value};

use super::plan::{fmt_num, node_type, num, own_relation, subtree_relation, text};
use super::{Context, Finding, Severity};

/// Whether a node, or any of its parallel workers, reports `check`.
fn node_or_workers(node: &Map<String, Value>, check: impl Fn(&Map<String, Value>) -> bool) -> bool {
    let workers = node
        .get("Workers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    check(node) || workers.filter_map(Value::as_object).any(check)
}

fn sort_spilled(node: &Map<String, Value>) -> bool {
    let external =
        text(node, "Sort Method").is_some_and(|m| m.to_ascii_lowercase().contains("external"));
    external || text(node, "Sort Space Type") == Some("Disk")
}

pub(super) fn sort_spill(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
    if node_type(node) != "Sort" || !node_or_workers(node, sort_spilled) {
        return None;
    }
    let method = text(node, "Sort Method").unwrap_or("external sort");
    let used = on_disk(node, "Sort Space Used");
    Some(Finding {
        id: "sort_spill",
        severity: Severity::Warning,
        node_path: at.path.clone(),
        relation: subtree_relation(node),
        explanation: format!("sort did not fit in work_mem and spilled to disk ({method}{used})"),
        action:
            "raise work_mem for this query (SET LOCAL work_mem) or add an index that returns rows in the sort order"
                .to_owned(),
    })
}

pub(super) fn hash_spill(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
    if node_type(node) != "Hash" {
        return None;
    }
    let batches = num(node, "Hash Batches")?;
    let original = num(node, "Original Hash Batches").unwrap_or(batches);
    if batches <= 1.0 && batches <= original {
        return None;
    }
    let memory = num(node, "Peak Memory Usage")
        .map(|kb| format!(", peak memory {} kB", fmt_num(kb)))
        .unwrap_or_default();
    Some(Finding {
        id: "hash_spill",
        severity: Severity::Warning,
        node_path: at.path.clone(),
        relation: subtree_relation(node),
        explanation: format!(
            "hash table split into {} batches (planned {}) and spilled to disk{memory}",
            fmt_num(batches),
            fmt_num(original)
        ),
        action: "raise work_mem (or hash_mem_multiplier) for this query, or reduce the rows and columns being hashed"
            .to_owned(),
    })
}

/// `", N kB on disk"` from the node's kB field `key`, or nothing when absent.
fn on_disk(node: &Map<String, Value>, key: &str) -> String {
    num(node, key)
        .map(|kb| format!(", {} kB on disk", fmt_num(kb)))
        .unwrap_or_default()
}

fn hashagg_spilled(node: &Map<String, Value>) -> bool {
    num(node, "HashAgg Batches").is_some_and(|b| b > 1.0)
        || num(node, "Disk Usage").is_some_and(|d| d > 0.0)
}

pub(super) fn hashagg_spill(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
    if !matches!(node_type(node), "Aggregate" | "HashAggregate")
        || !node_or_workers(node, hashagg_spilled)
    {
        return None;
    }
    let batches = num(node, "HashAgg Batches")
        .map(fmt_num)
        .unwrap_or_else(|| "several".to_owned());
    let disk = on_disk(node, "Disk Usage");
    Some(Finding {
        id: "hashagg_spill",
        severity: Severity::Warning,
        node_path: at.path.clone(),
        relation: subtree_relation(node),
        explanation: format!(
            "hash aggregate exceeded work_mem and spilled in {batches} batches{disk}"
        ),
        action:
            "raise work_mem (or hash_mem_multiplier) for this query; check the group count estimate"
                .to_owned(),
    })
}

pub(super) fn lossy_bitmap(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
    if node_type(node) != "Bitmap Heap Scan" {
        return None;
    }
    let lossy = num(node, "Lossy Heap Blocks").filter(|&n| n > 0.0)?;
    let exact = num(node, "Exact Heap Blocks").unwrap_or(0.0);
    let rechecked = num(node, "Rows Removed by Index Recheck")
        .filter(|&rows| rows > 0.0)
        .map(|rows| format!(", {} rows discarded on recheck", fmt_num(rows)))
        .unwrap_or_default();
    Some(Finding {
        id: "lossy_bitmap",
        severity: Severity::Warning,
        node_path: at.path.clone(),
        relation: own_relation(node),
        explanation: format!(
            "bitmap did not fit in work_mem: {} heap blocks lossy ({} exact), every row on them rechecked{rechecked}",
            fmt_num(lossy),
            fmt_num(exact)
        ),
        action: "raise work_mem for this query so the bitmap stays exact".to_owned(),
    })
}
