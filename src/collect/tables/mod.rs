//! Tables and indexes of every watched database: sizes, scans, dead tuples,
//! autovacuum times, buffer hits and reads (pg_stat_user_tables,
//! pg_statio_user_tables, pg_stat_user_indexes).
//!
//! # Layout
//!
//! - this file: the collector, its metric families, the top-N and the
//!   `"other"` fold;
//! - `stats`: the statistics views, read without opening any relation, so
//!   that no lock on a table can hold them up;
//! - [`sizes`]: relation sizes, which open relations, measured around
//!   ACCESS EXCLUSIVE locks instead of queueing behind them.
//!
//! The largest tables and indexes of the target (by size, with the same
//! hysteresis as statements) get their own series; the rest are summed
//! into one series labelled `"other"`, so 50,000 tables cost a bounded
//! number of series. A published table's counters are the server's own;
//! `"other"` is pgvigil's sum, starting at 0 when the agent starts and
//! growing by the growth of the tables folded into it.
//!
//! Databases other than the session's are visited one at a time, each on a
//! short-lived connection, so a run holds at most one connection beyond the
//! collectors' own.
//!
//! Sizes stat every file of every relation, three quarters of a run's
//! database time: a sizing pass measures them every [`SIZE_RUNS`]th run of
//! each database (every 5 minutes at the default interval) and they are
//! carried over in between. A relation locked ACCESS EXCLUSIVE is skipped,
//! never waited for; each database's pass has its own time budget
//! ([`sizing_budget`]). What a pass did not measure keeps its last size, or
//! a `pg_class.relpages` estimate, and is flagged
//! (`pg_table_size_estimated`, `pg_tables_size_skipped`), while the
//! statistics keep flowing. A skipped pass is not repeated at the next run.
//!
//! Privilege: pg_monitor (pg_stat_scan_tables for sizes), CONNECT on each
//! database.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_postgres::Client;

use super::{CollectError, Collected, Collector, Context, query};
use crate::config::Databases;
use crate::desc;
use crate::metric::{Desc, Family};
use crate::stats::cardinality::{OTHER, TopN};
use crate::stats::counter::Growth;

pub mod sizes;
pub(crate) mod stats;

pub use sizes::SIZE_RUNS;
use sizes::{DatabaseSizes, Rel, Skip};
use stats::{IndexRow, TableRow};

static TABLE_SIZE: Desc = desc!(Gauge "pg_table_size", unit = Bytes, ["datname", "schemaname", "relname"],
    "Disk space of the table (heap, TOAST, free space and visibility maps), indexes not included; measured by a sizing pass every fifth run of the tables collector (every 5 minutes by default) and carried over in between. Where pg_table_size_estimated is 1 it is the last size measured, or an estimate.",
    only_when = "the watched databases have user tables whose size was measured or can be estimated");
static INDEX_SIZE: Desc = desc!(Gauge "pg_index_size", unit = Bytes, ["datname", "schemaname", "relname", "indexrelname"],
    "Disk space of the index; measured by a sizing pass every fifth run of the tables collector (every 5 minutes by default) and carried over in between. Where pg_index_size_estimated is 1 it is the last size measured, or an estimate.",
    only_when = "the watched databases have indexes whose size was measured or can be estimated");
static TABLE_SIZE_ESTIMATED: Desc = desc!(Gauge "pg_table_size_estimated", ["datname", "schemaname", "relname"],
    "1 when the latest sizing pass of the database did not measure the table (it, its TOAST table or TOAST index held or awaited an ACCESS EXCLUSIVE lock, or the pass ran out of its time budget): pg_table_size_bytes is then the last size measured or, never measured, pg_class.relpages of the heap and TOAST table times the block size, absent when pg_class has no page count. 0 when measured. For relname=\"other\": 1 when any table folded into it was not measured.",
    only_when = "the watched databases have user tables");
