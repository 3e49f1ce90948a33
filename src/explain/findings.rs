//! Plan heuristics and the plan-shape hash (pure).
//!
//! [`findings`] reads an `EXPLAIN (FORMAT JSON)` plan, with or without ANALYZE data,
//! and reports the patterns a DBA would look for first: misestimated row counts,
//! large filtered sequential scans, work_mem spills, runaway nested loops, stale
//! visibility maps, parallel workers that never started, and planning or JIT time
//! that dwarfs execution. Heuristics that need ANALYZE data stay silent without it.
//!
//! [`shape_hash`] fingerprints the plan's shape (node types, relations, indexes, join
//! types, tree structure) so that the same plan with other numbers hashes equal and a
//! plan change (say, a new index being used) shows as a new hash.
//!
//! Plans come from any PostgreSQL version 13–18 and may be malformed: every key is
//! optional, and a key of the wrong type counts as absent.

use serde::Serialize;
use serde_json::{Map, Value};

/// How urgent a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; not necessarily a problem.
    Info,
    /// Likely costs time now.
    Warning,
    /// Costs a lot of time now, or will as the data grows.
    Critical,
}

impl Severity {
    /// The lowercase name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One problem found in a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable identifier of the heuristic, e.g. `"row_misestimate"`.
    pub id: &'static str,
    /// How urgent it is.
    pub severity: Severity,
    /// Where in the plan: node names from the root down, e.g.
    /// `"Gather > Parallel Seq Scan on orders"`; `"(query)"` for the whole statement.
    pub node_path: String,
    /// The table concerned, when there is one.
    pub relation: Option<String>,
    /// What was seen, in one line.
    pub explanation: String,
    /// What to try, in one line.
    pub action: String,
}

/// The path of findings about the statement as a whole rather than one node.
const QUERY_PATH: &str = "(query)";

/// Plans are shallow in practice; the cap only keeps hostile input off the stack.
const MAX_DEPTH: usize = 256;

// Thresholds. Each one trades noise against missing a real problem.

/// An estimate off by 10× is where join orders and methods start to go wrong.
const MISESTIMATE_WARNING_RATIO: f64 = 10.0;
/// Off by 1000×, the planner is effectively blind (stale or missing statistics).
const MISESTIMATE_CRITICAL_RATIO: f64 = 1000.0;
/// Below 100 rows on both sides, even a large ratio changes no plan decision.
const MISESTIMATE_MIN_ROWS: f64 = 100.0;
/// The filter must discard at least this share of the rows it reads…
const SEQ_FILTER_REMOVED_SHARE: f64 = 0.9;
/// …from enough rows that an index would be a measurable win…
const SEQ_FILTER_MIN_ROWS: f64 = 10_000.0;
/// …and reading this many to keep a few is critical at any query rate.
const SEQ_FILTER_CRITICAL_ROWS: f64 = 1_000_000.0;
/// Re-running the inner side this many times is where nested loops start to hurt.
const NESTED_LOOP_WARNING_LOOPS: f64 = 1_000.0;
/// A hundred thousand inner executions is almost always the wrong join method.
const NESTED_LOOP_CRITICAL_LOOPS: f64 = 100_000.0;
/// Heap fetches above this share of returned rows mean the visibility map is stale…
const HEAP_FETCH_SHARE: f64 = 0.1;
/// …and this many fetches is enough to matter.
const HEAP_FETCH_MIN: f64 = 1_000.0;
/// Planning under 10 ms is not worth a remark, even if execution is faster.
const PLANNING_INFO_MS: f64 = 10.0;
/// Planning over 100 ms on every execution is a real cost.
const PLANNING_WARNING_MS: f64 = 100.0;
/// A cold scan of 1,000 blocks (8 MB) is where reads become noticeable.
const READS_MIN_BLOCKS: f64 = 1_000.0;
/// JIT is a problem when it takes over half the run…
const JIT_SHARE: f64 = 0.5;
/// …and costs a noticeable absolute time.
const JIT_MIN_MS: f64 = 50.0;

