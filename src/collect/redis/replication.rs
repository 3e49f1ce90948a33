//! `redis_replication` (`INFO replication`) and `redis_persistence`
//! (`INFO persistence`): the cache's copies and its backups.
//!
//! On a primary: each replica's acknowledged offset, its lag in bytes
//! (the primary's offset minus the replica's) and seconds since its last
//! acknowledgement. On a replica: the master link and seconds since the
//! last I/O with the master, or since the link went down. A value Redis
//! reports as -1 (not known) is absent.

use async_trait::async_trait;

use super::parse::{Info, num};
use super::{RedisCollector, info};
use crate::collect::{CollectError, Collected};
use crate::connection::redis::Link;
use crate::desc;
use crate::metric::{Desc, Family};

static CONNECTED_SLAVES: Desc =
    desc!(Gauge "redis_connected_slaves", [], "Replicas connected to this server.");
static MASTER_OFFSET: Desc = desc!(Gauge "redis_master_repl_offset", [], "This server's replication offset (bytes of replication stream produced).");
static SLAVE_OFFSET: Desc = desc!(Gauge "redis_connected_slave_offset", unit = Bytes, ["slave_ip", "slave_port", "slave_state"], "Replication offset a replica acknowledged, on its primary.", only_when = "the server has replicas");
/// Public: the outputs read it.
pub static SLAVE_LAG_BYTES: Desc = desc!(Gauge "redis_connected_slave_lag", unit = Bytes, ["slave_ip", "slave_port", "slave_state"], "How far a replica is behind: the primary's offset minus the replica's acknowledged offset.", only_when = "the server has replicas");
static SLAVE_LAG_SECONDS: Desc = desc!(Gauge "redis_connected_slave_lag", unit = Seconds, ["slave_ip", "slave_port", "slave_state"], "Seconds since the replica last acknowledged (about once a second when healthy).", only_when = "the server has replicas");
static SLAVE_INFO: Desc = desc!(Info "redis_slave", ["master_host", "master_port", "read_only"], "This server is a replica of master_host:master_port.", only_when = "the server is a replica");
/// Public: the outputs read it.
pub static MASTER_LINK_UP: Desc = desc!(Gauge "redis_master_link_up", ["master_host", "master_port"], "1 if the replica's link to its master is up (master_link_status:up), else 0.", only_when = "the server is a replica");
/// Public: the outputs read it.
pub static MASTER_LAST_IO: Desc = desc!(Gauge "redis_master_last_io_seconds_ago", ["master_host", "master_port"], "Seconds since the replica last exchanged data with its master.", only_when = "the server is a replica with its link up");
static MASTER_DOWN_SINCE: Desc = desc!(Gauge "redis_master_link_down_since_seconds", ["master_host", "master_port"], "Seconds since the replica's link to its master went down.", only_when = "the server is a replica whose link is down");
static MASTER_SYNC: Desc = desc!(Gauge "redis_master_sync_in_progress", ["master_host", "master_port"], "1 while the replica loads a full copy from its master.", only_when = "the server is a replica");
static SLAVE_REPL_OFFSET: Desc = desc!(Gauge "redis_slave_repl_offset", ["master_host", "master_port"], "The replica's own replication offset.", only_when = "the server is a replica");

/// The `redis_replication` collector's families.
pub static REPLICATION_METRICS: &[&Desc] = &[
    &CONNECTED_SLAVES,
    &MASTER_OFFSET,
    &SLAVE_OFFSET,
    &SLAVE_LAG_BYTES,
    &SLAVE_LAG_SECONDS,
    &SLAVE_INFO,
    &MASTER_LINK_UP,
    &MASTER_LAST_IO,
    &MASTER_DOWN_SINCE,
    &MASTER_SYNC,
    &SLAVE_REPL_OFFSET,
];

/// The `redis_replication` collector.
#[derive(Debug, Default)]
pub struct RedisReplication;

#[async_trait]
impl RedisCollector for RedisReplication {
    async fn collect(&mut self, link: &mut Link) -> Result<Collected, CollectError> {
        let info = info(link, "INFO replication", Some("replication")).await?;
        Ok(replication_families(&info).into())
    }
}

