//! pgvigil's integration tests: one binary, one module per area, one
//! harness that starts real servers.

mod harness;

mod alerts;
mod archiving;
mod cli;
mod collectors;
mod counters;
mod dashboards;
mod docs;
mod explain;
mod faults;
mod fleet;
mod host;
mod hostile;
mod http;
mod load;
// A table locked ACCESS EXCLUSIVE: its size carried over, the others published, nothing queued.
mod locked_table;
mod logs;
mod notify;
mod packaging;
mod page;
mod percentiles;
mod pgbouncer;
mod replication;
mod statements;
mod storage;
mod tls;
mod web;
