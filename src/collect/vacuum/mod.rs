//! Vacuum: who holds the xmin horizon back, how far each database is from
//! wraparound against what the server will do about it, and the vacuums
//! running now against the autovacuum workers there are.
//!
//! # Layout
//!
//! - this file: the collector, its metric families, the settings, the
//!   databases' ages and pg_stat_progress_vacuum;
//! - `horizon`: the holders of the xmin horizon;
//! - [`report`]: the plain data of `/api/v1/vacuum` (holders named).
//!
//! Metrics carry each kind's oldest horizon and how many hold one; the
//! holders themselves (pid, gid, slot name…) are free text of unbounded
//! number and live in the report only.
//!
//! Privilege: pg_monitor (pg_read_all_stats) for other roles' sessions in
//! pg_stat_activity, pg_stat_replication and pg_stat_progress_vacuum; the
//! settings, pg_database, pg_prepared_xacts and pg_replication_slots are
//! readable by every role.

use std::sync::Arc;

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, Detail, query, query_one};
use crate::desc;
use crate::metric::{Desc, Family};

mod horizon;
pub mod report;
pub mod tables;

use report::{
    DatabaseAge, HOLDER_KINDS, HOLDERS_PER_KIND, RUNNING_VACUUMS, RunningVacuum, VacuumReport,
    Wraparound,
};

/// Public: the outputs look it up by descriptor.
pub static HORIZON_AGE: Desc = desc!(Gauge "pg_xmin_horizon_age", ["holder"],
    "Transactions since the oldest xid or xmin held by each kind of holder (age()): vacuum cannot remove rows newer than the oldest of them. holder: backend (pgvigil's own sessions and autovacuum left out), prepared_transaction, replication_slot (xmin or catalog_xmin), standby (a walsender's xmin from hot_standby_feedback). /api/v1/vacuum names the holders.",
    only_when = "something of that kind holds a horizon (see pg_xmin_horizon_holders)");
static HORIZON_HOLDERS: Desc = desc!(Gauge "pg_xmin_horizon_holders", ["holder"],
    "How many of each kind of holder hold an xid or xmin now (0 when none).");
/// Public: rules compare database ages with it.
pub static FREEZE_MAX_AGE: Desc = desc!(Gauge "pg_settings_autovacuum_freeze_max_age", [],
    "The autovacuum_freeze_max_age setting: a table whose relfrozenxid is older gets an anti-wraparound autovacuum.");
static MXID_FREEZE_MAX_AGE: Desc = desc!(Gauge "pg_settings_autovacuum_multixact_freeze_max_age", [],
    "The autovacuum_multixact_freeze_max_age setting: a table whose relminmxid is older gets an anti-wraparound autovacuum.");
static MAX_WORKERS: Desc = desc!(Gauge "pg_settings_autovacuum_max_workers", [],
    "The autovacuum_max_workers setting.");
static BLOCK_SIZE: Desc = desc!(Gauge "pg_settings_block_size", [],
    "The block_size setting, in bytes.");
static SHARED_BUFFERS: Desc = desc!(Gauge "pg_settings_shared_buffers", unit = Bytes, [],
    "The shared_buffers setting.");
static WORKERS: Desc = desc!(Gauge "pg_autovacuum_workers", [],
    "Autovacuum workers running now; at autovacuum_max_workers for long, big tables wait their turn.");
static PROGRESS: Desc = desc!(Info "pg_vacuum_progress", ["datname", "relname", "phase", "kind"],
    "A running VACUUM (pg_stat_progress_vacuum), the 10 on the largest tables: its phase and kind (autovacuum, wraparound: an anti-wraparound autovacuum, manual). relname is schema-qualified in the database pgvigil connects to, the table's OID elsewhere.",
    only_when = "a VACUUM runs");
static HEAP_SCANNED: Desc = desc!(Gauge "pg_vacuum_progress_heap_blocks_scanned", ["datname", "relname"],
    "Heap blocks a running VACUUM has scanned so far.", only_when = "a VACUUM runs");
static HEAP_TOTAL: Desc = desc!(Gauge "pg_vacuum_progress_heap_blocks", ["datname", "relname"],
    "Heap blocks of the table a running VACUUM works on.", only_when = "a VACUUM runs");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &HORIZON_AGE,
    &HORIZON_HOLDERS,
    &FREEZE_MAX_AGE,
    &MXID_FREEZE_MAX_AGE,
    &MAX_WORKERS,
    &BLOCK_SIZE,
    &SHARED_BUFFERS,
    &WORKERS,
    &PROGRESS,
    &HEAP_SCANNED,
    &HEAP_TOTAL,
];

/// The `vacuum` collector.
#[derive(Debug, Default)]
pub struct Vacuum;

const SETTINGS: &str = "vacuum settings";
const DATABASES: &str = "pg_database ages";
const RUNNING: &str = "pg_stat_progress_vacuum";

#[async_trait]
impl Collector for Vacuum {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let holders = horizon::read(cx.client).await?;
        let mut ages = Family::new(&HORIZON_AGE);
        let mut counts = Family::new(&HORIZON_HOLDERS);
        for kind in HOLDER_KINDS {
            let mine = holders.iter().filter(|h| h.holder == kind);
            counts.push(&[kind], mine.clone().count() as f64);
            if let Some(oldest) = mine.map(|h| h.age).reduce(f64::max) {
                ages.push(&[kind], oldest);
            }
        }
        let held_back_by = holders.first().map(|h| h.holder.clone());
        let mut kept = Vec::new();
        for kind in HOLDER_KINDS {
            kept.extend(
                holders
                    .iter()
                    .filter(|h| h.holder == kind)
                    .take(HOLDERS_PER_KIND)
                    .cloned(),
            );
        }
        kept.sort_by(|a, b| b.age.total_cmp(&a.age));

