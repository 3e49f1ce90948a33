//! What the amcheck collector keeps across restarts, and its page budget.
//!
//! The state file (`amcheck-<target>.json` in the state directory,
//! written atomically after each relation) holds where the pass stands,
//! the page credit, the totals and the findings, so a restarted agent
//! resumes where it stopped instead of starting the pass again, and a
//! corruption found last week is still reported after a restart. A check
//! that never returned (the agent was killed during it, or the run ran
//! out of time) is marked `in_flight` before it starts and skipped on the
//! next run rather than retried forever.
//!
//! The budget is a token bucket in pages: `pages_per_hour` accrue over
//! time, a check spends what it read. The rate rises when the pass would
//! otherwise end later than `full_pass` after it started. The bucket holds
//! at most two turns' worth, or the size of an index waiting for it (an
//! index is checked in one call, so it waits until the credit covers it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::report::{Finding, Position, Skipped, Totals};

/// Latest skipped relations kept.
pub const KEPT_SKIPPED: usize = 20;
/// Findings kept (the metric counts them per database).
pub const KEPT_FINDINGS: usize = 1000;

/// Everything the state file holds. Fields may be added with a default,
/// never renamed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// The server it is about: system identifier and port(s). A state
    /// file of another server (a copied data directory shares the
    /// identifier) is not used.
    pub server: String,
    /// When the pass under way started, as a Unix time (0: not yet).
    pub pass_started: f64,
    /// When the last complete pass ended.
    pub last_pass_completed: Option<f64>,
    /// How long it took.
    pub last_pass_seconds: Option<f64>,
    /// The next relation to check.
    pub position: Option<Position>,
    /// Databases finished in this pass.
    pub done: Vec<String>,
    /// Pages of checkable relations per database, as last listed: what
    /// the deadline arithmetic counts as still to do.
    pub database_pages: BTreeMap<String, f64>,
    /// Page credit.
    pub credit: f64,
    /// When the credit was last brought up to date.
    pub credit_at: f64,
    /// The pages of the index the pass waits to afford (the credit may
    /// grow to it).
    pub waiting_for: f64,
    /// A check started and not known to have ended: (database, OID).
    pub in_flight: Option<(String, u32)>,
    /// Whether the relation at `position` had a problem in an earlier
    /// part (a table checked in parts).
    pub position_corrupt: bool,
    /// Work done.
    pub totals: Totals,
    /// Corrupt relations.
    pub findings: Vec<Finding>,
    /// Latest relations not checked.
    pub skipped: Vec<Skipped>,
}

impl State {
    /// Reads `path`; a missing or unreadable file starts afresh (said in
    /// the log when it exists but cannot be used).
    pub fn load(path: &Path) -> State {
        crate::state_file::read(path)
            .unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "amcheck state file unreadable or invalid; starting a new pass");
                None
            })
            .unwrap_or_default()
    }

    /// Writes the state to `path` atomically; a failure is logged (checks
    /// go on; only a restart would repeat work).
    pub fn save(&self, path: &Path) {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        if let Err(e) = crate::state_file::write_atomically(path, &bytes) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the amcheck state file");
        }
    }

    /// Records a skipped relation, keeping the latest few.
    pub fn skip(&mut self, skipped: Skipped) {
        match skipped.reason.as_str() {
            "locked" => self.totals.skipped_locked += 1,
            "timeout" => self.totals.skipped_timeout += 1,
            _ => self.totals.skipped_error += 1,
        }
        self.skipped.push(skipped);
        if self.skipped.len() > KEPT_SKIPPED {
            self.skipped.remove(0);
        }
    }

    /// Records a problem in a relation: a new finding, or one more problem
    /// of a known one (its first message and block kept).
    pub fn found(&mut self, finding: Finding) {
        let full = self.findings.len() >= KEPT_FINDINGS;
        match self
            .findings
            .iter_mut()
            .find(|f| f.datname == finding.datname && f.oid == finding.oid)
        {
            Some(known) => known.problems += finding.problems,
            None if !full => self.findings.push(finding),
            None => {}
        }
    }

    /// Forgets the finding of a relation that checked clean.
    pub fn clean(&mut self, datname: &str, oid: u32) {
        self.findings
            .retain(|f| !(f.datname == datname && f.oid == oid));
    }

    /// Forgets findings of relations no longer in `datname`.
    pub fn prune(&mut self, datname: &str, exists: impl Fn(u32) -> bool) {
        self.findings
            .retain(|f| f.datname != datname || exists(f.oid));
    }

    /// Pages still to check in this pass: the rest of the current
    /// database (from its list, `current_left`) and every database not yet
    /// done.
    pub fn pages_left(
        &self,
        current: Option<&str>,
        current_left: f64,
        databases: &[String],
    ) -> f64 {
        let others: f64 = databases
            .iter()
            .filter(|d| Some(d.as_str()) != current && !self.done.contains(d))
            .filter_map(|d| self.database_pages.get(d))
            .sum();
        others + current_left
    }
}

