//! `pgbackrest verify` on a schedule: reads every backup file and archived
//! WAL segment of the stanza and checks sizes and checksums against the
//! manifests, so a repository that lost or damaged a file is known before
//! a restore needs it.
//!
//! A verify reads the whole repository and takes minutes to hours, far
//! longer than a collector run may: it runs as a child process in a task
//! of its own, and each run of the backup collector only starts one when
//! due and publishes the newest finished result. pgBackRest before 2.30
//! has no verify command; then nothing is published and the log says so
//! once. Only the daemon runs it: it starts at the collector's second run,
//! which a one-shot `pgvigil once` never has. The last result is kept in
//! the collector's state file: a restarted agent publishes it at once and
//! verifies again when `verify` has passed since that one started, not at
//! every start.

use std::process::Stdio;
use std::time::Instant;

pub use super::report::Verified;

use tokio::task::JoinHandle;

use crate::config::Backup as Settings;
use crate::desc;
use crate::metric::{Desc, Family};

/// `pg_backup_verify_success`.
pub static SUCCESS: Desc = desc!(Gauge "pg_backup_verify_success", ["stanza"],
    "1 if the last pgbackrest verify of the stanza found every backup file and archived WAL segment present with the right size and checksum, else 0.",
    only_when = "a verify has finished (backup.verify, every 7 days by default)");
/// `pg_backup_verify_errors`.
pub static ERRORS: Desc = desc!(Gauge "pg_backup_verify_errors", ["stanza"],
    "Files the last pgbackrest verify found missing, of the wrong size, with a wrong checksum or otherwise unreadable.",
    only_when = "a verify has finished (backup.verify, every 7 days by default)");
/// `pg_backup_verify_duration_seconds`.
pub static DURATION: Desc = desc!(Gauge "pg_backup_verify_duration", unit = Seconds, ["stanza"],
    "How long the last pgbackrest verify took.",
    only_when = "a verify has finished (backup.verify, every 7 days by default)");
/// `pg_backup_verify_timestamp_seconds`.
pub static FINISHED: Desc = desc!(Gauge "pg_backup_verify_timestamp", unit = Seconds, ["stanza"],
    "When the last pgbackrest verify finished, as a Unix time.",
    only_when = "a verify has finished (backup.verify, every 7 days by default)");

/// The schedule and the latest result.
#[derive(Debug, Default)]
pub struct Verifier {
    ticks: u64,
    running: Option<JoinHandle<Option<Verified>>>,
    /// The last finished verify, from the state file until one finishes.
    pub last: Option<Verified>,
    unsupported: bool,
}

impl Verifier {
    /// Collects a finished verify, starts one when due, and returns the
    /// families of the newest result.
    pub fn tick(&mut self, settings: &Settings) -> Vec<Family> {
        if self.running.as_ref().is_some_and(|h| h.is_finished())
            && let Some(handle) = self.running.take()
        {
            // A finished task's result is ready: no await needed.
            match finished(handle) {
                Some(Some(v)) => {
                    if let Some(why) = &v.reason {
                        tracing::warn!(stanza = %settings.stanza, errors = v.errors, reason = %why, "pgbackrest verify found problems");
                    }
                    self.last = Some(v);
                }
                Some(None) => self.unsupported = true,
                None => {}
            }
        }
        // Not on the collector's first run: a one-shot `pgvigil once` runs
        // it once and must not start a verify it would abandon.
        self.ticks += 1;
        if let Some(every) = settings.verify
            && self.ticks >= 2
            && !self.unsupported
            && self.running.is_none()
            && self
                .last
                .as_ref()
                .is_none_or(|v| crate::snapshot::unix_now() - v.started_at() >= every.as_secs_f64())
        {
            tracing::info!(stanza = %settings.stanza, "pgbackrest verify started");
            self.running = Some(tokio::spawn(run(settings.clone())));
        }
        self.families(&settings.stanza)
    }

    fn families(&self, stanza: &str) -> Vec<Family> {
        let Some(v) = &self.last else {
            return Vec::new();
        };
        let labels = [stanza];
        let mut out = Vec::new();
        for (desc, value) in [
            (&SUCCESS, f64::from(u8::from(v.success))),
            (&ERRORS, v.errors as f64),
            (&DURATION, v.seconds),
            (&FINISHED, v.finished_at),
        ] {
            let mut f = Family::new(desc);
            f.push(&labels, value);
            out.push(f);
        }
        out
    }
}

