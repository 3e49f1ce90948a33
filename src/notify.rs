//! Desktop notifications (`[notify] desktop = true`): while
//! debugging on a workstation, a notification for each new critical plan
//! finding and for each target that is lost (`pg_up` from 1 to 0).
//!
//! Not an alerting channel: Prometheus and the shipped alert rules are.
//! The explain worker and the schedule only hand over what happened; one
//! background thread talks to the session bus (notify-rust over D-Bus), so
//! a slow, missing or broken notification server never blocks or fails
//! collection. When the queue is full, notifications are dropped.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::explain::findings::Severity;
use crate::explain::plan::{Mode, PlanRecord};

/// Notifications waiting for the sending thread; more are dropped.
pub const QUEUE: usize = 32;
/// Statements whose critical findings are remembered; past this the memory
/// is cleared (and a finding still present is announced once more).
pub const REMEMBERED: usize = 10_000;

/// The application name notifications carry.
pub const APP_NAME: &str = "pgvigil";

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The one-line title.
    pub summary: String,
    /// The detail (plain text; escaped for body markup when sent).
    pub body: String,
}

/// A statement: (target, database, queryid).
type Statement = (String, String, String);

/// Sends desktop notifications from a background thread.
pub struct Notifier {
    queue: SyncSender<Note>,
    /// Critical finding ids in the latest plan of each statement.
    critical: Mutex<HashMap<Statement, BTreeSet<&'static str>>>,
}

