//! Reading one database's sequences and indexes, never queueing behind a
//! lock.
//!
//! Everything here reads catalogs (pg_sequence, pg_index, pg_class,
//! pg_depend), pg_locks and statistics functions, none of which locks a
//! relation, with two exceptions that open one:
//! - `pg_sequence_last_value` takes ROW EXCLUSIVE on the sequence, which
//!   conflicts with SHARE and stronger (ALTER SEQUENCE, a LOCK, DROP). A
//!   sequence with such a lock held or awaited in pg_locks is not read
//!   this run.
//! - `pg_relation_size` takes ACCESS SHARE on the index, which conflicts
//!   only with ACCESS EXCLUSIVE (REINDEX, DROP INDEX). An index with one
//!   held or awaited is not measured: its size is `pg_class.relpages`
//!   times the block size, flagged as estimated. Only candidates (invalid,
//!   unused, duplicate indexes) are measured.
//!
//! Between reading pg_locks and the call a lock may still arrive; the
//! session's `lock_timeout` then fails the statement (55P03), and the run
//! carries on without that part: sequences are not reported for the
//! database this run, indexes are sized from `relpages` instead.
//!
//! Privilege: catalogs, pg_locks and pg_stat_get_numscans need nothing;
//! pg_stat_progress_create_index needs pg_read_all_stats (pg_monitor) to
//! see other roles' builds; `pg_relation_size` needs nothing. A sequence's
//! position (`last_value`) needs SELECT or USAGE on it, which pg_monitor
//! does not give: `GRANT pg_read_all_data` (14+) or
//! `GRANT SELECT ON ALL SEQUENCES IN SCHEMA …` (13). Without it the
//! sequence is counted in `sequences_unreadable` and its ratio is absent.

use std::collections::HashMap;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::super::{CollectError, query, query_opt};
use super::report::{DatabaseSchema, Index, Sequence};

/// Sequences: bounds, owning column's type, and last value where readable
/// and not locked.
const SEQUENCES_SQL: &str = "
WITH busy AS (
  SELECT l.relation FROM pg_catalog.pg_locks l
   WHERE l.locktype = 'relation' AND l.relation IS NOT NULL
     AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
     AND (NOT l.granted OR l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'))
)
SELECT n.nspname::text AS schemaname, c.relname::text AS sequence,
       s.seqmin AS min_value, s.seqmax AS max_value, s.seqincrement AS increment, s.seqcycle AS cycle,
       pg_catalog.has_sequence_privilege(c.oid, 'SELECT,USAGE') AS readable,
       CASE WHEN pg_catalog.has_sequence_privilege(c.oid, 'SELECT,USAGE')
             AND c.oid NOT IN (SELECT relation FROM busy)
            THEN pg_catalog.pg_sequence_last_value(c.oid::regclass) END AS last_value,
       owner.type_name, owner.column_name
  FROM pg_catalog.pg_sequence s
  JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN LATERAL (
    SELECT (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END)::regtype::text AS type_name,
           (tc.relname || '.' || a.attname)::text AS column_name
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      JOIN pg_catalog.pg_class tc ON tc.oid = d.refobjid
      JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjsubid > 0
       AND d.deptype IN ('a', 'i')
     LIMIT 1) owner ON true
 WHERE NOT pg_catalog.pg_is_other_temp_schema(n.oid)
   AND NOT (c.relpersistence = 'u' AND pg_catalog.pg_is_in_recovery())";

/// Indexes worth reporting: invalid ones (builds in progress excepted),
/// valid ones without scans, and valid ones that repeat another. `$1`:
/// whether to measure sizes (false after a lock timeout: estimates only);
/// `$2`: the unused-index floor. Measuring stats files, so an index without
/// scans is measured only when `pg_class.relpages` puts it at half the
/// floor or more: on 5,000 tables that halves the query's time (145 to
/// about 60 ms); one that doubled since VACUUM or ANALYZE last counted its
/// pages is listed once autovacuum does.
const INDEXES_SQL: &str = "
WITH busy AS (
  SELECT l.relation FROM pg_catalog.pg_locks l
   WHERE l.locktype = 'relation' AND l.relation IS NOT NULL AND l.mode = 'AccessExclusiveLock'
     AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
), idx AS (
  SELECT i.indexrelid, n.nspname::text AS schemaname, t.relname::text AS relname, ic.relname::text AS indexrelname,
         i.indisvalid AS valid, i.indisunique AS is_unique, i.indisprimary AS is_primary,
         i.indisexclusion AS is_exclusion, ic.relpages,
         pg_catalog.pg_stat_get_numscans(i.indexrelid) AS scans,
         EXISTS (SELECT FROM pg_catalog.pg_stat_progress_create_index p
                  WHERE p.relid = i.indrelid AND p.datid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())) AS building,
         pg_catalog.concat_ws('|', i.indrelid, ic.relam, i.indkey, i.indclass, i.indcollation, i.indoption,
                   coalesce(pg_catalog.regexp_replace(i.indexprs::text, ' :location -?[0-9]+', '', 'g'), '-'),
                   coalesce(pg_catalog.regexp_replace(i.indpred::text, ' :location -?[0-9]+', '', 'g'), '-')) AS signature
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
   WHERE ic.relkind = 'i'
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
     AND NOT pg_catalog.pg_is_other_temp_schema(n.oid)
), twins AS (
  SELECT *, count(*) FILTER (WHERE valid) OVER (PARTITION BY signature) AS copies FROM idx
)
SELECT schemaname, relname, indexrelname, valid, is_unique, is_primary, is_exclusion, scans, building,
       CASE WHEN valid AND copies > 1 THEN signature END AS signature,
       measure AS measured,
       CASE WHEN measure THEN pg_catalog.pg_relation_size(indexrelid) ELSE estimate END AS bytes
  FROM (SELECT *, indexrelid NOT IN (SELECT relation FROM busy) AND $1
                  AND (NOT valid OR copies > 1 OR estimate >= $2::int8 / 2) AS measure
          FROM (SELECT *, relpages::int8 * pg_catalog.current_setting('block_size')::int8 AS estimate
                  FROM twins) e) m
 WHERE NOT valid
    OR (scans = 0 AND NOT is_unique AND NOT is_exclusion)
    OR (valid AND copies > 1)";

