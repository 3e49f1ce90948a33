//! Human and JSON renderings of the store, for `pgvigil once`.
//!
//! Both read the same families `/metrics` encodes, so what a developer sees
//! on the terminal is what Prometheus would scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value as Json, json};

use crate::collect::active_sessions::report::{LoadReport, label, summary};
use crate::collect::statements::report::{SinceReset, StatementsReport};
use crate::collect::{connections, database_size, databases, server};
use crate::metric::{Desc, Family, Value};
use crate::saturation::{Pool, Saturation};
use crate::snapshot::{Detail, TargetView, unix_now};

pub mod consistency;
pub mod redis;
pub mod schema;
pub mod statements;
pub mod vacuum;
pub mod vacuum_tables;

fn families(view: &TargetView) -> impl Iterator<Item = &Family> {
    view.collectors
        .iter()
        .flat_map(|(_, state)| state.families.iter())
}

fn series_json(family: &Family) -> Vec<Json> {
    family
        .series
        .iter()
        .map(|s| {
            let labels: BTreeMap<_, _> = family.desc.labels.iter().zip(&s.labels).collect();
            let value = match &s.value {
                Value::Number(v) => json!(v),
                Value::Info => json!(1),
                Value::Histogram(h) => {
                    let mut cumulative = 0;
                    let buckets: Vec<Json> = h
                        .bounds
                        .iter()
                        .zip(&h.counts)
                        .map(|(le, n)| {
                            cumulative += n;
                            json!([le, cumulative])
                        })
                        .collect();
                    json!({ "buckets": buckets, "sum": h.sum, "count": h.count })
                }
            };
            json!({ "labels": labels, "value": value })
        })
        .collect()
}

/// What the server collector says a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not in recovery.
    Primary,
    /// A standby in recovery.
    Replica,
    /// Not collected (yet).
    Unknown,
}

impl Role {
    /// As shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Unknown => "role unknown",
        }
    }

    /// A target's role, from `pg_in_recovery`.
    pub fn of(view: &TargetView) -> Role {
        match view.value(&server::IN_RECOVERY, &[]) {
            Some(v) if v > 0.0 => Role::Replica,
            Some(_) => Role::Primary,
            None => Role::Unknown,
        }
    }
}

/// A target's server version: "PostgreSQL 15.4", or "version unknown".
pub fn version(view: &TargetView) -> String {
    view.family(&server::INFO)
        .and_then(|f| f.series.first())
        .and_then(|s| s.labels.first())
        .map(|v| format!("PostgreSQL {v}"))
        .unwrap_or_else(|| "version unknown".into())
}

/// The largest replication lag a target reports, seconds: on a primary the
/// slowest replica's replay lag, on a replica its own. Absent when not
/// measured.
pub fn replication_lag(view: &TargetView) -> Option<f64> {
    use crate::collect::replication::{LAG_SECONDS, REPLAY_LAG};
    let kind = LAG_SECONDS.labels.iter().position(|l| *l == "kind");
    let primary = view.family(&LAG_SECONDS).and_then(|f| {
        f.series
            .iter()
            .filter(|s| kind.is_some_and(|k| s.labels[k] == "replay"))
            .filter_map(|s| match s.value {
                Value::Number(v) => Some(v),
                _ => None,
            })
            .reduce(f64::max)
    });
    primary.or_else(|| view.value(&REPLAY_LAG, &[]))
}

/// Who a target is: version, role, start time and replication lag.
pub fn server_json(view: &TargetView) -> Json {
    json!({
        "version": version(view),
        "role": Role::of(view).as_str(),
        "started_at": view.value(&server::START_TIME, &[]),
        "replication_lag_seconds": replication_lag(view),
    })
}

/// The statements report of a target, if its collector has produced one.
pub fn statements_of(view: &TargetView) -> Option<&StatementsReport> {
    view.collectors.iter().find_map(|(_, s)| match &s.detail {
        Some(Detail::Statements(d)) => d.interval.as_deref(),
        _ => None,
    })
}

