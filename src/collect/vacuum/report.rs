//! What holds vacuum back, how far each database is from wraparound and
//! which vacuums run now: the plain data behind `/api/v1/vacuum`, the
//! "vacuum" section of `pgvigil once` and of the `/` page.
//!
//! Plain data only: the `vacuum` collector fills it, the outputs render it.
//! Metrics say how old each kind of xmin horizon is; this says who holds
//! it, because a forgotten prepared transaction or an abandoned slot has to
//! be named to be dealt with.

use serde::Serialize;

/// Holders of each kind kept in the report, oldest first: the detail a
/// person needs, bounded however many sessions hold a snapshot.
pub const HOLDERS_PER_KIND: usize = 10;
/// Running vacuums kept in the report and published as series.
pub const RUNNING_VACUUMS: usize = 10;

/// The kinds of xmin horizon holders, in the order they are shown.
pub const HOLDER_KINDS: [&str; 4] = [
    "backend",
    "prepared_transaction",
    "replication_slot",
    "standby",
];

/// One thing that keeps the xmin horizon back.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Holder {
    /// One of [`HOLDER_KINDS`].
    pub holder: String,
    /// Transactions since the xid or xmin it holds (`age()`).
    pub age: f64,
    /// The process: a backend, a walsender, the slot's active process.
    pub pid: Option<i32>,
    /// Its database (a backend's, a prepared transaction's, a logical slot's).
    pub datname: Option<String>,
    /// Its role (a prepared transaction's owner).
    pub usename: Option<String>,
    /// Its application_name (a standby's is its cluster name).
    pub application_name: Option<String>,
    /// A backend's state, a walsender's replication state.
    pub state: Option<String>,
    /// When it started holding, as a Unix time: the transaction's start, a
    /// prepared transaction's PREPARE, a walsender's start; absent for a slot.
    pub since: Option<f64>,
    /// A prepared transaction's global identifier.
    pub gid: Option<String>,
    /// A replication slot's name.
    pub slot_name: Option<String>,
    /// A replication slot's type (physical, logical).
    pub slot_type: Option<String>,
    /// Whether a replication slot is in use now.
    pub active: Option<bool>,
}

/// One database's distance to wraparound.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DatabaseAge {
    /// The database.
    pub datname: String,
    /// `age(datfrozenxid)`.
    pub xid_age: f64,
    /// `mxid_age(datminmxid)`.
    pub mxid_age: f64,
    /// `xid_age / autovacuum_freeze_max_age`: past 1, anti-wraparound
    /// autovacuum runs on its tables.
    pub xid_share_of_freeze_max_age: f64,
    /// `mxid_age / autovacuum_multixact_freeze_max_age`.
    pub mxid_share_of_freeze_max_age: f64,
}

/// Wraparound against the settings that decide what the server does.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Wraparound {
    /// `autovacuum_freeze_max_age`.
    pub autovacuum_freeze_max_age: f64,
    /// `autovacuum_multixact_freeze_max_age`.
    pub autovacuum_multixact_freeze_max_age: f64,
    /// Every database, oldest XID first.
    pub databases: Vec<DatabaseAge>,
}

/// One running VACUUM (pg_stat_progress_vacuum).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunningVacuum {
    /// The vacuuming process.
    pub pid: i32,
    /// Its database.
    pub datname: String,
    /// The table, schema-qualified where it is in the database pgvigil
    /// connects to, else its OID (names of other databases are not
    /// readable from this one).
    pub relname: String,
    /// The phase, as PostgreSQL names it.
    pub phase: String,
    /// `autovacuum`, `wraparound` (an anti-wraparound autovacuum) or `manual`.
    pub kind: String,
    /// Heap blocks scanned so far.
    pub heap_blks_scanned: f64,
    /// Heap blocks of the table.
    pub heap_blks_total: f64,
    /// When its transaction started, as a Unix time.
    pub since: Option<f64>,
}

/// Everything the vacuum collector found in one run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VacuumReport {
    /// The oldest holders of each kind, oldest first overall.
    pub holders: Vec<Holder>,
    /// The kind whose horizon is oldest: what stops vacuum now; absent
    /// when nothing holds one.
    pub held_back_by: Option<String>,
    /// Distance to wraparound per database.
    pub wraparound: Wraparound,
    /// Autovacuum workers running now.
    pub autovacuum_workers: f64,
    /// `autovacuum_max_workers`.
    pub autovacuum_max_workers: f64,
    /// Running vacuums, largest table first.
    pub running: Vec<RunningVacuum>,
}

pub mod tables;
