//! Relation sizes, measured without ever queueing behind a lock.
//!
//! `pg_table_size` and `pg_relation_size` open the relation with
//! ACCESS SHARE, which conflicts with one mode only, ACCESS EXCLUSIVE: VACUUM
//! FULL, CLUSTER, TRUNCATE, REINDEX (on the index), a rewriting ALTER TABLE,
//! LOCK TABLE, and any of these waiting for its turn (a request that arrives
//! behind a waiting ACCESS EXCLUSIVE waits too, and then everyone who comes
//! after waits behind it). A size request that queued would fail the whole
//! run after `lock_timeout` and, worse, block the application for that long.
//! So sizing a database goes:
//!
//! 1. Read pg_locks for relations of this database with an ACCESS EXCLUSIVE
//!    lock granted or awaited, and skip every relation whose size call would
//!    open one of them: a table opens itself, its TOAST table and the TOAST
//!    table's index (`pg_table_size` counts TOAST; REINDEX TABLE locks the
//!    TOAST index too); an index opens only itself. Nothing waits here.
//! 2. Size the rest in one statement, one row per relation in a known order,
//!    under a short `lock_timeout` ([`LOCK_WAIT`]) and the pass's own
//!    `statement_timeout` (its budget), for a lock taken between step 1 and
//!    the size call. Rows arrive as they are computed, so when the statement
//!    stops (55P03 on a lock, 57014 on the budget) the sizes before the stop
//!    are kept: a lock timeout names the relation after the last row, which
//!    is skipped, and the rest is sized by a new statement after reading
//!    pg_locks again; a budget stop carries the rest over to the next pass.
//!
//! Both settings are made with `set_config(…, true)` in the same simple-Query
//! message as the sizing statement. Such a message is one implicit
//! transaction, so they end with it whatever happens, also when the whole run
//! is abandoned half-way on the collector's own budget. An explicit
//! `BEGIN; SET LOCAL` would do the same with bound parameters, but could leave
//! the target's shared session inside a transaction, breaking every other
//! collector. The message carries the oids as an array literal, written from
//! the numbers pgvigil read (no text from the server goes into it).
//!
//! Rejected: one statement per relation under a savepoint costs a round
//! trip per relation (thousands per pass); computing sizes from the files
//! (`pg_relation_filepath` and `pg_stat_file`) needs superuser or
//! pg_read_server_files.
//!
//! What is not measured keeps its last measured size, flagged as not
//! measured, or, never measured (a fresh `pgvigil once`), an estimate from
//! `pg_class.relpages` ([`estimates`]), also flagged.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::super::{CollectError, query};

/// A sizing pass measures every relation of a database once in this many
/// runs of the collector; in between sizes are carried over, except for
/// relations seen for the first time or skipped for a lock, which are
/// measured at once.
pub const SIZE_RUNS: u32 = 5;

/// The longest a size call may wait for a lock taken after pg_locks was
/// read. Only then can the agent sit in a lock queue at all, and anyone
/// queued behind it waits at most this long.
pub const LOCK_WAIT: Duration = Duration::from_millis(50);

/// Sizing statements per database and run at most: each lock met after
/// the pg_locks check costs one, so a burst of new locks cannot keep a run
/// going.
const MAX_STATEMENTS: usize = 8;

/// With less time than this left in the budget, no statement is started.
const MIN_STATEMENT: Duration = Duration::from_millis(20);

/// A relation to size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rel {
    /// pg_class oid.
    pub oid: u32,
    /// A table (`pg_table_size`: heap, TOAST, free space and visibility
    /// maps) rather than an index (`pg_relation_size`).
    pub table: bool,
}

/// Why a relation's size was not measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It, or a relation its size call opens, held or awaited an ACCESS
    /// EXCLUSIVE lock.
    Locked,
    /// The pass ran out of its time budget before reaching it.
    Budget,
    /// The size function failed for it.
    Error,
}

impl Skip {
    /// Every reason, in label order.
    pub const ALL: [Skip; 3] = [Skip::Locked, Skip::Budget, Skip::Error];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            Skip::Locked => "locked",
            Skip::Budget => "budget",
            Skip::Error => "error",
        }
    }
}

/// What sizing one database produced.
#[derive(Debug, Default)]
pub struct Measured {
    /// Sizes measured, in order; `None` for a relation dropped meanwhile.
    pub sizes: Vec<(u32, Option<f64>)>,
    /// Relations not measured, and why.
    pub skipped: Vec<(u32, Skip)>,
    /// The first error a size function raised, for the log.
    pub error: Option<String>,
}

impl Measured {
    fn skip_all(&mut self, rels: &[Rel], why: Skip) {
        self.skipped.extend(rels.iter().map(|r| (r.oid, why)));
    }
}

