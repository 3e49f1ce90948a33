//! The last interval's statement latencies, for `/api/v1/statements`,
//! `pgvigil once --format table` and the explain worker.

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
