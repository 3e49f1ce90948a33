//! The configuration file (SPEC §3): raw values as written, then a validated
//! form.
//!
//! Stage one deserializes strictly (`deny_unknown_fields`) but does not stop
//! at the first mistake: each serde error is recorded with its key path, the
//! offending key is taken out (so its default applies) and deserialization is
//! retried. Stage two checks meaning (addresses, DSNs, secrets) and again
//! reports every problem. A config therefore always yields either a
//! [`Config`] or the full list of [`Problem`]s, never just the first.
//!
//! Every field's doc comment is also its documentation in
//! `packaging/pgvigil.toml`, which a test parses.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::target::dsn::ConnParams;

/// How often a collector runs, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// The collector does not run.
    Off,
    /// The collector runs this often.
    Every(Duration),
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_interval(&text).map_err(de::Error::custom)
    }
}

fn parse_interval(text: &str) -> Result<Interval, String> {
    if text.trim() == "off" {
        return Ok(Interval::Off);
    }
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Err("an interval must be longer than zero (or \"off\")".into()),
        Ok(d) => Ok(Interval::Every(d)),
        Err(e) => Err(format!(
            "invalid interval {text:?}: {e} (write e.g. \"15s\", \"2m\" or \"off\")"
        )),
    }
}

/// Settings shared by every collector table: `name = { interval = "30s" }`,
/// or the shorthand `name = "30s"` / `name = "off"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorSettings {
    /// How often this collector runs; `collectors.default_interval` when unset, `"off"` disables it.
    pub interval: Option<Interval>,
}

/// `[collectors] statements = { … }` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatementsSettings {
    /// How often the statements collector runs; `"off"` disables it.
    pub interval: Option<Interval>,
    /// Statements published individually (by execution time in the interval); the rest fold into queryid="other".
    pub top: usize,
    /// Latency histogram bucket upper bounds, in seconds, ascending.
    pub buckets: Vec<f64>,
}

impl Default for StatementsSettings {
    fn default() -> Self {
        StatementsSettings {
            interval: Some(Interval::Every(Duration::from_secs(30))),
            top: 100,
            buckets: crate::stats::histogram::DEFAULT_BUCKETS.to_vec(),
        }
    }
}

/// A collector's settings when its own default interval differs from
/// `default_interval` (slow, costly reads): every `SECS` seconds unless set.
#[derive(Debug, Clone)]
pub struct Every<const SECS: u64> {
    /// How often this collector runs; `"off"` disables it.
    pub interval: Option<Interval>,
}

impl<'de, const SECS: u64> Deserialize<'de> for Every<SECS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // serde cannot derive for const generics: go through a plain struct.
        let raw = CollectorSettings::deserialize(d)?;
        Ok(raw
            .interval
            .map_or_else(Every::default, |i| Every { interval: Some(i) }))
    }
}

impl<const SECS: u64> Default for Every<SECS> {
    fn default() -> Self {
        Every {
            interval: Some(Interval::Every(Duration::from_secs(SECS))),
        }
    }
}

impl<const SECS: u64> HasInterval for Every<SECS> {
    fn with_interval(interval: Interval) -> Self {
        Every {
            interval: Some(interval),
        }
    }
}

/// A collector's settings: a table, or an interval string as shorthand.
trait HasInterval: Default {
    fn with_interval(interval: Interval) -> Self;
}

impl HasInterval for CollectorSettings {
    fn with_interval(interval: Interval) -> Self {
        CollectorSettings {
            interval: Some(interval),
        }
    }
}

impl HasInterval for StatementsSettings {
    fn with_interval(interval: Interval) -> Self {
        StatementsSettings {
            interval: Some(interval),
            ..StatementsSettings::default()
        }
    }
}

/// A collector's settings as written, in either spelling.
#[derive(Debug, Clone, Default)]
pub struct Setting<T = CollectorSettings>(pub T);

