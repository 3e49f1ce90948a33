//! pgvigil: a PostgreSQL observability agent.
//!
//! # Layout
//!
//! Data flows one way: connection → collectors → snapshot store → outputs
//! (exposition, reports, page, APIs) → HTTP and the command line. A module
//! imports only from its own layer or below; `tests/it/structure.rs`
//! checks it (no import cycle, no import up the layers) and docs/design.md
//! draws it.
//!
//! Foundations (pure, or plain data):
//! - [`metric`]: descriptors, families and series, what everything passes.
//! - [`stats`]: pure math: counter growth, latency distributions from
//!   moments, cumulative histograms, bounded cardinality.
//! - [`sql`]: everything that touches pg_query (fingerprints, normalized
//!   texts, pgvigil's own statements).
//! - `logs`: PostgreSQL's own log: prefixes, records per format, events,
//!   tailing with rotation; the reader collectors share sits with them.
//! - `explain`: the EXPLAIN guard, plan findings, redaction, rendering and
//!   plan records (pure); the runner and the worker sit higher.
//! - `state_file`: the JSON files collectors keep across restarts,
//!   written atomically.
//! - [`cli`]: the command line definitions (clap); `shutdown`: signals;
//!   `web`: who may reach the HTTP server (basic auth, TLS, the
//!   connection cap).
//!
//! Reaching and describing a server:
//! - [`connection`]: libpq-style DSNs, TLS, the monitoring session with
//!   reconnect and backoff, capability detection, colocation; the one
//!   connection of a Redis target.
//! - [`config`]: the TOML config, raw then validated, every problem with
//!   its key path.
//!
//! The store:
//! - `snapshot`: the latest result of each collector; what scrapes read.
//!
//! Collection:
//! - [`collect`]: one file (or folder) per view family, one shape for all;
//!   `collect/redis/` holds the collectors of `[[redis]]` targets.
//! - `saturation`: connection saturation across PgBouncer and PostgreSQL;
//!   `notify`: desktop notifications of critical findings and lost
//!   targets.
//! - `schedule`: runs each collector on its interval within a budget,
//!   keeps `pg_up` truthful; the EXPLAIN worker (`explain`) runs beside it.
//!
//! Outputs:
//! - [`exposition`]: families to Prometheus text and OpenMetrics;
//!   [`report`]: to JSON and tables; `page`: the `/` HTML page, with the
//!   last hour's charts from `history` (a bounded ring per target).
//!
//! Composition and entry points:
//! - [`registry`]: every collector declared once (name, families, SQL,
//!   constructor); [`agent`]: wires targets, collectors, the store and the
//!   outputs; [`supervisor`]: the daemon's running targets, brought in
//!   line with the config on reload.
//! - [`http`]: the hyper server and its endpoints; [`commands`]: what each
//!   subcommand does (`main.rs` only wires it to [`cli`]); [`top`]: the
//!   live terminal view, on its own collectors or a running agent's APIs;
//!   [`demo`]: a throwaway server with a workload and the daemon on it.
#![deny(missing_docs)]

pub mod agent;
pub mod cli;
pub mod collect;
pub mod commands;
pub mod config;
pub mod connection;
pub mod demo;
pub(crate) mod explain;
pub mod exposition;
pub(crate) mod history;
pub mod http;
pub(crate) mod logs;
pub mod metric;
pub(crate) mod notify;
pub(crate) mod page;
pub mod registry;
pub mod report;
pub(crate) mod saturation;
pub(crate) mod schedule;
pub(crate) mod shutdown;
pub(crate) mod snapshot;
pub mod sql;
pub(crate) mod state_file;
pub mod stats;
pub mod supervisor;
pub mod top;
pub(crate) mod web;
