//! A plan for humans (pure).
//!
//! Renders an `EXPLAIN (FORMAT JSON)` plan as the indented tree psql prints for
//! `EXPLAIN` in text format, so people read it the way they are used to: one line per
//! node with costs (and actual times with ANALYZE), indented details under it
//! (conditions, sort and hash methods, buffers), then the statement totals and the
//! findings from [`crate::explain::findings`]. Missing or mistyped keys are skipped.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::explain::findings::{
    Finding, children, fmt_num, node_label, num, root_node, scan_target, text, top_level,
};

/// Same cap as the heuristics: deeper input is malformed and is not followed.
const MAX_DEPTH: usize = 256;

/// Expression details, in psql's order, each followed by the counter of rows it
/// removed (psql shows a removal count right under the condition that caused it).
const CONDITIONS: &[(&str, Option<&str>)] = &[
    ("Cache Key", None),
    ("Function Call", None),
    ("Table Function Call", None),
    ("TID Cond", None),
    ("Index Cond", Some("Rows Removed by Index Recheck")),
    ("Order By", None),
    ("Recheck Cond", Some("Rows Removed by Index Recheck")),
    ("Merge Cond", None),
    ("Hash Cond", None),
    ("Join Filter", Some("Rows Removed by Join Filter")),
    ("One-Time Filter", None),
    ("Filter", Some("Rows Removed by Filter")),
];

/// List-valued details, shown comma-separated.
const LISTS: &[&str] = &["Output", "Group Key", "Sort Key", "Presorted Key"];

/// Renders the plan as psql-style text followed by a "Findings:" section.
///
/// `findings` is usually `findings::findings(plan)`; each one is listed as
/// `[severity] id at <node path>: explanation — action`. Input that holds no plan
/// renders as `(no plan)`.
pub fn render_tree(plan: &Value, findings: &[Finding]) -> String {
    let mut out = String::new();
    let top = top_level(plan);
    match top.and_then(root_node) {
        Some(root) => render_node(root, 0, &mut out),
        None => out.push_str("(no plan)\n"),
    }
    if let Some(top) = top {
        render_totals(top, &mut out);
    }
    render_findings(findings, &mut out);
    out
}

// ---------------------------------------------------------------------------
// Nodes.

fn render_node(node: &Map<String, Value>, depth: usize, out: &mut String) {
    if depth > MAX_DEPTH {
        return;
    }
    let _ = writeln!(out, "{}{}", arrow(depth), node_line(node));
    node_details(node).iter().for_each(|line| {
        let _ = writeln!(out, "{}{line}", detail_indent(depth));
    });
    for child in children(node) {
        // psql names subplans and init plans on a line of their own above them.
        if let Some(name) = text(child, "Subplan Name") {
            let _ = writeln!(out, "{}{name}", detail_indent(depth));
        }
        render_node(child, depth + 1, out);
    }
}

/// psql's layout: children start with "->  " two columns in from the parent's
/// details, and their own details line up six columns in from the arrow's start.
fn arrow(depth: usize) -> String {
    match depth {
        0 => String::new(),
        _ => format!("{}->  ", " ".repeat(6 * (depth - 1) + 2)),
    }
}

fn detail_indent(depth: usize) -> String {
    " ".repeat(6 * depth + 2)
}

/// "Index Scan using orders_pkey on orders o  (cost=…) (actual time=…)".
fn node_line(node: &Map<String, Value>) -> String {
    let mut line = node_label(node);
    if let Some(alias) = alias_shown(node) {
        let _ = write!(line, " {alias}");
    }
    if let Some(costs) = costs(node) {
        let _ = write!(line, "  {costs}");
    }
    if let Some(actual) = actuals(node) {
        let _ = write!(line, " {actual}");
    }
    line
}

/// psql shows the alias only when it differs from what the scan reads.
fn alias_shown(node: &Map<String, Value>) -> Option<&str> {
    let alias = text(node, "Alias")?;
    match scan_target(node) {
        Some(target) if target != alias => Some(alias),
        _ => None,
    }
}