impl<'de, T: HasInterval + Deserialize<'de>> Deserialize<'de> for Setting<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: HasInterval + Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Setting<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an interval such as \"30s\", \"off\", or a table like { interval = \"30s\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Setting<T>, E> {
                parse_interval(v)
                    .map(|i| Setting(T::with_interval(i)))
                    .map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Setting<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Setting)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `[collectors]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCollectors {
    /// Interval of every collector without its own.
    #[serde(with = "humantime_serde")]
    pub default_interval: Duration,
    /// Time budget of one collector run; also the session's statement_timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// lock_timeout of the collector session: a catalog lock held by someone else fails fast instead of queueing.
    #[serde(with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// Server identity and role: pg_server_info, pg_in_recovery, start time, max_connections.
    pub server: Setting,
    /// pg_stat_activity and pg_locks: connections by state, blocked sessions, long transactions, locks.
    pub connections: Setting,
    /// pg_stat_database counters and frozen XID age.
    pub databases: Setting,
    /// pg_database_size of every database: every 5 minutes unless set (it stats every file).
    pub database_size: Setting<Every<300>>,
    /// Streaming replication: lag of each replica (on a primary), replay lag and receiver (on a replica).
    pub replication: Setting,
    /// Replication slots: active, retained WAL, safe_wal_size, wal_status.
    pub slots: Setting,
    /// WAL position (as a byte counter) and the WAL directory's size.
    pub wal: Setting,
    /// Checkpoints and buffer writes (pg_stat_bgwriter / pg_stat_checkpointer).
    pub checkpoints: Setting,
    /// WAL archiving: pg_stat_archiver, segments waiting, recovery point at risk.
    pub archiver: Setting,
    /// Free space of the filesystems holding the data directory, WAL and tablespaces (when on the database host).
    pub filesystem: Setting,
    /// Tables and indexes of every watched database: sizes, scans, dead tuples, autovacuum; every minute unless set.
    pub tables: Setting<Every<60>>,
    /// PgBouncer admin consoles configured under [target.pgbouncer]: pools, databases, totals.
    pub pgbouncer: Setting,
    /// The server's log directory configured under [target.logs]: slow statements, auth failures, errors; every 5 seconds unless set.
    pub logs: Setting<Every<5>>,
    /// pg_stat_statements: per-statement counters, latency histograms and percentiles.
    pub statements: Setting<StatementsSettings>,
}

impl Default for RawCollectors {
    fn default() -> Self {
        RawCollectors {
            default_interval: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(1),
            server: Setting::default(),
            connections: Setting::default(),
            databases: Setting::default(),
            database_size: Setting::default(),
            replication: Setting::default(),
            slots: Setting::default(),
            wal: Setting::default(),
            checkpoints: Setting::default(),
            archiver: Setting::default(),
            filesystem: Setting::default(),
            tables: Setting::default(),
            pgbouncer: Setting::default(),
            logs: Setting::default(),
            statements: Setting::default(),
        }
    }
}

/// One `[[target]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTarget {
    /// Becomes the `target` label when there are several targets; defaults to "main".
    pub name: Option<String>,
    /// libpq connection string (URI or key=value); a password here works but password_file or password_env is better.
    pub dsn: String,
    /// File holding the password (first line); read at start-up.
    pub password_file: Option<PathBuf>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// Databases whose tables are watched: "auto" (every one the role may connect to) or a list of names.
    pub databases: Databases,
    /// Backup freshness from pgBackRest.
    pub backup: Option<RawBackup>,
    /// PgBouncer admin consoles in front of this server: one table, or an array of tables for several.
    pub pgbouncer: OneOrMany<RawPgbouncer>,
    /// The server's log directory, when pgvigil runs beside the server.
    pub logs: Option<RawLogs>,
}

/// `[target.logs]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogs {
    /// The server's log_directory, as pgvigil sees it (required).
    pub directory: PathBuf,
    /// "auto" (from the server's log_destination: jsonlog, else csvlog, else stderr), "stderr", "csvlog" or "jsonlog".
    pub format: String,
    /// Where the read position and the fingerprints seen are kept across restarts.
    pub state_file: Option<PathBuf>,
}

/// Validated `[target.logs]`.
#[derive(Debug, Clone)]
pub struct Logs {
    /// The directory.
    pub directory: PathBuf,
    /// The format; `None` asks the server.
    pub format: Option<crate::logs::record::Format>,
    /// The state file.
    pub state_file: PathBuf,
}

/// A table, or an array of tables (`[target.pgbouncer]` or `[[target.pgbouncer]]`).
#[derive(Debug, Clone, Default)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table or an array of tables")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OneOrMany<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|one| OneOrMany(vec![one]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany<T>, A::Error> {
                let mut all = Vec::new();
                while let Some(one) = seq.next_element()? {
                    all.push(one);
                }
                Ok(OneOrMany(all))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `[target.pgbouncer]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPgbouncer {
    /// Becomes the `pgbouncer` label when a target has several; defaults to "pgbouncer".
    pub name: Option<String>,
    /// The admin console: a DSN to the "pgbouncer" database as a user in admin_users or stats_users.
    pub dsn: String,
    /// File holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
}

/// A validated PgBouncer to watch.
#[derive(Debug, Clone)]
pub struct Pgbouncer {
    /// Its name.
    pub name: String,
    /// Whether series carry a `pgbouncer` label (the target has several).
    pub labelled: bool,
    /// How to reach its admin console.
    pub conn: ConnParams,
}

/// `[target.backup]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBackup {
    /// The pgBackRest stanza; runs `pgbackrest --stanza=… --output=json info`.
    pub pgbackrest_stanza: String,
    /// The pgbackrest executable.
    pub pgbackrest_command: PathBuf,
    /// pgBackRest's configuration file, when not the default (/etc/pgbackrest/pgbackrest.conf).
    pub pgbackrest_config: Option<PathBuf>,
    /// How often to ask pgBackRest (each call reads the repository).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long one `pgbackrest info` may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The full-backup schedule: a full backup older than this is overdue.
    #[serde(with = "humantime_serde")]
    pub full_max_age: Duration,
    /// Any backup (full, differential or incremental) older than this is overdue.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for RawBackup {
    fn default() -> Self {
        RawBackup {
            pgbackrest_stanza: String::new(),
            pgbackrest_command: PathBuf::from("pgbackrest"),
            pgbackrest_config: None,
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(60),
            full_max_age: Duration::from_secs(7 * 86400 + 3600),
            max_age: Duration::from_secs(86400 + 3600),
        }
    }
}

