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
//! `log_destination`) and `log_line_prefix` are read from the server every
//! minute, so a reload is followed. The read position and the fingerprints
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
use crate::logs::event::{self, Event};
use crate::logs::feed::{LogFeed, LoggedPlan};
use crate::logs::record::Format;
use crate::logs::tail::{Cursor, Tailer};
use crate::metric::{Desc, Family};
use crate::snapshot::unix_now;

static SLOW: Desc = desc!(Counter "pg_log_slow_statements", ["datname", "usename"],
    "Statements the server logged as slower than log_min_duration_statement.",
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

/// A slow execution as logged, kept until the statements collector takes
/// the interval it belongs to.
#[derive(Debug, Clone)]
pub struct LoggedDuration {
    /// When it was logged, Unix seconds.
    pub at: f64,
    /// How long it took, seconds.
    pub seconds: f64,
    /// (datname, usename, fingerprint).
    pub key: (String, String, String),
}

/// Slow executions held between statements cycles, at most.
pub const MAX_DURATIONS: usize = 200_000;

/// One interval's slow executions, complete: every execution slower than
/// the threshold that finished in the interval.
#[derive(Debug, Default)]
pub struct LoggedInterval {
    /// `log_min_duration_statement`, seconds.
    pub threshold: f64,
    /// Durations by (datname, usename, fingerprint).
    pub by_statement: std::collections::HashMap<(String, String, String), Vec<f64>>,
    /// All of them (pgvigil's own excluded).
    pub all: Vec<f64>,
}

/// The `logs` collector: asks the server for the log settings and has the
/// shared [`LogReader`] read.
pub struct Logs {
    reader: Arc<std::sync::Mutex<LogReader>>,
    server_settings: Option<(Format, String, Instant)>,
    format: Option<Format>,
}

/// The log's reading state, shared by the `logs` collector (which counts)
/// and the statements collector (which catches up at the end of each
/// interval for exact tail quantiles).
pub struct LogReader {
    settings: Settings,
    feed: Arc<LogFeed>,
    tailer: Option<Tailer>,
    /// When the tailer started (what was logged before is not read).
    started_at: Option<f64>,
    /// Until when everything logged has been read.
    complete_through: f64,
    /// `log_min_duration_statement` in seconds (negative: off).
    threshold: f64,
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
        }
    }

    /// The format and prefix, from the config or the server, and the slow
    /// statement threshold.
    async fn server_settings(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Result<(Format, String, f64), CollectError> {
        if let Some((format, prefix, at)) = &self.server_settings
            && at.elapsed() < SETTINGS_EVERY
        {
            return Ok((*format, prefix.clone(), f64::NAN));
        }
        let row = cx
            .client
            .query_one(crate::sql::register_own(SETTINGS_SQL), &[])
            .await
            .map_err(query_err(WHAT))?;
        let prefix: String = col(&row, WHAT, "log_line_prefix")?;
        let destination: String = col(&row, WHAT, "log_destination")?;
        let min_ms: f64 = col(&row, WHAT, "min_duration_ms")?;
        let format = self.format.unwrap_or_else(|| format_of(&destination));
        self.server_settings = Some((format, prefix.clone(), Instant::now()));
        Ok((format, prefix, min_ms / 1000.0))
    }
}

fn lock(reader: &std::sync::Mutex<LogReader>) -> std::sync::MutexGuard<'_, LogReader> {
    reader.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogReader {
    /// A reader of one target's log directory.
    pub fn new(settings: Settings, feed: Arc<LogFeed>) -> LogReader {
        LogReader {
            settings,
            feed,
            tailer: None,
            started_at: None,
            complete_through: 0.0,
            threshold: -1.0,
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
    /// change.
    fn configure(&mut self, format: Format, prefix: &str, threshold: f64) {
        if threshold.is_finite() {
            self.threshold = threshold;
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
    /// (the reader started before it, read everything up to its end, and
    /// dropped nothing). Executions logged up to `until` are forgotten
    /// either way.
    pub fn take_interval(&mut self, since: f64, until: f64) -> Option<LoggedInterval> {
        self.tailer.as_ref()?;
        if let Err(e) = self.poll() {
            tracing::debug!(error = %e, "log catch-up failed");
        }
        let (taken, kept): (Vec<_>, Vec<_>) = self.durations.drain(..).partition(|d| d.at <= until);
        self.durations = kept;
        let complete = self.threshold >= 0.0
            && self.started_at.is_some_and(|s| s <= since)
            && self.complete_through >= until
            && self.overflowed_at.is_none_or(|o| o < since);
        if !complete {
            return None;
        }
        let mut interval = LoggedInterval {
            threshold: self.threshold,
            ..Default::default()
        };
        for d in taken.into_iter().filter(|d| d.at > since) {
            interval.all.push(d.seconds);
            interval
                .by_statement
                .entry(d.key)
                .or_default()
                .push(d.seconds);
        }
        Some(interval)
    }

    fn absorb(&mut self, record: &crate::logs::record::LogRecord) {
        match event::classify(record) {
            Event::SlowStatement {
                duration_ms,
                statement,
                parameters,
                user,
                database,
                ..
            } => {
                let datname = database.unwrap_or_default();
                let usename = user.unwrap_or_default();
                self.slow.add((datname.clone(), usename.clone()));
                let Some(fingerprint) = crate::sql::fingerprint(&statement) else {
                    return;
                };
                if crate::sql::is_own(&fingerprint) {
                    return;
                }
                if self.remember((datname.clone(), usename.clone(), fingerprint.clone())) {
                    self.new_fingerprints
                        .add((datname.clone(), usename.clone()));
                }
                if self.durations.len() < MAX_DURATIONS {
                    self.durations.push(LoggedDuration {
                        at: record.timestamp.unwrap_or_else(unix_now),
                        seconds: duration_ms / 1000.0,
                        key: (datname.clone(), usename, fingerprint.clone()),
                    });
                } else {
                    self.overflowed_at = Some(unix_now());
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
const SETTINGS_SQL: &str = "SELECT current_setting('log_line_prefix') AS log_line_prefix, current_setting('log_destination') AS log_destination, (SELECT setting::float8 FROM pg_catalog.pg_settings WHERE name = 'log_min_duration_statement') AS min_duration_ms";

/// Every statement this collector sends.
pub const OWN_SQL: &[&str] = &[SETTINGS_SQL];

#[async_trait]
impl Collector for Logs {
    fn name(&self) -> &'static str {
        "logs"
    }

    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let (format, prefix, threshold) = self.server_settings(cx).await?;
        let mut reader = lock(&self.reader);
        reader.configure(format, &prefix, threshold);
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
