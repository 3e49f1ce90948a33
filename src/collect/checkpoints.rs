//! Checkpoints, buffer writes and allocations, and the background
//! writer's stops at bgwriter_lru_maxpages, under the same names before and after
//! PostgreSQL 17 moved them from pg_stat_bgwriter to pg_stat_checkpointer
//! (and backend writes to pg_stat_io). Which views exist is checked on the
//! server, not inferred from its version.
//!
//! On a standby a checkpoint is a restartpoint. Before 17 the checkpoint
//! counters counted them; 17 counts them apart (`restartpoints_timed`,
//! `restartpoints_req`), so they are added back in: a standby's
//! checkpoint families keep moving after an upgrade.
//!
//! Privilege: none beyond LOGIN.

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, query_one};
use crate::desc;
use crate::metric::{Desc, Family};

static TIMED: Desc = desc!(Counter "pg_checkpoints_timed", [], "Checkpoints (restartpoints on a standby) started because checkpoint_timeout elapsed.");
static REQUESTED: Desc = desc!(Counter "pg_checkpoints_requested", [],
    "Checkpoints (restartpoints on a standby) requested (WAL reached max_wal_size, or CHECKPOINT was run); many mean max_wal_size is small.");
static WRITE: Desc = desc!(Counter "pg_checkpoint_write", unit = Seconds, [], "Time checkpoints spent writing files.");
static SYNC: Desc = desc!(Counter "pg_checkpoint_sync", unit = Seconds, [], "Time checkpoints spent syncing files to disk.");
static BUFFERS: Desc = desc!(Counter "pg_buffers_written", ["by"],
    "Shared buffers written, by who wrote them: checkpoint, bgwriter, backend (backends writing means the others fall behind).");

static ALLOCATED: Desc = desc!(Counter "pg_buffers_allocated", [],
    "Shared buffers allocated (pg_stat_bgwriter.buffers_alloc): rate() is how fast pages come into shared buffers.");
static MAXWRITTEN: Desc = desc!(Counter "pg_bgwriter_maxwritten_clean", [],
    "Times the background writer stopped a cleaning round because it had written bgwriter_lru_maxpages buffers; frequent stops with backends writing their own buffers mean it is held back.");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &TIMED,
    &REQUESTED,
    &WRITE,
    &SYNC,
    &BUFFERS,
    &ALLOCATED,
    &MAXWRITTEN,
];

/// The `checkpoints` collector.
#[derive(Debug, Default)]
pub struct Checkpoints;

const WHAT: &str = "checkpoint statistics";

#[async_trait]
impl Collector for Checkpoints {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let views = query_one(cx.client, WHAT, VIEWS_SQL, &[]).await?;
        let sql = if views.get::<bool>("checkpointer")? {
            SPLIT_SQL
        } else {
            BGWRITER_SQL
        };
        let row = query_one(cx.client, WHAT, sql, &[]).await?;
        let total = |column: &'static str| row.get::<f64>(column);
        let timed = Family::single(&TIMED, total("timed")?);
        let requested = Family::single(&REQUESTED, total("requested")?);
        let write = Family::single(&WRITE, total("write_seconds")?);
        let sync = Family::single(&SYNC, total("sync_seconds")?);
        let mut buffers = Family::new(&BUFFERS);
        for (by, column) in [
            ("checkpoint", "by_checkpoint"),
            ("bgwriter", "by_bgwriter"),
            ("backend", "by_backend"),
        ] {
            buffers.push(&[by], total(column)?);
        }
        let allocated = Family::single(&ALLOCATED, total("allocated")?);
        let maxwritten = Family::single(&MAXWRITTEN, total("maxwritten_clean")?);
        Ok(vec![
            timed, requested, write, sync, buffers, allocated, maxwritten,
        ]
        .into())
    }
}

const VIEWS_SQL: &str =
    "SELECT pg_catalog.to_regclass('pg_catalog.pg_stat_checkpointer') IS NOT NULL AS checkpointer";

/// Before 17: everything in pg_stat_bgwriter.
const BGWRITER_SQL: &str = "
SELECT checkpoints_timed::float8 AS timed, checkpoints_req::float8 AS requested,
       (checkpoint_write_time / 1000)::float8 AS write_seconds, (checkpoint_sync_time / 1000)::float8 AS sync_seconds,
       buffers_checkpoint::float8 AS by_checkpoint, buffers_clean::float8 AS by_bgwriter, buffers_backend::float8 AS by_backend,
       buffers_alloc::float8 AS allocated, maxwritten_clean::float8 AS maxwritten_clean
  FROM pg_catalog.pg_stat_bgwriter";

/// 17+: checkpoints in pg_stat_checkpointer, backend writes in pg_stat_io.
const SPLIT_SQL: &str = "
SELECT (c.num_timed + c.restartpoints_timed)::float8 AS timed,
       (c.num_requested + c.restartpoints_req)::float8 AS requested,
       (c.write_time / 1000)::float8 AS write_seconds, (c.sync_time / 1000)::float8 AS sync_seconds,
       c.buffers_written::float8 AS by_checkpoint, b.buffers_clean::float8 AS by_bgwriter,
       (SELECT coalesce(sum(writes), 0) FROM pg_catalog.pg_stat_io
         WHERE object = 'relation' AND backend_type NOT IN ('checkpointer', 'background writer'))::float8 AS by_backend,
       b.buffers_alloc::float8 AS allocated, b.maxwritten_clean::float8 AS maxwritten_clean
  FROM pg_catalog.pg_stat_checkpointer c, pg_catalog.pg_stat_bgwriter b";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[VIEWS_SQL, BGWRITER_SQL, SPLIT_SQL];
