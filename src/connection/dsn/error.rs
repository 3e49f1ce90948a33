//! Why a connection string or a `PG*` variable was rejected.
//!
//! For the messages only; no parsing happens here. Every message names the
//! offending key, URI part or byte offset, and the rejected value where it
//! cannot be the password: never the password, never the whole DSN (which
//! may hold it).

use super::SslMode;

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
    /// `hostaddr` and `host` both given, but not one address per host name.
    #[error(
        "{hostaddrs} hostaddr entries given for {hosts} hosts: give one address per host, or leave host out"
    )]
    HostaddrCountMismatch {
        /// Number of hosts.
        hosts: usize,
        /// Number of addresses.
        hostaddrs: usize,
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

pub(super) fn invalid_value(key: &str, value: &str, expected: &'static str) -> DsnError {
    DsnError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

pub(super) fn uri_error(part: impl Into<String>, reason: &'static str) -> DsnError {
    DsnError::Uri {
        part: part.into(),
        reason,
    }
}

pub(super) fn unsupported(key: &str, reason: &'static str) -> DsnError {
    DsnError::Unsupported {
        key: key.to_owned(),
        reason,
    }
}
