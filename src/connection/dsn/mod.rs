//! Connection parameters in libpq's formats, assembled into one
//! [`ConnParams`]: the DSN first, then libpq's environment, the password
//! file and libpq's compiled-in defaults, as psql would.
//!
//! # Layout
//!
//! - `lexer.rs`: the `key = value` form, as tokens.
//! - `uri.rs`: the `postgresql://` form.
//! - `env.rs`: the `PG*` environment variables.
//! - `pgpass.rs`: the password file.
//! - `driver.rs`: the keys tokio-postgres parses itself, and the finished
//!   `tokio_postgres::Config`.
//! - `error.rs`: [`DsnError`].
//!
//! This file decides where each key goes (`ConnParams::set`).
//!
//! # Which keys are ours
//!
//! `tokio_postgres::Config::from_str` rejects whole DSNs that monitoring
//! users routinely write (`sslmode=verify-full`, `sslrootcert=…`), so the
//! DSN is split here. Keys the driver reads as libpq does go to its parser
//! one by one ([`DriverParams`]): `hostaddr`, `connect_timeout`,
//! `keepalives_idle`, `keepalives_interval`, `options`,
//! `target_session_attrs`, `channel_binding`, `load_balance_hosts`. The rest
//! are ours, each for a reason:
//!
//! - `host`, `port`, `user`, `password`, `dbname`: pgvigil reads them (the
//!   password file, error messages, defaults, TLS over sockets), and the
//!   driver reads them differently from libpq: an empty value or list entry
//!   is a real empty string to it, "unset" to libpq; it accepts port 0.
//! - `sslmode`, `sslrootcert`, `sslcert`, `sslkey`: the driver knows only
//!   `disable`, `prefer` and `require` and has no certificate settings;
//!   pgvigil builds the TLS setup itself (`target/tls.rs`).
//! - `passfile`: the driver has no password file.
//! - `tcp_user_timeout`: the driver reads seconds; libpq's unit is
//!   milliseconds.
//! - `keepalives`, `keepalives_count`: the driver rejects negative values,
//!   which libpq reads as "on" and "system default", and it hands a count
//!   of 0 to the kernel, which refuses it (so the connection fails) where
//!   libpq keeps the system default.
//! - `service`: rejected, there is no service file support.
//! - `sslnegotiation` (which the driver parses) stays unknown: `direct`
//!   needs ALPN, which the rustls connector does not offer.
//! - Accepted and ignored: `IGNORED_KEYS`.
//!
//! Nothing in this module ever puts the password, or the whole connection
//! string (which may contain it), into an error message or a `Debug` dump.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

mod driver;
mod env;
mod error;
mod lexer;
mod pgpass;
mod uri;

#[cfg(test)]
mod tests;

pub use driver::DriverParams;
pub use error::DsnError;

use error::{invalid_value, unsupported};

/// libpq's compiled-in default port.
const DEFAULT_PORT: u16 = 5432;

/// The Debian/Red Hat socket directory, preferred when it exists.
const DISTRO_SOCKET_DIR: &str = "/var/run/postgresql";

/// libpq keys we accept but deliberately do not act on.
const IGNORED_KEYS: &[&str] = &[
    // pgvigil always reports its own application_name.
    "application_name",
    "fallback_application_name",
    // tokio-postgres always speaks UTF-8.
    "client_encoding",
    // GSSAPI/Kerberos are not supported by tokio-postgres.
    "gssencmode",
    "krbsrvname",
    // Compression is disabled in every modern TLS stack anyway.
    "sslcompression",
    // Accepted for DSN compatibility, but revocation lists are NOT checked.
    "sslcrl",
    "requirepeer",
];

