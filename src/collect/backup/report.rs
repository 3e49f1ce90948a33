//! What the backup collector knows beyond `pgbackrest info`: the last
//! finished `pgbackrest verify`, the last restore test and the last
//! successful one, with their reasons. Plain data: the collector keeps it
//! in its state file across restarts (`backup-<target>.json`), and
//! `/api/v1/consistency`, `pgvigil once` and the `/` page show it.

use serde::{Deserialize, Serialize};

/// The backup collector's report, as saved in its state file. Fields may
/// be added with a default, never renamed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupReport {
    /// The stanza the results are about: a state file of another stanza is
    /// not used.
    pub stanza: String,
    /// The last finished `pgbackrest verify`.
    pub verify: Option<Verified>,
    /// The daemon's last finished restore test, successful or not.
    pub restore_test: Option<Tested>,
    /// The daemon's last successful restore test.
    pub restore_success: Option<Tested>,
}

impl BackupReport {
    /// Whether anything has been verified or tested yet.
    pub fn is_empty(&self) -> bool {
        self.verify.is_none() && self.restore_test.is_none() && self.restore_success.is_none()
    }
}

/// What one verify found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    /// No error at all.
    pub success: bool,
    /// Files with an error.
    pub errors: u64,
    /// Wall time.
    pub seconds: f64,
    /// When it finished, as a Unix time.
    pub finished_at: f64,
    /// The first problem, in one line.
    pub reason: Option<String>,
}

impl Verified {
    /// When it started, as a Unix time.
    pub fn started_at(&self) -> f64 {
        self.finished_at - self.seconds
    }
}

/// One finished restore test of the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tested {
    /// When it started, as a Unix time: the next is due a period later.
    pub started_at: f64,
    /// When it finished.
    pub finished_at: f64,
    /// What it measured, when it succeeded.
    pub outcome: Option<Outcome>,
    /// Why it failed, when it did (one line, as the command prints it).
    pub reason: Option<String>,
}

impl Tested {
    /// Whether the test succeeded.
    pub fn success(&self) -> bool {
        self.outcome.is_some()
    }
}

/// What a successful restore test measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The backup restored.
    pub label: String,
    /// Restore start to end of recovery.
    pub recovery_seconds: f64,
    /// Test start minus the last replayed transaction's time.
    pub recovery_point_age_seconds: Option<f64>,
    /// Indexes amcheck found clean.
    pub indexes_checked: i64,
    /// Databases they were sampled from (every one that takes
    /// connections, templates aside).
    #[serde(default)]
    pub databases_checked: i64,
}

impl Outcome {
    /// The one line the command prints.
    pub fn line(&self, stanza: &str) -> String {
        format!(
            "restore test of stanza {stanza} ok: backup {} restored and recovered in {:.1}s, recovery point {}, amcheck clean on {} indexes in {} databases",
            self.label,
            self.recovery_seconds,
            self.recovery_point_age_seconds
                .map_or("unknown".to_string(), |a| format!("{a:.1}s behind")),
            self.indexes_checked,
            self.databases_checked
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_gives_back_exactly_what_was_published() {
        // Floats must come back bit for bit: a restarted agent publishes
        // the same recovery time, and a file without newer fields reads.
        let report = BackupReport {
            stanza: "main".into(),
            verify: None,
            restore_test: None,
            restore_success: Some(Tested {
                started_at: 1_796_353_525.123_456_7,
                finished_at: 1_796_353_527.104_998_3,
                outcome: Some(Outcome {
                    label: "20261204-031231F".into(),
                    recovery_seconds: 1.981_542_558_000_000_1,
                    recovery_point_age_seconds: Some(0.1 + 0.2),
                    indexes_checked: 50,
                    databases_checked: 2,
                }),
                reason: None,
            }),
        };
        let text = serde_json::to_string(&report).unwrap();
        let back: BackupReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        let older: BackupReport = serde_json::from_str(
            r#"{"stanza":"main","restore_test":{"started_at":1.0,"finished_at":2.0,"outcome":{"label":"x","recovery_seconds":1.5,"recovery_point_age_seconds":null,"indexes_checked":3},"reason":null}}"#,
        )
        .unwrap();
        assert_eq!(
            older
                .restore_test
                .unwrap()
                .outcome
                .unwrap()
                .databases_checked,
            0
        );
    }
}