static INDEX_SIZE_ESTIMATED: Desc = desc!(Gauge "pg_index_size_estimated", ["datname", "schemaname", "relname", "indexrelname"],
    "1 when the latest sizing pass of the database did not measure the index (it held or awaited an ACCESS EXCLUSIVE lock, as during REINDEX, or the pass ran out of its time budget): pg_index_size_bytes is then the last size measured or, never measured, pg_class.relpages times the block size, absent when pg_class has no page count. 0 when measured. For relname=\"other\": 1 when any index folded into it was not measured.",
    only_when = "the watched databases have indexes");
static SIZE_SKIPPED: Desc = desc!(Gauge "pg_tables_size_skipped", ["datname", "reason"],
    "Tables and indexes of the database (published or folded into \"other\") that the latest sizing pass did not measure, so their size is carried over or estimated, by reason: locked (an ACCESS EXCLUSIVE lock held or awaited on the relation or one its size call opens; retried every run without waiting), budget (the pass ran out of its time budget first; taken up first by the next pass), error (the size function failed for it; the message is logged).");
static SEQ_SCAN: Desc = desc!(Counter "pg_table_seq_scan", ["datname", "schemaname", "relname"], "Sequential scans of the table.",
    only_when = "the watched databases have user tables");
static SEQ_TUP_READ: Desc = desc!(Counter "pg_table_seq_tup_read", ["datname", "schemaname", "relname"], "Rows read by sequential scans.",
    only_when = "the watched databases have user tables");
static IDX_SCAN: Desc = desc!(Counter "pg_table_idx_scan", ["datname", "schemaname", "relname"], "Index scans on the table.",
    only_when = "the watched databases have user tables");
static DEAD: Desc = desc!(Gauge "pg_table_dead_tuples", ["datname", "schemaname", "relname"], "Estimated dead rows waiting for VACUUM.",
    only_when = "the watched databases have user tables");
static LIVE: Desc = desc!(Gauge "pg_table_live_tuples", ["datname", "schemaname", "relname"], "Estimated live rows.",
    only_when = "the watched databases have user tables");
static LAST_AUTOVACUUM: Desc = desc!(Gauge "pg_table_last_autovacuum_timestamp", unit = Seconds, ["datname", "schemaname", "relname"],
    "When autovacuum last vacuumed the table, as a Unix time.", only_when = "autovacuum has vacuumed the table");
static LAST_AUTOANALYZE: Desc = desc!(Gauge "pg_table_last_autoanalyze_timestamp", unit = Seconds, ["datname", "schemaname", "relname"],
    "When autovacuum last analyzed the table, as a Unix time.", only_when = "autovacuum has analyzed the table");
static BLKS_HIT: Desc = desc!(Counter "pg_table_blks_hit", ["datname", "schemaname", "relname"], "Heap blocks found in shared buffers.",
    only_when = "the watched databases have user tables");
static BLKS_READ: Desc = desc!(Counter "pg_table_blks_read", ["datname", "schemaname", "relname"], "Heap blocks read from disk or the OS cache.",
    only_when = "the watched databases have user tables");
static IDX_BLKS_HIT: Desc = desc!(Counter "pg_table_idx_blks_hit", ["datname", "schemaname", "relname"], "Blocks of the table's indexes found in shared buffers.",
    only_when = "the watched databases have user tables");
static IDX_BLKS_READ: Desc = desc!(Counter "pg_table_idx_blks_read", ["datname", "schemaname", "relname"], "Blocks of the table's indexes read.",
    only_when = "the watched databases have user tables");
