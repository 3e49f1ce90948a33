//! The statistics of one database's tables and indexes: scans, tuples,
//! vacuum times, buffer hits and reads.
//!
//! These views (pg_stat_user_tables, pg_statio_user_tables,
//! pg_stat_user_indexes) read pg_class and the cumulative statistics and
//! never open a user relation, so no lock on a table can hold them up: they
//! keep flowing while a migration holds ACCESS EXCLUSIVE. Sizes, which do
//! open relations, are [`super::sizes`]' business.

use tokio_postgres::Client;

use super::super::{CollectError, Row, query};
use super::Key;

/// Table counters, in column order (names as in the views).
pub const TABLE_COUNTER_COLUMNS: [&str; 7] = [
    "seq_scan",
    "seq_tup_read",
    "idx_scan",
    "heap_blks_hit",
    "heap_blks_read",
    "idx_blks_hit",
    "idx_blks_read",
];

/// One table's statistics, and the size published for it.
pub struct TableRow {
    /// (datname, schemaname, relname, "").
    pub key: Key,
    /// pg_class oid.
    pub oid: u32,
    /// Bytes to publish, absent when not known (filled in by the caller).
    pub size: Option<f64>,
    /// Whether `size` was measured by the latest sizing pass.
    pub measured: bool,
    /// n_dead_tup.
    pub dead: f64,
    /// n_live_tup.
    pub live: f64,
    /// last_autovacuum as a Unix time.
    pub last_autovacuum: Option<f64>,
    /// last_autoanalyze as a Unix time.
    pub last_autoanalyze: Option<f64>,
    /// The server's cumulative counters, in [`TABLE_COUNTER_COLUMNS`] order.
    pub counters: [f64; 7],
}

/// One index's statistics, and the size published for it.
pub struct IndexRow {
    /// (datname, schemaname, relname, indexrelname).
    pub key: Key,
    /// pg_class oid of the index.
    pub oid: u32,
    /// Bytes to publish, absent when not known (filled in by the caller).
    pub size: Option<f64>,
    /// Whether `size` was measured by the latest sizing pass.
    pub measured: bool,
    /// idx_scan.
    pub scans: f64,
}

const TABLES_WHAT: &str = "pg_stat_user_tables";
const INDEXES_WHAT: &str = "pg_stat_user_indexes";

/// Reads one database's tables and indexes, sizes not included.
pub async fn read(
    client: &Client,
    datname: &str,
) -> Result<(Vec<TableRow>, Vec<IndexRow>), CollectError> {
    let mut tables = Vec::new();
    for row in query(client, TABLES_WHAT, TABLES_SQL, &[]).await? {
        let mut counters = [0.0; 7];
        for (slot, column) in counters.iter_mut().zip(TABLE_COUNTER_COLUMNS) {
            *slot = row.get(column)?;
        }
        tables.push(TableRow {
            key: (
                datname.to_string(),
                name(&row, "schemaname")?,
                name(&row, "relname")?,
                String::new(),
            ),
            oid: row.get("oid")?,
            size: None,
            measured: false,
            dead: row.get("dead")?,
            live: row.get("live")?,
            last_autovacuum: row.get("last_autovacuum")?,
            last_autoanalyze: row.get("last_autoanalyze")?,
            counters,
        });
    }
    let mut indexes = Vec::new();
    for row in query(client, INDEXES_WHAT, INDEXES_SQL, &[]).await? {
        indexes.push(IndexRow {
            key: (
                datname.to_string(),
                name(&row, "schemaname")?,
                name(&row, "relname")?,
                name(&row, "indexrelname")?,
            ),
            oid: row.get("oid")?,
            size: None,
            measured: false,
            scans: row.get("scans")?,
        });
    }
    Ok((tables, indexes))
}

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
pub(crate) use name_bytes;

/// Reads a column of [`name_bytes`], replacing what is not UTF-8.
pub(crate) fn name(row: &Row, column: &'static str) -> Result<String, CollectError> {
    let bytes: Vec<u8> = row.get(column)?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

const TABLES_SQL: &str = concat!("
SELECT s.relid AS oid, ", name_bytes!("s.schemaname"), " AS schemaname, ", name_bytes!("s.relname"), " AS relname,
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
    " AS indexrelname, idx_scan::float8 AS scans
  FROM pg_catalog.pg_stat_user_indexes"
);

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[TABLES_SQL, INDEXES_SQL];
