//! The tables part of the vacuum section of the `/` page: each database's
//! tables closest to an anti-wraparound vacuum, and the vacuum history of
//! the tables with most dead tuples. Every string from the server goes
//! through [`escape`].

use std::fmt::Write as _;

use super::escape;
use crate::collect::vacuum::report::tables::VacuumTablesReport;
use crate::report::vacuum_tables::latest;

/// Renders one target's vacuum_tables report.
pub fn section(report: &VacuumTablesReport, out: &mut String) {
    let now = crate::snapshot::unix_now();
    let ago = |t: Option<f64>| {
        t.map(|t| format!("{:.0} s ago", (now - t).max(0.0)))
            .unwrap_or_else(|| "-".into())
    };
    out.push_str(
        "<h3>Oldest tables</h3><table class=\"oldest-tables\"><tr><th>database</th><th>table</th>\
         <th>XID age</th><th>of freeze max</th><th>MXID age</th><th>of freeze max</th></tr>\n",
    );
    for d in &report.oldest {
        for t in &d.tables {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}.{}</td><td class=\"n\">{:.0}</td><td class=\"n\">{:.1}%</td><td class=\"n\">{:.0}</td><td class=\"n\">{:.1}%</td></tr>",
                escape(&d.datname),
                escape(&t.schemaname),
                escape(&t.relname),
                t.xid_age,
                100.0 * t.xid_share_of_freeze_max_age,
                t.mxid_age,
                100.0 * t.mxid_share_of_freeze_max_age,
            );
        }
    }
    out.push_str("</table>\n");
    if report.tables.is_empty() {
        return;
    }
    out.push_str(
        "<h3>Table vacuum history</h3><table class=\"table-vacuums\"><tr><th>database</th><th>table</th>\
         <th>dead tuples</th><th>modified since analyze</th><th>vacuums (manual / auto)</th>\
         <th>analyzes (manual / auto)</th><th>last vacuum</th><th>last analyze</th></tr>\n",
    );
    for t in &report.tables {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}.{}</td><td class=\"n\">{:.0}</td><td class=\"n\">{:.0}</td><td class=\"n\">{:.0} / {:.0}</td><td class=\"n\">{:.0} / {:.0}</td><td>{}</td><td>{}</td></tr>",
            escape(&t.datname),
            escape(&t.schemaname),
            escape(&t.relname),
            t.dead_tuples,
            t.n_mod_since_analyze,
            t.vacuum_count,
            t.autovacuum_count,
            t.analyze_count,
            t.autoanalyze_count,
            escape(&ago(latest(t.last_vacuum, t.last_autovacuum))),
            escape(&ago(latest(t.last_analyze, t.last_autoanalyze))),
        );
    }
    out.push_str("</table>\n");
}
