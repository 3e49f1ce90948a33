//! Reaching a target: libpq-style connection parameters, TLS, the
//! monitoring session (reconnect with backoff) and capability detection.

pub(crate) mod caps;
pub(crate) mod colocation;
pub mod dsn;
pub(crate) mod session;
pub(crate) mod tls;
