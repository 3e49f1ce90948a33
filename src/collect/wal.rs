//! WAL: the current position as a byte counter (its rate is WAL
//! generation), and the size of the WAL directory.
//!
//! Privilege: pg_monitor (pg_ls_waldir).

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, query_one};
use crate::desc;
use crate::metric::{Desc, Family};

static LSN: Desc = desc!(Counter "pg_wal_lsn", unit = Bytes, [],
    "The current WAL position in bytes (replayed position on a replica); rate() is WAL generation.");
static SIZE: Desc =
    desc!(Gauge "pg_wal_size", unit = Bytes, [], "Size of the files in the WAL directory.");
static SEGMENTS: Desc =
    desc!(Gauge "pg_wal_segments", [], "WAL segment files in the WAL directory.");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[&LSN, &SIZE, &SEGMENTS];

/// The `wal` collector.
#[derive(Debug, Default)]
pub struct Wal;

const WHAT: &str = "WAL position and pg_ls_waldir";

#[async_trait]
impl Collector for Wal {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let row = query_one(cx.client, WHAT, WAL_SQL, &[]).await?;
        let mut families = Vec::new();
        if let Some(lsn) = row.get::<Option<f64>>("lsn")? {
            families.push(Family::single(&LSN, lsn));
        }
        families.push(Family::single(&SIZE, row.get("size")?));
        families.push(Family::single(&SEGMENTS, row.get("segments")?));
        Ok(families.into())
    }
}

const WAL_SQL: &str = "
SELECT pg_catalog.pg_wal_lsn_diff(
           CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
                ELSE pg_catalog.pg_current_wal_lsn() END, '0/0')::float8 AS lsn,
       coalesce(sum(w.size), 0)::float8 AS size,
       (count(*) FILTER (WHERE w.name ~ '^[0-9A-F]{24}$'))::float8 AS segments
  FROM pg_catalog.pg_ls_waldir() w";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[WAL_SQL];
