//! The latest result of every collector: the one thing scrapes read.
//!
//! Collectors write here after each run; `/metrics`, `/readyz`, the JSON API
//! and `pgvigil once` only read. A failed run replaces the collector's
//! families with nothing (stale numbers would lie about a server that is
//! gone) and keeps the health series that say why.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::collect::statements::report::StatementsDetail;
use crate::collect::vacuum::report::VacuumReport;
use crate::collect::vacuum::report::tables::VacuumTablesReport;
use crate::desc;
use crate::explain::plan::PlanRecord;
use crate::metric::{Desc, Family};

static UP: Desc = desc!(Gauge "pg_up", [], "1 if the last attempt to reach the PostgreSQL server succeeded, else 0.");
static SUCCESS: Desc = desc!(Gauge "pgvigil_collector_success", ["collector"], "1 if the collector's last run succeeded, else 0.");
static DURATION: Desc = desc!(Gauge "pgvigil_collector_duration", unit = Seconds, ["collector"], "How long the collector's last run took.");
static LAST_SUCCESS: Desc = desc!(Gauge "pgvigil_collector_last_success_timestamp", unit = Seconds, ["collector"], "When the collector last succeeded, as a Unix time.", only_when = "the collector has succeeded at least once");

static REDIS_UP: Desc = desc!(Gauge "redis_up", [], "1 if the last attempt to reach the Redis server succeeded (connected and answered), else 0.");

/// The health family of a `[[redis]]` target.
pub static REDIS_HEALTH_METRICS: &[&Desc] = &[&REDIS_UP];

/// Descriptors of the health families derived from the store itself.
pub static HEALTH_METRICS: &[&Desc] = &[&UP, &SUCCESS, &DURATION, &LAST_SUCCESS];

// The names Prometheus and Alertmanager use for the same facts, so the same
// alert (`pgvigil_config_last_reload_successful == 0`) reads alike.
static RELOAD_OK: Desc = desc!(Gauge "pgvigil_config_last_reload_successful", [], "1 if the last attempt to load the config (at start, on SIGHUP or POST /-/reload) succeeded, else 0: the agent still runs the previous config.");
static RELOAD_AT: Desc = desc!(Gauge "pgvigil_config_last_reload_success_timestamp", unit = Seconds, [], "When the config was last loaded successfully (at start or on a reload), as a Unix time.");

/// Descriptors of the families about the agent's config.
pub static CONFIG_METRICS: &[&Desc] = &[&RELOAD_OK, &RELOAD_AT];

/// What one collector run produced.
#[derive(Debug, Default)]
pub struct Collected {
    /// Metric families for /metrics.
    pub families: Vec<Family>,
    /// Richer results for the JSON API and `pgvigil once`, if any.
    pub detail: Option<Detail>,
}

impl From<Vec<Family>> for Collected {
    fn from(families: Vec<Family>) -> Collected {
        Collected {
            families,
            detail: None,
        }
    }
}

/// Results beyond metrics, by kind.
#[derive(Debug, Clone)]
pub enum Detail {
    /// The last interval's statement latencies, and since the last reset.
    Statements(StatementsDetail),
    /// Recent automatic plans, newest first.
    Plans(Arc<Vec<Arc<PlanRecord>>>),
    /// xmin-horizon holders, wraparound and running vacuums.
    Vacuum(Arc<VacuumReport>),
    /// Schema risks: sequences, invalid, unused and duplicate indexes.
    Schema(Arc<crate::collect::schema::report::SchemaReport>),
    /// The tables closest to wraparound and their vacuum history.
    VacuumTables(Arc<VacuumTablesReport>),
    /// amcheck progress and findings.
    Consistency(Arc<crate::collect::amcheck::report::ConsistencyReport>),
    /// The last pgbackrest verify and restore tests.
    Backup(Arc<crate::collect::backup::report::BackupReport>),
    /// The last minutes' load by wait event, per server and statement.
    ActiveSessions(Arc<crate::collect::active_sessions::report::LoadReport>),
    /// A Redis target's top commands with their latency percentiles.
    RedisCommands(Arc<crate::collect::redis::report::CommandsReport>),
    /// A Redis target's slowest slow-log entries.
    RedisSlowlog(Arc<crate::collect::redis::report::SlowlogReport>),
}

