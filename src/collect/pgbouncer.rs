//! PgBouncer, through its admin console: pools (clients active and
//! waiting, server connections by state, the longest wait), databases
//! (pool size, current connections), totals (queries, transactions, times,
//! bytes), the client connection limit and the internal lists.
//!
//! Metric names are those of prometheus-community's pgbouncer_exporter, so
//! existing PgBouncer dashboards keep working; `maxwait` keeps its
//! microseconds. Columns are picked by the names PgBouncer returns, not by
//! its version (1.18 and newer). Each PgBouncer is its own collector with
//! its own connection and `pgbouncer_up`, independent of PostgreSQL, and
//! every one of its series carries its name as the `pgbouncer` label.
//!
//! Privilege: a user in PgBouncer's `admin_users` or `stats_users` (all
//! SHOW commands used here are allowed to stats users).

use async_trait::async_trait;
use tokio_postgres::{SimpleQueryMessage, SimpleQueryRow};

use super::{CollectError, Collected, Standalone};
use crate::config::Pgbouncer as Settings;
use crate::connection::session::{self, Console};
use crate::desc;
use crate::metric::{Desc, Family};

static UP: Desc = desc!(Gauge "pgbouncer_up", [], "1 if PgBouncer's admin console answered, else 0.", only_when = "a [target.pgbouncer] is configured");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static CL_ACTIVE: Desc = desc!(Gauge "pgbouncer_pools_client_active_connections", ["database", "user"], "Clients linked to a server connection or idle.", only_when = "PgBouncer has pools");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static CL_WAITING: Desc = desc!(Gauge "pgbouncer_pools_client_waiting_connections", ["database", "user"], "Clients waiting for a server connection.", only_when = "PgBouncer has pools");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static SV_ACTIVE: Desc = desc!(Gauge "pgbouncer_pools_server_active_connections", ["database", "user"], "Server connections linked to a client.", only_when = "PgBouncer has pools");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static SV_IDLE: Desc = desc!(Gauge "pgbouncer_pools_server_idle_connections", ["database", "user"], "Server connections unused and ready.", only_when = "PgBouncer has pools");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static SV_USED: Desc = desc!(Gauge "pgbouncer_pools_server_used_connections", ["database", "user"], "Server connections idle longer than server_check_delay, to be checked.", only_when = "PgBouncer has pools");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static SV_TESTED: Desc = desc!(Gauge "pgbouncer_pools_server_testing_connections", ["database", "user"], "Server connections being tested or reset.", only_when = "PgBouncer has pools");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static SV_LOGIN: Desc = desc!(Gauge "pgbouncer_pools_server_login_connections", ["database", "user"], "Server connections logging in.", only_when = "PgBouncer has pools");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static MAXWAIT: Desc = desc!(Gauge "pgbouncer_pools_client_maxwait", unit = Seconds, ["database", "user"], "How long the oldest waiting client has waited, with microseconds.", only_when = "PgBouncer has pools");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static POOL_SIZE: Desc = desc!(Gauge "pgbouncer_databases_pool_size", ["database"], "Maximum server connections of the database's pools.", only_when = "PgBouncer has databases");
static CURRENT: Desc = desc!(Gauge "pgbouncer_databases_current_connections", ["database"], "Server connections of the database now.", only_when = "PgBouncer has databases");
static MAX_DB: Desc = desc!(Gauge "pgbouncer_databases_max_connections", ["database"], "max_db_connections for the database (0: unlimited).", only_when = "PgBouncer has databases");
static QUERIES: Desc = desc!(Counter "pgbouncer_stats_totals_queries_pooled", ["database"], "SQL queries pooled.", only_when = "PgBouncer has databases");
static XACTS: Desc = desc!(Counter "pgbouncer_stats_totals_sql_transactions_pooled", ["database"], "SQL transactions pooled.", only_when = "PgBouncer has databases");
static QUERY_TIME: Desc = desc!(Counter "pgbouncer_stats_totals_queries_duration", unit = Seconds, ["database"], "Time spent in queries.", only_when = "PgBouncer has databases");
static WAIT_TIME: Desc = desc!(Counter "pgbouncer_stats_totals_client_wait", unit = Seconds, ["database"], "Time clients waited for a server connection.", only_when = "PgBouncer has databases");
static XACT_TIME: Desc = desc!(Counter "pgbouncer_stats_totals_server_in_transaction", unit = Seconds, ["database"], "Time server connections spent in transactions.", only_when = "PgBouncer has databases");
static RECEIVED: Desc = desc!(Counter "pgbouncer_stats_totals_received", unit = Bytes, ["database"], "Bytes received from clients.", only_when = "PgBouncer has databases");
static SENT: Desc = desc!(Counter "pgbouncer_stats_totals_sent", unit = Bytes, ["database"], "Bytes sent to clients.", only_when = "PgBouncer has databases");
static MAX_CLIENT: Desc = desc!(Gauge "pgbouncer_config_max_client_connections", [], "The max_client_conn setting.", only_when = "PgBouncer answered");
static LISTS: Desc = desc!(Gauge "pgbouncer_lists_items", ["list"], "Items of PgBouncer's internal lists (SHOW LISTS).", only_when = "PgBouncer answered");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &UP,
    &CL_ACTIVE,
    &CL_WAITING,
    &SV_ACTIVE,
    &SV_IDLE,
    &SV_USED,
    &SV_TESTED,
    &SV_LOGIN,
    &MAXWAIT,
    &POOL_SIZE,
    &CURRENT,
    &MAX_DB,
    &QUERIES,
    &XACTS,
    &QUERY_TIME,
    &WAIT_TIME,
    &XACT_TIME,
    &RECEIVED,
    &SENT,
    &MAX_CLIENT,
    &LISTS,
];

