//! PostgreSQL's own log: reading it where the agent runs beside the server.
//!
//! Parsing, pure:
//! - [`prefix`]: `log_line_prefix` escapes, and matching a stderr line's prefix.
//! - [`record`]: log records and their assembly from stderr, csvlog and
//!   jsonlog, one reader per format.
//! - [`event`]: what a record means to pgvigil (slow statements with their
//!   parameters, auto_explain plans, authentication failures, errors).
//! - [`duration`]: which `duration:` lines are executions, and the
//!   `log_min_duration_statement` in force for each database and role.
//!
//! Reading:
//! - [`tail`]: following the log directory through rotation and truncation.
//! - [`reader`]: a target's reading state: what the records counted, the
//!   slow executions kept for exact tails, the thresholds they are judged by.
//! - [`state`]: what the reader keeps across restarts (its state file).
//! - [`capped`]: counters with a cap on their keys.
//! - [`interval`]: what the reader hands the statements collector.
//! - [`feed`]: what the reader hands the EXPLAIN worker.
//!
//! A foundation the collectors use: nothing here knows them. The `logs`
//! collector (`collect/logs.rs`) asks the server for the settings,
//! has the [`reader::LogReader`] read, and publishes its counts.

pub mod capped;
pub mod duration;
pub mod event;
pub mod feed;
pub mod interval;
pub mod prefix;
pub mod reader;
pub mod record;
pub mod state;
pub mod tail;

/// (datname, usename, fingerprint): a statement as a role ran it in a
/// database.
pub type StatementKey = (String, String, String);
