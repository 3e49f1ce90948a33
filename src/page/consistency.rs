//! The consistency section of the `/` page: amcheck's progress and every
//! corrupt relation it found.

use std::fmt::Write as _;

use super::escape;
use crate::report::consistency::{consistency_of, progress};
use crate::snapshot::TargetView;

/// Appends the section for `view` (nothing when the collector is off).
pub fn section(view: &TargetView, out: &mut String) {
    let Some(report) = consistency_of(view) else {
        return;
    };
    let _ = writeln!(
        out,
        "<h3>Consistency (amcheck)</h3><p class=\"muted\">{} · \
         <a href=\"/api/v1/consistency\">/api/v1/consistency</a></p>",
        escape(&progress(report))
    );
    if report.findings.is_empty() {
        if report.note.is_none() {
            out.push_str("<p>no corruption found</p>\n");
        }
        return;
    }
    out.push_str(
        "<table><tr><th>database</th><th>kind</th><th>relation</th><th>table</th>\
         <th>block</th><th>message</th></tr>\n",
    );
    for f in &report.findings {
        let _ = writeln!(
            out,
            "<tr class=\"critical\"><td>{}</td><td>{}</td><td>{}.{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.datname),
            escape(&f.kind),
            escape(&f.schemaname),
            escape(&f.relname),
            escape(f.table.as_deref().unwrap_or("")),
            f.block.map(|b| b.to_string()).unwrap_or_default(),
            escape(&f.message),
        );
    }
    out.push_str("</table>\n");
}
