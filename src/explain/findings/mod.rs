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
//! optional, and a key of the wrong type counts as absent. Nothing here does I/O or
//! runs EXPLAIN (`runner.rs` does), and nothing prints a plan (`render.rs` does).
//!
//! # Layout
//!
//! This file holds [`Finding`], [`Severity`] and the walk over the plan tree,
//! which decides what each node inherits from its ancestors. One file per
//! family of heuristics, each with its thresholds:
//!
//! - `estimates.rs`: planned against actual row counts.
//! - `scans.rs`: filtered sequential scans, index-only scans visiting the heap.
//! - `spills.rs`: sorts, hashes and aggregates over work_mem, lossy bitmaps.
//! - `joins.rs`: nested loops run too many times.
//! - `overhead.rs`: planning, JIT and parallel workers that never started.
//! - `buffers.rs`: reads from outside shared_buffers.
//! - `plan.rs`: reading plan JSON, shared with the renderer.
//! - `shape.rs`: [`shape_hash`].

use serde::Serialize;
use serde_json::{Map, Value};

mod buffers;
mod estimates;
mod joins;
mod overhead;
mod plan;
mod scans;
mod shape;
mod spills;

#[cfg(test)]
mod tests;

pub(crate) use plan::{
    children, fmt_num, node_label, num, root_node, scan_target, text, top_level,
};
pub use shape::shape_hash;

use plan::{actuals, node_type};

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
        if let Some(finding) = buffers::reads_dominate_hits(root) {
            found.push((1, finding));
        }
    }
    found.sort_by(|(a_order, a), (b_order, b)| {
        b.severity.cmp(&a.severity).then(a_order.cmp(b_order))
    });
    found.into_iter().map(|(_, finding)| finding).collect()
}

/// Statement-wide heuristics: they read the top-level object, not a node.
fn query_findings(top: &Map<String, Value>) -> Vec<Finding> {
    [
        overhead::planning_dominates(top),
        overhead::jit_dominates(top),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Warning below `critical_at`, critical from it on: the two-level scale most
/// heuristics use.
fn severity_at(value: f64, critical_at: f64) -> Severity {
    if value >= critical_at {
        Severity::Critical
    } else {
        Severity::Warning
    }
}

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
        estimates::row_misestimate(node, at),
        scans::seq_scan_large_filter(node, at),
        spills::sort_spill(node, at),
        spills::hash_spill(node, at),
        spills::hashagg_spill(node, at),
        joins::nested_loop_many_loops(node, at),
        spills::lossy_bitmap(node, at),
        scans::index_only_heap_fetches(node, at),
        overhead::parallel_workers_not_launched(node, at),
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
