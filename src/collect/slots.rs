//! Replication slots: whether each is in use, how much WAL it holds back,
//! how close it is to being invalidated; for logical slots also how far
//! their consumer has confirmed, what decoding them costs
//! (pg_stat_replication_slots, 14+), and whether they were invalidated
//! (`conflicting` 16+, `invalidation_reason` and `inactive_since` 17+).
//!
//! A slot nobody consumes keeps every WAL segment since its restart
//! position, until the disk fills; `pg_replication_slot_active 0` with a
//! growing `pg_replication_slot_retained_bytes` is the alert.
//!
//! Columns that only newer servers have are read through `to_jsonb` of
//! the row, which is NULL where the column does not exist: one statement
//! for every version, and each family absent where the server lacks it.
//!
//! Privilege: none beyond LOGIN (pg_replication_slots and
//! pg_stat_replication_slots are readable by all).

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, query};
use crate::desc;
use crate::metric::{Desc, Family};

static ACTIVE: Desc = desc!(Gauge "pg_replication_slot_active", ["slot_name", "slot_type"],
    "1 if a consumer (replica, logical subscriber) is connected to the slot.", only_when = "the server has replication slots");
static RETAINED: Desc = desc!(Gauge "pg_replication_slot_retained", unit = Bytes, ["slot_name"],
    "WAL kept for the slot: from its restart position to the current one.", only_when = "the server has replication slots");
static SAFE: Desc = desc!(Gauge "pg_replication_slot_safe_wal_size", unit = Bytes, ["slot_name"],
    "WAL that can still be written before the slot is invalidated (max_slot_wal_keep_size).",
    only_when = "a slot has a limit (max_slot_wal_keep_size is set)");
static STATUS: Desc = desc!(Info "pg_replication_slot_wal_status", ["slot_name", "wal_status"],
    "The slot's wal_status: reserved, extended, unreserved (about to lose WAL) or lost.",
    only_when = "the server has replication slots");
static CONFIRMED_LAG: Desc = desc!(Gauge "pg_replication_slot_confirmed_flush_lag", unit = Bytes, ["slot_name"],
    "WAL written since the position the logical slot's consumer last confirmed (confirmed_flush_lsn): what a subscriber still has to receive and apply; it grows while the subscriber is down or falls behind.",
    only_when = "the server has a logical slot whose consumer has confirmed a position");
static CONFLICTING: Desc = desc!(Gauge "pg_replication_slot_conflicting", ["slot_name"],
    "1 if the logical slot was invalidated by a conflict (rows it needs removed, wal_level lowered): it can no longer be used and must be recreated. PostgreSQL 16 reports every invalidation here, lost WAL included; 17+ only conflicts.",
    only_when = "the server has logical slots, PostgreSQL 16+");
static INVALIDATION: Desc = desc!(Info "pg_replication_slot_invalidation", ["slot_name", "reason"],
    "Why the slot was invalidated (invalidation_reason): wal_removed, rows_removed, wal_level_insufficient, idle_timeout.",
    only_when = "a slot was invalidated, PostgreSQL 17+");
static INACTIVE_SINCE: Desc = desc!(Gauge "pg_replication_slot_inactive_since_timestamp", unit = Seconds, ["slot_name"],
    "When the slot was last released by its consumer, as a Unix time.",
    only_when = "a slot is inactive, PostgreSQL 17+");
static SPILL_TXNS: Desc = desc!(Counter "pg_replication_slot_spill_txns", ["slot_name"],
    "Transactions spilled to disk because decoding them exceeded logical_decoding_work_mem.",
    only_when = "the server has logical slots, PostgreSQL 14+");
static SPILL_BYTES: Desc = desc!(Counter "pg_replication_slot_spill", unit = Bytes, ["slot_name"],
    "Decoded transaction data spilled to disk.",
    only_when = "the server has logical slots, PostgreSQL 14+");
static STREAM_TXNS: Desc = desc!(Counter "pg_replication_slot_stream_txns", ["slot_name"],
    "In-progress transactions streamed to the consumer (streaming = on) after exceeding logical_decoding_work_mem.",
    only_when = "the server has logical slots, PostgreSQL 14+");
static STREAM_BYTES: Desc = desc!(Counter "pg_replication_slot_stream", unit = Bytes, ["slot_name"],
    "Decoded data of in-progress transactions streamed to the consumer.",
    only_when = "the server has logical slots, PostgreSQL 14+");
static TOTAL_TXNS: Desc = desc!(Counter "pg_replication_slot_decoded_txns", ["slot_name"],
    "Transactions decoded and sent to the consumer (total_txns).",
    only_when = "the server has logical slots, PostgreSQL 14+");
static TOTAL_BYTES: Desc = desc!(Counter "pg_replication_slot_decoded", unit = Bytes, ["slot_name"],
    "Transaction data decoded and sent to the consumer (total_bytes).",
    only_when = "the server has logical slots, PostgreSQL 14+");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &ACTIVE,
    &RETAINED,
    &SAFE,
    &STATUS,
    &CONFIRMED_LAG,
    &CONFLICTING,
    &INVALIDATION,
    &INACTIVE_SINCE,
    &SPILL_TXNS,
    &SPILL_BYTES,
    &STREAM_TXNS,
    &STREAM_BYTES,
    &TOTAL_TXNS,
    &TOTAL_BYTES,
];