/// Validated backup settings.
#[derive(Debug, Clone)]
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
}

/// Which databases per-database collectors visit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Databases {
    /// Every database that allows connections and the role may connect to.
    #[default]
    Auto,
    /// These, by name.
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for Databases {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Databases;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"auto\" or a list of database names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Databases, E> {
                if v == "auto" {
                    Ok(Databases::Auto)
                } else {
                    Err(E::custom(format!(
                        "{v:?}: expected \"auto\" or a list of database names"
                    )))
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Databases, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(Databases::List(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Address and port of the HTTP server (/metrics, /healthz, /readyz).
    pub listen: String,
    /// The PostgreSQL servers to watch.
    #[serde(rename = "target")]
    pub targets: Vec<RawTarget>,
    /// Collector schedule.
    pub collectors: RawCollectors,
    /// Automatic EXPLAIN of slow statements.
    pub explain: RawExplain,
    /// Desktop notifications, for debugging on a workstation.
    pub notify: RawNotify,
    /// Who may reach the HTTP server, and over TLS or not.
    pub web: RawWeb,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: DEFAULT_LISTEN.into(),
            targets: Vec::new(),
            collectors: RawCollectors::default(),
            explain: RawExplain::default(),
            notify: RawNotify::default(),
            web: RawWeb::default(),
        }
    }
}

/// `[web]` as written: the web config of Prometheus exporters, in TOML.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWeb {
    /// HTTP basic authentication: user name to bcrypt hash; empty means none. /healthz and /readyz stay open.
    pub basic_auth_users: std::collections::BTreeMap<String, String>,
    /// PEM certificate chain for HTTPS (server certificate first); set together with tls_key_file.
    pub tls_cert_file: PathBuf,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub tls_key_file: PathBuf,
}

/// `[explain]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawExplain {
    /// Explain slow statements automatically (needs the statements collector).
    pub enabled: bool,
    /// A statement whose mean time over the last interval exceeds this is slow.
    #[serde(with = "humantime_serde")]
    pub slow_threshold: Duration,
    /// Use EXPLAIN ANALYZE where the guard allows it (one plain SELECT with real parameter values).
    pub analyze: bool,
    /// statement_timeout of each EXPLAIN; statements whose mean is over half of it are not explained.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// EXPLAINs per hour per target, across all statements.
    pub max_per_hour: u32,
    /// Each statement is explained at most once per this long.
    #[serde(with = "humantime_serde")]
    pub per_statement_interval: Duration,
    /// Replace literal values in stored and published plans and texts by $n.
    pub redact: bool,
}

impl Default for RawExplain {
    fn default() -> Self {
        RawExplain {
            enabled: true,
            slow_threshold: Duration::from_millis(100),
            analyze: true,
            statement_timeout: Duration::from_secs(5),
            max_per_hour: 30,
            per_statement_interval: Duration::from_secs(3600),
            redact: true,
        }
    }
}

/// The default HTTP listen address (SPEC §2).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9932";

/// The longest timeout PostgreSQL accepts: `i32::MAX` milliseconds.
const MAX_SERVER_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

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

/// Collector intervals after validation; `None` means off.
#[derive(Debug, Clone)]
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
    /// Interval of the wal collector.
    pub wal: Option<Duration>,
    /// Interval of the checkpoints collector.
    pub checkpoints: Option<Duration>,
    /// Interval of the archiver collector.
    pub archiver: Option<Duration>,
    /// Interval of the filesystem collector.
    pub filesystem: Option<Duration>,
    /// Interval of the tables collector.
    pub tables: Option<Duration>,
    /// Interval of the PgBouncer collectors.
    pub pgbouncer: Option<Duration>,
    /// Interval of the logs collector.
    pub logs: Option<Duration>,
    /// The statements collector.
    pub statements: Statements,
}

