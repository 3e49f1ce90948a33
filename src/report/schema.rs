//! Schema risks (the schema collector's report) as JSON for
//! `/api/v1/schema` and as a table for `pgvigil once --format table`.

use std::fmt::Write as _;

use serde_json::{Value as Json, json};

use super::{bytes, columns, percent};
use crate::collect::schema::report::{Index, SchemaReport};
use crate::snapshot::{Detail, TargetView};

/// The schema report of a target, if its collector has produced one.
pub fn schema_of(view: &TargetView) -> Option<&SchemaReport> {
    view.collectors.iter().find_map(|(_, s)| match &s.detail {
        Some(Detail::Schema(r)) => Some(r.as_ref()),
        _ => None,
    })
}

/// Indexes of each kind shown per database (the largest); the API has all.
const SHOWN: usize = 10;

/// `/api/v1/schema`: per target, the last run's report, or why there is
/// none.
pub fn schema_json(views: &[TargetView]) -> Json {
    let targets: Vec<Json> = views
        .iter()
        .map(|view| {
            let report = schema_of(view).map(|r| serde_json::to_value(r).unwrap_or(Json::Null));
            let error = super::collector_error(view, "schema");
            let error = match (&report, error) {
                (None, None) => Some("not collected yet".to_string()),
                (_, e) => e,
            };
            json!({ "target": &*view.name, "report": report, "error": error })
        })
        .collect();
    json!({ "targets": targets })
}

/// The schema section of `pgvigil once --format table`: sequences over a
/// tenth of their range, and every invalid, unused and duplicate index.
pub fn table(report: &SchemaReport) -> String {
    let mut out = String::new();
    let mut sequences = Vec::new();
    let mut indexes = Vec::new();
    let mut unreadable = 0;
    let mut more = Vec::new();
    for d in &report.databases {
        unreadable += d.sequences_unreadable;
        for s in d.sequences.iter().filter(|s| s.used_ratio >= 0.1) {
            sequences.push(vec![
                d.datname.clone(),
                format!("{}.{}", s.schemaname, s.sequence),
                percent(s.used_ratio),
                s.last_value.to_string(),
                s.limit.to_string(),
                match &s.column {
                    Some(c) if s.limited_by == "column" => {
                        format!("column {c} ({})", s.column_type.as_deref().unwrap_or("?"))
                    }
                    _ => "sequence".to_string(),
                },
            ]);
        }
        let lists: [(&str, &Vec<Index>); 3] = [
            ("invalid", &d.invalid_indexes),
            ("unused", &d.unused_indexes),
            ("duplicate", &d.duplicate_indexes),
        ];
        for (what, list) in lists {
            if list.len() > SHOWN {
                more.push(format!(
                    "  {} more {what} indexes in {}: all in /api/v1/schema\n",
                    list.len() - SHOWN,
                    d.datname
                ));
            }
            for i in list.iter().take(SHOWN) {
                indexes.push(vec![
                    what.to_string(),
                    d.datname.clone(),
                    format!("{}.{}", i.schemaname, i.relname),
                    i.indexrelname.clone(),
                    format!(
                        "{}{}",
                        bytes(i.bytes),
                        if i.size_estimated { "~" } else { "" }
                    ),
                    i.duplicate_of
                        .as_ref()
                        .map(|k| format!("repeats {k}"))
                        .unwrap_or_default(),
                ]);
            }
        }
    }
    let _ = write!(out, "\nschema: sequences over 10% of their range");
    if unreadable > 0 {
        let _ = write!(
            out,
            " ({unreadable} not readable: grant SELECT on them or pg_read_all_data)"
        );
    }
    out.push_str(":\n");
    if sequences.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&columns(
            &[
                "DATABASE",
                "SEQUENCE",
                "USED",
                "LAST VALUE",
                "LIMIT",
                "LIMITED BY",
            ],
            &sequences,
        ));
    }
    let _ = writeln!(
        out,
        "schema: invalid, unused (no scans, over {}) and duplicate indexes:",
        bytes(report.unused_index_min_bytes as f64)
    );
    if indexes.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&columns(
            &["RISK", "DATABASE", "TABLE", "INDEX", "SIZE", ""],
            &indexes,
        ));
        out.extend(more);
    }
    out
}