/// SHOW POOLS columns and the families they feed.
const POOL_GAUGES: [(&str, &Desc); 7] = [
    ("cl_active", &CL_ACTIVE),
    ("cl_waiting", &CL_WAITING),
    ("sv_active", &SV_ACTIVE),
    ("sv_idle", &SV_IDLE),
    ("sv_used", &SV_USED),
    ("sv_tested", &SV_TESTED),
    ("sv_login", &SV_LOGIN),
];

/// SHOW STATS_TOTALS columns, the families they feed, and their scale
/// (times are in microseconds).
const TOTALS: [(&str, &Desc, f64); 7] = [
    ("query_count", &QUERIES, 1.0),
    ("xact_count", &XACTS, 1.0),
    ("query_time", &QUERY_TIME, 1e-6),
    ("wait_time", &WAIT_TIME, 1e-6),
    ("xact_time", &XACT_TIME, 1e-6),
    ("bytes_received", &RECEIVED, 1.0),
    ("bytes_sent", &SENT, 1.0),
];

/// A `pgbouncer` collector.
pub struct Pgbouncer {
    settings: Settings,
    console: Option<Console>,
}

impl Pgbouncer {
    /// A collector for one PgBouncer.
    pub fn new(settings: Settings) -> Pgbouncer {
        Pgbouncer {
            settings,
            console: None,
        }
    }

    async fn show(&mut self, what: &'static str) -> Result<Vec<SimpleQueryRow>, CollectError> {
        let console = match &self.console {
            Some(c) if !c.client.is_closed() => c,
            _ => {
                self.console = Some(session::open_console(&self.settings.conn).await?);
                self.console.as_ref().expect("set above")
            }
        };
        let messages = console
            .client
            .simple_query(what)
            .await
            .map_err(|source| CollectError::Query { what, source })?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .collect())
    }

    async fn read(&mut self) -> Result<Vec<Family>, CollectError> {
        let pools = self.show("SHOW POOLS").await?;
        let databases = self.show("SHOW DATABASES").await?;
        let totals = self.show("SHOW STATS_TOTALS").await?;
        let config = self.show("SHOW CONFIG").await?;
        let lists = self.show("SHOW LISTS").await?;
        let mut families = Vec::new();
        for (column, desc) in POOL_GAUGES {
            let mut f = Family::new(desc);
            for row in &pools {
                if let Some(v) = number(row, column) {
                    f.push(&[text(row, "database"), text(row, "user")], v);
                }
            }
            families.push(f);
        }
        let mut maxwait = Family::new(&MAXWAIT);
        for row in &pools {
            let seconds = number(row, "maxwait").unwrap_or(0.0)
                + number(row, "maxwait_us").unwrap_or(0.0) / 1e6;
            maxwait.push(&[text(row, "database"), text(row, "user")], seconds);
        }
        families.push(maxwait);
        for (column, desc) in [
            ("pool_size", &POOL_SIZE),
            ("current_connections", &CURRENT),
            ("max_connections", &MAX_DB),
        ] {
            let mut f = Family::new(desc);
            for row in &databases {
                if let Some(v) = number(row, column) {
                    f.push(&[text(row, "name")], v);
                }
            }
            families.push(f);
        }
        for (column, desc, scale) in TOTALS {
            let mut f = Family::new(desc);
            for row in &totals {
                if let Some(v) = number(row, column) {
                    f.push(&[text(row, "database")], v * scale);
                }
            }
            families.push(f);
        }
        if let Some(v) = config
            .iter()
            .find(|r| text(r, "key") == "max_client_conn")
            .and_then(|r| number(r, "value"))
        {
            families.push(Family::single(&MAX_CLIENT, v));
        }
        let mut items = Family::new(&LISTS);
        for row in &lists {
            if let Some(v) = number(row, "items") {
                items.push(&[text(row, "list")], v);
            }
        }
        families.push(items);
        Ok(families)
    }
}

fn text<'a>(row: &'a SimpleQueryRow, column: &str) -> &'a str {
    row.try_get(column).ok().flatten().unwrap_or("")
}

fn number(row: &SimpleQueryRow, column: &str) -> Option<f64> {
    row.try_get(column)
        .ok()
        .flatten()
        .and_then(|v: &str| v.trim().parse().ok())
}

#[async_trait]
impl Standalone for Pgbouncer {
    async fn collect(&mut self) -> Result<Collected, CollectError> {
        match self.read().await {
            Ok(mut families) => {
                families.insert(0, Family::single(&UP, 1.0));
                Ok(families.into())
            }
            Err(e) => {
                // Reconnect next time; meanwhile only `up 0` is published.
                self.console = None;
                Err(e)
            }
        }
    }

    fn on_failure(&self) -> Vec<Family> {
        vec![Family::single(&UP, 0.0)]
    }

    fn label(&self) -> Option<(&'static str, std::sync::Arc<str>)> {
        // Always, also for a lone console: a label that appeared with the
        // second one would rename the first one's series.
        Some((
            "pgbouncer",
            std::sync::Arc::from(self.settings.name.as_str()),
        ))
    }
}
