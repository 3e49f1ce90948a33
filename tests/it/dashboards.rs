//! Every PromQL expression the project ships — the panels and variables of
//! `dashboards/*.json` and the rules of `alerts/*.yml` — parses (promtool),
//! names only metrics that `docs/metrics.md` documents, and, for the metrics
//! documented as always present, finds them in a real run (in both the 0.0.4
//! text and the OpenMetrics that Prometheus asks for, histograms with their
//! `+Inf` bucket). Plus the dashboards' shape: the variables, and the
//! datasource variable everywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Fixture, Metrics, RunningAgent, http};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The dashboards the README promises.
const DASHBOARDS: [&str; 6] = [
    "overview.json",
    "queries.json",
    "replication.json",
    "storage.json",
    "pool.json",
    "redis.json",
];

/// Panel types the dashboards may use (current Grafana, no `graph`).
const PANEL_TYPES: [&str; 5] = ["row", "timeseries", "stat", "table", "bargauge"];

/// Series Prometheus itself makes, not the agent.
const PROMETHEUS_OWN: [&str; 3] = ["up", "ALERTS", "ALERTS_FOR_STATE"];

/// PromQL aggregation operators (followed by `by`/`without` or `(`).
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Other words that are not metric names.
const KEYWORDS: [&str; 8] = [
    "offset", "bool", "and", "or", "unless", "atan2", "inf", "nan",
];

/// The datasource every panel and target must use.
fn datasource_ref() -> Value {
    serde_json::json!({"type": "prometheus", "uid": "${datasource}"})
}

// ---------------------------------------------------------------- sources

/// One PromQL expression and where it comes from.
#[derive(Debug, Clone)]
struct Expr {
    origin: String,
    text: String,
}

fn dashboard_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("dashboards"))
        .expect("read dashboards/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn load_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn short(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// All panels of a dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn variables(dashboard: &Value) -> &[Value] {
    dashboard["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A query variable's query text (a string, or `{"query": ...}`).
fn variable_query(var: &Value) -> Option<&str> {
    var["query"]
        .as_str()
        .or_else(|| var["query"]["query"].as_str())
}

/// The series selector of `label_values(SELECTOR, label)`, if it has one.
fn label_values_selector(query: &str) -> Option<&str> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let comma = inner.rfind(',')?;
    Some(inner[..comma].trim())
}

fn dashboard_exprs() -> Vec<Expr> {
    let mut out = Vec::new();
    for file in dashboard_files() {
        let name = short(&file);
        let dashboard = load_json(&file);
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(Expr {
                        origin: format!(
                            "{name}: panel {title:?}, query {}",
                            target["refId"].as_str().unwrap_or("?")
                        ),
                        text: expr.to_string(),
                    });
                }
            }
        }
        for var in variables(&dashboard) {
            if var["type"] != "query" {
                continue;
            }
            if let Some(selector) = variable_query(var).and_then(label_values_selector) {
                out.push(Expr {
                    origin: format!("{name}: variable ${}", var["name"].as_str().unwrap_or("?")),
                    text: selector.to_string(),
                });
            }
        }
    }
    out
}

/// Prometheus rules files under `alerts/`: YAML with top-level `groups:`
/// (not the `rule_files:` of a `promtool test rules` file).
fn rules_files() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(Path::new(ROOT).join("alerts")) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            text.lines().any(|l| l.starts_with("groups:"))
                && !text.lines().any(|l| l.starts_with("rule_files:"))
        })
        .collect();
    files.sort();
    files
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// A YAML line's key and value, with the column of the key (after a
/// sequence dash): `  - expr: x` gives `(4, "expr", "x")`.
fn yaml_key(line: &str) -> Option<(usize, &str, &str)> {
    let mut col = indent(line);
    let mut rest = line.trim_start();
    if let Some(after) = rest.strip_prefix('-') {
        if !after.is_empty() && !after.starts_with(' ') {
            return None;
        }
        col += 1 + indent(after);
        rest = after.trim_start();
    }
    let (key, value) = rest.split_once(':')?;
    let key = key.trim();
    if key.is_empty() || key.contains(' ') || key.starts_with('#') {
        return None;
    }
    Some((col, key, value.trim()))
}

