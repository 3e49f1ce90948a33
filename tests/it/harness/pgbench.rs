//! pgbench as a workload that keeps its own latency log (`--log`): the
//! ground truth that latency tests compare pgvigil with.
//!
//! The client comes from the newest `/usr/lib/postgresql/*/bin/pgbench`,
//! else `pgbench` on the PATH, not from `PGVIGIL_PG_BINDIR`: the npm server
//! packages used for other majors have no pgbench, and a pgbench of any
//! recent major talks to every server the suite runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::pg::PgServer;

/// The pgbench binary.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let major = e.file_name().to_str()?.parse().ok()?;
                    Some((major, e.path().join("bin/pgbench")))
                })
                .filter(|(_, p)| p.exists())
                .collect();
            found.sort();
            found
                .pop()
                .map(|(_, p)| p)
                .unwrap_or_else(|| PathBuf::from("pgbench"))
        })
        .clone()
}

/// One pgbench run: `clients` connections, `transactions` each, `script`
/// as the only script, in protocol `mode` (`simple`, `extended`,
/// `prepared`), as the superuser over the Unix socket.
pub struct Pgbench<'a> {
    /// The protocol mode (`-M`).
    pub mode: &'a str,
    /// Connections (`-c`, and as many threads).
    pub clients: u32,
    /// Transactions per client (`-t`).
    pub transactions: u32,
    /// The script (`-f`).
    pub script: &'a str,
}

/// What a run measured.
#[derive(Debug)]
pub struct Latencies {
    /// Every transaction's latency from pgbench's own log, seconds, sorted.
    pub sorted: Vec<f64>,
    /// How far the wall clock (the server's) moved against the monotonic
    /// one (pgbench's) during the run, seconds: see [`super::ClockWatch`].
    pub wall_clock_step: f64,
}

impl Latencies {
    /// Nearest-rank quantile: the smallest latency with at least `p` of the
    /// transactions at or below it (pgvigil's definition).
    pub fn quantile(&self, p: f64) -> f64 {
        let n = self.sorted.len();
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
        self.sorted[rank - 1]
    }
}

impl Pgbench<'_> {
    /// Runs to completion against `pg`, with the per-transaction log in
    /// `dir`; panics with pgbench's output if it fails or a transaction
    /// did.
    pub fn run(&self, pg: &PgServer, dir: &Path) -> Latencies {
        let work = tempfile::Builder::new()
            .prefix("pgbench-")
            .tempdir_in(dir)
            .expect("pgbench dir");
        let script = work.path().join("script.sql");
        std::fs::write(&script, self.script).expect("write script");
        let prefix = work.path().join("txn");
        let clock = super::ClockWatch::start();
        let out = Command::new(binary())
            .args(["-n", "-M", self.mode, "--log", "--log-prefix"])
            .arg(&prefix)
            .args([
                "-c",
                &self.clients.to_string(),
                "-j",
                &self.clients.to_string(),
            ])
            .args(["-t", &self.transactions.to_string(), "-f"])
            .arg(&script)
            .arg("-h")
            .arg(pg.socket_dir())
            .args(["-p", &pg.port.to_string(), "-U", "postgres", "postgres"])
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", binary().display()));
        assert!(
            out.status.success(),
            "pgbench failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let wall_clock_step = clock.stepped();
        // One file per thread: txn.<pid>, txn.<pid>.1, …; each line is
        // `client_id transaction_no time script_no time_epoch time_us`,
        // `time` the latency in microseconds.
        let mut sorted = Vec::new();
        for entry in std::fs::read_dir(work.path()).expect("read pgbench dir") {
            let path = entry.expect("dir entry").path();
            if !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("txn.")
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read pgbench log");
            for line in text.lines() {
                let micros: u64 = line
                    .split_whitespace()
                    .nth(2)
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("a failed or odd transaction: {line:?}"));
                sorted.push(micros as f64 / 1e6);
            }
        }
        sorted.sort_by(f64::total_cmp);
        assert_eq!(
            sorted.len(),
            (self.clients * self.transactions) as usize,
            "every transaction in pgbench's log"
        );
        Latencies {
            sorted,
            wall_clock_step,
        }
    }
}
