//! PostgreSQL's own log, followed where pgvigil runs beside the server
//! (`[target.logs]`): slow statements, authentication failures, errors by
//! SQLSTATE class, statements never seen before for a role; slow
//! executions with their real parameters and auto_explain plans go to the
//! EXPLAIN worker through the [`LogFeed`]. The reading state is a
//! [`LogReader`] shared with the statements collector, which catches up
//! with the log at the end of each interval and takes its slow executions
//! for exact tail quantiles ([`crate::stats::tail`]).
//!
//! The format (`auto`: jsonlog, else csvlog, else stderr, from the server's
//! `log_destination`), `log_line_prefix` and the `log_min_duration_statement`
//! in force per database and role ([`crate::logs::duration`]) are read from
//! the server every minute, and at the next run after the log says the
//! configuration was reloaded. Only executions at or over the threshold of
//! their database and role count as slow: not the extended protocol's parse
//! and bind, not later fetches from a portal, not sampled executions. An
//! interval during which the thresholds changed has no exact tail. The
//! server's own value is read from pg_settings when the agent's session
//! shows it; when a per-role or per-database setting of the agent's own
//! role hides it, from pg_file_settings if the role may read that view,
//! else it is unknown (lines judged by it are counted, with no exact tail).
//! The read position and the fingerprints
//! seen are kept in the state file (written atomically when they change),
//! so a restart of the agent neither re-counts nor skips a line and does
//! not take known statements for new ones. The counters themselves start
//! at 0 with the process, as Prometheus counters do.
//!
//! Cardinality: at most [`MAX_PAIRS`] (datname, usename) pairs and
//! [`MAX_USERS`] user names (failed logins may name anything); the rest is
//! counted under `"other"`.
//!
//! Privilege: reading the log files (the agent's user in the group that
//! owns them); on the server, none beyond pg_monitor.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{CollectError, Collected, Collector, Context, col, query_err};
use crate::config::Logs as Settings;
use crate::desc;
use crate::logs::duration::{self, Override, Threshold, Thresholds, Verdict};
use crate::logs::event::{self, Event};
use crate::logs::feed::{LogFeed, LoggedPlan};
use crate::logs::record::Format;
use crate::logs::tail::{Cursor, Tailer};
use crate::metric::{Desc, Family};
use crate::snapshot::unix_now;
use crate::sql::OwnStatements;

static SLOW: Desc = desc!(Counter "pg_log_slow_statements", ["datname", "usename"],
    "Executions the server logged as slower than the log_min_duration_statement of their database and role (each once: not parse, bind or later fetches, not sampled ones).",
    only_when = "[target.logs] is configured");
static AUTH: Desc = desc!(Counter "pg_log_auth_failures", ["usename"],
    "Failed logins the server logged (wrong password, no pg_hba.conf entry, unknown role).",
    only_when = "[target.logs] is configured");
static ERRORS: Desc = desc!(Counter "pg_log_errors", ["sqlstate_class"],
    "ERROR, FATAL and PANIC messages the server logged, by the first two characters of their SQLSTATE (42: permission denied, syntax; 23: constraint violations; 40: deadlocks, serialization).",
    only_when = "[target.logs] is configured");
static NEW_FINGERPRINTS: Desc = desc!(Counter "pg_new_fingerprints", ["datname", "usename"],
    "Statements (by pg_query fingerprint) logged for a role for the first time: an unusual-access signal; remembered across restarts.",
    only_when = "[target.logs] is configured");
static READ: Desc = desc!(Counter "pgvigil_log_read", unit = Bytes, [],
    "Bytes of server log read.", only_when = "[target.logs] is configured");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[&SLOW, &AUTH, &ERRORS, &NEW_FINGERPRINTS, &READ];

/// (datname, usename) pairs counted individually.
pub const MAX_PAIRS: usize = 200;
/// User names counted individually for failed logins.
pub const MAX_USERS: usize = 100;
/// (datname, usename, fingerprint) triples remembered.
pub const MAX_SEEN: usize = 50_000;
const SETTINGS_EVERY: Duration = Duration::from_secs(60);

