//! The config file as written: serde types, strict (`deny_unknown_fields`),
//! with a default for every key.
//!
//! These types only say what may be written and what applies when it is
//! not; whether the values make sense (addresses parse, DSNs are valid, a
//! secret can be read) is `validate.rs`'s job, and reading the file and
//! turning serde errors into key paths is `load.rs`'s. Every field's doc
//! comment is also its documentation in `packaging/pgvigil.toml`, which a
//! test parses.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// The default HTTP listen address, as `pgvigil run --help` says.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9932";

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
    /// Of those, how many (the first by execution time in the interval) also get their own latency histogram (19 series each with the default buckets); the others' calls go to the queryid="other" histogram. 0: none; at most `top`.
    pub histograms: usize,
    /// Latency histogram bucket upper bounds, in seconds, ascending.
    pub buckets: Vec<f64>,
}

impl Default for StatementsSettings {
    fn default() -> Self {
        StatementsSettings {
            interval: Some(Interval::Every(Duration::from_secs(60))),
            top: 100,
            histograms: 20,
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

/// `[collectors] schema = { … }` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaSettings {
    /// How often the schema collector runs; `"off"` disables it.
    pub interval: Option<Interval>,
    /// An index with no scans since the statistics reset is listed as unused (and counted in pg_indexes_unused_bytes) only from this size on, in bytes.
    pub unused_index_min_bytes: u64,
}

impl Default for SchemaSettings {
    fn default() -> Self {
        SchemaSettings {
            interval: Some(Interval::Every(Duration::from_secs(600))),
            unused_index_min_bytes: 1024 * 1024,
        }
    }
}

impl HasInterval for SchemaSettings {
    fn with_interval(interval: Interval) -> Self {
        SchemaSettings {
            interval: Some(interval),
            ..SchemaSettings::default()
        }
    }
}

/// `[collectors] amcheck = { … }` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmcheckSettings {
    /// How often the amcheck collector takes its turn (checks up to one turn's share of the page budget); `"off"` disables it.
    pub interval: Option<Interval>,
    /// Pages (8 kB blocks) of indexes and tables verified per hour at most, unless a full pass would otherwise take longer than `full_pass`; 100,000 pages is about 800 MB an hour, 220 kB/s.
    pub pages_per_hour: u64,
    /// Every relation of every watched database with the extension is checked at least this often: the budget rises when the pass would not finish in time.
    #[serde(with = "humantime_serde")]
    pub full_pass: Duration,
    /// Directory of the state file (`amcheck-<target>.json`: position in the pass, findings) that lets a restarted agent resume; $STATE_DIRECTORY (systemd) or /var/lib/pgvigil when unset.
    pub state_directory: Option<PathBuf>,
}

impl Default for AmcheckSettings {
    fn default() -> Self {
        AmcheckSettings {
            interval: Some(Interval::Every(Duration::from_secs(60))),
            pages_per_hour: 100_000,
            full_pass: Duration::from_secs(7 * 86_400),
            state_directory: None,
        }
    }
}

impl HasInterval for AmcheckSettings {
    fn with_interval(interval: Interval) -> Self {
        AmcheckSettings {
            interval: Some(interval),
            ..AmcheckSettings::default()
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
    /// Replication slots: active, retained WAL, safe_wal_size, wal_status; logical slots' confirmed lag, decoding statistics and invalidation.
    pub slots: Setting,
    /// Logical replication subscriptions (the subscriber side): worker, apply lag, errors, conflicts.
    pub subscriptions: Setting,
    /// WAL position (as a byte counter) and the WAL directory's size.
    pub wal: Setting,
    /// Checkpoints and buffer writes (pg_stat_bgwriter / pg_stat_checkpointer).
    pub checkpoints: Setting,
    /// I/O by process type and object (pg_stat_io, 16+) and the SLRU caches (pg_stat_slru).
    pub io: Setting,
    /// WAL archiving: pg_stat_archiver, segments waiting, recovery point at risk.
    pub archiver: Setting,
    /// Free space of the filesystems holding the data directory, WAL and tablespaces (when on the database host).
    pub filesystem: Setting,
    /// Tables and indexes of every watched database: sizes, scans, dead tuples, autovacuum; every minute unless set.
    pub tables: Setting<Every<60>>,
    /// Vacuum: who holds the xmin horizon back, wraparound against the freeze settings, running vacuums.
    pub vacuum: Setting,
    /// Schema risks in every watched database: sequences near their limit, invalid, unused and duplicate indexes; every 10 minutes unless set.
    pub schema: Setting<SchemaSettings>,
    /// Per table: the oldest relfrozenxid and relminmxid, vacuum and analyze counts, in every watched database; every 5 minutes unless set.
    pub vacuum_tables: Setting<Every<300>>,
    /// pg_stat_activity sampled for database load by wait event and the longest running statement; every second unless set.
    pub active_sessions: Setting<Every<1>>,
    /// Consistency checks with the amcheck extension, where it is installed: B-tree indexes (bt_index_check) and, on 14+, tables (verify_heapam), one relation at a time on a page budget; every minute unless set.
    pub amcheck: Setting<AmcheckSettings>,
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
            subscriptions: Setting::default(),
            wal: Setting::default(),
            checkpoints: Setting::default(),
            io: Setting::default(),
            archiver: Setting::default(),
            filesystem: Setting::default(),
            tables: Setting::default(),
            vacuum: Setting::default(),
            schema: Setting::default(),
            vacuum_tables: Setting::default(),
            active_sessions: Setting::default(),
            amcheck: Setting::default(),
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
    /// The `target` label of every series; defaults to "main" for a lone target (required with several: name the first "main" to keep its series).
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
    /// Custom queries: each one read-only SELECT whose rows become metrics, run as a collector of its own.
    #[serde(rename = "query")]
    pub queries: Vec<RawQuery>,
}

/// One `[[target.query]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawQuery {
    /// Names the query's collector, `query:<name>` in pgvigil_collector_success (required; letters, digits, '_', '.', '-').
    pub name: String,
    /// The database the query runs in; unset: the target's own database (the dsn's).
    pub database: Option<String>,
    /// How often the query runs, or "off"; every minute unless set.
    pub interval: Interval,
    /// statement_timeout of the query; unset: collectors.timeout, which is also its upper bound.
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Exactly one SELECT (no writes, no FOR UPDATE, no deny-listed function), run in a read-only transaction (required).
    pub sql: String,
    /// Result columns whose text becomes a label of the same name (NULL: an empty value).
    pub labels: Vec<String>,
    /// Result columns published as metrics (at least one); each column must be numeric, NULL leaves its series out.
    pub metrics: Vec<RawQueryMetric>,
    /// Most series the query may publish in one run; a result with more fails the run instead of flooding Prometheus.
    pub max_series: usize,
}

impl Default for RawQuery {
    fn default() -> Self {
        RawQuery {
            name: String::new(),
            database: None,
            interval: Interval::Every(Duration::from_secs(60)),
            timeout: None,
            sql: String::new(),
            labels: Vec::new(),
            metrics: Vec::new(),
            max_series: 1000,
        }
    }
}

/// One metric of a `[[target.query]]`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawQueryMetric {
    /// The result column holding the value (required).
    pub column: String,
    /// The metric name (required): lower-case snake_case; a counter's exposed name gets `_total` appended.
    pub name: String,
    /// "gauge" (a value that goes up and down) or "counter" (a cumulative count that only resets).
    #[serde(rename = "type")]
    pub kind: QueryMetricType,
    /// The metric's # HELP text; unset: "Column <column> of custom query <name>."
    pub help: String,
}

/// The type of a custom query's metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryMetricType {
    /// A value that goes up and down.
    #[default]
    Gauge,
    /// A cumulative count that only goes up (a reset starts again from 0).
    Counter,
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
    /// The `pgbouncer` label of its series, unique within the target; defaults to "pgbouncer" for the first, "pgbouncerN" for the one at index N.
    pub name: Option<String>,
    /// The admin console: a DSN to the "pgbouncer" database as a user in admin_users or stats_users.
    pub dsn: String,
    /// File holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
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
    /// How often to run `pgbackrest verify` (reads every backup file and archived WAL segment of the stanza and checks their checksums); "off" disables it. Skipped where the installed pgBackRest has no verify command.
    pub verify: Interval,
    /// How long one `pgbackrest verify` may take before it is stopped and counted as failed.
    #[serde(with = "humantime_serde")]
    pub verify_timeout: Duration,
    /// Scratch directory `pgvigil restore-test` restores the newest backup into (empty, or holding only an interrupted test's leftovers; owned by the agent's user); required by the command.
    pub restore_dir: Option<PathBuf>,
    /// Port of the private restored instance (it listens on its own Unix socket only); 0 picks a free one.
    pub restore_port: u16,
    /// How long restoring, starting and recovering may take before the test fails.
    #[serde(with = "humantime_serde")]
    pub restore_timeout: Duration,
    /// An optional read-only query run on the restored copy (inside BEGIN READ ONLY); an error fails the test.
    pub restore_smoke_query: Option<String>,
    /// The database of the restored copy the smoke query runs in.
    pub restore_smoke_database: String,
    /// How often the daemon runs the restore test itself (from the start of the last one, kept in state_file; the first at start when none is on record), publishing pg_backup_restore_test_*; "off" (the default) leaves it to `pgvigil restore-test`. Needs restore_dir.
    pub restore_test: Interval,
    /// The recovery time objective: a restore test that took longer fires PostgresRestoreObjectivesMissed.
    #[serde(with = "humantime_serde")]
    pub restore_rto_objective: Duration,
    /// The recovery point objective: a restored copy further behind its source than this fires PostgresRestoreObjectivesMissed.
    #[serde(with = "humantime_serde")]
    pub restore_rpo_objective: Duration,
    /// Where the last verify and restore test (and the last successful one) are kept across restarts, so a restarted agent publishes them at once and does not verify or test again before their period has passed; $STATE_DIRECTORY (systemd) or /var/lib/pgvigil, file backup-<target>.json, when unset.
    pub state_file: Option<PathBuf>,
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
            verify: Interval::Every(Duration::from_secs(7 * 86400)),
            verify_timeout: Duration::from_secs(6 * 3600),
            restore_dir: None,
            restore_port: 0,
            restore_timeout: Duration::from_secs(3600),
            restore_smoke_query: None,
            restore_smoke_database: "postgres".into(),
            restore_test: Interval::Off,
            restore_rto_objective: Duration::from_secs(3600),
            restore_rpo_objective: Duration::from_secs(900),
            state_file: None,
        }
    }
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
    /// The Redis servers to watch (the cache tier), with redis_exporter's metric names.
    pub redis: Vec<RawRedis>,
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
            redis: Vec::new(),
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

