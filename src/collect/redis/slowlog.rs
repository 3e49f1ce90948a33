//! `redis_slowlog` (`SLOWLOG LEN`, `SLOWLOG GET 128`) and `redis_cluster`
//! (`CLUSTER INFO`, when cluster mode is on).
//!
//! Slow-log entries carry ids from a counter the server never resets
//! (`SLOWLOG RESET` empties the log, not the counter), so the newest id
//! plus one is the server's own count of slow commands since it started:
//! `redis_slowlog_entries_total` is that count, the same for a restarted
//! pgvigil, a long-running one and `pgvigil once`; nothing is counted
//! twice. Only each entry's command name is kept, never its arguments
//! (they hold keys and values).

use std::sync::Arc;

use async_trait::async_trait;

use super::parse::Info;
use super::report::{SlowEntry, SlowlogReport};
use super::{RedisCollector, info};
use crate::collect::{CollectError, Collected, Detail};
use crate::connection::redis::Link;
use crate::desc;
use crate::metric::{Desc, Family};

static LENGTH: Desc = desc!(Gauge "redis_slowlog_length", [], "Entries in the slow log now (at most slowlog-max-len).");
static LAST_ID: Desc = desc!(Gauge "redis_slowlog_last_id", [], "Id of the newest slow-log entry.", only_when = "the slow log holds an entry");
static ENTRIES: Desc = desc!(Counter "redis_slowlog_entries", [], "Slow commands logged since the server started (the newest entry's id plus one).", only_when = "the slow log holds an entry");
static LAST_DURATION: Desc = desc!(Gauge "redis_last_slow_execution_duration_seconds", [], "Execution time of the newest slow-log entry.", only_when = "the slow log holds an entry");
static SLOWEST: Desc = desc!(Gauge "redis_slowlog_slowest_duration_seconds", [], "Execution time of the slowest entry among the newest 128 of the slow log.", only_when = "the slow log holds an entry");

/// The `redis_slowlog` collector's families.
pub static SLOWLOG_METRICS: &[&Desc] = &[&LENGTH, &LAST_ID, &ENTRIES, &LAST_DURATION, &SLOWEST];

/// How many entries one run reads (Redis's default slowlog-max-len).
const READ: usize = 128;
/// How many of the slowest the report keeps.
const KEEP: usize = 10;

/// The `redis_slowlog` collector: remembers the newest id it saw.
#[derive(Debug, Default)]
pub struct RedisSlowlog {
    seen: Option<u64>,
}

type Raw = (u64, i64, u64, Vec<redis::Value>);

#[async_trait]
impl RedisCollector for RedisSlowlog {
    async fn collect(&mut self, link: &mut Link) -> Result<Collected, CollectError> {
        let len: u64 = link
            .query("SLOWLOG LEN", redis::cmd("SLOWLOG").arg("LEN"))
            .await?;
        let raw: Vec<Vec<redis::Value>> = link
            .query("SLOWLOG GET", redis::cmd("SLOWLOG").arg("GET").arg(READ))
            .await?;
        let entries: Vec<SlowEntry> = raw.into_iter().filter_map(entry).collect();
        let newest = entries.iter().map(|e| e.id).max();
        let new_since_last_read = match (self.seen, newest) {
            (Some(seen), Some(_)) => Some(entries.iter().filter(|e| e.id > seen).count() as u64),
            (Some(_), None) => Some(0),
            (None, _) => None,
        };
        // A server restart starts ids over: start over with it.
        self.seen = newest.or(self.seen.filter(|_| len > 0));
        let (families, report) = families(len, entries, new_since_last_read);
        Ok(Collected {
            families,
            detail: Some(Detail::RedisSlowlog(Arc::new(report))),
        })
    }
}

/// One entry: `[id, timestamp, microseconds, [args…], client, name]`.
fn entry(fields: Vec<redis::Value>) -> Option<SlowEntry> {
    let mut it = fields.into_iter();
    let id = it.next()?;
    let ts = it.next()?;
    let us = it.next()?;
    let args = it.next()?;
    let (id, timestamp, micros, args): Raw =
        redis::from_redis_value(redis::Value::Array(vec![id, ts, us, args])).ok()?;
    let command = args
        .first()
        .and_then(|a| redis::from_redis_value::<String>(a.clone()).ok())
        .map(|c| crate::metric::truncate_label(&c.to_ascii_lowercase()))
        .unwrap_or_default();
    Some(SlowEntry {
        id,
        timestamp,
        duration_seconds: micros as f64 / 1e6,
        command,
    })
}

/// The families and report of one read of the slow log.
pub fn families(
    len: u64,
    mut entries: Vec<SlowEntry>,
    new_since_last_read: Option<u64>,
) -> (Vec<Family>, SlowlogReport) {
    let mut out = vec![Family::single(&LENGTH, len as f64)];
    if let Some(newest) = entries.iter().max_by_key(|e| e.id) {
        out.push(Family::single(&LAST_ID, newest.id as f64));
        out.push(Family::single(&ENTRIES, newest.id as f64 + 1.0));
        out.push(Family::single(&LAST_DURATION, newest.duration_seconds));
    }
    entries.sort_by(|a, b| b.duration_seconds.total_cmp(&a.duration_seconds));
    if let Some(slowest) = entries.first() {
        out.push(Family::single(&SLOWEST, slowest.duration_seconds));
    }
    entries.truncate(KEEP);
    (
        out,
        SlowlogReport {
            slowest: entries,
            new_since_last_read,
        },
    )
}