/// When the database's statistics were last reset.
const STATS_RESET_SQL: &str =
    "SELECT pg_catalog.date_part('epoch', stats_reset)::float8 AS stats_reset
  FROM pg_catalog.pg_stat_database WHERE datname = pg_catalog.current_database()";

/// The SQL this module sends.
pub const OWN_SQL: &[&str] = &[SEQUENCES_SQL, INDEXES_SQL, STATS_RESET_SQL];

/// The largest value a column of this integer type holds, and the smallest.
fn type_range(type_name: &str) -> Option<(i64, i64)> {
    match type_name {
        "smallint" => Some((i16::MIN.into(), i16::MAX.into())),
        "integer" => Some((i32::MIN.into(), i32::MAX.into())),
        "bigint" => Some((i64::MIN, i64::MAX)),
        _ => None,
    }
}

/// One sequence row as read.
#[derive(Debug, Clone)]
pub struct SequenceRow {
    /// Its schema.
    pub schemaname: String,
    /// Its name.
    pub sequence: String,
    /// seqmin, seqmax, seqincrement.
    pub min: i64,
    /// seqmax.
    pub max: i64,
    /// seqincrement.
    pub increment: i64,
    /// seqcycle.
    pub cycle: bool,
    /// last_value, when readable and called.
    pub last_value: Option<i64>,
    /// The owning column (`table.column`) and its type.
    pub column: Option<(String, String)>,
}

