//! PgBouncer, through its admin console: pools (clients active and
//! waiting, server connections by state, the longest wait), databases
//! (pool limits, current connections, paused and disabled), totals
//! (queries, transactions, times, bytes, prepared statements), the
//! connection limits of its config, its internal lists and its version.
//!
//! Metric names and labels are those of prometheus-community's
//! pgbouncer_exporter 0.11 (`tests/it/pgbouncer_compat.rs` holds its list
//! and checks it against a real PgBouncer), so existing PgBouncer
//! dashboards and alerts keep working unchanged; `maxwait` keeps its
//! microseconds. Like the exporter, the `pgbouncer_databases_*` families
//! call PgBouncer's database `name` and the server-side one `database`
//! (the pools and totals call PgBouncer's `database`, as PgBouncer does).
//! Columns are picked by the names PgBouncer returns, not by its version
//! (1.18 and newer): a column an older PgBouncer lacks (prepared
//! statements, 1.21) leaves its family absent, never 0. Each PgBouncer is
//! its own collector with its own connection and `pgbouncer_up`,
//! independent of PostgreSQL, and every one of its series carries its name
//! as the `pgbouncer` label.
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
static CL_ACTIVE_CANCEL: Desc = desc!(Gauge "pgbouncer_pools_client_active_cancel_connections", ["database", "user"], "Clients that forwarded a query cancellation and wait for the server's answer.", only_when = "PgBouncer has pools");
static CL_WAITING_CANCEL: Desc = desc!(Gauge "pgbouncer_pools_client_waiting_cancel_connections", ["database", "user"], "Clients whose query cancellation is not forwarded yet.", only_when = "PgBouncer has pools");
static SV_ACTIVE_CANCEL: Desc = desc!(Gauge "pgbouncer_pools_server_active_cancel_connections", ["database", "user"], "Server connections forwarding a cancel request.", only_when = "PgBouncer has pools");
static SV_BEING_CANCELED: Desc = desc!(Gauge "pgbouncer_pools_server_being_canceled_connections", ["database", "user"], "Server connections held back until the cancel requests sent for them complete.", only_when = "PgBouncer has pools");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
/// Its first label, `name`, is the pools' `database`.
pub static POOL_SIZE: Desc = desc!(Gauge "pgbouncer_databases_pool_size", ["name", "host", "port", "database", "force_user", "pool_mode"], "Maximum server connections of each of the database's pools; `name` is PgBouncer's database (the pools' `database`), `database` the server's.", only_when = "PgBouncer has databases");
static RESERVE_POOL: Desc = desc!(Gauge "pgbouncer_databases_reserve_pool", ["name", "host", "port", "database", "force_user", "pool_mode"], "Extra server connections a pool may open when clients wait too long.", only_when = "PgBouncer has databases");
static CURRENT: Desc = desc!(Gauge "pgbouncer_databases_current_connections", ["name", "host", "port", "database", "force_user", "pool_mode"], "Server connections of the database now.", only_when = "PgBouncer has databases");
static MAX_DB: Desc = desc!(Gauge "pgbouncer_databases_max_connections", ["name", "host", "port", "database", "force_user", "pool_mode"], "max_db_connections for the database (0: unlimited).", only_when = "PgBouncer has databases");
static PAUSED: Desc = desc!(Gauge "pgbouncer_databases_paused", ["name", "host", "port", "database", "force_user", "pool_mode"], "1 while the database is paused (PAUSE), else 0.", only_when = "PgBouncer has databases");
static DISABLED: Desc = desc!(Gauge "pgbouncer_databases_disabled", ["name", "host", "port", "database", "force_user", "pool_mode"], "1 while the database is disabled (DISABLE), else 0.", only_when = "PgBouncer has databases");
static QUERIES: Desc = desc!(Counter "pgbouncer_stats_totals_queries_pooled", ["database"], "SQL queries pooled.", only_when = "PgBouncer has databases");
static XACTS: Desc = desc!(Counter "pgbouncer_stats_totals_sql_transactions_pooled", ["database"], "SQL transactions pooled.", only_when = "PgBouncer has databases");
static QUERY_TIME: Desc = desc!(Counter "pgbouncer_stats_totals_queries_duration", unit = Seconds, ["database"], "Time spent in queries.", only_when = "PgBouncer has databases");
static WAIT_TIME: Desc = desc!(Counter "pgbouncer_stats_totals_client_wait", unit = Seconds, ["database"], "Time clients waited for a server connection.", only_when = "PgBouncer has databases");
static XACT_TIME: Desc = desc!(Counter "pgbouncer_stats_totals_server_in_transaction", unit = Seconds, ["database"], "Time server connections spent in transactions.", only_when = "PgBouncer has databases");
static RECEIVED: Desc = desc!(Counter "pgbouncer_stats_totals_received", unit = Bytes, ["database"], "Bytes received from clients.", only_when = "PgBouncer has databases");
static SENT: Desc = desc!(Counter "pgbouncer_stats_totals_sent", unit = Bytes, ["database"], "Bytes sent to clients.", only_when = "PgBouncer has databases");
static CLIENT_PARSES: Desc = desc!(Counter "pgbouncer_stats_totals_client_parses", ["database"], "Prepared-statement Parse messages received from clients.", only_when = "PgBouncer is 1.21 or newer");
static SERVER_PARSES: Desc = desc!(Counter "pgbouncer_stats_totals_server_parses", ["database"], "Prepared-statement Parse messages sent to PostgreSQL.", only_when = "PgBouncer is 1.21 or newer");
static BINDS: Desc = desc!(Counter "pgbouncer_stats_totals_binds", ["database"], "Prepared statements readied for execution (Bind messages).", only_when = "PgBouncer is 1.21 or newer");
static ASSIGNMENTS: Desc = desc!(Counter "pgbouncer_stats_totals_server_assignments", ["database"], "Times a server connection was assigned to a client.", only_when = "PgBouncer is 1.23 or newer");
static MAX_CLIENT: Desc = desc!(Gauge "pgbouncer_config_max_client_connections", [], "The max_client_conn setting.", only_when = "PgBouncer answered");
static MAX_USER: Desc = desc!(Gauge "pgbouncer_config_max_user_connections", [], "The max_user_connections setting: server connections per user (0: unlimited).", only_when = "PgBouncer answered");
static VERSION: Desc = desc!(Info "pgbouncer_version", ["version"], "PgBouncer's version, as SHOW VERSION reports it.", only_when = "PgBouncer answered");
static LIST_DATABASES: Desc = desc!(Gauge "pgbouncer_databases", [], "Databases PgBouncer knows (SHOW LISTS).", only_when = "PgBouncer answered");
static LIST_USERS: Desc = desc!(Gauge "pgbouncer_users", [], "Users PgBouncer knows (SHOW LISTS).", only_when = "PgBouncer answered");
static LIST_POOLS: Desc =
    desc!(Gauge "pgbouncer_pools", [], "Pools (SHOW LISTS).", only_when = "PgBouncer answered");
