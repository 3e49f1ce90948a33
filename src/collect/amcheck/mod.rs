//! Consistency checks with the `amcheck` extension: B-tree indexes with
//! `bt_index_check` and, on PostgreSQL 14+, tables with `verify_heapam`,
//! one relation at a time on a page budget, so that silent corruption is
//! found by a check rather than by a query returning wrong rows.
//!
//! # Layout
//!
//! - this file: the collector's turn (which relation next, the budget,
//!   pausing under pressure) and its metric families;
//! - `read`: the SQL (extension, relations, locks, the checks) and what
//!   each lock and privilege means;
//! - `state`: the state file that lets a restarted agent resume, and the
//!   budget arithmetic;
//! - [`report`]: progress and findings as plain data for
//!   `/api/v1/consistency`, the `/` page and `pgvigil once`.
//!
//! A pass walks every watched database in name order and, within one,
//! relations in OID order. A turn (every `interval`) checks as many as the
//! page credit pays for: `pages_per_hour` accrue (faster when the pass
//! would end later than `full_pass` after it started), an index costs its
//! size and is checked in one call, a table is checked in ranges of
//! blocks. No turn starts a check after half the collector timeout has
//! gone. A turn does nothing while the server is under pressure
//! (connections near the limit, a replica behind: the EXPLAIN worker's
//! guard, `crate::saturation::pressure`), and a relation with an ACCESS
//! EXCLUSIVE lock held or awaited is skipped for this pass.
//!
//! Databases without the extension are looked at again every
//! [`MISSING_RECHECK`]; where no watched database has it the collector
//! succeeds, publishes nothing and says so in its report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_postgres::Client;

use super::{CollectError, Collected, Collector, Context, Detail};
use crate::desc;
use crate::metric::{Desc, Family};
use crate::snapshot::unix_now;

pub(crate) mod read;
pub mod report;
pub(crate) mod state;

use read::{Extension, Outcome, Ready, Relation};
use report::{ConsistencyReport, DatabaseConsistency, Finding, Position, Skipped};
use state::State;

/// How often a database without the extension is looked at again.
pub const MISSING_RECHECK: Duration = Duration::from_secs(600);

/// `pg_amcheck_relations_checked_total`.
pub static RELATIONS: Desc = desc!(Counter "pg_amcheck_relations_checked", ["kind"],
    "Relations checked by pgvigil's amcheck collector, by kind: btree (bt_index_check) or heap (verify_heapam, 14+, counted when its last block is checked). Kept in the state file across restarts.",
    only_when = "the amcheck extension is installed in a watched database");
/// `pg_amcheck_pages_checked_total`.
pub static PAGES: Desc = desc!(Counter "pg_amcheck_pages_checked", ["kind"],
    "Pages (blocks) checked by the amcheck collector, by kind: what the checks read, against collectors.amcheck.pages_per_hour.",
    only_when = "the amcheck extension is installed in a watched database");
/// `pg_amcheck_relations_skipped_total`.
pub static SKIPPED: Desc = desc!(Counter "pg_amcheck_relations_skipped", ["reason"],
    "Relations a pass did not check, by reason: locked (an ACCESS EXCLUSIVE lock held or awaited, or the lock timeout), timeout (the check did not finish within collectors.timeout), error (any other error than corruption); /api/v1/consistency lists the latest.",
    only_when = "the amcheck extension is installed in a watched database");
/// `pg_amcheck_corrupt_relations`.
pub static CORRUPT: Desc = desc!(Gauge "pg_amcheck_corrupt_relations", ["datname"],
    "Relations of the database amcheck found corrupt (an index that bt_index_check rejects, a table with verify_heapam problems), until a later check finds them clean or they are dropped; /api/v1/consistency names them. Only databases with the extension.",
    only_when = "the amcheck extension is installed in a watched database");
/// `pg_amcheck_last_pass_timestamp_seconds`.
pub static LAST_PASS: Desc = desc!(Gauge "pg_amcheck_last_pass_timestamp", unit = Seconds, [],
    "When the last complete amcheck pass over every watched database with the extension ended, as a Unix time.",
    only_when = "a pass has completed");
