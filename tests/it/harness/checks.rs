//! Checks several test modules make on what pgvigil produced, and the
//! ground-truth arithmetic they compare it with.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use super::outputs;

/// The test's clock, as a Unix time: the servers' clock too (one host).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
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
