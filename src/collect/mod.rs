//! Collectors: one file per view family, one shape for all.
//!
//! A collector is a small stateful type with a name and an async
//! [`Collector::collect`] that reads PostgreSQL through the target's session
//! and returns metric [`Family`] values. It never knows about HTTP or the
//! schedule; [`crate::schedule`] runs it and stores what it returns. Each
//! file declares its metric descriptors in a `METRICS` table, from which
//! `docs/metrics.md` is generated.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_postgres::Client;

use crate::config::Config;
use crate::metric::{Desc, Family};
pub use crate::snapshot::{Collected, Detail};
use crate::target::caps::{Capabilities, ServerIdentity};
use crate::target::session::{ConnectError, describe};

pub mod archiver;
pub mod backup;
pub mod checkpoints;
pub mod connections;
pub mod database_size;
pub mod databases;
pub mod filesystem;
pub mod logs;
pub mod pgbouncer;
pub mod process;
pub mod replication;
pub mod server;
pub mod slots;
pub mod statements;
pub mod tables;
pub mod wal;

/// What a collector may use during one run.
pub struct Context<'a> {
    /// The target's monitoring connection.
    pub client: &'a Client,
    /// What was detected about the server; collectors may update
    /// `in_recovery`.
    pub caps: &'a mut Capabilities,
    /// How to reach the target, for collectors that visit other databases.
    pub params: &'a crate::target::dsn::ConnParams,
    /// The session limits, for such extra connections.
    pub limits: crate::target::session::Limits,
    /// Which databases per-database collectors visit.
    pub databases: &'a crate::config::Databases,
}

/// Why a collector run failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The server could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A query failed.
    #[error("{what}: {}", describe(source))]
    Query {
        /// Which query, in words ("pg_stat_activity").
        what: &'static str,
        /// The driver error.
        source: tokio_postgres::Error,
    },
    /// A column had an unexpected type or was missing.
    #[error("{what}: column {column}: {}", describe(source))]
    Column {
        /// Which query.
        what: &'static str,
        /// The column.
        column: &'static str,
        /// The driver error.
        source: tokio_postgres::Error,
    },
    /// The run exceeded its time budget and was cancelled.
    #[error("did not finish within its {budget:?} budget; the query was cancelled")]
    Timeout {
        /// The budget.
        budget: std::time::Duration,
    },
    /// The run exceeded its time budget and the connection did not answer
    /// after a cancel request either: the server or the network has
    /// stopped answering, and the connection was dropped.
    #[error(
        "no answer within its {budget:?} budget, nor after a cancel request; the connection was dropped"
    )]
    Unresponsive {
        /// The budget.
        budget: std::time::Duration,
    },
    /// A connection of the collector's own, to another database, could
    /// not be opened (no free slot, no CONNECT privilege). The target's
    /// session is not affected and stays.
    #[error("database {datname}: {source}")]
    Visit {
        /// The database it tried to visit.
        datname: String,
        /// Why it could not connect.
        source: ConnectError,
    },
    /// Something the collector needs is not there (an extension, a
    /// privilege); it says what to do.
    #[error("{0}")]
    Unavailable(String),
}

impl CollectError {
    /// Whether the connection is unusable afterwards and must be rebuilt.
    pub fn connection_lost(&self) -> bool {
        match self {
            CollectError::Connect(_) | CollectError::Unresponsive { .. } => true,
            CollectError::Query { source, .. } | CollectError::Column { source, .. } => {
                if source.is_closed() {
                    return true;
                }
                // 57P01..57P05 (admin/crash shutdown, cannot connect now,
                // idle session timeout) and class 08 (connection exception).
                match source.code() {
                    Some(code) => {
                        let code = code.code();
                        code.starts_with("08") || (code.starts_with("57P") && code != "57P04")
                    }
                    // No SQLSTATE: the error came from the socket, not the server.
                    None => source.as_db_error().is_none(),
                }
            }
            CollectError::Timeout { .. }
            | CollectError::Visit { .. }
            | CollectError::Unavailable(_) => false,
        }
    }
}

/// Attaches the query name to a driver error.
pub fn query_err(what: &'static str) -> impl Fn(tokio_postgres::Error) -> CollectError {
    move |source| CollectError::Query { what, source }
}

