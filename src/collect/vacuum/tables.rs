//! The `vacuum_tables` collector: per table, how close it is to an
//! anti-wraparound vacuum (`age(relfrozenxid)`, `mxid_age(relminmxid)`)
//! and how often VACUUM and ANALYZE visited it, in every watched database.
//!
//! Databases are visited as the `tables` collector visits them (the same
//! list, one short-lived connection at a time). One query per database
//! reads pg_class and the table statistics (the `pg_stat_get_*` functions
//! behind pg_stat_all_tables): no user relation is opened, so
//! no lock on a table can hold it up and none is waited for.
//!
//! Series are few on purpose (docs/performance.md, series budget): the
//! [`OLDEST`] tables of the target by XID age and by multixact age
//! (membership follows the ages each run: a table leaves when it is
//! vacuumed, which is when it should), `"other"` holding the oldest age
//! of the rest; and the [`TOP`] tables by dead tuples for the vacuum and
//! analyze history, with the tables collector's hysteresis so a counter
//! does not vanish the run after the vacuum it counts. Dead tuples rank
//! them because they are what autovacuum is behind on, the same ranking
//! as `pg_table_dead_tuples` and PostgresTableNotAutovacuumed. System
//! catalogs and other sessions' temporary tables count: they hold
//! datfrozenxid back like any table (a table's TOAST table is counted
//! with it). At worst `2 × (OLDEST + 1) + 5 × (2 × TOP + 1) + 2 × 2 × TOP`
//! series (139), 83 while the leaders stay the same.
//!
//! Privilege: none beyond CONNECT on each database: pg_class and the
//! `pg_stat_get_*` functions are open to every role.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_postgres::Client;

use super::report::tables::{
    OLDEST_PER_DATABASE, OldTable, OldestTables, TableVacuum, VacuumTablesReport,
};
use crate::collect::tables::stats::{name, name_bytes};
use crate::collect::{CollectError, Collected, Collector, Context, Detail, query, query_one};
use crate::desc;
use crate::metric::{Desc, Family};
use crate::stats::cardinality::{OTHER, TopN};
use crate::stats::counter::Growth;

static FROZEN_XID_AGE: Desc = desc!(Gauge "pg_table_frozen_xid_age", ["datname", "schemaname", "relname"],
    "Transactions since the table's oldest unfrozen XID (age(relfrozenxid), its TOAST table's if older), for the 10 oldest tables of the target: past autovacuum_freeze_max_age (pg_settings_autovacuum_freeze_max_age) an anti-wraparound autovacuum runs on it. relname=\"other\": the oldest of the other tables.",
    only_when = "the watched databases have tables");
static MIN_MXID_AGE: Desc = desc!(Gauge "pg_table_min_mxid_age", ["datname", "schemaname", "relname"],
    "Multixacts since the table's oldest multixact (mxid_age(relminmxid), its TOAST table's if older), for the 10 oldest tables of the target by it: past autovacuum_multixact_freeze_max_age an anti-wraparound autovacuum runs on it. relname=\"other\": the oldest of the other tables.",
    only_when = "the watched databases have tables");
static MOD_SINCE_ANALYZE: Desc = desc!(Gauge "pg_table_n_mod_since_analyze", ["datname", "schemaname", "relname"],
    "Rows inserted, updated or deleted since the table was last analyzed, for the 8 tables of the target with most dead tuples (relname=\"other\": the sum of the rest).",
    only_when = "the watched databases have tables");
static VACUUMS: Desc = desc!(Counter "pg_table_vacuums", ["datname", "schemaname", "relname"],
    "Manual VACUUMs of the table (vacuum_count), for the 8 tables of the target with most dead tuples; relname=\"other\" sums the rest from when the agent started.",
    only_when = "the watched databases have tables");
static AUTOVACUUMS: Desc = desc!(Counter "pg_table_autovacuums", ["datname", "schemaname", "relname"],
    "Autovacuums of the table (autovacuum_count), for the 8 tables of the target with most dead tuples; relname=\"other\" sums the rest from when the agent started.",
    only_when = "the watched databases have tables");
