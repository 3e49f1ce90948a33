//! One monitoring connection to a target, rebuilt when it breaks.
//!
//! A [`Session`] owns at most one PostgreSQL connection. It connects lazily,
//! sets the session limits every agent connection must have (`statement_timeout`,
//! `lock_timeout`, `application_name = 'pgvigil'`), and
//! after a failure waits a capped, doubling backoff before trying again so a
//! down server is not hammered.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::caps::{Capabilities, ServerIdentity};
use super::dsn::ConnParams;
use super::tls;

/// Session limits applied right after connecting.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `statement_timeout`.
    pub statement_timeout: Duration,
    /// `lock_timeout`.
    pub lock_timeout: Duration,
    /// Tune the session for monitoring queries (`jit = off`, a larger
    /// `work_mem`). Off for the explain session: its plans must be the
    /// ones the application gets with the server's own settings.
    pub monitoring: bool,
}

/// Why a connection could not be (re)established. Displays as one line
/// naming the address and role, never the password.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// TLS could not be configured from the sslmode and certificate files.
    #[error("could not connect to {addr}: {reason}")]
    Tls {
        /// `host:port as user`.
        addr: String,
        /// The TLS setup problem.
        reason: String,
    },
    /// The server refused or could not be reached.
    #[error("could not connect to {addr}: {reason}")]
    Failed {
        /// `host:port as user`.
        addr: String,
        /// What went wrong, one line.
        reason: String,
    },
    /// A recent attempt failed and the backoff has not elapsed.
    #[error("{last} (next attempt in {}s)", retry_in.as_secs().max(1))]
    Backoff {
        /// The last attempt's error.
        last: Box<ConnectError>,
        /// Time until the next attempt.
        retry_in: Duration,
    },
}

/// A live connection and what was detected on it.
#[derive(Debug)]
pub struct Live {
    /// The client.
    pub client: Client,
    /// Capabilities detected at connect time.
    pub caps: Capabilities,
    _driver: Driver,
}

/// The task driving a connection's socket, aborted when dropped: a
/// connection abandoned half-way (a connect attempt that timed out) must
/// not leave its task and socket behind.
#[derive(Debug)]
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The connection state of one target.
pub struct Session {
    params: Arc<ConnParams>,
    limits: Limits,
    live: Option<Live>,
    last_error: Option<ConnectError>,
    next_attempt: Option<Instant>,
    backoff: Duration,
    /// The server the last connection reached.
    identity: Option<ServerIdentity>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("addr", &self.params.endpoint())
            .field("connected", &self.live.is_some())
            .finish()
    }
}

