//! The amcheck collector's SQL: finding the extension, listing what can be
//! checked, and checking one relation (or one range of a table's blocks).
//!
//! Locks: `bt_index_check` takes ACCESS SHARE on the index and its table,
//! `verify_heapam` ACCESS SHARE on the table: they block no reads or
//! writes, only wait for ACCESS EXCLUSIVE (DROP, TRUNCATE, VACUUM FULL,
//! REINDEX, most ALTER TABLE). Before each check, pg_locks is read: a
//! relation with an ACCESS EXCLUSIVE lock held or awaited on it (or on an
//! index's table) is skipped, so the check never queues in front of a
//! migration and makes everyone behind it wait. Between that read and the
//! call, the session's `lock_timeout` (collectors.lock_timeout, 1 s by
//! default) bounds any wait. `bt_index_parent_check`, which takes SHARE
//! LOCK and blocks writes, is never used.
//!
//! Privilege: the extension's functions are revoked from PUBLIC; the role
//! needs `GRANT EXECUTE` on `bt_index_check(regclass, boolean)` and (14+)
//! `verify_heapam(regclass, boolean, boolean, text, bigint, bigint)` in
//! the schema the extension lives in (packaging/sql/pgvigil-role.sql).

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::super::{CollectError, query, query_one, query_opt};
use crate::sql::OwnStatements;

/// Where amcheck is installed in this database, and which version.
const EXTENSION_SQL: &str = "SELECT n.nspname::text AS schema, e.extversion::text AS version
  FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'amcheck'";

/// What can be checked, in OID order: valid B-tree indexes and, when `$1`
/// (14+), tables, materialized views and TOAST tables. Not other
/// sessions' temporary relations; not unlogged ones on a standby (they
/// are empty there). `relpages` is the planner's count (no lock taken).
const RELATIONS_SQL: &str =
    "SELECT c.oid, n.nspname::text AS schemaname, c.relname::text AS relname,
       CASE WHEN c.relkind = 'i' THEN 'btree' ELSE 'heap' END AS kind,
       t.oid AS table_oid, t.relname::text AS table_name,
       greatest(c.relpages, 0)::int8 AS relpages
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
  LEFT JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
 WHERE c.relpersistence <> 't'
   AND NOT (c.relpersistence = 'u' AND pg_catalog.pg_is_in_recovery())
   AND ((c.relkind = 'i' AND c.relam = 403 AND i.indisready AND i.indisvalid)
        OR (c.relkind IN ('r', 'm', 't') AND $1))
 ORDER BY c.oid";

/// Whether the relation `$1` or `$2` (an index's table) has an ACCESS
/// EXCLUSIVE lock held or awaited; if not, the relation's size in blocks
/// now (NULL once it is dropped).
const BUSY_SQL: &str = "WITH busy AS (
  SELECT EXISTS (SELECT FROM pg_catalog.pg_locks l
                  WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
                    AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
                    AND l.relation IN ($1::pg_catalog.oid, $2::pg_catalog.oid)) AS busy)
SELECT busy,
       CASE WHEN NOT busy AND EXISTS (SELECT FROM pg_catalog.pg_class WHERE oid = $1::pg_catalog.oid)
            THEN pg_catalog.pg_relation_size($1::pg_catalog.oid::pg_catalog.regclass) / pg_catalog.current_setting('block_size')::int8 END AS blocks
  FROM busy";

/// The SQL with nothing built at run time.
pub const OWN_SQL: &[&str] = &[EXTENSION_SQL, RELATIONS_SQL, BUSY_SQL];

/// The amcheck extension in one database.
pub struct Extension {
    /// Its schema, quoted for SQL.
    schema: String,
    /// Its version.
    pub version: String,
}

/// amcheck in the connected database, if installed.
pub async fn extension(client: &Client) -> Result<Option<Extension>, CollectError> {
    let row = query_opt(client, "pg_extension", EXTENSION_SQL, &[]).await?;
    row.map(|r| {
        Ok(Extension {
            schema: crate::sql::quote_ident(&r.get::<String>("schema")?),
            version: r.get("version")?,
        })
    })
    .transpose()
}

/// One relation that can be checked.
#[derive(Debug, Clone)]
pub struct Relation {
    /// Its OID.
    pub oid: u32,
    /// Its schema.
    pub schemaname: String,
    /// Its name.
    pub relname: String,
    /// `btree` or `heap`.
    pub kind: &'static str,
    /// An index's table: OID and name.
    pub table: Option<(u32, String)>,
    /// `pg_class.relpages`.
    pub relpages: f64,
}

/// Everything checkable in the connected database, in OID order.
pub async fn relations(client: &Client, heap: bool) -> Result<Vec<Relation>, CollectError> {
    let rows = query(client, "pg_class", RELATIONS_SQL, &[&heap]).await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.get("kind")?;
            let table_oid: Option<u32> = r.get("table_oid")?;
            let table_name: Option<String> = r.get("table_name")?;
            Ok(Relation {
                oid: r.get("oid")?,
                schemaname: r.get("schemaname")?,
                relname: r.get("relname")?,
                kind: if kind == "btree" { "btree" } else { "heap" },
                table: table_oid.zip(table_name),
                relpages: r.get::<i64>("relpages")? as f64,
            })
        })
        .collect()
}

/// Before a check: locked (skip it), gone, or its size in blocks now.
pub enum Ready {
    /// An ACCESS EXCLUSIVE lock is held or awaited.
    Locked,
    /// Dropped since it was listed.
    Gone,
    /// Its size in blocks.
    Blocks(i64),
}