/// Measures `plan` in order within `budget` (at least the part it reaches),
/// never waiting on a lock for longer than `lock_wait`. Fails only when the
/// connection is lost; anything else is a skip, so that sizing never costs
/// the run its statistics.
pub async fn measure(
    client: &Client,
    plan: &[Rel],
    budget: Duration,
    lock_wait: Duration,
) -> Result<Measured, CollectError> {
    let deadline = Instant::now() + budget;
    let mut out = Measured::default();
    let mut rest = plan.to_vec();
    let mut statements = 0;
    while !rest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < MIN_STATEMENT || statements == MAX_STATEMENTS {
            out.skip_all(&rest, Skip::Budget);
            break;
        }
        let blocked = match blocked(client).await {
            Ok(blocked) => blocked,
            // Without pg_locks nothing can be sized safely.
            Err(e) if !e.connection_lost() => {
                out.error.get_or_insert_with(|| e.to_string());
                out.skip_all(&rest, Skip::Error);
                break;
            }
            Err(e) => return Err(e),
        };
        let (held, free): (Vec<Rel>, Vec<Rel>) =
            rest.into_iter().partition(|r| blocked.contains(&r.oid));
        out.skip_all(&held, Skip::Locked);
        rest = free;
        if rest.is_empty() {
            break;
        }
        statements += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let partial = size_in_order(client, &rest, left, lock_wait).await?;
        let done = partial.sizes.len();
        out.sizes.extend(partial.sizes);
        if out.error.is_none() {
            out.error = partial.error;
        }
        match partial.stop {
            None => rest.clear(),
            Some(Stop::At(why)) => {
                if let Some(failed) = rest.get(done) {
                    out.skipped.push((failed.oid, why));
                }
                rest.drain(..(done + 1).min(rest.len()));
            }
            Some(Stop::Rest(why)) => {
                out.skip_all(&rest[done..], why);
                rest.clear();
            }
        }
    }
    Ok(out)
}

/// Where a sizing statement stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// On the relation after the last size returned, for this reason.
    At(Skip),
    /// Before the remaining relations, for this reason.
    Rest(Skip),
}

/// What one sizing statement returned.
#[derive(Debug, Default)]
pub struct Partial {
    /// The sizes returned before it ended, in the order asked.
    pub sizes: Vec<(u32, Option<f64>)>,
    /// Why it ended early, if it did.
    pub stop: Option<Stop>,
    /// The error that ended it, when unexpected.
    pub error: Option<String>,
}

/// Sizes `rels` in this order with one statement that waits at most
/// `lock_wait` for any lock and runs at most `budget`; the sizes computed
/// before it stopped are returned with where and why it stopped. This is
/// step 2 of the module's procedure alone: [`measure`] checks pg_locks
/// first, so that normally nothing waits at all.
pub async fn size_in_order(
    client: &Client,
    rels: &[Rel],
    budget: Duration,
    lock_wait: Duration,
) -> Result<Partial, CollectError> {
    let mut partial = Partial::default();
    let sql = sizing_sql(rels, budget, lock_wait);
    let stream = match client.simple_query_raw(&sql).await {
        Ok(stream) => stream,
        Err(e) => return stopped(partial, e, false),
    };
    futures_util::pin_mut!(stream);
    // Statement 1 sets the limits, statement 2 returns the sizes.
    let mut completed = 0;
    let mut sizing = false;
    while let Some(message) = stream.next().await {
        match message {
            Ok(SimpleQueryMessage::CommandComplete(_)) => completed += 1,
            Ok(SimpleQueryMessage::RowDescription(_)) => sizing = completed == 1,
            Ok(SimpleQueryMessage::Row(row)) if sizing => {
                let expected = rels.get(partial.sizes.len()).map(|r| r.oid);
                let oid = row.get(0).and_then(|v| v.parse::<u32>().ok());
                if oid.is_none() || oid != expected {
                    // Not the promised order: nothing after this can be
                    // attributed, so the rest waits for the next pass.
                    partial.stop = Some(Stop::Rest(Skip::Error));
                    partial.error = Some(format!(
                        "sizes came back out of order: oid {:?} where {expected:?} was asked",
                        row.get(0)
                    ));
                    return Ok(partial);
                }
                let size = row.get(1).and_then(|v| v.parse::<f64>().ok());
                partial.sizes.push((expected.unwrap_or_default(), size));
            }
            Ok(_) => {}
            Err(e) => return stopped(partial, e, sizing),
        }
    }
    Ok(partial)
}

