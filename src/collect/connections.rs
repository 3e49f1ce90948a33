//! Connections: pg_stat_activity by state, blocked sessions, long and idle
//! transactions, and pg_locks by mode.
//!
//! Privilege: pg_monitor (through pg_read_all_stats) to see other roles'
//! sessions; without it their state shows as "unknown".

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, query};
use crate::desc;
use crate::metric::{Desc, Family};
use crate::stats::cardinality::fold_rare;

/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static CONNECTIONS: Desc = desc!(Gauge "pg_connections", ["datname", "usename", "application_name", "state"],
    "Client connections by database, role, application and state; rare combinations are folded into \"other\".");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static RESERVED: Desc = desc!(Gauge "pg_connections_reserved", [],
    "Connection slots only superusers (and, on 16+, pg_use_reserved_connections) may use.");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static BLOCKED: Desc =
    desc!(Gauge "pg_blocked_connections", ["datname"], "Sessions waiting for a lock.");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static LONGEST_XACT: Desc = desc!(Gauge "pg_longest_transaction", unit = Seconds, ["datname"],
    "Age of the oldest open transaction of a client session (pgvigil's own left out), 0 when none is open.");
static LONGEST_IDLE: Desc = desc!(Gauge "pg_longest_idle_in_transaction", unit = Seconds, ["datname"],
    "How long the longest idle-in-transaction session (pgvigil's own left out) has been idle, 0 when none is.");
static LOCKS: Desc =
    desc!(Gauge "pg_locks", ["datname", "mode"], "Locks held or awaited, by database and mode.");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &CONNECTIONS,
    &RESERVED,
    &BLOCKED,
    &LONGEST_XACT,
    &LONGEST_IDLE,
    &LOCKS,
];

/// At most this many (datname, usename, application_name, state) series;
/// the smallest groups beyond it are summed into "other".
pub const MAX_CONNECTION_SERIES: usize = 100;

/// The label kept when rare groups are folded: "other" per state.
const STATE: usize = 3;

/// The `connections` collector.
#[derive(Debug, Default)]
pub struct Connections;

const ACTIVITY: &str = "pg_stat_activity";
const PER_DATABASE: &str = "pg_stat_activity per database";
const LOCK_MODES: &str = "pg_locks";

#[async_trait]
impl Collector for Connections {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let rows = query(cx.client, ACTIVITY, ACTIVITY_SQL, &[]).await?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in &rows {
            let labels: [String; 4] = [
                row.get("datname")?,
                row.get("usename")?,
                row.get("application_name")?,
                row.get("state")?,
            ];
            groups.push((labels, row.get::<f64>("n")?));
        }
        let mut connections = Family::new(&CONNECTIONS);
        for (labels, n) in fold_rare(groups, MAX_CONNECTION_SERIES, STATE) {
            connections.push(&labels, n);
        }

        // Every connectable database gets a series, so "0" is visible
        // instead of a missing series that alerts cannot compare.
        let rows = query(cx.client, PER_DATABASE, PER_DATABASE_SQL, &[]).await?;
        let mut blocked = Family::new(&BLOCKED);
        let mut longest = Family::new(&LONGEST_XACT);
        let mut idle = Family::new(&LONGEST_IDLE);
        let mut reserved = Family::new(&RESERVED);
        for row in &rows {
            let datname: String = row.get("datname")?;
            blocked.push(&[&datname], row.get("blocked")?);
            longest.push(&[&datname], row.get("longest_xact")?);
            idle.push(&[&datname], row.get("longest_idle")?);
            if reserved.series.is_empty() {
                reserved.push::<&str>(&[], row.get("reserved")?);
            }
        }

        let rows = query(cx.client, LOCK_MODES, LOCKS_SQL, &[]).await?;
        let mut locks = Family::new(&LOCKS);
        for row in &rows {
            let labels: [String; 2] = [row.get("datname")?, row.get("mode")?];
            locks.push(&labels, row.get("n")?);
        }
        Ok(vec![connections, reserved, blocked, longest, idle, locks].into())
    }
}

const ACTIVITY_SQL: &str =
    "SELECT coalesce(datname::text, '') AS datname, coalesce(usename::text, '') AS usename,
                        coalesce(application_name, '') AS application_name,
                        coalesce(state, 'unknown') AS state, count(*)::float8 AS n
                   FROM pg_catalog.pg_stat_activity
                  WHERE backend_type = 'client backend'
                  GROUP BY 1, 2, 3, 4";

/// Transaction ages leave out pgvigil's own sessions (its EXPLAIN runs in
/// a read-only transaction of up to `explain.statement_timeout`): the
/// agent must not page anyone about itself.
const PER_DATABASE_SQL: &str = "SELECT d.datname::text AS datname,
                        coalesce(max(extract(epoch FROM now() - a.xact_start))
                            FILTER (WHERE a.application_name <> 'pgvigil'), 0)::float8 AS longest_xact,
                        coalesce(max(extract(epoch FROM now() - a.state_change))
                            FILTER (WHERE a.state IN ('idle in transaction', 'idle in transaction (aborted)')
                                      AND a.application_name <> 'pgvigil'), 0)::float8 AS longest_idle,
                        (count(a.pid) FILTER (WHERE a.wait_event_type = 'Lock'))::float8 AS blocked,
                        (SELECT current_setting('superuser_reserved_connections')::int
                              + coalesce(current_setting('reserved_connections', true)::int, 0))::float8 AS reserved
                   FROM pg_catalog.pg_database d
                   LEFT JOIN pg_catalog.pg_stat_activity a
                     ON a.datid = d.oid AND a.backend_type = 'client backend' AND a.pid <> pg_catalog.pg_backend_pid()
                  WHERE d.datallowconn AND NOT d.datistemplate
                  GROUP BY d.datname";

const LOCKS_SQL: &str = "SELECT d.datname::text AS datname, m.mode, count(l.locktype)::float8 AS n
                   FROM pg_catalog.pg_database d
                  CROSS JOIN unnest(ARRAY['AccessShareLock', 'RowShareLock', 'RowExclusiveLock',
                        'ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock',
                        'ExclusiveLock', 'AccessExclusiveLock']) AS m(mode)
                   LEFT JOIN pg_catalog.pg_locks l ON l.database = d.oid AND l.mode = m.mode
                  WHERE d.datallowconn AND NOT d.datistemplate
                  GROUP BY 1, 2";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[ACTIVITY_SQL, PER_DATABASE_SQL, LOCKS_SQL];
