//! The explain worker: picks slow statements from each new statements
//! report, gets real parameter values where it can, runs the guarded
//! EXPLAIN on its own connection and publishes plans with findings.
//!
//! Selection (docs/explain.md): interval mean over `explain.slow_threshold`,
//! largest interval execution time first; at most once per statement per
//! `explain.per_statement_interval` (an hour) and `explain.max_per_hour` in
//! all; none while the server is under
//! pressure (connections near the limit, a lagging replica) and none for a
//! statement whose mean is over half the EXPLAIN timeout.
//!
//! Parameters: a sampled `pg_stat_activity` row with the statement's
//! `query_id` (PostgreSQL 14+) whose text is complete, has literal values
//! and fingerprints like the statement. Without one, a generic plan.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::findings;
use super::plan::{Mode, PlanRecord, PreviousPlan};
use super::redact;
use super::runner::{self, ExplainError, Explained, Limits, Server};
use crate::collect::statements::query as pgss;
use crate::collect::statements::report::{StatementSummary, StatementsReport};
use crate::config::Explain as Settings;
use crate::connection::dsn::ConnParams;
use crate::connection::session::{self, Session};
use crate::desc;
use crate::metric::{Desc, Family};
use crate::snapshot::{Collected, Detail};
use crate::snapshot::{Outcome, Store, unix_now};
use crate::sql::OwnStatements;

static RUNS: Desc = desc!(Counter "pgvigil_explain_runs", ["result"],
    "EXPLAINs run by the worker, by result: analyze, plain, generic, refused, failed; each from 0 when the agent starts.",
    only_when = "automatic EXPLAIN is enabled");
static SKIPPED: Desc = desc!(Counter "pgvigil_explain_skipped", ["reason"],
    "Slow statements not explained, by reason: rate_limit, pressure, too_slow; each from 0 when the agent starts.",
    only_when = "automatic EXPLAIN is enabled");

/// Every `result` of [`RUNS`] and `reason` of [`SKIPPED`]: published at 0
/// before the first, so `rate()` and `increase()` see the first event.
const RESULTS: [&str; 5] = ["analyze", "plain", "generic", "refused", "failed"];
const SKIP_REASONS: [&str; 3] = ["rate_limit", "pressure", "too_slow"];
static FINDINGS: Desc = desc!(Gauge "pg_plan_findings", ["datname", "queryid", "fingerprint", "finding", "severity"],
    "Findings in the latest automatic plan of a statement, 1 per finding.",
    only_when = "a plan had findings");
static CHANGES: Desc = desc!(Counter "pg_plan_changes", ["datname", "queryid"],
    "Times a statement's plan shape (node types, relations, indexes) changed between automatic EXPLAINs.",
    only_when = "a statement was explained");

/// The worker's metric families.
pub static METRICS: &[&Desc] = &[&RUNS, &SKIPPED, &FINDINGS, &CHANGES];

/// Where the statements collector hands each new report to the worker.
pub type Reports = tokio::sync::watch::Receiver<Option<Arc<StatementsReport>>>;

/// How often plans auto_explain logged are taken from the log feed.
const LOGGED_PLANS_EVERY: Duration = Duration::from_secs(2);

/// Statements whose latest plan is kept (for findings and plan changes).
pub const KEPT_STATEMENTS: usize = 200;
/// Plans listed by `/api/v1/plans`.
pub const RECENT_PLANS: usize = 50;
/// How long to watch pg_stat_activity for a running instance of a statement.
pub const SAMPLE_FOR: Duration = Duration::from_secs(2);

type Key = (String, String);

/// Per-target worker state.
pub struct Worker {
    target: Arc<str>,
    settings: Settings,
    params: ConnParams,
    store: Arc<Store>,
    main: Arc<Mutex<Session>>,
    explain_session: Option<(String, Session)>,
    last_explained: HashMap<Key, Instant>,
    window: VecDeque<Instant>,
    latest: HashMap<Key, Arc<PlanRecord>>,
    changes: HashMap<Key, f64>,
    runs: BTreeMap<&'static str, f64>,
    skipped: BTreeMap<&'static str, f64>,
    recent: VecDeque<Arc<PlanRecord>>,
    notifier: Option<Arc<crate::notify::Notifier>>,
    /// pgvigil's own statements, never explained.
    own: OwnStatements,
    feed: Option<Arc<crate::logs::feed::LogFeed>>,
    report: Option<Arc<StatementsReport>>,
}