static ANALYZES: Desc = desc!(Counter "pg_table_analyzes", ["datname", "schemaname", "relname"],
    "Manual ANALYZEs of the table (analyze_count), for the 8 tables of the target with most dead tuples; relname=\"other\" sums the rest from when the agent started.",
    only_when = "the watched databases have tables");
static AUTOANALYZES: Desc = desc!(Counter "pg_table_autoanalyzes", ["datname", "schemaname", "relname"],
    "Autovacuum's ANALYZEs of the table (autoanalyze_count), for the 8 tables of the target with most dead tuples; relname=\"other\" sums the rest from when the agent started.",
    only_when = "the watched databases have tables");
static LAST_VACUUM: Desc = desc!(Gauge "pg_table_last_vacuum_timestamp", unit = Seconds, ["datname", "schemaname", "relname"],
    "When the table was last vacuumed manually, as a Unix time, for the 8 tables of the target with most dead tuples.",
    only_when = "the table was vacuumed manually");
static LAST_ANALYZE: Desc = desc!(Gauge "pg_table_last_analyze_timestamp", unit = Seconds, ["datname", "schemaname", "relname"],
    "When the table was last analyzed manually, as a Unix time, for the 8 tables of the target with most dead tuples.",
    only_when = "the table was analyzed manually");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &FROZEN_XID_AGE,
    &MIN_MXID_AGE,
    &MOD_SINCE_ANALYZE,
    &VACUUMS,
    &AUTOVACUUMS,
    &ANALYZES,
    &AUTOANALYZES,
    &LAST_VACUUM,
    &LAST_ANALYZE,
];

/// Counter families, in [`COUNTER_COLUMNS`] order.
const COUNTERS: [&Desc; 4] = [&VACUUMS, &AUTOVACUUMS, &ANALYZES, &AUTOANALYZES];
const COUNTER_COLUMNS: [&str; 4] = [
    "vacuum_count",
    "autovacuum_count",
    "analyze_count",
    "autoanalyze_count",
];

/// Tables of the target published by XID age, and by multixact age.
pub const OLDEST: usize = 10;
/// Tables of the target published with their vacuum history (with
/// hysteresis, at most twice as many).
pub const TOP: usize = 8;
/// Runs a table stays published after leaving the top by dead tuples.
const KEEP: u64 = 3;

/// (datname, schemaname, relname).
type Key = (String, String, String);

/// One table as read.
struct Row {
    key: Key,
    xid_age: f64,
    mxid_age: f64,
    history: TableVacuum,
}

