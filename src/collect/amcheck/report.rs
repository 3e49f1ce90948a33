//! What the amcheck collector knows, as plain data: the `Detail` it leaves
//! in the store for `/api/v1/consistency`, the `/` page and `pgvigil once`,
//! and (the same types) what its state file keeps across restarts.
//!
//! Data only (no I/O, no knowledge of the store or of HTTP), so the store
//! and every output may hold it.

use serde::{Deserialize, Serialize};

/// The amcheck collector's progress and findings for one target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConsistencyReport {
    /// When the run ended, as a Unix time.
    pub collected_at: f64,
    /// `[collectors] amcheck.pages_per_hour`.
    pub pages_per_hour: u64,
    /// `[collectors] amcheck.full_pass`, in seconds.
    pub full_pass_seconds: f64,
    /// Whether tables are checked too (`verify_heapam`, PostgreSQL 14+);
    /// B-tree indexes are checked on every version.
    pub heap_checks: bool,
    /// When the pass under way started, as a Unix time.
    pub pass_started: f64,
    /// When the last complete pass ended, as a Unix time.
    pub last_pass_completed: Option<f64>,
    /// How long the last complete pass took.
    pub last_pass_seconds: Option<f64>,
    /// Where the pass stands: the next relation to check.
    pub position: Option<Position>,
    /// The pages per hour the pass runs at now: the configured budget, or
    /// more when the pass would otherwise not finish within `full_pass`.
    pub effective_pages_per_hour: f64,
    /// Why checks are paused (the server is under pressure), if they are.
    pub paused: Option<String>,
    /// Relations and pages checked since the state file was first written.
    pub totals: Totals,
    /// Each watched database: whether it has the extension, its findings.
    pub databases: Vec<DatabaseConsistency>,
    /// Corrupt relations, oldest finding first.
    pub findings: Vec<Finding>,
    /// The latest relations not checked (locked, too slow, an error),
    /// newest last.
    pub skipped: Vec<Skipped>,
    /// Why nothing is checked, when nothing is (no database has the
    /// extension).
    pub note: Option<String>,
}

/// The next relation a pass checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Its database.
    pub datname: String,
    /// The lowest relation OID not yet checked in this pass.
    pub oid: u32,
    /// For a table checked in parts, the next block.
    pub block: i64,
}

/// Work done, per kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// B-tree indexes checked.
    pub btree_relations: u64,
    /// Their pages.
    pub btree_pages: u64,
    /// Tables (heaps) checked to their end.
    pub heap_relations: u64,
    /// Table pages checked.
    pub heap_pages: u64,
    /// Relations skipped because an ACCESS EXCLUSIVE lock was held or
    /// awaited, or the lock timeout ran out.
    pub skipped_locked: u64,
    /// Relations whose check did not finish within the collector timeout.
    pub skipped_timeout: u64,
    /// Relations whose check failed for another reason (not corruption).
    pub skipped_error: u64,
}

/// One watched database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseConsistency {
    /// The database.
    pub datname: String,
    /// The amcheck extension's version there; absent where it is not
    /// installed (nothing is checked there).
    pub extension: Option<String>,
    /// Relations with a finding.
    pub corrupt_relations: usize,
}

/// A relation amcheck found corrupt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Its database.
    pub datname: String,
    /// Its OID (a REINDEX keeps it; the finding goes once the relation
    /// checks clean, or is dropped).
    pub oid: u32,
    /// Its schema.
    pub schemaname: String,
    /// The relation: the index for `btree`, the table for `heap`.
    pub relname: String,
    /// `btree` or `heap`.
    pub kind: String,
    /// For an index, its table.
    pub table: Option<String>,
    /// The first corrupt block, when the message names one.
    pub block: Option<i64>,
    /// amcheck's message (and detail), as reported.
    pub message: String,
    /// Problems reported (verify_heapam reports each; an index check
    /// stops at the first).
    pub problems: u64,
    /// When first found, as a Unix time.
    pub found_at: f64,
}

/// A relation a pass did not check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Its database.
    pub datname: String,
    /// Its schema.
    pub schemaname: String,
    /// Its name.
    pub relname: String,
    /// `locked`, `timeout` or `error`.
    pub reason: String,
    /// The error, when there was one.
    pub message: Option<String>,
    /// When, as a Unix time.
    pub at: f64,
}
