//! Reaching a target: libpq-style connection parameters, TLS, the
//! monitoring session (reconnect with backoff) and capability detection.

pub mod caps;
pub mod colocation;
pub mod dsn;
pub mod session;
pub mod tls;