/// The statements collector's validated settings.
#[derive(Debug, Clone)]
pub struct Statements {
    /// Interval; `None` means off.
    pub interval: Option<Duration>,
    /// Statements published individually.
    pub top: usize,
    /// Histogram bucket upper bounds in seconds.
    pub buckets: std::sync::Arc<[f64]>,
}

/// One validated target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name (the `target` label with several targets).
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
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// The targets, in file order.
    pub targets: Vec<Target>,
    /// The collector schedule.
    pub collectors: Collectors,
    /// Automatic EXPLAIN; `None` when disabled.
    pub explain: Option<Explain>,
    /// Desktop notifications.
    pub notify: Notify,
    /// Access to the HTTP server.
    pub web: Web,
}

/// Validated `[web]` settings.
#[derive(Debug, Clone, Default)]
pub struct Web {
    /// User name to bcrypt hash (each hash checked); empty means no authentication.
    pub basic_auth_users: std::collections::BTreeMap<String, String>,
    /// The HTTPS configuration, certificate and key loaded; `None` serves plain HTTP.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

fn validate_web(raw: &RawWeb, problem: &mut dyn FnMut(String, String)) -> Web {
    for (user, hash) in &raw.basic_auth_users {
        if user.is_empty() || user.contains(':') {
            problem(
                "web.basic_auth_users".into(),
                format!("{user:?}: a user name must be non-empty and without ':'"),
            );
        }
        if let Some(why) = crate::web::auth::check_hash(hash) {
            problem(format!("web.basic_auth_users.{user}"), why);
        }
    }
    let cert = &raw.tls_cert_file;
    let key = &raw.tls_key_file;
    let tls = match (cert.as_os_str().is_empty(), key.as_os_str().is_empty()) {
        (true, true) => None,
        (false, true) => {
            problem(
                "web.tls_key_file".into(),
                "required with tls_cert_file: set both for HTTPS, or neither".into(),
            );
            None
        }
        (true, false) => {
            problem(
                "web.tls_cert_file".into(),
                "required with tls_key_file: set both for HTTPS, or neither".into(),
            );
            None
        }
        (false, false) => match crate::web::tls::server_config(cert, key) {
            Ok(config) => Some(config),
            Err(e) => {
                problem(format!("web.{}", e.key()), e.to_string());
                None
            }
        },
    };
    Web {
        basic_auth_users: raw.basic_auth_users.clone(),
        tls,
    }
}

/// `[notify]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNotify {
    /// Desktop notifications (D-Bus session bus) for each new critical plan finding and each lost target; for debugging on a workstation.
    pub desktop: bool,
}

/// Validated `[notify]` settings.
#[derive(Debug, Clone, Default)]
pub struct Notify {
    /// Whether desktop notifications are sent.
    pub desktop: bool,
}

/// Validated `[explain]` settings.
#[derive(Debug, Clone)]
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

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path, env: &Environment) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string(), env)
    }

    /// Validates config text; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str, env: &Environment) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            origin: origin.to_string(),
            problems,
        };
        let (raw, mut problems) = match deserialize_all(text) {
            Ok(pair) => pair,
            Err(problem) => return Err(invalid(vec![problem])),
        };
        let config = validate(raw, env, &mut problems);
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(invalid(problems)),
        }
    }

    /// The config used without a file: one target from `dsn` (the `--dsn`
    /// flag or `PGVIGIL_DSN`), completed from libpq's environment variables
    /// and defaults, like psql.
    pub fn from_dsn(dsn: Option<&str>, env: &Environment) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let raw = RawConfig {
            targets: vec![RawTarget {
                dsn: dsn.unwrap_or("").to_string(),
                ..RawTarget::default()
            }],
            ..RawConfig::default()
        };
        let config = validate_with(raw, env, &mut problems, true);
        // There is no file: name the flag, not a key path.
        for p in &mut problems {
            if p.path == "target[0].dsn" {
                p.path = "--dsn (or PGVIGIL_DSN)".into();
            }
        }
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid {
                origin: "the command line".into(),
                problems,
            }),
        }
    }
}

/// Stage one: strict serde, repeated until every problem is known.
fn deserialize_all(text: &str) -> Result<(RawConfig, Vec<Problem>), Problem> {
    let mut value: toml::Table = text.parse().map_err(|e: toml::de::Error| Problem {
        path: String::new(),
        message: one_line(&e.to_string()),
    })?;
    let mut problems = Vec::new();
    // Each round removes one offending key, so this ends; the bound only
    // guards against a key we fail to remove.
    for _ in 0..256 {
        let attempt: Result<RawConfig, _> =
            serde_path_to_error::deserialize(toml::Value::Table(value.clone()));
        match attempt {
            Ok(raw) => return Ok((raw, problems)),
            Err(err) => {
                let mut segments = path_segments(err.path());
                let message = err.inner().to_string();
                // Make sure an unknown key's path ends with the key itself.
                if let Some(key) = unknown_field(&message)
                    && !matches!(segments.last(), Some(Segment::Key(k)) if *k == key)
                {
                    segments.push(Segment::Key(key));
                }
                problems.push(Problem {
                    path: render(&segments),
                    message: one_line(&message),
                });
                if !remove(&mut value, &segments) {
                    return Ok((RawConfig::default(), problems));
                }
            }
        }
    }
    Ok((RawConfig::default(), problems))
}

