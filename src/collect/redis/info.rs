//! `redis_info`: plain `INFO` (the default sections): version, uptime,
//! clients, memory, keyspace hits and misses, evictions, expirations,
//! traffic and keys per database.
//!
//! Counters are the server's own (`INFO` since its start or `CONFIG
//! RESETSTAT`): a restart shows as a counter reset, which `rate()`
//! handles. The hit ratio is a recording rule over the two counters
//! (alerts/pgvigil.rules.yml), not a gauge: any window, any aggregation.

use async_trait::async_trait;

use super::parse::{Info, num};
use super::{RedisCollector, info};
use crate::collect::{CollectError, Collected};
use crate::connection::redis::Link;
use crate::desc;
use crate::metric::{Desc, Family};

/// Public: the outputs look it up by descriptor.
pub static INSTANCE: Desc = desc!(Info "redis_instance", ["role", "redis_version", "redis_build_id", "redis_mode", "os", "maxmemory_policy", "tcp_port", "run_id", "process_id", "master_replid"],
    "The Redis server's version, role and identity (redis_exporter's labels).");
static START_TIME: Desc =
    desc!(Gauge "redis_start_time", unit = Seconds, [], "When the server started, as a Unix time.");
static UPTIME: Desc =
    desc!(Gauge "redis_uptime_in_seconds", [], "Seconds since the server started.");
/// Public: saturation and the outputs read it.
pub static CONNECTED_CLIENTS: Desc =
    desc!(Gauge "redis_connected_clients", [], "Client connections (replicas excluded).");
/// Public: saturation and the outputs read it.
pub static MAX_CLIENTS: Desc = desc!(Gauge "redis_max_clients", [], "The maxclients setting.", only_when = "the server reports it in INFO clients (Redis 7+)");
/// Public: the outputs read it.
pub static BLOCKED_CLIENTS: Desc = desc!(Gauge "redis_blocked_clients", [], "Clients waiting in a blocking call (BLPOP, XREAD, WAIT …).");
static REJECTED: Desc = desc!(Counter "redis_rejected_connections", [], "Connections refused because maxclients was reached.");
static RECEIVED: Desc = desc!(Counter "redis_connections_received", [], "Connections accepted.");
static COMMANDS: Desc = desc!(Counter "redis_commands_processed", [], "Commands processed.");
static NET_IN: Desc =
    desc!(Counter "redis_net_input", unit = Bytes, [], "Bytes read from the network.");
static NET_OUT: Desc =
    desc!(Counter "redis_net_output", unit = Bytes, [], "Bytes written to the network.");
/// Public: the outputs read it.
pub static HITS: Desc = desc!(Counter "redis_keyspace_hits", [], "Successful lookups of keys.");
/// Public: the outputs read it.
pub static MISSES: Desc =
    desc!(Counter "redis_keyspace_misses", [], "Failed lookups of keys (the key did not exist).");
static EVICTED: Desc =
    desc!(Counter "redis_evicted_keys", [], "Keys evicted because of the maxmemory limit.");
static EXPIRED: Desc =
    desc!(Counter "redis_expired_keys", [], "Keys deleted because their TTL passed.");
/// Public: the outputs read it.
pub static MEMORY_USED: Desc =
    desc!(Gauge "redis_memory_used", unit = Bytes, [], "Memory allocated by Redis (used_memory).");
static MEMORY_PEAK: Desc =
    desc!(Gauge "redis_memory_used_peak", unit = Bytes, [], "Peak of used_memory.");
static MEMORY_RSS: Desc = desc!(Gauge "redis_memory_used_rss", unit = Bytes, [], "Resident set size of the server process as the OS sees it.");
/// Public: the outputs read it.
pub static MEMORY_MAX: Desc =
    desc!(Gauge "redis_memory_max", unit = Bytes, [], "The maxmemory setting; 0 means no limit.");
