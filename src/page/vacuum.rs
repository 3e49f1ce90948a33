//! The "Vacuum held back by" section of the `/` page: the xmin-horizon
//! holders named, each database's distance to wraparound, running vacuums.
//! Every string from the server goes through [`escape`].

use std::fmt::Write as _;

use super::escape;
use crate::collect::vacuum::report::VacuumReport;
use crate::report::vacuum::who;

fn cell(v: Option<&str>) -> String {
    escape(v.filter(|s| !s.is_empty()).unwrap_or("-"))
}

/// Renders one target's vacuum report.
pub fn section(report: &VacuumReport, out: &mut String) {
    let now = crate::snapshot::unix_now();
    let ago = |t: Option<f64>| {
        t.map(|t| format!("{:.0} s ago", (now - t).max(0.0)))
            .unwrap_or_else(|| "-".into())
    };
    let _ = writeln!(
        out,
        "<h3>Vacuum held back by</h3><p class=\"vacuum-held\">{}</p>",
        escape(report.held_back_by.as_deref().unwrap_or("nothing"))
    );
    if !report.holders.is_empty() {
        out.push_str(
            "<table class=\"holders\"><tr><th>holder</th><th>age (xids)</th><th>who</th>\
             <th>database</th><th>user</th><th>state</th><th>since</th></tr>\n",
        );
        for h in &report.holders {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"n\">{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&h.holder),
                h.age,
                escape(&who(h)),
                cell(h.datname.as_deref()),
                cell(h.usename.as_deref()),
                cell(h.state.as_deref()),
                escape(&ago(h.since)),
            );
        }
        out.push_str("</table>\n");
    }
    let w = &report.wraparound;
    let _ = writeln!(
        out,
        "<h3>Wraparound</h3><p>autovacuum_freeze_max_age {:.0}, autovacuum_multixact_freeze_max_age {:.0}</p>\
         <table class=\"wraparound\"><tr><th>database</th><th>XID age</th><th>of freeze max</th>\
         <th>MXID age</th><th>of freeze max</th></tr>",
        w.autovacuum_freeze_max_age, w.autovacuum_multixact_freeze_max_age
    );
    for d in &w.databases {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{:.0}</td><td class=\"n\">{:.1}%</td><td class=\"n\">{:.0}</td><td class=\"n\">{:.1}%</td></tr>",
            escape(&d.datname),
            d.xid_age,
            100.0 * d.xid_share_of_freeze_max_age,
            d.mxid_age,
            100.0 * d.mxid_share_of_freeze_max_age,
        );
    }
    out.push_str("</table>\n");
    let _ = writeln!(
        out,
        "<h3>Running vacuums</h3><p>{} autovacuum workers of {}</p>",
        report.autovacuum_workers, report.autovacuum_max_workers
    );
    if !report.running.is_empty() {
        out.push_str(
            "<table class=\"vacuums\"><tr><th>pid</th><th>database</th><th>table</th><th>kind</th>\
             <th>phase</th><th>heap blocks scanned</th><th>since</th></tr>\n",
        );
        for v in &report.running {
            let _ = writeln!(
                out,
                "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{:.0} / {:.0}</td><td>{}</td></tr>",
                v.pid,
                escape(&v.datname),
                escape(&v.relname),
                escape(&v.kind),
                escape(&v.phase),
                v.heap_blks_scanned,
                v.heap_blks_total,
                escape(&ago(v.since)),
            );
        }
        out.push_str("</table>\n");
    }
}
