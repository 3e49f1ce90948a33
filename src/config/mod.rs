//! The configuration file (documented in `packaging/pgvigil.toml`): raw values as written, then a validated
//! form, which is what the rest of pgvigil reads.
//!
//! A config always yields either a [`Config`] or the full list of
//! [`Problem`]s, each with its key path, never just the first: stage one
//! (deserializing) removes each offending key and retries, stage two
//! (validating) checks every section and carries on after a problem.
//!
//! # Layout
//!
//! - `raw.rs`: the serde types, as written, with their defaults.
//! - `load.rs`: reading the file, TOML and serde errors with key paths;
//!   [`Config::load`], [`Config::parse`], [`Config::from_dsn`].
//! - `validate.rs`: one function per section (targets, collectors,
//!   explain, web, notify), from raw to validated.
//! - `queries.rs`: `[[target.query]]`, the custom queries: the EXPLAIN
//!   guard on their SQL, metric and label names.
//! - `redis.rs`: `[[redis]]`, the cache-tier targets and their URLs.
//! - `secrets.rs`: passwords from `password_file` and `password_env`.
//! - This file: the validated types, [`Problem`], [`ConfigError`] and
//!   [`Environment`].
//!
//! Every field's doc comment is also its documentation in
//! `packaging/pgvigil.toml`, which a test parses.
//!
//! Not here: what a DSN may say and how libpq fills it in (`target/dsn`),
//! connecting, or acting on any setting; the config is plain data once
//! validated.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::connection::dsn::ConnParams;

mod load;
mod queries;
mod raw;
mod redis;
mod secrets;
mod validate;

#[cfg(test)]
mod tests;

pub use raw::{
    CollectorSettings, DEFAULT_LISTEN, Databases, Every, Interval, OneOrMany, QueryMetricType,
    RawBackup, RawCollectors, RawConfig, RawExplain, RawLogs, RawNotify, RawPgbouncer, RawQuery,
    RawQueryMetric, RawRedis, RawRedisCollectors, RawTarget, RawWeb, Setting, StatementsSettings,
};
pub use redis::{Redis, RedisIntervals};

/// Whether pgvigil itself publishes a family that takes this name: a
/// custom query's metric may not. Only the collector registry knows
/// pgvigil's families, and it sits above the config, so it hands this
/// down ([`Config::load_with`]); see docs/design.md.
pub type Catalogue<'a> = &'a dyn Fn(&str) -> bool;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// The targets, in file order.
    pub targets: Vec<Target>,
    /// The Redis targets (`[[redis]]`), in file order.
    pub redis: Vec<Redis>,
    /// The collector schedule.
    pub collectors: Collectors,
    /// Automatic EXPLAIN; `None` when disabled.
    pub explain: Option<Explain>,
    /// Desktop notifications.
    pub notify: Notify,
    /// Access to the HTTP server.
    pub web: Web,
}

/// One validated target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Its name: the `target` label of every one of its series.
    pub name: String,
    /// Connection parameters, password resolved, defaults applied.
    pub conn: ConnParams,
    /// Databases per-database collectors visit.
    pub databases: Databases,
    /// Backup freshness settings, when configured.
    pub backup: Option<Backup>,
    /// PgBouncers in front of the server.
    pub pgbouncers: Vec<Pgbouncer>,
    /// The log directory to follow, when configured.
    pub logs: Option<Logs>,
    /// Custom queries (`[[target.query]]`), in file order.
    pub queries: Vec<Query>,
}

/// A validated custom query: one guarded read-only SELECT whose rows
/// become the user's own metric families.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Its name; the collector is `query:<name>`.
    pub name: String,
    /// The database it runs in; `None`: the target's own.
    pub database: Option<String>,
    /// How often it runs; `None` means off.
    pub interval: Option<Duration>,
    /// Its statement_timeout, at most `collectors.timeout`.
    pub timeout: Duration,
    /// The SELECT, as written; the guard has passed it.
    pub sql: String,
    /// Columns that become labels of the same names.
    pub labels: Vec<String>,
    /// Columns published as metrics.
    pub metrics: Vec<QueryMetric>,
    /// Most series one run may publish.
    pub max_series: usize,
}

/// One metric of a custom query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMetric {
    /// The result column holding the value.
    pub column: String,
    /// The registered name (a counter's exposed name adds `_total`).
    pub name: String,
    /// Gauge or counter.
    pub kind: crate::metric::Kind,
    /// Its help text.
    pub help: String,
}

/// Validated `[target.logs]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Logs {
    /// The directory.
    pub directory: PathBuf,
    /// The format; `None` asks the server.
    pub format: Option<crate::logs::record::Format>,
    /// The state file.
    pub state_file: PathBuf,
}

/// A validated PgBouncer to watch.
#[derive(Debug, Clone, PartialEq)]
pub struct Pgbouncer {
    /// Its name: the `pgbouncer` label of all its series, unique within
    /// the target.
    pub name: String,
    /// How to reach its admin console.
    pub conn: ConnParams,
}

