//! Runs each collector on its own interval and stores its snapshot.
//!
//! All collectors of a target share the target's one monitoring session
//! (the agent holds a small fixed number of connections per target), taking turns through a
//! fair mutex. Each run has a time budget; a run that exceeds it has its
//! query cancelled server-side. Ticks missed while a run was slow are
//! delayed, not burst (`MissedTickBehavior::Delay`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::collect::redis::RedisCollector;
use crate::collect::{CollectError, Collected, Collector, Context, Standalone};
use crate::connection::caps::ServerIdentity;
use crate::connection::redis::RedisSession;
use crate::connection::session::Session;
use crate::snapshot::{Outcome, Store};
use crate::sql::OwnStatements;

/// Builds a collector with no history.
pub type MakeCollector = Box<dyn Fn() -> Box<dyn Collector> + Send + Sync>;

/// A collector that reads through the target's session, with what it
/// needs to start over when the server behind the target changes.
pub struct SessionJob {
    name: &'static str,
    /// The collector and its history (previous readings, top-N membership).
    collector: Box<dyn Collector>,
    /// How to build it afresh.
    make: MakeCollector,
    /// The server its history comes from, once it has run.
    server: Option<ServerIdentity>,
}

impl SessionJob {
    /// A job named `name` for the collector `make` builds.
    pub fn new(name: &'static str, make: MakeCollector) -> SessionJob {
        SessionJob {
            name,
            collector: make(),
            make,
            server: None,
        }
    }

    /// The collector, fresh if its history comes from another server than
    /// `server`: after a failover behind a VIP or a DNS name, or a restart
    /// (statistics may have been lost in crash recovery), no reading of
    /// the old server may be compared with the new one's.
    fn for_server(&mut self, server: ServerIdentity) -> &mut dyn Collector {
        if self.server.is_some_and(|s| s != server) {
            tracing::debug!(
                collector = self.name,
                "server changed: collector history dropped"
            );
            self.collector = (self.make)();
        }
        self.server = Some(server);
        self.collector.as_mut()
    }
}

/// Something the schedule runs.
pub enum Job {
    /// Reads through the target's monitoring session.
    Session(SessionJob),
    /// Reads something else (a PgBouncer's console, pgBackRest).
    Standalone {
        /// The `collector` label value.
        name: &'static str,
        /// The collector.
        collector: Box<dyn Standalone>,
    },
    /// Reads a `[[redis]]` target over its one connection.
    Redis {
        /// The `collector` label value.
        name: &'static str,
        /// The collector.
        collector: Box<dyn RedisCollector>,
    },
}

impl Job {
    /// The `collector` label value.
    pub fn name(&self) -> &'static str {
        match self {
            Job::Session(j) => j.name,
            Job::Standalone { name, .. } | Job::Redis { name, .. } => name,
        }
    }

    /// Whether `pgvigil once` should run it twice.
    pub fn wants_two_samples(&self) -> bool {
        matches!(self, Job::Session(j) if j.collector.wants_two_samples())
    }
}

/// A job and how often it runs.
pub struct Scheduled {
    /// What runs.
    pub job: Job,
    /// Its interval.
    pub interval: Duration,
}

/// What the schedule needs to know about one target.
#[derive(Clone)]
pub struct TargetHandle {
    /// The target's name in the store.
    pub name: Arc<str>,
    /// How to reach it.
    pub params: Arc<crate::connection::dsn::ConnParams>,
    /// Databases per-database collectors visit.
    pub databases: Arc<crate::config::Databases>,
    /// Its monitoring session, shared by its collectors.
    pub session: Arc<Mutex<Session>>,
    /// The store results go to.
    pub store: Arc<Store>,
    /// Time budget of one collector run.
    pub budget: Duration,
    /// Desktop notifications, when enabled: told when the target is lost.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
    /// pgvigil's own statements, for collectors that build SQL at run time.
    pub own: OwnStatements,
    /// A `[[redis]]` target's one connection, shared by its collectors
    /// (then `session` is never connected).
    pub redis: Option<Arc<Mutex<RedisSession>>>,
}

/// Runs one collector once and stores the outcome: connect if needed,
/// collect within the budget, keep the session and `pg_up` truthful, log a
/// failure when it first appears or changes. The recorded duration starts
/// once the session is ours, so it is the collector's own time, not time
/// spent queueing behind the target's other collectors.
pub async fn run_and_record(target: &TargetHandle, job: &mut Job, errors: &mut ErrorLog) {
    let name = job.name();
    let (on_failure, label) = match job {
        Job::Standalone { collector, .. } => (collector.on_failure(), collector.label()),
        Job::Session(_) | Job::Redis { .. } => (Vec::new(), None),
    };
    let (result, duration) = match job {
        Job::Session(job) => {
            let mut session = target.session.lock().await;
            let started = Instant::now();
            let result = run_once(&mut session, target, job).await;
            (result, started.elapsed())
        }
        Job::Standalone { collector, .. } => {
            let started = Instant::now();
            let result = match tokio::time::timeout(target.budget, collector.collect()).await {
                Ok(result) => result,
                Err(_) => Err(CollectError::Timeout {
                    budget: target.budget,
                }),
            };
            (result, started.elapsed())
        }
        Job::Redis { collector, .. } => match &target.redis {
            Some(session) => {
                let mut session = session.lock().await;
                let started = Instant::now();
                let result = run_redis(&mut session, target, collector.as_mut()).await;
                (result, started.elapsed())
            }
            None => (
                Err(CollectError::Unavailable("not a Redis target".to_string())),
                Duration::ZERO,
            ),
        },
    };
    errors.note(&target.name, name, &result);
    let outcome = Outcome {
        result: result.map_err(|e| e.to_string()),
        duration,
        on_failure,
        label,
    };
    target.store.record(&target.name, name, outcome);
}