static LIST_FREE_CLIENTS: Desc = desc!(Gauge "pgbouncer_free_clients", [], "Allocated, unused client slots (SHOW LISTS).", only_when = "PgBouncer answered");
static LIST_USED_CLIENTS: Desc = desc!(Gauge "pgbouncer_used_clients", [], "Client connections in use (SHOW LISTS).", only_when = "PgBouncer answered");
static LIST_LOGIN_CLIENTS: Desc = desc!(Gauge "pgbouncer_login_clients", [], "Client connections logging in (SHOW LISTS).", only_when = "PgBouncer answered");
static LIST_FREE_SERVERS: Desc = desc!(Gauge "pgbouncer_free_servers", [], "Allocated, unused server slots (SHOW LISTS).", only_when = "PgBouncer answered");
static LIST_USED_SERVERS: Desc = desc!(Gauge "pgbouncer_used_servers", [], "Server connections in use (SHOW LISTS).", only_when = "PgBouncer answered");
static LIST_DNS_NAMES: Desc = desc!(Gauge "pgbouncer_cached_dns_names", [], "Host names in PgBouncer's DNS cache (SHOW LISTS).", only_when = "PgBouncer answered");
static LIST_DNS_ZONES: Desc = desc!(Gauge "pgbouncer_cached_dns_zones", [], "DNS zones in PgBouncer's DNS cache (SHOW LISTS).", only_when = "PgBouncer answered");
static LIST_DNS_QUERIES: Desc = desc!(Gauge "pgbouncer_in_flight_dns_queries", [], "DNS lookups in flight (SHOW LISTS).", only_when = "PgBouncer answered");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &UP,
    &VERSION,
    &CL_ACTIVE,
    &CL_WAITING,
    &CL_ACTIVE_CANCEL,
    &CL_WAITING_CANCEL,
    &SV_ACTIVE,
    &SV_IDLE,
    &SV_USED,
    &SV_TESTED,
    &SV_LOGIN,
    &SV_ACTIVE_CANCEL,
    &SV_BEING_CANCELED,
    &MAXWAIT,
    &POOL_SIZE,
    &RESERVE_POOL,
    &CURRENT,
    &MAX_DB,
    &PAUSED,
    &DISABLED,
    &QUERIES,
    &XACTS,
    &QUERY_TIME,
    &WAIT_TIME,
    &XACT_TIME,
    &RECEIVED,
    &SENT,
    &CLIENT_PARSES,
    &SERVER_PARSES,
    &BINDS,
    &ASSIGNMENTS,
    &MAX_CLIENT,
    &MAX_USER,
    &LIST_DATABASES,
    &LIST_USERS,
    &LIST_POOLS,
    &LIST_FREE_CLIENTS,
    &LIST_USED_CLIENTS,
    &LIST_LOGIN_CLIENTS,
    &LIST_FREE_SERVERS,
    &LIST_USED_SERVERS,
    &LIST_DNS_NAMES,
    &LIST_DNS_ZONES,
    &LIST_DNS_QUERIES,
];

