//! Replication slots: whether each is in use, how much WAL it holds back,
//! how close it is to being invalidated.
//!
//! A slot nobody consumes keeps every WAL segment since its restart
//! position, until the disk fills; `pg_replication_slot_active 0` with a
//! growing `pg_replication_slot_retained_bytes` is the alert.
//!
//! Privilege: none beyond LOGIN (pg_replication_slots is readable by all).

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

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[&ACTIVE, &RETAINED, &SAFE, &STATUS];

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
        for row in &rows {
            let name: String = row.get("slot_name")?;
            let kind: String = row.get("slot_type")?;
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
        }
        Ok(vec![active, retained, safe, status].into())
    }
}

const SLOTS_SQL: &str = "
SELECT s.slot_name::text AS slot_name, s.slot_type, s.active,
       pg_catalog.pg_wal_lsn_diff(
           CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
                ELSE pg_catalog.pg_current_wal_lsn() END,
           s.restart_lsn)::float8 AS retained,
       s.safe_wal_size::float8 AS safe_wal_size,
       s.wal_status
  FROM pg_catalog.pg_replication_slots s
 ORDER BY 1";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[SLOTS_SQL];
