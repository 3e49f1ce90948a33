//! Backup freshness from pgBackRest: when the last full, differential and
//! incremental backups completed, how long they took, how large they were,
//! whether the stanza is healthy, and the schedule they are held to.
//!
//! Runs `pgbackrest --stanza=S --output=json info` with a timeout, every few
//! minutes (each call reads the repository). It does not use the
//! PostgreSQL session: backups stay visible while the server is down. A
//! missing or failing pgbackrest is this collector's error, nothing more.
//!
//! Beside it, on their own schedules, `pgbackrest verify` ([`verify`]) and
//! the daemon's restore test ([`restore`]). Their last results live in the
//! state file ([`report::BackupReport`], `backup-<target>.json`), read at
//! the first run and written when a result changes, so a restart neither
//! forgets them nor runs them again before their period.

use std::process::Stdio;

use async_trait::async_trait;
use serde_json::Value;

use super::{CollectError, Collected, Standalone};

pub mod report;
pub mod restore;
pub(crate) mod verify;
use crate::config::Backup as Settings;
use crate::desc;
use crate::metric::{Desc, Family};

static COMPLETED: Desc = desc!(Gauge "pg_backup_last_completed_timestamp", unit = Seconds, ["type", "stanza"],
    "When the newest backup of this type (full, diff, incr) finished, as a Unix time.", only_when = "the stanza has a backup of this type");
static DURATION: Desc = desc!(Gauge "pg_backup_last_duration", unit = Seconds, ["type", "stanza"],
    "How long the newest backup of this type took.", only_when = "the stanza has a backup of this type");
static SIZE: Desc = desc!(Gauge "pg_backup_last_size", unit = Bytes, ["type", "stanza"],
    "Size of the database as the newest backup of this type saw it.", only_when = "the stanza has a backup of this type");
static REPO_SIZE: Desc = desc!(Gauge "pg_backup_last_repository_size", unit = Bytes, ["type", "stanza"],
    "Space the newest backup of this type takes in the repository (compressed, its own files only).",
    only_when = "the stanza has a backup of this type");
static SUCCESS: Desc = desc!(Gauge "pg_backup_info_success", ["stanza"],
    "1 if pgBackRest reports the stanza healthy (status ok) and its newest backup without error, else 0.",
    only_when = "a [target.backup] is configured");
static MAX_AGE: Desc = desc!(Gauge "pg_backup_max_age", unit = Seconds, ["type", "stanza"],
    "The configured schedule: a backup older than this is overdue (type full, or any).",
    only_when = "a [target.backup] is configured");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &COMPLETED,
    &DURATION,
    &SIZE,
    &REPO_SIZE,
    &SUCCESS,
    &MAX_AGE,
    &verify::SUCCESS,
    &verify::ERRORS,
    &verify::DURATION,
    &verify::FINISHED,
    &restore::SUCCESS,
    &restore::TIMESTAMP,
    &restore::LAST_SUCCESS,
    &restore::DURATION,
    &restore::RECOVERY_POINT_AGE,
    &restore::PERIOD,
    &restore::RTO_OBJECTIVE,
    &restore::RPO_OBJECTIVE,
];

/// The `backup` collector.
#[derive(Debug)]
pub struct Backup {
    settings: Settings,
    verifier: verify::Verifier,
    restorer: restore::Scheduled,
    /// What the state file holds, once read.
    saved: Option<report::BackupReport>,
}

impl Backup {
    /// A collector for one stanza.
    pub fn new(settings: Settings) -> Backup {
        Backup {
            settings,
            verifier: verify::Verifier::default(),
            restorer: restore::Scheduled::default(),
            saved: None,
        }
    }