enum Segment {
    Key(String),
    Index(usize),
}

fn path_segments(path: &serde_path_to_error::Path) -> Vec<Segment> {
    path.iter()
        .filter_map(|s| match s {
            serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
            _ => None,
        })
        .collect()
}

fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                // Our own `[[target]]` array is renamed in serde; show it as written.
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// Flattens a serde message to one line and drops the "in `key`" suffix
/// the TOML deserializer adds, since the path already says where.
fn one_line(message: &str) -> String {
    let flat = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.rfind(" in `") {
        Some(at) if flat.ends_with('`') => flat[..at].to_string(),
        _ => flat,
    }
}

/// Removes the value at `segments`; false when nothing could be removed.
fn remove(table: &mut toml::Table, segments: &[Segment]) -> bool {
    fn remove_in(value: &mut toml::Value, segments: &[Segment]) -> bool {
        match (segments, value) {
            ([Segment::Key(k)], toml::Value::Table(t)) => t.remove(k).is_some(),
            ([Segment::Index(i)], toml::Value::Array(a)) if *i < a.len() => {
                // Keep indexes of later entries stable: blank the entry instead.
                a[*i] = toml::Value::Table(toml::Table::new());
                true
            }
            ([Segment::Key(k), rest @ ..], toml::Value::Table(t)) => {
                t.get_mut(k).is_some_and(|v| remove_in(v, rest))
            }
            ([Segment::Index(i), rest @ ..], toml::Value::Array(a)) => {
                a.get_mut(*i).is_some_and(|v| remove_in(v, rest))
            }
            _ => false,
        }
    }
    let mut root = toml::Value::Table(std::mem::take(table));
    let removed = !segments.is_empty() && remove_in(&mut root, segments);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    removed
}

/// Stage two for a config file.
fn validate(raw: RawConfig, env: &Environment, problems: &mut Vec<Problem>) -> Option<Config> {
    validate_with(raw, env, problems, false)
}

