//! The log's reading state for one target: the tailer, what its records
//! mean counted (slow executions per database and role, failed logins per
//! user, errors per SQLSTATE class, statements new to a role), the slow
//! executions kept for the statements collector's exact tails, and the
//! `log_min_duration_statement` thresholds they are judged by.
//!
//! Shared by the `logs` collector (`collect/logs.rs`, which asks the
//! server for the format, prefix and thresholds, reads, and publishes the
//! counts) and the statements collector (which catches up at the end of each
//! interval and takes its [`LoggedInterval`]). Slow executions with their
//! parameters and auto_explain plans go to the EXPLAIN worker through the
//! [`LogFeed`].
//!
//! Not for: talking to the server or building metric families (the
//! collector does both), parsing (the other `logs` modules).

use std::sync::Arc;

use super::capped::Capped;
use super::duration::{self, Threshold, Thresholds, Verdict};
use super::event::{self, Event};
use super::feed::{LogFeed, LoggedPlan};
use super::interval::{LoggedDuration, LoggedInterval};
use super::record::{Format, LogRecord};
use super::state::{Seen, StateFile};
use super::tail::Tailer;
use crate::config::Logs as Settings;
use crate::snapshot::unix_now;
use crate::sql::OwnStatements;

/// (datname, usename) pairs counted individually.
pub const MAX_PAIRS: usize = 200;
/// User names counted individually for failed logins (and SQLSTATE classes
/// for errors).
pub const MAX_USERS: usize = 100;
/// Slow executions held between statements cycles, at most.
pub const MAX_DURATIONS: usize = 200_000;

/// What the log's records counted, since the process started; the keys
/// past each cap are counted under `"other"`.
#[derive(Debug)]
pub struct Counts {
    /// Slow executions by (datname, usename).
    pub slow: Capped<(String, String)>,
    /// Failed logins by usename.
    pub auth: Capped<String>,
    /// ERROR, FATAL and PANIC messages by SQLSTATE class.
    pub errors: Capped<String>,
    /// Statements new to a role, by (datname, usename).
    pub new_fingerprints: Capped<(String, String)>,
}

impl Default for Counts {
    fn default() -> Self {
        let other_pair = || ("other".to_string(), "other".to_string());
        Counts {
            slow: Capped::new(other_pair(), MAX_PAIRS),
            auth: Capped::new("other".into(), MAX_USERS),
            errors: Capped::new("other".into(), MAX_USERS),
            new_fingerprints: Capped::new(other_pair(), MAX_PAIRS),
        }
    }
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
    counts: Counts,
    seen: Seen,
    state: StateFile,
}

impl LogReader {
    /// A reader of one target's log directory; `own` tells pgvigil's own
    /// statements, which are not counted.
    pub fn new(settings: Settings, feed: Arc<LogFeed>, own: OwnStatements) -> LogReader {
        LogReader {
            state: StateFile::new(settings.state_file.clone()),
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
            counts: Counts::default(),
            seen: Seen::default(),
        }
    }

    /// The format `[target.logs]` sets; `None`: the server's.
    pub fn configured_format(&self) -> Option<Format> {
        self.settings.format
    }

    /// What was counted so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Bytes of log read since the process started.
    pub fn read_bytes(&self) -> u64 {
        self.tailer.as_ref().map_or(0, Tailer::read_bytes)
    }

    /// Starts reading (at the end of the newest file, or the saved
    /// position) once the format and prefix are known, or follows their
    /// change, and the thresholds' when they were read again.
    pub fn configure(&mut self, format: Format, prefix: &str, thresholds: Option<Thresholds>) {
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
                let cursor = self.state.load(&mut self.seen);
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
    pub fn poll(&mut self) -> Result<(), String> {
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
        let cursor = self.tailer.as_ref().and_then(Tailer::cursor);
        self.state.save(cursor, &mut self.seen);
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
        Some(LoggedInterval::gather(
            taken,
            &self.thresholds,
            self.instance_ms,
        ))
    }

    /// Whether the log said the configuration was reloaded since the last
    /// call.
    pub fn take_reloaded(&mut self) -> bool {
        std::mem::take(&mut self.reloaded)
    }

    fn absorb(&mut self, record: &LogRecord) {
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
                let logged = Logged {
                    at: record.prefix.timestamp,
                    duration_ms,
                    kind,
                    database,
                    user,
                };
                self.slow_statement(logged, statement, &parameters, record.truncated);
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
            Event::AuthFailure { user, .. } => self.counts.auth.add(user.unwrap_or_default()),
            Event::Error { sqlstate_class, .. } => self.counts.errors.add(sqlstate_class),
            Event::Reloaded => self.reloaded = true,
            Event::Other => {}
        }
    }

    /// A `duration:` line with its statement: counted when it is a slow
    /// execution, its statement remembered for the role, its time kept
    /// for the tails, its values offered to the EXPLAIN worker.
    fn slow_statement(
        &mut self,
        logged: Logged,
        statement: String,
        parameters: &[Option<String>],
        truncated: bool,
    ) {
        let Logged {
            at,
            duration_ms,
            kind,
            database,
            user,
        } = logged;
        let verdict = self
            .thresholds
            .judge(database.as_deref(), user.as_deref(), duration_ms);
        let datname = database.unwrap_or_default();
        let usename = user.unwrap_or_default();
        if kind.is_execution() && verdict != Verdict::Under {
            self.counts.slow.add((datname.clone(), usename.clone()));
        }
        let Some(fingerprint) = crate::sql::fingerprint(&statement) else {
            return;
        };
        if self.own.contains(&fingerprint) {
            return;
        }
        let key = (datname, usename, fingerprint);
        if self.seen.remember(key.clone()) {
            self.counts
                .new_fingerprints
                .add((key.0.clone(), key.1.clone()));
        }
        let execution = kind.is_execution();
        let logged = LoggedDuration {
            at: at.unwrap_or_else(unix_now),
            seconds: duration_ms / 1000.0,
            slow: execution && verdict == Verdict::Slow,
            in_instance: execution
                && self
                    .instance_ms
                    .is_some_and(|ms| Threshold::Ms(ms).logs_as_slow(duration_ms)),
            fetch: kind == duration::Kind::ExecuteFetch,
            key: key.clone(),
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
            event::bind_parameters(&statement, parameters)
        };
        if let Some(sql) = sql.filter(|_| !truncated) {
            let (datname, _, fingerprint) = &key;
            self.feed.offer_execution(datname, fingerprint, sql);
        }
    }
}

/// A `duration:` line: when, how long, what it timed, whose.
struct Logged {
    at: Option<f64>,
    duration_ms: f64,
    kind: duration::Kind,
    database: Option<String>,
    user: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::logs::interval::tests::thresholds;
    use crate::logs::prefix::PrefixFields;

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
                r.counts.slow.get(&("shop".to_string(), user.to_string())),
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
}