/// Runs every heuristic over a plan.
///
/// Accepts PostgreSQL's output as printed (an array holding one object with "Plan"),
/// that object alone, or a bare plan node. Findings are sorted by severity, most
/// severe first, then in plan order (the statement-wide ones before the nodes).
/// Malformed input yields no findings.
pub fn findings(plan: &Value) -> Vec<Finding> {
    let Some(top) = top_level(plan) else {
        return Vec::new();
    };
    let mut found: Vec<(usize, Finding)> =
        query_findings(top).into_iter().map(|f| (0, f)).collect();
    if let Some(root) = root_node(top) {
        let mut walker = Walker {
            found: &mut found,
            order: 0,
        };
        walker.visit(root, &Context::root(), 0);
        if let Some(finding) = reads_dominate_hits(root) {
            found.push((1, finding));
        }
    }
    found.sort_by(|(a_order, a), (b_order, b)| {
        b.severity.cmp(&a.severity).then(a_order.cmp(b_order))
    });
    found.into_iter().map(|(_, finding)| finding).collect()
}

/// A stable 64-bit hash of the plan's shape, as 16 hex digits.
///
/// Covers node types, relation names, index names, join types, parent relationships
/// and the tree structure; nothing else (no costs, rows, times, filters, aliases).
pub fn shape_hash(plan: &Value) -> String {
    let mut canonical = String::new();
    if let Some(root) = top_level(plan).and_then(root_node) {
        write_shape(root, &mut canonical, 0);
    }
    format!("{:016x}", fnv1a_64(canonical.as_bytes()))
}

// ---------------------------------------------------------------------------
// Reading plans (shared with the renderer).

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
pub(crate) fn node_type(node: &Map<String, Value>) -> &str {
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

/// The one relation a subtree reads, if it reads exactly one.
fn subtree_relation(node: &Map<String, Value>) -> Option<String> {
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
fn relation_of(node: &Map<String, Value>) -> Option<String> {
    text(node, "Relation Name")
        .map(str::to_owned)
        .or_else(|| subtree_relation(node))
}

/// ANALYZE data for a node that ran: (actual rows per loop, loops).
fn actuals(node: &Map<String, Value>) -> Option<(f64, f64)> {
    let loops = num(node, "Actual Loops")?;
    // A node that never executed has no rows to compare.
    (loops > 0.0).then_some((num(node, "Actual Rows")?, loops))
}

fn severity_at(value: f64, critical_at: f64) -> Severity {
    if value >= critical_at {
        Severity::Critical
    } else {
        Severity::Warning
    }
}

// ---------------------------------------------------------------------------
// Walking the tree.

/// What a node inherits from its ancestors.
struct Context {
    path: String,
    /// The parent may stop pulling rows before this node is exhausted (under a Limit,
    /// a semi/anti join's inner side, a merge join, a subplan), so fewer actual rows
    /// than estimated is expected and only underestimates are reported.
    may_stop_early: bool,
}

impl Context {
    fn root() -> Self {
        Context {
            path: String::new(),
            may_stop_early: false,
        }
    }

    /// The context of a node labelled `label` whose parent context is `self`.
    fn child(&self, label: &str) -> Self {
        let path = if self.path.is_empty() {
            label.to_owned()
        } else {
            format!("{} > {label}", self.path)
        };
        Context {
            path,
            may_stop_early: self.may_stop_early,
        }
    }
}

struct Walker<'a> {
    found: &'a mut Vec<(usize, Finding)>,
    order: usize,
}

impl Walker<'_> {
    fn visit(&mut self, node: &Map<String, Value>, parent: &Context, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        // Plan order: statement-wide findings are 0, the root node is 1.
        self.order += 1;
        let here = parent.child(&node_label(node));
        let order = self.order;
        self.found.extend(
            check_node(node, &here)
                .into_iter()
                .map(|finding| (order, finding)),
        );
        for (index, child) in children(node).enumerate() {
            let context = Context {
                path: here.path.clone(),
                may_stop_early: child_may_stop_early(node, child, index, here.may_stop_early),
            };
            self.visit(child, &context, depth + 1);
        }
    }
}

