//! What an agent's scrapes say about its health, for tests that inject
//! faults: every scrape timed, `pg_up` and each collector's success, the
//! agent's sessions at the server.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::RunningAgent;
use super::metrics::Metrics;

/// The slowest scrape a test accepts. Scrapes only encode stored
/// snapshots, so they take milliseconds; the margin is for CI noise.
pub const SCRAPE_LIMIT: Duration = Duration::from_secs(2);

/// Scrapes one agent, timing each scrape, for the whole of a test.
pub struct Scrapes<'a> {
    agent: &'a RunningAgent,
    /// The test's name, for reports.
    pub what: &'static str,
    count: usize,
    total: Duration,
    worst: Duration,
    /// The worst scrape while a fault was in effect.
    worst_during_fault: Duration,
    fault: bool,
}

impl<'a> Scrapes<'a> {
    /// Starts timing scrapes of `agent` for the test named `what`.
    pub fn new(agent: &'a RunningAgent, what: &'static str) -> Scrapes<'a> {
        Scrapes {
            agent,
            what,
            count: 0,
            total: Duration::ZERO,
            worst: Duration::ZERO,
            worst_during_fault: Duration::ZERO,
            fault: false,
        }
    }

    /// Marks whether the fault is in effect, for the report.
    pub fn fault(&mut self, on: bool) {
        self.fault = on;
    }

    /// GETs `path`, asserting 200 within [`SCRAPE_LIMIT`].
    pub async fn get(&mut self, path: &str) -> Metrics {
        let started = Instant::now();
        let response = self.agent.get(path).await;
        let took = started.elapsed();
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        assert!(
            took < SCRAPE_LIMIT,
            "{}: a scrape of {path} took {took:?}",
            self.what
        );
        self.count += 1;
        self.total += took;
        self.worst = self.worst.max(took);
        if self.fault {
            self.worst_during_fault = self.worst_during_fault.max(took);
        }
        Metrics::parse(&response.body)
    }

    /// Scrapes `/metrics`.
    pub async fn metrics(&mut self) -> Metrics {
        self.get("/metrics").await
    }

    /// Scrapes every 200 ms until `f` finds what it wants; panics after
    /// `timeout` with the agent's log.
    pub async fn until<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        f: impl Fn(&Metrics) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics().await;
            if let Some(v) = f(&m) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out after {timeout:?} waiting for {what}\nlast scrape's health: {:?}\nagent log:\n{}",
                self.what,
                health(&m),
                self.agent.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Prints the scrape latencies (visible with `--nocapture`).
    pub fn report(&self) {
        let mean = self.total / self.count.max(1) as u32;
        let during = if self.worst_during_fault.is_zero() {
            String::new()
        } else {
            format!(", worst during the fault {:?}", self.worst_during_fault)
        };
        println!(
            "{}: {} scrapes, mean {mean:?}, worst {:?}{during}",
            self.what, self.count, self.worst
        );
    }
}

/// `pg_up` and every `pgvigil_collector_success` of a scrape, for failure
/// messages.
pub fn health(m: &Metrics) -> Vec<String> {
    m.samples
        .iter()
        .filter(|s| s.name == "pg_up" || s.name == "pgvigil_collector_success")
        .map(|s| {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{}{{{}}}={}", s.name, labels.join(","), s.value)
        })
        .collect()
}

/// `pgvigil_collector_success` of `target` (all targets if `None`), by
/// collector.
pub fn successes(m: &Metrics, target: Option<&str>) -> Vec<(String, f64)> {
    m.find("pgvigil_collector_success", &[])
        .filter(|s| target.is_none_or(|t| s.labels.get("target").map(String::as_str) == Some(t)))
        .map(|s| (s.labels["collector"].clone(), s.value))
        .collect()
}

/// Whether `target` is up and every one of its collectors succeeded last
/// time (at least `min` collectors reporting).
pub fn all_ok(m: &Metrics, target: Option<&str>, min: usize) -> bool {
    let labels: Vec<(&str, &str)> = target.map(|t| ("target", t)).into_iter().collect();
    let s = successes(m, target);
    m.get("pg_up", &labels) == Some(1.0) && s.len() >= min && s.iter().all(|(_, v)| *v == 1.0)
}

/// Whether `target` is down and every one of its collectors failed.
///
/// The explain worker is left out: it is not a view collector but a
/// consumer of the statements report, publishing (and succeeding) only
/// when a new report arrives, which no report does while the server is
/// unreachable; its failed EXPLAINs count in `pgvigil_explain_runs_total`.
pub fn all_failed(m: &Metrics, target: Option<&str>) -> bool {
    let labels: Vec<(&str, &str)> = target.map(|t| ("target", t)).into_iter().collect();
    let s: Vec<_> = successes(m, target)
        .into_iter()
        .filter(|(c, _)| c != "explain")
        .collect();
    m.get("pg_up", &labels) == Some(0.0) && !s.is_empty() && s.iter().all(|(_, v)| *v == 0.0)
}

/// The agent's sessions at the server (`application_name = 'pgvigil'`).
pub async fn agent_sessions(admin: &Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgvigil'",
            &[],
        )
        .await
        .expect("count the agent's sessions")
        .get(0)
}

/// How many collectors a default config runs against a plain cluster
/// (server, connections, active_sessions, databases, database_size,
/// replication, slots, subscriptions, wal, checkpoints, io, archiver,
/// filesystem, tables, vacuum, vacuum_tables, schema, statements, amcheck:
/// on by default, it succeeds and publishes nothing where the extension is
/// missing).
pub const COLLECTORS: usize = 19;

/// `[collectors]` lines putting the collectors with longer default
/// intervals on 1 s too, so that every collector's success says something
/// about the last second.
pub const EVERY_SECOND: &str = "tables = \"1s\"\ndatabase_size = \"1s\"\nstatements = \"1s\"\n\
     vacuum_tables = \"1s\"\nschema = \"1s\"\namcheck = \"1s\"\n";
