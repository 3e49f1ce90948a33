//! Reading pg_stat_statements: which columns the installed extension
//! version has, and the rows as plain numbers.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use tokio_postgres::Client;

use crate::collect::{CollectError, Row, query};
use crate::sql::{OwnStatements, quote_ident};

/// The installed extension: version and schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// (major, minor), e.g. (1, 10).
    pub version: (u32, u32),
    /// Schema the extension's objects live in.
    pub schema: String,
}

impl Extension {
    /// Entries are split by `toplevel` (1.9+, PostgreSQL 14).
    pub fn has_toplevel(&self) -> bool {
        self.version >= (1, 9)
    }

    /// `pg_stat_statements_info` exists (1.9+).
    pub fn has_info(&self) -> bool {
        self.version >= (1, 9)
    }

    /// `stats_since` and `minmax_stats_since` exist (1.11+, PostgreSQL 17).
    pub fn has_stats_since(&self) -> bool {
        self.version >= (1, 11)
    }

    fn function(&self, showtext: bool) -> String {
        format!(
            "{}.pg_stat_statements({showtext})",
            quote_ident(&self.schema)
        )
    }
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

const FIND: &str = "SELECT e.extversion, n.nspname::text AS schema
                      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                     WHERE e.extname = 'pg_stat_statements'";

/// Finds the extension in the connected database, or says what to do.
pub async fn find(client: &Client, database: &str) -> Result<Extension, CollectError> {
    let rows = query(client, "pg_extension", FIND, &[]).await?;
    let Some(row) = rows.first() else {
        return Err(CollectError::Unavailable(format!(
            "pg_stat_statements is not installed in database \"{database}\": run CREATE EXTENSION pg_stat_statements there \
             (the library must also be in shared_preload_libraries)"
        )));
    };
    let version: String = row.get("extversion")?;
    let schema: String = row.get("schema")?;
    let parsed = parse_version(&version)
        .filter(|v| *v >= (1, 8))
        .ok_or_else(|| CollectError::Unavailable(format!("pg_stat_statements {version} is too old: pgvigil needs 1.8 (PostgreSQL 13) or newer")))?;
    Ok(Extension {
        version: parsed,
        schema,
    })
}

/// Identity of one pg_stat_statements entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryKey {
    /// Database OID.
    pub dbid: u32,
    /// Role OID.
    pub userid: u32,
    /// The query id.
    pub queryid: i64,
    /// Executed at top level (always true before 1.9).
    pub toplevel: bool,
}

/// One entry's cumulative numbers. Times in milliseconds, as PostgreSQL
/// reports them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    /// Calls.
    pub calls: f64,
    /// Total execution time.
    pub exec_ms: f64,
    /// Total planning time (0 unless track_planning).
    pub plan_ms: f64,
    /// Rows returned or affected.
    pub rows: f64,
    /// Shared blocks found in the buffer cache.
    pub shared_blks_hit: f64,
    /// Shared blocks read.
    pub shared_blks_read: f64,
    /// Temporary blocks written.
    pub temp_blks_written: f64,
    /// WAL bytes generated.
    pub wal_bytes: f64,
    /// Fastest execution since the entry's (min/max) reset.
    pub min_ms: f64,
    /// Slowest execution since the entry's (min/max) reset.
    pub max_ms: f64,
    /// Population standard deviation of execution times.
    pub stddev_ms: f64,
    /// When the entry started counting (Unix seconds; 1.11+).
    pub stats_since: Option<f64>,
}

/// Server-wide figures from the extension.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Info {
    /// `pg_stat_statements.max`.
    pub max: f64,
    /// Entries evicted since the last full reset (1.9+).
    pub dealloc: Option<f64>,
    /// Time of the last full reset (1.9+), Unix seconds.
    pub stats_reset: Option<f64>,
}

const ENTRIES: &str = "pg_stat_statements";