/// `pg_amcheck_pass_started_timestamp_seconds`.
pub static PASS_STARTED: Desc = desc!(Gauge "pg_amcheck_pass_started_timestamp", unit = Seconds, [],
    "When the amcheck pass under way started, as a Unix time: the previous pass ended then. Older than pgvigil_amcheck_full_pass_seconds means no complete pass within the period.",
    only_when = "the amcheck extension is installed in a watched database");
/// `pgvigil_amcheck_full_pass_seconds`.
pub static FULL_PASS: Desc = desc!(Gauge "pgvigil_amcheck_full_pass", unit = Seconds, [],
    "collectors.amcheck.full_pass: the period within which every relation is to be checked.",
    only_when = "the amcheck extension is installed in a watched database");
/// `pgvigil_amcheck_paused`.
pub static PAUSED: Desc = desc!(Gauge "pgvigil_amcheck_paused", [],
    "1 while amcheck checks are paused because the server is under pressure (connections near the limit, replication behind), else 0.",
    only_when = "the amcheck extension is installed in a watched database");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &RELATIONS,
    &PAGES,
    &SKIPPED,
    &CORRUPT,
    &LAST_PASS,
    &PASS_STARTED,
    &FULL_PASS,
    &PAUSED,
];

/// The SQL this collector sends (the checks themselves are built at run
/// time with the extension's schema and registered then).
pub const OWN_SQL: &[&str] = read::OWN_SQL;

/// The `amcheck` collector.
pub struct Amcheck {
    settings: crate::config::Amcheck,
    turn: Duration,
    path: PathBuf,
    state: Option<State>,
    /// Per database: the extension's version, or when it was seen missing.
    extensions: BTreeMap<String, Result<String, Instant>>,
}

impl Amcheck {
    /// The collector of target `target`, taking a turn every `turn`.
    pub fn new(settings: crate::config::Amcheck, turn: Duration, target: &str) -> Amcheck {
        let path = state::path(&settings.state_directory, target);
        Amcheck {
            settings,
            turn,
            path,
            state: None,
            extensions: BTreeMap::new(),
        }
    }
}

/// Where a turn stopped.
enum Stop {
    /// The credit or the time is spent: the pass goes on next turn.
    Spent,
    /// Every relation of the database was looked at.
    Finished,
}

/// One turn over one database.
struct Turn<'a> {
    state: &'a mut State,
    client: &'a Client,
    ext: &'a Extension,
    own: &'a crate::sql::OwnStatements,
    datname: &'a str,
    ends: Instant,
    path: &'a Path,
}