/// pg_stat_replication_slots' columns and their families.
const DECODING: [(&str, &Desc); 6] = [
    ("spill_txns", &SPILL_TXNS),
    ("spill_bytes", &SPILL_BYTES),
    ("stream_txns", &STREAM_TXNS),
    ("stream_bytes", &STREAM_BYTES),
    ("total_txns", &TOTAL_TXNS),
    ("total_bytes", &TOTAL_BYTES),
];

/// The `slots` collector.
#[derive(Debug, Default)]
pub struct Slots;

const WHAT: &str = "pg_replication_slots";

#[async_trait]
impl Collector for Slots {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let rows = query(cx.client, WHAT, SLOTS_SQL, &[]).await?;
        let mut active = Family::new(&ACTIVE);
        let mut retained = Family::new(&RETAINED);
        let mut safe = Family::new(&SAFE);
        let mut status = Family::new(&STATUS);
        let mut confirmed = Family::new(&CONFIRMED_LAG);
        let mut conflicting = Family::new(&CONFLICTING);
        let mut invalidation = Family::new(&INVALIDATION);
        let mut inactive_since = Family::new(&INACTIVE_SINCE);
        let mut logical = false;
        for row in &rows {
            let name: String = row.get("slot_name")?;
            let kind: String = row.get("slot_type")?;
            logical |= kind == "logical";
            let is_active: bool = row.get("active")?;
            active.push(
                &[name.as_str(), kind.as_str()],
                if is_active { 1.0 } else { 0.0 },
            );
            if let Some(bytes) = row.get::<Option<f64>>("retained")? {
                retained.push(&[&name], bytes.max(0.0));
            }
            if let Some(bytes) = row.get::<Option<f64>>("safe_wal_size")? {
                safe.push(&[&name], bytes);
            }
            if let Some(s) = row.get::<Option<String>>("wal_status")? {
                status.push_info(&[name.clone(), s]);
            }
            if let Some(bytes) = row.get::<Option<f64>>("confirmed_lag")? {
                confirmed.push(&[&name], bytes.max(0.0));
            }
            if let Some(c) = row.get::<Option<bool>>("conflicting")? {
                conflicting.push(&[&name], if c { 1.0 } else { 0.0 });
            }
            if let Some(reason) = row.get::<Option<String>>("invalidation_reason")? {
                invalidation.push_info(&[name.clone(), reason]);
            }
            if let Some(since) = row.get::<Option<f64>>("inactive_since")? {
                inactive_since.push(&[&name], since);
            }
        }
        let mut families = vec![
            active,
            retained,
            safe,
            status,
            confirmed,
            conflicting,
            invalidation,
            inactive_since,
        ];
        if logical && cx.caps.server_version_num >= 140000 {
            let rows = query(cx.client, "pg_stat_replication_slots", DECODING_SQL, &[]).await?;
            let mut decoding: Vec<Family> = DECODING.iter().map(|(_, d)| Family::new(d)).collect();
            for row in &rows {
                let name: String = row.get("slot_name")?;
                for ((column, _), family) in DECODING.iter().zip(decoding.iter_mut()) {
                    if let Some(value) = row.get::<Option<f64>>(column)? {
                        family.push(&[&name], value);
                    }
                }
            }
            families.extend(decoding);
        }
        Ok(families.into())
    }
}

const SLOTS_SQL: &str = "
WITH here AS (
    SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
                ELSE pg_catalog.pg_current_wal_lsn() END AS lsn
)
SELECT s.slot_name::text AS slot_name, s.slot_type, s.active,
       pg_catalog.pg_wal_lsn_diff(here.lsn, s.restart_lsn)::float8 AS retained,
       s.safe_wal_size::float8 AS safe_wal_size,
       s.wal_status,
       pg_catalog.pg_wal_lsn_diff(here.lsn, s.confirmed_flush_lsn)::float8 AS confirmed_lag,
       (pg_catalog.to_jsonb(s) ->> 'conflicting')::bool AS conflicting,
       pg_catalog.to_jsonb(s) ->> 'invalidation_reason' AS invalidation_reason,
       extract(epoch FROM (pg_catalog.to_jsonb(s) ->> 'inactive_since')::timestamptz)::float8 AS inactive_since
  FROM pg_catalog.pg_replication_slots s CROSS JOIN here
 ORDER BY 1";

/// Logical slots only: physical slots have no decoding statistics.
const DECODING_SQL: &str = "
SELECT slot_name::text AS slot_name,
       spill_txns::float8 AS spill_txns, spill_bytes::float8 AS spill_bytes,
       stream_txns::float8 AS stream_txns, stream_bytes::float8 AS stream_bytes,
       total_txns::float8 AS total_txns, total_bytes::float8 AS total_bytes
  FROM pg_catalog.pg_stat_replication_slots
 ORDER BY 1";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[SLOTS_SQL, DECODING_SQL];
