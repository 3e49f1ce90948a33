//! Redis targets for people: `/api/v1/redis` and the Redis section of
//! `pgvigil once --format table`, from the same stored families and
//! reports `/metrics` encodes.

use std::fmt::Write as _;

use serde_json::{Value as Json, json};

use crate::collect::redis::report::{CommandsReport, SlowlogReport};
use crate::collect::redis::{info, replication};
use crate::snapshot::{Detail, TargetView};

/// The last commands report of a Redis target.
pub fn commands_of(view: &TargetView) -> Option<&CommandsReport> {
    view.collectors.iter().find_map(|(_, s)| match &s.detail {
        Some(Detail::RedisCommands(r)) => Some(r.as_ref()),
        _ => None,
    })
}

/// The last slow-log report of a Redis target.
pub fn slowlog_of(view: &TargetView) -> Option<&SlowlogReport> {
    view.collectors.iter().find_map(|(_, s)| match &s.detail {
        Some(Detail::RedisSlowlog(r)) => Some(r.as_ref()),
        _ => None,
    })
}

/// Hits over hits plus misses since the server started (or its stats
/// were reset); absent before any lookup.
pub fn hit_ratio(view: &TargetView) -> Option<f64> {
    let hits = view.value(&info::HITS, &[])?;
    let misses = view.value(&info::MISSES, &[])?;
    (hits + misses > 0.0).then(|| hits / (hits + misses))
}

fn role(view: &TargetView) -> Option<String> {
    let family = view.family(&info::INSTANCE)?;
    family.series.first().map(|s| s.labels[0].clone())
}

fn version(view: &TargetView) -> Option<String> {
    let family = view.family(&info::INSTANCE)?;
    family.series.first().map(|s| s.labels[1].clone())
}

/// `/api/v1/redis`: per Redis target, its state, hit ratio, memory, top
/// commands with latency percentiles and the slowest slow-log entries.
pub fn redis_json(views: &[TargetView]) -> Json {
    let mut targets = serde_json::Map::new();
    for view in views.iter().filter(|v| v.redis) {
        let link_up = view
            .family(&replication::MASTER_LINK_UP)
            .and_then(|f| f.series.first())
            .and_then(|s| s.value.number());
        targets.insert(
            view.name.to_string(),
            json!({
                "up": view.up,
                "role": role(view),
                "version": version(view),
                "hit_ratio": hit_ratio(view),
                "memory_used_bytes": view.value(&info::MEMORY_USED, &[]),
                "memory_max_bytes": view.value(&info::MEMORY_MAX, &[]),
                "connected_clients": view.value(&info::CONNECTED_CLIENTS, &[]),
                "max_clients": view.value(&info::MAX_CLIENTS, &[]),
                "master_link_up": link_up,
                "last_bgsave_ok": view.value(&replication::RDB_LAST_STATUS, &[]).map(|v| v == 1.0),
                "commands": commands_of(view),
                "slowlog": slowlog_of(view),
            }),
        );
    }
    json!({ "targets": targets })
}

fn micros(seconds: Option<f64>) -> String {
    seconds
        .map(|s| format!("{:.1}", s * 1e6))
        .unwrap_or_else(|| "-".into())
}

/// The Redis section of the table for one Redis target.
pub fn table(view: &TargetView, out: &mut String) {
    let _ = writeln!(
        out,
        "\nredis: {} {}, hit ratio {}, memory {} of {}, clients {} of {}",
        role(view).unwrap_or_else(|| "?".into()),
        version(view).unwrap_or_default(),
        hit_ratio(view)
            .map(|r| format!("{:.1}%", r * 100.0))
            .unwrap_or_else(|| "-".into()),
        view.value(&info::MEMORY_USED, &[])
            .map(|v| format!("{v}"))
            .unwrap_or_else(|| "-".into()),
        view.value(&info::MEMORY_MAX, &[])
            .map(|v| if v == 0.0 {
                "no limit".into()
            } else {
                format!("{v}")
            })
            .unwrap_or_else(|| "-".into()),
        view.value(&info::CONNECTED_CLIENTS, &[])
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into()),
        view.value(&info::MAX_CLIENTS, &[])
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into()),
    );
    if let Some(report) = commands_of(view).filter(|r| !r.top.is_empty()) {
        let _ = writeln!(out, "\ntop Redis commands by time (latency in µs):");
        let rows: Vec<Vec<String>> = report
            .top
            .iter()
            .map(|c| {
                vec![
                    c.cmd.clone(),
                    c.calls.to_string(),
                    format!("{:.3}", c.total_seconds),
                    micros(Some(c.mean_seconds)),
                    micros(c.p50_seconds),
                    micros(c.p99_seconds),
                    micros(c.p999_seconds),
                    (c.rejected_calls + c.failed_calls).to_string(),
                ]
            })
            .collect();
        out.push_str(&super::columns(
            &[
                "COMMAND", "CALLS", "TOTAL S", "MEAN", "P50", "P99", "P99.9", "ERRORS",
            ],
            &rows,
        ));
    }
    if let Some(slow) = slowlog_of(view).filter(|s| !s.slowest.is_empty()) {
        let _ = writeln!(out, "\nslowest Redis slow-log entries:");
        let rows: Vec<Vec<String>> = slow
            .slowest
            .iter()
            .map(|e| {
                vec![
                    e.id.to_string(),
                    e.command.clone(),
                    format!("{:.3}", e.duration_seconds * 1e3),
                ]
            })
            .collect();
        out.push_str(&super::columns(&["ID", "COMMAND", "MS"], &rows));
    }
}