/// What the state file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    cursor: Option<Cursor>,
    /// (datname, usename, fingerprint), oldest first.
    seen: Vec<(String, String, String)>,
}

/// (datname, usename, fingerprint).
pub type StatementKey = (String, String, String);

/// A logged execution that may belong to an exact tail, or a later fetch
/// from a portal, kept until the statements collector takes the interval
/// it belongs to.
#[derive(Debug, Clone)]
pub struct LoggedDuration {
    /// When it was logged, Unix seconds.
    pub at: f64,
    /// How long it took, seconds.
    pub seconds: f64,
    /// Its statement.
    pub key: StatementKey,
    /// At or over the threshold of its database and role.
    pub slow: bool,
    /// At or over the instance-wide threshold ([`Thresholds::instance`]).
    pub in_instance: bool,
    /// An `execute fetch from` line: its statement is read in batches.
    pub fetch: bool,
}

/// Slow executions held between statements cycles, at most.
pub const MAX_DURATIONS: usize = 200_000;

/// One interval's slow executions, complete: for each statement whose
/// [`LoggedInterval::threshold_for`] is known, every execution at or over
/// it that finished in the interval, once.
#[derive(Debug, Default)]
pub struct LoggedInterval {
    /// The threshold, seconds, at or over which `all` holds every
    /// execution of every role (the highest in force); infinite, with
    /// `all` empty, when there is none (a role with logging off or an
    /// unknown threshold, or a statement read in batches).
    pub threshold: f64,
    /// Durations by statement, at or over its own threshold.
    pub by_statement: std::collections::HashMap<StatementKey, Vec<f64>>,
    /// All executions at or over `threshold` (pgvigil's own excluded).
    pub all: Vec<f64>,
    /// The thresholds in force during the interval.
    thresholds: Thresholds,
    /// Statements seen fetched in batches: their logged times are the
    /// first batch's only.
    batched: HashSet<StatementKey>,
}

impl LoggedInterval {
    /// The threshold, seconds, at or over which `by_statement` holds every
    /// execution of this statement in the interval: its database's and
    /// role's. `None` when the log does not: logging is off for them, the
    /// threshold is unknown, or the statement was read in batches.
    pub fn threshold_for(&self, key: &StatementKey) -> Option<f64> {
        if self.batched.contains(key) {
            return None;
        }
        self.thresholds
            .of(Some(&key.0), Some(&key.1))
            .and_then(Threshold::seconds)
    }
}

/// The `logs` collector: asks the server for the log settings and has the
/// shared [`LogReader`] read.
pub struct Logs {
    reader: Arc<std::sync::Mutex<LogReader>>,
    server_settings: Option<(Format, String, Instant)>,
    format: Option<Format>,
    /// The server's threshold was found hidden: said once in the agent's log.
    warned_hidden: bool,
}

/// The log's reading state, shared by the `logs` collector (which counts)
/// and the statements collector (which catches up at the end of each
/// interval for exact tail quantiles).
pub struct LogReader {
    settings: Settings,
    feed: Arc<LogFeed>,
    own: OwnStatements,
    tailer: Option<Tailer>,
    /// When the tailer started (what was logged before is not read).
    started_at: Option<f64>,
    /// Until when everything logged has been read.
    complete_through: f64,
    /// `log_min_duration_statement` per database and role.
    thresholds: Thresholds,
    /// [`Thresholds::instance`], milliseconds.
    instance_ms: Option<u32>,
    /// When a change of the thresholds was seen: lines before were judged
    /// by the old ones, so intervals that began earlier are not exact.
    thresholds_changed_at: Option<f64>,
    /// The log said the configuration was reloaded: read the settings again.
    reloaded: bool,
    durations: Vec<LoggedDuration>,
    /// Durations were dropped after this time: intervals after it are not
    /// complete.
    overflowed_at: Option<f64>,
    slow: Capped<(String, String)>,
    auth: Capped<String>,
    errors: Capped<String>,
    new_fingerprints: Capped<(String, String)>,
    seen: HashSet<(String, String, String)>,
    seen_order: VecDeque<(String, String, String)>,
    saved_cursor: Option<Cursor>,
    dirty: bool,
}

