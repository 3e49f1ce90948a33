//! Wires targets, their collectors, the store and the outputs together.
//!
//! [`prepare`] builds one target; the daemon's supervisor
//! (`supervisor.rs`) starts each on its own schedule and rebuilds them when
//! the config is reloaded. [`Agent::collect_once`] is `pgvigil once`: each
//! collector run in turn, then the same store is read by the same
//! encoders.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::collect::process::ProcessSampler;
use crate::config::{Config, Redis, Target};
use crate::connection::session::{ConnectError, Limits, Session};
use crate::explain::worker::{Reports, Worker};
use crate::exposition::{self, Format};
use crate::registry;
use crate::schedule::{self, Scheduled, TargetHandle};
use crate::snapshot::Store;
use crate::sql::OwnStatements;

/// A cached page: all targets (`None`) or one, in one format.
type EncodedKey = (Option<String>, Format);

/// One running (or once-run) agent.
pub struct Agent {
    /// Everything collected so far.
    pub store: Arc<Store>,
    /// The last hour of a few figures per target, for the page's charts.
    pub history: Arc<crate::history::History>,
    process: ProcessSampler,
    /// Encoded snapshots by (target or all, format), with the store
    /// generation they were encoded at.
    encoded: std::sync::Mutex<HashMap<EncodedKey, (u64, Bytes)>>,
    /// Targets built and not yet started (all of them before `start`;
    /// what `pgvigil once` runs).
    targets: Vec<Prepared>,
    /// What every target's tasks share.
    shared: Shared,
}

/// What building a target needs beyond its own config, the same for all
/// targets.
#[derive(Clone)]
pub struct Shared {
    /// The store results go to.
    pub store: Arc<Store>,
    /// pgvigil's own statements.
    pub own: OwnStatements,
    /// Desktop notifications, when `[notify] desktop` is on.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
}

/// One target built from the config: its collectors and what its EXPLAIN
/// worker needs, not yet running.
pub struct Prepared {
    handle: TargetHandle,
    collectors: Vec<Scheduled>,
    /// Slow executions and auto_explain plans from the log (with
    /// `[target.logs]`), for the EXPLAIN worker.
    feed: Option<Arc<crate::logs::feed::LogFeed>>,
    /// Each new statements report (when automatic EXPLAIN is on).
    reports: Option<Reports>,
    /// Automatic EXPLAIN settings, when enabled (and statements collected).
    explain: Option<crate::config::Explain>,
}

impl Prepared {
    /// The target's name.
    pub fn name(&self) -> &str {
        &self.handle.name
    }

    /// The names of its collectors, as the store expects them.
    pub fn collector_names(&self) -> Vec<&'static str> {
        self.collectors.iter().map(|s| s.job.name()).collect()
    }

    /// Starts every collector of the target on its schedule, and its
    /// EXPLAIN worker; all stop when `token` is cancelled.
    pub fn start(self, tracker: &TaskTracker, token: &CancellationToken) {
        let Prepared {
            handle,
            collectors,
            feed,
            reports,
            explain,
        } = self;
        tracing::info!(target_name = %handle.name, collectors = collectors.len(), "watching target");
        for scheduled in collectors {
            schedule::spawn(tracker, token.child_token(), handle.clone(), scheduled);
        }
        if let (Some(settings), Some(reports)) = (explain, reports) {
            let worker = Worker::new(
                handle.name.clone(),
                settings,
                (*handle.params).clone(),
                handle.store.clone(),
                handle.session.clone(),
                handle.notifier.clone(),
                handle.own.clone(),
            )
            .with_feed(feed);
            tracker.spawn(worker.run(reports, token.child_token()));
        }
    }
}

/// `pgvigil once` could not reach a target.
#[derive(Debug, thiserror::Error)]
#[error("target {target}")]
pub struct OnceError {
    /// The target's name.
    pub target: String,
    /// Why it could not be reached.
    #[source]
    pub source: ConnectError,
}

