//! Where time went over the last few minutes: load by wait event for the
//! server and per statement, for `/api/v1/statements`, the `/` page and
//! `pgvigil once --format table`. Per-statement load is joined with the
//! statements report on `queryid` by the outputs, never as metric labels
//! (a queryid × wait event family would blow the series budget).

use serde::Serialize;
use serde_json::{Value as Json, json};

/// Statements kept in the report, by sampled seconds.
pub const TOP_STATEMENTS: usize = 100;

/// Sampled seconds of one wait event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WaitLoad {
    /// `wait_event_type`, "CPU" when the session was not waiting.
    pub wait_event_type: String,
    /// `wait_event`, "CPU" when the session was not waiting.
    pub wait_event: String,
    /// Sampled active-session seconds.
    pub seconds: f64,
    /// Share of the enclosing total, 0–1.
    pub ratio: f64,
}

/// One statement's load.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatementLoad {
    /// `pg_stat_activity.query_id`, as pg_stat_statements' `queryid`.
    pub queryid: String,
    /// Sampled active-session seconds of the statement in the window.
    pub seconds: f64,
    /// Its average active sessions over the window.
    pub average_active_sessions: f64,
    /// By wait event, largest first.
    pub wait_events: Vec<WaitLoad>,
}

/// The window's load.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoadReport {
    /// Wall time the samples stand for, seconds (up to five minutes).
    pub window_seconds: f64,
    /// Average active sessions over the window (pgvigil's own left out).
    pub average_active_sessions: f64,
    /// The whole server's load by wait event, largest first.
    pub wait_events: Vec<WaitLoad>,
    /// Whether sessions report their statement (`query_id`: PostgreSQL 14
    /// and newer, with `compute_query_id` on or pg_stat_statements
    /// loaded); per-statement load needs it.
    pub per_statement: bool,
    /// The statements with the most sampled seconds, largest first.
    pub statements: Vec<StatementLoad>,
}

/// Sorts wait events largest first and sets their shares of `total`.
pub fn ranked(mut waits: Vec<WaitLoad>, total: f64) -> Vec<WaitLoad> {
    for w in &mut waits {
        w.ratio = if total > 0.0 { w.seconds / total } else { 0.0 };
    }
    waits.sort_by(|a, b| {
        b.seconds
            .total_cmp(&a.seconds)
            .then_with(|| a.wait_event_type.cmp(&b.wait_event_type))
            .then_with(|| a.wait_event.cmp(&b.wait_event))
    });
    waits
}

impl LoadReport {
    /// The load of the statement `queryid`, if it was sampled active.
    pub fn statement(&self, queryid: &str) -> Option<&StatementLoad> {
        self.statements.iter().find(|s| s.queryid == queryid)
    }

    /// Adds each statement's load to a serialized statements report (its
    /// `statements` array, matched on `queryid`), and the window.
    pub fn annotate(&self, report: &mut Json) {
        let Some(obj) = report.as_object_mut() else {
            return;
        };
        obj.insert("load_window_seconds".into(), json!(self.window_seconds));
        let Some(statements) = obj.get_mut("statements").and_then(Json::as_array_mut) else {
            return;
        };
        for s in statements {
            let Some(s) = s.as_object_mut() else { continue };
            let load = s
                .get("queryid")
                .and_then(Json::as_str)
                .and_then(|q| self.statement(q))
                .map(|l| {
                    json!({
                        "seconds": l.seconds,
                        "average_active_sessions": l.average_active_sessions,
                        "wait_events": l.wait_events,
                    })
                });
            s.insert("load".into(), load.unwrap_or(Json::Null));
        }
    }
}

/// "IO:DataFileRead 70%, CPU 20%": the largest wait events of a load, for
/// tables and the page.
pub fn summary(waits: &[WaitLoad], max: usize) -> String {
    waits
        .iter()
        .take(max)
        .map(|w| format!("{} {:.0}%", label(w), w.ratio * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "IO:DataFileRead", or "CPU".
pub fn label(w: &WaitLoad) -> String {
    if w.wait_event_type == w.wait_event {
        w.wait_event.clone()
    } else {
        format!("{}:{}", w.wait_event_type, w.wait_event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(kind: &str, event: &str, seconds: f64) -> WaitLoad {
        WaitLoad {
            wait_event_type: kind.into(),
            wait_event: event.into(),
            seconds,
            ratio: 0.0,
        }
    }

    #[test]
    fn shares_read_largest_first() {
        let waits = ranked(
            vec![wait("CPU", "CPU", 2.0), wait("IO", "DataFileRead", 7.0)],
            10.0,
        );
        assert_eq!(summary(&waits, 3), "IO:DataFileRead 70%, CPU 20%");
    }

    #[test]
    fn statements_are_annotated_by_queryid() {
        let report = LoadReport {
            window_seconds: 60.0,
            average_active_sessions: 0.5,
            wait_events: vec![],
            per_statement: true,
            statements: vec![StatementLoad {
                queryid: "42".into(),
                seconds: 30.0,
                average_active_sessions: 0.5,
                wait_events: ranked(vec![wait("Lock", "relation", 30.0)], 30.0),
            }],
        };
        let mut json = json!({ "statements": [{ "queryid": "42" }, { "queryid": "7" }] });
        report.annotate(&mut json);
        assert_eq!(json["statements"][0]["load"]["seconds"], 30.0);
        assert_eq!(
            json["statements"][0]["load"]["wait_events"][0]["ratio"],
            1.0
        );
        assert!(json["statements"][1]["load"].is_null());
    }
}
