//! Connection parameters in libpq's formats.
//!
//! `tokio_postgres::Config::from_str` rejects libpq keys that monitoring users
//! routinely put in their DSNs (`sslmode=verify-full`, `sslrootcert`, ...), so
//! DSNs are parsed here the way libpq (and therefore psql) parses them, and the
//! resulting [`ConnParams`] is turned into a [`tokio_postgres::Config`]
//! programmatically.
//!
//! Nothing in this module ever puts the password, or the whole connection
//! string (which may contain it), into an error message or a `Debug` dump.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;

/// The `application_name` every pgvigil session reports, so DBAs can tell our
/// queries apart in `pg_stat_activity` whatever the DSN asked for.
const APPLICATION_NAME: &str = "pgvigil";

/// libpq's compiled-in default port.
const DEFAULT_PORT: u16 = 5432;

/// Used when the DSN does not set `connect_timeout`: an unreachable target must
/// not stall a scrape forever.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The Debian/Red Hat socket directory, preferred when it exists.
const DISTRO_SOCKET_DIR: &str = "/var/run/postgresql";

/// Socket directories that libpq builds commonly use as their default; libpq
/// matches `localhost` in the password file only for its default directory,
/// which we cannot know, so any of these counts.
const DEFAULT_SOCKET_DIRS: [&str; 3] = [DISTRO_SOCKET_DIR, "/run/postgresql", "/tmp"];

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
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
];