static INDEX_SCANS: Desc = desc!(Counter "pg_index_scans", ["datname", "schemaname", "relname", "indexrelname"],
    "Scans using the index; an index that stays at 0 is a candidate for dropping.",
    only_when = "the watched databases have indexes");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &TABLE_SIZE,
    &INDEX_SIZE,
    &TABLE_SIZE_ESTIMATED,
    &INDEX_SIZE_ESTIMATED,
    &SIZE_SKIPPED,
    &SEQ_SCAN,
    &SEQ_TUP_READ,
    &IDX_SCAN,
    &DEAD,
    &LIVE,
    &LAST_AUTOVACUUM,
    &LAST_AUTOANALYZE,
    &BLKS_HIT,
    &BLKS_READ,
    &IDX_BLKS_HIT,
    &IDX_BLKS_READ,
    &INDEX_SCANS,
    &WATCHED,
];
static WATCHED: Desc = desc!(Gauge "pg_tables_watched", [],
    "Tables in the watched databases (published individually or folded into \"other\").");

/// Table counter families, in [`stats::TABLE_COUNTER_COLUMNS`] order.
const TABLE_COUNTERS: [&Desc; 7] = [
    &SEQ_SCAN,
    &SEQ_TUP_READ,
    &IDX_SCAN,
    &BLKS_HIT,
    &BLKS_READ,
    &IDX_BLKS_HIT,
    &IDX_BLKS_READ,
];

/// Tables and indexes published individually, each (with hysteresis, at
/// most twice as many). A table has 13 series and an index 3: 40 is what
/// the series budget in docs/performance.md leaves them next to the vacuum,
/// schema and active-session families (100 took 3,300 of its 5,000 while
/// the largest tables changed; 50 left the whole at 5,064).
pub const TOP: usize = 40;
/// Runs an object stays published after leaving the top.
const KEEP: u64 = 3;

/// (datname, schemaname, relname[, indexrelname]).
type Key = (String, String, String, String);

/// The `tables` collector.
pub struct Tables {
    tables: TopN<Key>,
    indexes: TopN<Key>,
    growth: Growth<(Key, &'static str)>,
    other: HashMap<&'static str, f64>,
    /// Sizes between runs, per database.
    sizes: HashMap<String, DatabaseSizes>,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            tables: TopN::new(TOP, KEEP),
            indexes: TopN::new(TOP, KEEP),
            growth: Growth::default(),
            other: HashMap::new(),
            sizes: HashMap::new(),
        }
    }
}

/// The time one database's sizing may take, and the run's deadline for all
/// sizing, from the collector's budget (`collectors.timeout`, also the
/// session's statement_timeout): a quarter of it per database, and all
/// sizing done by half of it after the run starts, so that however many
/// databases and relations there are, the run ends within its budget with
/// its statistics, and what sizing did not reach is carried over.
pub fn sizing_budget(run_budget: Duration) -> (Duration, Duration) {
    (run_budget / 4, run_budget / 2)
}

/// One database's rows, sizes attached, and its sizing skips per
/// [`Skip::ALL`] reason.
struct Visited {
    tables: Vec<TableRow>,
    indexes: Vec<IndexRow>,
    skipped: [usize; 3],
}

/// Reads one database: statistics, then sizes as its schedule says, within
/// `budget` and never waiting on a lock for more than `lock_wait`.
async fn visit(
    client: &Client,
    datname: &str,
    sizes: &mut DatabaseSizes,
    budget: Duration,
    lock_wait: Duration,
) -> Result<Visited, CollectError> {
    let (mut tables, mut indexes) = stats::read(client, datname).await?;
    let rels: Vec<Rel> = tables
        .iter()
        .map(|t| Rel {
            oid: t.oid,
            table: true,
        })
        .chain(indexes.iter().map(|i| Rel {
            oid: i.oid,
            table: false,
        }))
        .collect();
    let pass = sizes.due();
    let plan = sizes.plan(&rels, pass);
    let measured = if plan.is_empty() {
        sizes::Measured::default()
    } else {
        sizes::measure(client, &plan, budget, lock_wait).await?
    };
    if let Some(error) = &measured.error {
        tracing::warn!(datname, %error, "a relation size could not be measured; its last size is carried over");
    }
    sizes.record(pass, &rels, &measured);
    let skipped = sizes.skipped();
    if skipped.iter().any(|n| *n > 0) {
        tracing::debug!(
            datname,
            pass,
            locked = skipped[0],
            budget = skipped[1],
            error = skipped[2],
            "sizes carried over"
        );
    }
    let never = sizes.never_measured(&rels);
    let estimates = if never.is_empty() {
        HashMap::new()
    } else {
        match sizes::estimates(client, &never).await {
            Ok(estimates) => estimates,
            Err(e) if !e.connection_lost() => {
                tracing::warn!(datname, error = %e, "no size estimates; those sizes are absent");
                HashMap::new()
            }
            Err(e) => return Err(e),
        }
    };
    let rows = tables
        .iter_mut()
        .map(|t| (t.oid, &mut t.size, &mut t.measured))
        .chain(
            indexes
                .iter_mut()
                .map(|i| (i.oid, &mut i.size, &mut i.measured)),
        );
    for (oid, size, measured) in rows {
        let published = sizes.published(oid);
        *size = published.bytes.or_else(|| estimates.get(&oid).copied());
        *measured = published.measured;
    }
    Ok(Visited {
        tables,
        indexes,
        skipped,
    })
}

