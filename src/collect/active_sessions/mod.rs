//! Active sessions: where the database's time goes. Samples
//! pg_stat_activity every second (by default) and accumulates what the
//! active sessions were doing: `pg_active_session_seconds_total` by
//! database and wait event (an active session with no wait event is on
//! CPU), whose `rate()` is the average number of active sessions, the
//! "database load" of AWS Performance Insights; the age of the oldest
//! running statement; and, per statement (PostgreSQL 14+, `query_id`),
//! load by wait event over the last five minutes for the outputs to join
//! with the statements report.
//!
//! Counted: active client backends and parallel workers (a parallel
//! query's workers are part of its load), never pgvigil's own sessions
//! (`application_name = 'pgvigil'`) nor the sampling session itself.
//! Walsenders, autovacuum and other background processes are left out:
//! they are not the clients' load, and a walsender is "active" forever.
//!
//! Privilege: pg_monitor (through pg_read_all_stats) to see other roles'
//! `state`, `wait_event*`, `query_start` and `query_id`; without it those
//! are NULL for other roles' sessions, which are then not counted.
//!
//! Cost: one prepared statement per run, no join, filtered and grouped in
//! SQL (a handful of rows). Reading pg_stat_activity copies the shared
//! backend status array, so it costs in proportion to `max_connections`,
//! not to the work the sessions do; docs/performance.md has the figures.

pub mod load;
pub mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_postgres::Statement;

use super::{CollectError, Collected, Collector, Context, Detail, Row};
use crate::desc;
use crate::metric::{Desc, Family};
use load::{Counters, Group, Window};
use report::{LoadReport, StatementLoad, WaitLoad, ranked};

/// Public: the outputs look it up by descriptor.
pub static SECONDS: Desc = desc!(Counter "pg_active_session", unit = Seconds, ["datname", "wait_event_type", "wait_event"],
    "Sampled active-session seconds (pgvigil's own left out): each sample adds its interval per active session; wait_event_type and wait_event are \"CPU\" when it was not waiting. rate() is the average number of active sessions (database load). pgvigil's sum from 0 at agent start; databases past the first 10 seen fold into datname=\"other\", and past 60 series new combinations into datname=\"other\", wait_event=\"other\" of their wait_event_type.",
    only_when = "an active session has been sampled since the agent started");
/// Public: the outputs look it up by descriptor.
pub static LONGEST_QUERY: Desc = desc!(Gauge "pg_longest_query", unit = Seconds, [],
    "How long the oldest running statement of a client session (pgvigil's own left out) has been running, 0 when none is; a statement, not its transaction (see pg_longest_transaction_seconds).");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[&SECONDS, &LONGEST_QUERY];

const SAMPLE: &str = "pg_stat_activity (active sessions)";

/// The sample, grouped in SQL so only a few rows travel, with `$query_id`
/// for the statement column (`query_id` on 14+, NULL before).
macro_rules! sample_sql {
    ($query_id:literal) => {
        concat!(
            "SELECT coalesce(datname::text, '') AS datname,
                        coalesce(wait_event_type, 'CPU') AS wait_event_type,
                        coalesce(wait_event, 'CPU') AS wait_event,
                        ",
            $query_id,
            " AS query_id,
                        count(*)::float8 AS sessions,
                        coalesce(max(extract(epoch FROM now() - query_start))
                            FILTER (WHERE backend_type = 'client backend'), 0)::float8 AS longest
                   FROM pg_catalog.pg_stat_activity
                  WHERE state = 'active'
                    AND backend_type IN ('client backend', 'parallel worker')
                    AND pid <> pg_catalog.pg_backend_pid()
                    AND application_name IS DISTINCT FROM 'pgvigil'
                  GROUP BY 1, 2, 3, 4"
        )
    };
}

/// The sample as sent to PostgreSQL 14 and newer.
const SAMPLE_SQL_14: &str = sample_sql!("query_id");
/// The sample as sent before 14, which has no `query_id`.
const SAMPLE_SQL_13: &str = sample_sql!("NULL::int8");

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[SAMPLE_SQL_14, SAMPLE_SQL_13];

/// The `active_sessions` collector.
pub struct ActiveSessions {
    /// The configured interval: what one sample stands for at most twice.
    interval: Duration,
    /// The sample, prepared once per connection.
    prepared: Option<Statement>,
    /// When the previous sample was taken.
    last: Option<Instant>,
    started: Instant,
    counters: Counters,
    window: Window,
    /// Whether the server reports `query_id` (14+).
    per_statement: bool,
}

impl ActiveSessions {
    /// A collector sampling every `interval`.
    pub fn new(interval: Duration) -> ActiveSessions {
        ActiveSessions {
            interval,
            prepared: None,
            last: None,
            started: Instant::now(),
            counters: Counters::default(),
            window: Window::default(),
            per_statement: false,
        }
    }