/// `[notify]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNotify {
    /// Desktop notifications (D-Bus session bus) for each new critical plan finding and each lost target; for debugging on a workstation.
    pub desktop: bool,
}

/// One `[[redis]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    /// The `target` label of its series; required, unique across [[target]] and [[redis]].
    pub name: Option<String>,
    /// redis://host:port[/db] or rediss://host:port[/db][?sslrootcert=FILE|system&sslmode=verify-full|verify-ca|require&sslcert=FILE&sslkey=FILE]; a password here works but password_file or password_env is better.
    pub url: String,
    /// The ACL user to log in as (AUTH username password); unset: the default user.
    pub username: Option<String>,
    /// File holding the password (first line); read at start-up.
    pub password_file: Option<PathBuf>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// Per-collector intervals of this Redis.
    pub collectors: RawRedisCollectors,
}

/// `[redis.collectors]` as written: each key is a collector's name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedisCollectors {
    /// INFO server, clients, memory, stats, keyspace: hits and misses, evictions, memory, clients, keys per db.
    pub redis_info: Setting,
    /// INFO replication: role, replicas and their offset lag, the master link on a replica.
    pub redis_replication: Setting,
    /// INFO persistence: last RDB save and its status, changes since, AOF status.
    pub redis_persistence: Setting,
    /// INFO commandstats and latencystats: calls, time, failures and p50/p99/p99.9 per command.
    pub redis_commands: Setting,
    /// SLOWLOG GET/LEN: slow commands by entry id, the slowest recent durations.
    pub redis_slowlog: Setting,
    /// CLUSTER INFO, when cluster mode is enabled: state, slots, known nodes.
    pub redis_cluster: Setting,
}
