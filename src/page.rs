//! The `/` page: one small, self-contained HTML view of the store
//! for a person with a browser: each target's state and version, charts
//! of the last hour (`charts`, from [`History`]), what `once --format
//! table` shows (`overview`: connections, pools, databases), its
//! collectors' health, the top statements of the last interval and since
//! the last reset, and recent plan findings with their plans.
//!
//! Pure: it renders [`TargetView`]s and does no I/O, like the JSON and table
//! renderings in [`crate::report`], whose figures it shows. Not for
//! machines: `/api/v1/*` and `/metrics` are the stable interfaces.
//!
//! Query texts, identifiers, error messages and plans come from the
//! monitored server and are hostile input: every dynamic string goes
//! through [`escape`]. The page needs no JavaScript and loads nothing else
//! (inline CSS only), so it works offline and under a strict CSP.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::collect::Detail;
use crate::collect::active_sessions::report::{LoadReport, label, summary};
use crate::collect::statements::report::StatementsReport;
use crate::explain::plan::PlanRecord;
use crate::history::History;
use crate::report::{Role, load_of, since_reset_of, statements_of, version};
use crate::snapshot::{TargetView, unix_now};

mod charts;
mod consistency;
mod overview;
mod redis;
mod schema;
mod vacuum;
mod vacuum_tables;