/// The value of a plain (unquoted) scalar: up to a ` #` comment.
fn strip_comment(value: &str) -> &str {
    value.find(" #").map_or(value, |i| &value[..i]).trim()
}

/// The values of `key:` entries in a YAML text, with their line numbers:
/// inline (plain, single- or double-quoted) and block (`|`, `>`) scalars,
/// by line scanning (no YAML library in the dependencies).
fn yaml_values(text: &str, wanted: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some((col, key, value)) = yaml_key(lines[i]) else {
            i += 1;
            continue;
        };
        if key != wanted {
            i += 1;
            continue;
        }
        let line_no = i + 1;
        i += 1;
        // Lines that belong to this value: blank or indented past the key.
        let mut more = Vec::new();
        while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > col) {
            more.push(lines[i]);
            i += 1;
        }
        while more.last().is_some_and(|l| l.trim().is_empty()) {
            more.pop();
        }
        let parsed = if value.starts_with('|') || value.starts_with('>') {
            more.iter().map(|l| l.trim()).collect::<Vec<_>>().join("\n")
        } else if value.starts_with('"') {
            let joined = std::iter::once(value)
                .chain(more.iter().map(|l| l.trim()))
                .collect::<Vec<_>>()
                .join(" ");
            serde_json::from_str::<String>(joined.trim())
                .unwrap_or_else(|_| joined.trim().trim_matches('"').to_string())
        } else if let Some(quoted) = value.strip_prefix('\'') {
            let joined = std::iter::once(quoted)
                .chain(more.iter().map(|l| l.trim()))
                .collect::<Vec<_>>()
                .join(" ");
            joined
                .trim()
                .strip_suffix('\'')
                .unwrap_or(joined.trim())
                .replace("''", "'")
        } else {
            std::iter::once(strip_comment(value))
                .chain(
                    more.iter()
                        .map(|l| l.trim())
                        .filter(|l| !l.starts_with('#'))
                        .map(strip_comment),
                )
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.push((line_no, parsed));
    }
    out
}

fn rule_exprs() -> Vec<Expr> {
    let mut out = Vec::new();
    for file in rules_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, expr) in yaml_values(&text, "expr") {
            out.push(Expr {
                origin: format!("{}:{line}", short(&file)),
                text: expr,
            });
        }
    }
    out
}

/// Names that the rules files record (recording rules).
fn recorded_names() -> BTreeSet<String> {
    rules_files()
        .iter()
        .flat_map(|f| yaml_values(&std::fs::read_to_string(f).unwrap(), "record"))
        .map(|(_, name)| name)
        .collect()
}

fn all_exprs() -> Vec<Expr> {
    let mut exprs = dashboard_exprs();
    exprs.extend(rule_exprs());
    exprs
}

// ---------------------------------------------------------------- PromQL

/// Grafana's variables replaced by values Prometheus accepts: the interval
/// variables by `5m`, every other variable (they sit in regex matchers) by
/// `.*`.
fn substitute(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, len) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (inner[..end].split(':').next().unwrap_or(""), end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..end];
            // `$1` in a label_replace replacement is not a variable.
            if name.starts_with(|c: char| c.is_ascii_digit()) {
                ("", 0)
            } else {
                (name, end)
            }
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(match name {
            "__rate_interval" | "__interval" | "__range" => "5m",
            _ => ".*",
        });
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// A metric selector in an expression: its name and the text between its
/// braces (empty without).
#[derive(Debug, PartialEq)]
struct Selector {
    name: String,
    matchers: String,
}

