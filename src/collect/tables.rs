//! Tables and indexes of every watched database: sizes, scans, dead tuples,
//! autovacuum times, buffer hits and reads (pg_stat_user_tables,
//! pg_statio_user_tables, pg_stat_user_indexes).
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
//! Sizes (`pg_table_size`, `pg_relation_size`) stat every file of every
//! relation, three quarters of a run's database time: they are measured
//! every [`SIZE_RUNS`]th run (every 5 minutes at the default interval) and
//! carried over in between, except for a relation seen for the first time,
//! which is measured at once.
//!
//! Privilege: pg_monitor (pg_stat_scan_tables for sizes), CONNECT on each
//! database.

use std::collections::HashMap;

use async_trait::async_trait;
use tokio_postgres::Client;

use super::{CollectError, Collected, Collector, Context, col, query_err};
use crate::config::Databases;
use crate::desc;
use crate::metric::{Desc, Family};
use crate::stats::counter::Growth;
use crate::stats::topn::TopN;

static TABLE_SIZE: Desc = desc!(Gauge "pg_table_size", unit = Bytes, ["datname", "schemaname", "relname"],
    "Disk space of the table (heap, TOAST, free space and visibility maps), indexes not included; measured every fifth run of the tables collector (every 5 minutes by default).",
    only_when = "the watched databases have user tables");
static INDEX_SIZE: Desc = desc!(Gauge "pg_index_size", unit = Bytes, ["datname", "schemaname", "relname", "indexrelname"],
    "Disk space of the index; measured every fifth run of the tables collector (every 5 minutes by default).",
    only_when = "the watched databases have indexes");
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

/// Table counters, in column order.
const TABLE_COUNTERS: [(&str, &Desc); 7] = [
    ("seq_scan", &SEQ_SCAN),
    ("seq_tup_read", &SEQ_TUP_READ),
    ("idx_scan", &IDX_SCAN),
    ("heap_blks_hit", &BLKS_HIT),
    ("heap_blks_read", &BLKS_READ),
    ("idx_blks_hit", &IDX_BLKS_HIT),
    ("idx_blks_read", &IDX_BLKS_READ),
];

/// Tables and indexes published individually, each.
pub const TOP: usize = 100;
/// Runs an object stays published after leaving the top.
const KEEP: u64 = 3;

/// Relation sizes are measured every this many runs (in between they are
/// carried over).
pub const SIZE_RUNS: u32 = 5;

/// (datname, schemaname, relname[, indexrelname]).
type Key = (String, String, String, String);

/// The `tables` collector.
pub struct Tables {
    tables: TopN<Key>,
    indexes: TopN<Key>,
    growth: Growth<(Key, &'static str)>,
    other: HashMap<&'static str, f64>,
    sizes: Sizes,
}

/// Relation sizes last measured, by database and relation oid.
#[derive(Default)]
struct Sizes {
    /// Successful runs since the last that measured every size.
    runs_since: Option<u32>,
    known: HashMap<String, HashMap<u32, f64>>,
}

impl Sizes {
    /// Whether this run measures every size. A run that fails (on a lock
    /// timeout, say) does not count, so the next one measures again.
    fn due(&self) -> bool {
        self.runs_since.is_none_or(|n| n + 1 >= SIZE_RUNS)
    }

    /// Keeps a successful run's sizes (forgetting dropped relations and
    /// databases).
    fn remember(&mut self, measured: bool, tables: &[TableRow], indexes: &[IndexRow]) {
        self.runs_since = match self.runs_since {
            Some(n) if !measured => Some(n + 1),
            _ => Some(0),
        };
        self.known.clear();
        let rows = tables.iter().map(|t| (&t.key.0, t.oid, t.size));
        for (datname, oid, size) in rows.chain(indexes.iter().map(|i| (&i.key.0, i.oid, i.size))) {
            match self.known.get_mut(datname) {
                Some(known) => {
                    known.insert(oid, size);
                }
                None => {
                    self.known
                        .insert(datname.clone(), HashMap::from([(oid, size)]));
                }
            }
        }
    }
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            tables: TopN::new(TOP, KEEP),
            indexes: TopN::new(TOP, KEEP),
            growth: Growth::default(),
            other: HashMap::new(),
            sizes: Sizes::default(),
        }
    }
}