impl Turn<'_> {
    async fn run(&mut self, relations: &[Relation]) -> Result<Stop, CollectError> {
        let datname = self.datname.to_string();
        for rel in relations {
            let position = self.state.position.clone().expect("set by the caller");
            if rel.oid < position.oid {
                continue;
            }
            if Instant::now() >= self.ends {
                return Ok(Stop::Spent);
            }
            if let Some((db, oid)) = self.state.in_flight.take()
                && db == datname
                && oid == rel.oid
            {
                self.skip(rel, "timeout", "the check did not return: it ran out of the collector's time budget or the agent stopped during it".into());
                continue;
            }
            let blocks = match read::ready(self.client, rel).await? {
                Ready::Gone => {
                    self.advance(rel);
                    continue;
                }
                Ready::Locked => {
                    self.skip(
                        rel,
                        "locked",
                        "an ACCESS EXCLUSIVE lock is held or awaited".into(),
                    );
                    continue;
                }
                Ready::Blocks(b) => b,
            };
            let done = if rel.kind == "btree" {
                self.btree(rel, blocks).await?
            } else {
                let start = if position.oid == rel.oid {
                    position.block
                } else {
                    0
                };
                self.heap(rel, blocks, start).await?
            };
            if !done {
                return Ok(Stop::Spent);
            }
        }
        Ok(Stop::Finished)
    }

    /// Checks an index if the credit covers it; false when it must wait.
    async fn btree(&mut self, rel: &Relation, blocks: i64) -> Result<bool, CollectError> {
        let pages = blocks.max(1) as f64;
        if self.state.credit < pages {
            self.state.waiting_for = pages;
            return Ok(false);
        }
        self.state.waiting_for = 0.0;
        self.start(rel);
        let outcome = read::check_btree(self.client, self.ext, self.own, rel.oid).await?;
        self.state.in_flight = None;
        match outcome {
            Outcome::Skipped(reason, message) => self.skip(rel, reason, message),
            outcome => {
                self.state.credit -= pages;
                self.state.totals.btree_relations += 1;
                self.state.totals.btree_pages += blocks.max(0) as u64;
                self.record(rel, outcome);
                self.advance(rel);
            }
        }
        Ok(true)
    }

    /// Checks the next range of a table's blocks the credit covers; false
    /// when the credit is spent before the table's end.
    async fn heap(
        &mut self,
        rel: &Relation,
        blocks: i64,
        start: i64,
    ) -> Result<bool, CollectError> {
        if start >= blocks {
            self.state.totals.heap_relations += 1;
            self.record(rel, Outcome::Clean);
            self.advance(rel);
            return Ok(true);
        }
        let affordable = self.state.credit.floor() as i64;
        if affordable < 1 {
            return Ok(false);
        }
        let end = (start + affordable).min(blocks);
        self.start(rel);
        let outcome =
            read::check_heap(self.client, self.ext, self.own, rel.oid, start, end - 1).await?;
        self.state.in_flight = None;
        match outcome {
            Outcome::Skipped(reason, message) => {
                self.skip(rel, reason, message);
                return Ok(true);
            }
            Outcome::Corrupt { .. } => {
                self.record(rel, outcome);
                self.state.position_corrupt = true;
            }
            Outcome::Clean => {}
        }
        self.state.credit -= (end - start) as f64;
        self.state.totals.heap_pages += (end - start) as u64;
        if end >= blocks {
            self.state.totals.heap_relations += 1;
            if !self.state.position_corrupt {
                self.state.clean(self.datname, rel.oid);
            }
            self.advance(rel);
            Ok(true)
        } else {
            self.state.position = Some(Position {
                datname: self.datname.to_string(),
                oid: rel.oid,
                block: end,
            });
            Ok(false)
        }
    }

    /// Marks a check as started and saves the state, so a check that never
    /// returns is skipped next time instead of retried forever.
    fn start(&mut self, rel: &Relation) {
        self.state.in_flight = Some((self.datname.to_string(), rel.oid));
        self.state.save(self.path);
    }

    fn record(&mut self, rel: &Relation, outcome: Outcome) {
        match outcome {
            Outcome::Clean => self.state.clean(self.datname, rel.oid),
            Outcome::Corrupt {
                block,
                message,
                problems,
            } => {
                tracing::error!(datname = self.datname, schemaname = %rel.schemaname, relname = %rel.relname, kind = rel.kind, ?block, %message, "amcheck found corruption");
                self.state.found(Finding {
                    datname: self.datname.to_string(),
                    oid: rel.oid,
                    schemaname: rel.schemaname.clone(),
                    relname: rel.relname.clone(),
                    kind: rel.kind.to_string(),
                    table: rel.table.as_ref().map(|t| t.1.clone()),
                    block,
                    message,
                    problems,
                    found_at: unix_now(),
                });
            }
            Outcome::Skipped(..) => {}
        }
    }

    fn skip(&mut self, rel: &Relation, reason: &str, message: String) {
        tracing::info!(datname = self.datname, relname = %rel.relname, reason, %message, "amcheck skipped a relation");
        self.state.skip(Skipped {
            datname: self.datname.to_string(),
            schemaname: rel.schemaname.clone(),
            relname: rel.relname.clone(),
            reason: reason.to_string(),
            message: Some(message),
            at: unix_now(),
        });
        self.advance(rel);
    }

    fn advance(&mut self, rel: &Relation) {
        self.state.position = Some(Position {
            datname: self.datname.to_string(),
            oid: rel.oid.saturating_add(1),
            block: 0,
        });
        self.state.position_corrupt = false;
    }
}