/// Reads a column, naming it in the error.
pub fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    what: &'static str,
    column: &'static str,
) -> Result<T, CollectError> {
    row.try_get(column).map_err(|source| CollectError::Column {
        what,
        column,
        source,
    })
}

/// One family of views, collected on its own schedule.
#[async_trait]
pub trait Collector: Send + Sync {
    /// The `collector` label value and config key.
    fn name(&self) -> &'static str;

    /// Whether a single run says little because the collector reports
    /// changes between runs; `pgvigil once` then runs it twice.
    fn wants_two_samples(&self) -> bool {
        false
    }

    /// Reads the server and returns this cycle's families.
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError>;
}

/// A collector that does not read the target's PostgreSQL session: it
/// runs a command or keeps a connection of its own (pgBackRest, PgBouncer),
/// so it keeps reporting when PostgreSQL is unreachable and never affects
/// `pg_up`.
#[async_trait]
pub trait Standalone: Send + Sync {
    /// The `collector` label value.
    fn name(&self) -> &'static str;

    /// Reads its source and returns this cycle's families.
    async fn collect(&mut self) -> Result<Collected, CollectError>;

    /// Families to publish when a run fails (an `up` gauge at 0).
    fn on_failure(&self) -> Vec<Family> {
        Vec::new()
    }

    /// A label all of its series carry, such as which PgBouncer.
    fn label(&self) -> Option<(&'static str, Arc<str>)> {
        None
    }
}

/// Builds a collector with no history.
pub type MakeCollector = Box<dyn Fn() -> Box<dyn Collector> + Send + Sync>;

/// A collector that reads through the target's session, with what it
/// needs to start over when the server behind the target changes.
pub struct SessionJob {
    /// The collector and its history (previous readings, top-N membership).
    pub collector: Box<dyn Collector>,
    /// How to build it afresh.
    make: MakeCollector,
    /// The server its history comes from, once it has run.
    server: Option<ServerIdentity>,
}

impl SessionJob {
    /// A job for the collector `make` builds.
    pub fn new(make: MakeCollector) -> SessionJob {
        SessionJob {
            collector: make(),
            make,
            server: None,
        }
    }

    /// The collector, fresh if its history comes from another server than
    /// `server`: after a failover behind a VIP or a DNS name, or a restart
    /// (statistics may have been lost in crash recovery), no reading of
    /// the old server may be compared with the new one's.
    pub fn for_server(&mut self, server: ServerIdentity) -> &mut dyn Collector {
        if self.server.is_some_and(|s| s != server) {
            tracing::debug!(
                collector = self.collector.name(),
                "server changed: collector history dropped"
            );
            self.collector = (self.make)();
        }
        self.server = Some(server);
        self.collector.as_mut()
    }
}

/// Something the schedule runs.
pub enum Job {
    /// Reads through the target's monitoring session.
    Session(SessionJob),
    /// Reads something else.
    Standalone(Box<dyn Standalone>),
}

impl Job {
    /// The `collector` label value.
    pub fn name(&self) -> &'static str {
        match self {
            Job::Session(j) => j.collector.name(),
            Job::Standalone(c) => c.name(),
        }
    }

    /// Whether `pgvigil once` should run it twice.
    pub fn wants_two_samples(&self) -> bool {
        matches!(self, Job::Session(j) if j.collector.wants_two_samples())
    }
}

/// A job and how often it runs.
pub struct Scheduled {
    /// What runs.
    pub job: Job,
    /// Its interval.
    pub interval: std::time::Duration,
}