/// What a plan is of: a statement from the statements report, or one
/// auto_explain logged.
struct Subject {
    datname: String,
    usename: String,
    queryid: String,
    fingerprint: String,
    query: Option<String>,
    mean_seconds: f64,
}

impl Subject {
    fn of(s: &StatementSummary) -> Subject {
        Subject {
            datname: s.datname.clone(),
            usename: s.usename.clone(),
            queryid: s.queryid.clone(),
            fingerprint: s.fingerprint.clone(),
            query: s.query.clone(),
            mean_seconds: s.mean_seconds,
        }
    }
}

impl Worker {
    /// A worker for one target; `main` is the target's collector session,
    /// used briefly for cluster-wide reads between collector runs;
    /// `notifier` is told of each new plan.
    pub fn new(
        target: Arc<str>,
        settings: Settings,
        params: ConnParams,
        store: Arc<Store>,
        main: Arc<Mutex<Session>>,
        notifier: Option<Arc<crate::notify::Notifier>>,
        own: OwnStatements,
    ) -> Worker {
        Worker {
            target,
            settings,
            params,
            store,
            main,
            explain_session: None,
            last_explained: HashMap::new(),
            window: VecDeque::new(),
            latest: HashMap::new(),
            changes: HashMap::new(),
            runs: RESULTS.iter().map(|r| (*r, 0.0)).collect(),
            skipped: SKIP_REASONS.iter().map(|r| (*r, 0.0)).collect(),
            recent: VecDeque::new(),
            notifier,
            own,
            feed: None,
            report: None,
        }
    }

    /// Takes slow executions (with their parameter values) and
    /// auto_explain plans from the target's log.
    pub fn with_feed(mut self, feed: Option<Arc<crate::logs::feed::LogFeed>>) -> Worker {
        self.feed = feed;
        self
    }

    /// auto_explain plans from the log go straight to the findings: no
    /// statement runs. Returns whether there were any.
    fn absorb_logged_plans(&mut self) -> bool {
        let Some(feed) = &self.feed else {
            return false;
        };
        let plans = feed.take_plans();
        let any = !plans.is_empty();
        for logged in plans {
            let Some(fingerprint) = crate::sql::fingerprint(&logged.query) else {
                continue;
            };
            if self.own.contains(&fingerprint) {
                continue;
            }
            // The query id from the log, else the statement's in the last
            // statements report.
            let queryid = logged.query_id.map(|q| q.to_string()).or_else(|| {
                self.report.as_ref().and_then(|r| {
                    r.statements
                        .iter()
                        .find(|s| s.fingerprint == fingerprint && s.datname == logged.datname)
                        .map(|s| s.queryid.clone())
                })
            });
            let Some(queryid) = queryid else {
                tracing::debug!(target_name = %self.target, "auto_explain plan without a query id; set compute_query_id");
                continue;
            };
            let subject = Subject {
                datname: logged.datname,
                usename: logged.usename,
                queryid: queryid.clone(),
                query: crate::sql::normalize(&logged.query).map(|q| crate::sql::shorten(&q, 200)),
                fingerprint,
                mean_seconds: logged.seconds,
            };
            // The plan as EXPLAIN (FORMAT JSON) prints it, without the
            // statement text and parameter values auto_explain adds.
            let mut plan = logged.plan;
            if let Some(obj) = plan.as_object_mut() {
                obj.remove("Query Text");
                obj.remove("Query Parameters");
            }
            let explained = Explained {
                mode: Mode::AutoExplain,
                plan: Value::Array(vec![plan]),
                note: None,
            };
            let key = (subject.datname.clone(), queryid);
            self.remember(&subject, key, explained, "auto_explain in the server log");
        }
        any
    }

