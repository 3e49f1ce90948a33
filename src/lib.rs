//! pgvigil: a PostgreSQL observability agent.
//!
//! # Layout
//!
//! Data flows one way: collectors write snapshots; the HTTP server and the
//! command line only read them.
//!
//! - [`cli`]: the command line definitions (clap); [`commands`]: what each
//!   subcommand does. `main.rs` only wires the two.
//! - [`config`]: the TOML config, raw then validated, every problem with its
//!   key path.
//! - [`agent`]: wires targets, collectors, the store and the outputs.
//! - [`target`]: libpq-style DSNs, TLS, the monitoring session with
//!   reconnect and backoff, capability detection.
//! - [`schedule`]: runs each collector on its interval within a time budget.
//! - [`collect`]: one file per view family (server, connections, databases,
//!   statements, the agent's own process).
//! - [`snapshot`]: the latest result of each collector; what scrapes read.
//! - [`metric`]: descriptors, families and series; [`exposition`]: them to
//!   Prometheus text and OpenMetrics; [`report`]: them to JSON and tables.
//! - [`stats`]: pure math: growth of resettable counters, latency
//!   distributions from moments, cumulative histograms, top-N with
//!   hysteresis.
//! - [`sql`]: everything that touches pg_query (fingerprints, normalized
//!   texts, recognising pgvigil's own statements).
//! - [`saturation`]: connection saturation across PgBouncer and PostgreSQL,
//!   arithmetic on published families.
//! - [`logs`]: PostgreSQL's own log (prefix, records, events).
//! - [`http`]: the hyper server and its endpoints; [`page`]: the `/` HTML
//!   page; [`notify`]: desktop notifications of new critical findings and
//!   lost targets; [`shutdown`]: signals.
//! - [`web`]: who may reach the HTTP server: basic auth, TLS, the
//!   connection cap.
#![deny(missing_docs)]

pub mod agent;
pub mod cli;
pub mod collect;
pub mod commands;
pub mod config;
pub mod explain;
pub mod exposition;
pub mod http;
pub mod logs;
pub mod metric;
pub mod notify;
pub mod page;
pub mod registry;
pub mod report;
pub mod saturation;
pub mod schedule;
pub mod shutdown;
pub mod snapshot;
pub mod sql;
pub mod stats;
pub mod target;
pub mod web;
