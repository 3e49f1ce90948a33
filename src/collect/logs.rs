//! The `logs` collector (`[target.logs]`, where pgvigil runs beside the
//! server): slow statements, authentication failures, errors by SQLSTATE
//! class and statements never seen before for a role, counted from
//! PostgreSQL's own log by the target's [`LogReader`] (shared with the
//! statements collector, which takes its slow executions for exact tail
//! quantiles).
//!
//! What this collector does is ask the server how to read the log, hand
//! that to the reader, and publish the reader's counts. The format (`auto`:
//! jsonlog, else csvlog, else stderr, from the server's `log_destination`),
//! `log_line_prefix` and the `log_min_duration_statement` in force per
//! database and role ([`crate::logs::duration`]) are read from the server
//! every minute, and at the next run after the log says the configuration
//! was reloaded. The server's own value is read from pg_settings when the
//! agent's session shows it; when a per-role or per-database setting of the
//! agent's own role hides it, from pg_file_settings if the role may read
//! that view, else it is unknown (lines judged by it are counted, with no
//! exact tail).
//!
//! Not for: reading, judging or remembering lines, the state file, the
//! caps on label values ([`crate::logs::reader`] and its neighbours).
//!
//! Cardinality: at most [`MAX_PAIRS`](crate::logs::reader::MAX_PAIRS)
//! (datname, usename) pairs and
//! [`MAX_USERS`](crate::logs::reader::MAX_USERS) user names (failed logins may name anything); the rest is
//! counted under `"other"`.
//!
//! Privilege: reading the log files (the agent's user in the group that
//! owns them); on the server, none beyond pg_monitor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, query, query_one};
use crate::desc;
use crate::logs::capped::Capped;
use crate::logs::duration::{self, Override, Threshold, Thresholds};
use crate::logs::reader::LogReader;
use crate::logs::record::Format;
use crate::metric::{Desc, Family};

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

const SETTINGS_EVERY: Duration = Duration::from_secs(60);

/// The `logs` collector: asks the server for the log settings and has the
/// shared [`LogReader`] read.
pub struct Logs {
    reader: Arc<std::sync::Mutex<LogReader>>,
    server_settings: Option<(Format, String, Instant)>,
    format: Option<Format>,
    /// The server's threshold was found hidden: said once in the agent's log.
    warned_hidden: bool,
}

impl Logs {
    /// A collector reading through `reader`.
    pub fn new(reader: Arc<std::sync::Mutex<LogReader>>) -> Logs {
        let format = lock(&reader).configured_format();
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
        let row = query_one(cx.client, WHAT, SETTINGS_SQL, &[]).await?;
        let prefix: String = row.get("log_line_prefix")?;
        let destination: String = row.get("log_destination")?;
        let setting: String = row.get("min_duration")?;
        let source: String = row.get("min_duration_source")?;
        let own_role: String = row.get("own_role")?;
        let can_read_files: bool = row.get("can_read_files")?;
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
        let overrides = query(cx.client, WHAT_OVERRIDES, OVERRIDES_SQL, &[])
            .await?
            .iter()
            .map(|row| {
                let value: String = row.get("value")?;
                Ok(Override {
                    database: row.get("datname")?,
                    role: row.get("rolname")?,
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
        Ok(families(&reader).into())
    }
}

/// The reader's counts, and the bytes it read.
fn families(reader: &LogReader) -> Vec<Family> {
    let counts = reader.counts();
    let pair = |(d, u): &(String, String)| [d.clone(), u.clone()];
    vec![
        family(&SLOW, &counts.slow, pair),
        family(&AUTH, &counts.auth, |u| [u.clone()]),
        family(&ERRORS, &counts.errors, |c| [c.clone()]),
        family(&NEW_FINGERPRINTS, &counts.new_fingerprints, pair),
        Family::single(&READ, reader.read_bytes() as f64),
    ]
}

/// A family with a series per counted key, labelled as `labels` says.
fn family<K: Ord + Clone, const N: usize>(
    desc: &'static Desc,
    counts: &Capped<K>,
    labels: impl Fn(&K) -> [String; N],
) -> Family {
    let mut family = Family::new(desc);
    for (key, value) in counts.iter() {
        family.push(&labels(key), value);
    }
    family
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
}