async fn run_once(
    session: &mut Session,
    target: &TargetHandle,
    job: &mut SessionJob,
) -> Result<Collected, CollectError> {
    let result = collect_within_budget(session, target, job).await;
    let up = match &result {
        Ok(_) => true,
        Err(e) if e.connection_lost() => {
            session.reset(&e.to_string());
            false
        }
        Err(_) => true,
    };
    let was_up = target.store.set_up(&target.name, up);
    if let (Some(true), false, Some(notifier), Err(e)) = (was_up, up, &target.notifier, &result) {
        notifier.target_lost(&target.name, &e.to_string());
    }
    result
}

/// One Redis collector run: connect if needed (with backoff), collect
/// (every command has the timeout), keep `redis_up` truthful: it is 0 as
/// soon as any collector finds the server gone, 1 as soon as one reaches
/// it, so within one interval either way.
async fn run_redis(
    session: &mut RedisSession,
    target: &TargetHandle,
    collector: &mut dyn RedisCollector,
) -> Result<Collected, CollectError> {
    let result = match session.connect().await {
        Ok(link) => collector.collect(link).await,
        Err(e) => Err(CollectError::Connect(e)),
    };
    let up = match &result {
        Ok(_) => true,
        Err(e) if e.connection_lost() => {
            session.reset(&e.to_string());
            false
        }
        Err(_) => true,
    };
    let was_up = target.store.set_redis_up(&target.name, up);
    if let (Some(true), false, Some(notifier), Err(e)) = (was_up, up, &target.notifier, &result) {
        notifier.target_lost(&target.name, &e.to_string());
    }
    result
}

async fn collect_within_budget(
    session: &mut Session,
    target: &TargetHandle,
    job: &mut SessionJob,
) -> Result<Collected, CollectError> {
    let budget = target.budget;
    let limits = session.limits();
    let live = session.connect().await?;
    let collector = job.for_server(live.caps.identity);
    let mut cx = Context {
        client: &live.client,
        caps: &mut live.caps,
        params: &target.params,
        limits,
        databases: &target.databases,
        own: &target.own,
        store: &target.store,
        target: &target.name,
    };
    match tokio::time::timeout(budget, collector.collect(&mut cx)).await {
        Ok(result) => result,
        Err(_) => {
            // The abandoned query may still run server-side; cancel it, then
            // check that the connection answers again. A slow query answers
            // (cancelled) at once; a stalled network or a hung server takes
            // the cancel request and stays silent, and is unreachable, not
            // slow: drop the connection and let pg_up say so.
            if session.cancel_query().await && session.answers(ANSWER_AFTER_CANCEL).await {
                Err(CollectError::Timeout { budget })
            } else {
                session.reset("no answer within the budget, nor after a cancel request");
                Err(CollectError::Unresponsive { budget })
            }
        }
    }
}

/// How long a connection may take to answer after its query was cancelled
/// before it counts as unresponsive.
const ANSWER_AFTER_CANCEL: Duration = Duration::from_secs(2);

/// Remembers the last error per collector so a persistent failure is
/// logged once, not every cycle.
#[derive(Default)]
pub struct ErrorLog {
    last: Option<String>,
}

impl ErrorLog {
    fn note(&mut self, target: &str, collector: &str, result: &Result<Collected, CollectError>) {
        match (result, &self.last) {
            (Ok(_), Some(_)) => {
                tracing::info!(target_name = target, collector, "collector recovered");
                self.last = None;
            }
            (Err(e), last) => {
                let text = e.to_string();
                if last.as_deref() != Some(text.as_str()) {
                    tracing::warn!(target_name = target, collector, error = %text, "collector failed");
                } else {
                    tracing::debug!(target_name = target, collector, error = %text, "collector still failing");
                }
                self.last = Some(text);
            }
            (Ok(_), None) => {}
        }
    }
}

/// Runs `scheduled` for `target` until `token` is cancelled.
pub fn spawn(
    tracker: &TaskTracker,
    token: CancellationToken,
    target: TargetHandle,
    mut scheduled: Scheduled,
) {
    tracker.spawn(async move {
        let mut ticker = tokio::time::interval(scheduled.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut errors = ErrorLog::default();
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = run_and_record(&target, &mut scheduled.job, &mut errors) => {}
            }
        }
    });
}