struct TableRow {
    key: Key,
    oid: u32,
    size: f64,
    dead: f64,
    live: f64,
    last_autovacuum: Option<f64>,
    last_autoanalyze: Option<f64>,
    counters: [f64; 7],
}

struct IndexRow {
    key: Key,
    oid: u32,
    size: f64,
    scans: f64,
}

const TABLES_WHAT: &str = "pg_stat_user_tables";
const INDEXES_WHAT: &str = "pg_stat_user_indexes";

/// Reads one database's tables and indexes; sizes are measured when
/// `measure`, else taken from `known` (and measured when not there).
async fn read_database(
    client: &Client,
    datname: &str,
    measure: bool,
    known: Option<&HashMap<u32, f64>>,
) -> Result<(Vec<TableRow>, Vec<IndexRow>), CollectError> {
    let mut tables = Vec::new();
    // Relations neither measured by this run nor known: measured below.
    let (mut unknown_tables, mut unknown_indexes) = (Vec::new(), Vec::new());
    let size = |row: &tokio_postgres::Row, what, oid: u32, unknown: &mut Vec<u32>| {
        let measured: Option<f64> = col(row, what, "size")?;
        let size = measured.or_else(|| known.and_then(|k| k.get(&oid).copied()));
        if size.is_none() {
            unknown.push(oid);
        }
        Ok::<_, CollectError>(size.unwrap_or(0.0))
    };
    for row in client
        .query(TABLES_SQL, &[&measure])
        .await
        .map_err(query_err(TABLES_WHAT))?
    {
        let mut counters = [0.0; 7];
        for (slot, (column, _)) in counters.iter_mut().zip(TABLE_COUNTERS.iter()) {
            *slot = col(&row, TABLES_WHAT, column)?;
        }
        let oid = col(&row, TABLES_WHAT, "oid")?;
        tables.push(TableRow {
            key: (
                datname.to_string(),
                name(&row, TABLES_WHAT, "schemaname")?,
                name(&row, TABLES_WHAT, "relname")?,
                String::new(),
            ),
            oid,
            size: size(&row, TABLES_WHAT, oid, &mut unknown_tables)?,
            dead: col(&row, TABLES_WHAT, "dead")?,
            live: col(&row, TABLES_WHAT, "live")?,
            last_autovacuum: col(&row, TABLES_WHAT, "last_autovacuum")?,
            last_autoanalyze: col(&row, TABLES_WHAT, "last_autoanalyze")?,
            counters,
        });
    }
    let mut indexes = Vec::new();
    for row in client
        .query(INDEXES_SQL, &[&measure])
        .await
        .map_err(query_err(INDEXES_WHAT))?
    {
        let oid = col(&row, INDEXES_WHAT, "oid")?;
        indexes.push(IndexRow {
            key: (
                datname.to_string(),
                name(&row, INDEXES_WHAT, "schemaname")?,
                name(&row, INDEXES_WHAT, "relname")?,
                name(&row, INDEXES_WHAT, "indexrelname")?,
            ),
            oid,
            size: size(&row, INDEXES_WHAT, oid, &mut unknown_indexes)?,
            scans: col(&row, INDEXES_WHAT, "scans")?,
        });
    }
    if !unknown_tables.is_empty() || !unknown_indexes.is_empty() {
        let mut measured = HashMap::new();
        for row in client
            .query(SIZES_SQL, &[&unknown_tables, &unknown_indexes])
            .await
            .map_err(query_err(SIZES_WHAT))?
        {
            let size: Option<f64> = col(&row, SIZES_WHAT, "size")?;
            measured.insert(col::<u32>(&row, SIZES_WHAT, "oid")?, size.unwrap_or(0.0));
        }
        let tables = tables.iter_mut().map(|t| (t.oid, &mut t.size));
        for (oid, size) in tables.chain(indexes.iter_mut().map(|i| (i.oid, &mut i.size))) {
            if let Some(m) = measured.get(&oid) {
                *size = *m;
            }
        }
    }
    Ok((tables, indexes))
}

/// The databases to visit.
async fn databases(cx: &Context<'_>) -> Result<Vec<String>, CollectError> {
    match cx.databases {
        Databases::List(names) => Ok(names.clone()),
        Databases::Auto => {
            let rows = cx
                .client
                .query(DATABASES_SQL, &[])
                .await
                .map_err(query_err("pg_database"))?;
            rows.iter()
                .map(|r| col(r, "pg_database", "datname"))
                .collect()
        }
    }
}