fn skip_string(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// The index just past the bracket closing the one at `start`, skipping
/// strings.
fn skip_group(b: &[u8], start: usize) -> usize {
    let (open, close) = (
        b[start],
        match b[start] {
            b'(' => b')',
            b'{' => b'}',
            _ => b']',
        },
    );
    let mut depth = 0;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The metric selectors of a PromQL expression: identifiers that are not
/// functions, aggregations, keywords, label names (in `{}` and in
/// `by`/`on`/`group_left`... lists), strings, numbers or durations.
fn selectors(expr: &str) -> Vec<Selector> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            i = skip_string(b, i);
        } else if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'{' || c == b'[' {
            i = skip_group(b, i);
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            let lower = word.to_ascii_lowercase();
            let next = skip_space(b, i);
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if b.get(next) == Some(&b'(') {
                    i = skip_group(b, next);
                }
            } else if KEYWORDS.contains(&lower.as_str())
                || AGGREGATIONS.contains(&lower.as_str())
                || b.get(next) == Some(&b'(')
            {
                // A keyword, an aggregation or a function call.
            } else if b.get(next) == Some(&b'{') {
                let end = skip_group(b, next);
                out.push(Selector {
                    name: word.to_string(),
                    matchers: expr[next + 1..end.saturating_sub(1).max(next + 1)].to_string(),
                });
                i = end;
            } else {
                out.push(Selector {
                    name: word.to_string(),
                    matchers: String::new(),
                });
            }
        } else {
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------- docs

/// A metric of docs/metrics.md.
struct Documented {
    kind: String,
    conditional: bool,
}

/// docs/metrics.md's table rows: "| `name` | type | labels | meaning |".
fn documented() -> BTreeMap<String, Documented> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docs/metrics.md"))
        .expect("read docs/metrics.md");
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').collect();
            let name = cells.get(1)?.trim().trim_matches('`');
            Some((
                name.to_string(),
                Documented {
                    kind: cells.get(2)?.trim().to_string(),
                    conditional: line.contains("Present only when"),
                },
            ))
        })
        .collect()
}

/// What a name in an expression refers to.
#[derive(Debug, PartialEq)]
enum Ref {
    /// A documented metric (a histogram's series map to the histogram).
    Documented(String),
    /// A recording rule of alerts/, or a series Prometheus makes.
    NotTheAgents,
    /// Nothing known.
    Unknown,
}

fn resolve(name: &str, docs: &BTreeMap<String, Documented>, recorded: &BTreeSet<String>) -> Ref {
    if recorded.contains(name) || PROMETHEUS_OWN.contains(&name) {
        return Ref::NotTheAgents;
    }
    if docs.contains_key(name) {
        return Ref::Documented(name.to_string());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && docs.get(base).is_some_and(|d| d.kind == "histogram")
        {
            return Ref::Documented(base.to_string());
        }
    }
    Ref::Unknown
}

// ---------------------------------------------------------------- promtool

fn promtool(file: &Path) -> Result<(), String> {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool (apt-get install prometheus provides it): {e}")
        });
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A rules file with each expression as a recording rule. JSON strings are
/// valid YAML double-quoted scalars.
fn write_rules(file: &Path, exprs: &[&Expr]) {
    let mut yaml = String::from("groups:\n  - name: pgvigil-expressions\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        yaml.push_str(&format!(
            "      - record: pgvigil_check:expr_{i}\n        expr: {}\n",
            serde_json::to_string(&substitute(&e.text)).unwrap()
        ));
    }
    std::fs::write(file, yaml).expect("write rules file");
}

// ---------------------------------------------------------------- tests

#[test]
fn grafana_variables_are_substituted() {
    assert_eq!(
        substitute(
            r#"rate(x{instance=~"$instance", t=~"${target}", d=~"${db:regex}"}[$__rate_interval])"#
        ),
        r#"rate(x{instance=~".*", t=~".*", d=~".*"}[5m])"#
    );
    assert_eq!(
        substitute(r#"label_replace(x[$__range], "a", "$1", "b", "(.*)")"#),
        r#"label_replace(x[5m], "a", "$1", "b", "(.*)")"#
    );
}

#[test]
fn selectors_skip_strings_labels_functions_and_keywords() {
    let names = |e: &str| -> Vec<String> { selectors(e).into_iter().map(|s| s.name).collect() };
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, queryid) (rate(a_seconds_bucket{x="y, z", w=~"q{1}"}[5m:1m] offset 1h)))
               / on (instance) group_left (query) b_info * 2 > bool 1e3
               unless c:recorded # a comment naming d
               or sum(e) without (f) or topk(5, g) and label_replace(h, "i", "$1", "j", "(.*)")
               or count_values("k", l) or vector(0) or m @ 1609746000 or -n > Inf"#
        ),
        [
            "a_seconds_bucket",
            "b_info",
            "c:recorded",
            "e",
            "g",
            "h",
            "l",
            "m",
            "n"
        ]
    );
    assert_eq!(names("x * on(a) group_left y"), ["x", "y"]);
    assert_eq!(
        selectors(r#"pg_up {instance=~"$instance"} == 0"#),
        [Selector {
            name: "pg_up".into(),
            matchers: r#"instance=~"$instance""#.into()
        }]
    );
}

