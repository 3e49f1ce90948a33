//! WAL: the current position as a byte counter (its rate is WAL
//! generation), the size of the WAL directory, and pg_stat_wal (14+):
//! records, full page images, bytes, full WAL buffers, writes and syncs
//! (from pg_stat_io on 18, under the same names) and their times where
//! track_wal_io_timing is on.
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

static RECORDS: Desc = desc!(Counter "pg_wal_records", [], "WAL records generated (pg_stat_wal).", only_when = "PostgreSQL 14+");
static FPI: Desc = desc!(Counter "pg_wal_fpi", [],
    "Full page images written to WAL: many after each checkpoint are normal; their share of WAL bytes is what a longer checkpoint_timeout or wal_compression reduces.",
    only_when = "PostgreSQL 14+");
static GENERATED: Desc = desc!(Counter "pg_wal_generated", unit = Bytes, [], "WAL generated, as pg_stat_wal counts it (reset with its statistics, unlike pg_wal_lsn_bytes_total).", only_when = "PostgreSQL 14+");
static BUFFERS_FULL: Desc = desc!(Counter "pg_wal_buffers_full", [],
    "Times WAL was written out because wal_buffers were full: a steady rate means wal_buffers is too small for the write load.",
    only_when = "PostgreSQL 14+");
static WRITES: Desc = desc!(Counter "pg_wal_writes", [], "Write calls of WAL buffers to disk (pg_stat_wal before 18, pg_stat_io's object wal on 18).", only_when = "PostgreSQL 14+");
static SYNCS: Desc = desc!(Counter "pg_wal_syncs", [], "WAL files synced to disk (pg_stat_wal before 18, pg_stat_io's object wal on 18).", only_when = "PostgreSQL 14+");
static WRITE_TIME: Desc = desc!(Counter "pg_wal_write_time", unit = Seconds, [], "Time spent writing WAL buffers to disk.",
    only_when = "PostgreSQL 14+ with track_wal_io_timing on (with it off nothing is timed, and 0 would read as fast storage)");
static SYNC_TIME: Desc = desc!(Counter "pg_wal_sync_time", unit = Seconds, [], "Time spent syncing WAL files to disk.",
    only_when = "PostgreSQL 14+ with track_wal_io_timing on (with it off nothing is timed, and 0 would read as fast storage)");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &LSN,
    &SIZE,
    &SEGMENTS,
    &RECORDS,
    &FPI,
    &GENERATED,
    &BUFFERS_FULL,
    &WRITES,
    &SYNCS,
    &WRITE_TIME,
    &SYNC_TIME,
];

/// pg_stat_wal's columns (as the queries name them) and their families; a
/// NULL is left out (times without track_wal_io_timing).
const STATS: [(&str, &Desc); 8] = [
    ("records", &RECORDS),
    ("fpi", &FPI),
    ("bytes", &GENERATED),
    ("buffers_full", &BUFFERS_FULL),
    ("writes", &WRITES),
    ("syncs", &SYNCS),
    ("write_time", &WRITE_TIME),
    ("sync_time", &SYNC_TIME),
];

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
        let stats = match cx.caps.server_version_num {
            v if v >= 180000 => Some(STATS_18_SQL),
            v if v >= 140000 => Some(STATS_SQL),
            _ => None,
        };
        if let Some(sql) = stats {
            let row = query_one(cx.client, "pg_stat_wal", sql, &[]).await?;
            for (column, desc) in STATS {
                if let Some(value) = row.get::<Option<f64>>(column)? {
                    families.push(Family::single(desc, value));
                }
            }
        }
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

/// 14 to 17: everything in pg_stat_wal.
const STATS_SQL: &str = "
SELECT wal_records::float8 AS records, wal_fpi::float8 AS fpi, wal_bytes::float8 AS bytes,
       wal_buffers_full::float8 AS buffers_full, wal_write::float8 AS writes, wal_sync::float8 AS syncs,
       CASE WHEN current_setting('track_wal_io_timing') = 'on' THEN (wal_write_time / 1000)::float8 END AS write_time,
       CASE WHEN current_setting('track_wal_io_timing') = 'on' THEN (wal_sync_time / 1000)::float8 END AS sync_time
  FROM pg_catalog.pg_stat_wal";

/// 18: writes and syncs moved to pg_stat_io (object wal), under the same
/// names here.
const STATS_18_SQL: &str = "
SELECT w.wal_records::float8 AS records, w.wal_fpi::float8 AS fpi, w.wal_bytes::float8 AS bytes,
       w.wal_buffers_full::float8 AS buffers_full, io.writes, io.syncs,
       CASE WHEN current_setting('track_wal_io_timing') = 'on' THEN io.write_time END AS write_time,
       CASE WHEN current_setting('track_wal_io_timing') = 'on' THEN io.sync_time END AS sync_time
  FROM pg_catalog.pg_stat_wal w,
       (SELECT coalesce(sum(writes), 0)::float8 AS writes, coalesce(sum(fsyncs), 0)::float8 AS syncs,
               (coalesce(sum(write_time), 0) / 1000)::float8 AS write_time,
               (coalesce(sum(fsync_time), 0) / 1000)::float8 AS sync_time
          FROM pg_catalog.pg_stat_io WHERE object = 'wal') io";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[WAL_SQL, STATS_SQL, STATS_18_SQL];