/// The `vacuum_tables` collector.
pub struct VacuumTables {
    top: TopN<Key>,
    growth: Growth<(Key, &'static str)>,
    other: HashMap<&'static str, f64>,
}

impl Default for VacuumTables {
    fn default() -> Self {
        VacuumTables {
            top: TopN::new(TOP, KEEP),
            growth: Growth::default(),
            other: HashMap::new(),
        }
    }
}

const SETTINGS: &str = "freeze settings";
const SETTINGS_SQL: &str = "SELECT current_setting('autovacuum_freeze_max_age')::float8 AS freeze_max_age,
                        current_setting('autovacuum_multixact_freeze_max_age')::float8 AS multixact_freeze_max_age";

const TABLES: &str = "pg_class and table statistics";
/// Tables and materialized views (TOAST tables are counted with theirs;
/// partitioned tables have no storage and no relfrozenxid). `greatest()`
/// skips a NULL (no TOAST table). The statistics come from the functions
/// behind pg_stat_all_tables, called directly: the view also counts each
/// table's index scans through pg_index and a GROUP BY, which made the
/// query 2.5 times as slow (55 ms instead of 22 ms for 5,000 tables).
const TABLES_SQL: &str = concat!("
SELECT ", name_bytes!("n.nspname"), " AS schemaname, ", name_bytes!("c.relname"), " AS relname,
       greatest(pg_catalog.age(c.relfrozenxid), pg_catalog.age(t.relfrozenxid))::float8 AS xid_age,
       greatest(pg_catalog.mxid_age(c.relminmxid), pg_catalog.mxid_age(t.relminmxid))::float8 AS mxid_age,
       pg_catalog.pg_stat_get_dead_tuples(c.oid)::float8 AS dead,
       pg_catalog.pg_stat_get_mod_since_analyze(c.oid)::float8 AS mod_since_analyze,
       pg_catalog.pg_stat_get_vacuum_count(c.oid)::float8 AS vacuum_count,
       pg_catalog.pg_stat_get_autovacuum_count(c.oid)::float8 AS autovacuum_count,
       pg_catalog.pg_stat_get_analyze_count(c.oid)::float8 AS analyze_count,
       pg_catalog.pg_stat_get_autoanalyze_count(c.oid)::float8 AS autoanalyze_count,
       extract(epoch FROM pg_catalog.pg_stat_get_last_vacuum_time(c.oid))::float8 AS last_vacuum,
       extract(epoch FROM pg_catalog.pg_stat_get_last_autovacuum_time(c.oid))::float8 AS last_autovacuum,
       extract(epoch FROM pg_catalog.pg_stat_get_last_analyze_time(c.oid))::float8 AS last_analyze,
       extract(epoch FROM pg_catalog.pg_stat_get_last_autoanalyze_time(c.oid))::float8 AS last_autoanalyze
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_class t ON t.oid = c.reltoastrelid
 WHERE c.relkind IN ('r', 'm')");

/// Reads one database's tables.
async fn read(client: &Client, datname: &str) -> Result<Vec<Row>, CollectError> {
    let mut out = Vec::new();
    for row in query(client, TABLES, TABLES_SQL, &[]).await? {
        let (schemaname, relname) = (name(&row, "schemaname")?, name(&row, "relname")?);
        out.push(Row {
            key: (datname.to_string(), schemaname.clone(), relname.clone()),
            xid_age: row.get("xid_age")?,
            mxid_age: row.get("mxid_age")?,
            history: TableVacuum {
                datname: datname.to_string(),
                schemaname,
                relname,
                dead_tuples: row.get("dead")?,
                n_mod_since_analyze: row.get("mod_since_analyze")?,
                vacuum_count: row.get("vacuum_count")?,
                autovacuum_count: row.get("autovacuum_count")?,
                analyze_count: row.get("analyze_count")?,
                autoanalyze_count: row.get("autoanalyze_count")?,
                last_vacuum: row.get("last_vacuum")?,
                last_autovacuum: row.get("last_autovacuum")?,
                last_analyze: row.get("last_analyze")?,
                last_autoanalyze: row.get("last_autoanalyze")?,
            },
        });
    }
    Ok(out)
}

#[async_trait]
impl Collector for VacuumTables {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let s = query_one(cx.client, SETTINGS, SETTINGS_SQL, &[]).await?;
        let freeze: f64 = s.get("freeze_max_age")?;
        let mxid_freeze: f64 = s.get("multixact_freeze_max_age")?;
        let mut rows = Vec::new();
        let mut oldest = Vec::new();
        for datname in crate::collect::tables::databases(cx).await? {
            let mut mine = if datname == cx.caps.database {
                read(cx.client, &datname).await?
            } else {
                let other = cx.visit(&datname).await?;
                read(&other.client, &datname).await?
            };
            by_age(&mut mine, |r| r.xid_age);
            oldest.push(OldestTables {
                datname,
                tables: mine
                    .iter()
                    .take(OLDEST_PER_DATABASE)
                    .map(|r| OldTable {
                        schemaname: r.key.1.clone(),
                        relname: r.key.2.clone(),
                        xid_age: r.xid_age,
                        xid_share_of_freeze_max_age: r.xid_age / freeze,
                        mxid_age: r.mxid_age,
                        mxid_share_of_freeze_max_age: r.mxid_age / mxid_freeze,
                    })
                    .collect(),
            });
            rows.extend(mine);
        }
        oldest.sort_by(|a, b| {
            let age = |o: &OldestTables| o.tables.first().map_or(0.0, |t| t.xid_age);
            age(b).total_cmp(&age(a))
        });
        let mut families = vec![
            oldest_family(&FROZEN_XID_AGE, &mut rows, |r| r.xid_age),
            oldest_family(&MIN_MXID_AGE, &mut rows, |r| r.mxid_age),
        ];
        let (history, tables) = self.history(rows);
        families.extend(history);
        let report = VacuumTablesReport {
            autovacuum_freeze_max_age: freeze,
            autovacuum_multixact_freeze_max_age: mxid_freeze,
            oldest,
            tables,
        };
        Ok(Collected {
            families,
            detail: Some(Detail::VacuumTables(Arc::new(report))),
        })
    }
}

/// Oldest first; ties by name, so that the choice is stable.
fn by_age(rows: &mut [Row], age: impl Fn(&Row) -> f64) {
    rows.sort_by(|a, b| age(b).total_cmp(&age(a)).then_with(|| a.key.cmp(&b.key)));
}

/// The [`OLDEST`] rows by `age`, and `"other"` at the oldest of the rest.
fn oldest_family(desc: &'static Desc, rows: &mut [Row], age: impl Fn(&Row) -> f64) -> Family {
    by_age(rows, &age);
    let mut family = Family::new(desc);
    for r in rows.iter().take(OLDEST) {
        family.push(&[&r.key.0, &r.key.1, &r.key.2], age(r));
    }
    // Absent when nothing is folded.
    if let Some(r) = rows.get(OLDEST) {
        family.push(&[OTHER; 3], age(r));
    }
    family
}

impl VacuumTables {
    /// The vacuum history families of the [`TOP`] tables by dead tuples,
    /// the rest folded into `"other"`, and those tables for the report.
    fn history(&mut self, rows: Vec<Row>) -> (Vec<Family>, Vec<TableVacuum>) {
        self.top
            .update(rows.iter().map(|r| (r.key.clone(), r.history.dead_tuples)));
        let mut modified = Family::new(&MOD_SINCE_ANALYZE);
        let mut counters: Vec<Family> = COUNTERS.iter().map(|d| Family::new(d)).collect();
        let mut vacuumed = Family::new(&LAST_VACUUM);
        let mut analyzed = Family::new(&LAST_ANALYZE);
        let mut other_modified = 0.0;
        let mut published = Vec::new();
        let any = !rows.is_empty();
        for r in rows {
            let member = self.top.contains(&r.key);
            let h = &r.history;
            let labels = [r.key.0.as_str(), r.key.1.as_str(), r.key.2.as_str()];
            let raw = [
                h.vacuum_count,
                h.autovacuum_count,
                h.analyze_count,
                h.autoanalyze_count,
            ];
            for ((column, family), raw) in COUNTER_COLUMNS.iter().zip(&mut counters).zip(raw) {
                let growth = self.growth.observe((r.key.clone(), *column), raw);
                if member {
                    family.push(&labels, raw);
                } else {
                    *self.other.entry(column).or_default() += growth;
                }
            }
            if member {
                modified.push(&labels, h.n_mod_since_analyze);
                if let Some(ts) = h.last_vacuum {
                    vacuumed.push(&labels, ts);
                }
                if let Some(ts) = h.last_analyze {
                    analyzed.push(&labels, ts);
                }
                published.push(r.history);
            } else {
                other_modified += h.n_mod_since_analyze;
            }
        }
        self.growth.sweep();
        if any {
            modified.push(&[OTHER; 3], other_modified);
            for (column, family) in COUNTER_COLUMNS.iter().zip(&mut counters) {
                family.push(&[OTHER; 3], self.other.get(column).copied().unwrap_or(0.0));
            }
        }
        published.sort_by(|a, b| b.dead_tuples.total_cmp(&a.dead_tuples));
        let mut families = vec![modified];
        families.extend(counters);
        families.push(vacuumed);
        families.push(analyzed);
        (families, published)
    }
}

/// The SQL this collector sends, for recognising it in pg_stat_statements
/// (the database list is the tables collector's).
pub const OWN_SQL: &[&str] = &[SETTINGS_SQL, TABLES_SQL];

#[cfg(test)]
mod tests {
    use super::*;

