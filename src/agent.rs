//! Wires targets, their collectors, the store and the outputs together.
//!
//! [`Agent::start`] is the daemon: every collector of every target on its
//! own schedule. [`Agent::collect_once`] is `pgvigil once`: each collector
//! run in turn, then the same store is read by the same encoders.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::collect::{self, Scheduled, process::ProcessSampler};
use crate::config::Config;
use crate::exposition::{self, Format};
use crate::schedule::{self, TargetHandle};
use crate::snapshot::{Outcome, Store};
use crate::target::session::{ConnectError, Limits, Session};

/// One running (or once-run) agent.
pub struct Agent {
    /// Everything collected so far.
    pub store: Arc<Store>,
    process: ProcessSampler,
    targets: Vec<(TargetHandle, Vec<Scheduled>)>,
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

impl Agent {
    /// Builds the agent for `config`; nothing runs until `start` or
    /// `collect_once`.
    pub fn new(config: &Config) -> Agent {
        let limits = Limits {
            statement_timeout: config.collectors.timeout,
            lock_timeout: config.collectors.lock_timeout,
        };
        let mut store_targets = Vec::new();
        let mut prepared = Vec::new();
        for target in &config.targets {
            let collectors = collect::for_target(config);
            store_targets.push((
                target.name.clone(),
                collectors.iter().map(|s| s.collector.name()).collect(),
            ));
            let session = Session::new(Arc::new(target.conn.clone()), limits);
            prepared.push((
                target.name.clone(),
                Arc::new(Mutex::new(session)),
                collectors,
            ));
        }
        let store = Arc::new(Store::new(store_targets));
        let targets = prepared
            .into_iter()
            .map(|(name, session, collectors)| {
                let handle = TargetHandle {
                    name: Arc::from(name),
                    session,
                    store: store.clone(),
                    budget: config.collectors.timeout,
                };
                (handle, collectors)
            })
            .collect();
        Agent {
            store,
            process: ProcessSampler::default(),
            targets,
        }
    }

    /// Starts every collector of every target on its schedule.
    pub fn start(&mut self, tracker: &TaskTracker, token: &CancellationToken) {
        for (handle, collectors) in self.targets.drain(..) {
            tracing::info!(target_name = %handle.name, collectors = collectors.len(), "watching target");
            for scheduled in collectors {
                schedule::spawn(tracker, token.child_token(), handle.clone(), scheduled);
            }
        }
    }

    /// Runs every collector of every target once, in turn. Fails only when
    /// a target cannot be reached at all; a failing collector is recorded
    /// as such.
    pub async fn collect_cycle(&mut self) -> Result<(), OnceError> {
        for (handle, collectors) in &mut self.targets {
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
            .any(|(_, cs)| cs.iter().any(|s| s.collector.wants_two_samples()))
        {
            tokio::time::sleep(interval).await;
            for (handle, collectors) in &mut self.targets {
                run_all(handle, collectors, |s| s.collector.wants_two_samples()).await;
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
    pub fn metrics(&self, format: Format) -> String {
        let views = self.store.view(None);
        exposition::encode(exposition::scoped(&views, self.process.sample()), format)
    }

    /// One target's metrics only (`/probe?target=NAME`); `None` if there is
    /// no such target.
    pub fn probe(&self, target: &str, format: Format) -> Option<String> {
        let views = self.store.view(Some(target));
        if views.is_empty() {
            return None;
        }
        Some(exposition::encode(
            exposition::scoped(&views, Vec::new()),
            format,
        ))
    }
}

async fn run_all(
    handle: &TargetHandle,
    collectors: &mut [Scheduled],
    select: impl Fn(&Scheduled) -> bool,
) {
    for scheduled in collectors.iter_mut().filter(|s| select(s)) {
        let started = tokio::time::Instant::now();
        let result = schedule::run_once(handle, scheduled.collector.as_mut()).await;
        if let Err(e) = &result {
            tracing::warn!(target_name = %handle.name, collector = scheduled.collector.name(), error = %e, "collector failed");
        }
        let outcome = Outcome {
            result: result.map_err(|e| e.to_string()),
            duration: started.elapsed(),
        };
        handle
            .store
            .record(&handle.name, scheduled.collector.name(), outcome);
    }
}
