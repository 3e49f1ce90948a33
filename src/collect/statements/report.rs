//! The last interval's statement latencies, for `/api/v1/statements`,
//! `pgvigil once --format table` and the explain worker, and the same
//! figures since the last statistics reset.

use std::sync::Arc;

use serde::Serialize;

/// Quantiles of one distribution, in seconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// How quantiles were obtained.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Every call took the same time: the quantiles are that time.
    Exact,
    /// Estimated from the interval's moments and the entry's min/max.
    Estimate,
    /// The quantiles named in `exact_quantiles` are slow executions from
    /// the server log, exactly; the others are estimated.
    ExactTail,
}

/// Instance-wide figures for the interval.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceSummary {
    /// Calls of all statements (top-level, not pgvigil's own).
    pub calls: f64,
    /// Their total execution time, seconds.
    pub total_seconds: f64,
    /// Mean per call, seconds.
    pub mean_seconds: f64,
    /// Quantiles over all calls; absent without calls.
    pub quantiles: Option<Quantiles>,
    /// How the quantiles were obtained.
    pub method: Method,
    /// Which quantiles came from the slow-statement log ("p95", "p99").
    pub exact_quantiles: Vec<&'static str>,
}

/// One statement's interval.
#[derive(Debug, Clone, Serialize)]
pub struct StatementSummary {
    /// Database.
    pub datname: String,
    /// Role.
    pub usename: String,
    /// pg_stat_statements query id, as a decimal string (it is a 64-bit value).
    pub queryid: String,
    /// pg_query fingerprint, hex.
    pub fingerprint: String,
    /// Normalized text, at most 200 characters; absent when unknown.
    pub query: Option<String>,
    /// Calls in the interval.
    pub calls: f64,
    /// Execution time in the interval, seconds.
    pub total_seconds: f64,
    /// Mean per call, seconds.
    pub mean_seconds: f64,
    /// Quantiles of the interval's calls.
    pub quantiles: Quantiles,
    /// How they were obtained.
    pub method: Method,
    /// Which quantiles came from the slow-statement log ("p95", "p99").
    pub exact_quantiles: Vec<&'static str>,
    /// The assumed distribution: point, two-point, beta or lognormal.
    pub distribution: &'static str,
    /// Rows per call.
    pub rows_per_call: f64,
    /// Shared buffer hit ratio in the interval (0–1); absent without block access.
    pub shared_hit_ratio: Option<f64>,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct StatementsReport {
    /// Length of the interval, seconds.
    pub interval_seconds: f64,
    /// When it ended, Unix seconds.
    pub collected_at: f64,
    /// Instance-wide figures.
    pub instance: InstanceSummary,
    /// Published (top) statements with calls in the interval, by execution time, largest first.
    pub statements: Vec<StatementSummary>,
}

/// The statements collector's detail: the last interval (absent until two
/// cycles have run) and the cumulative view since the last reset.
#[derive(Debug, Clone, Default)]
pub struct StatementsDetail {
    /// The last interval's report.
    pub interval: Option<Arc<StatementsReport>>,
    /// Everything pg_stat_statements counted since its last reset.
    pub since_reset: Option<Arc<SinceReset>>,
}

/// Statements since the last statistics reset: cumulative counts and
/// percentiles estimated from each entry's cumulative moments and its
/// min/max (the same estimator as for an interval).
#[derive(Debug, Clone, Serialize)]
pub struct SinceReset {
    /// When `pg_stat_statements_reset()` last reset everything, Unix
    /// seconds; absent before pg_stat_statements 1.9 (PostgreSQL 14),
    /// which does not record it. Entries created later count from their
    /// creation, and entries evicted and re-created from then.
    pub stats_reset: Option<f64>,
    /// When it was read, Unix seconds.
    pub collected_at: f64,
    /// All top-level statements except pgvigil's own.
    pub instance: InstanceSummary,
    /// The statements with the most execution time since the reset,
    /// largest first (at most [`SINCE_RESET_TOP`]); `calls`,
    /// `total_seconds` and the quantiles are cumulative.
    pub statements: Vec<StatementSummary>,
}

/// How many statements the since-reset view lists.
pub const SINCE_RESET_TOP: usize = 20;

/// Replaces the quantiles the slow-statement log knows exactly: `n` calls
/// in the interval, `logged` the durations of those slower than the
/// threshold.
pub fn apply_exact_tail(
    quantiles: &mut Quantiles,
    method: &mut Method,
    exact: &mut Vec<&'static str>,
    n: f64,
    logged: &[f64],
) {
    let found = crate::stats::tail::exact_quantiles(n, logged, &[0.5, 0.95, 0.99]);
    for ((name, slot), value) in [
        ("p50", &mut quantiles.p50),
        ("p95", &mut quantiles.p95),
        ("p99", &mut quantiles.p99),
    ]
    .into_iter()
    .zip(found)
    {
        if let Some(v) = value {
            *slot = v;
            exact.push(name);
        }
    }
    if !exact.is_empty() {
        *method = Method::ExactTail;
    }
}
