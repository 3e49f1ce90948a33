//! The one connection of a `[[redis]]` target, shared by its collectors:
//! TCP or TLS (verified as for PostgreSQL, `connection/tls.rs`), AUTH with
//! the ACL user, a timeout on every command, reconnect with backoff.
//!
//! The `redis` crate speaks the protocol; this module only opens the
//! stream itself (so TLS is rustls with pgvigil's own verification) and
//! hands it over. The connection sends nothing of its own beyond AUTH:
//! no `CLIENT SETINFO`, no `SELECT` for database 0, so the ACL user needs
//! only what the collectors send (README "Redis").

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, RedisConnectionInfo};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::dsn::ConnParams;
use super::session::ConnectError;

/// Where a `[[redis]]` target is and how to log in (from its URL and
/// secrets, `config/redis.rs`).
#[derive(Clone, PartialEq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database number selected.
    pub db: i64,
    /// TLS settings (`rediss://`), in the terms of a PostgreSQL DSN so the
    /// same verification code applies; `None` for plain `redis://`.
    pub tls: Option<ConnParams>,
    /// The ACL user.
    pub username: Option<String>,
    /// The password; never logged.
    pub password: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr())
            .field("db", &self.db)
            .field("tls", &self.tls.is_some())
            .field("username", &self.username)
            .finish()
    }
}

impl Endpoint {
    /// `host:port`, for messages (never the password).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The server answered with an error, or the connection broke.
    #[error("{what}: {source}")]
    Failed {
        /// The command, in words (`INFO replication`).
        what: &'static str,
        /// The client's error (the server's message for a server error).
        source: redis::RedisError,
    },
    /// The server did not answer in time: it is single-threaded, so a
    /// command that takes this long means it is stuck or unreachable; the
    /// connection was dropped.
    #[error("{what}: no answer within {timeout:?}; the connection was dropped")]
    NoAnswer {
        /// The command.
        what: &'static str,
        /// The timeout.
        timeout: Duration,
    },
}

impl CommandError {
    /// Whether the connection is unusable afterwards.
    pub fn connection_lost(&self) -> bool {
        match self {
            CommandError::NoAnswer { .. } => true,
            CommandError::Failed { source, .. } => {
                source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
                    || source.is_timeout()
                    || source.is_unrecoverable_error()
            }
        }
    }
}

/// A live connection with the timeout every command gets.
pub struct Link {
    conn: MultiplexedConnection,
    timeout: Duration,
    /// The task driving the socket, aborted with the link.
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Link {
    /// Sends `cmd` (`what` names it for errors) and waits at most the
    /// timeout for its answer.
    pub async fn query<T: FromRedisValue>(
        &mut self,
        what: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, CommandError> {
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut self.conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(CommandError::Failed { what, source }),
            Err(_) => Err(CommandError::NoAnswer {
                what,
                timeout: self.timeout,
            }),
        }
    }
}

/// The connection state of one Redis target.
pub struct RedisSession {
    config: Arc<Endpoint>,
    timeout: Duration,
    link: Option<Link>,
    last_error: Option<ConnectError>,
    next_attempt: Option<Instant>,
    backoff: Duration,
}

impl RedisSession {
    /// A disconnected session; `timeout` bounds connecting and each command.
    pub fn new(config: Arc<Endpoint>, timeout: Duration) -> RedisSession {
        RedisSession {
            config,
            timeout,
            link: None,
            last_error: None,
            next_attempt: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// `host:port as user`, safe to log.
    pub fn addr(&self) -> String {
        match &self.config.username {
            Some(user) => format!("{} as {user}", self.config.addr()),
            None => self.config.addr(),
        }
    }

    /// The live link, connecting first if needed (not before the backoff
    /// after a failed attempt has passed).
    pub async fn connect(&mut self) -> Result<&mut Link, ConnectError> {
        if self.link.is_none() {
            if let (Some(at), Some(last)) = (self.next_attempt, &self.last_error) {
                let now = Instant::now();
                if now < at {
                    return Err(ConnectError::Backoff {
                        last: Box::new(last.clone()),
                        retry_in: at - now,
                    });
                }
            }
            match tokio::time::timeout(self.timeout, self.open()).await {
                Ok(Ok(link)) => {
                    if self.last_error.take().is_some() {
                        tracing::info!(addr = %self.addr(), "reconnected to Redis");
                    }
                    self.next_attempt = None;
                    self.backoff = FIRST_BACKOFF;
                    self.link = Some(link);
                }
                result => {
                    let e = match result {
                        Ok(Err(e)) => e,
                        _ => ConnectError::Failed {
                            addr: self.addr(),
                            reason: format!("no answer within {:?}", self.timeout),
                        },
                    };
                    self.next_attempt = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    self.last_error = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(self.link.as_mut().expect("connected above"))
    }

    /// Drops the link after an error that left it unusable.
    pub fn reset(&mut self, reason: &str) {
        if self.link.take().is_some() {
            tracing::warn!(addr = %self.addr(), reason, "Redis connection lost");
            self.last_error = Some(ConnectError::Failed {
                addr: self.addr(),
                reason: reason.to_string(),
            });
        }
    }

    async fn open(&self) -> Result<Link, ConnectError> {
        let c = &self.config;
        let failed = |reason: String| ConnectError::Failed {
            addr: self.addr(),
            reason,
        };
        let tcp = TcpStream::connect((c.host.as_str(), c.port))
            .await
            .map_err(|e| failed(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut info = RedisConnectionInfo::default()
            .set_skip_set_lib_name()
            .set_db(c.db);
        if let Some(user) = &c.username {
            info = info.set_username(user);
        }
        if let Some(password) = &c.password {
            info = info.set_password(password);
        }
        // Each stream type gives the driving future a type of its own:
        // spawn it in its arm.
        let (conn, driver) = match &c.tls {
            None => {
                let (conn, driver) =
                    MultiplexedConnection::new_with_config(&info, tcp, driver_config())
                        .await
                        .map_err(|e| failed(e.to_string()))?;
                (conn, tokio::spawn(driver))
            }
            Some(params) => {
                let tls =
                    super::tls::redis_client_config(params).map_err(|e| ConnectError::Tls {
                        addr: self.addr(),
                        reason: e.to_string(),
                    })?;
                let name = rustls::pki_types::ServerName::try_from(c.host.clone())
                    .map_err(|e| failed(format!("TLS server name: {e}")))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| failed(format!("TLS handshake: {e}")))?;
                let (conn, driver) =
                    MultiplexedConnection::new_with_config(&info, stream, driver_config())
                        .await
                        .map_err(|e| failed(e.to_string()))?;
                (conn, tokio::spawn(driver))
            }
        };
        Ok(Link {
            conn,
            timeout: self.timeout,
            driver,
        })
    }
}

/// The crate's own response timeout (500 ms by default) would call a slow
/// but alive server down; `Link::query`'s timeout, `collectors.timeout`,
/// is the one that applies.
fn driver_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::default()
        .set_response_timeout(None)
        .set_connection_timeout(None)
}