/// SHOW POOLS columns and the families they feed.
const POOL_GAUGES: [(&str, &Desc); 11] = [
    ("cl_active", &CL_ACTIVE),
    ("cl_waiting", &CL_WAITING),
    ("cl_active_cancel_req", &CL_ACTIVE_CANCEL),
    ("cl_waiting_cancel_req", &CL_WAITING_CANCEL),
    ("sv_active", &SV_ACTIVE),
    ("sv_idle", &SV_IDLE),
    ("sv_used", &SV_USED),
    ("sv_tested", &SV_TESTED),
    ("sv_login", &SV_LOGIN),
    ("sv_active_cancel", &SV_ACTIVE_CANCEL),
    ("sv_being_canceled", &SV_BEING_CANCELED),
];

/// SHOW DATABASES columns that label every `pgbouncer_databases_*` series,
/// in the order of those families' labels.
const DATABASE_LABELS: [&str; 6] = [
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_mode",
];

/// SHOW DATABASES columns and the families they feed. A family reads the
/// first of its columns a row has: PgBouncer 1.24 renamed `reserve_pool`.
const DATABASE_GAUGES: [(&[&str], &Desc); 6] = [
    (&["pool_size"], &POOL_SIZE),
    (&["reserve_pool", "reserve_pool_size"], &RESERVE_POOL),
    (&["current_connections"], &CURRENT),
    (&["max_connections"], &MAX_DB),
    (&["paused"], &PAUSED),
    (&["disabled"], &DISABLED),
];