static CLUSTER_STATE: Desc = desc!(Gauge "redis_cluster_state", [], "1 if CLUSTER INFO says cluster_state:ok, else 0.", only_when = "cluster mode is enabled");
static CLUSTER_FIELDS: [Desc; 7] = [
    desc!(Gauge "redis_cluster_slots_assigned", [], "Hash slots assigned to a node (16384 when complete).", only_when = "cluster mode is enabled"),
    desc!(Gauge "redis_cluster_slots_ok", [], "Hash slots whose node is healthy.", only_when = "cluster mode is enabled"),
    desc!(Gauge "redis_cluster_slots_pfail", [], "Hash slots whose node is suspected down (PFAIL).", only_when = "cluster mode is enabled"),
    desc!(Gauge "redis_cluster_slots_fail", [], "Hash slots whose node is down (FAIL).", only_when = "cluster mode is enabled"),
    desc!(Gauge "redis_cluster_known_nodes", [], "Nodes this node knows, itself included.", only_when = "cluster mode is enabled"),
    desc!(Gauge "redis_cluster_size", [], "Primaries serving at least one slot.", only_when = "cluster mode is enabled"),
    desc!(Gauge "redis_cluster_current_epoch", [], "The cluster's current epoch.", only_when = "cluster mode is enabled"),
];
const CLUSTER_KEYS: [&str; 7] = [
    "cluster_slots_assigned",
    "cluster_slots_ok",
    "cluster_slots_pfail",
    "cluster_slots_fail",
    "cluster_known_nodes",
    "cluster_size",
    "cluster_current_epoch",
];

/// The `redis_cluster` collector's families.
pub static CLUSTER_METRICS: &[&Desc] = &[
    &CLUSTER_STATE,
    &CLUSTER_FIELDS[0],
    &CLUSTER_FIELDS[1],
    &CLUSTER_FIELDS[2],
    &CLUSTER_FIELDS[3],
    &CLUSTER_FIELDS[4],
    &CLUSTER_FIELDS[5],
    &CLUSTER_FIELDS[6],
];

/// The `redis_cluster` collector: nothing (and no failure) when cluster
/// mode is off.
#[derive(Debug, Default)]
pub struct RedisCluster;

#[async_trait]
impl RedisCollector for RedisCluster {
    async fn collect(&mut self, link: &mut Link) -> Result<Collected, CollectError> {
        let enabled = info(link, "INFO cluster", Some("cluster")).await?;
        if enabled.text("cluster_enabled") != Some("1") {
            return Ok(Collected::default());
        }
        let text: String = link
            .query("CLUSTER INFO", redis::cmd("CLUSTER").arg("INFO"))
            .await?;
        Ok(cluster_families(&Info::parse(&text)).into())
    }
}

/// The families of one `CLUSTER INFO` reply.
pub fn cluster_families(info: &Info) -> Vec<Family> {
    let mut out = Vec::new();
    if let Some(state) = info.text("cluster_state") {
        out.push(Family::single(
            &CLUSTER_STATE,
            if state == "ok" { 1.0 } else { 0.0 },
        ));
    }
    for (key, desc) in CLUSTER_KEYS.iter().zip(CLUSTER_FIELDS.iter()) {
        if let Some(v) = info.number(key) {
            out.push(Family::single(desc, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: u64, micros: u64, cmd: &str) -> SlowEntry {
        SlowEntry {
            id,
            timestamp: 1,
            duration_seconds: micros as f64 / 1e6,
            command: cmd.into(),
        }
    }

    #[test]
    fn counts_come_from_entry_ids() {
        let (fams, report) = families(
            3,
            vec![e(7, 10, "get"), e(6, 500, "keys"), e(5, 20, "set")],
            Some(2),
        );
        let get = |d: &'static Desc| fams.iter().find(|f| f.is(d)).and_then(|f| f.value(&[]));
        assert_eq!(get(&ENTRIES), Some(8.0));
        assert_eq!(get(&LAST_ID), Some(7.0));
        assert_eq!(get(&LAST_DURATION), Some(10e-6));
        assert_eq!(get(&SLOWEST), Some(500e-6));
        assert_eq!(report.slowest[0].command, "keys");
        let (fams, _) = families(0, vec![], None);
        assert_eq!(fams.len(), 1, "an empty log: only its length");
    }

    #[test]
    fn an_entry_keeps_only_the_command_name() {
        use redis::Value::*;
        let raw = vec![
            Int(4),
            Int(1_700_000_000),
            Int(1234),
            Array(vec![
                BulkString(b"SET".to_vec()),
                BulkString(b"secret-key".to_vec()),
            ]),
            BulkString(b"127.0.0.1:5000".to_vec()),
            BulkString(b"".to_vec()),
        ];
        assert_eq!(
            entry(raw),
            Some(e(4, 1234, "set")).map(|mut x| {
                x.timestamp = 1_700_000_000;
                x
            })
        );
    }

    #[test]
    fn cluster_info() {
        let info = Info::parse(
            "cluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16000\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:384\r\ncluster_known_nodes:6\r\ncluster_size:3\r\n",
        );
        let families = cluster_families(&info);
        assert_eq!(families[0].value(&[]), Some(0.0));
        assert_eq!(
            families
                .iter()
                .find(|f| f.is(&CLUSTER_FIELDS[3]))
                .unwrap()
                .value(&[]),
            Some(384.0)
        );
    }
}