    fn row(db: &str, rel: &str, xid_age: f64, dead: f64, vacuums: f64) -> Row {
        Row {
            key: (db.into(), "public".into(), rel.into()),
            xid_age,
            mxid_age: 0.0,
            history: TableVacuum {
                datname: db.into(),
                schemaname: "public".into(),
                relname: rel.into(),
                dead_tuples: dead,
                n_mod_since_analyze: dead,
                vacuum_count: vacuums,
                autovacuum_count: 0.0,
                analyze_count: 0.0,
                autoanalyze_count: 0.0,
                last_vacuum: None,
                last_autovacuum: None,
                last_analyze: None,
                last_autoanalyze: None,
            },
        }
    }

    #[test]
    fn the_oldest_are_published_and_other_is_the_oldest_of_the_rest() {
        let mut rows: Vec<Row> = (0..25)
            .map(|i| row("db", &format!("t{i:02}"), 1000.0 + i as f64, 0.0, 0.0))
            .collect();
        let family = oldest_family(&FROZEN_XID_AGE, &mut rows, |r| r.xid_age);
        assert_eq!(family.series.len(), OLDEST + 1);
        assert_eq!(family.value(&["db", "public", "t24"]), Some(1024.0));
        assert_eq!(family.value(&["db", "public", "t15"]), Some(1015.0));
        assert_eq!(family.value(&["db", "public", "t14"]), None);
        assert_eq!(family.value(&[OTHER; 3]), Some(1014.0));
        // Nothing folded: no "other".
        let mut few: Vec<Row> = (0..3)
            .map(|i| row("db", &format!("t{i}"), 5.0, 0.0, 0.0))
            .collect();
        let family = oldest_family(&FROZEN_XID_AGE, &mut few, |r| r.xid_age);
        assert_eq!(family.series.len(), 3);
        assert_eq!(family.value(&[OTHER; 3]), None);
    }

