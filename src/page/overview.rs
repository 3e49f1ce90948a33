//! The page's overview sections, the same as `pgvigil once --format
//! table` shows: connections against usable slots, PgBouncer pools,
//! databases with their cache hit ratio, and the statements since the last
//! statistics reset.

use std::fmt::Write as _;

use super::{escape, millis};
use crate::collect::statements::report::{InstanceSummary, SinceReset, StatementSummary};
use crate::collect::{connections, database_size, databases};
use crate::metric::Desc;
use crate::report::statements::{share, since_words};
use crate::saturation::Saturation;
use crate::snapshot::TargetView;

/// Connections, pools and databases.
pub fn section(view: &TargetView, out: &mut String) {
    let saturation = Saturation::of(view);
    if let Some(pg) = &saturation.postgres {
        let limit = match (pg.usable, pg.max_connections, pg.reserved, pg.ratio) {
            (Some(u), Some(m), Some(r), Some(ratio)) => format!(
                " of {u} usable ({m} max_connections − {r} reserved), {:.0}%",
                ratio * 100.0
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "<h3>Connections</h3><p class=\"connections\">{}{}</p>",
            pg.used,
            escape(&limit)
        );
    }
    if !saturation.pools.is_empty() {
        out.push_str(
            "<h3>PgBouncer pools</h3><table class=\"pools\"><tr><th>pgbouncer</th><th>database</th>\
             <th>user</th><th>active</th><th>waiting</th><th>max wait</th><th>servers</th>\
             <th>pool size</th></tr>\n",
        );
        for p in &saturation.pools {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{:.3} s</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(p.pgbouncer.as_deref().unwrap_or("-")),
                escape(&p.database),
                escape(&p.user),
                p.clients_active,
                p.clients_waiting,
                p.maxwait_seconds,
                p.servers_used,
                p.pool_size
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
            );
        }
        out.push_str("</table>\n");
    }
    let Some(commits) = view.family(&databases::XACT_COMMIT) else {
        return;
    };
    out.push_str(
        "<h3>Databases</h3><table class=\"databases\"><tr><th>database</th><th>size</th>\
         <th>commits</th><th>rollbacks</th><th>cache hit</th><th>xid age</th>\
         <th>longest transaction</th></tr>\n",
    );
    let get = |desc: &'static Desc, db: &str| view.value(desc, &[db]);
    let shown = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map(f).unwrap_or_else(|| "-".into());
    for s in &commits.series {
        let db = s.labels[0].as_str();
        let hit = get(&databases::BLKS_HIT, db).unwrap_or(0.0);
        let read = get(&databases::BLKS_READ, db).unwrap_or(0.0);
        let ratio = (hit + read > 0.0).then(|| hit / (hit + read));
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(db),
            shown(get(&database_size::SIZE, db), &|v| format!(
                "{:.1} MB",
                v / 1048576.0
            )),
            shown(get(&databases::XACT_COMMIT, db), &|v| v.to_string()),
            shown(get(&databases::XACT_ROLLBACK, db), &|v| v.to_string()),
            shown(ratio, &|r| format!("{:.1}%", r * 100.0)),
            shown(get(&databases::FROZEN_XID_AGE, db), &|v| v.to_string()),
            shown(get(&connections::LONGEST_XACT, db), &|v| format!(
                "{v:.1} s"
            )),
        );
    }
    out.push_str("</table>\n");
}

/// A statements table: calls, mean, p95, p99, share of time, text.
pub fn statements_table(
    class: &str,
    statements: &[StatementSummary],
    instance: &InstanceSummary,
    out: &mut String,
) {
    let _ = writeln!(
        out,
        "<table class=\"{class}\"><tr><th>calls</th><th>mean ms</th><th>p95 ms</th>\
         <th>p99 ms</th><th>time</th><th>database</th><th>user</th><th>queryid</th><th>query</th></tr>"
    );
    for s in statements.iter().take(super::TOP_STATEMENTS) {
        let _ = writeln!(
            out,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td>\
             <td><code>{}</code></td></tr>",
            s.calls,
            millis(s.mean_seconds),
            millis(s.quantiles.p95),
            millis(s.quantiles.p99),
            share(s.total_seconds, instance),
            escape(&s.datname),
            escape(&s.usename),
            escape(&s.queryid),
            escape(s.query.as_deref().unwrap_or("(text unavailable)")),
        );
    }
    out.push_str("</table>\n");
}

/// The statements since the last statistics reset.
pub fn since_reset(report: &SinceReset, now: f64, out: &mut String) {
    let i = &report.instance;
    let _ = write!(
        out,
        "<h3>Top statements since the last reset</h3><p class=\"since-reset\">{}, cumulative: {} calls, {:.1} s",
        escape(&since_words(report, now)),
        i.calls,
        i.total_seconds,
    );
    if let Some(q) = &i.quantiles {
        let _ = write!(
            out,
            ", mean {} ms, p95 {} ms, p99 {} ms",
            millis(i.mean_seconds),
            millis(q.p95),
            millis(q.p99)
        );
    }
    out.push_str("</p>\n");
    statements_table("statements-since-reset", &report.statements, i, out);
}