impl Notifier {
    /// Starts the sending thread. It ends when the notifier is dropped.
    pub fn start() -> Arc<Notifier> {
        let (queue, notes) = mpsc::sync_channel::<Note>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("pgvigil-notify".into())
            .spawn(move || {
                let mut warned = false;
                for note in notes {
                    if let Err(e) = show(&note) {
                        if warned {
                            tracing::debug!(error = %e, summary = %note.summary, "desktop notification failed");
                        } else {
                            tracing::warn!(error = %e, summary = %note.summary,
                                "desktop notification failed (is a notification server running on the session bus?); further failures are logged at debug level");
                            warned = true;
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the desktop notification thread; notifications are off");
        }
        Arc::new(Notifier {
            queue,
            critical: Mutex::new(HashMap::new()),
        })
    }

    /// A new automatic plan: notifies of each critical finding the
    /// statement is not known to have. Only an ANALYZE plan can show that
    /// a finding is gone (most heuristics need its row counts), so a plain
    /// or generic plan adds to what is known and forgets nothing.
    pub fn plan(&self, target: &str, plan: &PlanRecord) {
        let notes = self.new_critical(target, plan);
        for note in notes {
            self.send(note);
        }
    }

    /// The target's server stopped answering.
    pub fn target_lost(&self, target: &str, reason: &str) {
        self.send(lost_note(target, reason));
    }

    /// The notes for `plan`'s new critical findings; remembers them.
    fn new_critical(&self, target: &str, plan: &PlanRecord) -> Vec<Note> {
        let now: BTreeSet<&'static str> = plan
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Critical)
            .map(|f| f.id)
            .collect();
        let key = (
            target.to_string(),
            plan.datname.clone(),
            plan.queryid.clone(),
        );
        let mut critical = self.critical.lock().unwrap_or_else(|e| e.into_inner());
        let before = critical.get(&key);
        let notes = plan
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Critical)
            .filter(|f| before.is_none_or(|b| !b.contains(f.id)))
            .map(|f| finding_note(target, plan, f))
            .collect();
        let now = match (plan.mode, before) {
            (Mode::Analyze, _) | (_, None) => now,
            (_, Some(before)) => now.union(before).copied().collect(),
        };
        if now.is_empty() {
            critical.remove(&key);
        } else {
            if critical.len() >= REMEMBERED && !critical.contains_key(&key) {
                critical.clear();
            }
            critical.insert(key, now);
        }
        notes
    }

    fn send(&self, note: Note) {
        match self.queue.try_send(note) {
            Ok(()) => {}
            Err(TrySendError::Full(note)) => {
                tracing::debug!(summary = %note.summary, "desktop notification dropped: queue full");
            }
            Err(TrySendError::Disconnected(note)) => {
                tracing::debug!(summary = %note.summary, "desktop notification dropped: no sending thread");
            }
        }
    }
}

fn finding_note(target: &str, plan: &PlanRecord, f: &crate::explain::findings::Finding) -> Note {
    let query = plan
        .query
        .as_deref()
        .map(|q| crate::sql::shorten(q, 120))
        .unwrap_or_else(|| "(text unavailable)".into());
    Note {
        summary: format!("pgvigil {target}: critical finding {}", f.id),
        body: format!(
            "{} (database {}, queryid {})\n{}\n{}\n→ {}",
            query, plan.datname, plan.queryid, f.node_path, f.explanation, f.action
        ),
    }
}

fn lost_note(target: &str, reason: &str) -> Note {
    Note {
        summary: format!("pgvigil {target}: target lost"),
        body: format!("PostgreSQL target {target} stopped answering (pg_up 0): {reason}"),
    }
}

/// Escapes the characters the notification spec's body markup interprets.
fn body_markup(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(all(unix, not(target_os = "macos")))]
fn show(note: &Note) -> Result<(), notify_rust::error::Error> {
    notify_rust::Notification::new()
        .appname(APP_NAME)
        .summary(&note.summary)
        .body(&body_markup(&note.body))
        .urgency(notify_rust::Urgency::Critical)
        .show()
        .map(drop)
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
fn show(note: &Note) -> Result<(), notify_rust::error::Error> {
    notify_rust::Notification::new()
        .appname(APP_NAME)
        .summary(&note.summary)
        .body(&note.body)
        .show()
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::findings::Finding;

    fn finding(id: &'static str, severity: Severity) -> Finding {
        Finding {
            id,
            severity,
            node_path: "Seq Scan on orders".into(),
            relation: Some("orders".into()),
            explanation: "read a lot".into(),
            action: "add an index".into(),
        }
    }

    fn plan(queryid: &str, findings: Vec<Finding>) -> PlanRecord {
        plan_in(Mode::Analyze, queryid, findings)
    }

    fn plan_in(mode: Mode, queryid: &str, findings: Vec<Finding>) -> PlanRecord {
        PlanRecord {
            datname: "app".into(),
            usename: "u".into(),
            queryid: queryid.into(),
            fingerprint: "f".into(),
            query: Some("SELECT * FROM orders WHERE customer = $1".into()),
            mode,
            note: None,
            parameters: "none",
            mean_seconds: 1.0,
            explained_at: 0.0,
            plan: serde_json::Value::Null,
            findings,
            shape_hash: String::new(),
            previous: None,
        }
    }

    fn summaries(notes: Vec<Note>) -> Vec<String> {
        notes.into_iter().map(|n| n.summary).collect()
    }

    #[test]
    fn only_new_critical_findings_are_announced() {
        let n = Notifier::start();
        let seq = || finding("seq_scan_large_filter", Severity::Critical);
        let est = || finding("row_misestimate", Severity::Critical);
        let warn = || finding("sort_spill", Severity::Warning);
        let (analyze, generic) = (Mode::Analyze, Mode::Generic);
        // (target, mode, queryid, findings of the new plan, summaries announced)
        type Case = (
            &'static str,
            Mode,
            &'static str,
            Vec<Finding>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "a",
                analyze,
                "1",
                vec![seq(), warn()],
                vec!["pgvigil a: critical finding seq_scan_large_filter"],
            ),
            // Explained again with the same finding: nothing new.
            ("a", analyze, "1", vec![seq(), warn()], vec![]),
            // Another finding appears beside it.
            (
                "a",
                analyze,
                "1",
                vec![seq(), est()],
                vec!["pgvigil a: critical finding row_misestimate"],
            ),
            // The same statement on another target is another statement.
            (
                "b",
                analyze,
                "1",
                vec![seq()],
                vec!["pgvigil b: critical finding seq_scan_large_filter"],
            ),
            // A generic plan cannot show the findings are gone.
            ("a", generic, "1", vec![], vec![]),
            ("a", analyze, "1", vec![seq(), est()], vec![]),
            // Fixed, as ANALYZE shows, then back: announced again.
            ("a", analyze, "1", vec![warn()], vec![]),
            (
                "a",
                analyze,
                "1",
                vec![seq()],
                vec!["pgvigil a: critical finding seq_scan_large_filter"],
            ),
            ("a", analyze, "2", vec![warn()], vec![]),
        ];
        for (i, (target, mode, queryid, findings, want)) in cases.into_iter().enumerate() {
            let got = summaries(n.new_critical(target, &plan_in(mode, queryid, findings)));
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn notes_name_the_target_and_what_happened() {
        let note = finding_note(
            "main",
            &plan("42", vec![]),
            &finding("seq_scan_large_filter", Severity::Critical),
        );
        assert!(note.body.contains("queryid 42") && note.body.contains("add an index"));
        let lost = lost_note("main", "connection refused");
        assert_eq!(lost.summary, "pgvigil main: target lost");
        assert!(lost.body.contains("connection refused"));
        assert_eq!(body_markup("a<b>&c"), "a&lt;b&gt;&amp;c");
    }
}
