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
}

impl Outcome {
    /// The one line the command prints.
    pub fn line(&self, stanza: &str) -> String {
        format!(
            "restore test of stanza {stanza} ok: backup {} restored and recovered in {:.1}s, recovery point {}, amcheck clean on {} indexes",
            self.label,
            self.recovery_seconds,
            self.recovery_point_age_seconds
                .map_or("unknown".to_string(), |a| format!("{a:.1}s behind")),
            self.indexes_checked
        )
    }
}
