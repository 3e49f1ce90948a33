//! The schema risks section of the `/` page: sequences nearing their
//! limit, and invalid, unused and duplicate indexes.

use std::fmt::Write as _;

use super::escape;
use crate::collect::schema::report::SchemaReport;
use crate::report::schema::schema_of;
use crate::snapshot::TargetView;

/// Sequences under this share of their range are not shown.
const SHOWN_FROM: f64 = 0.1;
/// Indexes of each kind shown per database (the largest); the API has all.
const SHOWN_INDEXES: usize = 20;

/// Appends the section for `view`.
pub fn section(view: &TargetView, out: &mut String) {
    out.push_str("<h3>Schema risks</h3>");
    let Some(report) = schema_of(view) else {
        out.push_str(
            "<p class=\"muted\">no schema report yet (the collector is off, failing, or has not run)</p>\n",
        );
        return;
    };
    sequences(report, out);
    indexes(report, out);
}

fn sequences(report: &SchemaReport, out: &mut String) {
    let unreadable: u64 = report
        .databases
        .iter()
        .map(|d| d.sequences_unreadable)
        .sum();
    if unreadable > 0 {
        let _ = writeln!(
            out,
            "<p class=\"muted\">{unreadable} sequences not readable by this role \
             (grant SELECT on them, or pg_read_all_data)</p>"
        );
    }
    let mut rows = String::new();
    for d in &report.databases {
        for s in d.sequences.iter().filter(|s| s.used_ratio >= SHOWN_FROM) {
            let by = match &s.column {
                Some(c) if s.limited_by == "column" => format!(
                    "column {} ({})",
                    escape(c),
                    escape(s.column_type.as_deref().unwrap_or("?"))
                ),
                _ => "sequence".to_string(),
            };
            let _ = writeln!(
                rows,
                "<tr><td>{}</td><td>{}.{}</td><td class=\"n\">{:.1}%</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td>{by}</td></tr>",
                escape(&d.datname),
                escape(&s.schemaname),
                escape(&s.sequence),
                s.used_ratio * 100.0,
                s.last_value,
                s.limit,
            );
        }
    }
    if rows.is_empty() {
        out.push_str("<p class=\"muted\">no sequence has used 10% of its range</p>\n");
    } else {
        out.push_str(
            "<table class=\"sequences\"><tr><th>database</th><th>sequence</th><th>used</th>\
             <th>last value</th><th>limit</th><th>limited by</th></tr>\n",
        );
        out.push_str(&rows);
        out.push_str("</table>\n");
    }
}

fn indexes(report: &SchemaReport, out: &mut String) {
    let mut rows = String::new();
    for d in &report.databases {
        let lists = [
            ("invalid", &d.invalid_indexes),
            ("unused", &d.unused_indexes),
            ("duplicate", &d.duplicate_indexes),
        ];
        for (what, list) in lists {
            if list.len() > SHOWN_INDEXES {
                let _ = writeln!(
                    rows,
                    "<tr><td>{what}</td><td>{}</td><td colspan=\"4\" class=\"muted\">the {SHOWN_INDEXES} largest of {}: \
                     all in <a href=\"/api/v1/schema\">/api/v1/schema</a></td></tr>",
                    escape(&d.datname),
                    list.len(),
                );
            }
            for i in list.iter().take(SHOWN_INDEXES) {
                let note = i
                    .duplicate_of
                    .as_ref()
                    .map(|k| format!("repeats {}", escape(k)))
                    .unwrap_or_default();
                let _ = writeln!(
                    rows,
                    "<tr><td>{what}</td><td>{}</td><td>{}.{}</td><td>{}</td>\
                     <td class=\"n\">{}{}</td><td>{note}</td></tr>",
                    escape(&d.datname),
                    escape(&i.schemaname),
                    escape(&i.relname),
                    escape(&i.indexrelname),
                    i.bytes,
                    if i.size_estimated { " (estimate)" } else { "" },
                );
            }
        }
    }
    if rows.is_empty() {
        out.push_str("<p class=\"muted\">no invalid, unused or duplicate index</p>\n");
    } else {
        let _ = writeln!(
            out,
            "<table class=\"indexes\"><tr><th>risk</th><th>database</th><th>table</th><th>index</th>\
             <th>bytes</th><th></th></tr><caption>unused: no scan since the statistics reset, \
             at least {} bytes</caption>",
            report.unused_index_min_bytes
        );
        out.push_str(&rows);
        out.push_str("</table>\n");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::collect::schema::report::{DatabaseSchema, Index, Sequence};
    use crate::snapshot::{Collected, Detail, Outcome, Store};

    #[test]
    fn hostile_names_are_escaped_and_low_sequences_left_out() {
        let evil = "<img src=x onerror=alert(1)>";
        let index = Index {
            schemaname: evil.into(),
            relname: evil.into(),
            indexrelname: evil.into(),
            bytes: 2e6,
            size_estimated: false,
            duplicate_of: Some(evil.into()),
        };
        let sequence = |name: &str, ratio: f64| Sequence {
            schemaname: "public".into(),
            sequence: name.into(),
            last_value: 1,
            limit: 10,
            limited_by: "column",
            column: Some(evil.into()),
            column_type: Some("integer".into()),
            used_ratio: ratio,
        };
        let report = SchemaReport {
            collected_at: 0.0,
            unused_index_min_bytes: 1024,
            databases: vec![DatabaseSchema {
                datname: evil.into(),
                stats_reset: None,
                sequences: vec![sequence("near", 0.97), sequence("idle", 0.01)],
                sequences_unreadable: 3,
                invalid_indexes: vec![index.clone()],
                unused_indexes: vec![],
                duplicate_indexes: vec![index],
            }],
        };
        let store = Store::new(vec![("x".into(), vec!["schema"])]);
        store.record(
            "x",
            "schema",
            Outcome::plain(
                Ok(Collected {
                    families: vec![],
                    detail: Some(Detail::Schema(Arc::new(report))),
                }),
                Duration::ZERO,
            ),
        );
        let mut out = String::new();
        section(&store.view(None)[0], &mut out);
        assert!(!out.contains("<img"), "{out}");
        assert!(out.contains("public.near"), "{out}");
        assert!(out.contains("97.0%"), "{out}");
        assert!(!out.contains("public.idle"), "{out}");
        assert!(out.contains("3 sequences not readable"), "{out}");
        assert!(out.contains("repeats &lt;img"), "{out}");
        assert!(out.contains("<td>invalid</td>"), "{out}");
    }
}