    fn counter(families: &[Family], desc: &'static Desc, rel: &str) -> Option<f64> {
        let f = families.iter().find(|f| f.is(desc)).unwrap();
        if rel == OTHER {
            f.value(&[OTHER; 3])
        } else {
            f.value(&["db", "public", rel])
        }
    }

    #[test]
    fn history_keeps_the_top_by_dead_tuples_with_hysteresis_and_sums_the_rest() {
        let mut c = VacuumTables::default();
        // 20 tables; t00..t07 have the most dead tuples.
        let rows = |vacuums: f64, leaders: &[usize]| -> Vec<Row> {
            (0..20)
                .map(|i| {
                    let dead = if leaders.contains(&i) { 1000.0 } else { 1.0 };
                    row("db", &format!("t{i:02}"), 1.0, dead, vacuums)
                })
                .collect()
        };
        let first: Vec<usize> = (0..TOP).collect();
        let (families, published) = c.history(rows(1.0, &first));
        assert_eq!(published.len(), TOP);
        assert_eq!(counter(&families, &VACUUMS, "t00"), Some(1.0));
        assert_eq!(counter(&families, &VACUUMS, "t10"), None);
        // "other" starts at 0 and grows by what its members grow.
        assert_eq!(counter(&families, &VACUUMS, OTHER), Some(0.0));
        // Every table vacuumed once more; new leaders: the old ones stay
        // (hysteresis), so at most twice the top is published.
        let second: Vec<usize> = (TOP..2 * TOP).collect();
        let (families, published) = c.history(rows(2.0, &second));
        assert_eq!(published.len(), 2 * TOP);
        assert_eq!(counter(&families, &VACUUMS, "t00"), Some(2.0));
        assert_eq!(counter(&families, &VACUUMS, "t08"), Some(2.0));
        // The 4 tables in neither top grew by 1 each.
        assert_eq!(counter(&families, &VACUUMS, OTHER), Some(4.0));
        assert_eq!(
            counter(&families, &MOD_SINCE_ANALYZE, OTHER),
            Some(4.0),
            "the sum of the rest's n_mod_since_analyze"
        );
    }
}