fn costs(node: &Map<String, Value>) -> Option<String> {
    let startup = num(node, "Startup Cost")?;
    let total = num(node, "Total Cost")?;
    let rows = num(node, "Plan Rows")
        .map(fmt_num)
        .unwrap_or_else(|| "?".to_owned());
    let width = num(node, "Plan Width")
        .map(fmt_num)
        .unwrap_or_else(|| "?".to_owned());
    Some(format!(
        "(cost={startup:.2}..{total:.2} rows={rows} width={width})"
    ))
}

fn actuals(node: &Map<String, Value>) -> Option<String> {
    let loops = num(node, "Actual Loops")?;
    if loops == 0.0 {
        return Some("(never executed)".to_owned());
    }
    let rows = num(node, "Actual Rows")
        .map(fmt_num)
        .unwrap_or_else(|| "?".to_owned());
    let loops = fmt_num(loops);
    // Without TIMING there are rows and loops but no times.
    match (
        num(node, "Actual Startup Time"),
        num(node, "Actual Total Time"),
    ) {
        (Some(start), Some(end)) => Some(format!(
            "(actual time={start:.3}..{end:.3} rows={rows} loops={loops})"
        )),
        _ => Some(format!("(actual rows={rows} loops={loops})")),
    }
}

fn node_details(node: &Map<String, Value>) -> Vec<String> {
    let mut lines = Vec::new();
    for key in LISTS {
        if let Some(items) = list(node, key) {
            lines.push(format!("{key}: {items}"));
        }
    }
    for (key, removed_key) in CONDITIONS {
        let Some(condition) = text(node, key) else {
            continue;
        };
        lines.push(format!("{key}: {condition}"));
        // The recheck counter belongs under whichever of the two conditions is shown.
        if let Some(removed) = removed_key.and_then(|k| num(node, k)).filter(|&n| n > 0.0) {
            let removed_line = format!("{}: {}", removed_key.unwrap_or_default(), fmt_num(removed));
            if !lines.contains(&removed_line) {
                lines.push(removed_line);
            }
        }
    }
    lines.extend(
        [
            sort_method(node),
            hash_buckets(node),
            hashagg_usage(node),
            memoize_usage(node),
            heap_blocks(node),
        ]
        .into_iter()
        .flatten(),
    );
    for key in [
        "Index Searches",
        "Heap Fetches",
        "Workers Planned",
        "Workers Launched",
    ] {
        if let Some(n) = num(node, key) {
            lines.push(format!("{key}: {}", fmt_num(n)));
        }
    }
    lines.extend(buffers(node));
    lines
}

/// A string, or an array of strings joined the way psql joins them.
fn list(node: &Map<String, Value>, key: &str) -> Option<String> {
    match node.get(key)? {
        Value::String(item) => Some(item.clone()),
        Value::Array(items) => {
            let items: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            (!items.is_empty()).then(|| items.join(", "))
        }
        _ => None,
    }
}

fn sort_method(node: &Map<String, Value>) -> Option<String> {
    let method = text(node, "Sort Method")?;
    let space = match (text(node, "Sort Space Type"), num(node, "Sort Space Used")) {
        (Some(kind), Some(kb)) => format!("  {kind}: {}kB", fmt_num(kb)),
        _ => String::new(),
    };
    Some(format!("Sort Method: {method}{space}"))
}

fn hash_buckets(node: &Map<String, Value>) -> Option<String> {
    let buckets = num(node, "Hash Buckets")?;
    let batches = num(node, "Hash Batches")?;
    let mut line = format!(
        "Buckets: {}{}",
        fmt_num(buckets),
        originally(node, "Original Hash Buckets", buckets)
    );
    let _ = write!(
        line,
        "  Batches: {}{}",
        fmt_num(batches),
        originally(node, "Original Hash Batches", batches)
    );
    if let Some(kb) = num(node, "Peak Memory Usage") {
        let _ = write!(line, "  Memory Usage: {}kB", fmt_num(kb));
    }
    Some(line)
}

fn originally(node: &Map<String, Value>, key: &str, now: f64) -> String {
    match num(node, key) {
        Some(before) if before != now => format!(" (originally {})", fmt_num(before)),
        _ => String::new(),
    }
}

