//! Schema risks of every watched database, checked rarely (every 10
//! minutes by default): sequences nearing the value they cannot pass,
//! invalid indexes, unused and duplicate indexes and the space they take.
//!
//! # Layout
//!
//! - this file: the collector, its metric families, the top-N and the
//!   `"other"` fold;
//! - `read`: the queries of one database, which never queue behind a lock
//!   (it says which privilege each read needs);
//! - [`report`]: what a run found, as plain data for `/api/v1/schema`, the
//!   `/` page and `pgvigil once`.
//!
//! A sequence runs out at the smaller of its own maximum and its owning
//! column's type maximum: an int4 `serial` fails at 2^31−1 although its
//! sequence is bigint. `pg_sequence_used_ratio` publishes the [`TOP`] most
//! used sequences of the target; the others fold into one series labelled
//! `"other"` whose value is the highest ratio among them, so an alert on
//! the family still sees every sequence. Invalid indexes are rare and each
//! gets `pg_index_invalid` 1, the first [`TOP_INVALID`] by size, the rest
//! counted in `"other"`. Unused and duplicate indexes are listed in the
//! report; as metrics, only their bytes per database (their counts are in
//! the report: the series budget has little room).
//!
//! Databases other than the session's are visited one at a time, each on a
//! short-lived connection, as the tables collector does.
//!
//! Privilege: pg_monitor, CONNECT on each database; SELECT or USAGE on the
//! sequences for their position (`read` says why and what to grant).

use std::sync::Arc;

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, Detail};
use crate::desc;
use crate::metric::{Desc, Family};
use crate::stats::cardinality::OTHER;

pub(crate) mod read;
pub mod report;

use report::{DatabaseSchema, SchemaReport};

/// Sequences published individually per target (at most 21 series with
/// `"other"`; docs/performance.md, series budget).
pub const TOP: usize = 20;
/// Invalid indexes published individually per target: they are rare, and
/// the series budget has little room.
pub const TOP_INVALID: usize = 10;

/// `pg_sequence_used_ratio`.
pub static SEQUENCE_USED: Desc = desc!(Gauge "pg_sequence_used_ratio", ["datname", "schemaname", "sequence"],
    "Share of the sequence's range used: (last_value - minimum) / (limit - minimum), where the limit is the smaller of the sequence's maximum and its owning column's type maximum (an int4 serial runs out at 2^31-1 although its sequence is bigint); for a descending sequence, towards the larger of the minimums. The 20 most used sequences of the target; sequence=\"other\" (all labels \"other\") is the highest ratio among the rest. Cycling sequences that stay within their column are left out (they wrap, they do not fail).",
    only_when = "the role may read the sequences' positions (SELECT or USAGE: pg_read_all_data on 14+) and they have been called");
/// `pg_sequences_unreadable`.
pub static SEQUENCES_UNREADABLE: Desc = desc!(Gauge "pg_sequences_unreadable", [],
    "Sequences of the watched databases whose position the role may not read (no SELECT or USAGE on them; pg_monitor does not give it): their pg_sequence_used_ratio is absent, so alerts on it cannot fire. Grant pg_read_all_data (14+) or SELECT on the sequences.");
/// `pg_index_invalid`.
pub static INDEX_INVALID: Desc = desc!(Gauge "pg_index_invalid", ["datname", "schemaname", "relname", "indexrelname"],
    "1 for an index left invalid (indisvalid = false) by a failed CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY: it costs writes, serves no reads and, if unique, may not be enforced. Builds in progress are left out. The 10 largest of the target; indexrelname=\"other\" (all labels \"other\") counts the rest.",
    only_when = "a watched database has an invalid index");
/// `pg_indexes_unused_bytes`.
pub static UNUSED_BYTES: Desc = desc!(Gauge "pg_indexes_unused", unit = Bytes, ["datname"],
    "Disk space of the valid, non-unique indexes of the database with no scan since its statistics reset and at least collectors.schema.unused_index_min_bytes large (1 MiB by default); /api/v1/schema lists them. Scans on replicas are not seen: check them before dropping one.");