/// Every node heuristic; kept out of `visit` so the recursive frame stays small.
fn check_node(node: &Map<String, Value>, at: &Context) -> Vec<Finding> {
    [
        row_misestimate(node, at),
        seq_scan_large_filter(node, at),
        sort_spill(node, at),
        hash_spill(node, at),
        hashagg_spill(node, at),
        nested_loop_many_loops(node, at),
        lossy_bitmap(node, at),
        index_only_heap_fetches(node, at),
        parallel_workers_not_launched(node, at),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Whether `child` (the `index`th of `node`) may be cut short by `node`.
fn child_may_stop_early(
    node: &Map<String, Value>,
    child: &Map<String, Value>,
    index: usize,
    inherited: bool,
) -> bool {
    let relationship = text(child, "Parent Relationship");
    let inner = is_inner(relationship, index);
    match node_type(node) {
        // EXISTS subplans and init plans stop at their first row.
        _ if matches!(relationship, Some("SubPlan" | "InitPlan")) => true,
        // These read their whole input before returning anything.
        "Sort" | "Hash" => false,
        "Aggregate" if matches!(text(node, "Strategy"), Some("Plain" | "Hashed")) => false,
        "Limit" | "Merge Join" => true,
        // With nothing to join against, a hash join reads (at most) one outer row.
        "Hash Join" if !inner && hash_join_inner_empty(node) => true,
        // A semi/anti join, or a join whose inner side is unique, moves on to the next
        // outer row at the first match.
        _ if inner
            && (matches!(text(node, "Join Type"), Some("Semi" | "Anti")) || inner_unique(node)) =>
        {
            true
        }
        _ => inherited,
    }
}

fn is_inner(relationship: Option<&str>, index: usize) -> bool {
    match relationship {
        Some(relationship) => relationship == "Inner",
        None => index == 1,
    }
}

fn inner_unique(node: &Map<String, Value>) -> bool {
    node.get("Inner Unique").and_then(Value::as_bool) == Some(true)
}

fn hash_join_inner_empty(node: &Map<String, Value>) -> bool {
    children(node)
        .enumerate()
        .find(|(index, child)| is_inner(text(child, "Parent Relationship"), *index))
        .and_then(|(_, inner)| actuals(inner))
        .is_some_and(|(rows, _)| rows == 0.0)
}

// ---------------------------------------------------------------------------
// Node heuristics.

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

fn row_misestimate(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
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

fn seq_scan_large_filter(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
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
    let relation = text(node, "Relation Name").map(str::to_owned);
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
pub(crate) fn filter_columns(filter: &str) -> Vec<String> {
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

fn sort_spill(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
    if node_type(node) != "Sort" || !node_or_workers(node, sort_spilled) {
        return None;
    }
    let method = text(node, "Sort Method").unwrap_or("external sort");
    let used = num(node, "Sort Space Used")
        .map(|kb| format!(", {} kB on disk", fmt_num(kb)))
        .unwrap_or_default();
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

fn hash_spill(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
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

fn hashagg_spilled(node: &Map<String, Value>) -> bool {
    num(node, "HashAgg Batches").is_some_and(|b| b > 1.0)
        || num(node, "Disk Usage").is_some_and(|d| d > 0.0)
}

fn hashagg_spill(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
    if !matches!(node_type(node), "Aggregate" | "HashAggregate")
        || !node_or_workers(node, hashagg_spilled)
    {
        return None;
    }
    let batches = num(node, "HashAgg Batches")
        .map(fmt_num)
        .unwrap_or_else(|| "several".to_owned());
    let disk = num(node, "Disk Usage")
        .map(|kb| format!(", {} kB on disk", fmt_num(kb)))
        .unwrap_or_default();
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

fn nested_loop_many_loops(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
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

fn lossy_bitmap(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
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
        relation: text(node, "Relation Name").map(str::to_owned),
        explanation: format!(
            "bitmap did not fit in work_mem: {} heap blocks lossy ({} exact), every row on them rechecked{rechecked}",
            fmt_num(lossy),
            fmt_num(exact)
        ),
        action: "raise work_mem for this query so the bitmap stays exact".to_owned(),
    })
}

fn index_only_heap_fetches(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
    if node_type(node) != "Index Only Scan" {
        return None;
    }
    let fetches = num(node, "Heap Fetches")?;
    let (actual, loops) = actuals(node)?;
    let returned = actual * loops;
    if fetches < HEAP_FETCH_MIN || fetches <= returned * HEAP_FETCH_SHARE {
        return None;
    }
    let relation = text(node, "Relation Name").map(str::to_owned);
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

fn parallel_workers_not_launched(node: &Map<String, Value>, at: &Context) -> Option<Finding> {
    let planned = num(node, "Workers Planned")?;
    let launched = num(node, "Workers Launched")?;
    if launched >= planned {
        return None;
    }
    Some(Finding {
        id: "parallel_workers_not_launched",
        severity: Severity::Warning,
        node_path: at.path.clone(),
        relation: None,
        explanation: format!(
            "only {} of {} planned parallel workers started, so fewer processes did the work",
            fmt_num(launched),
            fmt_num(planned)
        ),
        action: "raise max_parallel_workers / max_worker_processes, or run fewer parallel queries at once".to_owned(),
    })
}

// ---------------------------------------------------------------------------
// Statement-wide heuristics.

fn query_findings(top: &Map<String, Value>) -> Vec<Finding> {
    [planning_dominates(top), jit_dominates(top)]
        .into_iter()
        .flatten()
        .collect()
}

fn planning_dominates(top: &Map<String, Value>) -> Option<Finding> {
    let planning = num(top, "Planning Time")?;
    let execution = num(top, "Execution Time")?;
    if planning <= execution || planning < PLANNING_INFO_MS {
        return None;
    }
    let severity = if planning >= PLANNING_WARNING_MS {
        Severity::Warning
    } else {
        Severity::Info
    };
    Some(Finding {
        id: "planning_dominates",
        severity,
        node_path: QUERY_PATH.to_owned(),
        relation: None,
        explanation: format!("planning took {planning:.1} ms, longer than execution ({execution:.1} ms)"),
        action: "use a prepared statement so the plan is reused; fewer partitions or joins also plan faster".to_owned(),
    })
}

fn jit_dominates(top: &Map<String, Value>) -> Option<Finding> {
    let timing = top.get("JIT")?.as_object()?.get("Timing")?.as_object()?;
    let jit = num(timing, "Total")?;
    let execution = num(top, "Execution Time")?;
    if jit < JIT_MIN_MS || jit <= execution * JIT_SHARE {
        return None;
    }
    Some(Finding {
        id: "jit_dominates",
        severity: Severity::Warning,
        node_path: QUERY_PATH.to_owned(),
        relation: None,
        explanation: format!(
            "JIT compilation took {jit:.1} ms of {execution:.1} ms execution ({:.0}%)",
            jit / execution.max(f64::MIN_POSITIVE) * 100.0
        ),
        action: "raise jit_above_cost (and the inline/optimize thresholds), or SET jit = off for this workload"
            .to_owned(),
    })
}

fn reads_dominate_hits(root: &Map<String, Value>) -> Option<Finding> {
    let reads = num(root, "Shared Read Blocks")?;
    let hits = num(root, "Shared Hit Blocks")?;
    if reads <= hits || reads < READS_MIN_BLOCKS {
        return None;
    }
    Some(Finding {
        id: "reads_dominate_hits",
        severity: Severity::Info,
        node_path: node_label(root),
        relation: subtree_relation(root),
        explanation: format!(
            "{} blocks read from outside shared_buffers vs {} hits: the working set was not cached",
            fmt_num(reads),
            fmt_num(hits)
        ),
        action: "if this repeats, the working set does not fit shared_buffers: \
                 raise it, or read less (indexes, narrower rows)"
            .to_owned(),
    })
}

// ---------------------------------------------------------------------------
// Shape hash.

/// Appends a canonical, unambiguous description of the subtree: every field is
/// length-prefixed so no relation name can forge a separator.
fn write_shape(node: &Map<String, Value>, out: &mut String, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    out.push('(');
    for key in [
        "Node Type",
        "Relation Name",
        "Index Name",
        "Join Type",
        "Parent Relationship",
    ] {
        let value = text(node, key).unwrap_or("");
        out.push_str(&format!("{}:{value};", value.len()));
    }
    children(node).for_each(|child| write_shape(child, out, depth + 1));
    out.push(')');
}

/// 64-bit FNV-1a: tiny, and stable across Rust releases (unlike `DefaultHasher`).
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    /// Expected findings, in output order: (id, severity, relation).
    type Expected = &'static [(&'static str, Severity, Option<&'static str>)];

    /// One scenario: its name, the captures of it (server version, JSON), what it shows.
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        Expected,
    );

    use Severity::{Critical, Info, Warning};

    /// `case!("scenario", [id, severity, relation; …])`: captured from PostgreSQL 13, 15
    /// and 18. `case!("scenario" in ["15"], …)` for a scenario some builds cannot show.
    macro_rules! case {
        ($name:literal, [$($id:literal, $severity:ident, $relation:expr);* $(;)?]) => {
            (
                $name,
                &[
                    ("13", include_str!(concat!("fixtures/pg13/", $name, ".json"))),
                    ("15", include_str!(concat!("fixtures/", $name, ".json"))),
                    ("18", include_str!(concat!("fixtures/pg18/", $name, ".json"))),
                ],
                &[$(($id, $severity, $relation)),*],
            )
        };
        ($name:literal in [$($version:literal => $dir:literal),*], [$($id:literal, $severity:ident, $relation:expr);* $(;)?]) => {
            (
                $name,
                &[$(($version, include_str!(concat!("fixtures/", $dir, $name, ".json")))),*],
                &[$(($id, $severity, $relation)),*],
            )
        };
    }

    const CASES: &[Case] = &[
        case!("healthy_pk_lookup", []),
        case!("healthy_top_n", []),
        case!("healthy_small_join", []),
        case!("shape_after_index", []),
        case!("no_analyze_seq_scan", []),
        case!(
            "misestimate_stale_stats",
            ["row_misestimate", Critical, Some("events")]
        ),
        case!(
            "misestimate_correlated_columns",
            ["row_misestimate", Warning, Some("addresses")]
        ),
        case!(
            "seq_scan_large_filter",
            ["seq_scan_large_filter", Warning, Some("orders")]
        ),
        case!(
            "shape_seq_scan_other_customer",
            ["seq_scan_large_filter", Warning, Some("orders")]
        ),
        case!(
            "seq_scan_parallel_critical",
            ["seq_scan_large_filter", Critical, Some("page_views")]
        ),
        case!("sort_spill", ["sort_spill", Warning, Some("orders")]),
        case!("hash_spill", ["hash_spill", Warning, Some("customers")]),
        case!("hashagg_spill", ["hashagg_spill", Warning, Some("orders")]),
        case!("lossy_bitmap", [
            "row_misestimate", Warning, Some("orders");
            "lossy_bitmap", Warning, Some("orders");
        ]),
        case!(
            "nested_loop_many_loops",
            ["nested_loop_many_loops", Warning, Some("orders")]
        ),
        // Memoize exists from PostgreSQL 14 on.
        case!("nested_loop_memoize" in ["15" => "", "18" => "pg18/"], [
            "nested_loop_many_loops", Warning, Some("customers");
        ]),
        case!(
            "index_only_heap_fetches",
            ["index_only_heap_fetches", Warning, Some("audit_log")]
        ),
        case!(
            "workers_not_launched",
            ["parallel_workers_not_launched", Warning, None]
        ),
        case!("planning_dominates", ["planning_dominates", Warning, None]),
        case!(
            "reads_dominate_hits",
            ["reads_dominate_hits", Info, Some("orders")]
        ),
        // Only Debian's build has LLVM; the estimate is off by the LIKE default selectivity.
        case!("jit_dominates" in ["15" => ""], [
            "jit_dominates", Warning, None;
            "row_misestimate", Warning, Some("customers");
        ]),
        case!("redact_verbose_literals", [
            "seq_scan_large_filter", Warning, Some("customers");
            "seq_scan_large_filter", Warning, Some("orders");
            "seq_scan_large_filter", Warning, Some("orders");
        ]),
    ];

    #[test]
    fn captured_plans_give_the_expected_findings() {
        for (name, captures, expected) in CASES {
            for (version, json) in *captures {
                let got = findings(&load(json));
                let got: Vec<_> = got
                    .iter()
                    .map(|f| (f.id, f.severity, f.relation.as_deref()))
                    .collect();
                assert_eq!(
                    got.as_slice(),
                    *expected,
                    "{name} from PostgreSQL {version}"
                );
            }
        }
    }

    fn only(json: &str, id: &str) -> Finding {
        let all = findings(&load(json));
        let mut matching = all.into_iter().filter(|f| f.id == id);
        let first = matching.next();
        assert!(matching.next().is_none(), "more than one {id}");
        first.unwrap_or_else(|| panic!("no {id}"))
    }

    #[test]
    fn findings_name_the_node_and_the_columns() {
        let seq = only(
            include_str!("fixtures/seq_scan_large_filter.json"),
            "seq_scan_large_filter",
        );
        assert_eq!(seq.node_path, "Gather > Parallel Seq Scan on orders");
        assert_eq!(
            seq.action,
            "consider an index on orders (customer_id, status)"
        );
        assert!(
            seq.explanation.contains("read 300000 rows"),
            "{}",
            seq.explanation
        );

        let parallel = only(
            include_str!("fixtures/seq_scan_parallel_critical.json"),
            "seq_scan_large_filter",
        );
        assert_eq!(parallel.action, "consider an index on page_views (user_id)");
        assert!(
            parallel.explanation.contains("read 1200000 rows"),
            "{}",
            parallel.explanation
        );

        let stale = only(
            include_str!("fixtures/misestimate_stale_stats.json"),
            "row_misestimate",
        );
        assert_eq!(stale.node_path, "Aggregate > Seq Scan on events");
        assert!(
            stale.explanation.starts_with("rows underestimated 200000×"),
            "{}",
            stale.explanation
        );
        assert!(stale.action.contains("ANALYZE events"));

        let nested = only(
            include_str!("fixtures/nested_loop_many_loops.json"),
            "nested_loop_many_loops",
        );
        assert_eq!(nested.node_path, "HashAggregate > Nested Loop");
        assert!(
            nested.explanation.contains("ran 5000 times"),
            "{}",
            nested.explanation
        );

        let memo = only(
            include_str!("fixtures/pg18/nested_loop_memoize.json"),
            "nested_loop_many_loops",
        );
        let expected = "inner side (Index Scan using customers_pkey on customers) ran 20000 times: \
                        Memoize cache misses for 300000 outer rows";
        assert_eq!(memo.explanation, expected);

        let planning = only(
            include_str!("fixtures/planning_dominates.json"),
            "planning_dominates",
        );
        assert_eq!(planning.node_path, "(query)");
    }

    #[test]
    fn filter_columns_come_from_the_parse_tree() {
        assert_eq!(
            filter_columns("((customer_id = 4242) AND (status = 'paid'::text))"),
            ["customer_id", "status"]
        );
        assert_eq!(
            filter_columns("((o.note ~~ 'a%'::text) AND (NOT (hashed SubPlan 1)))"),
            ["note"]
        );
        assert_eq!(
            filter_columns("(lower(c.email) = 'x'::text) OR (c.email IS NULL)"),
            ["email"]
        );
        assert!(filter_columns("this is not sql (").is_empty());
    }

    #[test]
    fn severities_order_and_names() {
        assert!(Critical > Warning && Warning > Info);
        assert_eq!(
            [Info.as_str(), Warning.as_str(), Critical.as_str()],
            ["info", "warning", "critical"]
        );
        assert_eq!(
            serde_json::to_value(Critical).ok(),
            Some(Value::from("critical"))
        );
    }

    #[test]
    fn thresholds_at_their_edges() {
        let scan = |rows: f64, removed: f64, loops: f64| {
            serde_json::json!({"Plan": {
                "Node Type": "Seq Scan", "Relation Name": "t", "Filter": "(a = 1)",
                "Plan Rows": rows, "Actual Rows": rows, "Actual Loops": loops,
                "Rows Removed by Filter": removed,
            }})
        };
        let ids = |plan: &Value| {
            findings(plan)
                .iter()
                .map(|f| (f.id, f.severity))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&scan(1000.0, 9000.0, 1.0)),
            [("seq_scan_large_filter", Warning)]
        );
        assert_eq!(ids(&scan(1001.0, 8999.0, 1.0)), []);
        assert_eq!(ids(&scan(10.0, 9980.0, 1.0)), []);
        assert_eq!(
            ids(&scan(0.0, 250_000.0, 4.0)),
            [("seq_scan_large_filter", Critical)]
        );

        let estimate = |planned: f64, actual: f64| serde_json::json!({"Node Type": "Seq Scan", "Plan Rows": planned, "Actual Rows": actual, "Actual Loops": 1});
        assert_eq!(ids(&estimate(1.0, 99.0)), []);
        assert_eq!(ids(&estimate(10.0, 100.0)), [("row_misestimate", Warning)]);
        assert_eq!(ids(&estimate(1000.0, 0.0)), [("row_misestimate", Critical)]);
        assert_eq!(ids(&estimate(100.0, 11.0)), []);
    }

    /// A scan estimated at 100,000 rows that returned `actual`, as `relationship` of `parent`.
    fn cut_short(parent: Value, relationship: &str, actual: f64) -> Value {
        let scan = serde_json::json!({"Node Type": "Seq Scan", "Relation Name": "t", "Parent Relationship": relationship,
                                      "Plan Rows": 100_000, "Actual Rows": actual, "Actual Loops": 1});
        let mut parent = parent;
        if let Some(plans) = parent.get_mut("Plans").and_then(Value::as_array_mut) {
            let at = if relationship == "Inner" {
                plans.len()
            } else {
                0
            };
            plans.insert(at, scan);
        }
        parent
    }

    #[test]
    fn rows_cut_short_by_the_parent_are_not_overestimates() {
        let limit = serde_json::json!({"Node Type": "Limit", "Plans": []});
        let semi = serde_json::json!({"Node Type": "Nested Loop", "Join Type": "Semi", "Plans": [
            {"Node Type": "Result", "Parent Relationship": "Outer"}]});
        let unique = serde_json::json!({"Node Type": "Nested Loop", "Join Type": "Inner", "Inner Unique": true,
            "Plans": [{"Node Type": "Result", "Parent Relationship": "Outer"}]});
        let empty_hash = serde_json::json!({"Node Type": "Hash Join", "Plans": [
            {"Node Type": "Hash", "Parent Relationship": "Inner", "Plan Rows": 10, "Actual Rows": 0, "Actual Loops": 1}]});
        let subplan = serde_json::json!({"Node Type": "Result", "Plans": []});
        let cases = [
            (cut_short(limit.clone(), "Outer", 10.0), None),
            (cut_short(semi.clone(), "Inner", 1.0), None),
            (cut_short(unique, "Inner", 1.0), None),
            (cut_short(empty_hash, "Outer", 1.0), None),
            (cut_short(subplan.clone(), "SubPlan", 1.0), None),
            (cut_short(subplan, "InitPlan", 1.0), None),
            // Not cut short: the same shortfall is an overestimate…
            (
                cut_short(
                    serde_json::json!({"Node Type": "Gather", "Plans": []}),
                    "Outer",
                    10.0,
                ),
                Some(Critical),
            ),
            (cut_short(semi, "Outer", 1.0), Some(Critical)),
            // …and underestimates count even under a Limit.
            (cut_short(limit, "Outer", 100_000_000.0), Some(Critical)),
        ];
        for (index, (plan, expected)) in cases.iter().enumerate() {
            let got: Vec<_> = findings(plan).iter().map(|f| f.severity).collect();
            assert_eq!(
                got,
                expected.iter().copied().collect::<Vec<_>>(),
                "case {index}: {plan}"
            );
        }
    }

    #[test]
    fn shape_hash_ignores_numbers_but_not_plan_changes() {
        let first = load(include_str!("fixtures/seq_scan_large_filter.json"));
        let other = load(include_str!("fixtures/shape_seq_scan_other_customer.json"));
        let indexed = load(include_str!("fixtures/shape_after_index.json"));
        assert_ne!(first, other, "fixtures differ in numbers and filters");
        assert_eq!(shape_hash(&first), shape_hash(&other));
        assert_ne!(shape_hash(&first), shape_hash(&indexed));
        let hash = shape_hash(&first);
        assert_eq!(hash.len(), 16);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        // The same plan shape from another major version hashes the same.
        assert_eq!(
            shape_hash(&load(include_str!(
                "fixtures/pg18/seq_scan_large_filter.json"
            ))),
            hash
        );
        // Unwrapped forms hash like the wrapped one.
        assert_eq!(shape_hash(&first[0]), hash);
        assert_eq!(shape_hash(&first[0]["Plan"]), hash);
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn malformed_input_never_panics_and_finds_nothing() {
        let inputs = [
            "null",
            "{}",
            "[]",
            "[null]",
            "[[]]",
            "\"a string\"",
            "42",
            "true",
            "[{\"Plan\": null}]",
            "[{\"Plan\": []}]",
            "[{\"Plan\": \"Seq Scan\"}]",
            "[{\"Plan\": {\"Node Type\": 7, \"Plans\": {}}}]",
            "[{\"Plan\": {\"Node Type\": \"Nested Loop\", \"Plans\": [1, \"x\", null]}}]",
            "[{\"Plan\": {\"Node Type\": \"Seq Scan\", \"Filter\": 3, \"Actual Rows\": \"many\"}}]",
            "[{\"Plan\": {\"Node Type\": \"Seq Scan\", \"Plan Rows\": -5000, \"Actual Rows\": 1, \"Actual Loops\": 1}}]",
            "[{\"Plan\": {\"Node Type\": \"Seq Scan\", \"Filter\": \"(\", \"Actual Rows\": 1, \"Actual Loops\": 1, \"Rows Removed by Filter\": -1e9}}]",
            "[{\"Plan\": {\"Node Type\": \"Hash\", \"Hash Batches\": \"8\"}}]",
            "[{\"Plan\": {\"Node Type\": \"Gather\", \"Workers Planned\": 2, \"Workers Launched\": null}}]",
            "[{\"Planning Time\": \"slow\", \"Execution Time\": null, \"JIT\": {\"Timing\": 5}}]",
            "[{\"Planning Time\": 500, \"JIT\": {\"Timing\": {\"Total\": \"500\"}}, \"Execution Time\": -1}]",
        ];
        for input in inputs {
            let plan = load(input);
            assert!(findings(&plan).is_empty(), "{input}");
            assert_eq!(shape_hash(&plan).len(), 16);
        }
    }

    #[test]
    fn absurd_numbers_never_panic() {
        let plan = serde_json::json!([{
            "Plan": {"Node Type": "Seq Scan", "Filter": "(a = 1)", "Plan Rows": 0, "Actual Rows": 1e308,
                     "Actual Loops": 1e308, "Rows Removed by Filter": 1e308, "Heap Fetches": 1e308},
            "Planning Time": 500, "Execution Time": 0, "JIT": {"Timing": {"Total": 500}}
        }]);
        let ids: Vec<_> = findings(&plan).iter().map(|f| f.id).collect();
        assert_eq!(
            ids,
            ["row_misestimate", "planning_dominates", "jit_dominates"]
        );
    }

    #[test]
    fn deep_trees_are_cut_off_not_overflowed() {
        // Past MAX_DEPTH, but not so deep that serde_json's own recursive drop overflows
        // (it does at a few thousand levels in debug builds).
        let mut plan = serde_json::json!({"Node Type": "Result"});
        for _ in 0..300 {
            plan = serde_json::json!({"Node Type": "Result", "Plans": [plan]});
        }
        assert!(findings(&plan).is_empty());
        assert_eq!(shape_hash(&plan).len(), 16);
    }
}