fn hashagg_usage(node: &Map<String, Value>) -> Option<String> {
    let batches = num(node, "HashAgg Batches")?;
    let mut line = format!("Batches: {}", fmt_num(batches));
    if let Some(kb) = num(node, "Peak Memory Usage") {
        let _ = write!(line, "  Memory Usage: {}kB", fmt_num(kb));
    }
    if let Some(kb) = num(node, "Disk Usage").filter(|&kb| kb > 0.0) {
        let _ = write!(line, "  Disk Usage: {}kB", fmt_num(kb));
    }
    Some(line)
}

fn memoize_usage(node: &Map<String, Value>) -> Option<String> {
    let hits = num(node, "Cache Hits")?;
    let misses = num(node, "Cache Misses")?;
    let mut line = format!("Hits: {}  Misses: {}", fmt_num(hits), fmt_num(misses));
    for (key, label) in [
        ("Cache Evictions", "Evictions"),
        ("Cache Overflows", "Overflows"),
    ] {
        if let Some(n) = num(node, key) {
            let _ = write!(line, "  {label}: {}", fmt_num(n));
        }
    }
    if let Some(kb) = num(node, "Peak Memory Usage") {
        let _ = write!(line, "  Memory Usage: {}kB", fmt_num(kb));
    }
    Some(line)
}

fn heap_blocks(node: &Map<String, Value>) -> Option<String> {
    let exact = num(node, "Exact Heap Blocks").unwrap_or(0.0);
    let lossy = num(node, "Lossy Heap Blocks").unwrap_or(0.0);
    // Like psql, say nothing when the scan touched no pages.
    if exact == 0.0 && lossy == 0.0 {
        return None;
    }
    let mut line = "Heap Blocks:".to_owned();
    if exact > 0.0 {
        let _ = write!(line, " exact={}", fmt_num(exact));
    }
    if lossy > 0.0 {
        let _ = write!(line, " lossy={}", fmt_num(lossy));
    }
    Some(line)
}

/// "Buffers: shared hit=12 read=2, temp written=5", non-zero counters only.
fn buffers(node: &Map<String, Value>) -> Option<String> {
    let groups: Vec<String> = ["Shared", "Local", "Temp"]
        .iter()
        .filter_map(|group| {
            let counters: Vec<String> = ["Hit", "Read", "Dirtied", "Written"]
                .iter()
                .filter_map(|counter| {
                    let n = num(node, &format!("{group} {counter} Blocks")).filter(|&n| n > 0.0)?;
                    Some(format!("{}={}", counter.to_ascii_lowercase(), fmt_num(n)))
                })
                .collect();
            (!counters.is_empty())
                .then(|| format!("{} {}", group.to_ascii_lowercase(), counters.join(" ")))
        })
        .collect();
    (!groups.is_empty()).then(|| format!("Buffers: {}", groups.join(", ")))
}

// ---------------------------------------------------------------------------
// Statement totals.

