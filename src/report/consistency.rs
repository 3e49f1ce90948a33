//! amcheck progress and findings (the amcheck collector's report) as JSON
//! for `/api/v1/consistency` and as a table for `pgvigil once --format
//! table`.

use std::fmt::Write as _;

use serde_json::{Value as Json, json};

use super::columns;
use crate::collect::amcheck::report::ConsistencyReport;
use crate::snapshot::{Detail, TargetView};

/// The consistency report of a target, if its collector has produced one.
pub fn consistency_of(view: &TargetView) -> Option<&ConsistencyReport> {
    view.collectors.iter().find_map(|(_, s)| match &s.detail {
        Some(Detail::Consistency(r)) => Some(r.as_ref()),
        _ => None,
    })
}

/// `/api/v1/consistency`: per target, the last run's report, or why there
/// is none.
pub fn consistency_json(views: &[TargetView]) -> Json {
    let targets: Vec<Json> = views
        .iter()
        .map(|view| {
            let report =
                consistency_of(view).map(|r| serde_json::to_value(r).unwrap_or(Json::Null));
            let error = super::collector_error(view, "amcheck");
            let error = match (&report, error) {
                (None, None) => Some("not collected yet".to_string()),
                (_, e) => e,
            };
            json!({ "target": &*view.name, "report": report, "error": error })
        })
        .collect();
    json!({ "targets": targets })
}

/// How long ago `at` was, in words.
fn ago(now: f64, at: f64) -> String {
    let s = (now - at).max(0.0);
    match s {
        s if s < 120.0 => format!("{s:.0}s ago"),
        s if s < 7200.0 => format!("{:.0}m ago", s / 60.0),
        s if s < 172_800.0 => format!("{:.0}h ago", s / 3600.0),
        s => format!("{:.0}d ago", s / 86400.0),
    }
}

/// One line on where the checks stand.
pub fn progress(r: &ConsistencyReport) -> String {
    if let Some(note) = &r.note {
        return note.clone();
    }
    let t = &r.totals;
    let last = match r.last_pass_completed {
        Some(at) => format!(
            "last complete pass {} (took {:.0}s)",
            ago(r.collected_at, at),
            r.last_pass_seconds.unwrap_or(0.0)
        ),
        None => "no complete pass yet".to_string(),
    };
    let mut line = format!(
        "{} indexes ({} pages) and {} tables ({} pages) checked; {last}; pass started {}; {:.0} pages/hour{}",
        t.btree_relations,
        t.btree_pages,
        t.heap_relations,
        t.heap_pages,
        ago(r.collected_at, r.pass_started),
        r.effective_pages_per_hour,
        if r.heap_checks {
            ""
        } else {
            " (tables need PostgreSQL 14+)"
        },
    );
    if let Some(p) = &r.paused {
        let _ = write!(line, "; paused: {p}");
    }
    line
}

/// The consistency section of `pgvigil once --format table`.
pub fn table(r: &ConsistencyReport) -> String {
    let mut out = format!("\nconsistency (amcheck): {}\n", progress(r));
    if r.note.is_some() {
        return out;
    }
    if r.findings.is_empty() {
        out.push_str("  no corruption found\n");
        return out;
    }
    let rows: Vec<Vec<String>> = r
        .findings
        .iter()
        .map(|f| {
            vec![
                f.datname.clone(),
                f.kind.clone(),
                format!("{}.{}", f.schemaname, f.relname),
                f.table.clone().unwrap_or_default(),
                f.block.map(|b| b.to_string()).unwrap_or_default(),
                crate::sql::shorten(&f.message, 120),
            ]
        })
        .collect();
    out.push_str("CORRUPT RELATIONS:\n");
    out.push_str(&columns(
        &["DATABASE", "KIND", "RELATION", "TABLE", "BLOCK", "MESSAGE"],
        &rows,
    ));
    out
}