/// The statements since the last statistics reset, if collected.
pub fn since_reset_of(view: &TargetView) -> Option<&SinceReset> {
    view.collectors.iter().find_map(|(_, s)| match &s.detail {
        Some(Detail::Statements(d)) => d.since_reset.as_deref(),
        _ => None,
    })
}

/// The active_sessions collector's load report of a target, if any.
pub fn load_of(view: &TargetView) -> Option<&LoadReport> {
    view.collectors.iter().find_map(|(_, s)| match &s.detail {
        Some(Detail::ActiveSessions(r)) => Some(r.as_ref()),
        _ => None,
    })
}

/// `/api/v1/plans`: recent automatic plans of every target, newest first.
pub fn plans_json(views: &[TargetView]) -> Json {
    let mut plans: Vec<(f64, Json)> = Vec::new();
    for view in views {
        for (_, state) in &view.collectors {
            if let Some(Detail::Plans(list)) = &state.detail {
                for p in list.iter() {
                    let mut value = serde_json::to_value(p.as_ref()).unwrap_or(Json::Null);
                    if let Some(obj) = value.as_object_mut() {
                        obj.insert("target".into(), json!(&*view.name));
                    }
                    plans.push((p.explained_at, value));
                }
            }
        }
    }
    plans.sort_by(|a, b| b.0.total_cmp(&a.0));
    json!({ "plans": plans.into_iter().map(|(_, p)| p).collect::<Vec<_>>() })
}

/// Why a target has no fresh report from collector `name`: it is off, or
/// its last run's error (None when the last run succeeded).
pub fn collector_error(view: &TargetView, name: &str) -> Option<String> {
    match view.collectors.iter().find(|(n, _)| *n == name) {
        None => Some(format!("the {name} collector is off")),
        Some((_, state)) => state.last_error.clone(),
    }
}

/// `/api/v1/statements`: per target, the last interval's report, or the
/// reason there is none.
pub fn statements_json(views: &[TargetView]) -> Json {
    let targets: Vec<Json> = views
        .iter()
        .map(|view| {
            let error = collector_error(view, "statements");
            let report = statements_of(view).map(|r| {
                let mut report = serde_json::to_value(r).unwrap_or(Json::Null);
                // Each statement's load by wait event, joined on queryid.
                if let Some(load) = load_of(view) {
                    load.annotate(&mut report);
                }
                report
            });
            let error = match (&report, error) {
                (None, None) => {
                    Some("waiting for a second sample (percentiles need an interval)".to_string())
                }
                (_, e) => e,
            };
            let since_reset =
                since_reset_of(view).map(|r| serde_json::to_value(r).unwrap_or(Json::Null));
            json!({ "target": &*view.name, "report": report, "since_reset": since_reset, "error": error })
        })
        .collect();
    json!({ "targets": targets })
}

/// Targets, collector health and every series as one JSON document.
pub fn json(views: &[TargetView]) -> Json {
    let targets: Vec<Json> = views
        .iter()
        .map(|view| {
            let collectors: Vec<Json> = view
                .collectors
                .iter()
                .map(|(name, s)| {
                    json!({
                        "name": name,
                        "success": s.success,
                        "duration_seconds": s.duration.as_secs_f64(),
                        "error": s.last_error,
                    })
                })
                .collect();
            let metrics: Vec<Json> = families(view)
                .filter(|f| !f.series.is_empty())
                .map(|f| {
                    json!({
                        "name": f.desc.exposed_name(),
                        "type": f.desc.kind.as_str(),
                        "help": f.desc.help,
                        "series": series_json(f),
                    })
                })
                .collect();
            let statements =
                statements_of(view).map(|r| serde_json::to_value(r).unwrap_or(Json::Null));
            let since_reset =
                since_reset_of(view).map(|r| serde_json::to_value(r).unwrap_or(Json::Null));
            json!({
                "name": &*view.name,
                "up": view.up,
                "server": server_json(view),
                "collectors": collectors,
                "statements": statements,
                "statements_since_reset": since_reset,
                "saturation": Saturation::of(view),
                "vacuum": vacuum::report_json(view),
                "schema": schema::schema_of(view),
                "consistency": consistency::consistency_of(view),
                "backup": consistency::backup_of(view),
                "load": load_of(view),
                "metrics": metrics,
            })
        })
        .collect();
    json!({ "version": crate::cli::VERSION, "targets": targets })
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Formats rows as aligned columns under a header.
pub fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", padded.join("  ").trim_end());
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// Which statements a table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// The last interval's.
    Interval,
    /// Those since the last statistics reset (cumulative).
    SinceReset,
}