    /// At the first run, the results the state file kept; a file of
    /// another stanza, or one that cannot be read, is not used (said).
    fn load(&mut self) {
        if self.saved.is_some() {
            return;
        }
        let path = &self.settings.state_file;
        let afresh = || report::BackupReport {
            stanza: self.settings.stanza.clone(),
            ..Default::default()
        };
        let kept = match crate::state_file::read::<report::BackupReport>(path) {
            Ok(Some(r)) if r.stanza == self.settings.stanza => r,
            Ok(Some(r)) => {
                tracing::info!(path = %path.display(), stanza = %r.stanza, "backup state file is about another stanza; not used");
                afresh()
            }
            Ok(None) => afresh(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "backup state file unreadable or invalid; verify and restore test results start afresh");
                afresh()
            }
        };
        self.verifier.last = kept.verify.clone();
        self.restorer.last = kept.restore_test.clone();
        self.restorer.last_success = kept.restore_success.clone();
        self.saved = Some(kept);
    }

    /// The results as they stand, written to the state file when they
    /// changed since it was read or last written (a failed write is said
    /// once per change, not at every run).
    fn report(&mut self) -> report::BackupReport {
        let now = report::BackupReport {
            stanza: self.settings.stanza.clone(),
            verify: self.verifier.last.clone(),
            restore_test: self.restorer.last.clone(),
            restore_success: self.restorer.last_success.clone(),
        };
        if self.saved.as_ref() != Some(&now) {
            let path = &self.settings.state_file;
            let bytes = serde_json::to_vec(&now).unwrap_or_default();
            if let Err(e) = crate::state_file::write_atomically(path, &bytes) {
                // Results stay published; only a restart would forget them.
                tracing::warn!(path = %path.display(), error = %e, "could not write the backup state file; a restart will forget the last verify and restore test");
            }
            self.saved = Some(now.clone());
        }
        now
    }

    async fn info(&self) -> Result<Value, CollectError> {
        let s = &self.settings;
        let mut cmd = tokio::process::Command::new(&s.command);
        if let Some(config) = &s.config {
            cmd.arg(format!("--config={}", config.display()));
        }
        cmd.arg(format!("--stanza={}", s.stanza)).args([
            "--output=json",
            "--log-level-console=off",
            "info",
        ]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let run = cmd.output();
        let out = match tokio::time::timeout(s.timeout, run).await {
            Err(_) => {
                return Err(CollectError::Unavailable(format!(
                    "pgbackrest info took longer than {:?}",
                    s.timeout
                )));
            }
            Ok(Err(e)) => {
                return Err(CollectError::Unavailable(format!(
                    "could not run {}: {e}",
                    s.command.display()
                )));
            }
            Ok(Ok(out)) => out,
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let why = stderr
                .lines()
                .chain(stdout.lines())
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            return Err(CollectError::Unavailable(format!(
                "pgbackrest info failed ({}): {why}",
                out.status
            )));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            CollectError::Unavailable(format!(
                "pgbackrest info printed something that is not JSON: {e}"
            ))
        })
    }
}

#[async_trait]
impl Standalone for Backup {
    async fn collect(&mut self) -> Result<Collected, CollectError> {
        self.load();
        // Verify and the restore test run beside info, on their own
        // schedules, whatever info says.
        let mut verified = self.verifier.tick(&self.settings);
        verified.extend(self.restorer.tick(&self.settings));
        let report = self.report();
        let info = self.info().await?;
        let mut families = families(&info, &self.settings);
        families.extend(verified);
        Ok(Collected {
            families,
            detail: (!report.is_empty())
                .then(|| crate::snapshot::Detail::Backup(std::sync::Arc::new(report))),
        })
    }
}