/// Environment variables consulted by [`ConnParams::fill_from_env`], with the
/// connection key each one stands for.
const ENV_VARS: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGPORT", "port"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGDATABASE", "dbname"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGOPTIONS", "options"),
    ("PGPASSFILE", "passfile"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGCHANNELBINDING", "channel_binding"),
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

/// Why a connection string or environment variable was rejected.
///
/// Messages name the offending key, URI part or byte offset, and the rejected
/// value where it cannot be the password; never the password or the DSN.
#[derive(Debug, thiserror::Error)]
pub enum DsnError {
    /// The keyword/value form is malformed.
    #[error("connection string syntax error at byte offset {position}: {reason}")]
    Syntax {
        /// Byte offset into the connection string where parsing stopped.
        position: usize,
        /// What was expected there.
        reason: &'static str,
    },
    /// The URI form is malformed.
    #[error("invalid connection URI: {reason} (in the {part})")]
    Uri {
        /// Which part of the URI, e.g. `host list` or `query parameter #2`.
        part: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `%XX` escape in a URI is invalid.
    #[error("invalid percent-encoding in the {part} of the connection URI: {reason}")]
    PercentEncoding {
        /// Which part of the URI, e.g. `password`.
        part: String,
        /// What is wrong with the escape.
        reason: &'static str,
    },
    /// The key is not a libpq connection parameter we know.
    #[error("unknown connection parameter \"{key}\"")]
    UnknownKey {
        /// The key as written.
        key: String,
    },
    /// The key is a libpq parameter that pgvigil cannot honour.
    #[error("connection parameter \"{key}\" is not supported: {reason}")]
    Unsupported {
        /// The key as written.
        key: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// A value does not parse for its key.
    #[error("invalid value \"{value}\" for connection parameter \"{key}\": expected {expected}")]
    InvalidValue {
        /// The key the value was given for.
        key: String,
        /// The rejected value (never a password: passwords are not validated).
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A comma-separated list has an empty entry where libpq has no default.
    #[error("entry #{index} of the comma-separated \"{key}\" list is empty")]
    EmptyListEntry {
        /// The list's key.
        key: String,
        /// 1-based position of the empty entry.
        index: usize,
    },
    /// Neither one port for all hosts nor one port per host.
    #[error("{ports} ports given for {hosts} hosts: give one port for all hosts or one per host")]
    PortCountMismatch {
        /// Number of hosts.
        hosts: usize,
        /// Number of ports.
        ports: usize,
    },
    /// libpq (PG16+) forbids trusting the public CAs without host name checks.
    #[error("sslmode \"{mode}\" may not be used with sslrootcert=system (use verify-full)")]
    WeakSslModeWithSystemRoots {
        /// The explicitly requested mode.
        mode: SslMode,
    },
    /// An environment variable holds an invalid value.
    #[error("environment variable {var}: {inner}")]
    Env {
        /// The variable, e.g. `PGPORT`.
        var: &'static str,
        /// What is wrong with its value.
        inner: Box<DsnError>,
    },
}

fn invalid_value(key: &str, value: &str, expected: &'static str) -> DsnError {
    DsnError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

fn uri_error(part: impl Into<String>, reason: &'static str) -> DsnError {
    DsnError::Uri {
        part: part.into(),
        reason,
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
    /// Connection timeout; zero means wait indefinitely, like libpq.
    pub connect_timeout: Option<Duration>,
    /// Command-line options sent to the server (`-c name=value ...`).
    pub options: Option<String>,
    /// Password file to use instead of `~/.pgpass`.
    pub passfile: Option<PathBuf>,
    /// `any`, `read-write` or `read-only`.
    pub target_session_attrs: Option<String>,
    /// Whether TCP keepalives are enabled.
    pub keepalives: Option<bool>,
    /// Idle time before the first TCP keepalive probe.
    pub keepalives_idle: Option<Duration>,
    /// `disable`, `prefer` or `require`; kept because silently dropping
    /// `require` would remove the user's protection against a MITM.
    pub channel_binding: Option<String>,
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
            .field("connect_timeout", &self.connect_timeout)
            .field("options", &self.options)
            .field("passfile", &self.passfile)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("keepalives", &self.keepalives)
            .field("keepalives_idle", &self.keepalives_idle)
            .field("channel_binding", &self.channel_binding)
            .finish()
    }
}

impl ConnParams {
    /// Parses a libpq connection string, either a `postgresql://` /
    /// `postgres://` URI or `key=value` pairs. The empty string yields
    /// all-unset parameters.
    pub fn parse(dsn: &str) -> Result<ConnParams, DsnError> {
        let mut params = ConnParams::default();
        match uri_body(dsn) {
            Some(body) => params.apply_uri(body)?,
            None => params.apply_keywords(dsn)?,
        }
        params.check_consistency()?;
        Ok(params)
    }

    /// Fills parameters that are still unset from libpq's environment
    /// variables (`PGHOST`, `PGPORT`, ...), read through `env` so callers and
    /// tests control the environment. Empty variables count as unset.
    pub fn fill_from_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), DsnError> {
        for &(var, key) in ENV_VARS {
            if self.is_set(key) {
                continue;
            }
            let Some(value) = env(var) else { continue };
            self.set(key, &value).map_err(|inner| DsnError::Env {
                var,
                inner: Box::new(inner),
            })?;
        }
        self.check_consistency()
    }

    /// Applies libpq's compiled-in defaults to what is still unset: the local
    /// socket directory, port 5432, `os_user` as the role and the role name as
    /// the database. `sslmode` stays unset, which means `prefer`.
    pub fn fill_defaults(&mut self, os_user: Option<String>) {
        self.fill_defaults_with(os_user, Path::is_dir);
    }

    fn fill_defaults_with(&mut self, os_user: Option<String>, is_dir: impl Fn(&Path) -> bool) {
        if self.hosts.is_empty() {
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
        match self.hosts.first() {
            Some(host) => {
                let _ = write!(out, "{host}");
            }
            None => out.push_str("(default host)"),
        }
        if let Some(port) = self.ports.first() {
            let _ = write!(out, ":{port}");
        }
        if let Some(dbname) = &self.dbname {
            let _ = write!(out, "/{dbname}");
        }
        if self.hosts.len() > 1 {
            let _ = write!(out, " (+{} more hosts)", self.hosts.len() - 1);
        }
        out
    }

    /// `host:port as user` (first host; `+N more hosts` when several), the
    /// form error messages use. Never the password.
    pub fn endpoint(&self) -> String {
        let mut out = match self.hosts.first() {
            Some(host) => host.to_string(),
            None => "(default host)".to_string(),
        };
        if let Some(port) = self.ports.first() {
            let _ = write!(out, ":{port}");
        }
        if self.hosts.len() > 1 {
            let _ = write!(out, " (+{} more hosts)", self.hosts.len() - 1);
        }
        if let Some(user) = &self.user {
            let _ = write!(out, " as {user}");
        }
        out
    }

    /// Builds the tokio-postgres configuration. Call [`Self::fill_defaults`]
    /// first: tokio-postgres has no default host.
    pub fn to_tokio_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.application_name(APPLICATION_NAME);
        self.apply_endpoints(&mut config);
        self.apply_credentials(&mut config);
        self.apply_session(&mut config);
        config.ssl_mode(self.tokio_ssl_mode());
        config
    }

    /// Looks the password up in libpq's password file: `passfile`, else
    /// `<home>/.pgpass`. Matches on the first host and port, like libpq does
    /// for the first connection attempt. Returns `None` when nothing matches
    /// or the file is readable by group or others.
    pub fn pgpass_password(&self, home: Option<&Path>) -> Option<String> {
        let path = match &self.passfile {
            Some(path) => path.clone(),
            None => home?.join(".pgpass"),
        };
        let contents = read_private_file(&path)?;
        let port = self
            .ports
            .first()
            .copied()
            .unwrap_or(DEFAULT_PORT)
            .to_string();
        let wanted = [
            self.pgpass_host(),
            port.as_str(),
            self.dbname.as_deref().filter(|s| !s.is_empty())?,
            self.user.as_deref().filter(|s| !s.is_empty())?,
        ];
        contents
            .lines()
            .find_map(|line| pgpass_line_password(line, &wanted))
            .filter(|password| !password.is_empty())
    }

    /// libpq matches `localhost` for a missing host and for its default socket
    /// directory; any other socket directory matches literally.
    fn pgpass_host(&self) -> &str {
        match self.hosts.first() {
            None => "localhost",
            Some(Host::Tcp(name)) => name,
            Some(Host::Unix(dir)) => match dir.to_str() {
                Some(dir) if !DEFAULT_SOCKET_DIRS.contains(&dir) => dir,
                _ => "localhost",
            },
        }
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
        for &port in &self.ports {
            config.port(port);
        }
        match self.connect_timeout {
            // libpq treats zero as "wait forever"; tokio-postgres would time
            // out immediately, so leave the timeout unset instead.
            Some(timeout) if timeout.is_zero() => {}
            Some(timeout) => {
                config.connect_timeout(timeout);
            }
            None => {
                config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
            }
        }
        if let Some(enabled) = self.keepalives {
            config.keepalives(enabled);
        }
        if let Some(idle) = self.keepalives_idle {
            config.keepalives_idle(idle);
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
        if let Some(binding) = self.channel_binding.as_deref() {
            config.channel_binding(tokio_channel_binding(binding));
        }
    }

    fn apply_session(&self, config: &mut tokio_postgres::Config) {
        if let Some(options) = &self.options {
            config.options(options);
        }
        if let Some(attrs) = self.target_session_attrs.as_deref() {
            config.target_session_attrs(tokio_session_attrs(attrs));
        }
    }

    fn tokio_ssl_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Tokio;
        // libpq never attempts TLS over Unix sockets whatever sslmode says;
        // tokio-postgres would fail `require` there, so mirror libpq when no
        // TCP host is involved.
        let unix_only =
            !self.hosts.is_empty() && self.hosts.iter().all(|h| matches!(h, Host::Unix(_)));
        if unix_only {
            return Tokio::Disable;
        }
        match self.effective_sslmode() {
            SslMode::Disable => Tokio::Disable,
            SslMode::Allow | SslMode::Prefer => Tokio::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Tokio::Require,
        }
    }

    fn apply_keywords(&mut self, dsn: &str) -> Result<(), DsnError> {
        let mut lexer = Lexer { text: dsn, pos: 0 };
        while let Some((key, value)) = lexer.next_pair()? {
            self.set(&key, &value)?;
        }
        Ok(())
    }

    /// `body` is the URI after `scheme://`.
    fn apply_uri(&mut self, body: &str) -> Result<(), DsnError> {
        let (userinfo, rest) = split_userinfo(body);
        if let Some(userinfo) = userinfo {
            self.apply_userinfo(userinfo)?;
        }
        let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (hostspec, rest) = rest.split_at(host_end);
        self.apply_hostspec(hostspec).map_err(|err| {
            hint_unencoded_userinfo(err, userinfo.is_none() && rest.contains('@'))
        })?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        if let Some(dbname) = path.strip_prefix('/') {
            self.dbname = non_empty(&percent_decode(dbname, "database name")?);
        }
        match query {
            Some(query) => self.apply_query(query),
            None => Ok(()),
        }
    }

    fn apply_userinfo(&mut self, userinfo: &str) -> Result<(), DsnError> {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        self.user = non_empty(&percent_decode(user, "user name")?);
        if let Some(password) = password {
            self.password = non_empty(&percent_decode(password, "password")?);
        }
        Ok(())
    }

    fn apply_hostspec(&mut self, spec: &str) -> Result<(), DsnError> {
        if spec.is_empty() {
            return Ok(());
        }
        let entries = spec
            .split(',')
            .map(split_uri_host_port)
            .collect::<Result<Vec<_>, _>>()?;
        let mut hosts = Vec::with_capacity(entries.len());
        let mut ports = Vec::with_capacity(entries.len());
        for (index, (host, port)) in entries.iter().enumerate() {
            let host = percent_decode(host, "host list")?;
            if host.is_empty() && entries.len() > 1 {
                return Err(DsnError::EmptyListEntry {
                    key: "host".into(),
                    index: index + 1,
                });
            }
            if !host.is_empty() {
                hosts.push(Host::from_libpq(&host));
            }
            ports.push(match port {
                Some(port) => parse_port("port", &percent_decode(port, "host list")?)?,
                None => None,
            });
        }
        self.hosts = hosts;
        // libpq fills in 5432 for hosts without a port only when some host
        // has one; with no ports at all the port stays "not given".
        self.ports = if ports.iter().any(Option::is_some) {
            ports
                .into_iter()
                .map(|p| p.unwrap_or(DEFAULT_PORT))
                .collect()
        } else {
            Vec::new()
        };
        Ok(())
    }

    fn apply_query(&mut self, query: &str) -> Result<(), DsnError> {
        for (index, param) in query.split('&').enumerate() {
            if param.is_empty() {
                continue;
            }
            let part = || format!("query parameter #{}", index + 1);
            let (key, value) = param
                .split_once('=')
                .ok_or_else(|| uri_error(part(), "missing '=' between key and value"))?;
            if value.contains('=') {
                return Err(uri_error(
                    part(),
                    "more than one '=' (write '=' in a value as %3D)",
                ));
            }
            let key = percent_decode(key, &part())?;
            let value = percent_decode(value, &format!("value of query parameter \"{key}\""))?;
            self.apply_query_param(&key, &value)?;
        }
        Ok(())
    }

    /// libpq accepts the JDBC spelling `ssl=true` in URIs as `sslmode=require`.
    fn apply_query_param(&mut self, key: &str, value: &str) -> Result<(), DsnError> {
        match (key, value) {
            ("ssl", "true") => self.set("sslmode", "require"),
            ("ssl", _) => Err(invalid_value(key, value, "true")),
            _ => self.set(key, value),
        }
    }

    /// Applies one libpq key. Empty values mean "not set", as in libpq.
    fn set(&mut self, key: &str, value: &str) -> Result<(), DsnError> {
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
            "connect_timeout" => self.connect_timeout = parse_optional(value, parse_timeout)?,
            "options" => self.options = non_empty(value),
            "passfile" => self.passfile = non_empty(value).map(PathBuf::from),
            "target_session_attrs" => self.target_session_attrs = parse_session_attrs(value)?,
            "keepalives" => self.keepalives = parse_optional(value, parse_keepalives)?,
            "keepalives_idle" => {
                self.keepalives_idle = parse_optional(value, parse_keepalives_idle)?
            }
            "channel_binding" => self.channel_binding = parse_channel_binding(value)?,
            "service" => {
                return Err(unsupported(
                    key,
                    "service files are not supported; spell the parameters out",
                ));
            }
            "hostaddr" => return Err(unsupported(key, "use host with the IP address instead")),
            _ if IGNORED_KEYS.contains(&key) => {}
            _ => {
                return Err(DsnError::UnknownKey {
                    key: key.to_owned(),
                });
            }
        }
        Ok(())
    }

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
            "connect_timeout" => self.connect_timeout.is_some(),
            "options" => self.options.is_some(),
            "passfile" => self.passfile.is_some(),
            "target_session_attrs" => self.target_session_attrs.is_some(),
            "channel_binding" => self.channel_binding.is_some(),
            _ => false,
        }
    }

    /// Checks that hold across keys, so they run after every source of
    /// values (DSN, environment) has been applied.
    fn check_consistency(&self) -> Result<(), DsnError> {
        let (hosts, ports) = (self.hosts.len(), self.ports.len());
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

fn unsupported(key: &str, reason: &'static str) -> DsnError {
    DsnError::Unsupported {
        key: key.to_owned(),
        reason,
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

/// Whole seconds like libpq; zero or negative means "no timeout".
fn parse_timeout(value: &str) -> Result<Duration, DsnError> {
    let seconds: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid_value("connect_timeout", value, "a whole number of seconds"))?;
    Ok(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

fn parse_keepalives(value: &str) -> Result<bool, DsnError> {
    let flag: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid_value("keepalives", value, "0 or 1"))?;
    Ok(flag != 0)
}

fn parse_keepalives_idle(value: &str) -> Result<Duration, DsnError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| {
            invalid_value(
                "keepalives_idle",
                value,
                "a non-negative whole number of seconds",
            )
        })
}

fn parse_session_attrs(value: &str) -> Result<Option<String>, DsnError> {
    match value {
        "" => Ok(None),
        "any" | "read-write" | "read-only" => Ok(Some(value.to_owned())),
        _ => Err(invalid_value(
            "target_session_attrs",
            value,
            "any, read-write or read-only (primary, standby and prefer-standby are not supported)",
        )),
    }
}

fn parse_channel_binding(value: &str) -> Result<Option<String>, DsnError> {
    match value {
        "" => Ok(None),
        "disable" | "prefer" | "require" => Ok(Some(value.to_owned())),
        _ => Err(invalid_value(
            "channel_binding",
            value,
            "disable, prefer or require",
        )),
    }
}

fn tokio_session_attrs(value: &str) -> tokio_postgres::config::TargetSessionAttrs {
    use tokio_postgres::config::TargetSessionAttrs as Tokio;
    match value {
        "read-write" => Tokio::ReadWrite,
        "read-only" => Tokio::ReadOnly,
        _ => Tokio::Any,
    }
}

fn tokio_channel_binding(value: &str) -> tokio_postgres::config::ChannelBinding {
    use tokio_postgres::config::ChannelBinding as Tokio;
    match value {
        "disable" => Tokio::Disable,
        "require" => Tokio::Require,
        _ => Tokio::Prefer,
    }
}

fn uri_body(dsn: &str) -> Option<&str> {
    // Trimming tolerates DSNs pasted from files with a trailing newline.
    let dsn = dsn.trim();
    ["postgresql://", "postgres://"]
        .into_iter()
        .find_map(|scheme| dsn.strip_prefix(scheme))
}

/// Like libpq, user info is whatever precedes the first `@` that comes before
/// any `/`, so a password may contain `?` or `:` but `/` must be encoded.
fn split_userinfo(body: &str) -> (Option<&str>, &str) {
    match body.find(['@', '/']) {
        Some(at) if body[at..].starts_with('@') => (Some(&body[..at]), &body[at + 1..]),
        _ => (None, body),
    }
}

/// Splits one `host[:port]` or `[v6addr][:port]` entry of a URI host list.
fn split_uri_host_port(entry: &str) -> Result<(&str, Option<&str>), DsnError> {
    let Some(bracketed) = entry.strip_prefix('[') else {
        return Ok(match entry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        });
    };
    let (address, tail) = bracketed
        .split_once(']')
        .ok_or_else(|| uri_error("host list", "missing ']' after an IPv6 address"))?;
    if address.is_empty() {
        return Err(uri_error("host list", "empty IPv6 address in brackets"));
    }
    match tail {
        "" => Ok((address, None)),
        _ => match tail.strip_prefix(':') {
            Some(port) => Ok((address, Some(port))),
            None => Err(uri_error(
                "host list",
                "unexpected character after an IPv6 address",
            )),
        },
    }
}

/// An unencoded `/` in a password makes the rest of the password look like a
/// port; the resulting error would echo part of the password, so replace it
/// with advice that echoes nothing.
fn hint_unencoded_userinfo(err: DsnError, suspicious: bool) -> DsnError {
    match err {
        DsnError::InvalidValue { .. } if suspicious => uri_error(
            "host list",
            "cannot parse the port; a '/' in the user name or password must be percent-encoded as %2F",
        ),
        other => other,
    }
}

/// Strict percent-decoding, like libpq: malformed escapes and `%00` are
/// errors rather than being passed through.
fn percent_decode(text: &str, part: &str) -> Result<String, DsnError> {
    let error = |reason| DsnError::PercentEncoding {
        part: part.to_owned(),
        reason,
    };
    let bytes = text.as_bytes();
    let mut index = 0;
    while let Some(offset) = bytes[index..].iter().position(|&b| b == b'%') {
        let at = index + offset;
        match bytes.get(at + 1..at + 3) {
            Some(b"00") => return Err(error("%00 is not allowed")),
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => index = at + 3,
            _ => return Err(error("'%' must be followed by two hexadecimal digits")),
        }
    }
    percent_decode_str(text)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| error("the decoded text is not valid UTF-8"))
}

/// Tokenizer for libpq's `key = value` syntax.
struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.bump();
        }
    }

    fn error(&self, position: usize, reason: &'static str) -> DsnError {
        DsnError::Syntax { position, reason }
    }

    fn next_pair(&mut self) -> Result<Option<(String, String)>, DsnError> {
        self.skip_space();
        if self.peek().is_none() {
            return Ok(None);
        }
        let key = self.keyword()?;
        self.skip_space();
        if self.peek() != Some('=') {
            // Only the offset: the "keyword" may be the tail of an unquoted
            // password that contained a space.
            return Err(self.error(self.pos, "expected '=' after a parameter name"));
        }
        self.bump();
        // libpq skips blanks after '=' too, so `host= x` means host=x.
        self.skip_space();
        let value = if self.peek() == Some('\'') {
            self.quoted()?
        } else {
            self.unquoted()
        };
        Ok(Some((key, value)))
    }

    fn keyword(&mut self) -> Result<String, DsnError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c != '=' && !is_space(c)) {
            self.bump();
        }
        if start == self.pos {
            return Err(self.error(start, "expected a parameter name"));
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn quoted(&mut self) -> Result<String, DsnError> {
        let start = self.pos;
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                Some('\'') => return Ok(value),
                Some('\\') => match self.bump() {
                    Some(escaped) => value.push(escaped),
                    None => break,
                },
                Some(c) => value.push(c),
                None => break,
            }
        }
        Err(self.error(start, "unterminated quoted string"))
    }

    fn unquoted(&mut self) -> String {
        let mut value = String::new();
        while let Some(c) = self.peek().filter(|&c| !is_space(c)) {
            self.bump();
            if c != '\\' {
                value.push(c);
            } else if let Some(escaped) = self.bump() {
                value.push(escaped);
            }
        }
        value
    }
}

