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

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::{self, Prepared, Shared};
use crate::config::{Collectors, Config, Explain, Notify, Redis, Target};

/// One watched target of either kind, as the config names it.
#[derive(Clone, Copy)]
enum Watched<'a> {
    /// A `[[target]]`.
    Postgres(&'a Target),
    /// A `[[redis]]`.
    Redis(&'a Redis),
}

impl<'a> Watched<'a> {
    /// Every target of `config`, PostgreSQL ones first, in file order.
    fn all(config: &'a Config) -> Vec<Watched<'a>> {
        config
            .targets
            .iter()
            .map(Watched::Postgres)
            .chain(config.redis.iter().map(Watched::Redis))
            .collect()
    }

    fn name(self) -> &'a str {
        match self {
            Watched::Postgres(t) => &t.name,
            Watched::Redis(r) => &r.name,
        }
    }

    fn prepare(self, config: &Config, shared: &Shared) -> Prepared {
        match self {
            Watched::Postgres(t) => agent::prepare(config, t, shared),
            Watched::Redis(r) => agent::prepare_redis(config, r, shared),
        }
    }
}

/// Everything a target's tasks were built from; equal means "nothing to
/// do".
#[derive(Debug, Clone, PartialEq)]
struct Fingerprint {
    target: Option<Target>,
    redis: Option<Redis>,
    collectors: Collectors,
    explain: Option<Explain>,
    notify: Notify,
}

impl Fingerprint {
    fn of(config: &Config, watched: Watched) -> Fingerprint {
        let (target, redis) = match watched {
            Watched::Postgres(t) => (Some(t.clone()), None),
            Watched::Redis(r) => (None, Some(r.clone())),
        };
        Fingerprint {
            target,
            redis,
            collectors: config.collectors.clone(),
            explain: config.explain.clone(),
            notify: config.notify.clone(),
        }
    }
}

/// How long a reload waits for a stopped target's tasks to end before
/// the store forgets or empties its entry. Collectors stop at their next
/// poll; an EXPLAIN being cancelled may take a moment.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// One running target: what it was built from, and how to stop it.
struct Running {
    name: String,
    fingerprint: Fingerprint,
    token: CancellationToken,
    /// Its tasks (closed: it only ever waits for them).
    tasks: TaskTracker,
}

impl Running {
    /// Cancels the target's tasks; what to wait on until they have ended.
    fn stop(self) -> TaskTracker {
        self.token.cancel();
        self.tasks
    }
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
        for (target, prepared) in Watched::all(config).into_iter().zip(prepared) {
            supervisor.launch(Fingerprint::of(config, target), prepared);
        }
        supervisor
    }

    fn launch(&mut self, fingerprint: Fingerprint, prepared: Prepared) {
        let token = self.token.child_token();
        let name = prepared.name().to_string();
        let tasks = TaskTracker::new();
        prepared.start(&tasks, &token);
        tasks.close();
        // Shutdown waits for every target's tasks, started now or later.
        let waited = tasks.clone();
        self.tracker.spawn(async move { waited.wait().await });
        self.running.push(Running {
            name,
            fingerprint,
            token,
            tasks,
        });
    }

    /// Brings the running targets in line with `config` (already
    /// validated): stops removed and changed targets, starts new and
    /// changed ones, leaves the others running.
    pub async fn apply(&mut self, config: &Config) -> Changes {
        if config.notify != self.notify {
            // Every fingerprint holds `[notify]`, so every target is rebuilt
            // and picks the new notifier up.
            self.shared.notifier = config.notify.desktop.then(crate::notify::Notifier::start);
            self.notify = config.notify.clone();
        }
        let mut changes = Changes::default();
        let mut old = std::mem::take(&mut self.running);
        let mut start = Vec::new();
        let mut stopped = Vec::new();
        let watched = Watched::all(config);
        for &target in &watched {
            let fingerprint = Fingerprint::of(config, target);
            match old.iter().position(|r| r.name == target.name()) {
                Some(i) if old[i].fingerprint == fingerprint => {
                    changes.kept.push(target.name().to_string());
                    self.running.push(old.swap_remove(i));
                }
                Some(i) => {
                    stopped.push(old.swap_remove(i).stop());
                    changes.rebuilt.push(target.name().to_string());
                    start.push((target, fingerprint));
                }
                None => {
                    changes.added.push(target.name().to_string());
                    start.push((target, fingerprint));
                }
            }
        }
        for gone in old {
            changes.removed.push(gone.name.clone());
            stopped.push(gone.stop());
        }
        // No result of a stopped task may land in the store after it has
        // been retargeted (a rebuilt target's fresh entry, say, showing the
        // old session's pg_up).
        for tasks in stopped {
            if tokio::time::timeout(STOP_WAIT, tasks.wait()).await.is_err() {
                tracing::warn!("a stopped target's tasks did not end within {STOP_WAIT:?}");
            }
        }
        let prepared: Vec<_> = start
            .into_iter()
            .map(|(target, fingerprint)| (fingerprint, target.prepare(config, &self.shared)))
            .collect();
        // The store follows before the new tasks run, so their first
        // results land in fresh entries.
        let names = watched.iter().map(|t| {
            let collectors = prepared
                .iter()
                .find(|(_, p)| p.name() == t.name())
                .map(|(_, p)| p.collector_names());
            (t.name().to_string(), collectors)
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
        let order = |name: &str| watched.iter().position(|t| t.name() == name);
        self.running.sort_by_key(|r| order(&r.name));
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Environment;

    /// A config with targets `(name, port)` on a closed port (nothing
    /// needs to answer), plus `rest`.
    fn config(targets: &[(&str, u16)], rest: &str) -> Config {
        let mut text = String::new();
        for (name, port) in targets {
            text.push_str(&format!(
                "[[target]]\nname = \"{name}\"\ndsn = \"postgresql://u:pw@127.0.0.1:{port}/db?connect_timeout=1\"\n"
            ));
        }
        text.push_str(rest);
        Config::parse(&text, "test", &Environment::process()).expect("a valid config")
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn only_what_changed_is_rebuilt() {
        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        let first = config(&[("a", 1), ("b", 1)], "");
        let mut agent = agent::Agent::new(&first);
        let mut supervisor = Supervisor::start(&mut agent, &first, &tracker, &token);
        // [web] is the HTTP server's, not a target's.
        let web = format!(
            "[web]\nbasic_auth_users = {{ p = '{}' }}\n",
            bcrypt::hash("x", 4).unwrap()
        );
        let cases = [
            // (targets, rest, added, removed, rebuilt, kept)
            (
                vec![("a", 1), ("b", 1)],
                "",
                vec![],
                vec![],
                vec![],
                vec!["a", "b"],
            ),
            (
                vec![("a", 1), ("b", 2)],
                "",
                vec![],
                vec![],
                vec!["b"],
                vec!["a"],
            ),
            (
                vec![("c", 1), ("a", 1)],
                "",
                vec!["c"],
                vec!["b"],
                vec![],
                vec!["a"],
            ),
            (
                vec![("c", 1), ("a", 1)],
                &web,
                vec![],
                vec![],
                vec![],
                vec!["c", "a"],
            ),
            (
                vec![("c", 1), ("a", 1)],
                "[collectors]\ndefault_interval = \"7s\"\n",
                vec![],
                vec![],
                vec!["c", "a"],
                vec![],
            ),
        ];
        for (targets, rest, added, removed, rebuilt, kept) in cases {
            let changes = supervisor.apply(&config(&targets, rest)).await;
            let want = Changes {
                added: names(&added),
                removed: names(&removed),
                rebuilt: names(&rebuilt),
                kept: names(&kept),
            };
            assert_eq!(changes, want, "{targets:?} {rest:?}");
            let stored: Vec<String> = agent
                .store
                .target_names()
                .iter()
                .map(|n| n.to_string())
                .collect();
            let configured: Vec<String> = targets.iter().map(|(n, _)| n.to_string()).collect();
            assert_eq!(stored, configured, "the store follows the config's order");
        }
        token.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[tokio::test]
    async fn redis_targets_are_added_rebuilt_and_removed_like_the_others() {
        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        let redis = |name: &str, port: u16| {
            format!("[[redis]]\nname = \"{name}\"\nurl = \"redis://127.0.0.1:{port}\"\n")
        };
        let first = config(&[("a", 1)], &redis("cache", 1));
        let mut agent = agent::Agent::new(&first);
        let mut supervisor = Supervisor::start(&mut agent, &first, &tracker, &token);
        let stored = |agent: &agent::Agent| -> Vec<String> {
            agent
                .store
                .target_names()
                .iter()
                .map(|n| n.to_string())
                .collect()
        };
        assert_eq!(stored(&agent), ["a", "cache"]);
        let changes = supervisor
            .apply(&config(
                &[("a", 1)],
                &format!("{}{}", redis("cache", 2), redis("other", 1)),
            ))
            .await;
        assert_eq!(changes.rebuilt, names(&["cache"]));
        assert_eq!(changes.added, names(&["other"]));
        assert_eq!(changes.kept, names(&["a"]));
        assert_eq!(stored(&agent), ["a", "cache", "other"]);
        let changes = supervisor.apply(&config(&[("a", 1)], "")).await;
        assert_eq!(changes.removed.len(), 2);
        assert_eq!(stored(&agent), ["a"]);
        // A Redis target may not take a PostgreSQL target's name.
        let text = format!(
            "[[target]]\nname = \"a\"\ndsn = \"postgresql://u@h/db\"\n{}",
            redis("a", 1)
        );
        let err = Config::parse(&text, "test", &Environment::process()).unwrap_err();
        assert!(err.to_string().contains("redis[0].name"), "{err}");
        token.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