/// The databases to visit (the schema and vacuum_tables collectors visit the same).
pub(crate) async fn databases(cx: &Context<'_>) -> Result<Vec<String>, CollectError> {
    match cx.databases {
        Databases::List(names) => Ok(names.clone()),
        Databases::Auto => {
            let rows = query(cx.client, "pg_database", DATABASES_SQL, &[]).await?;
            rows.iter().map(|r| r.get("datname")).collect()
        }
    }
}

#[async_trait]
impl Collector for Tables {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let (per_database, for_all) = sizing_budget(cx.limits.statement_timeout);
        let sizing_ends = Instant::now() + for_all;
        let lock_wait = sizes::LOCK_WAIT.min(cx.limits.lock_timeout);
        let mut tables = Vec::new();
        let mut indexes = Vec::new();
        let mut skipped = Vec::new();
        let names = databases(cx).await?;
        for datname in &names {
            let budget = per_database.min(sizing_ends.saturating_duration_since(Instant::now()));
            let sizes = self.sizes.entry(datname.clone()).or_default();
            let visited = if *datname == cx.caps.database {
                visit(cx.client, datname, sizes, budget, lock_wait).await?
            } else {
                let other = cx.visit(datname).await?;
                visit(&other.client, datname, sizes, budget, lock_wait).await?
            };
            tables.extend(visited.tables);
            indexes.extend(visited.indexes);
            skipped.push((datname.clone(), visited.skipped));
        }
        self.sizes.retain(|datname, _| names.contains(datname));
        let mut families = self.publish(tables, indexes);
        let mut family = Family::new(&SIZE_SKIPPED);
        for (datname, counts) in &skipped {
            for (why, n) in Skip::ALL.iter().zip(counts) {
                family.push(&[datname.as_str(), why.label()], *n as f64);
            }
        }
        families.push(family);
        Ok(families.into())
    }
}

