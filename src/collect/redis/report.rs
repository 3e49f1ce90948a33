//! What the Redis collectors report beyond metrics: plain data for
//! `/api/v1/redis`, the table and the `/` page, read from the store.

/// One command in the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommandStat {
    /// The command (`get`, `config|get`).
    pub cmd: String,
    /// Calls.
    pub calls: f64,
    /// Total time, seconds.
    pub total_seconds: f64,
    /// Mean time per call, seconds.
    pub mean_seconds: f64,
    /// Calls refused before execution.
    pub rejected_calls: f64,
    /// Calls failed in execution.
    pub failed_calls: f64,
    /// p50, p99, p99.9 in seconds, when latencystats has them.
    pub p50_seconds: Option<f64>,
    /// p99.
    pub p99_seconds: Option<f64>,
    /// p99.9.
    pub p999_seconds: Option<f64>,
}

/// The top commands by total time.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CommandsReport {
    /// Commands, most time first, at most ten.
    pub top: Vec<CommandStat>,
    /// Whether the server has latencystats (Redis 7+).
    pub latencystats: bool,
}

/// One slow-log entry as published: no arguments.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SlowEntry {
    /// The server's id of the entry.
    pub id: u64,
    /// When it ran, Unix seconds.
    pub timestamp: i64,
    /// Its execution time, seconds.
    pub duration_seconds: f64,
    /// The command name only (`get`, `keys`).
    pub command: String,
}

/// The slow log as the report shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SlowlogReport {
    /// The slowest entries of the log now, slowest first.
    pub slowest: Vec<SlowEntry>,
    /// Entries with an id above the highest this pgvigil saw last run
    /// (`None` on its first run: it cannot know what was new).
    pub new_since_last_read: Option<u64>,
}
