//! Reading `EXPLAIN (FORMAT JSON)` output: fields, node names, the tree.
//!
//! Shared by the heuristics and the renderer (`explain/render.rs`), so a node
//! reads and prints the same everywhere. Only reading: no judgement of what
//! a number means (the heuristic families do that), no output formatting
//! beyond the node names and numbers psql itself prints.
//!
//! Plans come from any PostgreSQL version 13–18 and may be malformed: every
//! key is optional, and a key of the wrong type counts as absent.

use serde_json::{Map, Value};

use super::MAX_DEPTH;

/// The object holding "Plan", "Planning Time", …: the first element of PostgreSQL's
/// array, the object itself, or a bare node (which is its own root).
pub(crate) fn top_level(plan: &Value) -> Option<&Map<String, Value>> {
    match plan {
        Value::Array(items) => items.first()?.as_object(),
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The root plan node of a top-level object.
pub(crate) fn root_node(top: &Map<String, Value>) -> Option<&Map<String, Value>> {
    match top.get("Plan") {
        Some(plan) => plan.as_object(),
        None if top.contains_key("Node Type") => Some(top),
        None => None,
    }
}

/// The child nodes, ignoring anything in "Plans" that is not an object.
pub(crate) fn children(node: &Map<String, Value>) -> impl Iterator<Item = &Map<String, Value>> {
    node.get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// A numeric field. Every number EXPLAIN prints (rows, loops, blocks, times, kB) is
/// finite and non-negative, so anything else reads as absent, like a missing key.
pub(crate) fn num(node: &Map<String, Value>, key: &str) -> Option<f64> {
    node.get(key)
        .and_then(Value::as_f64)
        .filter(|n| n.is_finite() && *n >= 0.0)
}

/// A string field.
pub(crate) fn text<'a>(node: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    node.get(key).and_then(Value::as_str)
}

/// The node's type, or `"?"` when missing.
pub(super) fn node_type(node: &Map<String, Value>) -> &str {
    text(node, "Node Type").unwrap_or("?")
}

/// The node name as psql's text format shows it: "Parallel Seq Scan", "HashAggregate",
/// "Hash Left Join", "Insert", …
pub(crate) fn display_type(node: &Map<String, Value>) -> String {
    let base = node_type(node);
    let named = match base {
        "Aggregate" => aggregate_name(node),
        "SetOp" if text(node, "Strategy") == Some("Hashed") => "HashSetOp".to_owned(),
        "ModifyTable" => text(node, "Operation").unwrap_or(base).to_owned(),
        "Nested Loop" | "Hash Join" | "Merge Join" => join_name(base, text(node, "Join Type")),
        _ => base.to_owned(),
    };
    if node.get("Parallel Aware").and_then(Value::as_bool) == Some(true) {
        format!("Parallel {named}")
    } else {
        named
    }
}

fn aggregate_name(node: &Map<String, Value>) -> String {
    let strategy = match text(node, "Strategy") {
        Some("Sorted") => "GroupAggregate",
        Some("Hashed") => "HashAggregate",
        Some("Mixed") => "MixedAggregate",
        _ => "Aggregate",
    };
    match text(node, "Partial Mode") {
        Some("Partial") => format!("Partial {strategy}"),
        Some("Finalize") => format!("Finalize {strategy}"),
        _ => strategy.to_owned(),
    }
}

fn join_name(base: &str, join_type: Option<&str>) -> String {
    match join_type {
        None | Some("Inner") => base.to_owned(),
        Some(kind) if base == "Nested Loop" => format!("Nested Loop {kind} Join"),
        Some(kind) => format!("{} {kind} Join", base.trim_end_matches(" Join")),
    }
}

/// The node as one path element: display type plus " using <index>" / " on <target>",
/// as psql prints it (a Bitmap Index Scan is "on" its index).
pub(crate) fn node_label(node: &Map<String, Value>) -> String {
    let mut label = display_type(node);
    let index = text(node, "Index Name");
    let target = scan_target(node);
    match (index, target) {
        (Some(index), Some(target)) => label.push_str(&format!(" using {index} on {target}")),
        (Some(index), None) => label.push_str(&format!(" on {index}")),
        (None, Some(target)) => label.push_str(&format!(" on {target}")),
        (None, None) => {}
    }
    label
}

/// What a scan reads: a table, function, CTE or tuplestore.
pub(crate) fn scan_target(node: &Map<String, Value>) -> Option<&str> {
    [
        "Relation Name",
        "Function Name",
        "CTE Name",
        "Tuplestore Name",
    ]
    .iter()
    .find_map(|key| text(node, key))
}

/// Formats a row count or similar: integers without decimals, fractions (PostgreSQL 18
/// prints averaged rows as 0.25) with two.
pub(crate) fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{n:.0}")
    } else {
        format!("{n:.2}")
    }
}

/// The table the node itself reads, if any.
pub(super) fn own_relation(node: &Map<String, Value>) -> Option<String> {
    text(node, "Relation Name").map(str::to_owned)
}

/// The one relation a subtree reads, if it reads exactly one.
pub(super) fn subtree_relation(node: &Map<String, Value>) -> Option<String> {
    let mut relations = Vec::new();
    collect_relations(node, &mut relations, 0);
    match relations.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    }
}

fn collect_relations(node: &Map<String, Value>, out: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(relation) = text(node, "Relation Name")
        && !out.iter().any(|seen| seen == relation)
    {
        out.push(relation.to_owned());
    }
    children(node).for_each(|child| collect_relations(child, out, depth + 1));
}

/// The node's own relation, else the single relation beneath it.
pub(super) fn relation_of(node: &Map<String, Value>) -> Option<String> {
    own_relation(node).or_else(|| subtree_relation(node))
}

/// ANALYZE data for a node that ran: (actual rows per loop, loops).
pub(super) fn actuals(node: &Map<String, Value>) -> Option<(f64, f64)> {
    let loops = num(node, "Actual Loops")?;
    // A node that never executed has no rows to compare.
    (loops > 0.0).then_some((num(node, "Actual Rows")?, loops))
}
