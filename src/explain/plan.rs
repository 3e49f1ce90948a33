//! What an automatic EXPLAIN produced, as plain data: the plan record the
//! worker publishes and the store, the page, the API and notifications
//! read. Nothing here runs anything; the worker that fills these in is
//! above, and nothing that reads them needs to know about it.

use serde::Serialize;
use serde_json::Value;

use super::findings::Finding;

/// How a plan was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// EXPLAIN ANALYZE: the statement ran, with real row counts and times.
    Analyze,
    /// Plain EXPLAIN: planned with the real values, not run.
    Plain,
    /// A generic plan: planned without parameter values, not run.
    Generic,
    /// Logged by auto_explain in the server log: pgvigil ran nothing.
    AutoExplain,
}

impl Mode {
    /// The `result` label of `pgvigil_explain_runs_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Analyze => "analyze",
            Mode::Plain => "plain",
            Mode::Generic => "generic",
            Mode::AutoExplain => "auto_explain",
        }
    }
}

/// One automatic plan, as published.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRecord {
    /// Database.
    pub datname: String,
    /// Role that ran the statement.
    pub usename: String,
    /// pg_stat_statements query id.
    pub queryid: String,
    /// pg_query fingerprint.
    pub fingerprint: String,
    /// Normalized text.
    pub query: Option<String>,
    /// How the plan was obtained.
    pub mode: Mode,
    /// Why not ANALYZE, when it was not.
    pub note: Option<String>,
    /// Where parameter values came from.
    pub parameters: &'static str,
    /// The interval mean that made the statement slow, seconds.
    pub mean_seconds: f64,
    /// When, Unix seconds.
    pub explained_at: f64,
    /// The plan (literals replaced unless `explain.redact = false`).
    pub plan: Value,
    /// Findings.
    pub findings: Vec<Finding>,
    /// Plan-shape hash.
    pub shape_hash: String,
    /// The plan before, when its shape changed.
    pub previous: Option<Box<PreviousPlan>>,
}

/// A statement's plan before its shape changed.
#[derive(Debug, Clone, Serialize)]
pub struct PreviousPlan {
    /// Its shape hash.
    pub shape_hash: String,
    /// When it was explained.
    pub explained_at: f64,
    /// The plan.
    pub plan: Value,
}