/// Counters by key, at most `max` keys; others go to `other`.
struct Capped<K: Ord> {
    values: BTreeMap<K, f64>,
    other: K,
    max: usize,
}

impl<K: Ord + Clone> Capped<K> {
    fn new(other: K, max: usize) -> Self {
        Capped {
            values: BTreeMap::new(),
            other,
            max,
        }
    }

    fn add(&mut self, key: K) {
        let key = if self.values.contains_key(&key) || self.values.len() < self.max {
            key
        } else {
            self.other.clone()
        };
        *self.values.entry(key).or_default() += 1.0;
    }
}

fn other_pair() -> (String, String) {
    ("other".into(), "other".into())
}

impl Logs {
    /// A collector reading through `reader`.
    pub fn new(reader: Arc<std::sync::Mutex<LogReader>>) -> Logs {
        let format = lock(&reader).settings.format;
        Logs {
            reader,
            server_settings: None,
            format,
            warned_hidden: false,
        }
    }

    /// The format and prefix, from the config or the server, and, when
    /// they were read again, the slow-statement thresholds.
    async fn server_settings(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Result<(Format, String, Option<Thresholds>), CollectError> {
        if let Some((format, prefix, at)) = &self.server_settings
            && at.elapsed() < SETTINGS_EVERY
        {
            return Ok((*format, prefix.clone(), None));
        }
        let row = cx
            .client
            .query_one(SETTINGS_SQL, &[])
            .await
            .map_err(query_err(WHAT))?;
        let prefix: String = col(&row, WHAT, "log_line_prefix")?;
        let destination: String = col(&row, WHAT, "log_destination")?;
        let setting: String = col(&row, WHAT, "min_duration")?;
        let source: String = col(&row, WHAT, "min_duration_source")?;
        let own_role: String = col(&row, WHAT, "own_role")?;
        let can_read_files: bool = col(&row, WHAT, "can_read_files")?;
        let server = if SERVER_SOURCES.contains(&source.as_str()) {
            duration::parse_setting(&setting)
        } else if can_read_files {
            file_setting(cx).await
        } else {
            None
        };
        if server.is_none() && !std::mem::replace(&mut self.warned_hidden, true) {
            tracing::warn!(
                source,
                can_read_files,
                "the server's own log_min_duration_statement is unknown: pgvigil's session shows its role's or database's value instead, and the configuration files (pg_file_settings) are not readable by it or do not set it; slow statements of roles without their own setting are counted unjudged and get no exact tail quantiles (see docs/percentiles.md)"
            );
        }
        let overrides = cx
            .client
            .query(OVERRIDES_SQL, &[])
            .await
            .map_err(query_err(WHAT_OVERRIDES))?
            .iter()
            .map(|row| {
                let value: String = col(row, WHAT_OVERRIDES, "value")?;
                Ok(Override {
                    database: col(row, WHAT_OVERRIDES, "datname")?,
                    role: col(row, WHAT_OVERRIDES, "rolname")?,
                    value: duration::parse_setting(&value),
                })
            })
            .collect::<Result<Vec<_>, CollectError>>()?;
        let format = self.format.unwrap_or_else(|| format_of(&destination));
        self.server_settings = Some((format, prefix.clone(), Instant::now()));
        let thresholds = Thresholds {
            server,
            overrides,
            own_role: Some(own_role),
        };
        Ok((format, prefix, Some(thresholds)))
    }
}

/// The server's `log_min_duration_statement` from its configuration files,
/// for when the agent's own session shows a value from somewhere else:
/// `None` when it cannot be known (not in the files: the command line or
/// the default, which the session cannot tell apart).
async fn file_setting(cx: &mut Context<'_>) -> Option<Threshold> {
    match cx.client.query_opt(FILE_SQL, &[]).await {
        Ok(row) => row
            .and_then(|r| r.try_get::<_, String>("setting").ok())
            .and_then(|s| duration::parse_setting(&s)),
        Err(e) => {
            tracing::warn!(error = %e, "could not read pg_file_settings");
            None
        }
    }
}

fn lock(reader: &std::sync::Mutex<LogReader>) -> std::sync::MutexGuard<'_, LogReader> {
    reader.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogReader {
    /// A reader of one target's log directory; `own` tells pgvigil's own
    /// statements, which are not counted.
    pub fn new(settings: Settings, feed: Arc<LogFeed>, own: OwnStatements) -> LogReader {
        LogReader {
            settings,
            feed,
            own,
            tailer: None,
            started_at: None,
            complete_through: 0.0,
            thresholds: Thresholds::default(),
            instance_ms: None,
            thresholds_changed_at: None,
            reloaded: false,
            durations: Vec::new(),
            overflowed_at: None,
            slow: Capped::new(other_pair(), MAX_PAIRS),
            auth: Capped::new("other".into(), MAX_USERS),
            errors: Capped::new("other".into(), MAX_USERS),
            new_fingerprints: Capped::new(other_pair(), MAX_PAIRS),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            saved_cursor: None,
            dirty: false,
        }
    }

    fn load_state(&mut self) -> Option<Cursor> {
        let path = &self.settings.state_file;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "log state file unreadable; starting at the end of the log");
                return None;
            }
        };
        match serde_json::from_str::<State>(&text) {
            Ok(state) => {
                for triple in state.seen {
                    self.remember(triple);
                }
                self.saved_cursor = state.cursor.clone();
                state.cursor
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "log state file invalid; starting at the end of the log");
                None
            }
        }
    }

    fn save_state(&mut self) {
        let cursor = self.tailer.as_ref().and_then(|t| t.cursor().cloned());
        if !self.dirty && cursor == self.saved_cursor {
            return;
        }
        let state = State {
            cursor: cursor.clone(),
            seen: self.seen_order.iter().cloned().collect(),
        };
        let path = &self.settings.state_file;
        match write_atomically(path, &serde_json::to_vec(&state).unwrap_or_default()) {
            Ok(()) => {
                self.saved_cursor = cursor;
                self.dirty = false;
            }
            Err(e) => {
                // Counting goes on; only a restart would re-read or skip.
                tracing::warn!(path = %path.display(), error = %e, "could not write the log state file");
            }
        }
    }

    /// Remembers a triple; true when it is new.
    fn remember(&mut self, triple: (String, String, String)) -> bool {
        if self.seen.contains(&triple) {
            return false;
        }
        if self.seen_order.len() >= MAX_SEEN
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(triple.clone());
        self.seen_order.push_back(triple);
        self.dirty = true;
        true
    }

    /// Starts reading (at the end of the newest file, or the saved
    /// position) once the format and prefix are known, or follows their
    /// change, and the thresholds' when they were read again.
    fn configure(&mut self, format: Format, prefix: &str, thresholds: Option<Thresholds>) {
        if let Some(thresholds) = thresholds
            && thresholds != self.thresholds
        {
            if self.tailer.is_some() {
                tracing::info!(?thresholds, "log_min_duration_statement changed");
                self.thresholds_changed_at = Some(unix_now());
            }
            self.instance_ms = thresholds.instance();
            self.thresholds = thresholds;
        }
        match &mut self.tailer {
            Some(tailer) => tailer.reconfigure(format, prefix),
            None => {
                let cursor = self.load_state();
                self.started_at = Some(match cursor {
                    // Resuming: everything since the saved position is read.
                    Some(_) => 0.0,
                    None => unix_now(),
                });
                self.tailer = Some(Tailer::new(
                    self.settings.directory.clone(),
                    format,
                    prefix.to_string(),
                    cursor,
                ));
            }
        }
    }

    /// Reads what is new; records what it means.
    fn poll(&mut self) -> Result<(), String> {
        let Some(tailer) = self.tailer.as_mut() else {
            return Ok(());
        };
        let started = unix_now();
        let records = tailer.poll().map_err(|e| {
            format!(
                "cannot read the log directory {}: {e}",
                self.settings.directory.display()
            )
        })?;
        let caught_up = tailer.caught_up();
        for record in &records {
            self.absorb(record);
        }
        if caught_up {
            self.complete_through = started;
        }
        self.save_state();
        Ok(())
    }

    /// Catches up with the log and hands over the slow executions logged
    /// in `(since, until]`, when the log covers all of that interval
    /// (the reader started before it, read everything up to its end,
    /// dropped nothing, and judged it all by the thresholds in force).
    /// Executions logged up to `until` are forgotten either way.
    pub fn take_interval(&mut self, since: f64, until: f64) -> Option<LoggedInterval> {
        self.tailer.as_ref()?;
        if let Err(e) = self.poll() {
            tracing::debug!(error = %e, "log catch-up failed");
        }
        let (taken, kept): (Vec<_>, Vec<_>) = self.durations.drain(..).partition(|d| d.at <= until);
        self.durations = kept;
        let complete = self.started_at.is_some_and(|s| s <= since)
            && self.complete_through >= until
            && self.overflowed_at.is_none_or(|o| o < since)
            && self.thresholds_changed_at.is_none_or(|c| c <= since);
        if !complete {
            return None;
        }
        let taken = taken.into_iter().filter(|d| d.at > since);
        Some(gather(taken, &self.thresholds, self.instance_ms))
    }

    /// Whether the log said the configuration was reloaded since the last
    /// call.
    fn take_reloaded(&mut self) -> bool {
        std::mem::take(&mut self.reloaded)
    }

    fn absorb(&mut self, record: &crate::logs::record::LogRecord) {
        match event::classify(record) {
            Event::SlowStatement {
                duration_ms,
                kind,
                statement,
                parameters,
                user,
                database,
                ..
            } => {
                let verdict =
                    self.thresholds
                        .judge(database.as_deref(), user.as_deref(), duration_ms);
                let datname = database.unwrap_or_default();
                let usename = user.unwrap_or_default();
                if kind.is_execution() && verdict != Verdict::Under {
                    self.slow.add((datname.clone(), usename.clone()));
                }
                let Some(fingerprint) = crate::sql::fingerprint(&statement) else {
                    return;
                };
                if self.own.contains(&fingerprint) {
                    return;
                }
                if self.remember((datname.clone(), usename.clone(), fingerprint.clone())) {
                    self.new_fingerprints
                        .add((datname.clone(), usename.clone()));
                }
                let logged = LoggedDuration {
                    at: record.prefix.timestamp.unwrap_or_else(unix_now),
                    seconds: duration_ms / 1000.0,
                    key: (datname.clone(), usename, fingerprint.clone()),
                    slow: kind.is_execution() && verdict == Verdict::Slow,
                    in_instance: kind.is_execution()
                        && self
                            .instance_ms
                            .is_some_and(|ms| Threshold::Ms(ms).logs_as_slow(duration_ms)),
                    fetch: kind == duration::Kind::ExecuteFetch,
                };
                if logged.slow || logged.in_instance || logged.fetch {
                    if self.durations.len() < MAX_DURATIONS {
                        self.durations.push(logged);
                    } else {
                        self.overflowed_at = Some(unix_now());
                    }
                }
                // The values of a slow execution (or a slow bind: planning)
                // are the ones worth explaining with, not a sampled fast one's.
                if verdict == Verdict::Under {
                    return;
                }
                let sql = if parameters.is_empty() {
                    Some(statement)
                } else {
                    event::bind_parameters(&statement, &parameters)
                };
                if let Some(sql) = sql.filter(|_| !record.truncated) {
                    self.feed.offer_execution(&datname, &fingerprint, sql);
                }
            }
            Event::AutoExplainPlan {
                duration_ms,
                plan,
                query_text,
                user,
                database,
                query_id,
            } => {
                if let Some(query) = query_text {
                    self.feed.push_plan(LoggedPlan {
                        datname: database.unwrap_or_default(),
                        usename: user.unwrap_or_default(),
                        query_id,
                        query,
                        seconds: duration_ms / 1000.0,
                        plan,
                    });
                }
            }
            Event::AuthFailure { user, .. } => self.auth.add(user.unwrap_or_default()),
            Event::Error { sqlstate_class, .. } => self.errors.add(sqlstate_class),
            Event::Reloaded => self.reloaded = true,
            Event::Other => {}
        }
    }

    fn families(&self) -> Vec<Family> {
        let mut slow = Family::new(&SLOW);
        for ((d, u), v) in &self.slow.values {
            slow.push(&[d, u], *v);
        }
        let mut auth = Family::new(&AUTH);
        for (u, v) in &self.auth.values {
            auth.push(&[u], *v);
        }
        let mut errors = Family::new(&ERRORS);
        for (c, v) in &self.errors.values {
            errors.push(&[c], *v);
        }
        let mut fresh = Family::new(&NEW_FINGERPRINTS);
        for ((d, u), v) in &self.new_fingerprints.values {
            fresh.push(&[d, u], *v);
        }
        let read = self.tailer.as_ref().map_or(0, |t| t.read_bytes()) as f64;
        vec![slow, auth, errors, fresh, Family::single(&READ, read)]
    }
}