/// The page rate of the pass: the configured one, or what finishing the
/// `pages_left` before the pass's deadline takes.
pub fn rate_per_hour(
    pages_per_hour: u64,
    full_pass_seconds: f64,
    pass_started: f64,
    now: f64,
    pages_left: f64,
) -> f64 {
    let configured = pages_per_hour as f64;
    // Aim at 90 % of the period: a pass finishing exactly at the deadline
    // would have the alert flap.
    let deadline = pass_started + full_pass_seconds * 0.9;
    let hours_left = ((deadline - now) / 3600.0).max(1.0 / 60.0);
    configured.max(pages_left / hours_left)
}

/// The credit after `elapsed` seconds at `per_hour`, capped at two turns
/// of `turn_seconds` or `waiting_for` pages (an index larger than that).
pub fn accrue(
    credit: f64,
    per_hour: f64,
    elapsed: f64,
    turn_seconds: f64,
    waiting_for: f64,
) -> f64 {
    let cap = (2.0 * per_hour * turn_seconds / 3600.0)
        .max(waiting_for)
        .max(1.0);
    (credit + per_hour * elapsed.max(0.0) / 3600.0).min(cap)
}

/// The state file of target `target` in `directory`.
pub fn path(directory: &Path, target: &str) -> PathBuf {
    let safe: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    directory.join(format!("amcheck-{safe}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_rises_only_when_the_pass_would_be_late() {
        let week = 7.0 * 86400.0;
        // 100,000 pages left at the start: the configured rate is enough.
        assert_eq!(rate_per_hour(1000, week, 0.0, 0.0, 100_000.0), 1000.0);
        // 10 million pages: 0.9 week is 151.2 hours.
        let r = rate_per_hour(1000, week, 0.0, 0.0, 10_000_000.0);
        assert!((r - 10_000_000.0 / 151.2).abs() < 1e-6, "{r}");
        // Past the deadline: a minute's worth of hours, not a division by 0.
        assert_eq!(rate_per_hour(10, 3600.0, 0.0, 7200.0, 60.0), 3600.0);
    }

    #[test]
    fn the_credit_accrues_per_hour_and_is_capped() {
        // 3,600 pages an hour for 60 s: 60 pages.
        assert_eq!(accrue(0.0, 3600.0, 60.0, 60.0, 0.0), 60.0);
        // Capped at two turns (120 pages) …
        assert_eq!(accrue(100.0, 3600.0, 600.0, 60.0, 0.0), 120.0);
        // … or at the index waiting for it.
        assert_eq!(accrue(100.0, 3600.0, 600.0, 60.0, 500.0), 500.0);
        // A clock step back takes nothing.
        assert_eq!(accrue(10.0, 3600.0, -5.0, 60.0, 0.0), 10.0);
    }

    #[test]
    fn findings_add_up_per_relation_and_go_when_clean() {
        let mut s = State::default();
        let f = |oid, problems| Finding {
            datname: "db".into(),
            oid,
            schemaname: "public".into(),
            relname: format!("r{oid}"),
            kind: "heap".into(),
            table: None,
            block: Some(3),
            message: "bad".into(),
            problems,
            found_at: 1.0,
        };
        s.found(f(1, 2));
        s.found(f(1, 3));
        s.found(f(2, 1));
        assert_eq!(s.findings.len(), 2);
        assert_eq!(s.findings[0].problems, 5);
        s.clean("db", 1);
        assert_eq!(s.findings.len(), 1);
        s.prune("db", |oid| oid != 2);
        assert!(s.findings.is_empty());
    }

    #[test]
    fn a_state_round_trips_and_target_names_make_safe_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "main/../x");
        assert_eq!(p.file_name().unwrap(), "amcheck-main____x.json");
        let mut s = State {
            position: Some(Position {
                datname: "db".into(),
                oid: 16384,
                block: 7,
            }),
            ..State::default()
        };
        s.totals.btree_pages = 12;
        s.save(&p);
        assert_eq!(State::load(&p), s);
        assert_eq!(State::load(&dir.path().join("none.json")), State::default());
    }
}
