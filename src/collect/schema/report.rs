//! What the schema collector found, as plain data: the `Detail` it leaves in
//! the store for `/api/v1/schema`, the `/` page and `pgvigil once`.
//!
//! Data only (no I/O, no knowledge of the store or of HTTP), so the store
//! and every output may hold it.

use serde::Serialize;

/// One run of the schema collector over every watched database.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SchemaReport {
    /// When the run ended, as a Unix time.
    pub collected_at: f64,
    /// The size from which an index without scans is listed as unused
    /// (`[collectors] schema.unused_index_min_bytes`).
    pub unused_index_min_bytes: u64,
    /// Per database, in name order.
    pub databases: Vec<DatabaseSchema>,
}

/// What one database holds of each risk.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DatabaseSchema {
    /// The database.
    pub datname: String,
    /// When its statistics were last reset (the start of "no scans since"),
    /// as a Unix time; absent when never reset.
    pub stats_reset: Option<f64>,
    /// The sequences nearest their limit, most used first (at most
    /// [`super::TOP`]).
    pub sequences: Vec<Sequence>,
    /// Sequences whose position the role may not read (no SELECT or USAGE
    /// on them), so their use is unknown.
    pub sequences_unreadable: u64,
    /// Indexes left invalid (a failed `CREATE INDEX CONCURRENTLY` or
    /// `REINDEX CONCURRENTLY`), not counting builds in progress.
    pub invalid_indexes: Vec<Index>,
    /// Valid, non-unique indexes with no scan since the statistics reset,
    /// at least `unused_index_min_bytes` large, largest first.
    pub unused_indexes: Vec<Index>,
    /// Indexes that repeat another index of the same table (same method,
    /// key columns, operator classes, collations, expressions and
    /// predicate), largest first; the one kept is named.
    pub duplicate_indexes: Vec<Index>,
}

/// A sequence and how much of its range is used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sequence {
    /// Its schema.
    pub schemaname: String,
    /// Its name.
    pub sequence: String,
    /// `last_value`.
    pub last_value: i64,
    /// The value it cannot pass: the smaller of the sequence's own maximum
    /// and the owning column's type maximum (the larger of the minimums for
    /// a descending sequence).
    pub limit: i64,
    /// What sets the limit: `"sequence"` or `"column"`.
    pub limited_by: &'static str,
    /// The column it feeds (`table.column`) and that column's type, when
    /// it is owned by one (serial, identity, `OWNED BY`).
    pub column: Option<String>,
    /// The column's type.
    pub column_type: Option<String>,
    /// Share of the range used, 0..1.
    pub used_ratio: f64,
}

/// One index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Index {
    /// Its table's schema.
    pub schemaname: String,
    /// Its table.
    pub relname: String,
    /// The index.
    pub indexrelname: String,
    /// Its size in bytes.
    pub bytes: f64,
    /// Whether `bytes` is `pg_class.relpages` times the block size (the
    /// index was locked ACCESS EXCLUSIVE, so it was not measured).
    pub size_estimated: bool,
    /// For a duplicate: the index of the same table it repeats (kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}