/// The families of one `INFO replication` reply.
pub fn replication_families(info: &Info) -> Vec<Family> {
    let mut out = Vec::new();
    let master_offset = info.number("master_repl_offset");
    for (field, desc) in [
        ("connected_slaves", &CONNECTED_SLAVES),
        ("master_repl_offset", &MASTER_OFFSET),
    ] {
        if let Some(v) = info.number(field) {
            out.push(Family::single(desc, v));
        }
    }
    let (mut offset, mut lag_bytes, mut lag_seconds) = (
        Family::new(&SLAVE_OFFSET),
        Family::new(&SLAVE_LAG_BYTES),
        Family::new(&SLAVE_LAG_SECONDS),
    );
    for (n, slave) in info.lists("slave") {
        // slave0, slave1 …, not slave_repl_offset and friends.
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let labels = [
            slave.get("ip").copied().unwrap_or(""),
            slave.get("port").copied().unwrap_or(""),
            slave.get("state").copied().unwrap_or(""),
        ];
        if let Some(o) = num(&slave, "offset") {
            offset.push(&labels, o);
            if let Some(m) = master_offset {
                lag_bytes.push(&labels, (m - o).max(0.0));
            }
        }
        if let Some(l) = num(&slave, "lag").filter(|l| *l >= 0.0) {
            lag_seconds.push(&labels, l);
        }
    }
    out.extend([offset, lag_bytes, lag_seconds]);
    if info.text("role") == Some("slave") {
        let master = [
            info.text("master_host").unwrap_or(""),
            info.text("master_port").unwrap_or(""),
        ];
        let mut slave = Family::new(&SLAVE_INFO);
        slave.push_info(&[
            master[0],
            master[1],
            info.text("slave_read_only").unwrap_or(""),
        ]);
        out.push(slave);
        let up = info.text("master_link_status") == Some("up");
        let mut link = Family::new(&MASTER_LINK_UP);
        link.push(&master, if up { 1.0 } else { 0.0 });
        out.push(link);
        for (field, desc) in [
            ("master_last_io_seconds_ago", &MASTER_LAST_IO),
            ("master_link_down_since_seconds", &MASTER_DOWN_SINCE),
            ("master_sync_in_progress", &MASTER_SYNC),
            ("slave_repl_offset", &SLAVE_REPL_OFFSET),
        ] {
            if let Some(v) = info.number(field).filter(|v| *v >= 0.0) {
                let mut family = Family::new(desc);
                family.push(&master, v);
                out.push(family);
            }
        }
    }
    out
}

static RDB_LAST_SAVE: Desc = desc!(Gauge "redis_rdb_last_save_timestamp", unit = Seconds, [], "When the last RDB save succeeded, as a Unix time (the server's start when none has).");
/// Public: the outputs read it.
pub static RDB_LAST_STATUS: Desc = desc!(Gauge "redis_rdb_last_bgsave_status", [], "1 if the last background RDB save succeeded, 0 if it failed.");
static RDB_CHANGES: Desc = desc!(Gauge "redis_rdb_changes_since_last_save", [], "Writes since the last successful RDB save: what a crash now would lose without AOF.");
static RDB_IN_PROGRESS: Desc =
    desc!(Gauge "redis_rdb_bgsave_in_progress", [], "1 while a background RDB save runs.");
static RDB_SAVES: Desc = desc!(Counter "redis_rdb_saves", [], "RDB saves since the server started.", only_when = "the server reports rdb_saves (Redis 7+)");
static AOF_ENABLED: Desc = desc!(Gauge "redis_aof_enabled", [], "1 if the append-only file is on.");
static AOF_REWRITING: Desc =
    desc!(Gauge "redis_aof_rewrite_in_progress", [], "1 while an AOF rewrite runs.");
static AOF_WRITE: Desc = desc!(Gauge "redis_aof_last_write_status", [], "1 if the last write to the AOF succeeded, 0 if it failed.");
static AOF_REWRITE: Desc = desc!(Gauge "redis_aof_last_bgrewrite_status", [], "1 if the last AOF rewrite succeeded, 0 if it failed.");
static LOADING: Desc =
    desc!(Gauge "redis_loading_dump_file", [], "1 while the server loads its RDB or AOF at start.");