/// Top statements shown per target.
pub const TOP_STATEMENTS: usize = 20;
/// Recent plans (with their findings) shown per target.
pub const RECENT_PLANS: usize = 20;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.2em;margin:1.5em 0 .3em;border-bottom:1px solid #ccc}\
h3{font-size:1em;margin:1em 0 .3em}table{border-collapse:collapse;margin:.3em 0}\
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}\
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}\
code,pre{font:12px/1.35 ui-monospace,monospace}pre{background:#f8f8f8;padding:.5em;overflow:auto}\
.up{color:#070;font-weight:bold}.down{color:#b00;font-weight:bold}.unknown{color:#777}\
.ok{color:#070}.failed{color:#b00}.critical{color:#b00;font-weight:bold}.warning{color:#a60}\
.info{color:#555}.muted{color:#777}.finding{border-left:3px solid #ccc;padding-left:.6em;margin:.8em 0}\
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{margin:0}figcaption{font-size:.9em}";

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page, with the last hour's charts from `history`.
pub fn render(views: &[TargetView], history: &History) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>pgvigil</title><style>{STYLE}</style></head><body>\n\
         <h1>pgvigil</h1><p class=\"muted\">version {} · rendered {} · \
         <a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/statements\">/api/v1/statements</a> · \
         <a href=\"/api/v1/plans\">/api/v1/plans</a> · <a href=\"/api/v1/vacuum\">/api/v1/vacuum</a> · \
         <a href=\"/api/v1/schema\">/api/v1/schema</a> · <a href=\"/api/v1/redis\">/api/v1/redis</a> · <a href=\"/api/v1/consistency\">/api/v1/consistency</a></p>\n",
        escape(crate::cli::VERSION),
        escape(&timestamp(SystemTime::now())),
    );
    for view in views {
        target(view, history, &mut out);
    }
    out.push_str("</body></html>\n");
    out
}

fn target(view: &TargetView, history: &History, out: &mut String) {
    let (class, state) = match view.up {
        Some(true) => ("up", "up"),
        Some(false) => ("down", "DOWN"),
        None => ("unknown", "not yet collected"),
    };
    if view.redis {
        let _ = writeln!(
            out,
            "<section class=\"target\"><h2>target <span class=\"name\">{}</span>: \
             <span class=\"{class}\">{state}</span>, Redis</h2>",
            escape(&view.name),
        );
        collectors(view, out);
        redis::section(view, out);
        out.push_str("</section>\n");
        return;
    }
    let version = version(view);
    let role = Role::of(view).as_str();
    let _ = writeln!(
        out,
        "<section class=\"target\"><h2>target <span class=\"name\">{}</span>: \
         <span class=\"{class}\">{state}</span>, {}, {role}</h2>",
        escape(&view.name),
        escape(&version),
    );
    charts::section(&view.name, history, out);
    overview::section(view, out);
    collectors(view, out);
    match statements_of(view) {
        Some(report) => statements(report, out),
        None => out.push_str(
            "<h3>Top statements</h3><p class=\"muted\">no statements report yet \
             (the collector is off, failing, or waiting for its second sample)</p>\n",
        ),
    }
    if let Some(report) = since_reset_of(view) {
        overview::since_reset(report, unix_now(), out);
    }
    if let Some(report) = crate::report::vacuum::vacuum_of(view) {
        vacuum::section(report, out);
    }
    if let Some(report) = crate::report::vacuum_tables::tables_of(view) {
        vacuum_tables::section(report, out);
    }
    if let Some(load) = load_of(view) {
        load_section(load, statements_of(view), out);
    }
    findings(view, out);
    schema::section(view, out);
    consistency::section(view, out);
    consistency::backup_section(view, out);
    out.push_str("</section>\n");
}

fn collectors(view: &TargetView, out: &mut String) {
    out.push_str(
        "<h3>Collectors</h3><table class=\"collectors\"><tr><th>collector</th><th>status</th>\
         <th>duration</th><th>last success</th></tr>\n",
    );
    for (name, state) in &view.collectors {
        let status = match &state.last_error {
            None if state.success => "<span class=\"ok\">ok</span>".to_string(),
            None => "<span class=\"failed\">failed</span>".to_string(),
            Some(e) => format!("<span class=\"failed\">error: {}</span>", escape(e)),
        };
        let last = state
            .last_success
            .map(timestamp)
            .unwrap_or_else(|| "never".into());
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{status}</td><td class=\"n\">{} ms</td><td>{}</td></tr>",
            escape(name),
            millis(state.duration.as_secs_f64()),
            escape(&last),
        );
    }
    out.push_str("</table>\n");
}

fn statements(report: &StatementsReport, out: &mut String) {
    let i = &report.instance;
    let _ = write!(
        out,
        "<h3>Top statements</h3><p>over the last {:.1} s: {} calls, mean {} ms",
        report.interval_seconds,
        i.calls,
        millis(i.mean_seconds),
    );
    if let Some(q) = &i.quantiles {
        let _ = write!(out, ", p95 {} ms, p99 {} ms", millis(q.p95), millis(q.p99));
    }
    out.push_str("</p>\n");
    if report.statements.is_empty() {
        out.push_str("<p class=\"muted\">no statement ran in the interval</p>\n");
        return;
    }
    overview::statements_table("statements", &report.statements, i, out);
}

/// Where time went: load by wait event, and per statement ("70% on
/// IO:DataFileRead") with its text from the statements report.
fn load_section(load: &LoadReport, statements: Option<&StatementsReport>, out: &mut String) {
    let _ = writeln!(
        out,
        "<h3>Database load</h3><p>over the last {:.0} s: {:.2} average active sessions</p>",
        load.window_seconds, load.average_active_sessions
    );
    if load.wait_events.is_empty() {
        out.push_str("<p class=\"muted\">no active session was sampled</p>\n");
        return;
    }
    out.push_str(
        "<table class=\"load\"><tr><th>wait event</th><th>sessions</th><th>share</th></tr>\n",
    );
    for w in load.wait_events.iter().take(10) {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{:.2}</td><td class=\"n\">{:.0}%</td></tr>",
            escape(&label(w)),
            w.seconds / load.window_seconds.max(f64::MIN_POSITIVE),
            w.ratio * 100.0,
        );
    }
    out.push_str("</table>\n");
    if !load.per_statement || load.statements.is_empty() {
        return;
    }
    out.push_str(
        "<table class=\"load-statements\"><tr><th>queryid</th><th>sessions</th>\
         <th>time spent on</th><th>query</th></tr>\n",
    );
    for s in load.statements.iter().take(TOP_STATEMENTS) {
        let text = statements
            .and_then(|r| r.statements.iter().find(|t| t.queryid == s.queryid))
            .and_then(|t| t.query.as_deref())
            .unwrap_or("(not among the top statements)");
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td class=\"n\">{:.2}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&s.queryid),
            s.average_active_sessions,
            escape(&summary(&s.wait_events, 3)),
            escape(text),
        );
    }
    out.push_str("</table>\n");
}

