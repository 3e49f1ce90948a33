//! How tables are read: large filtered sequential scans (a missing index)
//! and index-only scans that still visit the heap (a stale visibility map).
//!
//! Not here: reads that spill to disk for lack of work_mem (`spills.rs`),
//! cache misses (`buffers.rs`).

use serde_json::{Map, Value};

use super::plan::{actuals, fmt_num, node_type, num, own_relation, text};
use super::{Context, Finding, MAX_DEPTH, Severity, severity_at};

/// The filter must discard at least this share of the rows it reads…
const SEQ_FILTER_REMOVED_SHARE: f64 = 0.9;
/// …from enough rows that an index would be a measurable win…
const SEQ_FILTER_MIN_ROWS: f64 = 10_000.0;
/// …and reading this many to keep a few is critical at any query rate.
const SEQ_FILTER_CRITICAL_ROWS: f64 = 1_000_000.0;
/// Heap fetches above this share of returned rows mean the visibility map is stale…
const HEAP_FETCH_SHARE: f64 = 0.1;
/// …and this many fetches is enough to matter.
const HEAP_FETCH_MIN: f64 = 1_000.0;

pub(super) fn seq_scan_large_filter(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
    if !matches!(node_type(node), "Seq Scan" | "Parallel Seq Scan") {
        return None;
    }
    let filter = text(node, "Filter")?;
    let (actual, loops) = actuals(node)?;
    // Both counts are per-loop averages; parallel workers each count as a loop.
    let removed = num(node, "Rows Removed by Filter")? * loops;
    let read = actual * loops + removed;
    if !read.is_finite() || read < SEQ_FILTER_MIN_ROWS || removed < read * SEQ_FILTER_REMOVED_SHARE
    {
        return None;
    }
    let relation = own_relation(node);
    let table = relation.as_deref().unwrap_or("the table");
    let columns = filter_columns(filter);
    // The filter itself holds literals, so only its column names go into the text.
    let action = if columns.is_empty() {
        format!("consider an index on {table} matching the filter")
    } else {
        format!("consider an index on {table} ({})", columns.join(", "))
    };
    Some(Finding {
        id: "seq_scan_large_filter",
        severity: severity_at(read, SEQ_FILTER_CRITICAL_ROWS),
        node_path: at.path.clone(),
        relation,
        explanation: format!(
            "sequential scan read {} rows and its filter discarded {} ({:.1}%) to return {}",
            fmt_num(read.round()),
            fmt_num(removed.round()),
            removed / read * 100.0,
            fmt_num((actual * loops).round())
        ),
        action,
    })
}

/// The column names a filter expression refers to, in order of appearance.
///
/// Parses `SELECT 1 WHERE <filter>` with libpg_query and collects the last field of
/// every ColumnRef (so `o.customer_id` gives `customer_id`). Unparseable filters give
/// no columns.
pub(super) fn filter_columns(filter: &str) -> Vec<String> {
    let masked = crate::explain::redact::mask_plan_notation(filter);
    let Ok(parsed) = pg_query::parse(&format!("SELECT 1 WHERE {masked}"), 0) else {
        return Vec::new();
    };
    let Ok(tree) = serde_json::to_value(&parsed.protobuf) else {
        return Vec::new();
    };
    let mut columns = Vec::new();
    collect_column_refs(&tree, &mut columns, 0);
    columns
}

fn collect_column_refs(value: &Value, out: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH * 4 {
        return;
    }
    match value {
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_column_refs(item, out, depth + 1)),
        Value::Object(map) => {
            if let Some(name) = map.get("ColumnRef").and_then(column_ref_name)
                && !out.contains(&name)
                && !crate::explain::redact::is_plan_notation_mask(&name)
            {
                out.push(name);
            }
            map.values()
                .for_each(|item| collect_column_refs(item, out, depth + 1));
        }
        _ => {}
    }
}

/// `{"fields": [{"node": {"String": {"sval": "o"}}}, {"node": {"String": {"sval": "id"}}}]}` → "id".
fn column_ref_name(column_ref: &Value) -> Option<String> {
    let last = column_ref.get("fields")?.as_array()?.last()?;
    last.get("node")?
        .get("String")?
        .get("sval")?
        .as_str()
        .map(str::to_owned)
}

pub(super) fn index_only_heap_fetches(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
    if node_type(node) != "Index Only Scan" {
        return None;
    }
    let fetches = num(node, "Heap Fetches")?;
    let (actual, loops) = actuals(node)?;
    let returned = actual * loops;
    if fetches < HEAP_FETCH_MIN || fetches <= returned * HEAP_FETCH_SHARE {
        return None;
    }
    let relation = own_relation(node);
    let table = relation.as_deref().unwrap_or("the table");
    let action = format!("VACUUM {table}, and check that autovacuum keeps up with it");
    Some(Finding {
        id: "index_only_heap_fetches",
        severity: Severity::Warning,
        node_path: at.path.clone(),
        relation,
        explanation: format!(
            "index-only scan fetched {} heap tuples for {} rows: the visibility map is stale",
            fmt_num(fetches),
            fmt_num(returned.round())
        ),
        action,
    })
}
