//! The tables part of the vacuum report rendered: the `tables` member of
//! `/api/v1/vacuum` and of `pgvigil once --format json`, and the "oldest
//! tables" and "table vacuum history" part of the vacuum section of
//! `--format table`.

use std::fmt::Write as _;

use serde_json::Value as Json;

use super::columns;
use crate::collect::vacuum::report::tables::VacuumTablesReport;
use crate::snapshot::{Detail, TargetView};

/// The vacuum_tables report of a target, if its collector has produced one.
pub fn tables_of(view: &TargetView) -> Option<&VacuumTablesReport> {
    view.collectors.iter().find_map(|(_, s)| match &s.detail {
        Some(Detail::VacuumTables(r)) => Some(r.as_ref()),
        _ => None,
    })
}

/// `report` (the vacuum report as JSON, or null) with the tables report
/// as its `tables` member, null when that collector has not reported.
pub fn merge(view: &TargetView, report: Json) -> Json {
    let tables = tables_of(view)
        .map(|r| serde_json::to_value(r).unwrap_or(Json::Null))
        .unwrap_or(Json::Null);
    match report {
        Json::Object(mut map) => {
            map.insert("tables".into(), tables);
            Json::Object(map)
        }
        _ if tables.is_null() => Json::Null,
        _ => serde_json::json!({ "tables": tables }),
    }
}

/// The later of a manual and an automatic run's time.
pub fn latest(manual: Option<f64>, auto: Option<f64>) -> Option<f64> {
    match (manual, auto) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn ago(at: Option<f64>, now: f64) -> String {
    at.map(|t| format!("{:.0}s ago", (now - t).max(0.0)))
        .unwrap_or_else(|| "-".into())
}

/// The tables part of the vacuum section of `pgvigil once --format table`.
pub fn table(report: &VacuumTablesReport) -> String {
    let now = crate::snapshot::unix_now();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\noldest tables (autovacuum_freeze_max_age {:.0}, autovacuum_multixact_freeze_max_age {:.0}):",
        report.autovacuum_freeze_max_age, report.autovacuum_multixact_freeze_max_age
    );
    let rows: Vec<Vec<String>> = report
        .oldest
        .iter()
        .flat_map(|d| {
            d.tables.iter().map(|t| {
                vec![
                    d.datname.clone(),
                    format!("{}.{}", t.schemaname, t.relname),
                    format!("{:.0}", t.xid_age),
                    format!("{:.1}%", 100.0 * t.xid_share_of_freeze_max_age),
                    format!("{:.0}", t.mxid_age),
                    format!("{:.1}%", 100.0 * t.mxid_share_of_freeze_max_age),
                ]
            })
        })
        .collect();
    out.push_str(&columns(
        &[
            "DATABASE",
            "TABLE",
            "XID AGE",
            "OF FREEZE MAX",
            "MXID AGE",
            "OF FREEZE MAX",
        ],
        &rows,
    ));
    if !report.tables.is_empty() {
        out.push_str("\ntable vacuum history (most dead tuples first):\n");
        let rows: Vec<Vec<String>> = report
            .tables
            .iter()
            .map(|t| {
                vec![
                    t.datname.clone(),
                    format!("{}.{}", t.schemaname, t.relname),
                    format!("{:.0}", t.dead_tuples),
                    format!("{:.0}", t.n_mod_since_analyze),
                    format!("{:.0}/{:.0}", t.vacuum_count, t.autovacuum_count),
                    format!("{:.0}/{:.0}", t.analyze_count, t.autoanalyze_count),
                    ago(latest(t.last_vacuum, t.last_autovacuum), now),
                    ago(latest(t.last_analyze, t.last_autoanalyze), now),
                ]
            })
            .collect();
        out.push_str(&columns(
            &[
                "DATABASE",
                "TABLE",
                "DEAD",
                "MOD SINCE ANALYZE",
                "VACUUMS (MANUAL/AUTO)",
                "ANALYZES (MANUAL/AUTO)",
                "LAST VACUUM",
                "LAST ANALYZE",
            ],
            &rows,
        ));
    }
    out
}
