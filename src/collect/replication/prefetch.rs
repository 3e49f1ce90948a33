//! Recovery prefetching on a replica (pg_stat_recovery_prefetch, 15+):
//! how many blocks replay asked the kernel to read ahead, found in
//! shared buffers already, or skipped (and why), and how far ahead it
//! looks. A replica that replays slowly with `prefetch` near 0 may gain
//! from `recovery_prefetch = on` or a larger `maintenance_io_concurrency`.
//!
//! The counters only move while the replica replays WAL; on a primary the
//! view reads zeros and is not published. Before 15 the view does not
//! exist and neither do the families.

use crate::collect::{CollectError, Row};
use crate::desc;
use crate::metric::{Desc, Family};

/// Public for the collector's table.
pub static BLOCKS: Desc = desc!(Counter "pg_recovery_prefetch_blocks", ["result"],
    "Blocks WAL replay looked at for prefetching, by result: prefetch (read ahead), hit (already in shared buffers), skip_init (zero-initialized), skip_new (did not exist yet), skip_fpw (a full page image), skip_rep (recently prefetched).",
    only_when = "the server is a replica, PostgreSQL 15+");
/// Public for the collector's table.
pub static WAL_DISTANCE: Desc = desc!(Gauge "pg_recovery_prefetch_wal_distance", unit = Bytes, [],
    "How far ahead of replay the prefetcher is looking, in WAL.",
    only_when = "the server is a replica, PostgreSQL 15+");
/// Public for the collector's table.
pub static IO_DEPTH: Desc = desc!(Gauge "pg_recovery_prefetch_io_depth", [],
    "Prefetches in flight, not yet known to have completed.",
    only_when = "the server is a replica, PostgreSQL 15+");

/// What the query is called in errors.
pub(super) const WHAT: &str = "pg_stat_recovery_prefetch";

/// No row on a primary.
pub(super) const SQL: &str = "
SELECT prefetch::float8 AS prefetch, hit::float8 AS hit, skip_init::float8 AS skip_init,
       skip_new::float8 AS skip_new, skip_fpw::float8 AS skip_fpw, skip_rep::float8 AS skip_rep,
       wal_distance::float8 AS wal_distance, io_depth::float8 AS io_depth
  FROM pg_catalog.pg_stat_recovery_prefetch
 WHERE pg_catalog.pg_is_in_recovery()";

const RESULTS: [&str; 6] = [
    "prefetch",
    "hit",
    "skip_init",
    "skip_new",
    "skip_fpw",
    "skip_rep",
];

/// The families of the view's one row.
pub(super) fn families(row: &Row) -> Result<Vec<Family>, CollectError> {
    let mut blocks = Family::new(&BLOCKS);
    for result in RESULTS {
        blocks.push(&[result], row.get(result)?);
    }
    Ok(vec![
        blocks,
        Family::single(&WAL_DISTANCE, row.get("wal_distance")?),
        Family::single(&IO_DEPTH, row.get("io_depth")?),
    ])
}