/// The families from `pgbackrest info` output (an array of stanzas).
pub fn families(info: &Value, settings: &Settings) -> Vec<Family> {
    let stanza = &settings.stanza;
    let mut completed = Family::new(&COMPLETED);
    let mut duration = Family::new(&DURATION);
    let mut size = Family::new(&SIZE);
    let mut repo_size = Family::new(&REPO_SIZE);
    let mut success = Family::new(&SUCCESS);
    let entry = info.as_array().and_then(|stanzas| {
        stanzas
            .iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(stanza.as_str()))
    });
    let mut healthy = false;
    if let Some(entry) = entry {
        let status_ok = entry.pointer("/status/code").and_then(Value::as_i64) == Some(0);
        let backups = entry
            .get("backup")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let newest_failed = backups
            .last()
            .and_then(|b| b.get("error"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        healthy = status_ok && !newest_failed;
        for kind in ["full", "diff", "incr"] {
            let Some(b) = backups
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some(kind))
                .max_by_key(|b| {
                    b.pointer("/timestamp/stop")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                })
            else {
                continue;
            };
            let labels = [kind, stanza.as_str()];
            let start = b.pointer("/timestamp/start").and_then(Value::as_f64);
            if let Some(stop) = b.pointer("/timestamp/stop").and_then(Value::as_f64) {
                completed.push(&labels, stop);
                if let Some(start) = start {
                    duration.push(&labels, (stop - start).max(0.0));
                }
            }
            if let Some(bytes) = b.pointer("/info/size").and_then(Value::as_f64) {
                size.push(&labels, bytes);
            }
            if let Some(bytes) = b.pointer("/info/repository/delta").and_then(Value::as_f64) {
                repo_size.push(&labels, bytes);
            }
        }
    }
    success.push(&[stanza], if healthy { 1.0 } else { 0.0 });
    let mut max_age = Family::new(&MAX_AGE);
    max_age.push(
        &["full", stanza.as_str()],
        settings.full_max_age.as_secs_f64(),
    );
    max_age.push(&["any", stanza.as_str()], settings.max_age.as_secs_f64());
    vec![completed, duration, size, repo_size, success, max_age]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> Settings {
        Settings {
            stanza: "main".into(),
            command: "pgbackrest".into(),
            config: None,
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(30),
            full_max_age: Duration::from_secs(7 * 86400),
            max_age: Duration::from_secs(86400),
            verify: None,
            verify_timeout: Duration::from_secs(60),
            restore_dir: None,
            restore_port: 0,
            restore_timeout: Duration::from_secs(60),
            restore_smoke_query: None,
            restore_smoke_database: "postgres".into(),
            restore_test: None,
            restore_rto_objective: Duration::from_secs(3600),
            restore_rpo_objective: Duration::from_secs(900),
            state_file: "/nonexistent/backup-test.json".into(),
        }
    }

    fn value(families: &[Family], name: &str, labels: &[&str]) -> Option<f64> {
        let family = families.iter().find(|f| f.desc.exposed_name() == name)?;
        family.value(labels)
    }

    #[test]
    fn the_newest_backup_of_each_type_counts() {
        let info = serde_json::json!([{
            "name": "main",
            "status": {"code": 0, "message": "ok"},
            "backup": [
                {"type": "full", "timestamp": {"start": 100, "stop": 160}, "info": {"size": 1000, "repository": {"delta": 300}}},
                {"type": "incr", "timestamp": {"start": 200, "stop": 205}, "info": {"size": 1100, "repository": {"delta": 20}}},
                {"type": "full", "timestamp": {"start": 300, "stop": 390}, "info": {"size": 1200, "repository": {"delta": 310}}, "error": false}
            ]
        }]);
        let f = families(&info, &settings());
        assert_eq!(
            value(
                &f,
                "pg_backup_last_completed_timestamp_seconds",
                &["full", "main"]
            ),
            Some(390.0)
        );
        assert_eq!(
            value(&f, "pg_backup_last_duration_seconds", &["full", "main"]),
            Some(90.0)
        );
        assert_eq!(
            value(&f, "pg_backup_last_size_bytes", &["incr", "main"]),
            Some(1100.0)
        );
        assert_eq!(
            value(
                &f,
                "pg_backup_last_repository_size_bytes",
                &["full", "main"]
            ),
            Some(310.0)
        );
        assert_eq!(
            value(
                &f,
                "pg_backup_last_completed_timestamp_seconds",
                &["diff", "main"]
            ),
            None
        );
        assert_eq!(value(&f, "pg_backup_info_success", &["main"]), Some(1.0));
        assert_eq!(
            value(&f, "pg_backup_max_age_seconds", &["full", "main"]),
            Some(604800.0)
        );
    }

    #[test]
    fn an_unhealthy_or_missing_stanza_is_not_a_success() {
        let cases = [
            serde_json::json!([{"name": "main", "status": {"code": 2, "message": "no valid backups"}, "backup": []}]),
            serde_json::json!([{"name": "main", "status": {"code": 0}, "backup": [{"type": "full", "error": true, "timestamp": {"start": 1, "stop": 2}}]}]),
            serde_json::json!([{"name": "other", "status": {"code": 0}}]),
            serde_json::json!({"unexpected": true}),
        ];
        for info in cases {
            let f = families(&info, &settings());
            assert_eq!(
                value(&f, "pg_backup_info_success", &["main"]),
                Some(0.0),
                "{info}"
            );
        }
    }
}