#[test]
fn rule_expressions_are_read_from_inline_and_block_scalars() {
    let yaml = r#"groups:
  - name: g
    rules:
      - record: job:a:rate5m
        expr: sum(rate(a_total[5m])) # a comment
      - alert: B
        expr: |
          b > 1
            and c
        for: 5m
      - alert: C
        expr: >-
          c
          > 2
        labels:
          severity: page
      - expr: "d{x=\"y\"} == 0"
        alert: D
      - alert: E
        expr: 'e{x=''y''} < 1'
      - alert: F
        expr: f
          unless g
        annotations:
          summary: "expr: not this"
"#;
    assert_eq!(
        yaml_values(yaml, "expr"),
        [
            (5, "sum(rate(a_total[5m]))".to_string()),
            (7, "b > 1\nand c".to_string()),
            (12, "c\n> 2".to_string()),
            (17, r#"d{x="y"} == 0"#.to_string()),
            (20, "e{x='y'} < 1".to_string()),
            (22, "f unless g".to_string()),
        ]
    );
    assert_eq!(
        yaml_values(yaml, "record"),
        [(4, "job:a:rate5m".to_string())]
    );
}

#[test]
fn dashboards_have_the_variables_and_use_the_datasource_variable_everywhere() {
    let ds = datasource_ref();
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for name in DASHBOARDS {
        let file = Path::new(ROOT).join("dashboards").join(name);
        let d = load_json(&file);
        let mut problem = |p: String| problems.push(format!("{name}: {p}"));
        if d["schemaVersion"].as_u64().unwrap_or(0) < 39 {
            problem(format!("schemaVersion {} < 39", d["schemaVersion"]));
        }
        match d["uid"].as_str() {
            Some(uid) if !uid.is_empty() => {
                if !uids.insert(uid.to_string()) {
                    problem(format!("uid {uid} used twice"));
                }
            }
            _ => problem("no uid".into()),
        }
        if d["title"].as_str().is_none_or(str::is_empty) {
            problem("no title".into());
        }
        if !d["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "pgvigil"))
        {
            problem("not tagged pgvigil".into());
        }

        let vars = variables(&d);
        let var = |n: &str| vars.iter().find(|v| v["name"] == n);
        match var("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => problem("no datasource variable of type datasource, query prometheus".into()),
        }
        // The Redis dashboard picks Redis targets: they have redis_up, not pg_up.
        let up = if name == "redis.json" {
            "redis_up"
        } else {
            "pg_up"
        };
        for (n, query) in [
            ("instance", format!("label_values({up}, instance)")),
            (
                "target",
                format!(r#"label_values({up}{{instance=~"$instance"}}, target)"#),
            ),
        ] {
            let query = query.as_str();
            match var(n) {
                Some(v)
                    if v["type"] == "query"
                        && variable_query(v) == Some(query)
                        && v["includeAll"] == true
                        && v["allValue"] == ".*" => {}
                _ => problem(format!(
                    "variable {n} must be a query variable {query} with includeAll and allValue .*"
                )),
            }
        }
        for v in vars.iter().filter(|v| v["type"] == "query") {
            if v["datasource"] != ds {
                problem(format!(
                    "variable {} does not use ${{datasource}}",
                    v["name"]
                ));
            }
        }

        let mut ids = BTreeSet::new();
        let mut queries = 0;
        let mut uses_pgbouncer = false;
        for panel in panels(&d) {
            let title = panel["title"].as_str().unwrap_or("?");
            let kind = panel["type"].as_str().unwrap_or("");
            if !PANEL_TYPES.contains(&kind) {
                problem(format!("panel {title:?} has type {kind:?}"));
            }
            if !ids.insert(panel["id"].as_u64()) {
                problem(format!("panel {title:?} has a missing or duplicate id"));
            }
            if kind == "row" {
                continue;
            }
            if panel["description"].as_str().is_none_or(str::is_empty) {
                problem(format!("panel {title:?} has no description"));
            }
            if panel["datasource"] != ds {
                problem(format!("panel {title:?} does not use ${{datasource}}"));
            }
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if targets.is_empty() {
                problem(format!("panel {title:?} has no queries"));
            }
            for t in targets {
                let id = t["refId"].as_str().unwrap_or("?");
                if t["datasource"] != ds {
                    problem(format!(
                        "panel {title:?} query {id} does not use ${{datasource}}"
                    ));
                }
                let Some(expr) = t["expr"].as_str().filter(|e| !e.trim().is_empty()) else {
                    problem(format!("panel {title:?} query {id} has no expr"));
                    continue;
                };
                queries += 1;
                // Every selector follows the instance and target variables
                // (process metrics and build info have no target label).
                for s in selectors(expr) {
                    let m: String = s.matchers.split_whitespace().collect();
                    let agent_wide =
                        s.name.starts_with("process_") || s.name == "pgvigil_build_info";
                    if !m.contains(r#"instance=~"$instance""#)
                        || (!agent_wide && !m.contains(r#"target=~"$target""#))
                    {
                        problem(format!(
                            "panel {title:?} query {id}: {} does not filter on $instance and $target",
                            s.name
                        ));
                    }
                    // PgBouncer series name their console: with several in front of one
                    // server, each is chosen and shown on its own.
                    if s.name.starts_with("pgbouncer_") {
                        uses_pgbouncer = true;
                        if !m.contains(r#"pgbouncer=~"$pgbouncer""#) {
                            problem(format!(
                                "panel {title:?} query {id}: {} does not filter on $pgbouncer",
                                s.name
                            ));
                        }
                    }
                }
            }
        }
        if queries == 0 {
            problem("no queries".into());
        }
        let pgbouncer_query =
            r#"label_values(pgbouncer_up{instance=~"$instance", target=~"$target"}, pgbouncer)"#;
        match var("pgbouncer") {
            Some(v)
                if v["type"] == "query"
                    && variable_query(v) == Some(pgbouncer_query)
                    && v["includeAll"] == true
                    && v["allValue"] == ".*" => {}
            Some(_) => problems.push(format!(
                "{name}: variable pgbouncer must be a query variable {pgbouncer_query} with includeAll and allValue .*"
            )),
            None if uses_pgbouncer => problems.push(format!(
                "{name}: PgBouncer panels without a pgbouncer variable"
            )),
            None => {}
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_expression_parses_with_promtool() {
    let exprs = all_exprs();
    assert!(
        exprs.len() >= DASHBOARDS.len(),
        "too few expressions found: {exprs:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("expressions.yml");
    let all: Vec<&Expr> = exprs.iter().collect();
    write_rules(&file, &all);
    let Err(combined) = promtool(&file) else {
        return;
    };
    // Find the culprits one by one, for a clear list.
    let mut rejected = Vec::new();
    for e in &exprs {
        let one = dir.path().join("one.yml");
        write_rules(&one, &[e]);
        if let Err(message) = promtool(&one) {
            let reason = message
                .lines()
                .filter(|l| l.contains("could not parse") || l.contains("parse error"))
                .collect::<Vec<_>>()
                .join(" ");
            rejected.push(format!(
                "{}\n    {}\n    {}",
                e.origin,
                e.text.replace('\n', " "),
                if reason.is_empty() {
                    message.trim()
                } else {
                    reason.trim()
                }
            ));
        }
    }
    panic!(
        "promtool rejects {} expression(s):\n{}\n\npromtool on all of them said:\n{combined}",
        rejected.len(),
        rejected.join("\n")
    );
}

#[test]
fn every_metric_the_expressions_use_is_documented() {
    let docs = documented();
    assert!(docs.len() > 50, "docs/metrics.md lists too few metrics");
    let recorded = recorded_names();
    let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = 0;
    for e in all_exprs() {
        for s in selectors(&substitute(&e.text)) {
            seen += 1;
            if resolve(&s.name, &docs, &recorded) == Ref::Unknown {
                unknown.entry(s.name).or_default().push(e.origin.clone());
            }
        }
    }
    assert!(seen > 0, "no metric names found in the expressions");
    let list: Vec<String> = unknown
        .iter()
        .map(|(name, origins)| format!("{name} (in {})", origins.join("; ")))
        .collect();
    assert!(
        list.is_empty(),
        "metrics used by dashboards or alerts but not in docs/metrics.md:\n{}",
        list.join("\n")
    );
}

/// The Accept header of a Prometheus 2.x scrape: OpenMetrics preferred.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// What a scrape lacks: `wanted` names not published, and `histograms`
/// without the `le="+Inf"` bucket that histogram_quantile() needs.
fn scrape_problems(
    m: &Metrics,
    format: &str,
    wanted: &BTreeMap<String, BTreeSet<String>>,
    histograms: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let published: BTreeSet<&str> = m
        .types
        .keys()
        .map(String::as_str)
        .chain(m.samples.iter().map(|s| s.name.as_str()))
        .collect();
    let used_in =
        |origins: &BTreeSet<String>| origins.iter().cloned().collect::<Vec<_>>().join("; ");
    let mut problems = Vec::new();
    for (name, origins) in wanted {
        if !published.contains(name.as_str()) {
            problems.push(format!(
                "{format}: {name} is not published (used in {})",
                used_in(origins)
            ));
        }
    }
    for (name, origins) in histograms {
        let bucket = format!("{name}_bucket");
        let buckets: Vec<_> = m.find(&bucket, &[]).collect();
        if buckets.is_empty() {
            problems.push(format!(
                "{format}: histogram {name} has no buckets (used in {})",
                used_in(origins)
            ));
        } else if !buckets
            .iter()
            .any(|b| b.labels.get("le").map(String::as_str) == Some("+Inf"))
        {
            problems.push(format!(
                "{format}: histogram {name} has no le=\"+Inf\" bucket, so histogram_quantile() returns NaN (used in {})",
                used_in(origins)
            ));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_run_publishes_what_the_expressions_use() {
    let docs = documented();
    let recorded = recorded_names();
    // Metrics documented without a "Present only when" condition, and the
    // histograms whose buckets the expressions read (present once two
    // cycles have run, which a run of a few seconds at 1 s intervals does).
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut histograms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in all_exprs() {
        for s in selectors(&substitute(&e.text)) {
            let Ref::Documented(name) = resolve(&s.name, &docs, &recorded) else {
                continue;
            };
            if s.name.ends_with("_bucket") && s.name != name {
                histograms
                    .entry(name.clone())
                    .or_default()
                    .insert(e.origin.clone());
            }
            if !docs[&name].conditional {
                wanted.entry(name).or_default().insert(e.origin.clone());
            }
        }
    }
    assert!(
        wanted.contains_key("pg_up"),
        "the dashboards should use pg_up: {wanted:?}"
    );

    let fx = Fixture::start().await;
    // Some work of a user's, so that pg_stat_statements has statements
    // besides pgvigil's own.
    fx.pg
        .connect()
        .await
        .batch_execute(
            "CREATE TABLE dashboards_t (id int PRIMARY KEY, v text);
             INSERT INTO dashboards_t SELECT g, 'x' FROM generate_series(1, 100) g;
             SELECT count(*) FROM dashboards_t WHERE v = 'x';",
        )
        .await
        .expect("user workload");
    // And a Redis target, for what the Redis rules and dashboard read.
    let redis = crate::harness::redis::RedisServer::start(&[]);
    redis.cli(&["GET", "some-key"]);
    let config = format!(
        "{}{}",
        fx.config("statements = { interval = \"1s\" }"),
        redis.redis_table("cache")
    );
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;

    // Both formats: the 0.0.4 text served by default, and OpenMetrics,
    // which Prometheus asks for.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let problems = loop {
        let text = agent.metrics().await;
        let response = http(
            agent.addr,
            "GET",
            "/metrics",
            &[("Accept", PROMETHEUS_ACCEPT)],
        )
        .await
        .expect("scrape");
        assert_eq!(response.status, 200, "{}", response.body);
        let open = Metrics::parse(&response.body);
        let mut problems = scrape_problems(&text, "text 0.0.4", &wanted, &histograms);
        problems.extend(scrape_problems(&open, "OpenMetrics", &wanted, &histograms));
        if problems.is_empty() || std::time::Instant::now() > deadline {
            break problems;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        problems.is_empty(),
        "metrics that dashboards or alerts use (documented as always present, or histograms) are missing from a real run after 60 s:\n{}\n\nagent log:\n{}",
        problems.join("\n"),
        agent.log()
    );
}