/// A readable summary of each target.
pub fn table(views: &[TargetView], shown: Shown) -> String {
    let mut out = String::new();
    for view in views {
        let version = version(view);
        let role = Role::of(view).as_str();
        let up = match view.up {
            Some(true) => "up",
            Some(false) => "DOWN",
            None => "not yet collected",
        };
        if view.redis {
            let _ = writeln!(out, "target {} (redis): {up}", view.name);
        } else {
            let _ = writeln!(out, "target {}: {up}, {version}, {role}", view.name);
        }
        for (name, s) in &view.collectors {
            let status = match &s.last_error {
                None => format!("ok in {} ms", s.duration.as_millis()),
                Some(e) => format!("FAILED: {e}"),
            };
            let _ = writeln!(out, "  collector {name:<12} {status}");
        }

        let saturation = Saturation::of(view);
        if let (Some(conns), Some(pg)) =
            (view.family(&connections::CONNECTIONS), &saturation.postgres)
        {
            let limit = match (pg.max_connections, pg.reserved, pg.usable, pg.ratio) {
                (Some(m), Some(r), Some(u), Some(ratio)) => format!(
                    " of {u} usable ({m} max_connections - {r} reserved), {}",
                    percent(ratio)
                ),
                _ => String::new(),
            };
            let _ = writeln!(out, "\nconnections: {}{limit}", pg.used);
            let mut rows: Vec<Vec<String>> = conns
                .series
                .iter()
                .map(|s| {
                    let mut row = s.labels.clone();
                    row.push(match s.value {
                        Value::Number(v) => v.to_string(),
                        _ => String::new(),
                    });
                    row
                })
                .collect();
            rows.sort();
            out.push_str(&columns(
                &["DATABASE", "USER", "APPLICATION", "STATE", "COUNT"],
                &rows,
            ));
        }

        if !saturation.pools.is_empty() {
            out.push_str(&pools_table(&saturation.pools));
        }

        if let Some(commits) = view.family(&databases::XACT_COMMIT) {
            let _ = writeln!(out, "\ndatabases:");
            let get = |desc: &'static Desc, db: &str| view.value(desc, &[db]);
            let rows: Vec<Vec<String>> = commits
                .series
                .iter()
                .map(|s| {
                    let db = s.labels[0].as_str();
                    let hit = get(&databases::BLKS_HIT, db).unwrap_or(0.0);
                    let read = get(&databases::BLKS_READ, db).unwrap_or(0.0);
                    let ratio = if hit + read > 0.0 {
                        format!("{:.1}%", 100.0 * hit / (hit + read))
                    } else {
                        "-".into()
                    };
                    vec![
                        db.to_string(),
                        get(&database_size::SIZE, db)
                            .map(bytes)
                            .unwrap_or_else(|| "-".into()),
                        get(&databases::XACT_COMMIT, db)
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                        get(&databases::XACT_ROLLBACK, db)
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                        ratio,
                        get(&databases::FROZEN_XID_AGE, db)
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                        get(&connections::LONGEST_XACT, db)
                            .map(|v| format!("{v:.1}s"))
                            .unwrap_or_else(|| "-".into()),
                        get(&connections::BLOCKED, db)
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            out.push_str(&columns(
                &[
                    "DATABASE",
                    "SIZE",
                    "COMMITS",
                    "ROLLBACKS",
                    "CACHE HIT",
                    "XID AGE",
                    "LONGEST XACT",
                    "BLOCKED",
                ],
                &rows,
            ));
        }
        if let Some(report) = vacuum::vacuum_of(view) {
            out.push_str(&vacuum::table(report));
        }
        if let Some(report) = vacuum_tables::tables_of(view) {
            out.push_str(&vacuum_tables::table(report));
        }
        match shown {
            Shown::Interval => {
                if let Some(report) = statements_of(view) {
                    out.push_str(&statements::interval_table(report));
                }
            }
            Shown::SinceReset => {
                if let Some(report) = since_reset_of(view) {
                    out.push_str(&statements::since_reset_table(report, unix_now()));
                }
            }
        }
        if let Some(report) = schema::schema_of(view) {
            out.push_str(&schema::table(report));
        }
        if let Some(report) = consistency::consistency_of(view) {
            out.push_str(&consistency::table(report));
        }
        if let Some(report) = consistency::backup_of(view) {
            out.push_str(&consistency::backup_table(report, unix_now()));
        }
        if let Some(load) = load_of(view) {
            out.push_str(&load_table(load, statements_of(view)));
        }
        if view.redis {
            redis::table(view, &mut out);
        }
        out.push('\n');
    }
    out
}

fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

/// PgBouncer pools, busiest first: waiting clients and server connections
/// against `pool_size`.
fn pools_table(pools: &[Pool]) -> String {
    let rows: Vec<Vec<String>> = pools
        .iter()
        .map(|p| {
            vec![
                p.pgbouncer.clone().unwrap_or_else(|| "-".into()),
                p.database.clone(),
                p.user.clone(),
                p.clients_active.to_string(),
                p.clients_waiting.to_string(),
                format!("{:.3}s", p.maxwait_seconds),
                p.servers_used.to_string(),
                p.pool_size
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                p.ratio.map(percent).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = String::from("\npools:\n");
    out.push_str(&columns(
        &[
            "PGBOUNCER",
            "DATABASE",
            "USER",
            "ACTIVE",
            "WAITING",
            "MAXWAIT",
            "SERVERS",
            "POOL SIZE",
            "USE",
        ],
        &rows,
    ));
    out
}

/// Database load by wait event, then per statement with its text when the
/// statements report has it.
fn load_table(load: &LoadReport, statements: Option<&StatementsReport>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nload over the last {:.0}s: {:.2} average active sessions",
        load.window_seconds, load.average_active_sessions
    );
    let rows: Vec<Vec<String>> = load
        .wait_events
        .iter()
        .take(10)
        .map(|w| {
            vec![
                label(w),
                format!(
                    "{:.2}",
                    w.seconds / load.window_seconds.max(f64::MIN_POSITIVE)
                ),
                percent(w.ratio),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&columns(&["WAIT EVENT", "SESSIONS", "SHARE"], &rows));
    }
    if !load.per_statement || load.statements.is_empty() {
        return out;
    }
    let text = |queryid: &str| {
        statements
            .and_then(|r| r.statements.iter().find(|s| s.queryid == queryid))
            .and_then(|s| s.query.as_deref())
            .map(|q| crate::sql::shorten(q, 60))
            .unwrap_or_else(|| "-".into())
    };
    let rows: Vec<Vec<String>> = load
        .statements
        .iter()
        .take(10)
        .map(|s| {
            vec![
                s.queryid.clone(),
                format!("{:.2}", s.average_active_sessions),
                summary(&s.wait_events, 3),
                text(&s.queryid),
            ]
        })
        .collect();
    out.push_str("\nload by statement:\n");
    out.push_str(&columns(
        &["QUERYID", "SESSIONS", "WAIT EVENTS", "QUERY"],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_du() {
        let cases = [
            (0.0, "0 B"),
            (1023.0, "1023 B"),
            (1536.0, "1.5 kB"),
            (7_700_000.0, "7.3 MB"),
        ];
        for (n, want) in cases {
            assert_eq!(bytes(n), want);
        }
    }

    #[test]
    fn columns_align() {
        let out = columns(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(out, "  A    LONGER\n  xyz  1\n");
    }
}