#[async_trait]
impl Collector for Tables {
    fn name(&self) -> &'static str {
        "tables"
    }

    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let mut tables = Vec::new();
        let mut indexes = Vec::new();
        let measure = self.sizes.due();
        for datname in databases(cx).await? {
            let known = self.sizes.known.get(&datname);
            let (t, i) = if datname == cx.caps.database {
                read_database(cx.client, &datname, measure, known).await?
            } else {
                let mut params = cx.params.clone();
                params.dbname = Some(datname.clone());
                // Failing to open this one (no free slot, say) says nothing
                // about the target's session, which must not be dropped.
                let other = crate::target::session::open(&params, cx.limits)
                    .await
                    .map_err(|source| CollectError::Visit {
                        datname: datname.clone(),
                        source,
                    })?;
                read_database(&other.client, &datname, measure, known).await?
            };
            tables.extend(t);
            indexes.extend(i);
        }
        self.sizes.remember(measure, &tables, &indexes);
        Ok(self.publish(tables, indexes).into())
    }
}

impl Tables {
    fn publish(&mut self, tables: Vec<TableRow>, indexes: Vec<IndexRow>) -> Vec<Family> {
        self.tables
            .update(tables.iter().map(|t| (t.key.clone(), t.size)));
        self.indexes
            .update(indexes.iter().map(|i| (i.key.clone(), i.size)));
        let mut size = Family::new(&TABLE_SIZE);
        let mut dead = Family::new(&DEAD);
        let mut live = Family::new(&LIVE);
        let mut vacuumed = Family::new(&LAST_AUTOVACUUM);
        let mut analyzed = Family::new(&LAST_AUTOANALYZE);
        let mut counters: Vec<Family> =
            TABLE_COUNTERS.iter().map(|(_, d)| Family::new(d)).collect();
        let (mut other_size, mut other_dead, mut other_live) = (0.0, 0.0, 0.0);
        let count = tables.len();
        for t in tables {
            let member = self.tables.contains(&t.key);
            let labels = [t.key.0.as_str(), t.key.1.as_str(), t.key.2.as_str()];
            for ((column, _), (family, raw)) in TABLE_COUNTERS
                .iter()
                .zip(counters.iter_mut().zip(t.counters))
            {
                let growth = self.growth.observe((t.key.clone(), *column), raw);
                if member {
                    family.push(&labels, raw);
                } else {
                    *self.other.entry(column).or_default() += growth;
                }
            }
            if member {
                size.push(&labels, t.size);
                dead.push(&labels, t.dead);
                live.push(&labels, t.live);
                if let Some(ts) = t.last_autovacuum {
                    vacuumed.push(&labels, ts);
                }
                if let Some(ts) = t.last_autoanalyze {
                    analyzed.push(&labels, ts);
                }
            } else {
                other_size += t.size;
                other_dead += t.dead;
                other_live += t.live;
            }
        }
        let other = ["other", "other", "other"];
        if count > 0 {
            size.push(&other, other_size);
            dead.push(&other, other_dead);
            live.push(&other, other_live);
            for ((column, _), family) in TABLE_COUNTERS.iter().zip(counters.iter_mut()) {
                family.push(&other, self.other.get(column).copied().unwrap_or(0.0));
            }
        }
        let mut index_size = Family::new(&INDEX_SIZE);
        let mut index_scans = Family::new(&INDEX_SCANS);
        let mut other_index_size = 0.0;
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
                index_size.push(&labels, i.size);
                index_scans.push(&labels, i.scans);
            } else {
                other_index_size += i.size;
                *self.other.entry("index_scans").or_default() += growth;
            }
        }
        if has_indexes {
            let other = ["other", "other", "other", "other"];
            index_size.push(&other, other_index_size);
            index_scans.push(
                &other,
                self.other.get("index_scans").copied().unwrap_or(0.0),
            );
        }
        self.growth.sweep();
        let mut families = vec![
            size,
            dead,
            live,
            vacuumed,
            analyzed,
            index_size,
            index_scans,
        ];
        families.extend(counters);
        families.push(Family::single(&WATCHED, count as f64));
        families
    }
}