#[async_trait]
impl Collector for Amcheck {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let began = Instant::now();
        let ends = began + cx.limits.statement_timeout / 2;
        let now = unix_now();
        let server = format!(
            "{}:{:?}",
            cx.caps.identity.system_identifier, cx.params.ports
        );
        let turn_seconds = self.turn.as_secs_f64();
        let state = self.state.get_or_insert_with(|| State::load(&self.path));
        if state.server != server {
            *state = State {
                server,
                ..State::default()
            };
        }
        if state.pass_started == 0.0 {
            state.pass_started = now;
            state.credit_at = now;
            // A first turn has a turn's worth to spend.
            state.credit = self.settings.pages_per_hour as f64 * turn_seconds / 3600.0;
        }
        let heap = cx.caps.server_version_num >= 140000;
        let mut names = super::tables::databases(cx).await?;
        names.sort();
        self.extensions.retain(|d, _| names.contains(d));
        state.done.retain(|d| names.contains(d));
        state.database_pages.retain(|d, _| names.contains(d));
        state.findings.retain(|f| names.contains(&f.datname));

        let view = cx.store.view(Some(cx.target)).into_iter().next();
        let paused = view.as_ref().and_then(crate::saturation::pressure);
        let mut rate = self.settings.pages_per_hour as f64;
        if paused.is_some() {
            // Nothing accrues while the server is busy.
            state.credit_at = now;
        } else {
            let current = state.position.as_ref().map(|p| p.datname.as_str());
            let left = state.pages_left(
                current,
                current
                    .and_then(|d| state.database_pages.get(d))
                    .copied()
                    .unwrap_or(0.0)
                    / 2.0,
                &names,
            );
            rate = state::rate_per_hour(
                self.settings.pages_per_hour,
                self.settings.full_pass.as_secs_f64(),
                state.pass_started,
                now,
                left,
            );
            state.credit = state::accrue(
                state.credit,
                rate,
                now - state.credit_at,
                turn_seconds,
                state.waiting_for,
            );
            state.credit_at = now;
            loop {
                let current = state
                    .position
                    .as_ref()
                    .map(|p| p.datname.clone())
                    .filter(|d| names.contains(d) && !state.done.contains(d))
                    .or_else(|| names.iter().find(|d| !state.done.contains(d)).cloned());
                let Some(datname) = current else {
                    // Every database looked at: the pass is complete when
                    // one of them had the extension.
                    if self.extensions.values().any(|e| e.is_ok()) {
                        state.last_pass_completed = Some(now);
                        state.last_pass_seconds = Some(now - state.pass_started);
                        tracing::info!(seconds = now - state.pass_started, "amcheck pass complete");
                    }
                    state.pass_started = now;
                    state.done.clear();
                    state.position = None;
                    break;
                };
                if let Some(Err(seen)) = self.extensions.get(&datname)
                    && seen.elapsed() < MISSING_RECHECK
                {
                    state.done.push(datname);
                    continue;
                }
                if Instant::now() >= ends {
                    break;
                }
                let visit;
                let client = if datname == cx.caps.database {
                    cx.client
                } else {
                    visit = cx.visit(&datname).await?;
                    &visit.client
                };
                let Some(ext) = read::extension(client).await? else {
                    self.extensions.insert(datname.clone(), Err(Instant::now()));
                    state.findings.retain(|f| f.datname != datname);
                    state.database_pages.remove(&datname);
                    state.done.push(datname);
                    continue;
                };
                self.extensions
                    .insert(datname.clone(), Ok(ext.version.clone()));
                let relations = read::relations(client, heap).await?;
                state.prune(&datname, |oid| relations.iter().any(|r| r.oid == oid));
                state.database_pages.insert(
                    datname.clone(),
                    relations.iter().map(|r| r.relpages.max(1.0)).sum(),
                );
                if state.position.as_ref().is_none_or(|p| p.datname != datname) {
                    state.position = Some(Position {
                        datname: datname.clone(),
                        oid: 0,
                        block: 0,
                    });
                    state.position_corrupt = false;
                }
                let mut turn = Turn {
                    state,
                    client,
                    ext: &ext,
                    own: cx.own,
                    datname: &datname,
                    ends,
                    path: &self.path,
                };
                let stop = turn.run(&relations).await;
                // Saved whatever happened: a check in flight is skipped
                // next time, not retried forever.
                turn.state.save(&self.path);
                match stop? {
                    Stop::Spent => break,
                    Stop::Finished => {
                        state.done.push(datname);
                        state.position = None;
                    }
                }
            }
        }
        // Nothing to keep where nothing is checked: no file is written on
        // servers without the extension.
        let any = self.extensions.values().any(|e| e.is_ok());
        if any {
            state.save(&self.path);
        }
        let report = self.report(now, heap, rate, paused);
        let families = if any {
            self.publish(&report)
        } else {
            Vec::new()
        };
        Ok(Collected {
            families,
            detail: Some(Detail::Consistency(Arc::new(report))),
        })
    }
}

