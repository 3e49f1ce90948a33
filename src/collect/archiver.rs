//! WAL archiving: pg_stat_archiver's counters and times, the segments
//! waiting to be archived, and the recovery point at risk.
//!
//! Two alerts follow: archiving is *failing* (`pg_archiver_failed_total`
//! grows), and archiving is *behind* (segments pile up in
//! `pg_archiver_pending_segments`, and `pg_archiver_rpo_seconds` grows).
//! The RPO metric is the time since the last successful archive while WAL
//! not yet archived exists — a ready segment, or WAL written after the last
//! archived segment — and 0 otherwise, so an idle server is not at risk.
//! When the server no longer knows its last archive time (after
//! `pg_stat_reset_shared('archiver')`, crash recovery or a promotion),
//! the clock starts at the newest thing that could have hidden it: the
//! statistics reset or the postmaster's start, not at the server's start
//! (which would read hours at risk right after a reset). A known last
//! archive time is kept even when older than the postmaster's start (a
//! clean restart keeps it on 15+): WAL has been at risk that long. Pending counts WAL
//! segments only: `.history` and `.backup` status files are not WAL at
//! risk.
//!
//! Privilege: pg_monitor (pg_ls_archive_statusdir).

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, query_one};
use crate::desc;
use crate::metric::{Desc, Family};

static ARCHIVED: Desc =
    desc!(Counter "pg_archiver_archived", [], "WAL files archived successfully.");
static FAILED: Desc =
    desc!(Counter "pg_archiver_failed", [], "Failed attempts to archive a WAL file.");
static LAST_ARCHIVED: Desc = desc!(Gauge "pg_archiver_last_archived_timestamp", unit = Seconds, [],
    "When the last WAL file was archived, as a Unix time.", only_when = "a WAL file was ever archived");
static LAST_FAILED: Desc = desc!(Gauge "pg_archiver_last_failed_timestamp", unit = Seconds, [],
    "When archiving last failed, as a Unix time.", only_when = "archiving ever failed");
static PENDING: Desc = desc!(Gauge "pg_archiver_pending_segments", [],
    "WAL segments ready but not yet archived (.ready files in pg_wal/archive_status).");
static RPO: Desc = desc!(Gauge "pg_archiver_rpo", unit = Seconds, [],
    "Recovery point at risk: seconds since the last successful archive while unarchived WAL exists, 0 when all written WAL is archived.",
    only_when = "archive_mode is on");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &ARCHIVED,
    &FAILED,
    &LAST_ARCHIVED,
    &LAST_FAILED,
    &PENDING,
    &RPO,
];

/// The `archiver` collector.
#[derive(Debug, Default)]
pub struct Archiver;

const WHAT: &str = "pg_stat_archiver";

#[async_trait]
impl Collector for Archiver {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let row = query_one(cx.client, WHAT, ARCHIVER_SQL, &[]).await?;
        let mut families = vec![
            Family::single(&ARCHIVED, row.get("archived")?),
            Family::single(&FAILED, row.get("failed")?),
            Family::single(&PENDING, row.get("pending")?),
        ];
        if let Some(t) = row.get::<Option<f64>>("last_archived")? {
            families.push(Family::single(&LAST_ARCHIVED, t));
        }
        if let Some(t) = row.get::<Option<f64>>("last_failed")? {
            families.push(Family::single(&LAST_FAILED, t));
        }
        if row.get::<bool>("archiving")? {
            let at_risk: bool = row.get("unarchived")?;
            let since: f64 = row.get("since_archived")?;
            let rpo = if at_risk { since.max(0.0) } else { 0.0 };
            families.push(Family::single(&RPO, rpo));
        }
        Ok(families.into())
    }
}

/// `unarchived`: a .ready segment exists, or the current position is past
/// the end of the last archived segment (segment name → its end LSN).
const ARCHIVER_SQL: &str = "
WITH a AS (SELECT * FROM pg_catalog.pg_stat_archiver),
     ready AS (SELECT count(*) AS n FROM pg_catalog.pg_ls_archive_statusdir() WHERE name ~ '^[0-9A-F]{24}[.]ready$'),
     seg AS (SELECT setting::bigint AS size FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size')
SELECT a.archived_count::float8 AS archived, a.failed_count::float8 AS failed,
       extract(epoch FROM a.last_archived_time)::float8 AS last_archived,
       extract(epoch FROM a.last_failed_time)::float8 AS last_failed,
       ready.n::float8 AS pending,
       current_setting('archive_mode') <> 'off' AND NOT pg_catalog.pg_is_in_recovery() AS archiving,
       extract(epoch FROM now() - coalesce(a.last_archived_time,
                                           greatest(a.stats_reset, pg_catalog.pg_postmaster_start_time())))::float8 AS since_archived,
       ready.n > 0 OR (
         a.last_archived_wal ~ '^[0-9A-F]{24}$' AND NOT pg_catalog.pg_is_in_recovery() AND
         pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0') >
           (('x' || substr(a.last_archived_wal, 9, 8))::bit(32)::bigint * 4294967296
            + ('x' || substr(a.last_archived_wal, 17, 8))::bit(32)::bigint * seg.size + seg.size)
       ) AS unarchived
  FROM a, ready, seg";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[ARCHIVER_SQL];
