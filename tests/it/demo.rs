//! `pgvigil demo`: it refuses clearly without server binaries; a demo
//! killed with SIGKILL leaves servers and files that the next demo
//! removes; the next one's `/metrics` shows plan findings, latency
//! histograms with data, replication lag and log counters; after SIGTERM
//! no process and no directory is left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::pg::{bindir, free_port, open_up};
use crate::harness::{Client, Metrics, outputs, pgvigil};

/// Whether `pid` runs: exists and is not a zombie (a container's PID 1
/// may never reap the servers pg_ctl left to it).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

fn postmaster(data: &Path) -> i32 {
    let text = std::fs::read_to_string(data.join("postmaster.pid"))
        .unwrap_or_else(|e| panic!("{}: {e}", data.display()));
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// The postmaster pids of a run: the primary, and the replica when there is one.
fn servers(run: &Path) -> Vec<i32> {
    let found: Vec<i32> = ["primary", "replica"]
        .iter()
        .map(|d| run.join(d))
        .filter(|d| d.join("postmaster.pid").exists())
        .map(|d| postmaster(&d))
        .collect();
    assert!(!found.is_empty(), "no server in {}", run.display());
    found
}

/// `pgvigil demo` with its files under `tmp`, its stderr in `log`.
fn demo(tmp: &Path, port: u16, log: &Path) -> Child {
    Command::new(crate::harness::agent::binary())
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("TMPDIR", tmp)
        .env("PGVIGIL_PG_BINDIR", bindir())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn pgvigil demo")
}

/// The demo's run directory (the only one under the base).
fn run_dir(tmp: &Path) -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    let base = tmp.join(format!("pgvigil-demo-{}", unsafe { libc::geteuid() }));
    std::fs::read_dir(base)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .next()
}

async fn scrape(port: u16) -> Option<Metrics> {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = Client::default()
        .request(addr, "GET", "/metrics", &[])
        .await
        .ok()?;
    (r.status == 200).then(|| Metrics::parse(&r.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_everything_and_leaves_nothing_behind() {
    // Two servers and a busy workload outside the harness: keep latency
    // tests from measuring them.
    let _alone = crate::harness::pg::exclusive();
    let tmp = tempfile::tempdir().expect("temp dir");
    open_up(tmp.path());

    // No binaries: one clear line saying how to get them.
    let empty = tmp.path().join("no-binaries");
    std::fs::create_dir(&empty).unwrap();
    let out = pgvigil(
        &["demo", "--listen", "127.0.0.1:1"],
        &[
            ("PGVIGIL_PG_BINDIR", empty.to_str().unwrap()),
            ("TMPDIR", tmp.path().to_str().unwrap()),
        ],
    );
    let (_, stderr) = outputs(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no PostgreSQL server binaries")
            && stderr.contains("apt-get install postgresql"),
        "{stderr}"
    );

    // A demo killed outright leaves its servers running and its files.
    let first_port = free_port();
    let mut first = demo(tmp.path(), first_port, &tmp.path().join("first.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while scrape(first_port).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the first demo never served /metrics"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let old_run = run_dir(tmp.path()).expect("the first demo's directory");
    let old_servers = servers(&old_run);
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        old_servers.iter().all(|p| alive(*p)),
        "servers outlive a killed demo"
    );

    // The next demo removes them, then shows everything.
    let port = free_port();
    let log = tmp.path().join("second.log");
    let mut second = demo(tmp.path(), port, &log);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    let mut missing;
    loop {
        missing = Vec::new();
        match scrape(port).await {
            None => missing.push("/metrics"),
            Some(m) => {
                let demo = [("target", "demo")];
                if m.find("pg_plan_findings", &demo).next().is_none() {
                    missing.push("plan findings");
                }
                if !m
                    .sum("pg_stat_statements_latency_seconds_count", &demo)
                    .is_some_and(|n| n > 0.0)
                    || !m
                        .get("pg_statement_latency_seconds_count", &demo)
                        .is_some_and(|n| n > 0.0)
                {
                    missing.push("latency histograms with data");
                }
                // Server packages without pg_basebackup get no replica.
                if bindir().join("pg_basebackup").exists()
                    && !m
                        .find(
                            "pg_replication_lag_seconds",
                            &[("target", "demo"), ("kind", "replay")],
                        )
                        .any(|s| s.value > 1.0)
                {
                    missing.push("replication lag");
                }
                if !m
                    .get(
                        "pg_log_auth_failures_total",
                        &[("target", "demo"), ("usename", "demo_app")],
                    )
                    .is_some_and(|n| n > 0.0)
                {
                    missing.push("failed logins");
                }
                if !m
                    .sum("pg_log_slow_statements_total", &demo)
                    .is_some_and(|n| n > 0.0)
                {
                    missing.push("slow statements");
                }
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing {missing:?} after 90 s: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "demo: everything on /metrics after {:.0?}",
        started.elapsed()
    );
    assert!(!old_run.exists(), "the killed demo's files are removed");
    assert!(
        old_servers.iter().all(|p| !alive(*p)),
        "the killed demo's servers are stopped"
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("left behind"),
        "it says so"
    );

    // SIGTERM: nothing left.
    let run = run_dir(tmp.path()).expect("the demo's directory");
    let servers = servers(&run);
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(second.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(servers.iter().all(|p| !alive(*p)), "no server left");
    assert!(
        run_dir(tmp.path()).is_none() && !run.exists(),
        "no directory left"
    );
}