const DATABASES_SQL: &str = "SELECT datname::text AS datname FROM pg_catalog.pg_database
                              WHERE datallowconn AND NOT datistemplate
                                AND pg_catalog.has_database_privilege(datname, 'CONNECT')
                              ORDER BY 1";

/// A name column as bytes any database can send: converted to UTF-8, except
/// in a SQL_ASCII database, where names may hold any bytes and come as
/// stored (to be decoded lossily), since the server refuses to send text
/// that is not valid in the client's encoding, failing the whole query.
macro_rules! name_bytes {
    ($column:literal) => {
        concat!(
            "pg_catalog.convert_to(",
            $column,
            "::text, CASE WHEN pg_catalog.current_setting('server_encoding') = 'SQL_ASCII' THEN 'SQL_ASCII' ELSE 'UTF8' END)"
        )
    };
}

/// Reads a column of [`name_bytes`], replacing what is not UTF-8.
fn name(
    row: &tokio_postgres::Row,
    what: &'static str,
    column: &'static str,
) -> Result<String, CollectError> {
    let bytes: Vec<u8> = col(row, what, column)?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

const TABLES_SQL: &str = concat!("
SELECT s.relid AS oid, ", name_bytes!("s.schemaname"), " AS schemaname, ", name_bytes!("s.relname"), " AS relname,
       CASE WHEN $1 THEN pg_catalog.pg_table_size(s.relid)::float8 END AS size,
       s.n_dead_tup::float8 AS dead, s.n_live_tup::float8 AS live,
       extract(epoch FROM s.last_autovacuum)::float8 AS last_autovacuum,
       extract(epoch FROM s.last_autoanalyze)::float8 AS last_autoanalyze,
       s.seq_scan::float8 AS seq_scan, coalesce(s.seq_tup_read, 0)::float8 AS seq_tup_read,
       coalesce(s.idx_scan, 0)::float8 AS idx_scan,
       coalesce(io.heap_blks_hit, 0)::float8 AS heap_blks_hit, coalesce(io.heap_blks_read, 0)::float8 AS heap_blks_read,
       coalesce(io.idx_blks_hit, 0)::float8 AS idx_blks_hit, coalesce(io.idx_blks_read, 0)::float8 AS idx_blks_read
  FROM pg_catalog.pg_stat_user_tables s
  JOIN pg_catalog.pg_statio_user_tables io ON io.relid = s.relid");

const INDEXES_SQL: &str = concat!(
    "
SELECT indexrelid AS oid, ",
    name_bytes!("schemaname"),
    " AS schemaname, ",
    name_bytes!("relname"),
    " AS relname, ",
    name_bytes!("indexrelname"),
    " AS indexrelname,
       CASE WHEN $1 THEN pg_catalog.pg_relation_size(indexrelid)::float8 END AS size, idx_scan::float8 AS scans
  FROM pg_catalog.pg_stat_user_indexes"
);

/// Sizes of relations first seen between two measuring runs: tables ($1)
/// and indexes ($2). A relation dropped meanwhile has none.
const SIZES_SQL: &str = "
SELECT o AS oid, pg_catalog.pg_table_size(o)::float8 AS size FROM pg_catalog.unnest($1::oid[]) o
UNION ALL
SELECT o AS oid, pg_catalog.pg_relation_size(o)::float8 AS size FROM pg_catalog.unnest($2::oid[]) o";
const SIZES_WHAT: &str = "relation sizes";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[DATABASES_SQL, TABLES_SQL, INDEXES_SQL, SIZES_SQL];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_measured_on_the_first_run_and_every_fifth_successful_one() {
        let mut sizes = Sizes::default();
        let mut measured = Vec::new();
        for _ in 0..11 {
            let due = sizes.due();
            measured.push(due);
            sizes.remember(due, &[], &[]);
        }
        let expected = [
            true, false, false, false, false, true, false, false, false, false, true,
        ];
        assert_eq!(measured, expected);
        // A failed run (no remember) leaves the next one due again.
        let mut sizes = Sizes::default();
        for _ in 0..SIZE_RUNS {
            let due = sizes.due();
            sizes.remember(due, &[], &[]);
        }
        assert!(sizes.due());
        assert!(sizes.due(), "still due after a run that failed");
        sizes.remember(true, &[], &[]);
        assert!(!sizes.due());
    }
}