/// C's `isspace` in the "C" locale, which is what libpq uses.
fn is_space(c: char) -> bool {
    c.is_ascii_whitespace() || c == '\x0b'
}

/// Reads a password file the way libpq accepts it: a regular file, not
/// readable or writable by group or others.
fn read_private_file(path: &Path) -> Option<String> {
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_file() || !is_private(&metadata) {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

#[cfg(unix)]
fn is_private(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o077 == 0
}

#[cfg(not(unix))]
fn is_private(_metadata: &std::fs::Metadata) -> bool {
    // libpq skips the check where there are no Unix permission bits.
    true
}

/// Returns the password of a `host:port:db:user:password` line whose first
/// four fields match `wanted`.
fn pgpass_line_password(line: &str, wanted: &[&str; 4]) -> Option<String> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut rest = line;
    for field in wanted {
        rest = match_pgpass_field(rest, field)?;
    }
    Some(unescape_pgpass_password(rest))
}

/// Matches one field (`*` alone is a wildcard, `\` escapes the next
/// character) and returns the text after its terminating `:`.
fn match_pgpass_field<'a>(line: &'a str, wanted: &str) -> Option<&'a str> {
    if let Some(rest) = line.strip_prefix("*:") {
        return Some(rest);
    }
    let mut expected = wanted.chars();
    let mut chars = line.char_indices();
    while let Some((index, c)) = chars.next() {
        let literal = match c {
            ':' => return expected.next().is_none().then(|| &line[index + 1..]),
            '\\' => chars.next()?.1,
            _ => c,
        };
        if expected.next() != Some(literal) {
            return None;
        }
    }
    None
}