/// The `redis_persistence` collector's families.
pub static PERSISTENCE_METRICS: &[&Desc] = &[
    &RDB_LAST_SAVE,
    &RDB_LAST_STATUS,
    &RDB_CHANGES,
    &RDB_IN_PROGRESS,
    &RDB_SAVES,
    &AOF_ENABLED,
    &AOF_REWRITING,
    &AOF_WRITE,
    &AOF_REWRITE,
    &LOADING,
];

/// The `redis_persistence` collector.
#[derive(Debug, Default)]
pub struct RedisPersistence;

#[async_trait]
impl RedisCollector for RedisPersistence {
    async fn collect(&mut self, link: &mut Link) -> Result<Collected, CollectError> {
        let info = info(link, "INFO persistence", Some("persistence")).await?;
        Ok(persistence_families(&info).into())
    }
}

/// The families of one `INFO persistence` reply.
pub fn persistence_families(info: &Info) -> Vec<Family> {
    let mut out = Vec::new();
    for (field, desc) in [
        ("rdb_last_save_time", &RDB_LAST_SAVE),
        ("rdb_changes_since_last_save", &RDB_CHANGES),
        ("rdb_bgsave_in_progress", &RDB_IN_PROGRESS),
        ("rdb_saves", &RDB_SAVES),
        ("aof_enabled", &AOF_ENABLED),
        ("aof_rewrite_in_progress", &AOF_REWRITING),
        ("loading", &LOADING),
    ] {
        if let Some(v) = info.number(field) {
            out.push(Family::single(desc, v));
        }
    }
    for (field, desc) in [
        ("rdb_last_bgsave_status", &RDB_LAST_STATUS),
        ("aof_last_write_status", &AOF_WRITE),
        ("aof_last_bgrewrite_status", &AOF_REWRITE),
    ] {
        if let Some(v) = info.status(field) {
            out.push(Family::single(desc, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_with_a_replica_behind() {
        let info = Info::parse(
            "role:master\r\nconnected_slaves:1\r\nslave0:ip=10.0.0.2,port=6380,state=online,offset=900,lag=1\r\nmaster_repl_offset:1000\r\nslave_expires_tracked_keys:0\r\n",
        );
        let families = replication_families(&info);
        let lag = families.iter().find(|f| f.is(&SLAVE_LAG_BYTES)).unwrap();
        assert_eq!(lag.value(&["10.0.0.2", "6380", "online"]), Some(100.0));
        assert!(!families.iter().any(|f| f.is(&MASTER_LINK_UP)));
    }

    #[test]
    fn a_replica_whose_link_is_down() {
        let info = Info::parse(
            "role:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:7000\r\nmaster_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\nmaster_sync_in_progress:0\r\nslave_read_repl_offset:5\r\nslave_repl_offset:5\r\nmaster_link_down_since_seconds:12\r\nslave_read_only:1\r\nconnected_slaves:0\r\nmaster_repl_offset:5\r\n",
        );
        let families = replication_families(&info);
        let get = |d: &'static Desc| {
            families
                .iter()
                .find(|f| f.is(d))
                .and_then(|f| f.value(&["127.0.0.1", "7000"]))
        };
        assert_eq!(get(&MASTER_LINK_UP), Some(0.0));
        assert_eq!(get(&MASTER_DOWN_SINCE), Some(12.0));
        assert_eq!(get(&MASTER_LAST_IO), None, "-1 is not known, so absent");
    }

    #[test]
    fn a_failed_save() {
        let info = Info::parse(
            "rdb_changes_since_last_save:3\r\nrdb_last_save_time:1700000000\r\nrdb_last_bgsave_status:err\r\naof_enabled:0\r\naof_last_write_status:ok\r\n",
        );
        let families = persistence_families(&info);
        let get = |d: &'static Desc| families.iter().find(|f| f.is(d)).and_then(|f| f.value(&[]));
        assert_eq!(get(&RDB_LAST_STATUS), Some(0.0));
        assert_eq!(get(&AOF_WRITE), Some(1.0));
        assert_eq!(get(&RDB_CHANGES), Some(3.0));
    }
}
