//! The Prometheus rules in `alerts/`: promtool accepts the rules file and passes every unit test
//! file; every alert, at each of its severities, has a firing and a quiet test case; every
//! `runbook_url` has its section in `alerts/runbook.md`; the rules use only documented metrics.
//! The postgres_exporter compatibility rules (`alerts/compat/`) pass promtool, each record has a
//! unit test, and none records a name pgvigil publishes itself.
//!
//! The YAML is scanned line by line (the files keep one key per line): `- alert: Name` and its
//! `severity:` label in the rules; `alertname: Name` followed by `exp_alerts: []` (quiet) or by
//! `exp_alerts:` with expected alerts and their `severity:` (firing) in the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::outputs;
use crate::harness::prometheus::records;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/pgvigil.rules.yml");
const COMPAT_RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/alerts/compat/postgres-exporter.rules.yml"
);
const COMPAT_TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/alerts/tests/compat-postgres-exporter.yml"
);
const TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/tests");
const RUNBOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/runbook.md");
const METRICS_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
const RUNBOOK_BASE: &str = "https://github.com/pgvigil/pgvigil/blob/main/alerts/runbook.md#";
const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn promtool(args: &[&str]) -> Command {
    let mut cmd = Command::new("promtool");
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

fn promtool_output(cmd: &mut Command) -> Output {
    cmd.output()
        .expect("promtool is required (scripts/test.sh installs the prometheus package)")
}

/// The unit test files, sorted.
fn test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(TESTS)
        .unwrap_or_else(|e| panic!("reading {TESTS}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The value of `key: value` on a trimmed line, unquoted.
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?.strip_prefix(':')?.trim();
    Some(rest.trim_matches(|c| c == '"' || c == '\''))
}

/// One alerting rule of the rules file.
#[derive(Debug, Default)]
struct Rule {
    name: String,
    severity: Option<String>,
    runbook_url: Option<String>,
    summary: bool,
    description: bool,
    expr: String,
}

/// Alerting rules in file order (an alert with two severities appears twice), and the
/// expressions of the recording rules.
fn rules() -> (Vec<Rule>, Vec<String>) {
    rules_of(RULES)
}

/// [`rules`] of another rules file.
fn rules_of(path: &str) -> (Vec<Rule>, Vec<String>) {
    let mut alerts: Vec<Rule> = Vec::new();
    let mut records: Vec<String> = Vec::new();
    // Which expression the following lines continue: an alert's, a recording rule's, none.
    #[derive(PartialEq)]
    enum In {
        Nothing,
        AlertExpr,
        RecordExpr,
    }
    let mut inside = In::Nothing;
    let mut in_alert = false;
    for raw in read(path).lines() {
        let line = raw.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = value_of(line, "- alert") {
            alerts.push(Rule {
                name: name.to_string(),
                ..Rule::default()
            });
            in_alert = true;
            inside = In::Nothing;
            continue;
        }
        if value_of(line, "- record").is_some() || line.starts_with("- name:") {
            in_alert = false;
            inside = In::Nothing;
            if line.starts_with("- record") {
                records.push(String::new());
            }
            continue;
        }
        if let Some(expr) = value_of(line, "expr") {
            let expr = expr.trim_start_matches("|-").trim_start_matches('|');
            if in_alert {
                alerts.last_mut().unwrap().expr.push_str(expr);
                inside = In::AlertExpr;
            } else {
                records
                    .last_mut()
                    .expect("expr before record")
                    .push_str(expr);
                inside = In::RecordExpr;
            }
            continue;
        }
        const KEYS: [&str; 7] = [
            "for:",
            "labels:",
            "annotations:",
            "severity:",
            "summary:",
            "description:",
            "runbook_url:",
        ];
        if KEYS.iter().any(|k| line.starts_with(k)) {
            inside = In::Nothing;
        }
        match inside {
            In::AlertExpr => {
                let rule = alerts.last_mut().unwrap();
                rule.expr.push(' ');
                rule.expr.push_str(line);
                continue;
            }
            In::RecordExpr => {
                let expr = records.last_mut().unwrap();
                expr.push(' ');
                expr.push_str(line);
                continue;
            }
            In::Nothing => {}
        }
        if !in_alert {
            continue;
        }
        let rule = alerts.last_mut().unwrap();
        if let Some(severity) = value_of(line, "severity") {
            rule.severity = Some(severity.to_string());
        } else if let Some(url) = value_of(line, "runbook_url") {
            rule.runbook_url = Some(url.to_string());
        } else if value_of(line, "summary").is_some_and(|s| !s.is_empty()) {
            rule.summary = true;
        } else if value_of(line, "description").is_some_and(|s| !s.is_empty()) {
            rule.description = true;
        }
    }
    (alerts, records)
}

/// What the unit tests expect: (alert, severity) pairs with a firing case, and alerts with a
/// quiet case (`exp_alerts: []`), each with the file that has it.
#[derive(Debug, Default)]
struct Coverage {
    firing: BTreeMap<(String, String), String>,
    quiet: BTreeMap<String, String>,
    named: BTreeSet<String>,
}

fn coverage() -> Coverage {
    let mut cov = Coverage::default();
    for file in test_files() {
        let shown = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let mut alert: Option<String> = None;
        let mut firing = false;
        for raw in text.lines() {
            let line = raw.trim();
            if line.starts_with('#') {
                continue;
            }
            if let Some(name) = value_of(line, "alertname") {
                alert = Some(name.to_string());
                cov.named.insert(name.to_string());
                firing = false;
            } else if line.starts_with("- name:")
                || line.starts_with("- eval_time:")
                || line.starts_with("promql_expr_test:")
            {
                alert = None;
                firing = false;
            } else if let Some(expected) = value_of(line, "exp_alerts") {
                let name = alert.clone().expect("exp_alerts without alertname");
                if expected == "[]" {
                    cov.quiet.entry(name).or_insert_with(|| shown.clone());
                } else {
                    assert!(expected.is_empty(), "{shown}: unexpected `{line}`");
                    firing = true;
                }
            } else if firing && let Some(severity) = value_of(line, "severity") {
                let name = alert.clone().unwrap();
                cov.firing
                    .entry((name, severity.to_string()))
                    .or_insert_with(|| shown.clone());
            }
        }
    }
    cov
}

/// GitHub's anchor of a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Runbook level-2 headings, by anchor.
fn runbook_sections() -> BTreeMap<String, String> {
    read(RUNBOOK)
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| (slug(h), h.trim().to_string()))
        .collect()
}

/// Metric names in docs/metrics.md tables ("| `name` | type | labels | meaning |"), with their type.
fn documented() -> BTreeMap<String, String> {
    let mut documented = BTreeMap::new();
    for line in read(METRICS_DOC).lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() > 3
            && let Some(name) = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`'))
        {
            documented.insert(name.to_string(), cells[2].to_string());
        }
    }
    documented
}

/// Whether `name` is a documented metric, or a histogram's `_bucket`, `_count` or `_sum`.
fn is_documented(documented: &BTreeMap<String, String>, name: &str) -> bool {
    documented.contains_key(name)
        || ["_bucket", "_count", "_sum"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| documented.get(base).is_some_and(|t| t == "histogram"))
        })
}

/// The identifiers of pgvigil's families (`pg_`, `pgbouncer_`, `pgvigil_`) that expressions
/// name, quoted label values left out.
fn metric_names<'a>(exprs: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for expr in exprs {
        let unquoted: String = expr
            .split('"')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        for word in unquoted.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if ["pg_", "pgbouncer_", "pgvigil_"]
                .iter()
                .any(|p| word.starts_with(p))
            {
                used.insert(word.to_string());
            }
        }
    }
    used
}

/// The names the compatibility rules record, in file order.
fn compat_records() -> Vec<String> {
    records(Path::new(COMPAT_RULES))
}

#[test]
fn promtool_check_rules_passes_without_warnings() {
    let out = promtool_output(&mut promtool(&["check", "rules", RULES]));
    let (stdout, stderr) = outputs(&out);
    let text = format!("{stdout}{stderr}");
    assert!(out.status.success(), "promtool check rules failed:\n{text}");
    assert!(
        !text.to_lowercase().contains("warn"),
        "promtool check rules has warnings:\n{text}"
    );
    // Every rule was read: as many as the file has `- alert:` and `- record:` entries.
    let (alerts, records) = rules();
    let expected = format!("SUCCESS: {} rules found", alerts.len() + records.len());
    assert!(
        stdout.contains(&expected),
        "expected `{expected}` from promtool:\n{text}"
    );
}

#[test]
fn promtool_unit_tests_pass() {
    let files = test_files();
    assert!(
        files.len() >= 2,
        "expected the unit test files in {TESTS}, found {files:?}"
    );
    // One promtool per file, all at once: the day-long regression tests take a while.
    let children: Vec<_> = files
        .iter()
        .map(|file| {
            let child = promtool(&["test", "rules"])
                .arg(file)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("promtool is required (scripts/test.sh installs the prometheus package)");
            (file, child)
        })
        .collect();
    let mut failures = Vec::new();
    for (file, child) in children {
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = outputs(&out);
        if !out.status.success() || !stdout.contains("SUCCESS") {
            failures.push(format!(
                "promtool test rules {}:\n{stdout}{stderr}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_test_case() {
    let (alerts, _) = rules();
    assert!(
        alerts.len() >= 30,
        "expected the alerting rules in {RULES}, found {}",
        alerts.len()
    );
    let cov = coverage();
    let mut missing = Vec::new();
    let mut names = BTreeSet::new();
    for rule in &alerts {
        let severity = rule.severity.clone().unwrap_or_default();
        names.insert(rule.name.clone());
        if !cov
            .firing
            .contains_key(&(rule.name.clone(), severity.clone()))
        {
            missing.push(format!(
                "{} (severity {severity}): no firing test case",
                rule.name
            ));
        }
        if !cov.quiet.contains_key(&rule.name) {
            missing.push(format!(
                "{}: no quiet test case (exp_alerts: [])",
                rule.name
            ));
        }
    }
    assert!(missing.is_empty(), "in {TESTS}:\n{}", missing.join("\n"));
    // And the tests name no alert the rules do not have (a typo would test nothing).
    let unknown: Vec<_> = cov.named.difference(&names).collect();
    assert!(unknown.is_empty(), "tests name unknown alerts: {unknown:?}");
    let unknown_severity: Vec<_> = cov
        .firing
        .keys()
        .filter(|(name, sev)| {
            !alerts
                .iter()
                .any(|r| &r.name == name && r.severity.as_deref() == Some(sev))
        })
        .collect();
    assert!(
        unknown_severity.is_empty(),
        "tests expect severities the rules do not have: {unknown_severity:?}"
    );
}

#[test]
fn every_alert_has_severity_annotations_and_a_runbook_section() {
    let (alerts, _) = rules();
    assert!(!alerts.is_empty(), "no alerting rules found in {RULES}");
    let sections = runbook_sections();
    let mut problems = Vec::new();
    for rule in &alerts {
        let name = &rule.name;
        match rule.severity.as_deref() {
            Some(s) if SEVERITIES.contains(&s) => {}
            other => problems.push(format!("{name}: severity {other:?}")),
        }
        if !rule.summary {
            problems.push(format!("{name}: no summary"));
        }
        if !rule.description {
            problems.push(format!("{name}: no description"));
        }
        let Some(url) = &rule.runbook_url else {
            problems.push(format!("{name}: no runbook_url"));
            continue;
        };
        let Some(anchor) = url.strip_prefix(RUNBOOK_BASE) else {
            problems.push(format!(
                "{name}: runbook_url {url} is not under {RUNBOOK_BASE}"
            ));
            continue;
        };
        if anchor != name.to_lowercase() {
            problems.push(format!(
                "{name}: runbook anchor #{anchor} is not the alert's name"
            ));
        }
        if !sections.contains_key(anchor) {
            problems.push(format!("{name}: runbook.md has no section for #{anchor}"));
        }
    }
    // Every runbook section is an alert's, and every link inside the runbook resolves.
    let names: BTreeSet<String> = alerts.iter().map(|r| r.name.to_lowercase()).collect();
    for (anchor, heading) in &sections {
        if !names.contains(anchor) {
            problems.push(format!("runbook.md section `{heading}` has no alert"));
        }
    }
    let runbook = read(RUNBOOK);
    for link in runbook.split("](#").skip(1) {
        let anchor = link.split(')').next().unwrap();
        if !sections.contains_key(anchor) {
            problems.push(format!("runbook.md links to a missing section #{anchor}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn rules_use_only_documented_metrics() {
    let documented = documented();
    assert!(
        documented.contains_key("pg_up"),
        "no metrics found in {METRICS_DOC}"
    );
    let known = |name: &str| is_documented(&documented, name);
    let (alerts, records) = rules();
    let exprs = alerts
        .iter()
        .map(|r| r.expr.as_str())
        .chain(records.iter().map(String::as_str));
    let used = metric_names(exprs);
    assert!(
        used.len() >= 30,
        "expected metric names in the rules, found {used:?}"
    );
    let undocumented: Vec<_> = used.iter().filter(|m| !known(m)).collect();
    assert!(
        undocumented.is_empty(),
        "the rules use metrics that docs/metrics.md does not list: {undocumented:?}"
    );
}

#[test]
fn line_scanning_reads_the_files_as_promtool_does() {
    // The helpers above trust the files' layout; check them on a known rule and test case.
    let (alerts, records) = rules();
    let down = alerts
        .iter()
        .find(|r| r.name == "PostgresDown")
        .expect("PostgresDown");
    assert_eq!(down.severity.as_deref(), Some("critical"));
    assert_eq!(down.expr.trim(), "pg_up == 0");
    assert!(down.summary && down.description);
    assert_eq!(
        down.runbook_url.as_deref(),
        Some(format!("{RUNBOOK_BASE}postgresdown").as_str())
    );
    assert!(
        records
            .iter()
            .any(|e| e.contains("histogram_quantile(0.99") && e.contains("le)")),
        "{records:?}"
    );
    let levels: Vec<_> = alerts
        .iter()
        .filter(|r| r.name == "PostgresTooManyConnections")
        .map(|r| r.severity.clone().unwrap_or_default())
        .collect();
    assert_eq!(levels, ["warning", "critical"]);
    let cov = coverage();
    assert_eq!(
        cov.firing
            .get(&("PostgresDown".to_string(), "critical".to_string()))
            .map(String::as_str),
        Some("availability.yml")
    );
    assert_eq!(
        cov.quiet.get("PostgresDown").map(String::as_str),
        Some("availability.yml")
    );
    assert_eq!(slug("PostgresRpoAtRisk"), "postgresrpoatrisk");
    assert_eq!(slug("Plan changes, redaction"), "plan-changes-redaction");
    assert!(Path::new(TESTS).join("regressions.yml").exists());
}

#[test]
fn the_scrape_job_is_named_in_one_place_the_pgvigil_up_record() {
    // Scrape jobs are named by whoever deploys (a static config, the Prometheus Operator's
    // `<namespace>/<monitor>`), so changing the name the rules expect must be one edit: the
    // recording rule pgvigil:up is the only expression with a `job` matcher, and the alerts
    // about the agent read it.
    let names_job = |expr: &str| {
        let e: String = expr.split_whitespace().collect();
        ["job=", "job!=", "job=~", "job!~"]
            .iter()
            .any(|m| e.contains(m))
    };
    let (alerts, records) = rules();
    let alerting: Vec<&str> = alerts
        .iter()
        .filter(|r| names_job(&r.expr))
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        alerting.is_empty(),
        "alerts that match on job: {alerting:?}"
    );
    let recording: Vec<&String> = records.iter().filter(|e| names_job(e)).collect();
    assert_eq!(
        recording.len(),
        1,
        "records that match on job: {recording:?}"
    );
    assert!(recording[0].trim().starts_with("up{"), "{recording:?}");
    let text = read(RULES);
    let record = text
        .lines()
        .skip_while(|l| l.trim() != "- record: pgvigil:up")
        .nth(1)
        .expect("the recording rule pgvigil:up");
    assert_eq!(value_of(record.trim(), "expr"), Some(recording[0].trim()));
    let down = alerts.iter().find(|r| r.name == "PgvigilDown").unwrap();
    assert_eq!(down.expr.trim(), "pgvigil:up == 0");
    // And the documentation sends users there.
    let readme = read(concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/README.md"));
    assert!(
        readme.contains("`pgvigil:up`"),
        "alerts/README.md should name pgvigil:up"
    );
}

#[test]
fn compat_rules_pass_promtool_and_each_record_has_a_unit_test() {
    let out = promtool_output(&mut promtool(&["check", "rules", COMPAT_RULES]));
    let (stdout, stderr) = outputs(&out);
    let text = format!("{stdout}{stderr}");
    assert!(out.status.success(), "promtool check rules failed:\n{text}");
    assert!(!text.to_lowercase().contains("warn"), "warnings:\n{text}");
    let names = compat_records();
    let (alerts, records) = rules_of(COMPAT_RULES);
    assert!(alerts.is_empty(), "the compatibility file only records");
    assert_eq!(names.len(), records.len());
    assert!(
        stdout.contains(&format!("SUCCESS: {} rules found", names.len())),
        "{text}"
    );
    // Every record is pinned by a case that expects its samples, under its own name.
    let tests = read(COMPAT_TESTS);
    assert!(tests.contains("../compat/postgres-exporter.rules.yml"));
    let untested: Vec<_> = names
        .iter()
        .filter(|name| !tests.contains(&format!("labels: '{name}{{")))
        .collect();
    assert!(
        untested.is_empty(),
        "records without an expected sample in {COMPAT_TESTS}: {untested:?}"
    );
}

#[test]
fn compat_rules_read_documented_metrics_and_record_no_name_pgvigil_publishes() {
    let documented = documented();
    let names = compat_records();
    assert!(
        names.len() >= 30,
        "expected the compatibility records, found {names:?}"
    );
    // A recorded name that pgvigil also publishes would double every sum over it.
    let colliding: Vec<_> = names
        .iter()
        .filter(|n| is_documented(&documented, n))
        .collect();
    assert!(
        colliding.is_empty(),
        "records that shadow pgvigil's own metrics: {colliding:?}"
    );
    let (_, exprs) = rules_of(COMPAT_RULES);
    let used = metric_names(exprs.iter().map(String::as_str));
    let undocumented: Vec<_> = used
        .iter()
        .filter(|m| !is_documented(&documented, m))
        .collect();
    assert!(
        undocumented.is_empty(),
        "the compatibility rules read metrics docs/metrics.md does not list: {undocumented:?}"
    );
    // As in pgvigil.rules.yml: no job matcher, and aggregations keep instance, job and target.
    for expr in &exprs {
        let e: String = expr.split_whitespace().collect();
        assert!(!e.contains("job=") && !e.contains("job!"), "{expr}");
        for by in e.split("by(").skip(1) {
            assert!(by.starts_with("instance,job,target"), "{expr}");
        }
    }
}
