//! Streaming replication, from both ends: per replica lag on a primary
//! (pg_stat_replication), and on a replica its own replay lag, paused
//! replay and WAL receiver (pg_stat_wal_receiver).
//!
//! Each side is published only where it applies, decided on every cycle,
//! so a promotion shows within one interval without a restart.
//!
//! Replay lag on a replica is the time it has been behind, not the age of
//! the last replayed transaction: when the primary is idle nothing is
//! replayed for hours and the replica is still not behind. It is 0 while
//! everything received has been replayed; otherwise the age of the last
//! replayed commit, but never more than the time since the agent first saw
//! the replica behind (plus one interval), because after a long idle spell
//! that commit is old even if the replica fell behind a second ago.
//!
//! Privilege: pg_monitor (pg_read_all_stats for the WAL receiver and the
//! replicas' addresses).

use async_trait::async_trait;
use tokio::time::Instant;

use super::{CollectError, Collected, Collector, Context, col, query_err};
use crate::desc;
use crate::metric::{Desc, Family};

static LAG_SECONDS: Desc = desc!(Gauge "pg_replication_lag", unit = Seconds, ["application_name", "client_addr", "kind"],
    "Replication lag of a replica as its primary measures it (kind: write, flush, replay); 0 once caught up.",
    only_when = "the server has connected replicas");
static LAG_BYTES: Desc = desc!(Gauge "pg_replication_lag", unit = Bytes, ["application_name", "client_addr"],
    "WAL bytes the replica has not replayed yet, behind the primary's current position.",
    only_when = "the server has connected replicas");
static LSN_LAG_BYTES: Desc = desc!(Gauge "pg_replication_lsn_lag", unit = Bytes, ["application_name", "client_addr", "kind"],
    "WAL bytes behind the current position at each stage (kind: sent, write, flush, replay).",
    only_when = "the server has connected replicas");
static REPLICA_INFO: Desc = desc!(Info "pg_replication_replica", ["application_name", "client_addr", "state", "sync_state"],
    "A connected replica's walsender state and synchronous state.",
    only_when = "the server has connected replicas");
static CONNECTED: Desc = desc!(Gauge "pg_replication_connected_replicas", [], "Replicas connected to this server (walsenders).");
static REPLAY_LAG: Desc = desc!(Gauge "pg_replica_replay_lag", unit = Seconds, [],
    "How long this replica has been behind: 0 while everything received is replayed.", only_when = "the server is a replica");
static REPLAY_BYTES: Desc = desc!(Gauge "pg_replica_replay_lag", unit = Bytes, [],
    "WAL received but not yet replayed.", only_when = "the server is a replica");
static PAUSED: Desc = desc!(Gauge "pg_replica_replay_paused", [], "1 if WAL replay is paused.", only_when = "the server is a replica");
static RECEIVER: Desc = desc!(Gauge "pg_replica_wal_receiver_connected", [],
    "1 if the WAL receiver is streaming from a primary.", only_when = "the server is a replica");

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
];

/// The `replication` collector.
#[derive(Debug, Default)]
pub struct Replication {
    behind_since: Option<Instant>,
    last_run: Option<Instant>,
}

const REPLICAS: &str = "pg_stat_replication";
const STANDBY: &str = "replica status";

#[async_trait]
impl Collector for Replication {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let mut families = self.replicas(cx).await?;
        let row = cx
            .client
            .query_one(STANDBY_SQL, &[])
            .await
            .map_err(query_err(STANDBY))?;
        let in_recovery: bool = col(&row, STANDBY, "in_recovery")?;
        cx.caps.in_recovery = in_recovery;
        let now = Instant::now();
        let interval = self.last_run.map(|t| now - t).unwrap_or_default();
        self.last_run = Some(now);
        if !in_recovery {
            self.behind_since = None;
            return Ok(families.into());
        }
        let behind_bytes: f64 = col::<Option<f64>>(&row, STANDBY, "behind_bytes")?
            .unwrap_or(0.0)
            .max(0.0);
        let lag = if behind_bytes > 0.0 {
            let since = *self.behind_since.get_or_insert(now);
            let observed = (now - since + interval).as_secs_f64();
            let replayed_age: Option<f64> = col(&row, STANDBY, "since_replay")?;
            replayed_age
                .map_or(observed, |age| age.min(observed))
                .max(0.0)
        } else {
            self.behind_since = None;
            0.0
        };
        families.extend([
            Family::single(&REPLAY_LAG, lag),
            Family::single(&REPLAY_BYTES, behind_bytes),
            Family::single(
                &PAUSED,
                if col(&row, STANDBY, "paused")? {
                    1.0
                } else {
                    0.0
                },
            ),
            Family::single(&RECEIVER, col(&row, STANDBY, "receiver")?),
        ]);
        Ok(families.into())
    }
}