/// An interval's logged executions, complete (see [`LoggedInterval`]),
/// judged by `thresholds`, whose instance-wide value is `instance_ms`.
fn gather(
    taken: impl Iterator<Item = LoggedDuration>,
    thresholds: &Thresholds,
    instance_ms: Option<u32>,
) -> LoggedInterval {
    let mut interval = LoggedInterval {
        thresholds: thresholds.clone(),
        ..Default::default()
    };
    for d in taken {
        if d.fetch {
            interval.batched.insert(d.key);
            continue;
        }
        if d.in_instance {
            interval.all.push(d.seconds);
        }
        if d.slow {
            interval
                .by_statement
                .entry(d.key)
                .or_default()
                .push(d.seconds);
        }
    }
    match instance_ms.filter(|_| interval.batched.is_empty()) {
        Some(ms) => interval.threshold = f64::from(ms) / 1000.0,
        None => {
            interval.threshold = f64::INFINITY;
            interval.all.clear();
        }
    }
    interval
}

/// jsonlog, else csvlog, else stderr: the structured formats carry the
/// SQLSTATE and never depend on a prefix.
fn format_of(log_destination: &str) -> Format {
    let has = |d: &str| {
        log_destination
            .split(',')
            .any(|part| part.trim().eq_ignore_ascii_case(d))
    };
    if has("jsonlog") {
        Format::Json
    } else if has("csvlog") {
        Format::Csv
    } else {
        Format::Stderr
    }
}