/// libpq's `sslmode` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// libpq tries plaintext first and TLS second; tokio-postgres cannot, so
    /// this behaves like [`SslMode::Prefer`].
    Allow,
    /// Use TLS if the server offers it, without verifying its certificate
    /// (libpq's default).
    #[default]
    Prefer,
    /// Insist on TLS, without verifying the server certificate.
    Require,
    /// Insist on TLS and verify the certificate chain, but not the host name.
    VerifyCa,
    /// Insist on TLS, verify the chain and that the certificate names the host.
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The libpq spelling of this mode, e.g. `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = DsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| invalid_value("sslmode", s, SSLMODE_EXPECTED))
    }
}

const SSLMODE_EXPECTED: &str = "disable, allow, prefer, require, verify-ca or verify-full";

/// One entry of libpq's `host` list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name or IP address reached over TCP.
    Tcp(String),
    /// A directory holding the server's Unix-domain socket.
    Unix(PathBuf),
}

impl Host {
    /// libpq's rule: a host starting with a slash is a socket directory.
    fn from_libpq(text: &str) -> Host {
        if text.starts_with('/') {
            Host::Unix(PathBuf::from(text))
        } else {
            Host::Tcp(text.to_owned())
        }
    }
}

impl fmt::Display for Host {
    /// Renders the host for logs: IPv6 addresses in brackets (so a following
    /// `:port` stays unambiguous), sockets as `unix:/dir`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp(name) if name.contains(':') => write!(f, "[{name}]"),
            Host::Tcp(name) => f.write_str(name),
            Host::Unix(dir) => write!(f, "unix:{}", dir.display()),
        }
    }
}

/// libpq connection parameters, as far as pgvigil can honour them.
///
/// `Debug` is implemented by hand so that the password never reaches a log.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnParams {
    /// Hosts to try in order; empty when not given.
    pub hosts: Vec<Host>,
    /// Empty when not given; one port applies to every host, otherwise there
    /// is one port per host.
    pub ports: Vec<u16>,
    /// Role to connect as.
    pub user: Option<String>,
    /// Password; never logged.
    pub password: Option<String>,
    /// Database to connect to.
    pub dbname: Option<String>,
    /// Requested TLS mode; `None` means libpq's default, `prefer`.
    pub sslmode: Option<SslMode>,
    /// PEM file of trusted root certificates, or `system` for the OS store.
    pub sslrootcert: Option<String>,
    /// PEM client certificate (chain).
    pub sslcert: Option<PathBuf>,
    /// PEM private key for `sslcert`.
    pub sslkey: Option<PathBuf>,
    /// Password file to use instead of `~/.pgpass`.
    pub passfile: Option<PathBuf>,
    /// How long sent data may stay unacknowledged before the connection is
    /// dropped; zero means the system default, like libpq.
    pub tcp_user_timeout: Option<Duration>,
    /// Whether TCP keepalives are enabled.
    pub keepalives: Option<bool>,
    /// Unanswered keepalive probes before the connection is dropped; zero
    /// means the system default, like libpq.
    pub keepalives_count: Option<u32>,
    /// The keys tokio-postgres parses itself (`connect_timeout`,
    /// `target_session_attrs`, …).
    pub driver: DriverParams,
}

impl fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnParams")
            .field("hosts", &self.hosts)
            .field("ports", &self.ports)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field("passfile", &self.passfile)
            .field("tcp_user_timeout", &self.tcp_user_timeout)
            .field("keepalives", &self.keepalives)
            .field("keepalives_count", &self.keepalives_count)
            .field("driver", &self.driver)
            .finish()
    }
}

impl ConnParams {
    /// Parses a libpq connection string, either a `postgresql://` /
    /// `postgres://` URI or `key=value` pairs. The empty string yields
    /// all-unset parameters.
    pub fn parse(dsn: &str) -> Result<ConnParams, DsnError> {
        let mut params = ConnParams::default();
        match uri::body(dsn) {
            Some(body) => params.apply_uri(body)?,
            None => {
                let mut lexer = lexer::Lexer::new(dsn);
                while let Some((key, value)) = lexer.next_pair()? {
                    params.set(&key, &value)?;
                }
            }
        }
        params.check_consistency()?;
        Ok(params)
    }

    /// Applies libpq's compiled-in defaults to what is still unset: the local
    /// socket directory, port 5432, `os_user` as the role and the role name as
    /// the database. `sslmode` stays unset, which means `prefer`.
    pub fn fill_defaults(&mut self, os_user: Option<String>) {
        self.fill_defaults_with(os_user, Path::is_dir);
    }

    fn fill_defaults_with(&mut self, os_user: Option<String>, is_dir: impl Fn(&Path) -> bool) {
        // With hostaddr alone libpq connects there, not to a socket.
        if self.hosts.is_empty() && self.driver.hostaddrs().is_empty() {
            self.hosts.push(Host::Unix(default_socket_dir(is_dir)));
        }
        if self.ports.is_empty() {
            self.ports.push(DEFAULT_PORT);
        }
        if self.user.is_none() {
            self.user = os_user;
        }
        if self.dbname.is_none() {
            self.dbname = self.user.clone();
        }
    }

    /// The TLS mode libpq would actually apply.
    ///
    /// `require` plus a root certificate behaves as `verify-ca` (libpq's
    /// backwards-compatible rule), and `sslrootcert=system` defaults to
    /// `verify-full` (PG16+).
    pub fn effective_sslmode(&self) -> SslMode {
        match (self.sslmode, self.sslrootcert.as_deref()) {
            (Some(SslMode::Require), Some(_)) => SslMode::VerifyCa,
            (Some(mode), _) => mode,
            (None, Some("system")) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        }
    }

    /// A loggable `user@host:port/dbname` summary (first host only, with the
    /// number of further hosts); it never contains the password.
    pub fn redacted(&self) -> String {
        let mut out = String::new();
        if let Some(user) = &self.user {
            let _ = write!(out, "{user}@");
        }
        out.push_str(&self.first_host_port());
        if let Some(dbname) = &self.dbname {
            let _ = write!(out, "/{dbname}");
        }
        out.push_str(&self.more_hosts());
        out
    }

    /// `host:port as user` (first host; `+N more hosts` when several), the
    /// form error messages use. Never the password.
    pub fn endpoint(&self) -> String {
        let mut out = self.first_host_port();
        out.push_str(&self.more_hosts());
        if let Some(user) = &self.user {
            let _ = write!(out, " as {user}");
        }
        out
    }

    /// The first host (its address when only `hostaddr` is given) and
    /// port, for messages.
    fn first_host_port(&self) -> String {
        let first = match (self.hosts.first(), self.driver.hostaddrs().first()) {
            (Some(host), _) => host.to_string(),
            (None, Some(addr)) => Host::Tcp(addr.to_string()).to_string(),
            (None, None) => "(default host)".to_string(),
        };
        match self.ports.first() {
            Some(port) => format!("{first}:{port}"),
            None => first,
        }
    }

    /// ` (+N more hosts)` when there are several, else nothing.
    fn more_hosts(&self) -> String {
        match self.host_count() {
            0 | 1 => String::new(),
            n => format!(" (+{} more hosts)", n - 1),
        }
    }

    /// How many servers libpq would try: one per host, or per hostaddr
    /// when only addresses are given.
    fn host_count(&self) -> usize {
        self.hosts.len().max(self.driver.hostaddrs().len())
    }

    /// Applies one libpq key. Empty values mean "not set", as in libpq.
    fn set(&mut self, key: &str, value: &str) -> Result<(), DsnError> {
        if let Some(known) = DriverParams::key(key) {
            return self.driver.set(known, value);
        }
        match key {
            "host" => self.hosts = parse_hosts(value)?,
            "port" => self.ports = parse_ports(value)?,
            "user" => self.user = non_empty(value),
            "password" => self.password = non_empty(value),
            "dbname" => self.dbname = non_empty(value),
            "sslmode" => self.sslmode = parse_optional(value, str::parse)?,
            "sslrootcert" => self.sslrootcert = non_empty(value),
            "sslcert" => self.sslcert = non_empty(value).map(PathBuf::from),
            "sslkey" => self.sslkey = non_empty(value).map(PathBuf::from),
            "passfile" => self.passfile = non_empty(value).map(PathBuf::from),
            "tcp_user_timeout" => {
                self.tcp_user_timeout = parse_optional(value, parse_tcp_user_timeout)?
            }
            "keepalives" => self.keepalives = parse_optional(value, parse_keepalives)?,
            "keepalives_count" => {
                self.keepalives_count = parse_optional(value, parse_keepalives_count)?
            }
            "service" => {
                return Err(unsupported(
                    key,
                    "service files are not supported; spell the parameters out",
                ));
            }
            _ if IGNORED_KEYS.contains(&key) => {}
            _ => {
                return Err(DsnError::UnknownKey {
                    key: key.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Whether `key` has a value, so the environment leaves it alone.
    fn is_set(&self, key: &str) -> bool {
        match key {
            "host" => !self.hosts.is_empty(),
            "port" => !self.ports.is_empty(),
            "user" => self.user.is_some(),
            "password" => self.password.is_some(),
            "dbname" => self.dbname.is_some(),
            "sslmode" => self.sslmode.is_some(),
            "sslrootcert" => self.sslrootcert.is_some(),
            "sslcert" => self.sslcert.is_some(),
            "sslkey" => self.sslkey.is_some(),
            "passfile" => self.passfile.is_some(),
            _ => self.driver.get(key).is_some(),
        }
    }

    /// Checks that hold across keys, so they run after every source of
    /// values (DSN, environment) has been applied.
    fn check_consistency(&self) -> Result<(), DsnError> {
        let hostaddrs = self.driver.hostaddrs().len();
        if !self.hosts.is_empty() && hostaddrs > 0 && self.hosts.len() != hostaddrs {
            return Err(DsnError::HostaddrCountMismatch {
                hosts: self.hosts.len(),
                hostaddrs,
            });
        }
        let (hosts, ports) = (self.host_count(), self.ports.len());
        if hosts > 0 && ports > 1 && hosts != ports {
            return Err(DsnError::PortCountMismatch { hosts, ports });
        }
        match (self.sslrootcert.as_deref(), self.sslmode) {
            (Some("system"), Some(mode)) if mode != SslMode::VerifyFull => {
                Err(DsnError::WeakSslModeWithSystemRoots { mode })
            }
            _ => Ok(()),
        }
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// Runs `parse` on non-empty values; an empty value unsets the key.
fn parse_optional<T>(
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, DsnError>,
) -> Result<Option<T>, DsnError> {
    if value.is_empty() {
        return Ok(None);
    }
    parse(value).map(Some)
}

fn default_socket_dir(is_dir: impl Fn(&Path) -> bool) -> PathBuf {
    let preferred = Path::new(DISTRO_SOCKET_DIR);
    if is_dir(preferred) {
        preferred.to_path_buf()
    } else {
        PathBuf::from("/tmp")
    }
}

fn parse_hosts(value: &str) -> Result<Vec<Host>, DsnError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .enumerate()
        .map(|(index, host)| match host {
            // libpq would substitute its default socket directory here; we
            // cannot know that directory, so demand an explicit host.
            "" => Err(DsnError::EmptyListEntry {
                key: "host".into(),
                index: index + 1,
            }),
            _ => Ok(Host::from_libpq(host)),
        })
        .collect()
}

fn parse_ports(value: &str) -> Result<Vec<u16>, DsnError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|port| Ok(parse_port("port", port)?.unwrap_or(DEFAULT_PORT)))
        .collect()
}

/// `Ok(None)` for an empty entry, which libpq reads as the default port.
fn parse_port(key: &str, text: &str) -> Result<Option<u16>, DsnError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    match trimmed.parse::<u16>() {
        Ok(port) if port != 0 => Ok(Some(port)),
        _ => Err(invalid_value(
            key,
            text,
            "a TCP port number between 1 and 65535",
        )),
    }
}

/// A whole number, with blanks around it as libpq's `strtol` allows.
fn parse_int(key: &str, value: &str, expected: &'static str) -> Result<i64, DsnError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid_value(key, value, expected))
}

/// Any non-zero number turns keepalives on, as in libpq.
fn parse_keepalives(value: &str) -> Result<bool, DsnError> {
    Ok(parse_int("keepalives", value, "0 or 1")? != 0)
}

/// Zero or negative means the system default, as in libpq.
fn parse_keepalives_count(value: &str) -> Result<u32, DsnError> {
    let count = parse_int("keepalives_count", value, "a whole number of probes")?;
    Ok(u32::try_from(count).unwrap_or(0))
}

/// Whole milliseconds like libpq; zero or negative means the system default.
fn parse_tcp_user_timeout(value: &str) -> Result<Duration, DsnError> {
    let millis = parse_int("tcp_user_timeout", value, "a whole number of milliseconds")?;
    Ok(Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
}
