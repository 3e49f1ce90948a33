//! Collectors: one file per view family, one shape for all.
//!
//! A collector is a small stateful type with an async
//! [`Collector::collect`] that reads PostgreSQL through the target's session
//! and returns metric [`Family`] values. It never knows about HTTP or the
//! schedule; `crate::schedule` runs it and stores what it returns. Each
//! file declares its metric descriptors in a `METRICS` table and the SQL
//! it sends in `OWN_SQL`; [`crate::registry`] declares every collector
//! once (name, families, SQL, constructor) from them.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_postgres::Client;

use crate::connection::caps::Capabilities;
use crate::connection::session::{ConnectError, describe};
use crate::metric::Family;
pub use crate::snapshot::{Collected, Detail};
use crate::sql::OwnStatements;

pub mod active_sessions;
pub mod amcheck;
pub(crate) mod archiver;
pub(crate) mod backup;
pub(crate) mod checkpoints;
pub(crate) mod connections;
pub(crate) mod database_size;
pub(crate) mod databases;
pub(crate) mod filesystem;
pub(crate) mod io;
pub(crate) mod logs;
pub(crate) mod pgbouncer;
pub(crate) mod process;
pub(crate) mod query;
pub mod redis;
pub(crate) mod replication;
pub mod schema;
pub(crate) mod server;
pub(crate) mod slots;
pub mod statements;
pub(crate) mod subscriptions;
pub mod tables;
pub mod vacuum;
pub(crate) mod wal;

/// What a collector may use during one run.
pub struct Context<'a> {
    /// The target's monitoring connection.
    pub client: &'a Client,
    /// What was detected about the server; collectors may update
    /// `in_recovery`.
    pub caps: &'a mut Capabilities,
    /// How to reach the target, for collectors that visit other databases.
    pub params: &'a crate::connection::dsn::ConnParams,
    /// The session limits, for such extra connections.
    pub limits: crate::connection::session::Limits,
    /// Which databases per-database collectors visit.
    pub databases: &'a crate::config::Databases,
    /// pgvigil's own statements: SQL built at run time is registered here
    /// before it is sent, so the statements collector can leave it out.
    pub own: &'a OwnStatements,
    /// What the target's collectors last stored, for a collector that
    /// holds back while the server is under pressure.
    pub store: &'a crate::snapshot::Store,
    /// The target's name in the store.
    pub target: &'a str,
}

impl Context<'_> {
    /// A session of its own to `datname`, for a collector that visits
    /// databases other than the target's. Failing to open it (no free slot,
    /// say) is [`CollectError::Visit`]: it says nothing about the target's
    /// session, which is not dropped or reset for it.
    pub async fn visit(
        &self,
        datname: &str,
    ) -> Result<crate::connection::session::Live, CollectError> {
        let mut params = self.params.clone();
        params.dbname = Some(datname.to_string());
        crate::connection::session::open(&params, self.limits)
            .await
            .map_err(|source| CollectError::Visit {
                datname: datname.to_string(),
                source,
            })
    }
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
    /// A Redis command failed or got no answer.
    #[error(transparent)]
    Redis(#[from] crate::connection::redis::CommandError),
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
            CollectError::Redis(e) => e.connection_lost(),
            CollectError::Timeout { .. }
            | CollectError::Visit { .. }
            | CollectError::Unavailable(_) => false,
        }
    }
}

/// A row of a named query: columns are read by name, and an error names
/// the query and the column.
pub struct Row {
    row: tokio_postgres::Row,
    what: &'static str,
}

impl Row {
    /// A row of the query `what` that was run another way (with an error
    /// mapping of its own).
    pub fn new(row: tokio_postgres::Row, what: &'static str) -> Row {
        Row { row, what }
    }

    /// The column `column`, as `T`.
    pub fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        &'a self,
        column: &'static str,
    ) -> Result<T, CollectError> {
        col(&self.row, self.what, column)
    }
}

type Params<'a> = &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)];

/// Runs `sql` (`what` says which query, in words, for errors) and returns
/// its rows.
pub async fn query(
    client: &Client,
    what: &'static str,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, CollectError> {
    let rows = client.query(sql, params).await.map_err(query_err(what))?;
    Ok(rows.into_iter().map(|row| Row { row, what }).collect())
}

/// Runs `sql`, which returns exactly one row.
pub async fn query_one(
    client: &Client,
    what: &'static str,
    sql: &str,
    params: Params<'_>,
) -> Result<Row, CollectError> {
    let row = client
        .query_one(sql, params)
        .await
        .map_err(query_err(what))?;
    Ok(Row { row, what })
}

/// Runs `sql`, which returns at most one row.
pub async fn query_opt(
    client: &Client,
    what: &'static str,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, CollectError> {
    let row = client
        .query_opt(sql, params)
        .await
        .map_err(query_err(what))?;
    Ok(row.map(|row| Row { row, what }))
}

/// Attaches the query name to a driver error.
fn query_err(what: &'static str) -> impl Fn(tokio_postgres::Error) -> CollectError {
    move |source| CollectError::Query { what, source }
}

/// Reads a column, naming it in the error.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
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