/// Reads every entry, without query texts.
pub async fn entries(
    client: &Client,
    own: &OwnStatements,
    ext: &Extension,
) -> Result<Vec<(EntryKey, Reading)>, CollectError> {
    let toplevel = if ext.has_toplevel() {
        "toplevel"
    } else {
        "true"
    };
    let since = if ext.has_stats_since() {
        "extract(epoch FROM stats_since)::float8"
    } else {
        "NULL::float8"
    };
    let sql = format!(
        "SELECT userid, dbid, queryid, {toplevel} AS toplevel,
                calls::float8 AS calls, total_exec_time AS exec_ms, total_plan_time AS plan_ms, rows::float8 AS rows,
                shared_blks_hit::float8 AS shared_blks_hit, shared_blks_read::float8 AS shared_blks_read,
                temp_blks_written::float8 AS temp_blks_written, wal_bytes::float8 AS wal_bytes,
                min_exec_time AS min_ms, max_exec_time AS max_ms, stddev_exec_time AS stddev_ms,
                {since} AS stats_since
           FROM {} WHERE queryid IS NOT NULL",
        ext.function(false)
    );
    // Rows are converted as they arrive, so the driver's copy of 10,000
    // rows is never held at once; columns are read by position.
    let stream = client
        .query_raw(own.register(&sql), std::iter::empty::<&str>())
        .await
        .map_err(not_preloaded)?;
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(row) = stream.try_next().await.map_err(not_preloaded)? {
        let row = &row;
        let f = |i: usize, name: &'static str| col_at::<f64>(row, i, name);
        let key = EntryKey {
            userid: col_at(row, 0, "userid")?,
            dbid: col_at(row, 1, "dbid")?,
            queryid: col_at(row, 2, "queryid")?,
            toplevel: col_at(row, 3, "toplevel")?,
        };
        let reading = Reading {
            calls: f(4, "calls")?,
            exec_ms: f(5, "exec_ms")?,
            plan_ms: f(6, "plan_ms")?,
            rows: f(7, "rows")?,
            shared_blks_hit: f(8, "shared_blks_hit")?,
            shared_blks_read: f(9, "shared_blks_read")?,
            temp_blks_written: f(10, "temp_blks_written")?,
            wal_bytes: f(11, "wal_bytes")?,
            min_ms: f(12, "min_ms")?,
            max_ms: f(13, "max_ms")?,
            stddev_ms: f(14, "stddev_ms")?,
            stats_since: col_at(row, 15, "stats_since")?,
        };
        out.push((key, reading));
    }
    Ok(out)
}

/// Reads column `index` (named `name` in the query, for errors).
fn col_at<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    index: usize,
    name: &'static str,
) -> Result<T, CollectError> {
    row.try_get(index).map_err(|source| CollectError::Column {
        what: ENTRIES,
        column: name,
        source,
    })
}

fn not_loaded() -> CollectError {
    CollectError::Unavailable(
        "pg_stat_statements is installed but not loaded: add it to shared_preload_libraries and restart PostgreSQL"
            .into(),
    )
}

/// `pg_stat_statements must be loaded via shared_preload_libraries` is the
/// common mistake; say so plainly.
fn not_preloaded(e: tokio_postgres::Error) -> CollectError {
    if e.code().is_some_and(|c| c.code() == "55000") {
        return not_loaded();
    }
    CollectError::Query {
        what: ENTRIES,
        source: e,
    }
}

/// Reads `pg_stat_statements.max` and, on 1.9+, the info view.
pub async fn info(
    client: &Client,
    own: &OwnStatements,
    ext: &Extension,
) -> Result<Info, CollectError> {
    let sql = if ext.has_info() {
        format!(
            "SELECT current_setting('pg_stat_statements.max', true)::float8 AS max, dealloc::float8 AS dealloc,
                    extract(epoch FROM stats_reset)::float8 AS stats_reset
               FROM {}.pg_stat_statements_info",
            quote_ident(&ext.schema)
        )
    } else {
        "SELECT current_setting('pg_stat_statements.max', true)::float8 AS max, NULL::float8 AS dealloc, NULL::float8 AS stats_reset"
            .to_string()
    };
    let row = client
        .query_one(own.register(&sql), &[])
        .await
        .map_err(not_preloaded)?;
    let row = Row::new(row, "pg_stat_statements_info");
    // The setting exists only once the library is loaded.
    let Some(max) = row.get("max")? else {
        return Err(not_loaded());
    };
    Ok(Info {
        max,
        dealloc: row.get("dealloc")?,
        stats_reset: row.get("stats_reset")?,
    })
}

