//! What goes to tokio-postgres: the keys its own parser reads as libpq does,
//! and the finished [`tokio_postgres::Config`].
//!
//! Each key in [`DRIVER_KEYS`] is handed to `tokio_postgres::Config::from_str`
//! as written, so a value means to pgvigil exactly what it means to the
//! driver that acts on it, and there is no second parser to keep in step.
//! The whole DSN cannot go there (it rejects `sslmode=verify-full` and
//! `sslrootcert`, see `mod.rs`), so the keys go one by one, quoted. Not
//! here: the keys the driver lacks or reads differently from libpq, which
//! [`ConnParams`] keeps in its own fields, and TLS (`target/tls.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::error::invalid_value;
use super::{ConnParams, DsnError, Host, SslMode};

/// The `application_name` every pgvigil session reports, so DBAs can tell our
/// queries apart in `pg_stat_activity` whatever the DSN asked for.
const APPLICATION_NAME: &str = "pgvigil";

/// Used when the DSN does not set `connect_timeout`: an unreachable target must
/// not stall a scrape forever.
pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One libpq key that tokio-postgres parses itself.
pub(super) struct DriverKey {
    /// libpq's name, as written in DSNs, which the driver shares.
    libpq: &'static str,
    /// libpq reads integers with blanks around them (`strtol`); the driver
    /// does not, so they are trimmed first.
    integer: bool,
    /// What the error message says would have been accepted.
    expected: &'static str,
}

const fn key(libpq: &'static str, integer: bool, expected: &'static str) -> DriverKey {
    DriverKey {
        libpq,
        integer,
        expected,
    }
}

/// The libpq keys tokio-postgres 0.7 parses and applies as libpq does.
const DRIVER_KEYS: &[DriverKey] = &[
    key("hostaddr", false, "a comma-separated list of IP addresses"),
    key("connect_timeout", true, "a whole number of seconds"),
    key(
        "keepalives_idle",
        true,
        "a non-negative whole number of seconds",
    ),
    key("keepalives_interval", true, "a whole number of seconds"),
    key("options", false, "command-line options for the server"),
    // The driver has no primary, standby or prefer-standby.
    key(
        "target_session_attrs",
        false,
        "any, read-write or read-only (primary, standby and prefer-standby are not supported)",
    ),
    key("channel_binding", false, "disable, prefer or require"),
    key("load_balance_hosts", false, "disable or random"),
];

/// The values of the keys tokio-postgres parses itself (`DRIVER_KEYS` in `driver.rs`), as
/// written and as the driver read them.
///
/// `Debug` shows the values as written; none of these keys is the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DriverParams {
    /// libpq key to value; a later value replaces an earlier one, as in libpq.
    written: BTreeMap<&'static str, String>,
    /// `written`, parsed by tokio-postgres; everything else at its default.
    parsed: tokio_postgres::Config,
}

impl fmt::Debug for DriverParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(&self.written).finish()
    }
}

impl DriverParams {
    /// The driver's description of `key` (libpq's spelling), if it parses it.
    pub(super) fn key(key: &str) -> Option<&'static DriverKey> {
        DRIVER_KEYS.iter().find(|known| known.libpq == key)
    }

    /// The value of a key as written (integers without surrounding blanks).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.written.get(key).map(String::as_str)
    }

    /// Applies one key; an empty value unsets it, as in libpq. The message
    /// of a rejected value is ours: the driver's names neither the value
    /// nor what it expected.
    pub(super) fn set(&mut self, key: &DriverKey, value: &str) -> Result<(), DsnError> {
        let mut written = self.written.clone();
        if value.is_empty() {
            written.remove(key.libpq);
        } else {
            let given = if key.integer { value.trim() } else { value };
            written.insert(key.libpq, given.to_owned());
        }
        // Every other key already parsed, so a failure is this value's.
        let parsed = render(&written)
            .parse()
            .map_err(|_| invalid_value(key.libpq, value, key.expected))?;
        self.written = written;
        self.parsed = parsed;
        Ok(())
    }

    /// The `hostaddr` list.
    pub fn hostaddrs(&self) -> &[IpAddr] {
        self.parsed.get_hostaddrs()
    }
}

/// `key='value' …`, quoted and escaped for the driver's parser.
fn render(written: &BTreeMap<&'static str, String>) -> String {
    let mut out = String::new();
    for (libpq, value) in written {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(libpq);
        out.push_str("='");
        for c in value.chars() {
            if matches!(c, '\'' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('\'');
    }
    out
}

impl ConnParams {
    /// Builds the tokio-postgres configuration. Call [`Self::fill_defaults`]
    /// first: tokio-postgres has no default host.
    pub fn to_tokio_config(&self) -> tokio_postgres::Config {
        let mut config = self.driver.parsed.clone();
        config.application_name(APPLICATION_NAME);
        self.apply_endpoints(&mut config);
        self.apply_credentials(&mut config);
        config.ssl_mode(self.tokio_ssl_mode());
        config
    }

    fn apply_endpoints(&self, config: &mut tokio_postgres::Config) {
        for host in &self.hosts {
            match host {
                Host::Tcp(name) => config.host(name),
                #[cfg(unix)]
                Host::Unix(dir) => config.host_path(dir),
                #[cfg(not(unix))]
                Host::Unix(dir) => config.host(dir.to_string_lossy()),
            };
        }
        if self.hosts.is_empty() {
            // With hostaddr alone the driver would give the TLS connector an
            // empty server name, which rustls refuses before any handshake;
            // the address itself is the only name there is.
            for addr in self.driver.hostaddrs() {
                config.host(addr.to_string());
            }
        }
        for &port in &self.ports {
            config.port(port);
        }
        // libpq treats zero as "wait forever", which the driver already
        // does; only a DSN without the key gets pgvigil's own limit.
        if self.driver.get("connect_timeout").is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if let Some(timeout) = self.tcp_user_timeout.filter(|t| !t.is_zero()) {
            config.tcp_user_timeout(timeout);
        }
        if let Some(enabled) = self.keepalives {
            config.keepalives(enabled);
        }
        if let Some(count) = self.keepalives_count.filter(|&n| n > 0) {
            config.keepalives_retries(count);
        }
    }

    fn apply_credentials(&self, config: &mut tokio_postgres::Config) {
        if let Some(user) = &self.user {
            config.user(user);
        }
        if let Some(password) = &self.password {
            config.password(password);
        }
        if let Some(dbname) = &self.dbname {
            config.dbname(dbname);
        }
    }

    fn tokio_ssl_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Tokio;
        // libpq never attempts TLS over Unix sockets whatever sslmode says;
        // tokio-postgres would fail `require` there, so mirror libpq when no
        // TCP host is involved (a hostaddr always means TCP).
        let unix_only = !self.hosts.is_empty()
            && self.hosts.iter().all(|h| matches!(h, Host::Unix(_)))
            && self.driver.hostaddrs().is_empty();
        if unix_only {
            return Tokio::Disable;
        }
        match self.effective_sslmode() {
            SslMode::Disable => Tokio::Disable,
            SslMode::Allow | SslMode::Prefer => Tokio::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Tokio::Require,
        }
    }
}