/// What one run of a collector left behind.
#[derive(Debug, Clone)]
pub struct CollectorState {
    /// Families of the last successful run; empty after a failure.
    pub families: Arc<Vec<Family>>,
    /// The last successful run's detail, if the collector has one; kept
    /// after a failure so the API can still show the last interval.
    pub detail: Option<Detail>,
    /// Whether the last run succeeded.
    pub success: bool,
    /// Wall time of the last run.
    pub duration: Duration,
    /// When the collector last succeeded.
    pub last_success: Option<SystemTime>,
    /// Why the last run failed, one line, safe to show (no secrets).
    pub last_error: Option<String>,
    /// A label every series of this collector carries (`pgbouncer`, the
    /// console's name).
    pub label: Option<(&'static str, Arc<str>)>,
}

/// The outcome of one collector run, as handed to [`Store::record`].
#[derive(Debug)]
pub struct Outcome {
    /// What was collected, or a one-line reason for failure.
    pub result: Result<Collected, String>,
    /// Wall time the run took.
    pub duration: Duration,
    /// Families published even when the run failed (an `up` gauge at 0).
    pub on_failure: Vec<Family>,
    /// A label for all of this collector's series.
    pub label: Option<(&'static str, Arc<str>)>,
}

impl Outcome {
    /// An outcome with no failure families and no extra label.
    pub fn plain(result: Result<Collected, String>, duration: Duration) -> Outcome {
        Outcome {
            result,
            duration,
            on_failure: Vec::new(),
            label: None,
        }
    }
}

#[derive(Debug, Default)]
struct TargetEntry {
    up: Option<bool>,
    /// A `[[redis]]` target: its `up` is `redis_up`, not `pg_up`.
    redis: bool,
    expected: Vec<&'static str>,
    collectors: BTreeMap<&'static str, CollectorState>,
}

/// Everything collected so far, per target and collector.
#[derive(Debug)]
pub struct Store {
    targets: RwLock<Vec<(Arc<str>, TargetEntry)>>,
    generation: AtomicU64,
    config: std::sync::Mutex<ConfigLoads>,
}

/// The outcome of loading the config: at start, then each reload.
#[derive(Debug, Clone, Copy)]
struct ConfigLoads {
    last_successful: bool,
    last_success: SystemTime,
}

/// One target's stored state, read in one go for encoding.
#[derive(Debug, Clone)]
pub struct TargetView {
    /// The target's name: the `target` label of every one of its series,
    /// however many targets there are.
    pub name: Arc<str>,
    /// `pg_up` (or `redis_up`), once known.
    pub up: Option<bool>,
    /// Whether it is a `[[redis]]` target.
    pub redis: bool,
    /// Each collector's state, by collector name.
    pub collectors: Vec<(&'static str, CollectorState)>,
}

impl Store {
    /// A store for the named targets, each expecting the listed collectors.
    pub fn new(targets: Vec<(String, Vec<&'static str>)>) -> Store {
        let targets = targets
            .into_iter()
            .map(|(name, expected)| {
                let entry = TargetEntry {
                    expected,
                    ..TargetEntry::default()
                };
                (Arc::from(name), entry)
            })
            .collect();
        Store {
            targets: RwLock::new(targets),
            generation: AtomicU64::new(0),
            // A store is made from a config that loaded.
            config: std::sync::Mutex::new(ConfigLoads {
                last_successful: true,
                last_success: SystemTime::now(),
            }),
        }
    }

    /// Follows a new config's targets, in its order: a target named in
    /// `targets` and not in `fresh` keeps everything stored for it; a new
    /// one, or one in `fresh` (its config changed), starts empty; a target
    /// no longer named is forgotten, so its series disappear at once.
    pub fn retarget(&self, targets: Vec<(String, Vec<&'static str>)>, fresh: &[String]) {
        let mut current = self.targets.write().unwrap_or_else(|e| e.into_inner());
        let mut old: Vec<_> = std::mem::take(&mut *current);
        for (name, expected) in targets {
            let kept = old
                .iter()
                .position(|(n, _)| **n == *name)
                .map(|i| old.swap_remove(i))
                .filter(|_| !fresh.contains(&name));
            let (name, mut entry) =
                kept.unwrap_or_else(|| (Arc::from(name), TargetEntry::default()));
            entry.expected = expected;
            current.push((name, entry));
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Records an attempt to load the config.
    pub fn config_loaded(&self, successful: bool) {
        let mut loads = self.config.lock().unwrap_or_else(|e| e.into_inner());
        loads.last_successful = successful;
        if successful {
            loads.last_success = SystemTime::now();
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// `pgvigil_config_last_reload_*`: whether the last load succeeded,
    /// and when one last did.
    pub fn config_families(&self) -> Vec<Family> {
        let loads = *self.config.lock().unwrap_or_else(|e| e.into_inner());
        vec![
            Family::single(&RELOAD_OK, if loads.last_successful { 1.0 } else { 0.0 }),
            Family::single(&RELOAD_AT, unix_seconds(loads.last_success)),
        ]
    }

    /// Changes whenever anything is stored, so readers can cache what they
    /// derive from the store (encoded pages) until it does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn with_target<R>(&self, target: &str, f: impl FnOnce(&mut TargetEntry) -> R) -> Option<R> {
        let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        targets
            .iter_mut()
            .find(|(name, _)| &**name == target)
            .map(|(_, entry)| f(entry))
    }

    /// Records whether the target's server answered; returns what was
    /// recorded before (`None` until the first attempt).
    pub fn set_up(&self, target: &str, up: bool) -> Option<bool> {
        self.with_target(target, |entry| entry.up.replace(up))
            .flatten()
    }

    /// Records whether a `[[redis]]` target's server answered (published
    /// as `redis_up`); returns what was recorded before.
    pub fn set_redis_up(&self, target: &str, up: bool) -> Option<bool> {
        self.with_target(target, |entry| {
            entry.redis = true;
            entry.up.replace(up)
        })
        .flatten()
    }

    /// Stores one collector run.
    pub fn record(&self, target: &str, collector: &'static str, outcome: Outcome) {
        self.with_target(target, |entry| {
            let previous = entry.collectors.get(collector);
            let (previous_success, previous_detail) = (
                previous.and_then(|s| s.last_success),
                previous.and_then(|s| s.detail.clone()),
            );
            let now = SystemTime::now();
            let state = match outcome.result {
                Ok(collected) => CollectorState {
                    families: Arc::new(collected.families),
                    detail: collected.detail,
                    success: true,
                    duration: outcome.duration,
                    last_success: Some(now),
                    last_error: None,
                    label: outcome.label,
                },
                Err(reason) => CollectorState {
                    families: Arc::new(outcome.on_failure),
                    detail: previous_detail,
                    success: false,
                    duration: outcome.duration,
                    last_success: previous_success,
                    last_error: Some(reason),
                    label: outcome.label,
                },
            };
            entry.collectors.insert(collector, state);
        });
    }

    /// True once every target has run each of its collectors at least once,
    /// whatever the result (`/readyz`).
    pub fn ready(&self) -> bool {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        targets.iter().all(|(_, entry)| {
            entry
                .expected
                .iter()
                .all(|name| entry.collectors.contains_key(name))
        })
    }

    /// The collectors `target` expects to run (none for an unknown target).
    pub fn expected(&self, target: &str) -> Vec<&'static str> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        targets
            .iter()
            .find(|(name, _)| &**name == target)
            .map(|(_, entry)| entry.expected.clone())
            .unwrap_or_default()
    }

    /// Names of all targets, in configuration order.
    pub fn target_names(&self) -> Vec<Arc<str>> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        targets.iter().map(|(name, _)| name.clone()).collect()
    }

    /// A consistent copy of the stored state, optionally of one target only.
    /// Families are shared, not copied.
    pub fn view(&self, only: Option<&str>) -> Vec<TargetView> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        targets
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == &**name))
            .map(|(name, entry)| TargetView {
                name: name.clone(),
                up: entry.up,
                redis: entry.redis,
                collectors: entry
                    .collectors
                    .iter()
                    .map(|(k, v)| (*k, v.clone()))
                    .collect(),
            })
            .collect()
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Now, as Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> f64 {
    unix_seconds(SystemTime::now())
}

impl CollectorState {
    /// This collector's family described by `desc`, if it published one.
    pub fn family(&self, desc: &'static Desc) -> Option<&Family> {
        self.families.iter().find(|f| f.is(desc))
    }
}

impl TargetView {
    /// The family described by `desc`, whichever collector published it.
    pub fn family(&self, desc: &'static Desc) -> Option<&Family> {
        self.collectors.iter().find_map(|(_, s)| s.family(desc))
    }

    /// The value of `desc`'s series with exactly these label values.
    pub fn value(&self, desc: &'static Desc, labels: &[&str]) -> Option<f64> {
        self.family(desc)?.value(labels)
    }

    /// The health families derived from this target's state: `pg_up` and the
    /// `pgvigil_collector_*` series.
    pub fn health_families(&self) -> Vec<Family> {
        let mut families = Vec::with_capacity(HEALTH_METRICS.len());
        if let Some(up) = self.up {
            let desc = if self.redis { &REDIS_UP } else { &UP };
            families.push(Family::single(desc, if up { 1.0 } else { 0.0 }));
        }
        let mut success = Family::new(&SUCCESS);
        let mut duration = Family::new(&DURATION);
        let mut last = Family::new(&LAST_SUCCESS);
        for (name, state) in &self.collectors {
            success.push(&[name], if state.success { 1.0 } else { 0.0 });
            duration.push(&[name], state.duration.as_secs_f64());
            if let Some(t) = state.last_success {
                last.push(&[name], unix_seconds(t));
            }
        }
        families.extend([success, duration, last]);
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static THING: Desc = desc!(Gauge "pg_thing", [], "A thing.");

    fn ok() -> Outcome {
        Outcome::plain(
            Ok(vec![Family::single(&THING, 1.0)].into()),
            Duration::from_millis(3),
        )
    }

    #[test]
    fn ready_only_after_every_collector_ran_once() {
        let store = Store::new(vec![("a".into(), vec!["x", "y"]), ("b".into(), vec!["x"])]);
        assert!(!store.ready());
        store.record("a", "x", ok());
        store.record("a", "y", Outcome::plain(Err("boom".into()), Duration::ZERO));
        assert!(!store.ready());
        store.record("b", "x", ok());
        assert!(store.ready());
    }

    #[test]
    fn failure_drops_families_but_keeps_last_success_time() {
        let store = Store::new(vec![("a".into(), vec!["x"])]);
        store.record("a", "x", ok());
        store.record("a", "x", Outcome::plain(Err("gone".into()), Duration::ZERO));
        let view = store.view(None);
        let (_, state) = &view[0].collectors[0];
        assert!(!state.success);
        assert!(state.families.is_empty());
        assert!(state.last_success.is_some());
        assert_eq!(state.last_error.as_deref(), Some("gone"));
    }

    #[test]
    fn retarget_keeps_unchanged_targets_and_empties_the_rest() {
        let store = Store::new(vec![
            ("a".into(), vec!["x"]),
            ("b".into(), vec!["x"]),
            ("c".into(), vec!["x"]),
        ]);
        for t in ["a", "b", "c"] {
            store.record(t, "x", ok());
            store.set_up(t, true);
        }
        store.retarget(
            vec![
                ("d".into(), vec!["x"]),
                ("b".into(), vec!["x"]),
                ("a".into(), vec!["x", "y"]),
            ],
            &["b".to_string()],
        );
        let view = store.view(None);
        let names: Vec<_> = view.iter().map(|v| &*v.name).collect();
        assert_eq!(names, ["d", "b", "a"]);
        // a: kept, with what it had; b: rebuilt; d: new; c: gone.
        assert_eq!(view[2].up, Some(true));
        assert_eq!(view[2].collectors.len(), 1);
        assert!(view[1].up.is_none() && view[1].collectors.is_empty());
        assert!(view[0].collectors.is_empty());
        // a now expects y too, which has not run.
        assert!(!store.ready());
    }

    #[test]
    fn config_loads_keep_the_last_success_time() {
        let store = Store::new(vec![]);
        let value = |i: usize| match store.config_families()[i].series[0].value {
            crate::metric::Value::Number(v) => v,
            ref other => panic!("{other:?}"),
        };
        assert_eq!(value(0), 1.0);
        let loaded = value(1);
        assert!(loaded > 0.0);
        store.config_loaded(false);
        assert_eq!(value(0), 0.0);
        assert_eq!(value(1), loaded);
        store.config_loaded(true);
        assert_eq!(value(0), 1.0);
        assert!(value(1) >= loaded);
    }

    #[test]
    fn health_families_report_up_and_each_collector() {
        let store = Store::new(vec![("a".into(), vec!["x"]), ("b".into(), vec![])]);
        store.set_up("a", false);
        store.record("a", "x", ok());
        let view = store.view(Some("a"));
        assert_eq!(view.len(), 1);
        assert_eq!(&*view[0].name, "a");
        let families = view[0].health_families();
        let names: Vec<_> = families.iter().map(|f| f.desc.name).collect();
        assert_eq!(
            names,
            [
                "pg_up",
                "pgvigil_collector_success",
                "pgvigil_collector_duration",
                "pgvigil_collector_last_success_timestamp"
            ]
        );
        assert_eq!(
            families[0].series[0].value,
            crate::metric::Value::Number(0.0)
        );
        assert_eq!(families[1].series[0].labels, ["x"]);
    }
}