/// Whether `relation` can be checked now.
pub async fn ready(client: &Client, relation: &Relation) -> Result<Ready, CollectError> {
    let table = relation.table.as_ref().map_or(relation.oid, |t| t.0);
    let row = query_one(client, "pg_locks", BUSY_SQL, &[&relation.oid, &table]).await;
    let row = match row {
        // Dropped between the two reads: regclass of a missing OID.
        Err(CollectError::Query { source, .. })
            if source.code() == Some(&SqlState::UNDEFINED_TABLE) =>
        {
            return Ok(Ready::Gone);
        }
        other => other?,
    };
    if row.get::<bool>("busy")? {
        return Ok(Ready::Locked);
    }
    Ok(match row.get::<Option<i64>>("blocks")? {
        Some(blocks) => Ready::Blocks(blocks),
        None => Ready::Gone,
    })
}

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing wrong.
    Clean,
    /// Corruption: the first block named, the first message, how many
    /// problems.
    Corrupt {
        /// The first block a message names.
        block: Option<i64>,
        /// The first message.
        message: String,
        /// Problems reported.
        problems: u64,
    },
    /// Not checked: `locked`, `timeout` or `error`, and the error.
    Skipped(&'static str, String),
}

/// Checks the B-tree index `oid` (without heapallindexed: that reads the
/// whole table for each index).
pub async fn check_btree(
    client: &Client,
    ext: &Extension,
    own: &OwnStatements,
    oid: u32,
) -> Result<Outcome, CollectError> {
    let sql = format!(
        "SELECT {}.bt_index_check($1::pg_catalog.oid::pg_catalog.regclass, false)",
        ext.schema
    );
    match client.query(own.register(&sql), &[&oid]).await {
        Ok(_) => Ok(Outcome::Clean),
        Err(e) => classify(e),
    }
}

/// Checks blocks `start..=end` of the table `oid`, TOAST not followed
/// (detoasting every value would multiply the reads).
pub async fn check_heap(
    client: &Client,
    ext: &Extension,
    own: &OwnStatements,
    oid: u32,
    start: i64,
    end: i64,
) -> Result<Outcome, CollectError> {
    let sql = format!(
        "SELECT blkno, msg FROM {}.verify_heapam($1::pg_catalog.oid::pg_catalog.regclass, on_error_stop => false, check_toast => false, skip => 'none', startblock => $2, endblock => $3)",
        ext.schema
    );
    match client
        .query(own.register(&sql), &[&oid, &start, &end])
        .await
    {
        Ok(rows) if rows.is_empty() => Ok(Outcome::Clean),
        Ok(rows) => {
            let first = &rows[0];
            let block: Option<i64> = first.try_get("blkno").ok();
            let message: Option<String> = first.try_get("msg").ok().flatten();
            Ok(Outcome::Corrupt {
                block,
                message: message.unwrap_or_default(),
                problems: rows.len() as u64,
            })
        }
        Err(e) => classify(e),
    }
}

/// A failed check: corruption (SQLSTATE XX001, XX002), a lock or time
/// limit, a missing privilege (the collector fails: it says what to
/// grant), a lost connection (the collector fails), or another error.
fn classify(e: tokio_postgres::Error) -> Result<Outcome, CollectError> {
    let Some(db) = e.as_db_error() else {
        return Err(CollectError::Query {
            what: "amcheck",
            source: e,
        });
    };
    let code = db.code();
    let mut message = db.message().to_string();
    if let Some(detail) = db.detail() {
        message = format!("{message}: {detail}");
    }
    if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
        return Ok(Outcome::Corrupt {
            block: block_in(&message),
            message,
            problems: 1,
        });
    }
    if *code == SqlState::LOCK_NOT_AVAILABLE {
        return Ok(Outcome::Skipped("locked", message));
    }
    if *code == SqlState::QUERY_CANCELED {
        return Ok(Outcome::Skipped("timeout", message));
    }
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        return Err(CollectError::Unavailable(format!(
            "amcheck: {message}; grant EXECUTE on bt_index_check(regclass, boolean) and verify_heapam(regclass, boolean, boolean, text, bigint, bigint) to the role (packaging/sql/pgvigil-role.sql)"
        )));
    }
    if code.code().starts_with("08") || code.code().starts_with("57P") {
        return Err(CollectError::Query {
            what: "amcheck",
            source: e,
        });
    }
    Ok(Outcome::Skipped("error", message))
}

/// The first block number a message names ("block 12", "block=12",
/// "block number 12").
pub fn block_in(message: &str) -> Option<i64> {
    let lower = message.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("block") {
        rest = &rest[at + 5..];
        let tail = rest
            .trim_start_matches(" number")
            .trim_start_matches(['=', ' ']);
        let digits: String = tail.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(n) = digits.parse() {
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_is_read_from_amchecks_messages() {
        let cases = [
            (
                "index \"t_k\" contains unexpected zero page at block 5",
                Some(5),
            ),
            (
                "invalid page in block 17 of relation base/5/16390",
                Some(17),
            ),
            (
                "item order invariant violated for index \"i\": Lower index tid=(3,4) (points to heap tid=(1,2)) higher index tid=(3,5); Block=3",
                Some(3),
            ),
            ("block number 42 is out of bounds", Some(42)),
            ("index \"i\" lacks a main relation fork", None),
        ];
        for (message, want) in cases {
            assert_eq!(block_in(message), want, "{message}");
        }
    }
}