/// The output of a finished task, without waiting.
pub(crate) fn finished<T>(handle: JoinHandle<T>) -> Option<T> {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let mut handle = std::pin::pin!(handle);
    match handle
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(Ok(v)) => Some(v),
        _ => None,
    }
}

/// Runs one verify; `None` when this pgBackRest has no verify command.
async fn run(s: Settings) -> Option<Verified> {
    let began = Instant::now();
    let mut cmd = tokio::process::Command::new(&s.command);
    if let Some(config) = &s.config {
        cmd.arg(format!("--config={}", config.display()));
    }
    cmd.arg(format!("--stanza={}", s.stanza))
        .args(["--output=text", "--log-level-console=error", "verify"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(s.verify_timeout, cmd.output()).await;
    let seconds = began.elapsed().as_secs_f64();
    let finished_at = crate::snapshot::unix_now();
    let failed = |reason: String| {
        Some(Verified {
            success: false,
            errors: 0,
            seconds,
            finished_at,
            reason: Some(reason),
        })
    };
    let out = match out {
        Err(_) => {
            return failed(format!(
                "pgbackrest verify took longer than {:?}",
                s.verify_timeout
            ));
        }
        Ok(Err(e)) => return failed(format!("could not run {}: {e}", s.command.display())),
        Ok(Ok(out)) => out,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("invalid command 'verify'") {
        tracing::info!(stanza = %s.stanza, "this pgBackRest has no verify command (2.30+): repository verification is off");
        return None;
    }
    if !out.status.success() {
        let why = stderr
            .lines()
            .chain(stdout.lines())
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return failed(format!("pgbackrest verify failed ({}): {why}", out.status));
    }
    let (errors, reason) = parse(&stdout);
    Some(Verified {
        success: errors == 0 && reason.is_none(),
        errors,
        seconds,
        finished_at,
        reason,
    })
}

/// Files in error and the first problem, from `verify --output=text`,
/// which prints nothing when all is well and otherwise, per backup and
/// WAL archive, a status line and a count per kind of error:
///
/// ```text
/// stanza: main
/// status: error
///   backup: 20261203-221357F, status: invalid, total files checked: 964, total valid files: 963
///     missing: 1
/// ```
pub fn parse(text: &str) -> (u64, Option<String>) {
    const KINDS: [&str; 4] = ["missing", "checksum invalid", "size invalid", "other"];
    let mut errors = 0;
    let mut subject: Option<String> = None;
    let mut reason = None;
    let mut error_status = false;
    for line in text.lines().map(str::trim) {
        if line == "status: error" {
            error_status = true;
        }
        if line.starts_with("backup:") || line.starts_with("archiveId:") {
            subject = line.split(',').next().map(|s| s.replace(": ", " "));
        }
        if let Some((kind, n)) = line.split_once(": ")
            && KINDS.contains(&kind)
            && let Ok(n) = n.trim().parse::<u64>()
        {
            errors += n;
            if reason.is_none() && n > 0 {
                reason = Some(match &subject {
                    Some(s) => format!("{s}: {kind} {n}"),
                    None => format!("{kind} {n}"),
                });
            }
        }
    }
    if error_status && reason.is_none() {
        reason = Some("pgbackrest verify reports status: error".to_string());
    }
    (errors, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_output_is_read_as_errors_and_a_reason() {
        assert_eq!(parse(""), (0, None));
        let text = "stanza: main\nstatus: error\n  backup: 20261203-221357F, status: invalid, total files checked: 964, total valid files: 963\n    missing: 1\n  archiveId: 15-1, total WAL checked: 5, total valid WAL: 3\n    checksum invalid: 2\n";
        assert_eq!(
            parse(text),
            (3, Some("backup 20261203-221357F: missing 1".to_string()))
        );
        assert_eq!(
            parse("stanza: main\nstatus: error\n"),
            (
                0,
                Some("pgbackrest verify reports status: error".to_string())
            )
        );
    }

    #[test]
    fn a_finished_tasks_output_is_taken_without_waiting() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let handle = tokio::spawn(async { 7 });
            while !handle.is_finished() {
                tokio::task::yield_now().await;
            }
            assert_eq!(finished(handle), Some(7));
        });
    }
}