fn render_totals(top: &Map<String, Value>, out: &mut String) {
    if let Some(settings) = settings(top) {
        let _ = writeln!(out, "Settings: {settings}");
    }
    if let Some(planning_buffers) = top
        .get("Planning")
        .and_then(Value::as_object)
        .and_then(buffers)
    {
        let _ = writeln!(out, "Planning:\n  {planning_buffers}");
    }
    if let Some(ms) = num(top, "Planning Time") {
        let _ = writeln!(out, "Planning Time: {ms:.3} ms");
    }
    for trigger in top
        .get("Triggers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
    {
        let _ = writeln!(out, "{}", trigger_line(trigger));
    }
    if let Some(jit) = top.get("JIT").and_then(Value::as_object) {
        render_jit(jit, out);
    }
    if let Some(ms) = num(top, "Execution Time") {
        let _ = writeln!(out, "Execution Time: {ms:.3} ms");
    }
}

fn settings(top: &Map<String, Value>) -> Option<String> {
    let settings = top.get("Settings")?.as_object()?;
    let pairs: Vec<String> = settings
        .iter()
        .filter_map(|(name, value)| Some(format!("{name} = '{}'", value.as_str()?)))
        .collect();
    (!pairs.is_empty()).then(|| pairs.join(", "))
}

fn trigger_line(trigger: &Map<String, Value>) -> String {
    let mut line = format!("Trigger {}", text(trigger, "Trigger Name").unwrap_or("?"));
    if let Some(constraint) = text(trigger, "Constraint Name") {
        let _ = write!(line, " for constraint {constraint}");
    }
    if let Some(relation) = text(trigger, "Relation") {
        let _ = write!(line, " on {relation}");
    }
    let time = num(trigger, "Time")
        .map(|ms| format!("{ms:.3}"))
        .unwrap_or_else(|| "?".to_owned());
    let calls = num(trigger, "Calls")
        .map(fmt_num)
        .unwrap_or_else(|| "?".to_owned());
    line + &format!(": time={time} calls={calls}")
}

fn render_jit(jit: &Map<String, Value>, out: &mut String) {
    out.push_str("JIT:\n");
    if let Some(functions) = num(jit, "Functions") {
        let _ = writeln!(out, "  Functions: {}", fmt_num(functions));
    }
    // serde_json maps are sorted by key, so psql's order is restored explicitly.
    if let Some(options) = jit.get("Options").and_then(Value::as_object) {
        let options: Vec<String> = ["Inlining", "Optimization", "Expressions", "Deforming"]
            .iter()
            .filter_map(|name| Some(format!("{name} {}", options.get(*name)?.as_bool()?)))
            .collect();
        let _ = writeln!(out, "  Options: {}", options.join(", "));
    }
    if let Some(timing) = jit.get("Timing").and_then(Value::as_object) {
        let phases: Vec<String> = [
            "Generation",
            "Inlining",
            "Optimization",
            "Emission",
            "Total",
        ]
        .iter()
        .filter_map(|phase| jit_phase(phase, timing.get(*phase)?))
        .collect();
        let _ = writeln!(out, "  Timing: {}", phases.join(", "));
    }
}

/// One JIT phase. PostgreSQL 17 turned "Generation" into an object with its own
/// "Deform" and "Total"; older versions print a plain number.
fn jit_phase(phase: &str, ms: &Value) -> Option<String> {
    match ms {
        Value::Object(parts) => {
            let total = num(parts, "Total")?;
            let deform = num(parts, "Deform")
                .map(|d| format!(" (Deform {d:.3} ms)"))
                .unwrap_or_default();
            Some(format!("{phase} {total:.3} ms{deform}"))
        }
        _ => ms.as_f64().map(|ms| format!("{phase} {ms:.3} ms")),
    }
}

// ---------------------------------------------------------------------------
// Findings.

fn render_findings(findings: &[Finding], out: &mut String) {
    out.push('\n');
    if findings.is_empty() {
        out.push_str("Findings: none\n");
        return;
    }
    out.push_str("Findings:\n");
    for finding in findings {
        let _ = writeln!(
            out,
            "  [{}] {} at {}: {} — {}",
            finding.severity.as_str(),
            finding.id,
            finding.node_path,
            finding.explanation,
            finding.action
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::findings::findings;

    fn load(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    fn render(text: &str) -> String {
        let plan = load(text);
        render_tree(&plan, &findings(&plan))
    }

    #[test]
    fn analyzed_plan_renders_like_psql() {
        let text = render(include_str!("fixtures/healthy_top_n.json"));
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        assert!(
            first.starts_with("Limit  (cost=")
                && first.contains(" rows=10 width=14) (actual time="),
            "{text}"
        );
        assert!(first.ends_with(" rows=10 loops=1)"), "{text}");
        assert_eq!(
            lines.next(),
            Some("  Buffers: shared hit=12 read=2"),
            "{text}"
        );
        assert!(
            lines
                .next()
                .unwrap_or_default()
                .starts_with("  ->  Sort  (cost="),
            "{text}"
        );
        for line in [
            "        Sort Key: amount DESC\n",
            "        Sort Method: top-N heapsort  Memory: 25kB\n",
            "        ->  Index Scan using orders_pkey on orders  (cost=",
            "              Index Cond: ((id >= 1000) AND (id <= 1200))\n",
            "\nPlanning Time: ",
            "\nExecution Time: ",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("Findings: none\n"), "{text}");
    }

    #[test]
    fn findings_are_listed_with_their_node() {
        let text = render(include_str!("fixtures/seq_scan_large_filter.json"));
        for line in [
            "Gather  (cost=",
            "  Workers Planned: 2\n  Workers Launched: 2\n",
            "  ->  Parallel Seq Scan on orders  (cost=",
            "        Filter: ((customer_id = 4242) AND (status = 'paid'::text))\n        Rows Removed by Filter: 100000\n",
            "\nFindings:\n  [warning] seq_scan_large_filter at Gather > Parallel Seq Scan on orders: sequential scan read 300000 rows",
            " — consider an index on orders (customer_id, status)\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn spills_subplans_and_jit_render() {
        let sort = render(include_str!("fixtures/sort_spill.json"));
        assert!(
            sort.contains("  Sort Method: external merge  Disk: "),
            "{sort}"
        );
        let hash = render(include_str!("fixtures/hash_spill.json"));
        assert!(
            hash.contains("Buckets: ") && hash.contains("Batches: 16"),
            "{hash}"
        );
        let lossy = render(include_str!("fixtures/lossy_bitmap.json"));
        assert!(
            lossy.contains("Heap Blocks: exact=") && lossy.contains(" lossy=2578\n"),
            "{lossy}"
        );
        let subplan = render(include_str!("fixtures/redact_verbose_literals.json"));
        assert!(
            subplan.contains("\n              SubPlan 1\n              ->  Gather"),
            "{subplan}"
        );
        assert!(
            subplan.contains("Seq Scan on customers c  (cost="),
            "{subplan}"
        );
        let jit = render(include_str!("fixtures/jit_dominates.json"));
        assert!(
            jit.contains("JIT:\n  Functions: 9\n  Options: Inlining true"),
            "{jit}"
        );
        let total =
            load(include_str!("fixtures/jit_dominates.json"))[0]["JIT"]["Timing"]["Total"].as_f64();
        let total = format!(" Total {:.3} ms\n", total.unwrap_or_default());
        assert!(
            jit.contains("  Timing: Generation ") && jit.contains(&total),
            "{jit}"
        );
        assert!(
            jit.contains("[warning] jit_dominates at (query): "),
            "{jit}"
        );
        let memo = render(include_str!("fixtures/pg18/nested_loop_memoize.json"));
        assert!(
            memo.contains("rows=0.25 loops=20000)") && memo.contains("Hits: 280000  Misses: 20000"),
            "{memo}"
        );
    }

    #[test]
    fn plain_explain_has_costs_only() {
        let text = render(include_str!("fixtures/no_analyze_seq_scan.json"));
        assert!(text.starts_with("Sort  (cost="), "{text}");
        assert!(
            !text.contains("actual") && !text.contains("Execution Time"),
            "{text}"
        );
        assert!(
            text.contains("->  Parallel Seq Scan on orders  (cost="),
            "{text}"
        );
    }

    #[test]
    fn postgres_17_jit_generation_object() {
        let timing = serde_json::json!({"Deform": 0.5, "Total": 2.25});
        assert_eq!(
            jit_phase("Generation", &timing).as_deref(),
            Some("Generation 2.250 ms (Deform 0.500 ms)")
        );
        assert_eq!(
            jit_phase("Total", &Value::from(3)).as_deref(),
            Some("Total 3.000 ms")
        );
        assert_eq!(jit_phase("Total", &Value::from("x")), None);
    }

    #[test]
    fn malformed_input_renders_without_panicking() {
        for input in [
            "null",
            "{}",
            "[]",
            "\"plan\"",
            "[{\"Plan\": 3}]",
            "[{\"Plan\": {\"Node Type\": 1, \"Plans\": [null, {\"Filter\": 5}], \"Sort Key\": [1, 2]}}]",
            "[{\"Plan\": {\"Node Type\": \"Hash\", \"Hash Buckets\": -1, \"Actual Loops\": 0}, \"JIT\": 1, \"Triggers\": [{}]}]",
        ] {
            let text = render(input);
            assert!(text.ends_with("Findings: none\n"), "{input}: {text}");
        }
        assert_eq!(render("null"), "(no plan)\n\nFindings: none\n");
        let never = render(
            "[{\"Plan\": {\"Node Type\": \"Hash\", \"Actual Loops\": 0}, \"Triggers\": [{}]}]",
        );
        assert_eq!(
            never,
            "Hash (never executed)\nTrigger ?: time=? calls=?\n\nFindings: none\n"
        );
    }
}