/// How far a sequence has gone towards the value it cannot pass; `None`
/// when it has not been called yet, or when it cycles within its column's
/// range (it never fails, it wraps).
pub fn used(row: &SequenceRow) -> Option<Sequence> {
    let last = row.last_value?;
    let column_range = row
        .column
        .as_ref()
        .and_then(|(_, type_name)| type_range(type_name));
    let ascending = row.increment > 0;
    let (limit, limited_by, ratio) = if ascending {
        let (limit, by) = match column_range {
            Some((_, type_max)) if type_max < row.max => (type_max, "column"),
            _ => (row.max, "sequence"),
        };
        let span = limit as i128 - row.min as i128;
        let ratio = if span <= 0 {
            1.0
        } else {
            (last as i128 - row.min as i128) as f64 / span as f64
        };
        (limit, by, ratio)
    } else {
        let (limit, by) = match column_range {
            Some((type_min, _)) if type_min > row.min => (type_min, "column"),
            _ => (row.min, "sequence"),
        };
        let span = row.max as i128 - limit as i128;
        let ratio = if span <= 0 {
            1.0
        } else {
            (row.max as i128 - last as i128) as f64 / span as f64
        };
        (limit, by, ratio)
    };
    if row.cycle && limited_by == "sequence" {
        return None;
    }
    Some(Sequence {
        schemaname: row.schemaname.clone(),
        sequence: row.sequence.clone(),
        last_value: last,
        limit,
        limited_by,
        column: row.column.as_ref().map(|(c, _)| c.clone()),
        column_type: row.column.as_ref().map(|(_, t)| t.clone()),
        used_ratio: ratio.clamp(0.0, 1.0),
    })
}

/// One index row as read.
struct IndexRow {
    index: Index,
    valid: bool,
    unique: bool,
    primary: bool,
    exclusion: bool,
    scans: f64,
    building: bool,
    signature: Option<String>,
}

/// Whether the error is a lock timeout (55P03).
fn lock_timeout(e: &CollectError) -> bool {
    matches!(e, CollectError::Query { source, .. } if source.code() == Some(&SqlState::LOCK_NOT_AVAILABLE))
}

/// Reads one database; `min_bytes` is the unused-index floor.
pub async fn database(
    client: &Client,
    datname: &str,
    min_bytes: u64,
) -> Result<DatabaseSchema, CollectError> {
    let mut out = DatabaseSchema {
        datname: datname.to_string(),
        ..DatabaseSchema::default()
    };
    out.stats_reset = match query_opt(client, "pg_stat_database", STATS_RESET_SQL, &[]).await? {
        Some(row) => row.get("stats_reset")?,
        None => None,
    };
    match query(client, "pg_sequence", SEQUENCES_SQL, &[]).await {
        Ok(rows) => {
            let mut sequences = Vec::new();
            for row in rows {
                let readable: bool = row.get("readable")?;
                if !readable {
                    out.sequences_unreadable += 1;
                    continue;
                }
                let column = match (
                    row.get::<Option<String>>("column_name")?,
                    row.get::<Option<String>>("type_name")?,
                ) {
                    (Some(c), Some(t)) => Some((c, t)),
                    _ => None,
                };
                let seq = SequenceRow {
                    schemaname: row.get("schemaname")?,
                    sequence: row.get("sequence")?,
                    min: row.get("min_value")?,
                    max: row.get("max_value")?,
                    increment: row.get("increment")?,
                    cycle: row.get("cycle")?,
                    last_value: row.get("last_value")?,
                    column,
                };
                sequences.extend(used(&seq));
            }
            sequences.sort_by(|a, b| {
                b.used_ratio
                    .total_cmp(&a.used_ratio)
                    .then_with(|| (&a.schemaname, &a.sequence).cmp(&(&b.schemaname, &b.sequence)))
            });
            out.sequences = sequences;
        }
        Err(e) if lock_timeout(&e) => {
            tracing::warn!(
                datname,
                "a sequence was locked while being read; sequences are not reported for this database this run"
            );
        }
        Err(e) => return Err(e),
    }
    let floor = i64::try_from(min_bytes).unwrap_or(i64::MAX);
    let rows = match query(client, "pg_index", INDEXES_SQL, &[&true, &floor]).await {
        Err(e) if lock_timeout(&e) => {
            tracing::warn!(
                datname,
                "an index was locked while being sized; index sizes are estimates this run"
            );
            query(client, "pg_index", INDEXES_SQL, &[&false, &floor]).await?
        }
        other => other?,
    };
    let mut indexes = Vec::with_capacity(rows.len());
    for row in rows {
        let measured: bool = row.get("measured")?;
        let bytes: Option<i64> = row.get("bytes")?;
        indexes.push(IndexRow {
            index: Index {
                schemaname: row.get("schemaname")?,
                relname: row.get("relname")?,
                indexrelname: row.get("indexrelname")?,
                bytes: bytes.unwrap_or(0) as f64,
                size_estimated: !measured,
                duplicate_of: None,
            },
            valid: row.get("valid")?,
            unique: row.get("is_unique")?,
            primary: row.get("is_primary")?,
            exclusion: row.get("is_exclusion")?,
            scans: row.get::<i64>("scans")? as f64,
            building: row.get("building")?,
            signature: row.get("signature")?,
        });
    }
    classify(&mut out, indexes, min_bytes);
    Ok(out)
}

