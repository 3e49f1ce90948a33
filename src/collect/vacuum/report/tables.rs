//! The tables part of `/api/v1/vacuum`: per database the tables closest to
//! an anti-wraparound vacuum, and the vacuum and analyze history of the
//! tables the `vacuum_tables` collector publishes.
//!
//! Plain data only: the `vacuum_tables` collector fills it, the outputs
//! render it.

use serde::Serialize;

/// Oldest tables kept per database in the report (the metrics keep fewer,
/// across all databases).
pub const OLDEST_PER_DATABASE: usize = 5;

/// One table's distance to its anti-wraparound vacuum.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OldTable {
    /// Its schema.
    pub schemaname: String,
    /// The table.
    pub relname: String,
    /// `age(relfrozenxid)`, the older of the table's and its TOAST table's.
    pub xid_age: f64,
    /// `xid_age / autovacuum_freeze_max_age`: at 1 an anti-wraparound
    /// autovacuum is due (earlier when the table's own
    /// autovacuum_freeze_max_age storage parameter is lower).
    pub xid_share_of_freeze_max_age: f64,
    /// `mxid_age(relminmxid)`, the older of the table's and its TOAST table's.
    pub mxid_age: f64,
    /// `mxid_age / autovacuum_multixact_freeze_max_age`.
    pub mxid_share_of_freeze_max_age: f64,
}

/// One database's oldest tables.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OldestTables {
    /// The database.
    pub datname: String,
    /// Its [`OLDEST_PER_DATABASE`] tables with the oldest relfrozenxid,
    /// oldest first.
    pub tables: Vec<OldTable>,
}

/// One published table's vacuum and analyze history (pg_stat_all_tables).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableVacuum {
    /// The database.
    pub datname: String,
    /// Its schema.
    pub schemaname: String,
    /// The table.
    pub relname: String,
    /// n_dead_tup: what ranks the tables published.
    pub dead_tuples: f64,
    /// n_mod_since_analyze.
    pub n_mod_since_analyze: f64,
    /// vacuum_count (manual VACUUMs).
    pub vacuum_count: f64,
    /// autovacuum_count.
    pub autovacuum_count: f64,
    /// analyze_count (manual ANALYZEs).
    pub analyze_count: f64,
    /// autoanalyze_count.
    pub autoanalyze_count: f64,
    /// last_vacuum as a Unix time.
    pub last_vacuum: Option<f64>,
    /// last_autovacuum as a Unix time.
    pub last_autovacuum: Option<f64>,
    /// last_analyze as a Unix time.
    pub last_analyze: Option<f64>,
    /// last_autoanalyze as a Unix time.
    pub last_autoanalyze: Option<f64>,
}

/// Everything the `vacuum_tables` collector found in one run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VacuumTablesReport {
    /// `autovacuum_freeze_max_age`.
    pub autovacuum_freeze_max_age: f64,
    /// `autovacuum_multixact_freeze_max_age`.
    pub autovacuum_multixact_freeze_max_age: f64,
    /// Per visited database, its oldest tables; oldest database first.
    pub oldest: Vec<OldestTables>,
    /// The tables published individually, most dead tuples first.
    pub tables: Vec<TableVacuum>,
}