    /// Runs until `cancel`: looks for a new statements report every few
    /// seconds and explains what it selects.
    pub async fn run(mut self, mut reports: Reports, cancel: CancellationToken) {
        self.publish();
        // auto_explain plans arrive with the log; a new statements report
        // arrives through the channel, the moment the collector has it.
        let mut tick = tokio::time::interval(LOGGED_PLANS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let report = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => None,
                changed = reports.changed() => match changed {
                    Ok(()) => reports.borrow_and_update().clone(),
                    // The statements collector is gone: the agent stops.
                    Err(_) => return,
                },
            };
            let absorbed = self.absorb_logged_plans();
            let Some(report) = report else {
                if absorbed {
                    self.publish();
                }
                continue;
            };
            self.report = Some(report.clone());
            self.round(&report, &cancel).await;
            if cancel.is_cancelled() {
                return;
            }
            self.publish();
        }
    }

    /// One pass over a report's slow statements.
    async fn round(&mut self, report: &StatementsReport, cancel: &CancellationToken) {
        let threshold = self.settings.slow_threshold.as_secs_f64();
        let mut slow: Vec<&StatementSummary> = report
            .statements
            .iter()
            .filter(|s| s.mean_seconds > threshold)
            .collect();
        slow.sort_by(|a, b| b.total_seconds.total_cmp(&a.total_seconds));
        if slow.is_empty() {
            return;
        }
        if let Some(reason) = self.under_pressure() {
            tracing::info!(target_name = %self.target, reason, "explain skipped: server under pressure");
            *self.skipped.entry("pressure").or_default() += slow.len() as f64;
            return;
        }
        for statement in slow {
            if cancel.is_cancelled() {
                return;
            }
            let key = (statement.datname.clone(), statement.queryid.clone());
            if statement.mean_seconds > self.settings.statement_timeout.as_secs_f64() / 2.0 {
                *self.skipped.entry("too_slow").or_default() += 1.0;
                continue;
            }
            let now = Instant::now();
            while self
                .window
                .front()
                .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(3600))
            {
                self.window.pop_front();
            }
            let per_statement = self.settings.per_statement_interval;
            let recently = self
                .last_explained
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < per_statement);
            if recently || self.window.len() >= self.settings.max_per_hour as usize {
                *self.skipped.entry("rate_limit").or_default() += 1.0;
                continue;
            }
            self.last_explained.insert(key.clone(), now);
            self.window.push_back(now);
            self.explain_one(statement, key, cancel).await;
        }
    }

    /// Connections near the limit or a lagging replica: leave the server
    /// alone. Read from what the collectors last stored, with the same
    /// arithmetic as `/api/v1/saturation` (usable slots are
    /// `max_connections` minus the reserved ones), so the worker asks the
    /// server nothing for it.
    fn under_pressure(&self) -> Option<String> {
        let view = self.store.view(Some(&self.target)).into_iter().next()?;
        crate::saturation::pressure(&view)
    }

    async fn explain_one(
        &mut self,
        statement: &StatementSummary,
        key: Key,
        cancel: &CancellationToken,
    ) {
        let Ok(queryid) = statement.queryid.parse::<i64>() else {
            return;
        };
        let logged = self
            .feed
            .as_ref()
            .and_then(|f| f.execution(&statement.datname, &statement.fingerprint));
        let sampled = match logged {
            Some(text) => Some((text, "from the slow-statement log")),
            None => self
                .sample(queryid, statement)
                .await
                .map(|text| (text, "sampled from pg_stat_activity")),
        };
        let (sql, parameters) = match sampled {
            Some(found) => found,
            None => match self.full_text(queryid).await {
                Some(text) => (text, "none: generic plan"),
                None => {
                    self.count_run("failed");
                    tracing::info!(target_name = %self.target, queryid, "explain skipped: the statement's text is unavailable");
                    return;
                }
            },
        };
        let limits = Limits {
            statement_timeout: self.settings.statement_timeout,
            lock_timeout: Duration::from_secs(1),
        };
        let analyze = self.settings.analyze;
        let own = self.own.clone();
        let result = match self.explain_session(&statement.datname).await {
            Ok(live) => {
                let server = Server {
                    version_num: live.caps.server_version_num,
                };
                runner::explain(&live.client, server, &sql, analyze, limits, cancel, &own).await
            }
            Err(e) => Err(ExplainError::Failed(e.to_string())),
        };
        match result {
            Ok(explained) => {
                self.count_run(explained.mode.as_str());
                self.remember(&Subject::of(statement), key, explained, parameters);
            }
            Err(ExplainError::Refused(reason)) => {
                self.count_run("refused");
                tracing::info!(target_name = %self.target, queryid, reason, "explain refused");
            }
            Err(ExplainError::Cancelled) => {
                // Shutdown: stop the query server-side, then drop the connection.
                if let Some((_, session)) = self.explain_session.as_mut() {
                    session.cancel_query().await;
                }
                self.explain_session = None;
            }
            Err(ExplainError::Failed(reason)) => {
                self.count_run("failed");
                tracing::warn!(target_name = %self.target, queryid, datname = %statement.datname, error = %reason, "explain failed");
                self.explain_session = None;
            }
        }
    }

    fn count_run(&mut self, result: &'static str) {
        *self.runs.entry(result).or_default() += 1.0;
    }

    /// The explain connection, to the statement's database.
    async fn explain_session(
        &mut self,
        datname: &str,
    ) -> Result<&mut session::Live, session::ConnectError> {
        if self
            .explain_session
            .as_ref()
            .is_none_or(|(db, _)| db != datname)
        {
            let mut params = self.params.clone();
            params.dbname = Some(datname.to_string());
            let limits = session::Limits {
                statement_timeout: self.settings.statement_timeout * 2,
                lock_timeout: Duration::from_secs(1),
                monitoring: false,
            };
            self.explain_session =
                Some((datname.to_string(), Session::new(Arc::new(params), limits)));
        }
        let (_, session) = self.explain_session.as_mut().expect("set above");
        session.connect().await
    }

    /// Watches pg_stat_activity for a running instance of the statement
    /// with its literal values (14+: `query_id`).
    async fn sample(&self, queryid: i64, statement: &StatementSummary) -> Option<String> {
        let deadline = Instant::now() + SAMPLE_FOR;
        while Instant::now() < deadline {
            let rows = {
                let mut main = self.main.lock().await;
                let live = main.connect().await.ok()?;
                if live.caps.server_version_num < 140000 {
                    return None;
                }
                match live
                    .client
                    .query(SAMPLE, &[&queryid, &statement.datname])
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::debug!(error = %session::describe(&e), "pg_stat_activity sample failed");
                        return None;
                    }
                }
            };
            for row in &rows {
                let text: Option<String> = row.get("query");
                let truncated: bool = row.get("truncated");
                let Some(text) = text else { continue };
                let complete = !truncated && super::guard::param_count(&text) == 0;
                if complete
                    && crate::sql::fingerprint(&text).as_deref()
                        == Some(statement.fingerprint.as_str())
                {
                    return Some(text);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// The statement's full text from pg_stat_statements (with `$n` for
    /// its constants), for a generic plan.
    async fn full_text(&self, queryid: i64) -> Option<String> {
        let mut main = self.main.lock().await;
        let live = main.connect().await.ok()?;
        let ext = pgss::find(&live.client, &live.caps.database).await.ok()?;
        pgss::texts(&live.client, &self.own, &ext, &[queryid])
            .await
            .ok()??
            .remove(&queryid)
    }

    /// Keeps the plan: findings, shape change, redaction, bounded lists.
    fn remember(
        &mut self,
        statement: &Subject,
        key: Key,
        explained: Explained,
        parameters: &'static str,
    ) {
        let found = findings::findings(&explained.plan);
        let shape_hash = findings::shape_hash(&explained.plan);
        let mut plan = explained.plan;
        if self.settings.redact {
            redact::redact_plan(&mut plan);
        }
        // The plan before the latest change of shape stays attached until
        // the shape changes again, so a re-explain of the new plan does not
        // hide what it replaced.
        let last = self.latest.get(&key);
        let changed = last.is_some_and(|p| p.shape_hash != shape_hash);
        let previous = match last {
            Some(p) if changed => Some(Box::new(PreviousPlan {
                shape_hash: p.shape_hash.clone(),
                explained_at: p.explained_at,
                plan: p.plan.clone(),
            })),
            Some(p) => p.previous.clone(),
            None => None,
        };
        let changes = self.changes.entry(key.clone()).or_default();
        if changed {
            *changes += 1.0;
        }
        for f in &found {
            tracing::info!(
                target_name = %self.target, queryid = %statement.queryid, finding = f.id, severity = f.severity.as_str(),
                node = %f.node_path, "plan finding"
            );
        }
        let record = Arc::new(PlanRecord {
            datname: statement.datname.clone(),
            usename: statement.usename.clone(),
            queryid: statement.queryid.clone(),
            fingerprint: statement.fingerprint.clone(),
            query: statement.query.clone(),
            mode: explained.mode,
            note: explained.note,
            parameters,
            mean_seconds: statement.mean_seconds,
            explained_at: unix_now(),
            plan,
            findings: found,
            shape_hash,
            previous,
        });
        if let Some(notifier) = &self.notifier {
            notifier.plan(&self.target, &record);
        }
        self.latest.insert(key, record.clone());
        if self.latest.len() > KEPT_STATEMENTS {
            let oldest = self
                .latest
                .iter()
                .min_by(|a, b| a.1.explained_at.total_cmp(&b.1.explained_at))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.latest.remove(&k);
                self.changes.remove(&k);
            }
        }
        self.recent.push_front(record);
        self.recent.truncate(RECENT_PLANS);
    }

    /// Stores the worker's families and plans like a collector's.
    fn publish(&self) {
        let mut runs = Family::new(&RUNS);
        for (result, n) in &self.runs {
            runs.push(&[result], *n);
        }
        let mut skipped = Family::new(&SKIPPED);
        for (reason, n) in &self.skipped {
            skipped.push(&[reason], *n);
        }
        let mut findings = Family::new(&FINDINGS);
        let mut changes = Family::new(&CHANGES);
        for ((datname, queryid), record) in &self.latest {
            for f in &record.findings {
                findings.push(
                    &[
                        datname,
                        queryid,
                        &record.fingerprint,
                        f.id,
                        f.severity.as_str(),
                    ],
                    1.0,
                );
            }
            changes.push(
                &[datname, queryid],
                self.changes
                    .get(&(datname.clone(), queryid.clone()))
                    .copied()
                    .unwrap_or(0.0),
            );
        }
        let plans: Vec<Arc<PlanRecord>> = self.recent.iter().cloned().collect();
        let collected = Collected {
            families: vec![runs, skipped, findings, changes],
            detail: Some(Detail::Plans(Arc::new(plans))),
        };
        self.store.record(
            &self.target,
            "explain",
            Outcome::plain(Ok(collected), Duration::ZERO),
        );
    }
}