impl Tables {
    fn publish(&mut self, tables: Vec<TableRow>, indexes: Vec<IndexRow>) -> Vec<Family> {
        self.tables.update(
            tables
                .iter()
                .map(|t| (t.key.clone(), t.size.unwrap_or(0.0))),
        );
        self.indexes.update(
            indexes
                .iter()
                .map(|i| (i.key.clone(), i.size.unwrap_or(0.0))),
        );
        let mut size = Family::new(&TABLE_SIZE);
        let mut estimated = Family::new(&TABLE_SIZE_ESTIMATED);
        let mut dead = Family::new(&DEAD);
        let mut live = Family::new(&LIVE);
        let mut vacuumed = Family::new(&LAST_AUTOVACUUM);
        let mut analyzed = Family::new(&LAST_AUTOANALYZE);
        let mut counters: Vec<Family> = TABLE_COUNTERS.iter().map(|d| Family::new(d)).collect();
        let (mut other_size, mut other_dead, mut other_live) = (0.0, 0.0, 0.0);
        let mut other_estimated = false;
        let count = tables.len();
        for t in tables {
            let member = self.tables.contains(&t.key);
            let labels = [t.key.0.as_str(), t.key.1.as_str(), t.key.2.as_str()];
            for ((column, family), raw) in stats::TABLE_COUNTER_COLUMNS
                .iter()
                .zip(counters.iter_mut())
                .zip(t.counters)
            {
                let growth = self.growth.observe((t.key.clone(), *column), raw);
                if member {
                    family.push(&labels, raw);
                } else {
                    *self.other.entry(column).or_default() += growth;
                }
            }
            if member {
                if let Some(bytes) = t.size {
                    size.push(&labels, bytes);
                }
                estimated.push(&labels, flag(!t.measured));
                dead.push(&labels, t.dead);
                live.push(&labels, t.live);
                if let Some(ts) = t.last_autovacuum {
                    vacuumed.push(&labels, ts);
                }
                if let Some(ts) = t.last_autoanalyze {
                    analyzed.push(&labels, ts);
                }
            } else {
                other_size += t.size.unwrap_or(0.0);
                other_estimated |= !t.measured;
                other_dead += t.dead;
                other_live += t.live;
            }
        }
        let other = [OTHER; 3];
        if count > 0 {
            size.push(&other, other_size);
            estimated.push(&other, flag(other_estimated));
            dead.push(&other, other_dead);
            live.push(&other, other_live);
            for (column, family) in stats::TABLE_COUNTER_COLUMNS.iter().zip(counters.iter_mut()) {
                family.push(&other, self.other.get(column).copied().unwrap_or(0.0));
            }
        }
        let mut index_size = Family::new(&INDEX_SIZE);
        let mut index_estimated = Family::new(&INDEX_SIZE_ESTIMATED);
        let mut index_scans = Family::new(&INDEX_SCANS);
        let mut other_index_size = 0.0;
        let mut other_index_estimated = false;
        let has_indexes = !indexes.is_empty();
        for i in indexes {
            let growth = self.growth.observe((i.key.clone(), "index_scans"), i.scans);
            if self.indexes.contains(&i.key) {
                let labels = [
                    i.key.0.as_str(),
                    i.key.1.as_str(),
                    i.key.2.as_str(),
                    i.key.3.as_str(),
                ];
                if let Some(bytes) = i.size {
                    index_size.push(&labels, bytes);
                }
                index_estimated.push(&labels, flag(!i.measured));
                index_scans.push(&labels, i.scans);
            } else {
                other_index_size += i.size.unwrap_or(0.0);
                other_index_estimated |= !i.measured;
                *self.other.entry("index_scans").or_default() += growth;
            }
        }
        if has_indexes {
            let other = [OTHER; 4];
            index_size.push(&other, other_index_size);
            index_estimated.push(&other, flag(other_index_estimated));
            index_scans.push(
                &other,
                self.other.get("index_scans").copied().unwrap_or(0.0),
            );
        }
        self.growth.sweep();
        let mut families = vec![
            size,
            estimated,
            dead,
            live,
            vacuumed,
            analyzed,
            index_size,
            index_estimated,
            index_scans,
        ];
        families.extend(counters);
        families.push(Family::single(&WATCHED, count as f64));
        families
    }
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

const DATABASES_SQL: &str = "SELECT datname::text AS datname FROM pg_catalog.pg_database
                              WHERE datallowconn AND NOT datistemplate
                                AND pg_catalog.has_database_privilege(datname, 'CONNECT')
                              ORDER BY 1";

/// The SQL this collector sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[
    DATABASES_SQL,
    stats::OWN_SQL[0],
    stats::OWN_SQL[1],
    sizes::OWN_SQL[0],
    sizes::OWN_SQL[1],
    sizes::OWN_SQL[2],
];
