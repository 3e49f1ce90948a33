//! Reaching a target: libpq-style connection parameters, TLS, the
//! monitoring session (reconnect with backoff) and capability detection;
//! `redis`: the one connection of a `[[redis]]` target.

pub(crate) mod caps;
pub(crate) mod colocation;
pub mod dsn;
pub mod redis;
pub(crate) mod session;
pub(crate) mod tls;