impl Replication {
    /// The walsenders' view: one set of series per connected replica.
    async fn replicas(&self, cx: &Context<'_>) -> Result<Vec<Family>, CollectError> {
        let rows = cx
            .client
            .query(REPLICAS_SQL, &[])
            .await
            .map_err(query_err(REPLICAS))?;
        let mut seconds = Family::new(&LAG_SECONDS);
        let mut bytes = Family::new(&LAG_BYTES);
        let mut stages = Family::new(&LSN_LAG_BYTES);
        let mut info = Family::new(&REPLICA_INFO);
        for row in &rows {
            let app: String = col(row, REPLICAS, "application_name")?;
            let addr: String = col(row, REPLICAS, "client_addr")?;
            let replay_bytes: Option<f64> = col(row, REPLICAS, "replay_bytes")?;
            for kind in ["write", "flush", "replay"] {
                let column = match kind {
                    "write" => "write_lag",
                    "flush" => "flush_lag",
                    _ => "replay_lag",
                };
                // NULL: nothing measured lately, the replica has caught up.
                let value: Option<f64> = col(row, REPLICAS, column)?;
                seconds.push(&[app.as_str(), addr.as_str(), kind], value.unwrap_or(0.0));
            }
            if let Some(b) = replay_bytes {
                bytes.push(&[&app, &addr], b.max(0.0));
            }
            for (kind, column) in [
                ("sent", "sent_bytes"),
                ("write", "write_bytes"),
                ("flush", "flush_bytes"),
                ("replay", "replay_bytes"),
            ] {
                if let Some(b) = col::<Option<f64>>(row, REPLICAS, column)? {
                    stages.push(&[app.as_str(), addr.as_str(), kind], b.max(0.0));
                }
            }
            info.push_info(&[
                app.clone(),
                addr.clone(),
                col(row, REPLICAS, "state")?,
                col(row, REPLICAS, "sync_state")?,
            ]);
        }
        let connected = Family::single(&CONNECTED, rows.len() as f64);
        Ok(vec![seconds, bytes, stages, info, connected])
    }
}

/// Positions are measured against what this server has: its current WAL
/// position on a primary, what it received on a cascading replica.
const REPLICAS_SQL: &str = "
WITH here AS (
    SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_receive_lsn()
                ELSE pg_catalog.pg_current_wal_lsn() END AS lsn
)
SELECT coalesce(r.application_name, '') AS application_name,
       coalesce(host(r.client_addr), 'local') AS client_addr,
       coalesce(r.state, '') AS state, coalesce(r.sync_state, '') AS sync_state,
       extract(epoch FROM r.write_lag)::float8 AS write_lag,
       extract(epoch FROM r.flush_lag)::float8 AS flush_lag,
       extract(epoch FROM r.replay_lag)::float8 AS replay_lag,
       pg_catalog.pg_wal_lsn_diff(here.lsn, r.sent_lsn)::float8 AS sent_bytes,
       pg_catalog.pg_wal_lsn_diff(here.lsn, r.write_lsn)::float8 AS write_bytes,
       pg_catalog.pg_wal_lsn_diff(here.lsn, r.flush_lsn)::float8 AS flush_bytes,
       pg_catalog.pg_wal_lsn_diff(here.lsn, r.replay_lsn)::float8 AS replay_bytes
  FROM pg_catalog.pg_stat_replication r, here
 ORDER BY 1, 2";

const STANDBY_SQL: &str = "
SELECT pg_catalog.pg_is_in_recovery() AS in_recovery,
       CASE WHEN pg_catalog.pg_is_in_recovery() THEN
            pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn())::float8
       END AS behind_bytes,
       extract(epoch FROM now() - pg_catalog.pg_last_xact_replay_timestamp())::float8 AS since_replay,
       CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused() ELSE false END AS paused,
       (SELECT count(*) FROM pg_catalog.pg_stat_wal_receiver WHERE status = 'streaming')::float8 AS receiver";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[REPLICAS_SQL, STANDBY_SQL];