    /// The time one sample stands for: the time since the previous one,
    /// but at most two intervals (after a stall, the sessions of one
    /// instant are not extrapolated over the gap); one interval for the
    /// first.
    fn weight(&mut self, now: Instant) -> f64 {
        let weight = match self.last {
            Some(last) => now.duration_since(last).min(self.interval * 2),
            None => self.interval,
        };
        self.last = Some(now);
        weight.as_secs_f64()
    }

    async fn sample(&mut self, cx: &Context<'_>) -> Result<Vec<Row>, CollectError> {
        let sql = if cx.caps.server_version_num >= 140000 {
            SAMPLE_SQL_14
        } else {
            SAMPLE_SQL_13
        };
        let err = |source| CollectError::Query {
            what: SAMPLE,
            source,
        };
        // A statement prepared on a connection that was since replaced
        // fails once: prepare again and retry.
        for attempt in 0..2 {
            let statement = match &self.prepared {
                Some(s) => s.clone(),
                None => {
                    let s = cx.client.prepare(sql).await.map_err(err)?;
                    self.prepared = Some(s.clone());
                    s
                }
            };
            match cx.client.query(&statement, &[]).await {
                Ok(rows) => return Ok(rows.into_iter().map(|r| Row::new(r, SAMPLE)).collect()),
                Err(e) => {
                    self.prepared = None;
                    if attempt == 1
                        || e.is_closed()
                        || e.code().is_some_and(|c| c.code() != "26000")
                    {
                        return Err(err(e));
                    }
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    fn report(&self) -> LoadReport {
        let covered = self.window.covered();
        let mut total = 0.0;
        let mut server: std::collections::BTreeMap<(&str, &str), f64> = Default::default();
        let mut statements: std::collections::HashMap<i64, Vec<WaitLoad>> = Default::default();
        for ((query_id, kind, event), seconds) in self.window.sums() {
            total += seconds;
            *server.entry((kind, event)).or_default() += seconds;
            if let Some(id) = query_id {
                statements.entry(*id).or_default().push(WaitLoad {
                    wait_event_type: kind.clone(),
                    wait_event: event.clone(),
                    seconds,
                    ratio: 0.0,
                });
            }
        }
        let aas = |seconds: f64| {
            if covered > 0.0 {
                seconds / covered
            } else {
                0.0
            }
        };
        let mut statements: Vec<StatementLoad> = statements
            .into_iter()
            .map(|(id, waits)| {
                let seconds = waits.iter().map(|w| w.seconds).sum();
                StatementLoad {
                    queryid: id.to_string(),
                    seconds,
                    average_active_sessions: aas(seconds),
                    wait_events: ranked(waits, seconds),
                }
            })
            .collect();
        statements.sort_by(|a, b| {
            b.seconds
                .total_cmp(&a.seconds)
                .then_with(|| a.queryid.cmp(&b.queryid))
        });
        statements.truncate(report::TOP_STATEMENTS);
        let waits = server
            .into_iter()
            .map(|((kind, event), seconds)| WaitLoad {
                wait_event_type: kind.to_string(),
                wait_event: event.to_string(),
                seconds,
                ratio: 0.0,
            })
            .collect();
        LoadReport {
            window_seconds: covered,
            average_active_sessions: aas(total),
            wait_events: ranked(waits, total),
            per_statement: self.per_statement,
            statements,
        }
    }
}

#[async_trait]
impl Collector for ActiveSessions {
    /// `pgvigil once` shows load, which one sample alone barely says.
    fn wants_two_samples(&self) -> bool {
        true
    }

    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let rows = self.sample(cx).await?;
        let now = Instant::now();
        let mut groups = Vec::with_capacity(rows.len());
        let mut longest: f64 = 0.0;
        for row in &rows {
            longest = longest.max(row.get("longest")?);
            groups.push(Group {
                datname: row.get("datname")?,
                wait_event_type: row.get("wait_event_type")?,
                wait_event: row.get("wait_event")?,
                query_id: row.get("query_id")?,
                sessions: row.get("sessions")?,
            });
        }
        let weight = self.weight(now);
        self.counters.add(&groups, weight);
        let at = now.duration_since(self.started).as_secs_f64();
        self.window.add(at, &groups, weight);
        self.per_statement = cx.caps.server_version_num >= 140000;

        let mut seconds = Family::new(&SECONDS);
        for (labels, value) in self.counters.series() {
            seconds.push(labels, value);
        }
        Ok(Collected {
            families: vec![seconds, Family::single(&LONGEST_QUERY, longest)],
            detail: Some(Detail::ActiveSessions(Arc::new(self.report()))),
        })
    }
}