fn write_atomically(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

const WHAT: &str = "log settings";
/// The session's `log_min_duration_statement` and where it came from:
/// pg_settings shows the agent's own session, per-role settings included.
/// Asking pg_file_settings without the privilege would log an error in the
/// server's log every minute: the privilege is asked first.
const SETTINGS_SQL: &str = "SELECT current_setting('log_line_prefix') AS log_line_prefix, current_setting('log_destination') AS log_destination, s.setting AS min_duration, s.source AS min_duration_source, current_user::text AS own_role, pg_catalog.has_table_privilege('pg_catalog.pg_file_settings', 'SELECT') AND pg_catalog.has_function_privilege('pg_catalog.pg_show_all_file_settings()', 'EXECUTE') AS can_read_files FROM pg_catalog.pg_settings s WHERE s.name = 'log_min_duration_statement'";
/// Sources of a session's value that are the server's own.
const SERVER_SOURCES: [&str; 4] = [
    "default",
    "environment variable",
    "configuration file",
    "command line",
];
const WHAT_OVERRIDES: &str = "log_min_duration_statement per database and role";
/// ALTER ROLE / ALTER DATABASE settings that can apply to a session, in a
/// stable order (a reordering must not look like a change).
const OVERRIDES_SQL: &str = "SELECT d.datname::text AS datname, r.rolname::text AS rolname, substr(c.value, strpos(c.value, '=') + 1) AS value FROM pg_catalog.pg_db_role_setting s LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole CROSS JOIN LATERAL unnest(s.setconfig) AS c(value) WHERE split_part(c.value, '=', 1) = 'log_min_duration_statement' AND (s.setdatabase = 0 OR d.datallowconn) AND (s.setrole = 0 OR r.rolcanlogin) ORDER BY 1 NULLS FIRST, 2 NULLS FIRST";
/// postgresql.conf's (and postgresql.auto.conf's) value in force; superuser
/// or an explicit grant only.
const FILE_SQL: &str = "SELECT setting FROM pg_catalog.pg_file_settings WHERE name = 'log_min_duration_statement' AND applied ORDER BY seqno DESC LIMIT 1";

/// Every statement this collector sends.
pub const OWN_SQL: &[&str] = &[SETTINGS_SQL, OVERRIDES_SQL, FILE_SQL];

#[async_trait]
impl Collector for Logs {
    /// It reads from the end of the log: `pgvigil once` reports what was
    /// logged between its two samples.
    fn wants_two_samples(&self) -> bool {
        true
    }

    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        if lock(&self.reader).take_reloaded() {
            self.server_settings = None;
        }
        let (format, prefix, thresholds) = self.server_settings(cx).await?;
        let mut reader = lock(&self.reader);
        reader.configure(format, &prefix, thresholds);
        reader.poll().map_err(CollectError::Unavailable)?;
        Ok(reader.families().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_structured_format_wins() {
        assert_eq!(format_of("stderr"), Format::Stderr);
        assert_eq!(format_of("stderr,csvlog"), Format::Csv);
        assert_eq!(format_of("csvlog, jsonlog"), Format::Json);
        assert_eq!(format_of("syslog"), Format::Stderr);
    }

    use crate::logs::prefix::PrefixFields;
    use crate::logs::record::LogRecord;
    use Threshold::{Ms, Off};

    fn reader(thresholds: Thresholds) -> LogReader {
        let settings = Settings {
            directory: PathBuf::from("/nonexistent"),
            format: None,
            state_file: PathBuf::from("/nonexistent/state.json"),
        };
        let mut reader = LogReader::new(
            settings,
            Arc::new(LogFeed::default()),
            OwnStatements::default(),
        );
        reader.instance_ms = thresholds.instance();
        reader.thresholds = thresholds;
        reader
    }

    fn line(user: &str, ms: f64, what: &str) -> LogRecord {
        LogRecord {
            prefix: PrefixFields {
                timestamp: Some(100.0),
                user: Some(user.into()),
                database: Some("shop".into()),
                ..PrefixFields::default()
            },
            severity: "LOG".into(),
            message: format!("duration: {ms:.3} ms  {what}"),
            ..LogRecord::default()
        }
    }

    fn thresholds() -> Thresholds {
        let role = |name: &str, value| Override {
            database: None,
            role: Some(name.into()),
            value: Some(value),
        };
        Thresholds {
            server: Some(Ms(20)),
            overrides: vec![
                role("alice", Ms(50)),
                role("batch", Off),
                role("pgvigil", Off),
            ],
            own_role: Some("pgvigil".into()),
        }
    }

    #[test]
    fn each_execution_counts_once_by_its_own_threshold() {
        let select = "SELECT * FROM orders WHERE id = $1";
        let fetched = "SELECT * FROM events";
        let mut r = reader(thresholds());
        // (user, duration, what the line timed, counted as slow)
        let cases = [
            ("app", 30.0, format!("statement: {select}"), true),
            ("app", 19.999, format!("statement: {select}"), false),
            ("app", 25.0, format!("parse <unnamed>: {select}"), false),
            ("app", 25.0, format!("bind <unnamed>: {select}"), false),
            ("app", 25.0, format!("execute <unnamed>: {select}"), true),
            ("app", 40.0, format!("execute S_1/C_1: {fetched}"), true),
            (
                "app",
                40.0,
                format!("execute fetch from S_1/C_1: {fetched}"),
                false,
            ),
            ("alice", 30.0, format!("statement: {select}"), false),
            ("alice", 60.0, format!("statement: {select}"), true),
            ("batch", 900.0, format!("statement: {select}"), false),
        ];
        for (user, ms, what, _) in &cases {
            r.absorb(&line(user, *ms, what));
        }
        let want = |user: &str| {
            let n = cases.iter().filter(|c| c.0 == user && c.3).count() as f64;
            (n > 0.0).then_some(n)
        };
        for user in ["app", "alice", "batch"] {
            assert_eq!(
                r.slow
                    .values
                    .get(&("shop".to_string(), user.to_string()))
                    .copied(),
                want(user),
                "{user}"
            );
        }
        // The slow ones and the fetch are kept for the statements collector
        // (none for the instance: batch logs nothing, so no one threshold
        // covers every role).
        let kept: Vec<(&str, f64, bool, bool, bool)> = r
            .durations
            .iter()
            .map(|d| (d.key.1.as_str(), d.seconds, d.slow, d.in_instance, d.fetch))
            .collect();
        assert_eq!(
            kept,
            [
                ("app", 0.03, true, false, false),
                ("app", 0.025, true, false, false),
                ("app", 0.04, true, false, false),
                ("app", 0.04, false, false, true),
                ("alice", 0.06, true, false, false),
            ]
        );
    }

    #[test]
    fn an_interval_is_exact_where_the_log_holds_every_slow_execution() {
        let key = |user: &str, fp: &str| ("shop".to_string(), user.to_string(), fp.to_string());
        let at = |user: &str, fp: &str, seconds: f64, slow: bool, fetch: bool| LoggedDuration {
            at: 1.0,
            seconds,
            key: key(user, fp),
            slow,
            in_instance: !fetch && seconds >= 0.05,
            fetch,
        };
        let logged = vec![
            at("app", "a", 0.03, true, false),
            at("app", "a", 0.07, true, false),
            at("alice", "a", 0.06, true, false),
        ];
        let t = thresholds();
        let interval = gather(logged.clone().into_iter(), &t, t.instance());
        assert_eq!(interval.by_statement[&key("app", "a")], [0.03, 0.07]);
        assert_eq!(interval.threshold_for(&key("app", "a")), Some(0.02));
        assert_eq!(interval.threshold_for(&key("alice", "a")), Some(0.05));
        assert_eq!(interval.threshold_for(&key("bob", "z")), Some(0.02));
        // Logging off for batch: nothing about it is known.
        assert_eq!(interval.threshold_for(&key("batch", "a")), None);
        // The agent's own role is left out: batch's is not.
        assert_eq!((interval.threshold, interval.all.len()), (f64::INFINITY, 0));
        let mut without_batch = thresholds();
        without_batch
            .overrides
            .retain(|o| o.role.as_deref() != Some("batch"));
        let interval = gather(
            logged.clone().into_iter(),
            &without_batch,
            without_batch.instance(),
        );
        assert_eq!(interval.threshold, 0.05);
        assert_eq!(interval.all, [0.07, 0.06]);
        // A statement read in batches: its times are first batches only.
        let mut batched = logged;
        batched.push(at("app", "b", 0.04, false, true));
        let interval = gather(
            batched.into_iter(),
            &without_batch,
            without_batch.instance(),
        );
        assert_eq!(interval.threshold_for(&key("app", "b")), None);
        assert_eq!(interval.threshold_for(&key("app", "a")), Some(0.02));
        assert_eq!((interval.threshold, interval.all.len()), (f64::INFINITY, 0));
    }

    #[test]
    fn capped_counters_fold_the_rest() {
        let mut c = Capped::new("other".to_string(), 2);
        for k in ["a", "b", "c", "a", "d"] {
            c.add(k.to_string());
        }
        assert_eq!(c.values["a"], 2.0);
        assert_eq!(c.values["b"], 1.0);
        assert_eq!(c.values["other"], 2.0);
        assert_eq!(c.values.len(), 3);
    }
}
