//! I/O by who did it and on what (pg_stat_io, 16+), and the SLRU caches
//! (pg_stat_slru) summarized.
//!
//! pg_stat_io has a row per backend type, object and context: about 40
//! rows with numbers on a busy server, and six operations each. To stay
//! within the series budget (docs/performance.md) the context (normal,
//! vacuum, bulkread, bulkwrite, init) is summed away: the labels are
//! `backend_type` and `object` (relation, temp relation), and a pair whose
//! operations are all zero or NULL (a process type that did no I/O since
//! the last reset) is left out. The WAL rows PostgreSQL 18 adds are the
//! `wal` collector's (`pg_wal_writes_total`, `pg_wal_syncs_total`), not
//! repeated here. Times are published where track_io_timing is on.
//!
//! pg_stat_slru is summarized to hits and reads per cache, under the names
//! PostgreSQL 17 gave the caches (`transaction`, `subtransaction`,
//! `multixact_member`, …) on every version: reads are misses, and a
//! steady rate of them on `subtransaction` or `multixact_*` is the
//! known SLRU thrashing.
//!
//! Privilege: none beyond LOGIN (both views are readable by all).

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, query};
use crate::desc;
use crate::metric::{Desc, Family};

static OPERATIONS: Desc = desc!(Counter "pg_io_operations", ["backend_type", "object", "op"],
    "I/O operations by process type and object, all contexts together (pg_stat_io): op is read, write, extend, hit (found in shared buffers), eviction or fsync; a pair that did no I/O is absent.",
    only_when = "PostgreSQL 16+");
static TIME: Desc = desc!(Counter "pg_io_time", unit = Seconds, ["backend_type", "object", "op"],
    "Time spent in I/O operations by process type and object (op: read, write, extend, fsync).",
    only_when = "PostgreSQL 16+ with track_io_timing on (with it off nothing is timed, and 0 would read as fast storage)");
static SLRU_HIT: Desc = desc!(Counter "pg_slru_blocks_hit", ["slru"],
    "Blocks of an SLRU cache (transaction status, subtransactions, multixacts, …) found in memory.");
static SLRU_READ: Desc = desc!(Counter "pg_slru_blocks_read", ["slru"],
    "Blocks of an SLRU cache read from disk (misses): a steady rate on subtransaction or multixact_* is SLRU thrashing.");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[&OPERATIONS, &TIME, &SLRU_HIT, &SLRU_READ];

const OPS: [&str; 6] = ["read", "write", "extend", "hit", "eviction", "fsync"];
const TIMED_OPS: [&str; 4] = ["read", "write", "extend", "fsync"];

/// The `io` collector.
#[derive(Debug, Default)]
pub struct Io;

#[async_trait]
impl Collector for Io {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let mut families = Vec::new();
        if cx.caps.server_version_num >= 160000 {
            let rows = query(cx.client, "pg_stat_io", IO_SQL, &[]).await?;
            let mut ops = Family::new(&OPERATIONS);
            let mut time = Family::new(&TIME);
            for row in &rows {
                let backend: String = row.get("backend_type")?;
                let object: String = row.get("object")?;
                for op in OPS {
                    if let Some(v) = row.get::<Option<f64>>(op)? {
                        ops.push(&[backend.as_str(), object.as_str(), op], v);
                    }
                }
                for (op, column) in TIMED_OPS.iter().zip(TIME_COLUMNS) {
                    if let Some(v) = row.get::<Option<f64>>(column)? {
                        time.push(&[backend.as_str(), object.as_str(), op], v);
                    }
                }
            }
            families.push(ops);
            families.push(time);
        }
        let rows = query(cx.client, "pg_stat_slru", SLRU_SQL, &[]).await?;
        let mut hit = Family::new(&SLRU_HIT);
        let mut read = Family::new(&SLRU_READ);
        for row in &rows {
            let name: String = row.get("name")?;
            let slru = slru_name(&name);
            hit.push(&[slru], row.get("hit")?);
            read.push(&[slru], row.get("read")?);
        }
        families.push(hit);
        families.push(read);
        Ok(families.into())
    }
}

const TIME_COLUMNS: [&str; 4] = ["read_time", "write_time", "extend_time", "fsync_time"];

/// An SLRU cache's name as PostgreSQL 17 and later call it.
fn slru_name(name: &str) -> &str {
    match name {
        "CommitTs" => "commit_timestamp",
        "MultiXactMember" => "multixact_member",
        "MultiXactOffset" => "multixact_offset",
        "Notify" => "notify",
        "Serial" => "serializable",
        "Subtrans" => "subtransaction",
        "Xact" => "transaction",
        "Other" => "other",
        other => other,
    }
}

const IO_SQL: &str = "
SELECT backend_type, object,
       sum(reads)::float8 AS read, sum(writes)::float8 AS write, sum(extends)::float8 AS extend,
       sum(hits)::float8 AS hit, sum(evictions)::float8 AS eviction, sum(fsyncs)::float8 AS fsync,
       CASE WHEN current_setting('track_io_timing') = 'on' THEN (sum(read_time) / 1000)::float8 END AS read_time,
       CASE WHEN current_setting('track_io_timing') = 'on' THEN (sum(write_time) / 1000)::float8 END AS write_time,
       CASE WHEN current_setting('track_io_timing') = 'on' THEN (sum(extend_time) / 1000)::float8 END AS extend_time,
       CASE WHEN current_setting('track_io_timing') = 'on' THEN (sum(fsync_time) / 1000)::float8 END AS fsync_time
  FROM pg_catalog.pg_stat_io
 WHERE object <> 'wal'
 GROUP BY 1, 2
HAVING coalesce(sum(reads), 0) + coalesce(sum(writes), 0) + coalesce(sum(extends), 0)
     + coalesce(sum(hits), 0) + coalesce(sum(evictions), 0) + coalesce(sum(fsyncs), 0) > 0
 ORDER BY 1, 2";

const SLRU_SQL: &str = "
SELECT name, blks_hit::float8 AS hit, blks_read::float8 AS read
  FROM pg_catalog.pg_stat_slru
 ORDER BY 1";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[IO_SQL, SLRU_SQL];

#[cfg(test)]
mod tests {
    use super::slru_name;

    #[test]
    fn slru_caches_keep_their_17_names_on_every_version() {
        let cases = [
            ("Xact", "transaction"),
            ("transaction", "transaction"),
            ("Subtrans", "subtransaction"),
            ("MultiXactMember", "multixact_member"),
            ("multixact_offset", "multixact_offset"),
            ("CommitTs", "commit_timestamp"),
            ("Serial", "serializable"),
            ("Notify", "notify"),
            ("Other", "other"),
        ];
        for (name, want) in cases {
            assert_eq!(slru_name(name), want, "{name}");
        }
    }
}
