//! The daemon's targets while it runs: started from the config, and
//! brought in line with a new config on reload (SIGHUP, `POST /-/reload`).
//!
//! Each running target is known by its name and a fingerprint: its own
//! validated config (DSN, password as read from `password_file` or the
//! environment, databases, consoles, logs, queries) and the settings its
//! tasks were built from (`[collectors]`, `[explain]`, `[notify]`). On a
//! reload a target whose fingerprint is unchanged is left alone: its
//! connections, collector history, synthetic totals and stored snapshots
//! carry on. A target whose fingerprint changed is stopped and built
//! afresh; one no longer configured is stopped and forgotten. Not here:
//! reading the file (`config/`) or the HTTP side of a reload (`http.rs`).

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::{self, Prepared, Shared};
use crate::config::{Collectors, Config, Explain, Notify, Target};

/// Everything a target's tasks were built from; equal means "nothing to
/// do".
#[derive(Debug, Clone, PartialEq)]
struct Fingerprint {
    target: Target,
    collectors: Collectors,
    explain: Option<Explain>,
    notify: Notify,
}

impl Fingerprint {
    fn of(config: &Config, target: &Target) -> Fingerprint {
        Fingerprint {
            target: target.clone(),
            collectors: config.collectors.clone(),
            explain: config.explain.clone(),
            notify: config.notify.clone(),
        }
    }
}

/// One running target: what it was built from, and how to stop it.
struct Running {
    name: String,
    fingerprint: Fingerprint,
    token: CancellationToken,
}

/// What a reload changed, by target name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// New targets, started.
    pub added: Vec<String>,
    /// Targets no longer configured, stopped.
    pub removed: Vec<String>,
    /// Targets whose config changed, stopped and started afresh.
    pub rebuilt: Vec<String>,
    /// Targets left running as they were.
    pub kept: Vec<String>,
}

/// Owns the running targets' tasks.
pub struct Supervisor {
    shared: Shared,
    notify: Notify,
    tracker: TaskTracker,
    token: CancellationToken,
    running: Vec<Running>,
}

impl Supervisor {
    /// Starts the targets `agent` was built with for `config`; every task
    /// stops when `token` is cancelled.
    pub fn start(
        agent: &mut agent::Agent,
        config: &Config,
        tracker: &TaskTracker,
        token: &CancellationToken,
    ) -> Supervisor {
        let (prepared, shared) = agent.take_targets();
        let mut supervisor = Supervisor {
            shared,
            notify: config.notify.clone(),
            tracker: tracker.clone(),
            token: token.clone(),
            running: Vec::new(),
        };
        for (target, prepared) in config.targets.iter().zip(prepared) {
            supervisor.launch(Fingerprint::of(config, target), prepared);
        }
        supervisor
    }

    fn launch(&mut self, fingerprint: Fingerprint, prepared: Prepared) {
        let token = self.token.child_token();
        let name = prepared.name().to_string();
        prepared.start(&self.tracker, &token);
        self.running.push(Running {
            name,
            fingerprint,
            token,
        });
    }

    /// Brings the running targets in line with `config` (already
    /// validated): stops removed and changed targets, starts new and
    /// changed ones, leaves the others running.
    pub fn apply(&mut self, config: &Config) -> Changes {
        if config.notify != self.notify {
            // Every fingerprint holds `[notify]`, so every target is rebuilt
            // and picks the new notifier up.
            self.shared.notifier = config.notify.desktop.then(crate::notify::Notifier::start);
            self.notify = config.notify.clone();
        }
        let mut changes = Changes::default();
        let mut old = std::mem::take(&mut self.running);
        let mut start = Vec::new();
        for target in &config.targets {
            let fingerprint = Fingerprint::of(config, target);
            match old.iter().position(|r| r.name == target.name) {
                Some(i) if old[i].fingerprint == fingerprint => {
                    changes.kept.push(target.name.clone());
                    self.running.push(old.swap_remove(i));
                }
                Some(i) => {
                    old.swap_remove(i).token.cancel();
                    changes.rebuilt.push(target.name.clone());
                    start.push((target, fingerprint));
                }
                None => {
                    changes.added.push(target.name.clone());
                    start.push((target, fingerprint));
                }
            }
        }
        for gone in old {
            gone.token.cancel();
            changes.removed.push(gone.name);
        }
        let prepared: Vec<_> = start
            .into_iter()
            .map(|(target, fingerprint)| {
                (fingerprint, agent::prepare(config, target, &self.shared))
            })
            .collect();
        // The store follows before the new tasks run, so their first
        // results land in fresh entries and none of a stopped task's do.
        let names = config.targets.iter().map(|t| {
            let collectors = prepared
                .iter()
                .find(|(_, p)| p.name() == t.name)
                .map(|(_, p)| p.collector_names());
            (t.name.clone(), collectors)
        });
        let mut expected = Vec::new();
        for (name, collectors) in names {
            let collectors = collectors.unwrap_or_else(|| {
                // Kept: expects what it expected before.
                self.shared.store.expected(&name)
            });
            expected.push((name, collectors));
        }
        self.shared.store.retarget(expected, &changes.rebuilt);
        for (fingerprint, prepared) in prepared {
            self.launch(fingerprint, prepared);
        }
        // Keep the config's order for the next comparison's logs.
        let order = |name: &str| config.targets.iter().position(|t| t.name == name);
        self.running.sort_by_key(|r| order(&r.name));
        changes
    }
}