fn validate_with(
    raw: RawConfig,
    env: &Environment,
    problems: &mut Vec<Problem>,
    libpq_env: bool,
) -> Option<Config> {
    let mut problem = |path: String, message: String| problems.push(Problem { path, message });

    let listen = match raw.listen.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problem(
                "listen".into(),
                format!(
                    "{:?} is not an address and port such as \"0.0.0.0:9932\"",
                    raw.listen
                ),
            );
            None
        }
    };

    if raw.targets.is_empty() {
        problem(
            "target".into(),
            "no [[target]] configured: add one with at least a dsn".into(),
        );
    }
    let mut names = BTreeSet::new();
    let several = raw.targets.len() > 1;
    let mut targets = Vec::new();
    for (i, t) in raw.targets.into_iter().enumerate() {
        let path = |key: &str| format!("target[{i}].{key}");
        let name = match t.name {
            Some(n) => n,
            None if several => {
                problem(
                    path("name"),
                    "required when there are several targets".into(),
                );
                format!("target{i}")
            }
            None => "main".to_string(),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            problem(
                path("name"),
                format!(
                    "{name:?} must be non-empty and use only letters, digits, '_', '.' and '-'"
                ),
            );
        } else if !names.insert(name.clone()) {
            problem(path("name"), format!("{name:?} is used by another target"));
        }
        let mut conn = match ConnParams::parse(&t.dsn) {
            Ok(c) => c,
            Err(e) => {
                problem(path("dsn"), e.to_string());
                continue;
            }
        };
        if libpq_env && let Err(e) = conn.fill_from_env(|name| (env.var)(name)) {
            problem(String::new(), format!("environment: {e}"));
        }
        if let Err((key, message)) = apply_password(
            &mut conn,
            t.password_file.as_deref(),
            t.password_env.as_deref(),
            env,
        ) {
            problem(path(key), message);
        }
        conn.fill_defaults(env.os_user());
        if conn.password.is_none() {
            conn.password = conn.pgpass_password(env.home().as_deref());
        }
        let backup = t.backup.as_ref().and_then(|b| {
            if b.pgbackrest_stanza.is_empty() {
                problem(
                    path("backup.pgbackrest_stanza"),
                    "required: the pgBackRest stanza to watch".into(),
                );
                return None;
            }
            Some(Backup {
                stanza: b.pgbackrest_stanza.clone(),
                command: b.pgbackrest_command.clone(),
                config: b.pgbackrest_config.clone(),
                interval: b.interval,
                timeout: b.timeout,
                full_max_age: b.full_max_age,
                max_age: b.max_age,
            })
        });
        let mut pgbouncers = Vec::new();
        let several = t.pgbouncer.0.len() > 1;
        for (j, b) in t.pgbouncer.0.iter().enumerate() {
            let key = |k: &str| format!("target[{i}].pgbouncer[{j}].{k}");
            let name = b.name.clone().unwrap_or_else(|| {
                if several {
                    format!("pgbouncer{j}")
                } else {
                    "pgbouncer".into()
                }
            });
            if b.dsn.is_empty() {
                problem(key("dsn"), "required: the admin console, e.g. postgresql://pgvigil@localhost:6432/pgbouncer".into());
                continue;
            }
            let mut conn = match ConnParams::parse(&b.dsn) {
                Ok(c) => c,
                Err(e) => {
                    problem(key("dsn"), e.to_string());
                    continue;
                }
            };
            if let Err((k, message)) = apply_password(
                &mut conn,
                b.password_file.as_deref(),
                b.password_env.as_deref(),
                env,
            ) {
                problem(key(k), message);
            }
            // The admin console is the "pgbouncer" database, whatever the user.
            if conn.dbname.is_none() {
                conn.dbname = Some("pgbouncer".into());
            }
            conn.fill_defaults(env.os_user());
            pgbouncers.push(Pgbouncer {
                name,
                labelled: several,
                conn,
            });
        }
        let logs = t.logs.as_ref().and_then(|l| {
            if l.directory.as_os_str().is_empty() {
                problem(
                    path("logs.directory"),
                    "required: the server's log directory".into(),
                );
                return None;
            }
            use crate::logs::record::Format;
            let format = match l.format.as_str() {
                "" | "auto" => None,
                "stderr" => Some(Format::Stderr),
                "csvlog" => Some(Format::Csv),
                "jsonlog" => Some(Format::Json),
                other => {
                    problem(
                        path("logs.format"),
                        format!(
                            "{other:?}: expected \"auto\", \"stderr\", \"csvlog\" or \"jsonlog\""
                        ),
                    );
                    return None;
                }
            };
            let state_file = l.state_file.clone().unwrap_or_else(|| {
                let dir = (env.var)("STATE_DIRECTORY")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/var/lib/pgvigil"));
                dir.join(format!("logs-{name}.json"))
            });
            Some(Logs {
                directory: l.directory.clone(),
                format,
                state_file,
            })
        });
        targets.push(Target {
            name,
            conn,
            databases: t.databases,
            backup,
            pgbouncers,
            logs,
        });
    }

    let c = &raw.collectors;
    for (key, value) in [
        ("default_interval", c.default_interval),
        ("timeout", c.timeout),
    ] {
        if value.is_zero() {
            problem(
                format!("collectors.{key}"),
                "must be longer than zero".into(),
            );
        }
    }
    let resolve = |i: Option<Interval>| match i {
        None => Some(c.default_interval),
        Some(Interval::Off) => None,
        Some(Interval::Every(d)) => Some(d),
    };
    let interval = |s: &Setting| resolve(s.0.interval);
    let st = &c.statements.0;
    if st.top == 0 {
        problem(
            "collectors.statements.top".into(),
            "must be at least 1".into(),
        );
    }
    let ascending = st.buckets.windows(2).all(|w| w[0] < w[1]);
    if st.buckets.is_empty()
        || !ascending
        || st.buckets.iter().any(|b| !b.is_finite() || *b <= 0.0)
        || st.buckets.len() > 40
    {
        problem(
            "collectors.statements.buckets".into(),
            "must be 1 to 40 positive, finite, strictly ascending bounds in seconds, e.g. [0.001, 0.01, 0.1, 1]".into(),
        );
    }
    let collectors = Collectors {
        timeout: c.timeout,
        lock_timeout: c.lock_timeout,
        server: interval(&c.server),
        connections: interval(&c.connections),
        databases: interval(&c.databases),
        database_size: resolve(c.database_size.0.interval),
        replication: interval(&c.replication),
        slots: interval(&c.slots),
        wal: interval(&c.wal),
        checkpoints: interval(&c.checkpoints),
        archiver: interval(&c.archiver),
        filesystem: interval(&c.filesystem),
        tables: resolve(c.tables.0.interval),
        pgbouncer: interval(&c.pgbouncer),
        logs: resolve(c.logs.0.interval),
        statements: Statements {
            interval: resolve(st.interval),
            top: st.top,
            buckets: st.buckets.clone().into(),
        },
    };
    let e = &raw.explain;
    if e.statement_timeout.is_zero() {
        problem(
            "explain.statement_timeout".into(),
            "must be longer than zero".into(),
        );
    }
    // These become PostgreSQL settings in milliseconds, which stop at
    // 2^31 - 1 (about 24.8 days); past that every session would fail.
    for (key, value) in [
        ("collectors.timeout", raw.collectors.timeout),
        ("collectors.lock_timeout", raw.collectors.lock_timeout),
        ("explain.statement_timeout", e.statement_timeout),
    ] {
        if value > MAX_SERVER_TIMEOUT {
            problem(
                key.into(),
                "must be at most 24 days (PostgreSQL's limit for timeouts)".into(),
            );
        }
    }
    let explain = e.enabled.then_some(Explain {
        slow_threshold: e.slow_threshold,
        analyze: e.analyze,
        statement_timeout: e.statement_timeout,
        max_per_hour: e.max_per_hour,
        per_statement_interval: e.per_statement_interval,
        redact: e.redact,
    });
    let web = validate_web(&raw.web, &mut problem);
    Some(Config {
        listen: listen?,
        targets,
        collectors,
        explain,
        notify: Notify {
            desktop: raw.notify.desktop,
        },
        web,
    })
}