/// Turns the error that ended a sizing statement into a stop, or into the
/// run's failure when the connection is gone. `sizing`: whether the sizing
/// statement itself had started, so that a failure is its current
/// relation's.
fn stopped(
    mut partial: Partial,
    source: tokio_postgres::Error,
    sizing: bool,
) -> Result<Partial, CollectError> {
    let code = source.code().cloned();
    let err = CollectError::Query {
        what: SIZES_WHAT,
        source,
    };
    if err.connection_lost() {
        return Err(err);
    }
    partial.stop = Some(match code {
        Some(c) if c == SqlState::LOCK_NOT_AVAILABLE && sizing => Stop::At(Skip::Locked),
        Some(c) if c == SqlState::QUERY_CANCELED => Stop::Rest(Skip::Budget),
        _ if sizing => {
            partial.error = Some(err.to_string());
            Stop::At(Skip::Error)
        }
        _ => {
            partial.error = Some(err.to_string());
            Stop::Rest(Skip::Error)
        }
    });
    Ok(partial)
}

/// The sizing message: limits, then one size per relation in array order
/// (a function scan over the arrays keeps it). Only numbers pgvigil formats
/// itself go into the text.
fn sizing_sql(rels: &[Rel], budget: Duration, lock_wait: Duration) -> String {
    let mut oids = String::with_capacity(rels.len() * 8);
    let mut kinds = String::with_capacity(rels.len() * 2);
    for (i, rel) in rels.iter().enumerate() {
        if i > 0 {
            oids.push(',');
            kinds.push(',');
        }
        let _ = write!(oids, "{}", rel.oid);
        kinds.push(if rel.table { 't' } else { 'f' });
    }
    let millis = |d: Duration| d.as_millis().max(1);
    format!(
        "SELECT pg_catalog.set_config('lock_timeout', '{}', true), pg_catalog.set_config('statement_timeout', '{}', true);
SELECT u.rel AS oid, CASE WHEN u.is_table THEN pg_catalog.pg_table_size(u.rel) ELSE pg_catalog.pg_relation_size(u.rel) END AS size
  FROM ROWS FROM (pg_catalog.unnest('{{{oids}}}'::pg_catalog.oid[]), pg_catalog.unnest('{{{kinds}}}'::pg_catalog.bool[])) AS u(rel, is_table)",
        millis(lock_wait),
        millis(budget),
    )
}

const SIZES_WHAT: &str = "relation sizes";

/// Relations of this database whose size call would wait: those with an
/// ACCESS EXCLUSIVE lock granted or awaited (prepared transactions
/// included), tables whose TOAST table has one, and tables whose TOAST
/// index has one. One reading of the lock table; the joins run only over
/// what it found, which is usually nothing.
const BLOCKED_SQL: &str = "
WITH locked AS MATERIALIZED (
  SELECT l.relation FROM pg_catalog.pg_locks l
   WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
     AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))
SELECT relation AS oid FROM locked
UNION
SELECT c.oid FROM pg_catalog.pg_class c JOIN locked ON locked.relation = c.reltoastrelid
UNION
SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_index i ON i.indrelid = c.reltoastrelid
  JOIN locked ON locked.relation = i.indexrelid";
const BLOCKED_WHAT: &str = "pg_locks";

/// Step 1: the oids `BLOCKED_SQL` finds.
pub async fn blocked(client: &Client) -> Result<HashSet<u32>, CollectError> {
    query(client, BLOCKED_WHAT, BLOCKED_SQL, &[])
        .await?
        .iter()
        .map(|row| row.get("oid"))
        .collect()
}

/// What pg_class says without opening anything: pages as of the last
/// VACUUM, ANALYZE or CREATE INDEX (heap and TOAST for a table), times the
/// block size. Free space and visibility maps are not counted. No estimate
/// when pg_class has no page count (never vacuumed nor analyzed, or empty).
const ESTIMATES_SQL: &str = "
SELECT c.oid, CASE WHEN c.relpages > 0
         THEN (c.relpages + coalesce(t.relpages, 0))::float8 * pg_catalog.current_setting('block_size')::float8 END AS size
  FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_class t ON t.oid = c.reltoastrelid
 WHERE c.oid = ANY($1::pg_catalog.oid[])";
const ESTIMATES_WHAT: &str = "pg_class.relpages";

/// Size estimates of relations never measured, where pg_class has one.
pub async fn estimates(client: &Client, oids: &[u32]) -> Result<HashMap<u32, f64>, CollectError> {
    let mut out = HashMap::new();
    for row in query(client, ESTIMATES_WHAT, ESTIMATES_SQL, &[&oids]).await? {
        if let Some(size) = row.get::<Option<f64>>("size")? {
            out.insert(row.get("oid")?, size);
        }
    }
    Ok(out)
}

