//! Checks several test modules make on what pgvigil produced, and the
//! ground-truth arithmetic they compare it with.

use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::outputs;

/// The test's clock, as a Unix time: the servers' clock too (one host).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// How far the wall clock moved against the monotonic one since `start`.
///
/// PostgreSQL times a statement with the wall clock (`gettimeofday`); the
/// clients the tests compare it with (this process, pgbench) time it with
/// the monotonic clock. Both run at the same rate, but the wall clock can
/// be stepped (a virtual machine paused and resumed, the host setting the
/// time), and a step during a call moves the server's duration against the
/// client's by as much. A comparison of the two allows for what this
/// measured, and says so when it was not zero.
pub struct ClockWatch {
    wall: f64,
    mono: Instant,
}

impl ClockWatch {
    /// Starts watching.
    pub fn start() -> ClockWatch {
        ClockWatch {
            wall: unix_now(),
            mono: Instant::now(),
        }
    }

    /// Seconds the wall clock gained or lost against the monotonic clock
    /// since [`ClockWatch::start`], as an absolute value.
    pub fn stepped(&self) -> f64 {
        ((unix_now() - self.wall) - self.mono.elapsed().as_secs_f64()).abs()
    }
}

/// Nearest-rank quantile, as the agent defines it: the smallest value with
/// at least `p` of the values at or below it.
pub fn true_quantile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `promtool check metrics` must have nothing to say about our output.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is required (scripts/test.sh installs the prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = outputs(&out);
    assert!(
        out.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "promtool: {stdout}{stderr}\n---\n{text}"
    );
}