/// The target's recent plans (newest first, as the worker keeps them).
fn plans(view: &TargetView) -> impl Iterator<Item = &PlanRecord> {
    view.collectors
        .iter()
        .filter_map(|(_, s)| match &s.detail {
            Some(Detail::Plans(list)) => Some(list.iter().map(|p| p.as_ref())),
            _ => None,
        })
        .flatten()
}

/// Plans with findings first (most severe first), then the rest; newest
/// first within each.
fn findings(view: &TargetView, out: &mut String) {
    out.push_str("<h3>Recent findings and plans</h3>\n");
    let mut recent: Vec<&PlanRecord> = plans(view).collect();
    if recent.is_empty() {
        out.push_str("<p class=\"muted\">no automatic plan yet</p>\n");
        return;
    }
    let worst = |p: &PlanRecord| p.findings.iter().map(|f| f.severity).max();
    recent.sort_by(|a, b| {
        worst(b)
            .cmp(&worst(a))
            .then(b.explained_at.total_cmp(&a.explained_at))
    });
    for plan in recent.iter().take(RECENT_PLANS) {
        plan_block(plan, out);
    }
    if recent.len() > RECENT_PLANS {
        let _ = writeln!(
            out,
            "<p class=\"muted\">{} more in <a href=\"/api/v1/plans\">/api/v1/plans</a></p>",
            recent.len() - RECENT_PLANS
        );
    }
}

fn plan_block(plan: &PlanRecord, out: &mut String) {
    let _ = writeln!(
        out,
        "<div class=\"finding\"><p><code>{}</code><br><span class=\"muted\">database {}, \
         user {}, queryid {}, mean {} ms, {} plan at {}</span></p><ul>",
        escape(plan.query.as_deref().unwrap_or("(text unavailable)")),
        escape(&plan.datname),
        escape(&plan.usename),
        escape(&plan.queryid),
        millis(plan.mean_seconds),
        escape(plan.mode.as_str()),
        escape(&timestamp(unix(plan.explained_at))),
    );
    for f in &plan.findings {
        let severity = f.severity.as_str();
        let _ = writeln!(
            out,
            "<li><span class=\"{severity}\">[{severity}]</span> <b>{}</b> at <code>{}</code>: \
             {}<br>→ {}</li>",
            escape(f.id),
            escape(&f.node_path),
            escape(&f.explanation),
            escape(&f.action),
        );
    }
    if plan.findings.is_empty() {
        out.push_str("<li class=\"muted\">no findings</li>\n");
    }
    out.push_str("</ul>\n");
    let tree = crate::explain::render::render_tree(&plan.plan, &plan.findings);
    let _ = writeln!(
        out,
        "<details><summary>plan</summary><pre class=\"plan\">{}</pre></details>",
        escape(&tree)
    );
    if let Some(previous) = &plan.previous {
        let tree = crate::explain::render::render_tree(&previous.plan, &[]);
        let _ = writeln!(
            out,
            "<details><summary>previous plan (before the shape changed, {})</summary>\
             <pre class=\"plan\">{}</pre></details>",
            escape(&timestamp(unix(previous.explained_at))),
            escape(&tree)
        );
    }
    out.push_str("</div>\n");
}

fn millis(seconds: f64) -> String {
    format!("{:.2}", seconds * 1000.0)
}

fn unix(seconds: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(seconds.max(0.0))
}

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        let cases = [
            ("plain", "plain"),
            (
                "<script>alert('x')</script>",
                "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;",
            ),
            ("a \"b\" & c", "a &quot;b&quot; &amp; c"),
            ("&amp;", "&amp;amp;"),
            ("back\\slash é", "back\\slash é"),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input}");
        }
    }

    #[test]
    fn hostile_names_and_errors_are_escaped_on_the_page() {
        use crate::snapshot::{Outcome, Store};
        let store = Store::new(vec![("x".into(), vec!["server"])]);
        store.set_up("x", false);
        store.record(
            "x",
            "server",
            Outcome::plain(Err("<img src=x onerror=alert(1)>".into()), Duration::ZERO),
        );
        let page = render(&store.view(None), &History::default());
        assert!(!page.contains("<img"), "{page}");
        assert!(
            page.contains("error: &lt;img src=x onerror=alert(1)&gt;"),
            "{page}"
        );
        assert!(page.contains("<span class=\"down\">DOWN</span>"), "{page}");
        assert!(page.contains("no statements report yet"), "{page}");
    }
}