/// Builds one target of `config`: its session (not yet connected), its
/// collectors and its worker's inputs. Nothing runs until it is started.
pub fn prepare(config: &Config, target: &Target, shared: &Shared) -> Prepared {
    let limits = Limits {
        statement_timeout: config.collectors.timeout,
        lock_timeout: config.collectors.lock_timeout,
        monitoring: true,
    };
    let explain = config
        .explain
        .clone()
        .filter(|_| config.collectors.statements.interval.is_some());
    let feed = target
        .logs
        .as_ref()
        .map(|_| Arc::new(crate::logs::feed::LogFeed::default()));
    // The statements collector hands each report to the worker.
    let (sender, reports) = match explain {
        Some(_) => {
            let (sender, receiver) = tokio::sync::watch::channel(None);
            (Some(Arc::new(sender)), Some(receiver))
        }
        None => (None, None),
    };
    let collectors = registry::jobs(config, target, feed.clone(), sender, &shared.own);
    let params = Arc::new(target.conn.clone());
    let session = Session::new(params.clone(), limits);
    let handle = TargetHandle {
        name: Arc::from(target.name.as_str()),
        params,
        databases: Arc::new(target.databases.clone()),
        session: Arc::new(Mutex::new(session)),
        store: shared.store.clone(),
        budget: config.collectors.timeout,
        notifier: shared.notifier.clone(),
        own: shared.own.clone(),
        redis: None,
    };
    Prepared {
        handle,
        collectors,
        feed,
        reports,
        explain,
    }
}

/// Builds one `[[redis]]` target: its one connection (not yet open) and
/// its collectors, scheduled and stored like a PostgreSQL target's.
pub fn prepare_redis(config: &Config, redis: &Redis, shared: &Shared) -> Prepared {
    let session = crate::connection::redis::RedisSession::new(
        Arc::new(redis.endpoint.clone()),
        config.collectors.timeout,
    );
    let limits = Limits {
        statement_timeout: config.collectors.timeout,
        lock_timeout: config.collectors.lock_timeout,
        monitoring: true,
    };
    // The PostgreSQL session of the handle stays unused (never connected).
    let params = Arc::new(crate::connection::dsn::ConnParams::default());
    let handle = TargetHandle {
        name: Arc::from(redis.name.as_str()),
        params: params.clone(),
        databases: Arc::new(crate::config::Databases::Auto),
        session: Arc::new(Mutex::new(Session::new(params, limits))),
        store: shared.store.clone(),
        budget: config.collectors.timeout,
        notifier: shared.notifier.clone(),
        own: shared.own.clone(),
        redis: Some(Arc::new(Mutex::new(session))),
    };
    Prepared {
        handle,
        collectors: registry::redis_jobs(redis),
        feed: None,
        reports: None,
        explain: None,
    }
}

impl Agent {
    /// Builds the agent for `config`; nothing runs until `start` or
    /// `collect_once`.
    pub fn new(config: &Config) -> Agent {
        let store = Arc::new(Store::new(Vec::new()));
        let shared = Shared {
            store: store.clone(),
            own: registry::own_statements(),
            notifier: config.notify.desktop.then(crate::notify::Notifier::start),
        };
        let targets: Vec<Prepared> = config
            .targets
            .iter()
            .map(|target| prepare(config, target, &shared))
            .chain(
                config
                    .redis
                    .iter()
                    .map(|r| prepare_redis(config, r, &shared)),
            )
            .collect();
        store.retarget(
            targets
                .iter()
                .map(|p| (p.name().to_string(), p.collector_names()))
                .collect(),
            &[],
        );
        Agent {
            store,
            history: Arc::default(),
            process: ProcessSampler::default(),
            encoded: std::sync::Mutex::new(HashMap::new()),
            targets,
            shared,
        }
    }

    /// pgvigil's own statements: SQL registered here is left out of the
    /// statement metrics and counted as the cost of being monitored.
    pub fn own_statements(&self) -> &OwnStatements {
        &self.shared.own
    }