/// The password runs to the next unescaped `:` or the end of the line; a
/// trailing lone backslash is kept, as libpq does.
fn unescape_pgpass_password(text: &str) -> String {
    let mut password = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ':' => break,
            '\\' => password.push(chars.next().unwrap_or('\\')),
            _ => password.push(c),
        }
    }
    password
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SECRET: &str = "s3cr3t-Pa55";

    fn tcp(name: &str) -> Host {
        Host::Tcp(name.to_owned())
    }

    fn unix(dir: &str) -> Host {
        Host::Unix(PathBuf::from(dir))
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn parses_keyword_and_uri_forms() {
        let cases: Vec<(&str, ConnParams)> = vec![
            ("", ConnParams::default()),
            ("   ", ConnParams::default()),
            (
                "host=localhost port=5432 dbname='my db' password='it\\'s'",
                ConnParams {
                    hosts: vec![tcp("localhost")],
                    ports: vec![5432],
                    dbname: some("my db"),
                    password: some("it's"),
                    ..Default::default()
                },
            ),
            (
                "host = db.example.com  user =alice sslmode= verify-full",
                ConnParams {
                    hosts: vec![tcp("db.example.com")],
                    user: some("alice"),
                    sslmode: Some(SslMode::VerifyFull),
                    ..Default::default()
                },
            ),
            (
                r"password=a\ b\\c options='-c search_path=x' connect_timeout=5",
                ConnParams {
                    password: some(r"a b\c"),
                    options: some("-c search_path=x"),
                    connect_timeout: Some(Duration::from_secs(5)),
                    ..Default::default()
                },
            ),
            (
                "host=/var/run/postgresql,db2 port=5433,5434 target_session_attrs=read-write",
                ConnParams {
                    hosts: vec![unix("/var/run/postgresql"), tcp("db2")],
                    ports: vec![5433, 5434],
                    target_session_attrs: some("read-write"),
                    ..Default::default()
                },
            ),
            (
                "host=::1,h2 port=6432,  dbname='' application_name=x gssencmode=disable sslcrl=/c",
                ConnParams {
                    hosts: vec![tcp("::1"), tcp("h2")],
                    ports: vec![6432, 5432],
                    ..Default::default()
                },
            ),
            (
                "sslrootcert=system sslcert=/c.pem sslkey=/k.pem passfile=/p keepalives=0 keepalives_idle=30 channel_binding=require",
                ConnParams {
                    sslrootcert: some("system"),
                    sslcert: Some(PathBuf::from("/c.pem")),
                    sslkey: Some(PathBuf::from("/k.pem")),
                    passfile: Some(PathBuf::from("/p")),
                    keepalives: Some(false),
                    keepalives_idle: Some(Duration::from_secs(30)),
                    channel_binding: some("require"),
                    ..Default::default()
                },
            ),
            (
                "connect_timeout=-3",
                ConnParams {
                    connect_timeout: Some(Duration::ZERO),
                    ..Default::default()
                },
            ),
            ("postgresql://", ConnParams::default()),
            (
                "postgresql://alice:p%40ss%3Aw@db.example.com:5433/my%20db?sslmode=require&connect_timeout=7",
                ConnParams {
                    hosts: vec![tcp("db.example.com")],
                    ports: vec![5433],
                    user: some("alice"),
                    password: some("p@ss:w"),
                    dbname: some("my db"),
                    sslmode: Some(SslMode::Require),
                    connect_timeout: Some(Duration::from_secs(7)),
                    ..Default::default()
                },
            ),
            (
                "postgres://bob:pa?ss:word@h/d",
                ConnParams {
                    hosts: vec![tcp("h")],
                    user: some("bob"),
                    password: some("pa?ss:word"),
                    dbname: some("d"),
                    ..Default::default()
                },
            ),
            (
                "postgresql://[::1]:5432,[fe80::2],db3:6000/app",
                ConnParams {
                    hosts: vec![tcp("::1"), tcp("fe80::2"), tcp("db3")],
                    ports: vec![5432, 5432, 6000],
                    dbname: some("app"),
                    ..Default::default()
                },
            ),
            (
                "postgresql://h1,h2/app",
                ConnParams {
                    hosts: vec![tcp("h1"), tcp("h2")],
                    dbname: some("app"),
                    ..Default::default()
                },
            ),
            (
                "postgresql://%2Fvar%2Frun%2Fpostgresql/app",
                ConnParams {
                    hosts: vec![unix("/var/run/postgresql")],
                    dbname: some("app"),
                    ..Default::default()
                },
            ),
            (
                "postgresql:///app?host=/tmp&port=5999",
                ConnParams {
                    hosts: vec![unix("/tmp")],
                    ports: vec![5999],
                    dbname: some("app"),
                    ..Default::default()
                },
            ),
            (
                "postgresql://u@h:1/d?host=other&user=v&ssl=true&options=-c%20a%3Db",
                ConnParams {
                    hosts: vec![tcp("other")],
                    ports: vec![1],
                    user: some("v"),
                    dbname: some("d"),
                    sslmode: Some(SslMode::Require),
                    options: some("-c a=b"),
                    ..Default::default()
                },
            ),
            (
                "postgresql://:7000",
                ConnParams {
                    ports: vec![7000],
                    ..Default::default()
                },
            ),
            (
                "postgresql://h?sslrootcert=%2Fetc%2Fca.pem&target_session_attrs=read-only",
                ConnParams {
                    hosts: vec![tcp("h")],
                    sslrootcert: some("/etc/ca.pem"),
                    target_session_attrs: some("read-only"),
                    ..Default::default()
                },
            ),
        ];
        for (dsn, expected) in cases {
            let parsed = ConnParams::parse(dsn).unwrap_or_else(|e| panic!("{dsn:?} failed: {e}"));
            assert_eq!(parsed, expected, "DSN {dsn:?}");
        }
    }

    #[test]
    fn rejects_bad_input_without_leaking_the_password() {
        // (dsn, text the message must contain)
        let cases = [
            (format!("password={SECRET} port=99999"), "\"port\""),
            (format!("password={SECRET} port=abc"), "abc"),
            (format!("password={SECRET} sslmode=verify"), "\"verify\""),
            (
                format!("password={SECRET} connect_timeout=soon"),
                "connect_timeout",
            ),
            (format!("password={SECRET} colour=blue"), "\"colour\""),
            (
                format!("password={SECRET} service=prod"),
                "service files are not supported",
            ),
            (
                format!("password={SECRET} hostaddr=10.0.0.1"),
                "\"hostaddr\"",
            ),
            (
                format!("password={SECRET} target_session_attrs=primary"),
                "target_session_attrs",
            ),
            (
                format!("password={SECRET} channel_binding=maybe"),
                "channel_binding",
            ),
            (format!("password={SECRET} keepalives=yes"), "keepalives"),
            (format!("password='{SECRET}"), "unterminated"),
            (format!("password={SECRET} port"), "expected '='"),
            (format!("password={SECRET} =x"), "parameter name"),
            (format!("host=a,,b password={SECRET}"), "entry #2"),
            (format!("host=a,b,c port=1,2 password={SECRET}"), "3 hosts"),
            (
                format!("sslrootcert=system sslmode=verify-ca password={SECRET}"),
                "verify-ca",
            ),
            (format!("postgresql://u:{SECRET}@h:99999/d"), "\"port\""),
            (format!("postgresql://u:{SECRET}@h/d?sslmode=nope"), "nope"),
            (
                format!("postgresql://u:{SECRET}@h/d?frobnicate=1"),
                "\"frobnicate\"",
            ),
            (format!("postgresql://u:{SECRET}@h/d?ssl=1"), "\"ssl\""),
            (
                format!("postgresql://u:{SECRET}@h/d?sslmode"),
                "query parameter #1",
            ),
            (
                format!("postgresql://u:{SECRET}@h/d?a=b=c"),
                "more than one '='",
            ),
            (format!("postgresql://u:{SECRET}%zz@h/d"), "password"),
            (format!("postgresql://u:{SECRET}%00@h/d"), "%00"),
            (format!("postgresql://u:{SECRET}@[::1/d"), "']'"),
            (format!("postgresql://u:{SECRET}@[::1]x/d"), "after an IPv6"),
            (format!("postgresql://u:{SECRET}@a,,b/d"), "entry #2"),
            (format!("postgresql://u:ab/{SECRET}@h/d"), "%2F"),
        ];
        for (dsn, needle) in cases {
            let err = match ConnParams::parse(&dsn) {
                Ok(params) => panic!("{dsn:?} parsed as {params:?}"),
                Err(err) => err,
            };
            let message = err.to_string();
            assert!(
                message.contains(needle),
                "{dsn:?}: {message:?} lacks {needle:?}"
            );
            assert!(
                !message.contains(SECRET),
                "{dsn:?}: message leaks the password: {message}"
            );
            assert!(
                !format!("{err:?}").contains(SECRET),
                "{dsn:?}: Debug leaks the password"
            );
        }
    }

    #[test]
    fn sslmode_round_trips_through_its_libpq_spelling() {
        for mode in SslMode::ALL {
            assert_eq!(mode.to_string().parse::<SslMode>().ok(), Some(mode));
        }
        assert_eq!(SslMode::default(), SslMode::Prefer);
    }

    #[test]
    fn env_fills_only_unset_fields() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("PGHOST", "envhost1,envhost2"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpass"),
            ("PGDATABASE", "envdb"),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", "/env/root.crt"),
            ("PGCONNECT_TIMEOUT", "3"),
            ("PGOPTIONS", ""),
            ("PGTARGETSESSIONATTRS", "read-write"),
        ]);
        let lookup = |var: &str| env.get(var).map(|v| (*v).to_owned());
        let cases = [
            (
                "host=dsnhost user=dsnuser sslmode=disable",
                ConnParams {
                    hosts: vec![tcp("dsnhost")],
                    ports: vec![6000],
                    user: some("dsnuser"),
                    password: some("envpass"),
                    dbname: some("envdb"),
                    sslmode: Some(SslMode::Disable),
                    sslrootcert: some("/env/root.crt"),
                    connect_timeout: Some(Duration::from_secs(3)),
                    target_session_attrs: some("read-write"),
                    ..Default::default()
                },
            ),
            (
                "postgresql://u:p@h:1/d?connect_timeout=9&sslrootcert=/dsn.crt",
                ConnParams {
                    hosts: vec![tcp("h")],
                    ports: vec![1],
                    user: some("u"),
                    password: some("p"),
                    dbname: some("d"),
                    sslmode: Some(SslMode::VerifyFull),
                    sslrootcert: some("/dsn.crt"),
                    connect_timeout: Some(Duration::from_secs(9)),
                    target_session_attrs: some("read-write"),
                    ..Default::default()
                },
            ),
            (
                "",
                ConnParams {
                    hosts: vec![tcp("envhost1"), tcp("envhost2")],
                    ports: vec![6000],
                    user: some("envuser"),
                    password: some("envpass"),
                    dbname: some("envdb"),
                    sslmode: Some(SslMode::VerifyFull),
                    sslrootcert: some("/env/root.crt"),
                    connect_timeout: Some(Duration::from_secs(3)),
                    target_session_attrs: some("read-write"),
                    ..Default::default()
                },
            ),
        ];
        for (dsn, expected) in cases {
            let mut params = ConnParams::parse(dsn).expect("test DSN parses");
            params
                .fill_from_env(lookup)
                .expect("test environment is valid");
            assert_eq!(params, expected, "DSN {dsn:?}");
        }
    }

    #[test]
    fn env_errors_name_the_variable() {
        let cases = [
            ("", "PGPORT", "x1", "PGPORT"),
            ("", "PGSSLMODE", "strict", "PGSSLMODE"),
            ("host=a,b", "PGPORT", "1,2,3", "3 ports"),
            ("sslrootcert=system", "PGSSLMODE", "require", "require"),
        ];
        for (dsn, var, value, needle) in cases {
            let mut params = ConnParams::parse(dsn).expect("test DSN parses");
            let result = params.fill_from_env(|name| (name == var).then(|| value.to_owned()));
            let message = result
                .expect_err("invalid environment must fail")
                .to_string();
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }

    #[test]
    fn defaults_fill_socket_port_user_and_dbname() {
        let cases = [
            // (dsn, /var/run/postgresql exists, os user, expected)
            (
                "",
                true,
                some("alice"),
                ConnParams {
                    hosts: vec![unix("/var/run/postgresql")],
                    ports: vec![5432],
                    user: some("alice"),
                    dbname: some("alice"),
                    ..Default::default()
                },
            ),
            (
                "user=bob",
                false,
                some("alice"),
                ConnParams {
                    hosts: vec![unix("/tmp")],
                    ports: vec![5432],
                    user: some("bob"),
                    dbname: some("bob"),
                    ..Default::default()
                },
            ),
            (
                "host=h port=1 dbname=d",
                true,
                None,
                ConnParams {
                    hosts: vec![tcp("h")],
                    ports: vec![1],
                    dbname: some("d"),
                    ..Default::default()
                },
            ),
        ];
        for (dsn, socket_dir_exists, os_user, expected) in cases {
            let mut params = ConnParams::parse(dsn).expect("test DSN parses");
            params.fill_defaults_with(os_user, |_| socket_dir_exists);
            assert_eq!(params, expected, "DSN {dsn:?}");
            assert_eq!(params.sslmode, None);
        }
    }

    #[test]
    fn effective_sslmode_follows_libpq() {
        let cases = [
            ("", SslMode::Prefer),
            ("sslmode=disable", SslMode::Disable),
            ("sslmode=require", SslMode::Require),
            ("sslmode=require sslrootcert=/ca.pem", SslMode::VerifyCa),
            (
                "sslmode=verify-full sslrootcert=/ca.pem",
                SslMode::VerifyFull,
            ),
            ("sslmode=prefer sslrootcert=/ca.pem", SslMode::Prefer),
            ("sslrootcert=system", SslMode::VerifyFull),
        ];
        for (dsn, expected) in cases {
            let params = ConnParams::parse(dsn).expect("test DSN parses");
            assert_eq!(params.effective_sslmode(), expected, "DSN {dsn:?}");
        }
    }

    #[test]
    fn redaction_never_shows_the_password() {
        let cases = [
            (
                format!("postgresql://alice:{SECRET}@db1:5433/app"),
                "alice@db1:5433/app",
            ),
            (
                format!("host=db1,db2,db3 password={SECRET} dbname=app"),
                "db1/app (+2 more hosts)",
            ),
            (
                format!("host=/tmp port=5432 user=u password={SECRET}"),
                "u@unix:/tmp:5432",
            ),
            (
                format!("postgresql://u:{SECRET}@[::1]:5432/d"),
                "u@[::1]:5432/d",
            ),
            (format!("password={SECRET}"), "(default host)"),
        ];
        for (dsn, expected) in cases {
            let params = ConnParams::parse(&dsn).expect("test DSN parses");
            assert_eq!(params.redacted(), expected);
            assert!(
                !format!("{params:?}").contains(SECRET),
                "Debug leaks the password"
            );
        }
    }

    #[test]
    fn tokio_config_carries_the_parameters() {
        use tokio_postgres::config::{
            ChannelBinding, Host as TokioHost, SslMode as TokioSsl, TargetSessionAttrs,
        };
        let params = ConnParams::parse(
            "host=db1,/sock port=1,2 user=u password=pw dbname=d options=-cx=1 \
             application_name=other target_session_attrs=read-write sslmode=verify-ca \
             keepalives_idle=60 channel_binding=require",
        )
        .expect("test DSN parses");
        let config = params.to_tokio_config();
        assert_eq!(
            config.get_hosts(),
            &[
                TokioHost::Tcp("db1".into()),
                TokioHost::Unix(PathBuf::from("/sock"))
            ]
        );
        assert_eq!(config.get_ports(), &[1, 2]);
        assert_eq!(config.get_user(), Some("u"));
        assert_eq!(config.get_password(), Some(&b"pw"[..]));
        assert_eq!(config.get_dbname(), Some("d"));
        assert_eq!(config.get_options(), Some("-cx=1"));
        assert_eq!(config.get_application_name(), Some("pgvigil"));
        assert_eq!(
            config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        assert_eq!(config.get_ssl_mode(), TokioSsl::Require);
        assert_eq!(config.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(config.get_channel_binding(), ChannelBinding::Require);
    }

    #[test]
    fn tokio_ssl_mode_mapping() {
        use tokio_postgres::config::SslMode as TokioSsl;
        let cases = [
            ("host=h sslmode=disable", TokioSsl::Disable),
            ("host=h sslmode=allow", TokioSsl::Prefer),
            ("host=h", TokioSsl::Prefer),
            ("host=h sslmode=require", TokioSsl::Require),
            ("host=h sslmode=verify-full", TokioSsl::Require),
            ("host=h sslrootcert=system", TokioSsl::Require),
            ("host=/tmp sslmode=require", TokioSsl::Disable),
        ];
        for (dsn, expected) in cases {
            let config = ConnParams::parse(dsn)
                .expect("test DSN parses")
                .to_tokio_config();
            assert_eq!(config.get_ssl_mode(), expected, "DSN {dsn:?}");
        }
    }

    #[test]
    fn connect_timeout_zero_means_no_timeout() {
        let cases = [
            ("host=h", Some(DEFAULT_CONNECT_TIMEOUT)),
            ("host=h connect_timeout=0", None),
            ("host=h connect_timeout=4", Some(Duration::from_secs(4))),
        ];
        for (dsn, expected) in cases {
            let config = ConnParams::parse(dsn)
                .expect("test DSN parses")
                .to_tokio_config();
            assert_eq!(
                config.get_connect_timeout().copied(),
                expected,
                "DSN {dsn:?}"
            );
        }
    }

    fn write_pgpass(dir: &Path, contents: &str, mode: u32) -> PathBuf {
        let path = dir.join(".pgpass");
        std::fs::write(&path, contents).expect("write test pgpass");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .expect("chmod test pgpass");
        }
        #[cfg(not(unix))]
        let _ = mode;
        path
    }

    #[test]
    fn pgpass_lookup() {
        let contents = "\
# comment line:*:*:*:nope
db1.example.com:5432:app:alice:exact
db1.example.com:*:*:bob:wild\\:card\\\\pw
*:5433:*:*:anyhost
localhost:5432:*:carol:sockpw
/custom/dir:5432:*:carol:custompw
we\\:ird:5432:app:dave:escaped-host
db2:5432:app:erin:first
db2:5432:app:erin:second
db3:5432:app:frank:pw:ignored-tail
";
        let dir = tempfile::tempdir().expect("tempdir");
        write_pgpass(dir.path(), contents, 0o600);
        let cases = [
            ("host=db1.example.com user=alice dbname=app", Some("exact")),
            (
                "host=db1.example.com port=6000 user=bob dbname=x",
                Some(r"wild:card\pw"),
            ),
            (
                "host=elsewhere port=5433 user=zed dbname=z",
                Some("anyhost"),
            ),
            (
                "host=/var/run/postgresql user=carol dbname=c",
                Some("sockpw"),
            ),
            ("user=carol dbname=c", Some("sockpw")),
            ("host=/custom/dir user=carol dbname=c", Some("custompw")),
            ("host=we:ird user=dave dbname=app", Some("escaped-host")),
            ("host=db2 user=erin dbname=app", Some("first")),
            ("host=db3 user=frank dbname=app", Some("pw")),
            ("host=db1.example.com user=alice dbname=other", None),
            ("host=db1.example.com user=alice", None),
        ];
        for (dsn, expected) in cases {
            let params = ConnParams::parse(dsn).expect("test DSN parses");
            assert_eq!(
                params.pgpass_password(Some(dir.path())).as_deref(),
                expected,
                "DSN {dsn:?}"
            );
        }
    }

    #[test]
    fn pgpass_file_selection_and_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let line = "*:*:*:*:filepw\n";
        let private = dir.path().join("private");
        std::fs::create_dir(&private).expect("mkdir");
        write_pgpass(&private, line, 0o600);
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        let open_file = write_pgpass(&open, line, 0o644);
        let private_file = private.join(".pgpass");
        let cases = [
            // (passfile, home, expected)
            (None, Some(private.as_path()), Some("filepw")),
            (None, Some(open.as_path()), None),
            (None, None, None),
            (Some(private_file.clone()), None, Some("filepw")),
            (Some(open_file.clone()), Some(private.as_path()), None),
            (
                Some(dir.path().join("missing")),
                Some(private.as_path()),
                None,
            ),
        ];
        for (passfile, home, expected) in cases {
            let params = ConnParams {
                hosts: vec![tcp("h")],
                user: some("u"),
                dbname: some("d"),
                passfile: passfile.clone(),
                ..Default::default()
            };
            assert_eq!(
                params.pgpass_password(home).as_deref(),
                expected,
                "passfile {passfile:?}, home {home:?}"
            );
        }
    }
}