/// Puts the password from `password_file` or `password_env` (at most one
/// of them) into `conn`; on a problem, the key it concerns and why.
fn apply_password(
    conn: &mut ConnParams,
    file: Option<&Path>,
    var: Option<&str>,
    env: &Environment,
) -> Result<(), (&'static str, String)> {
    let (key, password) = match (file, var) {
        (Some(_), Some(_)) => {
            return Err((
                "password_file",
                "set either password_file or password_env, not both".into(),
            ));
        }
        (Some(file), None) => (
            "password_file",
            read_password_file(file).map_err(|m| ("password_file", m))?,
        ),
        (None, Some(var)) => (
            "password_env",
            (env.var)(var).ok_or_else(|| {
                (
                    "password_env",
                    format!("environment variable {var} is not set"),
                )
            })?,
        ),
        (None, None) => return Ok(()),
    };
    if conn.password.is_some() {
        return Err((
            key,
            "the dsn already contains a password; keep only one".into(),
        ));
    }
    conn.password = Some(password);
    Ok(())
}

fn read_password_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("could not read {}: {e}", path.display()))?;
    let first = text.lines().next().unwrap_or("").to_string();
    if first.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn problems(text: &str) -> Vec<String> {
        let var = env(&[("USER", "tester")]);
        match Config::parse(text, "test.toml", &Environment { var: &var }) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(|p| p.to_string()).collect()
            }
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn a_minimal_config_gets_every_default() {
        let var = env(&[("USER", "tester")]);
        let config = Config::parse(
            "[[target]]\ndsn = \"host=db1\"\n",
            "t",
            &Environment { var: &var },
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.targets[0].name, "main");
        assert_eq!(config.targets[0].conn.user.as_deref(), Some("tester"));
        assert_eq!(config.collectors.server, Some(Duration::from_secs(15)));
        assert_eq!(config.collectors.timeout, Duration::from_secs(10));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
listen = "nowhere"
bogus = 1
[collectors]
default_interval = "soon"
databases = { interval = "off", colour = "red" }
[[target]]
dsn = "host=a port=notaport"
[[target]]
name = "b"
dsn = "host=b"
password_env = "PGVIGIL_TEST_UNSET_VAR"
unknown_key = true
"#;
        let got = problems(text);
        let want = [
            "bogus: unknown field `bogus`",
            "collectors.default_interval: invalid value",
            "collectors.databases.colour: unknown field `colour`",
            "target[1].unknown_key: unknown field `unknown_key`",
            "listen: \"nowhere\" is not an address",
            "target[0].name: required when there are several targets",
            "target[1].password_env: environment variable PGVIGIL_TEST_UNSET_VAR is not set",
            "target[0].dsn: invalid value \"notaport\" for connection parameter \"port\"",
        ];
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for w in want {
            assert!(
                got.iter().any(|g| g.starts_with(w)),
                "missing {w:?} in {got:#?}"
            );
        }
    }

    #[test]
    fn intervals_accept_shorthand_tables_and_off() {
        let var = env(&[]);
        let text = r#"
[collectors]
default_interval = "20s"
server = "off"
connections = { interval = "1m" }
[[target]]
dsn = "postgresql://u@h/d"
"#;
        let c = Config::parse(text, "t", &Environment { var: &var })
            .unwrap()
            .collectors;
        assert_eq!(c.server, None);
        assert_eq!(c.connections, Some(Duration::from_secs(60)));
        assert_eq!(c.databases, Some(Duration::from_secs(20)));
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                "[collectors]\nserver = \"0s\"\n[[target]]\ndsn=''",
                "collectors.server: an interval must be longer than zero",
            ),
            (
                "[collectors]\ntimeout = 5\n[[target]]\ndsn=''",
                "collectors.timeout: invalid type",
            ),
            ("[[target]]\ndsn = 'x' \n", "target[0].dsn:"),
            (
                "[explain]\nstatement_timeout = '30000000000y'\n[[target]]\ndsn=''",
                "explain.statement_timeout: must be at most 24 days",
            ),
            ("listen = ", "TOML parse error"),
            ("", "target: no [[target]] configured"),
            (
                "[[target]]\nname='a b'\ndsn=''",
                "target[0].name: \"a b\" must be non-empty",
            ),
            (
                "[[target]]\nname='a'\ndsn=''\n[[target]]\nname='a'\ndsn=''",
                "target[1].name: \"a\" is used by another target",
            ),
            (
                "[[target]]\ndsn=''\npassword_file='/nonexistent/pw'",
                "target[0].password_file: could not read /nonexistent/pw",
            ),
        ];
        for (text, want) in cases {
            let got = problems(text);
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{text:?}: want {want:?}, got {got:#?}"
            );
        }
    }

    #[test]
    fn secrets_come_from_a_file_or_a_named_variable_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\nignored\n").unwrap();
        let var = env(&[("MY_PW", "fromenv")]);
        let e = Environment { var: &var };
        let text = format!(
            "[[target]]\ndsn='host=h'\npassword_file='{}'",
            file.display()
        );
        assert_eq!(
            Config::parse(&text, "t", &e).unwrap().targets[0]
                .conn
                .password
                .as_deref(),
            Some("s3cret")
        );
        let text = "[[target]]\ndsn='host=h'\npassword_env='MY_PW'";
        assert_eq!(
            Config::parse(text, "t", &e).unwrap().targets[0]
                .conn
                .password
                .as_deref(),
            Some("fromenv")
        );
        let text = "[[target]]\ndsn='host=h password=x'\npassword_env='MY_PW'";
        let err = Config::parse(text, "t", &e).unwrap_err().to_string();
        assert!(
            err.contains("already contains a password") && !err.contains("fromenv"),
            "{err}"
        );
    }

    #[test]
    fn web_problems_name_their_key() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let target = "[[target]]\ndsn = 'host=h'\n";
        let cases = [
            (
                format!("[web]\ntls_cert_file = '/x.crt'\n{target}"),
                "web.tls_key_file: required with tls_cert_file",
            ),
            (
                format!("[web]\ntls_key_file = '/x.key'\n{target}"),
                "web.tls_cert_file: required with tls_key_file",
            ),
            (
                format!(
                    "[web]\ntls_cert_file = '/nonexistent.crt'\ntls_key_file = '/x.key'\n{target}"
                ),
                "web.tls_cert_file: /nonexistent.crt: could not read",
            ),
            (
                format!("[web]\nbasic_auth_users = {{ alice = 'secret' }}\n{target}"),
                "web.basic_auth_users.alice: not a bcrypt hash",
            ),
            (
                format!("[web]\nbasic_auth_users = {{ 'a:b' = '{hash}' }}\n{target}"),
                "web.basic_auth_users: \"a:b\": a user name must be non-empty",
            ),
            (
                format!("[web]\nbasic_auth_users = ['alice']\n{target}"),
                "web.basic_auth_users: invalid type",
            ),
        ];
        for (text, want) in cases {
            let got = problems(&text);
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{text:?}: want {want:?}, got {got:#?}"
            );
            assert!(!got.iter().any(|g| g.contains("secret")), "{got:#?}");
        }
        let var = env(&[]);
        let ok = format!("[web]\nbasic_auth_users = {{ alice = '{hash}' }}\n{target}");
        let web = Config::parse(&ok, "t", &Environment { var: &var })
            .unwrap()
            .web;
        assert_eq!(web.basic_auth_users.len(), 1);
        assert!(web.tls.is_none());
    }

    #[test]
    fn without_a_file_libpq_environment_fills_the_gaps() {
        let var = env(&[
            ("PGHOST", "envhost"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("USER", "os"),
        ]);
        let e = Environment { var: &var };
        let c = Config::from_dsn(Some("postgresql://explicit@/db"), &e).unwrap();
        let conn = &c.targets[0].conn;
        assert_eq!(conn.user.as_deref(), Some("explicit"));
        assert_eq!(conn.ports, [6000]);
        assert_eq!(conn.dbname.as_deref(), Some("db"));
        let c = Config::from_dsn(None, &e).unwrap();
        assert_eq!(c.targets[0].conn.user.as_deref(), Some("envuser"));
        assert_eq!(c.targets[0].conn.dbname.as_deref(), Some("envuser"));
    }
}
