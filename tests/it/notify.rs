//! Desktop notifications against a real D-Bus: a private session bus
//! (`dbus-daemon`), a notification server on it that records every
//! `Notify` call, and the agent with `[notify] desktop = true` pointed at
//! it. A critical plan finding is announced once however often the
//! statement is explained again, and losing the target is announced once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::data::grant_reading;
use crate::harness::{Fixture, RunningAgent, eventually};

/// What one `Notify` call carried.
#[derive(Debug, Clone)]
pub struct Received {
    /// The sending application.
    pub app_name: String,
    /// The title.
    pub summary: String,
    /// The text.
    pub body: String,
}

/// A minimal `org.freedesktop.Notifications` server that records calls.
struct Recorder {
    received: Arc<Mutex<Vec<Received>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Recorder {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, zbus::OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut received = self.received.lock().unwrap();
        received.push(Received {
            app_name,
            summary,
            body,
        });
        received.len() as u32
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "pgvigil-tests".into(),
            "pgvigil".into(),
            "1".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}

/// A private session bus with a recording notification server, stopped
/// when dropped.
pub struct NotificationBus {
    daemon: Child,
    /// The bus address, for `DBUS_SESSION_BUS_ADDRESS`.
    pub address: String,
    received: Arc<Mutex<Vec<Received>>>,
    _server: zbus::Connection,
}

impl NotificationBus {
    /// Starts `dbus-daemon` on a socket in `dir` and the server on it.
    pub async fn start(dir: &std::path::Path) -> NotificationBus {
        let socket = dir.join("session-bus");
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not run dbus-daemon ({e}): run scripts/test.sh, which installs \
                     Debian's dbus package"
                )
            });
        let mut line = String::new();
        BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the bus address");
        let address = line.trim().to_string();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed no address: {line:?}"
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let server = zbus::connection::Builder::address(address.as_str())
            .name("org.freedesktop.Notifications")
            .serve_at(
                "/org/freedesktop/Notifications",
                Recorder {
                    received: received.clone(),
                },
            )
            .build()
            .await
            .expect("notification server on the private bus");
        NotificationBus {
            daemon,
            address,
            received,
            _server: server,
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Received notifications whose summary contains `needle`.
    pub fn matching(&self, needle: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.summary.contains(needle))
            .collect()
    }
}

impl Drop for NotificationBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_critical_finding_and_a_lost_target_are_each_announced_once() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    // A filter that reads over a million rows to keep a few: critical
    // (with margin: parallel workers report rounded per-loop averages).
    admin
        .batch_execute(
            "CREATE UNLOGGED TABLE visits (id int, customer int);
             INSERT INTO visits SELECT g, g % 100000 FROM generate_series(1, 1200000) g;
             ANALYZE visits;",
        )
        .await
        .unwrap();
    grant_reading(&admin).await;
    let version: i32 = crate::harness::pg::version_num(&admin).await;
    let bus = NotificationBus::start(&fx.pg.scratch()).await;
    // Every statement counts as slow and may be explained again each second,
    // so a repeated notification would show.
    let config = format!(
        "{}\n[explain]\nslow_threshold = \"1us\"\nstatement_timeout = \"20s\"\nper_statement_interval = \"1s\"\nmax_per_hour = 1000\n\n[notify]\ndesktop = true\n",
        fx.config("statements = { interval = \"1s\" }")
    );
    let agent = RunningAgent::start_with_env(
        &fx.pg.scratch(),
        &config,
        &[("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str())],
    )
    .await;
    let app = fx.pg.connect().await;
    let load = tokio::spawn(async move {
        loop {
            app.batch_execute("SELECT count(*) FROM visits WHERE customer = 4242")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let plans = || async {
        let doc: serde_json::Value =
            serde_json::from_str(&agent.get("/api/v1/plans").await.body).ok()?;
        let plans: Vec<serde_json::Value> = doc["plans"]
            .as_array()?
            .iter()
            .filter(|p| {
                p["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("FROM visits"))
            })
            .cloned()
            .collect();
        (!plans.is_empty()).then_some(plans)
    };
    let newest = |plans: &[serde_json::Value]| plans[0]["explained_at"].as_f64().unwrap();
    // Waits until the worker has explained the statement again.
    let explained_again = || async {
        let before = newest(&plans().await.unwrap());
        eventually(
            Duration::from_secs(60),
            "the statement explained again",
            || async { (newest(&plans().await?) > before).then_some(()) },
        )
        .await;
    };
    eventually(
        Duration::from_secs(90),
        "a plan of the visits statement",
        plans,
    )
    .await;
    let finding = "critical finding seq_scan_large_filter";
    if version >= 140000 {
        // ANALYZE's row counts make the finding (14+: sampled parameters).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let notes = loop {
            let notes = bus.matching(finding);
            if !notes.is_empty() {
                break notes;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no notification of the finding; received {:#?}\nplans {:#?}\nagent log:\n{}",
                bus.received(),
                plans().await,
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let plans = plans().await.unwrap();
        let plan = plans
            .iter()
            .find(|p| {
                p["findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f["id"] == "seq_scan_large_filter" && f["severity"] == "critical")
            })
            .unwrap_or_else(|| panic!("no critical finding in {plans:#?}"));
        let note = &notes[0];
        assert_eq!(note.app_name, "pgvigil");
        assert_eq!(
            note.summary,
            "pgvigil main: critical finding seq_scan_large_filter"
        );
        assert!(
            note.body.contains("FROM visits")
                && note.body.contains(plan["queryid"].as_str().unwrap())
                && note.body.contains("consider an index on visits (customer)"),
            "{note:#?}"
        );
        // Explained again, twice, with the same finding: nothing new.
        explained_again().await;
        explained_again().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let notes = bus.matching(finding);
        assert_eq!(notes.len(), 1, "announced more than once: {notes:#?}");
    } else {
        // Without sampled parameters, a generic plan: no ANALYZE, no finding.
        explained_again().await;
        assert!(bus.matching(finding).is_empty(), "{:#?}", bus.received());
    }
    load.abort();

    // Losing the server: one notification, not one per failing collector run.
    assert!(bus.matching("target lost").is_empty());
    fx.pg.stop();
    let lost = eventually(
        Duration::from_secs(30),
        "the lost-target notification",
        || async {
            let notes = bus.matching("target lost");
            (!notes.is_empty()).then_some(notes)
        },
    )
    .await;
    agent
        .wait_for(Duration::from_secs(10), "pg_up 0", |m| {
            m.get("pg_up", &[]).filter(|v| *v == 0.0)
        })
        .await;
    // Collectors keep failing every second; none of that is news.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        bus.matching("target lost").len(),
        1,
        "{:#?}",
        bus.received()
    );
    assert_eq!(lost[0].summary, "pgvigil main: target lost");
    assert!(
        lost[0]
            .body
            .contains("PostgreSQL target main stopped answering"),
        "{:#?}",
        lost[0]
    );
    assert!(!agent.log().contains(&fx.password));
    assert!(
        !bus.received().iter().any(|r| r.body.contains(&fx.password)),
        "a password reached a notification"
    );
}