/// SHOW STATS_TOTALS columns, the families they feed, and their scale
/// (times are in microseconds).
const TOTALS: [(&str, &Desc, f64); 11] = [
    ("query_count", &QUERIES, 1.0),
    ("xact_count", &XACTS, 1.0),
    ("query_time", &QUERY_TIME, 1e-6),
    ("wait_time", &WAIT_TIME, 1e-6),
    ("xact_time", &XACT_TIME, 1e-6),
    ("bytes_received", &RECEIVED, 1.0),
    ("bytes_sent", &SENT, 1.0),
    ("client_parse_count", &CLIENT_PARSES, 1.0),
    ("server_parse_count", &SERVER_PARSES, 1.0),
    ("bind_count", &BINDS, 1.0),
    ("server_assignment_count", &ASSIGNMENTS, 1.0),
];

/// SHOW CONFIG keys and the families they feed.
const CONFIG: [(&str, &Desc); 2] = [
    ("max_client_conn", &MAX_CLIENT),
    ("max_user_connections", &MAX_USER),
];

/// SHOW LISTS rows and the families they feed; other lists (peers, pending
/// DNS lookups) have no pgbouncer_exporter name and are left out.
const LISTS: [(&str, &Desc); 11] = [
    ("databases", &LIST_DATABASES),
    ("users", &LIST_USERS),
    ("pools", &LIST_POOLS),
    ("free_clients", &LIST_FREE_CLIENTS),
    ("used_clients", &LIST_USED_CLIENTS),
    ("login_clients", &LIST_LOGIN_CLIENTS),
    ("free_servers", &LIST_FREE_SERVERS),
    ("used_servers", &LIST_USED_SERVERS),
    ("dns_names", &LIST_DNS_NAMES),
    ("dns_zones", &LIST_DNS_ZONES),
    ("dns_queries", &LIST_DNS_QUERIES),
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
        let version = self.show("SHOW VERSION").await?;
        let pools = self.show("SHOW POOLS").await?;
        let databases = self.show("SHOW DATABASES").await?;
        let totals = self.show("SHOW STATS_TOTALS").await?;
        let config = self.show("SHOW CONFIG").await?;
        let lists = self.show("SHOW LISTS").await?;
        let mut families = Vec::new();
        let mut info = Family::new(&VERSION);
        for row in &version {
            info.push_info(&[text(row, "version")]);
        }
        families.push(info);
        families.extend(pool_families(&pools));
        for (columns, desc) in DATABASE_GAUGES {
            let mut f = Family::new(desc);
            for row in &databases {
                if let Some(v) = columns.iter().find_map(|c| number(row, c)) {
                    f.push(&DATABASE_LABELS.map(|l| text(row, l)), v);
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
        for (key, desc) in CONFIG {
            if let Some(v) = config
                .iter()
                .find(|r| text(r, "key") == key)
                .and_then(|r| number(r, "value"))
            {
                families.push(Family::single(desc, v));
            }
        }
        for (list, desc) in LISTS {
            if let Some(v) = lists
                .iter()
                .find(|r| text(r, "list") == list)
                .and_then(|r| number(r, "items"))
            {
                families.push(Family::single(desc, v));
            }
        }
        Ok(families)
    }
}

/// SHOW POOLS: one series per (database, user) in each family.
fn pool_families(pools: &[SimpleQueryRow]) -> Vec<Family> {
    let mut families = Vec::new();
    for (column, desc) in POOL_GAUGES {
        let mut f = Family::new(desc);
        for row in pools {
            if let Some(v) = number(row, column) {
                f.push(&[text(row, "database"), text(row, "user")], v);
            }
        }
        families.push(f);
    }
    let mut maxwait = Family::new(&MAXWAIT);
    for row in pools {
        let seconds =
            number(row, "maxwait").unwrap_or(0.0) + number(row, "maxwait_us").unwrap_or(0.0) / 1e6;
        maxwait.push(&[text(row, "database"), text(row, "user")], seconds);
    }
    families.push(maxwait);
    families
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