    /// Hands over the targets built for the config the agent was made
    /// with, and what building more needs: the supervisor starts them.
    pub fn take_targets(&mut self) -> (Vec<Prepared>, Shared) {
        (std::mem::take(&mut self.targets), self.shared.clone())
    }

    /// Runs every collector of every target once, in turn. Fails only when
    /// a target cannot be reached at all; a failing collector is recorded
    /// as such.
    pub async fn collect_cycle(&mut self) -> Result<(), OnceError> {
        for Prepared {
            handle, collectors, ..
        } in &mut self.targets
        {
            // A Redis target that cannot be reached says so in redis_up
            // and its collectors' errors; PostgreSQL is the one that must
            // answer for `once` to succeed.
            if handle.redis.is_some() {
                run_all(handle, collectors, |_| true).await;
                continue;
            }
            let first = handle.session.lock().await.connect().await.map(|_| ());
            if let Err(source) = first {
                return Err(OnceError {
                    target: handle.name.to_string(),
                    source,
                });
            }
            run_all(handle, collectors, |_| true).await;
        }
        Ok(())
    }

    /// `pgvigil once`: one cycle, then, `interval` later, a second run of
    /// the collectors that report changes between runs.
    pub async fn collect_once(&mut self, interval: Duration) -> Result<(), OnceError> {
        self.collect_cycle().await?;
        if self
            .targets
            .iter()
            .any(|p| p.collectors.iter().any(|s| s.job.wants_two_samples()))
        {
            tokio::time::sleep(interval).await;
            for Prepared {
                handle, collectors, ..
            } in &mut self.targets
            {
                run_all(handle, collectors, |s| s.job.wants_two_samples()).await;
            }
        }
        Ok(())
    }

    /// `/api/v1/statements`: per target, the last interval's statement
    /// latencies, or why there are none.
    pub fn statements_json(&self) -> serde_json::Value {
        crate::report::statements_json(&self.store.view(None))
    }

    /// All targets' metrics plus the agent's own, encoded.
    pub fn metrics(&self, format: Format) -> Bytes {
        let snapshots = self.encoded(None, format).unwrap_or_default();
        let mut own = self.process.sample();
        own.extend(self.store.config_families());
        let process = exposition::encode_part(
            vec![exposition::Scoped {
                target: None,
                label: None,
                families: Arc::new(own),
            }],
            format,
        );
        exposition::join(&[process.as_bytes(), &snapshots], format)
    }

    /// One target's metrics only (`/probe?target=NAME`); `None` if there is
    /// no such target.
    pub fn probe(&self, target: &str, format: Format) -> Option<Bytes> {
        let snapshots = self.encoded(Some(target), format)?;
        Some(exposition::join(&[&snapshots], format))
    }

    /// The stored snapshots of all targets (or one), encoded; re-encoded
    /// only when the store has changed since, so a scrape between two
    /// collector runs is a copy.
    fn encoded(&self, target: Option<&str>, format: Format) -> Option<Bytes> {
        let generation = self.store.generation();
        let mut cache = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        let key = (target.map(str::to_string), format);
        if let Some((at, body)) = cache.get(&key)
            && *at == generation
        {
            return Some(body.clone());
        }
        let views = self.store.view(target);
        if target.is_some() && views.is_empty() {
            return None;
        }
        let body = Bytes::from(exposition::encode_part(exposition::scoped(&views), format));
        cache.insert(key, (generation, body.clone()));
        Some(body)
    }
}

async fn run_all(
    handle: &TargetHandle,
    collectors: &mut [Scheduled],
    select: impl Fn(&Scheduled) -> bool,
) {
    for scheduled in collectors.iter_mut().filter(|s| select(s)) {
        let mut errors = schedule::ErrorLog::default();
        schedule::run_and_record(handle, &mut scheduled.job, &mut errors).await;
    }
}