/// Validated backup settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// Stanza.
    pub stanza: String,
    /// Executable.
    pub command: PathBuf,
    /// Config file.
    pub config: Option<PathBuf>,
    /// Interval.
    pub interval: Duration,
    /// Timeout of one call.
    pub timeout: Duration,
    /// Full backup schedule.
    pub full_max_age: Duration,
    /// Any-backup schedule.
    pub max_age: Duration,
    /// How often `pgbackrest verify` runs; `None`: never.
    pub verify: Option<Duration>,
    /// How long one verify may take.
    pub verify_timeout: Duration,
    /// Where `restore-test` restores.
    pub restore_dir: Option<PathBuf>,
    /// The restored instance's port (0: a free one).
    pub restore_port: u16,
    /// Time limit of restore, start and recovery.
    pub restore_timeout: Duration,
    /// Read-only query run on the restored copy.
    pub restore_smoke_query: Option<String>,
    /// The database the smoke query runs in.
    pub restore_smoke_database: String,
    /// How often the daemon runs the restore test; `None`: never.
    pub restore_test: Option<Duration>,
    /// Recovery time objective.
    pub restore_rto_objective: Duration,
    /// Recovery point objective.
    pub restore_rpo_objective: Duration,
    /// The last verify and restore tests, kept across restarts.
    pub state_file: PathBuf,
}

/// Collector intervals after validation; `None` means off.
#[derive(Debug, Clone, PartialEq)]
pub struct Collectors {
    /// Time budget of one run, also the session statement_timeout.
    pub timeout: Duration,
    /// Session lock_timeout.
    pub lock_timeout: Duration,
    /// Interval of the server collector.
    pub server: Option<Duration>,
    /// Interval of the connections collector.
    pub connections: Option<Duration>,
    /// Interval of the databases collector.
    pub databases: Option<Duration>,
    /// Interval of the database_size collector.
    pub database_size: Option<Duration>,
    /// Interval of the replication collector.
    pub replication: Option<Duration>,
    /// Interval of the slots collector.
    pub slots: Option<Duration>,
    /// Interval of the subscriptions collector.
    pub subscriptions: Option<Duration>,
    /// Interval of the wal collector.
    pub wal: Option<Duration>,
    /// Interval of the checkpoints collector.
    pub checkpoints: Option<Duration>,
    /// Interval of the io collector.
    pub io: Option<Duration>,
    /// Interval of the archiver collector.
    pub archiver: Option<Duration>,
    /// Interval of the filesystem collector.
    pub filesystem: Option<Duration>,
    /// Interval of the tables collector.
    pub tables: Option<Duration>,
    /// Interval of the vacuum collector.
    pub vacuum: Option<Duration>,
    /// The schema collector.
    pub schema: Schema,
    /// Interval of the vacuum_tables collector.
    pub vacuum_tables: Option<Duration>,
    /// Interval of the active_sessions collector.
    pub active_sessions: Option<Duration>,
    /// The amcheck collector.
    pub amcheck: Amcheck,
    /// Interval of the PgBouncer collectors.
    pub pgbouncer: Option<Duration>,
    /// Interval of the logs collector.
    pub logs: Option<Duration>,
    /// The statements collector.
    pub statements: Statements,
}

/// The schema collector's validated settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    /// Interval; `None` means off.
    pub interval: Option<Duration>,
    /// Size from which an index without scans is listed as unused.
    pub unused_index_min_bytes: u64,
}

/// The amcheck collector's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amcheck {
    /// Interval; `None` means off.
    pub interval: Option<Duration>,
    /// Pages verified per hour at most (unless the pass would be late).
    pub pages_per_hour: u64,
    /// A full pass at least this often.
    pub full_pass: Duration,
    /// Where each target's state file goes.
    pub state_directory: PathBuf,
}

/// The statements collector's validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Statements {
    /// Interval; `None` means off.
    pub interval: Option<Duration>,
    /// Statements published individually.
    pub top: usize,
    /// Statements with a latency histogram of their own (at most `top`).
    pub histograms: usize,
    /// Histogram bucket upper bounds in seconds.
    pub buckets: std::sync::Arc<[f64]>,
}

/// Validated `[explain]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Explain {
    /// Mean time that marks a statement slow.
    pub slow_threshold: Duration,
    /// Whether ANALYZE may be used.
    pub analyze: bool,
    /// Timeout of each EXPLAIN.
    pub statement_timeout: Duration,
    /// Global hourly budget.
    pub max_per_hour: u32,
    /// Minimum time between two EXPLAINs of one statement.
    pub per_statement_interval: Duration,
    /// Whether literals are redacted.
    pub redact: bool,
}

/// Validated `[notify]` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    /// Whether desktop notifications are sent.
    pub desktop: bool,
}

/// Validated `[web]` settings.
#[derive(Debug, Clone, Default)]
pub struct Web {
    /// User name to bcrypt hash (each hash checked); empty means no authentication.
    pub basic_auth_users: std::collections::BTreeMap<String, String>,
    /// The HTTPS configuration, certificate and key loaded; `None` serves plain HTTP.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// One problem in a config, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `target[0].dsn`; empty for the file as a whole.
    pub path: String,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("could not read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config has problems; all of them are listed.
    #[error("{} problem{} in {origin}:\n{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, list(problems))]
    Invalid {
        /// Where the config came from (a file name, or "the command line").
        origin: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Adding a problem where validation and loading find one.
trait Report {
    /// Records that `path` has a problem; the caller carries on.
    fn report(&mut self, path: impl Into<String>, message: impl Into<String>);
}

impl Report for Vec<Problem> {
    fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// What validation may look up outside the file: environment variables and
/// the OS user (for libpq's defaults). Tests pass their own.
pub struct Environment<'a> {
    /// Reads an environment variable.
    pub var: &'a dyn Fn(&str) -> Option<String>,
}

impl Environment<'_> {
    /// The process environment.
    pub fn process() -> Environment<'static> {
        Environment {
            var: &|name| std::env::var(name).ok(),
        }
    }

    fn os_user(&self) -> Option<String> {
        (self.var)("USER").or_else(|| (self.var)("LOGNAME"))
    }

    fn home(&self) -> Option<PathBuf> {
        (self.var)("HOME").map(PathBuf::from)
    }
}
