//! A real Prometheus (Debian's `prometheus` package) on a free port in a temp directory,
//! scraping one agent every second and evaluating rule files every second, for tests that
//! check what dashboards and alerts would read. Killed on drop.
//!
//! ```ignore
//! let prom = Prometheus::start(agent.addr, &[Path::new(RULES)]).await;
//! let samples = prom.query("pg_stat_database_xact_commit").await;
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::agent::http;
use super::pg::free_port;

/// One sample of an instant query: its labels (`__name__` included when kept) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// The value at evaluation time.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the series has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// A running Prometheus server.
pub struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
    /// Its HTTP API.
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus scraping `/metrics` of `agent` as job `pgvigil` every second, with
    /// `rule_files` evaluated every second, and waits until it is ready.
    pub async fn start(agent: SocketAddr, rule_files: &[&Path]) -> Prometheus {
        Prometheus::start_jobs(&[("pgvigil", agent)], rule_files).await
    }

    /// Like [`Prometheus::start`], scraping each `(job name, address)` of `jobs`.
    pub async fn start_jobs(jobs: &[(&str, SocketAddr)], rule_files: &[&Path]) -> Prometheus {
        let dir = tempfile::tempdir().expect("prometheus dir");
        let rules: Vec<String> = rule_files
            .iter()
            .map(|p| format!("  - {}\n", p.display()))
            .collect();
        let scrapes: Vec<String> = jobs
            .iter()
            .map(|(job, addr)| {
                format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n")
            })
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}scrape_configs:\n{}",
            rules.concat(),
            scrapes.concat()
        );
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is required (scripts/test.sh installs the prometheus package)");
        let mut prom = Prometheus { child, dir, addr };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = prom.child.try_wait() {
                panic!("prometheus exited with {status}: {}", prom.log());
            }
            if http(addr, "GET", "/-/ready", &[])
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return prom;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "prometheus did not become ready: {}",
                prom.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query through the HTTP API; panics on an error answer.
    pub async fn query(&self, expr: &str) -> Vec<Sample> {
        let path = format!("/api/v1/query?query={}", encode(expr));
        let response = http(self.addr, "GET", &path, &[])
            .await
            .expect("query prometheus");
        let json: serde_json::Value = serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("{e}: {}", response.body));
        assert_eq!(json["status"], "success", "{expr}: {}", response.body);
        let result = json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        result
            .iter()
            .map(|r| Sample {
                labels: r["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                value: r["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN),
            })
            .collect()
    }

    /// The names of the rule groups Prometheus loaded, and the health of each rule by name
    /// (`ok`, `err`, `unknown` before its first evaluation).
    pub async fn rules(&self) -> BTreeMap<String, String> {
        let response = http(self.addr, "GET", "/api/v1/rules", &[])
            .await
            .expect("rules");
        let json: serde_json::Value = serde_json::from_str(&response.body).expect("rules json");
        let mut health = BTreeMap::new();
        for group in json["data"]["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                let name = rule["name"].as_str().unwrap_or_default().to_string();
                let state = match rule["health"].as_str() {
                    Some("err") => format!("err: {}", rule["lastError"]),
                    other => other.unwrap_or_default().to_string(),
                };
                health.insert(name, state);
            }
        }
        health
    }
}

/// The names a rules file records (`- record: name`), in file order.
pub fn records(rules_file: &Path) -> Vec<String> {
    std::fs::read_to_string(rules_file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", rules_file.display()))
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record:"))
        .map(|n| n.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .collect()
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
