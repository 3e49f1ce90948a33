//! `redis_commands`: `INFO commandstats` (calls, time, rejected and failed
//! calls per command, the server's own counters) and, on Redis 7+,
//! `INFO latencystats` (p50/p99/p99.9 per command, from the server's own
//! per-command histograms since its start or `CONFIG RESETSTAT`).
//!
//! Cardinality is bounded by Redis's command table, and only commands
//! that ran appear. The report (top commands by time, with their
//! percentiles) feeds `/api/v1/redis`, the table and the `/` page.

use std::sync::Arc;

use async_trait::async_trait;

use super::parse::{Info, num};
use super::report::{CommandStat, CommandsReport};
use super::{RedisCollector, info};
use crate::collect::{CollectError, Collected, Detail};
use crate::connection::redis::Link;
use crate::desc;
use crate::metric::{Desc, Family};

static CALLS: Desc = desc!(Counter "redis_commands", ["cmd"], "Calls per command.");
static DURATION: Desc =
    desc!(Counter "redis_commands_duration_seconds", ["cmd"], "Time spent executing each command.");
static REJECTED: Desc = desc!(Counter "redis_commands_rejected_calls", ["cmd"], "Calls refused before execution (unknown command, wrong arity, ACL, OOM …) per command.");
static FAILED: Desc = desc!(Counter "redis_commands_failed_calls", ["cmd"], "Calls that failed during execution per command.");
static PERCENTILES: Desc = desc!(Gauge "redis_latency_percentiles", unit = Seconds, ["cmd", "percentile"], "Latency percentiles per command (percentile p50, p99, p99.9) from INFO latencystats, over the server's life since its start or CONFIG RESETSTAT.", only_when = "the server has INFO latencystats (Redis 7+)");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[&CALLS, &DURATION, &REJECTED, &FAILED, &PERCENTILES];

/// The percentiles latencystats reports by default, its field names and
/// `percentile` label values. redis_exporter publishes them as a summary
/// (`redis_latency_percentiles_usec{quantile}`); a gauge may not carry
/// `quantile` and `usec` is not a base unit (promtool refuses both), so
/// here they are seconds with a `percentile` label.
const QUANTILES: [(&str, &str); 3] = [("p50", "p50"), ("p99", "p99"), ("p99.9", "p99.9")];

/// How many commands the report lists.
pub const TOP: usize = 10;

/// The `redis_commands` collector.
#[derive(Debug, Default)]
pub struct RedisCommands;

#[async_trait]
impl RedisCollector for RedisCommands {
    async fn collect(&mut self, link: &mut Link) -> Result<Collected, CollectError> {
        let stats = info(link, "INFO commandstats", Some("commandstats")).await?;
        // An empty reply (Redis 6) means no latencystats: not an error.
        let latency = info(link, "INFO latencystats", Some("latencystats")).await?;
        let (families, report) = collect_from(&stats, &latency);
        Ok(Collected {
            families,
            detail: Some(Detail::RedisCommands(Arc::new(report))),
        })
    }
}

/// The families and report of one commandstats and latencystats reply.
pub fn collect_from(stats: &Info, latency: &Info) -> (Vec<Family>, CommandsReport) {
    let (mut calls, mut duration, mut rejected, mut failed, mut pct) = (
        Family::new(&CALLS),
        Family::new(&DURATION),
        Family::new(&REJECTED),
        Family::new(&FAILED),
        Family::new(&PERCENTILES),
    );
    let mut all = Vec::new();
    let mut latencystats = false;
    for (cmd, s) in stats.lists("cmdstat_") {
        let cmd = crate::metric::truncate_label(cmd);
        let c = num(&s, "calls").unwrap_or(0.0);
        let total = num(&s, "usec").unwrap_or(0.0) / 1e6;
        let r = num(&s, "rejected_calls");
        let f = num(&s, "failed_calls");
        calls.push(&[&cmd], c);
        duration.push(&[&cmd], total);
        if let Some(r) = r {
            rejected.push(&[&cmd], r);
        }
        if let Some(f) = f {
            failed.push(&[&cmd], f);
        }
        all.push(CommandStat {
            cmd,
            calls: c,
            total_seconds: total,
            mean_seconds: if c > 0.0 { total / c } else { 0.0 },
            rejected_calls: r.unwrap_or(0.0),
            failed_calls: f.unwrap_or(0.0),
            p50_seconds: None,
            p99_seconds: None,
            p999_seconds: None,
        });
    }
    for (cmd, p) in latency.lists("latency_percentiles_usec_") {
        latencystats = true;
        let cmd = crate::metric::truncate_label(cmd);
        let mut values = [None; 3];
        for (i, (field, quantile)) in QUANTILES.iter().enumerate() {
            if let Some(v) = num(&p, field) {
                pct.push(&[cmd.as_str(), quantile], v / 1e6);
                values[i] = Some(v / 1e6);
            }
        }
        if let Some(stat) = all.iter_mut().find(|s| s.cmd == cmd) {
            [stat.p50_seconds, stat.p99_seconds, stat.p999_seconds] = values;
        }
    }
    all.sort_by(|a, b| b.total_seconds.total_cmp(&a.total_seconds));
    all.truncate(TOP);
    (
        vec![calls, duration, rejected, failed, pct],
        CommandsReport {
            top: all,
            latencystats,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_percentiles_per_command() {
        let stats = Info::parse(
            "# Commandstats\r\ncmdstat_get:calls=10,usec=50,usec_per_call=5.00,rejected_calls=1,failed_calls=0\r\n\
             cmdstat_set:calls=2,usec=400,usec_per_call=200.00,rejected_calls=0,failed_calls=2\r\n",
        );
        let latency = Info::parse(
            "# Latencystats\r\nlatency_percentiles_usec_get:p50=4.001,p99=9.023,p99.9=12.031\r\n",
        );
        let (families, report) = collect_from(&stats, &latency);
        assert_eq!(families[0].value(&["get"]), Some(10.0));
        assert_eq!(families[1].value(&["set"]), Some(0.0004));
        assert_eq!(families[3].value(&["set"]), Some(2.0));
        assert_eq!(families[4].value(&["get", "p99"]), Some(9.023e-6));
        assert_eq!(report.top[0].cmd, "set", "most time first");
        assert_eq!(report.top[1].p999_seconds, Some(12.031e-6));
        assert!(report.latencystats);
    }
}