/// Query texts of the given query ids. pg_stat_statements(true) reads the
/// whole text file, so this runs only for ids not seen before. `None` when
/// no text can be read now (see below): ask again next time.
pub async fn texts(
    client: &Client,
    own: &OwnStatements,
    ext: &Extension,
    ids: &[i64],
) -> Result<Option<HashMap<i64, String>>, CollectError> {
    if ids.is_empty() {
        return Ok(Some(HashMap::new()));
    }
    let sql = format!(
        "SELECT DISTINCT ON (queryid) queryid, query FROM {} WHERE queryid = ANY($1)",
        ext.function(true)
    );
    let rows = match client.query(own.register(&sql), &[&ids]).await {
        Ok(rows) => rows,
        // pg_stat_statements(true) converts every entry's text to this
        // database's encoding before any filter applies, so one text it
        // cannot convert (bytes that are not UTF-8, recorded in a
        // SQL_ASCII database) fails the call for all. Go on without texts
        // rather than lose the statements' numbers too.
        Err(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::CHARACTER_NOT_IN_REPERTOIRE) =>
        {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    error = %crate::connection::session::describe(&e),
                    "query texts unavailable: pg_stat_statements holds a text that cannot be \
                     converted to this database's encoding (a statement from a SQL_ASCII \
                     database?); statements are published without text, by query id, \
                     until it is evicted or pg_stat_statements_reset() is run"
                );
            });
            return Ok(None);
        }
        Err(e) => return Err(not_preloaded(e)),
    };
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let row = Row::new(row, "pg_stat_statements texts");
        let id: i64 = row.get("queryid")?;
        if let Some(text) = row.get::<Option<String>>("query")? {
            out.insert(id, text);
        }
    }
    Ok(Some(out))
}

const NAMES: &str = "SELECT 'd' AS kind, oid, datname::text AS name FROM pg_catalog.pg_database
                       UNION ALL SELECT 'r', oid, rolname::text FROM pg_catalog.pg_roles";

/// Database and role names by OID.
pub async fn names(
    client: &Client,
) -> Result<(HashMap<u32, String>, HashMap<u32, String>), CollectError> {
    let rows = query(client, "pg_database and pg_roles", NAMES, &[]).await?;
    let (mut dbs, mut roles) = (HashMap::new(), HashMap::new());
    for row in &rows {
        let kind: &str = row.get("kind")?;
        let target = if kind == "d" { &mut dbs } else { &mut roles };
        target.insert(row.get("oid")?, row.get("name")?);
    }
    Ok((dbs, roles))
}

/// The statements above that do not depend on the server; the others are
/// registered as they are built.
pub const OWN_SQL: &[&str] = &[FIND, NAMES];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pick_columns() {
        let cases = [
            ("1.8", Some((1, 8)), false, false),
            ("1.9", Some((1, 9)), true, false),
            ("1.10", Some((1, 10)), true, false),
            ("1.11", Some((1, 11)), true, true),
            ("1.12", Some((1, 12)), true, true),
            ("banana", None, false, false),
        ];
        for (text, want, toplevel, since) in cases {
            let parsed = parse_version(text);
            assert_eq!(parsed, want, "{text}");
            if let Some(version) = parsed {
                let ext = Extension {
                    version,
                    schema: "public".into(),
                };
                assert_eq!(
                    (ext.has_toplevel(), ext.has_stats_since()),
                    (toplevel, since),
                    "{text}"
                );
            }
        }
    }
}
