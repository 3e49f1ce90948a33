//! The vacuum report rendered: `/api/v1/vacuum`, the "vacuum" part of
//! `pgvigil once --format json` and the "vacuum held back by" section of
//! `--format table`. The `/` page renders the same report in HTML.

use std::fmt::Write as _;

use serde_json::{Value as Json, json};

use super::columns;
use crate::collect::vacuum::report::{Holder, VacuumReport};
use crate::snapshot::{Detail, TargetView};

/// The vacuum report of a target, if its collector has produced one.
pub fn vacuum_of(view: &TargetView) -> Option<&VacuumReport> {
    view.collectors.iter().find_map(|(_, s)| match &s.detail {
        Some(Detail::Vacuum(r)) => Some(r.as_ref()),
        _ => None,
    })
}

/// A target's report as JSON, or null.
pub fn report_json(view: &TargetView) -> Json {
    let report = vacuum_of(view)
        .map(|r| serde_json::to_value(r).unwrap_or(Json::Null))
        .unwrap_or(Json::Null);
    super::vacuum_tables::merge(view, report)
}

/// `/api/v1/vacuum`: per target, the last report, or why there is none.
pub fn vacuum_json(views: &[TargetView]) -> Json {
    let targets: Vec<Json> = views
        .iter()
        .map(|view| {
            let error = super::collector_error(view, "vacuum");
            json!({ "target": &*view.name, "report": report_json(view), "error": error })
        })
        .collect();
    json!({ "targets": targets })
}

/// Who a holder is, in a few words: what a person searches for.
pub fn who(h: &Holder) -> String {
    let mut parts = Vec::new();
    if let Some(gid) = &h.gid {
        parts.push(format!("gid {gid}"));
    }
    if let Some(slot) = &h.slot_name {
        let active = match h.active {
            Some(true) => "active",
            Some(false) => "inactive",
            None => "",
        };
        let kind = h.slot_type.as_deref().unwrap_or("");
        parts.push(
            format!("slot {slot} ({kind} {active})")
                .replace("( ", "(")
                .replace(" )", ")"),
        );
    }
    if let Some(pid) = h.pid {
        parts.push(format!("pid {pid}"));
    }
    if let Some(app) = h.application_name.as_deref().filter(|a| !a.is_empty()) {
        parts.push(format!("application {app}"));
    }
    parts.join(", ")
}

fn opt(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

fn since(at: Option<f64>, now: f64) -> String {
    at.map(|t| format!("{:.0}s ago", (now - t).max(0.0)))
        .unwrap_or_else(|| "-".into())
}

/// The vacuum section of `pgvigil once --format table`.
pub fn table(report: &VacuumReport) -> String {
    let now = crate::snapshot::unix_now();
    let mut out = String::new();
    match &report.held_back_by {
        Some(kind) => {
            let _ = writeln!(out, "\nvacuum held back by: {kind}");
        }
        None => out.push_str("\nvacuum held back by: nothing\n"),
    }
    if !report.holders.is_empty() {
        let rows: Vec<Vec<String>> = report
            .holders
            .iter()
            .map(|h| {
                vec![
                    h.holder.clone(),
                    format!("{:.0}", h.age),
                    who(h),
                    opt(h.datname.as_deref()),
                    opt(h.usename.as_deref()),
                    opt(h.state.as_deref()),
                    since(h.since, now),
                ]
            })
            .collect();
        out.push_str(&columns(
            &["HOLDER", "AGE", "WHO", "DATABASE", "USER", "STATE", "SINCE"],
            &rows,
        ));
    }
    let w = &report.wraparound;
    let _ = writeln!(
        out,
        "\nwraparound (autovacuum_freeze_max_age {:.0}, autovacuum_multixact_freeze_max_age {:.0}):",
        w.autovacuum_freeze_max_age, w.autovacuum_multixact_freeze_max_age
    );
    let rows: Vec<Vec<String>> = w
        .databases
        .iter()
        .map(|d| {
            vec![
                d.datname.clone(),
                format!("{:.0}", d.xid_age),
                format!("{:.1}%", 100.0 * d.xid_share_of_freeze_max_age),
                format!("{:.0}", d.mxid_age),
                format!("{:.1}%", 100.0 * d.mxid_share_of_freeze_max_age),
            ]
        })
        .collect();
    out.push_str(&columns(
        &[
            "DATABASE",
            "XID AGE",
            "OF FREEZE MAX",
            "MXID AGE",
            "OF FREEZE MAX",
        ],
        &rows,
    ));
    let _ = writeln!(
        out,
        "\nvacuums running: {} autovacuum workers of {}",
        report.autovacuum_workers, report.autovacuum_max_workers
    );
    if !report.running.is_empty() {
        let rows: Vec<Vec<String>> = report
            .running
            .iter()
            .map(|v| {
                vec![
                    v.pid.to_string(),
                    v.datname.clone(),
                    v.relname.clone(),
                    v.kind.clone(),
                    v.phase.clone(),
                    format!("{:.0}/{:.0}", v.heap_blks_scanned, v.heap_blks_total),
                    since(v.since, now),
                ]
            })
            .collect();
        out.push_str(&columns(
            &[
                "PID",
                "DATABASE",
                "TABLE",
                "KIND",
                "PHASE",
                "HEAP BLOCKS",
                "SINCE",
            ],
            &rows,
        ));
    }
    out
}