/// Turns a driver error into one readable line: the server's message for
/// database errors, the I/O cause otherwise.
pub fn describe(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return db.message().to_string();
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

impl Session {
    /// A disconnected session.
    pub fn new(params: Arc<ConnParams>, limits: Limits) -> Session {
        Session {
            params,
            limits,
            live: None,
            last_error: None,
            next_attempt: None,
            backoff: FIRST_BACKOFF,
            identity: None,
        }
    }

    /// The limits every connection of this session gets.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// `host:port as user`, safe to log.
    pub fn addr(&self) -> String {
        self.params.endpoint()
    }

    /// The live connection, connecting first if needed.
    pub async fn connect(&mut self) -> Result<&mut Live, ConnectError> {
        if self.live.as_ref().is_some_and(|l| l.client.is_closed()) {
            self.live = None;
        }
        if self.live.is_none() {
            if let (Some(at), Some(last)) = (self.next_attempt, &self.last_error) {
                let now = Instant::now();
                if now < at {
                    return Err(ConnectError::Backoff {
                        last: Box::new(last.clone()),
                        retry_in: at - now,
                    });
                }
            }
            match open(&self.params, self.limits).await {
                Ok(live) => {
                    if self.last_error.take().is_some() {
                        tracing::info!(addr = %self.addr(), "reconnected");
                    }
                    self.next_attempt = None;
                    self.backoff = FIRST_BACKOFF;
                    let identity = live.caps.identity;
                    if let Some(before) = self.identity.replace(identity)
                        && before != identity
                    {
                        // Collectors start over (see SessionJob::for_server).
                        if before.system_identifier != identity.system_identifier {
                            tracing::warn!(addr = %self.addr(), before = before.system_identifier, now = identity.system_identifier,
                                "another server answers at this address (its system identifier changed): readings start over");
                        } else {
                            tracing::info!(addr = %self.addr(), "the server restarted: readings start over");
                        }
                    }
                    self.live = Some(live);
                }
                Err(e) => {
                    self.next_attempt = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    self.last_error = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(self.live.as_mut().expect("connected above"))
    }

    /// Drops the connection after an error that left it unusable; the next
    /// [`Session::connect`] opens a new one.
    pub fn reset(&mut self, reason: &str) {
        if self.live.take().is_some() {
            tracing::warn!(addr = %self.addr(), reason, "connection lost");
            self.last_error = Some(ConnectError::Failed {
                addr: self.addr(),
                reason: reason.to_string(),
            });
        }
    }

    /// Asks the server to cancel whatever the live connection is running.
    /// True when the request was delivered within two seconds.
    pub async fn cancel_query(&mut self) -> bool {
        let Some(live) = &self.live else { return false };
        let Ok(connector) = tls::make_connector(&self.params) else {
            return false;
        };
        let token = live.client.cancel_token();
        tokio::time::timeout(Duration::from_secs(2), token.cancel_query(connector))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether the live connection answers an empty query within
    /// `within`. After a cancel request this tells a cancelled slow query
    /// (the connection answers at once) from a server or network that has
    /// stopped answering: a cancel request is only written to a new
    /// socket, so its delivery proves nothing.
    pub async fn answers(&mut self, within: Duration) -> bool {
        let Some(live) = &self.live else { return false };
        tokio::time::timeout(within, live.client.batch_execute(""))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// A connection to a PgBouncer admin console: no session settings, no
/// capability detection, simple queries only.
#[derive(Debug)]
pub struct Console {
    /// The client.
    pub client: Client,
    _driver: Driver,
}

/// Bounds a whole connection establishment by the connect timeout.
///
/// tokio-postgres applies `connect_timeout` to the TCP (or Unix socket)
/// connect only; libpq applies it to everything up to a usable session.
/// A server or network that accepts the socket and then says nothing (a
/// stalled link, a hung host, a backend stuck in authentication) would
/// otherwise hold the target's session, and every collector queued
/// behind it, for as long as it stays silent.
async fn within_connect_timeout<T>(
    params: &ConnParams,
    attempt: impl std::future::Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    let limit = params.to_tokio_config().get_connect_timeout().copied();
    let Some(limit) = limit else {
        return attempt.await;
    };
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::Failed {
                addr: params.endpoint(),
                reason: format!(
                    "the server did not complete the connection within connect_timeout ({}s)",
                    limit.as_secs_f64()
                ),
            })
        })
}

/// Connects (TLS per sslmode) and spawns the connection's driver.
async fn connect(params: &ConnParams) -> Result<(Client, Driver), ConnectError> {
    let addr = params.endpoint();
    let connector: MakeRustlsConnect =
        tls::make_connector(params).map_err(|e| ConnectError::Tls {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    let (client, connection) = params
        .to_tokio_config()
        .connect(connector)
        .await
        .map_err(|e| ConnectError::Failed {
            addr: addr.clone(),
            reason: describe(&e),
        })?;
    let driver = Driver(tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(addr = %addr, error = %describe(&e), "connection ended");
        }
    }));
    Ok((client, driver))
}

/// Opens a PgBouncer admin console connection.
pub async fn open_console(params: &ConnParams) -> Result<Console, ConnectError> {
    let (client, driver) = within_connect_timeout(params, connect(params)).await?;
    Ok(Console {
        client,
        _driver: driver,
    })
}

/// Opens a connection, applies the session limits and detects
/// capabilities, all within the connect timeout.
pub async fn open(params: &ConnParams, limits: Limits) -> Result<Live, ConnectError> {
    within_connect_timeout(params, open_unbounded(params, limits)).await
}

async fn open_unbounded(params: &ConnParams, limits: Limits) -> Result<Live, ConnectError> {
    let addr = params.endpoint();
    let failed = |e: tokio_postgres::Error| ConnectError::Failed {
        addr: addr.clone(),
        reason: describe(&e),
    };
    let (client, driver) = connect(params).await?;
    // Keep in step with OWN_SQL below. work_mem: pg_stat_statements()
    // materialises every entry; with 10,000 entries that is over the 4 MB
    // default, and the server would write a temporary file (and count it
    // in pg_database_temp_bytes) on every cycle.
    let mut setup = format!(
        "SET statement_timeout = {}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {}",
        limits.statement_timeout.as_millis(),
        limits.lock_timeout.as_millis(),
        limits.statement_timeout.as_millis()
    );
    if limits.monitoring {
        setup.push_str("; SET jit = off; SET work_mem = '32MB'");
    }
    client.batch_execute(&setup).await.map_err(failed)?;
    let mut caps = Capabilities::detect(&client).await.map_err(failed)?;
    caps.colocated = caps
        .data_directory
        .as_deref()
        .is_some_and(|dir| super::colocation::beside(dir, caps.identity, caps.backend_pid));
    tracing::debug!(addr = %addr, version = %caps.server_version, in_recovery = caps.in_recovery, "connected");
    Ok(Live {
        client,
        caps,
        _driver: driver,
    })
}

/// The session setup as pgvigil sends it (values vary; fingerprints ignore
/// them), for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[
    "SET statement_timeout = 10000; SET lock_timeout = 1000; SET idle_in_transaction_session_timeout = 10000; SET jit = off; SET work_mem = '32MB'",
];
