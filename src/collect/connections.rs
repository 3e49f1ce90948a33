//! Connections: pg_stat_activity by state, blocked sessions, long and idle
//! transactions, and pg_locks by mode.
//!
//! Privilege: pg_monitor (through pg_read_all_stats) to see other roles'
//! sessions; without it their state shows as "unknown".

use std::collections::HashMap;

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, col, query_err};
use crate::desc;
use crate::metric::{Desc, Family};

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

/// The `connections` collector.
#[derive(Debug, Default)]
pub struct Connections;

const ACTIVITY: &str = "pg_stat_activity";
const PER_DATABASE: &str = "pg_stat_activity per database";
const LOCK_MODES: &str = "pg_locks";

#[async_trait]
impl Collector for Connections {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let rows = cx
            .client
            .query(ACTIVITY_SQL, &[])
            .await
            .map_err(query_err(ACTIVITY))?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in &rows {
            let labels: [String; 4] = [
                col(row, ACTIVITY, "datname")?,
                col(row, ACTIVITY, "usename")?,
                col(row, ACTIVITY, "application_name")?,
                col(row, ACTIVITY, "state")?,
            ];
            groups.push((labels, col::<f64>(row, ACTIVITY, "n")?));
        }
        let mut connections = Family::new(&CONNECTIONS);
        for (labels, n) in fold_rare(groups, MAX_CONNECTION_SERIES) {
            connections.push(&labels, n);
        }

        // Every connectable database gets a series, so "0" is visible
        // instead of a missing series that alerts cannot compare.
        let rows = cx
            .client
            .query(PER_DATABASE_SQL, &[])
            .await
            .map_err(query_err(PER_DATABASE))?;
        let mut blocked = Family::new(&BLOCKED);
        let mut longest = Family::new(&LONGEST_XACT);
        let mut idle = Family::new(&LONGEST_IDLE);
        let mut reserved = Family::new(&RESERVED);
        for row in &rows {
            let datname: String = col(row, PER_DATABASE, "datname")?;
            blocked.push(&[&datname], col(row, PER_DATABASE, "blocked")?);
            longest.push(&[&datname], col(row, PER_DATABASE, "longest_xact")?);
            idle.push(&[&datname], col(row, PER_DATABASE, "longest_idle")?);
            if reserved.series.is_empty() {
                reserved.push::<&str>(&[], col(row, PER_DATABASE, "reserved")?);
            }
        }

        let rows = cx
            .client
            .query(LOCKS_SQL, &[])
            .await
            .map_err(query_err(LOCK_MODES))?;
        let mut locks = Family::new(&LOCKS);
        for row in &rows {
            let labels: [String; 2] = [
                col(row, LOCK_MODES, "datname")?,
                col(row, LOCK_MODES, "mode")?,
            ];
            locks.push(&labels, col(row, LOCK_MODES, "n")?);
        }
        Ok(vec![connections, reserved, blocked, longest, idle, locks].into())
    }
}

/// Keeps the `max` largest groups and sums the rest per state into one
/// series labelled "other", so unbounded application names cannot blow up
/// the number of series. The total count is preserved.
fn fold_rare(mut groups: Vec<([String; 4], f64)>, max: usize) -> Vec<([String; 4], f64)> {
    if groups.len() <= max {
        return groups;
    }
    // Largest first; ties broken by labels so the choice is stable.
    groups.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest = groups.split_off(max.saturating_sub(1));
    let mut other: HashMap<String, f64> = HashMap::new();
    for ([_, _, _, state], n) in rest {
        *other.entry(state).or_default() += n;
    }
    let mut folded: Vec<_> = other.into_iter().collect();
    folded.sort_by(|a, b| a.0.cmp(&b.0));
    groups.extend(
        folded
            .into_iter()
            .map(|(state, n)| (["other".into(), "other".into(), "other".into(), state], n)),
    );
    groups
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

#[cfg(test)]
mod tests {
    use super::*;

    fn group(app: &str, state: &str, n: f64) -> ([String; 4], f64) {
        (["db".into(), "u".into(), app.into(), state.into()], n)
    }

    #[test]
    fn rare_groups_fold_into_other_per_state_and_keep_the_total() {
        let groups = vec![
            group("big", "active", 10.0),
            group("a1", "idle", 1.0),
            group("a2", "idle", 2.0),
            group("a3", "active", 1.0),
        ];
        let folded = fold_rare(groups, 2);
        let total: f64 = folded.iter().map(|g| g.1).sum();
        assert_eq!(total, 14.0);
        assert_eq!(folded[0], group("big", "active", 10.0));
        let other: Vec<_> = folded
            .iter()
            .filter(|g| g.0[0] == "other")
            .map(|g| (g.0[3].as_str(), g.1))
            .collect();
        assert_eq!(other, [("active", 1.0), ("idle", 3.0)]);
    }

    #[test]
    fn few_groups_are_left_alone() {
        let groups = vec![group("a", "idle", 1.0)];
        assert_eq!(fold_rare(groups.clone(), 2), groups);
    }
}