impl Amcheck {
    fn report(&self, now: f64, heap: bool, rate: f64, paused: Option<String>) -> ConsistencyReport {
        let state = self.state.as_ref().expect("loaded");
        let databases: Vec<DatabaseConsistency> = self
            .extensions
            .iter()
            .map(|(datname, ext)| DatabaseConsistency {
                datname: datname.clone(),
                extension: ext.as_ref().ok().cloned(),
                corrupt_relations: state
                    .findings
                    .iter()
                    .filter(|f| &f.datname == datname)
                    .count(),
            })
            .collect();
        let note = (!databases.iter().any(|d| d.extension.is_some())).then(|| {
            "the amcheck extension is not installed in any watched database: nothing is checked (CREATE EXTENSION amcheck in each database to check, and grant EXECUTE on its functions: packaging/sql/pgvigil-role.sql)".to_string()
        });
        ConsistencyReport {
            collected_at: now,
            pages_per_hour: self.settings.pages_per_hour,
            full_pass_seconds: self.settings.full_pass.as_secs_f64(),
            heap_checks: heap,
            pass_started: state.pass_started,
            last_pass_completed: state.last_pass_completed,
            last_pass_seconds: state.last_pass_seconds,
            position: state.position.clone(),
            effective_pages_per_hour: rate,
            paused,
            totals: state.totals.clone(),
            databases,
            findings: state.findings.clone(),
            skipped: state.skipped.clone(),
            note,
        }
    }

    fn publish(&self, report: &ConsistencyReport) -> Vec<Family> {
        let t = &report.totals;
        let mut relations = Family::new(&RELATIONS);
        let mut pages = Family::new(&PAGES);
        relations.push(&["btree"], t.btree_relations as f64);
        pages.push(&["btree"], t.btree_pages as f64);
        if report.heap_checks {
            relations.push(&["heap"], t.heap_relations as f64);
            pages.push(&["heap"], t.heap_pages as f64);
        }
        let mut skipped = Family::new(&SKIPPED);
        skipped.push(&["locked"], t.skipped_locked as f64);
        skipped.push(&["timeout"], t.skipped_timeout as f64);
        skipped.push(&["error"], t.skipped_error as f64);
        let mut corrupt = Family::new(&CORRUPT);
        for d in report.databases.iter().filter(|d| d.extension.is_some()) {
            corrupt.push(&[d.datname.as_str()], d.corrupt_relations as f64);
        }
        let mut families = vec![relations, pages, skipped, corrupt];
        if let Some(at) = report.last_pass_completed {
            families.push(Family::single(&LAST_PASS, at));
        }
        families.push(Family::single(&PASS_STARTED, report.pass_started));
        families.push(Family::single(&FULL_PASS, report.full_pass_seconds));
        families.push(Family::single(
            &PAUSED,
            f64::from(u8::from(report.paused.is_some())),
        ));
        families
    }
}