const SAMPLE: &str = "SELECT query,
                             octet_length(query) >= (SELECT setting::int FROM pg_catalog.pg_settings
                                                      WHERE name = 'track_activity_query_size') - 1 AS truncated
                        FROM pg_catalog.pg_stat_activity
                       WHERE query_id = $1 AND datname = $2 AND state = 'active' AND pid <> pg_catalog.pg_backend_pid()";

/// The SQL the worker sends on its own behalf.
pub const OWN_SQL: &[&str] = &[SAMPLE];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{connections, replication, server};
    use crate::metric::Family;
    use crate::snapshot::Store;

    /// A target whose collectors stored `used` client connections of 40
    /// (3 reserved), this replica's replay lag and its replicas' replay lags.
    fn view(used: f64, replica_lag: Option<f64>, replicas: &[f64]) -> crate::snapshot::TargetView {
        let store = Store::new(vec![("t".into(), vec![])]);
        let mut conns = Family::new(&connections::CONNECTIONS);
        conns.push(&["db", "app", "app", "active"], used);
        let mut families = vec![
            conns,
            Family::single(&server::MAX_CONNECTIONS, 40.0),
            Family::single(&connections::RESERVED, 3.0),
        ];
        if let Some(lag) = replica_lag {
            families.push(Family::single(&replication::REPLAY_LAG, lag));
        }
        let mut lags = Family::new(&replication::LAG_SECONDS);
        for (i, lag) in replicas.iter().enumerate() {
            let name = format!("r{i}");
            lags.push(&[name.as_str(), "10.0.0.1", "", "write"], 0.0);
            lags.push(&[name.as_str(), "10.0.0.1", "", "replay"], *lag);
        }
        families.push(lags);
        store.record(
            "t",
            "x",
            Outcome::plain(Ok(families.into()), Duration::ZERO),
        );
        store.view(None).remove(0)
    }

    #[test]
    fn pressure_is_read_from_what_the_collectors_stored() {
        // (used connections, this replica's lag, its replicas' lags, reason)
        type Case<'a> = (f64, Option<f64>, &'a [f64], Option<&'a str>);
        let cases: [Case; 6] = [
            (10.0, None, &[], None),
            // 34 of 37 usable is 92 %: over 90 %.
            (34.0, None, &[], Some("34 of 37 usable connections in use")),
            (33.0, None, &[], None),
            (5.0, Some(31.0), &[], Some("replication is 31s behind")),
            (
                5.0,
                Some(0.0),
                &[2.0, 45.0],
                Some("replication is 45s behind"),
            ),
            (5.0, None, &[2.0, 30.0], None),
        ];
        for (used, replica, replicas, want) in cases {
            assert_eq!(
                crate::saturation::pressure(&view(used, replica, replicas)).as_deref(),
                want,
                "{used} {replica:?} {replicas:?}"
            );
        }
    }
}