/// Sorts index rows into invalid, unused and duplicate lists.
fn classify(out: &mut DatabaseSchema, rows: Vec<IndexRow>, min_bytes: u64) {
    let mut groups: HashMap<String, Vec<&IndexRow>> = HashMap::new();
    for row in &rows {
        if !row.valid {
            if !row.building {
                out.invalid_indexes.push(row.index.clone());
            }
            continue;
        }
        if row.scans == 0.0 && !row.unique && !row.exclusion && row.index.bytes >= min_bytes as f64
        {
            out.unused_indexes.push(row.index.clone());
        }
        if let Some(sig) = &row.signature {
            groups.entry(sig.clone()).or_default().push(row);
        }
    }
    for mut group in groups.into_values() {
        // Keep the one that enforces most (primary, unique), then the most
        // used, then the first by name; the others repeat it.
        group.sort_by(|a, b| {
            (b.primary, b.unique)
                .cmp(&(a.primary, a.unique))
                .then_with(|| b.scans.total_cmp(&a.scans))
                .then_with(|| a.index.indexrelname.cmp(&b.index.indexrelname))
        });
        let kept = group[0].index.indexrelname.clone();
        for row in &group[1..] {
            let mut index = row.index.clone();
            index.duplicate_of = Some(kept.clone());
            out.duplicate_indexes.push(index);
        }
    }
    let by_size = |a: &Index, b: &Index| {
        b.bytes.total_cmp(&a.bytes).then_with(|| {
            (&a.schemaname, &a.relname, &a.indexrelname).cmp(&(
                &b.schemaname,
                &b.relname,
                &b.indexrelname,
            ))
        })
    };
    out.invalid_indexes.sort_by(by_size);
    out.unused_indexes.sort_by(by_size);
    out.duplicate_indexes.sort_by(by_size);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(min: i64, max: i64, increment: i64, last: i64, column: Option<&str>) -> SequenceRow {
        SequenceRow {
            schemaname: "public".into(),
            sequence: "s".into(),
            min,
            max,
            increment,
            cycle: false,
            last_value: Some(last),
            column: column.map(|t| ("t.id".to_string(), t.to_string())),
        }
    }

    #[test]
    fn a_serial_runs_out_at_its_columns_maximum() {
        let s = used(&seq(1, i64::MAX, 1, 2_000_000_000, Some("integer"))).unwrap();
        assert_eq!((s.limit, s.limited_by), (i32::MAX as i64, "column"));
        assert!((s.used_ratio - 1_999_999_999.0 / 2_147_483_646.0).abs() < 1e-12);
        let s = used(&seq(1, i64::MAX, 1, 2_000_000_000, Some("bigint"))).unwrap();
        assert_eq!((s.limit, s.limited_by), (i64::MAX, "sequence"));
        assert!(s.used_ratio < 1e-9);
        let s = used(&seq(0, 1000, 1, 800, None)).unwrap();
        assert_eq!(
            (s.limit, s.limited_by, s.used_ratio),
            (1000, "sequence", 0.8)
        );
        let s = used(&seq(1, 100, 1, 100, Some("numeric"))).unwrap();
        assert_eq!(s.used_ratio, 1.0);
    }

    #[test]
    fn a_descending_sequence_counts_down_to_its_minimum() {
        let s = used(&seq(i64::MIN, -1, -1, -1_073_741_824, Some("integer"))).unwrap();
        assert_eq!((s.limit, s.limited_by), (i32::MIN as i64, "column"));
        assert!((s.used_ratio - 0.5).abs() < 1e-6);
    }

    #[test]
    fn a_cycling_sequence_within_its_column_never_fails_and_an_uncalled_one_used_nothing() {
        let mut s = seq(1, 1000, 1, 999, Some("integer"));
        s.cycle = true;
        assert_eq!(used(&s), None);
        s.max = i64::MAX;
        assert_eq!(used(&s).unwrap().limited_by, "column");
        s.last_value = None;
        assert_eq!(used(&s), None);
    }
}