/// The enabled collectors of one target, per the config. `feed` is where
/// the logs collector hands slow executions and plans to the EXPLAIN
/// worker (present when the target has `[target.logs]`).
pub fn for_target(
    config: &Config,
    target: &crate::config::Target,
    feed: Option<Arc<crate::logs::feed::LogFeed>>,
    reports: Option<Arc<statements::ReportSender>>,
) -> Vec<Scheduled> {
    let c = &config.collectors;
    // The log is read by the logs collector and, at the end of each
    // interval, by the statements collector (exact tail quantiles).
    let reader = match (&target.logs, feed, c.logs) {
        (Some(logs), Some(feed), Some(_)) => Some(Arc::new(std::sync::Mutex::new(
            logs::LogReader::new(logs.clone(), feed),
        ))),
        _ => None,
    };
    fn make<C: Collector + 'static>(f: impl Fn() -> C + Send + Sync + 'static) -> MakeCollector {
        Box::new(move || Box::new(f()))
    }
    let mut all: Vec<(Option<std::time::Duration>, MakeCollector)> = vec![
        (c.server, make(|| server::Server)),
        (c.connections, make(|| connections::Connections)),
        (c.databases, make(|| databases::Databases)),
        (c.database_size, make(|| database_size::DatabaseSize)),
        (c.replication, make(replication::Replication::default)),
        (c.slots, make(|| slots::Slots)),
        (c.wal, make(|| wal::Wal)),
        (c.checkpoints, make(|| checkpoints::Checkpoints)),
        (c.archiver, make(|| archiver::Archiver)),
        (c.filesystem, make(|| filesystem::Filesystem)),
        (c.tables, make(tables::Tables::default)),
    ];
    // Before statements: a cycle then reads the log before the statements
    // sample, so the next interval is covered from its start.
    if let Some(reader) = &reader {
        let reader = reader.clone();
        all.push((c.logs, make(move || logs::Logs::new(reader.clone()))));
    }
    let settings = c.statements.clone();
    all.push((
        c.statements.interval,
        make(move || {
            statements::Statements::new(settings.clone())
                .with_log(reader.clone())
                .with_reports(reports.clone())
        }),
    ));
    let mut jobs: Vec<Scheduled> = all
        .into_iter()
        .filter_map(|(interval, make)| {
            interval.map(|interval| Scheduled {
                job: Job::Session(SessionJob::new(make)),
                interval,
            })
        })
        .collect();
    for pgbouncer in target.pgbouncers.iter().filter(|_| c.pgbouncer.is_some()) {
        let collector = pgbouncer::Pgbouncer::new(pgbouncer.clone());
        let interval = c.pgbouncer.unwrap_or_default();
        jobs.push(Scheduled {
            job: Job::Standalone(Box::new(collector)),
            interval,
        });
    }
    if let Some(backup) = &target.backup {
        jobs.push(Scheduled {
            job: Job::Standalone(Box::new(backup::Backup::new(backup.clone()))),
            interval: backup.interval,
        });
    }
    jobs
}

/// Every metric family pgvigil can publish, grouped by collector, for the
/// metrics reference.
pub fn catalog() -> Vec<(&'static str, &'static [&'static Desc])> {
    vec![
        ("agent", crate::snapshot::HEALTH_METRICS),
        ("process", process::METRICS),
        ("server", server::METRICS),
        ("connections", connections::METRICS),
        ("databases", databases::METRICS),
        ("database_size", database_size::METRICS),
        ("replication", replication::METRICS),
        ("slots", slots::METRICS),
        ("wal", wal::METRICS),
        ("checkpoints", checkpoints::METRICS),
        ("archiver", archiver::METRICS),
        ("filesystem", filesystem::METRICS),
        ("tables", tables::METRICS),
        ("backup", backup::METRICS),
        ("pgbouncer", pgbouncer::METRICS),
        ("logs", logs::METRICS),
        ("statements", statements::METRICS),
        ("explain", crate::explain::worker::METRICS),
    ]
}

/// Every SQL text pgvigil sends, so its own entries in pg_stat_statements
/// can be recognised (see [`crate::sql::is_own`]).
pub fn own_queries() -> Vec<&'static str> {
    [
        crate::target::caps::OWN_SQL,
        crate::target::session::OWN_SQL,
        server::OWN_SQL,
        connections::OWN_SQL,
        databases::OWN_SQL,
        database_size::OWN_SQL,
        replication::OWN_SQL,
        slots::OWN_SQL,
        wal::OWN_SQL,
        checkpoints::OWN_SQL,
        archiver::OWN_SQL,
        filesystem::OWN_SQL,
        tables::OWN_SQL,
        logs::OWN_SQL,
        statements::OWN_SQL,
        crate::explain::runner::OWN_SQL,
        crate::explain::worker::OWN_SQL,
    ]
    .concat()
}
