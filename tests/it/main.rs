//! pgvigil's integration tests: one binary, one module per area, one
//! harness that starts real servers.

mod harness;

mod cli;
mod collectors;
mod docs;
mod explain;
mod http;
mod percentiles;
mod pgbouncer;
mod statements;
mod storage;
mod tls;