        let s = query_one(cx.client, SETTINGS, SETTINGS_SQL, &[]).await?;
        let freeze: f64 = s.get("freeze_max_age")?;
        let mxid_freeze: f64 = s.get("multixact_freeze_max_age")?;
        let max_workers: f64 = s.get("max_workers")?;
        let workers: f64 = s.get("workers")?;

        let mut databases = Vec::new();
        for row in query(cx.client, DATABASES, DATABASES_SQL, &[]).await? {
            let (xid_age, mxid_age): (f64, f64) = (row.get("xid_age")?, row.get("mxid_age")?);
            databases.push(DatabaseAge {
                datname: row.get("datname")?,
                xid_age,
                mxid_age,
                xid_share_of_freeze_max_age: xid_age / freeze,
                mxid_share_of_freeze_max_age: mxid_age / mxid_freeze,
            });
        }

        let mut running = Vec::new();
        for row in query(cx.client, RUNNING, RUNNING_SQL, &[]).await? {
            running.push(RunningVacuum {
                pid: row.get("pid")?,
                datname: row.get("datname")?,
                relname: row.get("relname")?,
                phase: row.get("phase")?,
                kind: row.get("kind")?,
                heap_blks_scanned: row.get("heap_blks_scanned")?,
                heap_blks_total: row.get("heap_blks_total")?,
                since: row.get("since")?,
            });
        }
        running.truncate(RUNNING_VACUUMS);
        let mut progress = Family::new(&PROGRESS);
        let mut scanned = Family::new(&HEAP_SCANNED);
        let mut total = Family::new(&HEAP_TOTAL);
        for v in &running {
            // Two vacuums of one table cannot run at once: (datname,
            // relname) is unique.
            progress.push_info(&[&v.datname, &v.relname, &v.phase, &v.kind]);
            scanned.push(&[&v.datname, &v.relname], v.heap_blks_scanned);
            total.push(&[&v.datname, &v.relname], v.heap_blks_total);
        }

        let families = vec![
            ages,
            counts,
            Family::single(&FREEZE_MAX_AGE, freeze),
            Family::single(&MXID_FREEZE_MAX_AGE, mxid_freeze),
            Family::single(&MAX_WORKERS, max_workers),
            Family::single(&BLOCK_SIZE, s.get("block_size")?),
            Family::single(&SHARED_BUFFERS, s.get("shared_buffers")?),
            Family::single(&WORKERS, workers),
            progress,
            scanned,
            total,
        ];
        let report = VacuumReport {
            holders: kept,
            held_back_by,
            wraparound: Wraparound {
                autovacuum_freeze_max_age: freeze,
                autovacuum_multixact_freeze_max_age: mxid_freeze,
                databases,
            },
            autovacuum_workers: workers,
            autovacuum_max_workers: max_workers,
            running,
        };
        Ok(Collected {
            families,
            detail: Some(Detail::Vacuum(Arc::new(report))),
        })
    }
}

const SETTINGS_SQL: &str = "SELECT current_setting('autovacuum_freeze_max_age')::float8 AS freeze_max_age,
                        current_setting('autovacuum_multixact_freeze_max_age')::float8 AS multixact_freeze_max_age,
                        current_setting('autovacuum_max_workers')::float8 AS max_workers,
                        current_setting('block_size')::float8 AS block_size,
                        pg_catalog.pg_size_bytes(current_setting('shared_buffers'))::float8 AS shared_buffers,
                        (SELECT count(*) FROM pg_catalog.pg_stat_activity
                          WHERE backend_type = 'autovacuum worker')::float8 AS workers";

/// Every database, templates included (template0 must be frozen too).
const DATABASES_SQL: &str =
    "SELECT datname::text AS datname, pg_catalog.age(datfrozenxid)::float8 AS xid_age,
                        pg_catalog.mxid_age(datminmxid)::float8 AS mxid_age
                   FROM pg_catalog.pg_database
                  ORDER BY 2 DESC, 1";

/// An anti-wraparound autovacuum says so in its query text. Table names
/// resolve only in the session's own database.
const RUNNING_SQL: &str = "SELECT p.pid, coalesce(p.datname::text, '') AS datname,
                        coalesce(n.nspname::text || '.' || c.relname::text, p.relid::text) AS relname,
                        p.phase,
                        CASE WHEN a.backend_type IS DISTINCT FROM 'autovacuum worker' THEN 'manual'
                             WHEN a.query LIKE '%(to prevent wraparound)%' THEN 'wraparound'
                             ELSE 'autovacuum' END AS kind,
                        p.heap_blks_scanned::float8 AS heap_blks_scanned,
                        p.heap_blks_total::float8 AS heap_blks_total,
                        extract(epoch FROM a.xact_start)::float8 AS since
                   FROM pg_catalog.pg_stat_progress_vacuum p
                   LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = p.pid
                   LEFT JOIN pg_catalog.pg_class c ON c.oid = p.relid AND p.datname = current_database()
                   LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  ORDER BY p.heap_blks_total DESC, p.pid";

/// The SQL this collector sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[
    horizon::OWN_SQL[0],
    SETTINGS_SQL,
    DATABASES_SQL,
    RUNNING_SQL,
];