static FRAGMENTATION: Desc = desc!(Gauge "redis_mem_fragmentation_ratio", [], "used_memory_rss over used_memory: well above 1 is fragmentation, below 1 is swapping.");
static CPU_SYS: Desc =
    desc!(Counter "redis_cpu_sys", unit = Seconds, [], "System CPU time of the server.");
static CPU_USER: Desc =
    desc!(Counter "redis_cpu_user", unit = Seconds, [], "User CPU time of the server.");
static DB_KEYS: Desc = desc!(Gauge "redis_db_keys", ["db"], "Keys per database (`db0` …).", only_when = "the database holds keys");
static DB_EXPIRING: Desc = desc!(Gauge "redis_db_keys_expiring", ["db"], "Keys with a TTL per database.", only_when = "the database holds keys");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &INSTANCE,
    &START_TIME,
    &UPTIME,
    &CONNECTED_CLIENTS,
    &MAX_CLIENTS,
    &BLOCKED_CLIENTS,
    &REJECTED,
    &RECEIVED,
    &COMMANDS,
    &NET_IN,
    &NET_OUT,
    &HITS,
    &MISSES,
    &EVICTED,
    &EXPIRED,
    &MEMORY_USED,
    &MEMORY_PEAK,
    &MEMORY_RSS,
    &MEMORY_MAX,
    &FRAGMENTATION,
    &CPU_SYS,
    &CPU_USER,
    &DB_KEYS,
    &DB_EXPIRING,
];

/// INFO field → family, for the plain numeric fields.
const FIELDS: &[(&str, &Desc)] = &[
    ("uptime_in_seconds", &UPTIME),
    ("connected_clients", &CONNECTED_CLIENTS),
    ("maxclients", &MAX_CLIENTS),
    ("blocked_clients", &BLOCKED_CLIENTS),
    ("rejected_connections", &REJECTED),
    ("total_connections_received", &RECEIVED),
    ("total_commands_processed", &COMMANDS),
    ("total_net_input_bytes", &NET_IN),
    ("total_net_output_bytes", &NET_OUT),
    ("keyspace_hits", &HITS),
    ("keyspace_misses", &MISSES),
    ("evicted_keys", &EVICTED),
    ("expired_keys", &EXPIRED),
    ("used_memory", &MEMORY_USED),
    ("used_memory_peak", &MEMORY_PEAK),
    ("used_memory_rss", &MEMORY_RSS),
    ("maxmemory", &MEMORY_MAX),
    ("mem_fragmentation_ratio", &FRAGMENTATION),
    ("used_cpu_sys", &CPU_SYS),
    ("used_cpu_user", &CPU_USER),
];

/// The `redis_info` collector.
#[derive(Debug, Default)]
pub struct RedisInfo;

#[async_trait]
impl RedisCollector for RedisInfo {
    async fn collect(&mut self, link: &mut Link) -> Result<Collected, CollectError> {
        let info = info(link, "INFO", None).await?;
        Ok(families(&info).into())
    }
}

/// The families of one INFO reply.
pub fn families(info: &Info) -> Vec<Family> {
    let mut out = Vec::new();
    let mut instance = Family::new(&INSTANCE);
    instance.push_info(
        &INSTANCE
            .labels
            .iter()
            .map(|l| info.text(l).unwrap_or(""))
            .collect::<Vec<_>>(),
    );
    out.push(instance);
    if let (Some(now), Some(up)) = (
        info.number("server_time_usec"),
        info.number("uptime_in_seconds"),
    ) {
        out.push(Family::single(&START_TIME, (now / 1e6 - up).round()));
    }
    for (field, desc) in FIELDS {
        if let Some(v) = info.number(field) {
            out.push(Family::single(desc, v));
        }
    }
    let mut keys = Family::new(&DB_KEYS);
    let mut expiring = Family::new(&DB_EXPIRING);
    for (n, stats) in info.lists("db") {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let db = format!("db{n}");
        if let Some(v) = num(&stats, "keys") {
            keys.push(&[&db], v);
        }
        if let Some(v) = num(&stats, "expires") {
            expiring.push(&[&db], v);
        }
    }
    out.extend([keys, expiring]);
    out
}
