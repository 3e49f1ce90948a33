//! Logical replication, the subscriber side: each subscription on this
//! server (pg_subscription is shared, so one query sees those of every
//! database), whether its apply worker runs, how far behind it is, and
//! its errors (pg_stat_subscription_stats, 15+) and conflicts by kind
//! (18+). The publisher side (the slot a subscription streams from) is
//! the `slots` collector's.
//!
//! Apply lag is now − `latest_end_time`: when the apply worker last
//! reported a position back to the publisher. The worker reports after
//! applying and on the publisher's keepalives (every `wal_sender_timeout`
//! / 2 at the latest), so an idle publisher does not read as lag, and a
//! worker stuck on an error or a lock does. `pg_subscription_pending_bytes`
//! is WAL received beyond that reported position.
//!
//! Columns that only newer servers have (a parallel apply worker's
//! `leader_pid` 16+, `worker_type` 17+, the conflict counters 18+) are read
//! through `to_jsonb` of the row, NULL where the column does not exist.
//!
//! Privilege: none beyond LOGIN (the columns read are granted to public;
//! `subconninfo`, which may hold a password, is never read). Before 15,
//! pg_subscription's `oid` is not among them, so a subscription's worker is
//! found by name; where two databases have subscriptions of the same name,
//! which worker is whose cannot be told, and their worker families are left
//! out (`pg_subscription_enabled` stays).

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, query};
use crate::desc;
use crate::metric::{Desc, Family};

static ENABLED: Desc = desc!(Gauge "pg_subscription_enabled", ["datname", "subname"],
    "1 if the subscription is enabled (a disabled one has no apply worker on purpose).",
    only_when = "the server has subscriptions");
static RUNNING: Desc = desc!(Gauge "pg_subscription_worker_running", ["datname", "subname"],
    "1 if the subscription's apply worker runs; 0 while it is disabled, failing and restarting after an error, or cannot connect to the publisher.",
    only_when = "the server has subscriptions");
static APPLY_LAG: Desc = desc!(Gauge "pg_subscription_apply_lag", unit = Seconds, ["datname", "subname"],
    "Time since the apply worker last reported a position back to the publisher (now - latest_end_time); it does so after applying and on the publisher's keepalives, so it grows when the worker is stuck.",
    only_when = "the subscription's apply worker runs and has reported a position");
static PENDING: Desc = desc!(Gauge "pg_subscription_pending", unit = Bytes, ["datname", "subname"],
    "WAL received from the publisher beyond the position last reported back to it (received_lsn - latest_end_lsn).",
    only_when = "the subscription's apply worker runs and has received WAL");
static ERRORS: Desc = desc!(Counter "pg_subscription_errors", ["datname", "subname", "kind"],
    "Errors of the subscription's workers, by kind: apply (applying changes) or sync (initial table synchronization).",
    only_when = "the server has subscriptions, PostgreSQL 15+");
static CONFLICTS: Desc = desc!(Counter "pg_subscription_conflicts", ["datname", "subname", "kind"],
    "Conflicts met while applying changes, by kind: insert_exists, update_origin_differs, update_exists, update_missing, delete_origin_differs, delete_missing, multiple_unique_conflicts.",
    only_when = "the server has subscriptions, PostgreSQL 18+");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &ENABLED, &RUNNING, &APPLY_LAG, &PENDING, &ERRORS, &CONFLICTS,
];

/// The kinds of conflict (PostgreSQL 18's `confl_*` columns).
const CONFLICT_KINDS: [&str; 7] = [
    "insert_exists",
    "update_origin_differs",
    "update_exists",
    "update_missing",
    "delete_origin_differs",
    "delete_missing",
    "multiple_unique_conflicts",
];

/// The `subscriptions` collector.
#[derive(Debug, Default)]
pub struct Subscriptions;

