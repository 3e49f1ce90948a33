//! Streaming replication, from both ends: on a primary, per replica lag as
//! its walsender measures it (pg_stat_replication, [`primary`]); on a
//! replica, its own lag behind its primary, paused replay and WAL receiver
//! (pg_stat_wal_receiver, [`standby`]), and its recovery prefetching
//! (pg_stat_recovery_prefetch, 15+, [`prefetch`]).
//!
//! Each side is published only where it applies, decided on every cycle,
//! so a promotion shows within one interval without a restart.
//!
//! Every value comes from what the server knows at the moment of the
//! query, never from what the agent saw in earlier cycles: a restarted
//! agent or a one-shot `pgvigil once` reads the same as a long-running
//! agent. That is why the collector holds no state.
//!
//! Privilege: pg_monitor (pg_read_all_stats for the WAL receiver and the
//! replicas' addresses; pg_replication_slots is readable by all).

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, query, query_one, query_opt};
use crate::desc;
use crate::metric::Desc;

mod prefetch;
mod primary;
mod standby;

/// Public: the EXPLAIN worker reads it for pressure.
pub static LAG_SECONDS: Desc = desc!(Gauge "pg_replication_lag", unit = Seconds, ["application_name", "client_addr", "slot_name", "kind"],
    "Replication lag of a replica as its primary measures it (kind: write, flush, replay); 0 once it streams and has replayed all that was sent.",
    only_when = "the primary has measured the lag, or the replica streams and has replayed all that was sent (absent means not measured)");
static LAG_BYTES: Desc = desc!(Gauge "pg_replication_lag", unit = Bytes, ["application_name", "client_addr", "slot_name"],
    "WAL bytes the replica has not replayed yet, behind the primary's current position.",
    only_when = "a connected replica reports its replay position");
static LSN_LAG_BYTES: Desc = desc!(Gauge "pg_replication_lsn_lag", unit = Bytes, ["application_name", "client_addr", "slot_name", "kind"],
    "WAL bytes behind the current position at each stage (kind: sent, write, flush, replay).",
    only_when = "the server has connected replicas that report that stage");
static REPLICA_INFO: Desc = desc!(Info "pg_replication_replica", ["application_name", "client_addr", "slot_name", "state", "sync_state"],
    "A walsender's state and synchronous state; slot_name is the slot it streams from, empty without one.",
    only_when = "the server has walsenders (replicas, logical subscribers, base backups)");
static CONNECTED: Desc = desc!(Gauge "pg_replication_connected_replicas", [],
    "Physical replicas streaming from this server (state streaming or catchup), not logical walsenders, base backups or WAL archivers such as pg_receivewal.");
/// Public: the EXPLAIN worker reads it for pressure.
pub static REPLAY_LAG: Desc = desc!(Gauge "pg_replica_replay_lag", unit = Seconds, [],
    "How far this replica is behind its primary in time: 0 while its WAL receiver streams and everything the primary reported is replayed, else the age of the last replayed transaction (an upper bound).",
    only_when = "the server is a replica, and it is caught up or has replayed a transaction since it started");
static REPLAY_BYTES: Desc = desc!(Gauge "pg_replica_replay_lag", unit = Bytes, [],
    "WAL this replica has not replayed, behind the newest position it knows of: the primary's WAL end as of its last message, or what was received, if more.",
    only_when = "the server is a replica that streams or has streamed since it started (not one fed only from an archive)");
static PAUSED: Desc = desc!(Gauge "pg_replica_replay_paused", [], "1 if WAL replay is paused.", only_when = "the server is a replica");
static RECEIVER: Desc = desc!(Gauge "pg_replica_wal_receiver_connected", [],
    "1 if the WAL receiver is streaming from a primary.", only_when = "the server is a replica");
static LAST_MESSAGE_AGE: Desc = desc!(Gauge "pg_replica_wal_receiver_last_message_age", unit = Seconds, [],
    "Time since the WAL receiver last heard from its primary (WAL or keepalive), or since it started; it grows on a silent link.",
    only_when = "the server is a replica with a WAL receiver running");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &LAG_SECONDS,
    &LAG_BYTES,
    &LSN_LAG_BYTES,
    &REPLICA_INFO,
    &CONNECTED,
    &REPLAY_LAG,
    &REPLAY_BYTES,
    &PAUSED,
    &RECEIVER,
    &LAST_MESSAGE_AGE,
    &prefetch::BLOCKS,
    &prefetch::WAL_DISTANCE,
    &prefetch::IO_DEPTH,
];

/// The `replication` collector. Stateless: see the module header.
// Braced rather than a unit struct: the collector table builds it with
// `Replication::default()`, which clippy flags on a unit struct.
#[derive(Debug, Default)]
pub struct Replication {}

#[async_trait]
impl Collector for Replication {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let rows = query(cx.client, primary::WHAT, primary::SQL, &[]).await?;
        let mut families = primary::families(&rows)?;
        let row = query_one(cx.client, standby::WHAT, standby::SQL, &[]).await?;
        let in_recovery: bool = row.get("in_recovery")?;
        cx.caps.in_recovery = in_recovery;
        if in_recovery {
            families.extend(standby::Reading::from_row(&row)?.families());
            if cx.caps.server_version_num >= 150000
                && let Some(row) = query_opt(cx.client, prefetch::WHAT, prefetch::SQL, &[]).await?
            {
                families.extend(prefetch::families(&row)?);
            }
        }
        Ok(families.into())
    }
}

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[primary::SQL, standby::SQL, prefetch::SQL];