/// What is known of one relation's size.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    /// The last size measured, if ever.
    bytes: Option<f64>,
    /// Why the latest pass (or a run since) did not measure it; `None`
    /// when it did.
    skipped: Option<Skip>,
}

/// One database's sizes between runs.
#[derive(Debug, Default)]
pub struct DatabaseSizes {
    /// Runs since the last sizing pass.
    runs_since: Option<u32>,
    entries: HashMap<u32, Entry>,
}

/// The size to publish for one relation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    /// The last size measured, if ever.
    pub bytes: Option<f64>,
    /// Whether the latest pass (or a run since) measured it.
    pub measured: bool,
}

impl DatabaseSizes {
    /// Whether this run is a sizing pass. Every run counts, whatever its
    /// sizing met: a pass that skipped relations is not repeated at once.
    pub fn due(&self) -> bool {
        self.runs_since.is_none_or(|n| n + 1 >= SIZE_RUNS)
    }

    /// The relations this run measures, in order. Always: those never
    /// tried and those skipped for a lock (pg_locks says for free whether
    /// it is still held). In a pass also the rest, those the last pass did
    /// not reach first, so that a pass cut short by its budget is taken up
    /// where it stopped.
    pub fn plan(&self, rels: &[Rel], pass: bool) -> Vec<Rel> {
        let rank = |rel: &Rel| match self.entries.get(&rel.oid) {
            None => Some(0),
            Some(Entry {
                skipped: Some(Skip::Locked),
                ..
            }) => Some(1),
            Some(Entry {
                skipped: Some(_), ..
            }) => pass.then_some(2),
            Some(_) => pass.then_some(3),
        };
        let mut ranked: Vec<(u8, Rel)> = rels
            .iter()
            .filter_map(|rel| rank(rel).map(|r| (r, *rel)))
            .collect();
        ranked.sort_by_key(|(r, _)| *r);
        ranked.into_iter().map(|(_, rel)| rel).collect()
    }

    /// Records a run: what it measured and skipped, and which relations
    /// exist (the others are forgotten).
    pub fn record(&mut self, pass: bool, present: &[Rel], measured: &Measured) {
        self.runs_since = match self.runs_since {
            Some(n) if !pass => Some(n + 1),
            _ => Some(0),
        };
        for (oid, size) in &measured.sizes {
            match size {
                Some(bytes) => {
                    self.entries.insert(
                        *oid,
                        Entry {
                            bytes: Some(*bytes),
                            skipped: None,
                        },
                    );
                }
                // Dropped since the statistics were read.
                None => {
                    self.entries.remove(oid);
                }
            }
        }
        for (oid, why) in &measured.skipped {
            self.entries
                .entry(*oid)
                .or_insert(Entry {
                    bytes: None,
                    skipped: None,
                })
                .skipped = Some(*why);
        }
        let present: HashSet<u32> = present.iter().map(|r| r.oid).collect();
        self.entries.retain(|oid, _| present.contains(oid));
    }

    /// What to publish for `oid`.
    pub fn published(&self, oid: u32) -> Published {
        match self.entries.get(&oid) {
            Some(e) => Published {
                bytes: e.bytes,
                measured: e.skipped.is_none() && e.bytes.is_some(),
            },
            None => Published {
                bytes: None,
                measured: false,
            },
        }
    }

    /// Relations of `rels` never measured: they need an estimate.
    pub fn never_measured(&self, rels: &[Rel]) -> Vec<u32> {
        rels.iter()
            .filter(|r| self.entries.get(&r.oid).is_none_or(|e| e.bytes.is_none()))
            .map(|r| r.oid)
            .collect()
    }

    /// Relations not measured by the latest pass (or a run since), per
    /// reason in [`Skip::ALL`] order.
    pub fn skipped(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        for e in self.entries.values() {
            if let Some(why) = e.skipped {
                counts[Skip::ALL.iter().position(|s| *s == why).unwrap_or(0)] += 1;
            }
        }
        counts
    }
}

/// Examples of the SQL this module sends, for recognising it in
/// pg_stat_statements (fingerprints ignore the values).
pub const OWN_SQL: &[&str] = &[
    BLOCKED_SQL,
    ESTIMATES_SQL,
    "SELECT pg_catalog.set_config('lock_timeout', '50', true), pg_catalog.set_config('statement_timeout', '2500', true);
SELECT u.rel AS oid, CASE WHEN u.is_table THEN pg_catalog.pg_table_size(u.rel) ELSE pg_catalog.pg_relation_size(u.rel) END AS size
  FROM ROWS FROM (pg_catalog.unnest('{1,2}'::pg_catalog.oid[]), pg_catalog.unnest('{t,f}'::pg_catalog.bool[])) AS u(rel, is_table)",
];

#[cfg(test)]
mod tests;