#[async_trait]
impl Collector for Subscriptions {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let sql = if cx.caps.server_version_num >= 150000 {
            SUBSCRIPTIONS_SQL
        } else {
            SUBSCRIPTIONS_BY_NAME_SQL
        };
        let rows = query(cx.client, "pg_stat_subscription", sql, &[]).await?;
        let mut enabled = Family::new(&ENABLED);
        let mut running = Family::new(&RUNNING);
        let mut lag = Family::new(&APPLY_LAG);
        let mut pending = Family::new(&PENDING);
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        for row in &rows {
            let labels = [row.get::<String>("datname")?, row.get("subname")?];
            enabled.push(&labels, flag(row.get("enabled")?));
            if row.get("ambiguous")? {
                continue;
            }
            let is_running: bool = row.get("running")?;
            running.push(&labels, flag(is_running));
            if !is_running {
                continue;
            }
            if let Some(age) = row.get::<Option<f64>>("apply_lag")? {
                lag.push(&labels, age.max(0.0));
            }
            if let Some(bytes) = row.get::<Option<f64>>("pending")? {
                pending.push(&labels, bytes.max(0.0));
            }
        }
        let mut families = vec![enabled, running, lag, pending];
        if !rows.is_empty() && cx.caps.server_version_num >= 150000 {
            let rows = query(cx.client, "pg_stat_subscription_stats", STATS_SQL, &[]).await?;
            let mut errors = Family::new(&ERRORS);
            let mut conflicts = Family::new(&CONFLICTS);
            for row in &rows {
                let datname: String = row.get("datname")?;
                let subname: String = row.get("subname")?;
                for kind in ["apply", "sync"] {
                    errors.push(&[datname.as_str(), subname.as_str(), kind], row.get(kind)?);
                }
                for kind in CONFLICT_KINDS {
                    if let Some(value) = row.get::<Option<f64>>(kind)? {
                        conflicts.push(&[datname.as_str(), subname.as_str(), kind], value);
                    }
                }
            }
            families.push(errors);
            families.push(conflicts);
        }
        Ok(families.into())
    }
}

/// One row per subscription, with its apply worker if it runs (not its
/// table synchronization or parallel apply workers).
const SUBSCRIPTIONS_SQL: &str = "
SELECT d.datname::text AS datname, s.subname::text AS subname, s.subenabled AS enabled,
       false AS ambiguous, w.pid IS NOT NULL AS running,
       extract(epoch FROM now() - w.latest_end_time)::float8 AS apply_lag,
       pg_catalog.pg_wal_lsn_diff(w.received_lsn, w.latest_end_lsn)::float8 AS pending
  FROM pg_catalog.pg_subscription s
  JOIN pg_catalog.pg_database d ON d.oid = s.subdbid
  LEFT JOIN pg_catalog.pg_stat_subscription w
    ON w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL
   AND pg_catalog.to_jsonb(w) ->> 'leader_pid' IS NULL
   AND coalesce(pg_catalog.to_jsonb(w) ->> 'worker_type', 'apply') = 'apply'
 ORDER BY 1, 2";

/// Before 15: by name, see the module header.
const SUBSCRIPTIONS_BY_NAME_SQL: &str = "
SELECT d.datname::text AS datname, s.subname::text AS subname, s.subenabled AS enabled,
       (SELECT count(*) FROM pg_catalog.pg_subscription o WHERE o.subname = s.subname) > 1 AS ambiguous,
       w.pid IS NOT NULL AS running,
       extract(epoch FROM now() - w.latest_end_time)::float8 AS apply_lag,
       pg_catalog.pg_wal_lsn_diff(w.received_lsn, w.latest_end_lsn)::float8 AS pending
  FROM pg_catalog.pg_subscription s
  JOIN pg_catalog.pg_database d ON d.oid = s.subdbid
  LEFT JOIN pg_catalog.pg_stat_subscription w
    ON w.subname = s.subname AND w.relid IS NULL AND w.pid IS NOT NULL
 ORDER BY 1, 2";

const STATS_SQL: &str = "
SELECT d.datname::text AS datname, st.subname::text AS subname,
       st.apply_error_count::float8 AS apply, st.sync_error_count::float8 AS sync,
       (pg_catalog.to_jsonb(st) ->> 'confl_insert_exists')::float8 AS insert_exists,
       (pg_catalog.to_jsonb(st) ->> 'confl_update_origin_differs')::float8 AS update_origin_differs,
       (pg_catalog.to_jsonb(st) ->> 'confl_update_exists')::float8 AS update_exists,
       (pg_catalog.to_jsonb(st) ->> 'confl_update_missing')::float8 AS update_missing,
       (pg_catalog.to_jsonb(st) ->> 'confl_delete_origin_differs')::float8 AS delete_origin_differs,
       (pg_catalog.to_jsonb(st) ->> 'confl_delete_missing')::float8 AS delete_missing,
       (pg_catalog.to_jsonb(st) ->> 'confl_multiple_unique_conflicts')::float8 AS multiple_unique_conflicts
  FROM pg_catalog.pg_stat_subscription_stats st
  JOIN pg_catalog.pg_subscription s ON s.oid = st.subid
  JOIN pg_catalog.pg_database d ON d.oid = s.subdbid
 ORDER BY 1, 2";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[SUBSCRIPTIONS_SQL, SUBSCRIPTIONS_BY_NAME_SQL, STATS_SQL];