/// `pg_indexes_duplicate_bytes`.
pub static DUPLICATE_BYTES: Desc = desc!(Gauge "pg_indexes_duplicate", unit = Bytes, ["datname"],
    "Disk space of the valid indexes of the database that repeat another index of the same table (same method, key columns, operator classes, collations, expressions and predicate), the one kept (a primary key or unique index first) not counted: what dropping them would free; /api/v1/schema lists them. May overlap pg_indexes_unused_bytes.");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &SEQUENCE_USED,
    &SEQUENCES_UNREADABLE,
    &INDEX_INVALID,
    &UNUSED_BYTES,
    &DUPLICATE_BYTES,
];

/// The `schema` collector.
pub struct Schema {
    unused_index_min_bytes: u64,
}

impl Schema {
    /// A collector listing unused indexes from `unused_index_min_bytes` on.
    pub fn new(unused_index_min_bytes: u64) -> Schema {
        Schema {
            unused_index_min_bytes,
        }
    }
}

#[async_trait]
impl Collector for Schema {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let names = super::tables::databases(cx).await?;
        let mut databases = Vec::with_capacity(names.len());
        for datname in &names {
            let found = if *datname == cx.caps.database {
                read::database(cx.client, datname, self.unused_index_min_bytes).await?
            } else {
                let other = cx.visit(datname).await?;
                read::database(&other.client, datname, self.unused_index_min_bytes).await?
            };
            databases.push(found);
        }
        let families = publish(&databases);
        let report = SchemaReport {
            collected_at: crate::snapshot::unix_now(),
            unused_index_min_bytes: self.unused_index_min_bytes,
            databases: databases
                .into_iter()
                .map(|mut d| {
                    d.sequences.truncate(TOP);
                    d
                })
                .collect(),
        };
        Ok(Collected {
            families,
            detail: Some(Detail::Schema(Arc::new(report))),
        })
    }
}

/// The families of one run over every database.
fn publish(databases: &[DatabaseSchema]) -> Vec<Family> {
    let mut used = Family::new(&SEQUENCE_USED);
    let mut sequences: Vec<(&str, &report::Sequence)> = databases
        .iter()
        .flat_map(|d| d.sequences.iter().map(move |s| (d.datname.as_str(), s)))
        .collect();
    sequences.sort_by(|a, b| {
        b.1.used_ratio.total_cmp(&a.1.used_ratio).then_with(|| {
            (a.0, &a.1.schemaname, &a.1.sequence).cmp(&(b.0, &b.1.schemaname, &b.1.sequence))
        })
    });
    for (datname, s) in sequences.iter().take(TOP) {
        used.push(&[*datname, &s.schemaname, &s.sequence], s.used_ratio);
    }
    if let Some(highest) = sequences.get(TOP) {
        used.push(&[OTHER; 3], highest.1.used_ratio);
    }
    let mut invalid = Family::new(&INDEX_INVALID);
    let mut indexes: Vec<(&str, &report::Index)> = databases
        .iter()
        .flat_map(|d| {
            d.invalid_indexes
                .iter()
                .map(move |i| (d.datname.as_str(), i))
        })
        .collect();
    indexes.sort_by(|a, b| b.1.bytes.total_cmp(&a.1.bytes));
    for (datname, i) in indexes.iter().take(TOP_INVALID) {
        invalid.push(&[*datname, &i.schemaname, &i.relname, &i.indexrelname], 1.0);
    }
    if indexes.len() > TOP_INVALID {
        invalid.push(&[OTHER; 4], (indexes.len() - TOP_INVALID) as f64);
    }
    let unreadable: u64 = databases.iter().map(|d| d.sequences_unreadable).sum();
    let mut unused_bytes = Family::new(&UNUSED_BYTES);
    let mut duplicate_bytes = Family::new(&DUPLICATE_BYTES);
    for d in databases {
        let db = [d.datname.as_str()];
        unused_bytes.push(&db, total_bytes(&d.unused_indexes));
        duplicate_bytes.push(&db, total_bytes(&d.duplicate_indexes));
    }
    vec![
        used,
        Family::single(&SEQUENCES_UNREADABLE, unreadable as f64),
        invalid,
        unused_bytes,
        duplicate_bytes,
    ]
}

/// The bytes of `indexes` (0, not the -0 an empty f64 sum gives).
fn total_bytes(indexes: &[report::Index]) -> f64 {
    indexes.iter().fold(0.0, |sum, i| sum + i.bytes)
}

/// The SQL this collector sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[read::OWN_SQL[0], read::OWN_SQL[1], read::OWN_SQL[2]];
