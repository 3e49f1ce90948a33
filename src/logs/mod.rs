//! PostgreSQL's own log: reading it where the agent runs beside the server.
//!
//! - [`prefix`]: `log_line_prefix` escapes, and matching a stderr line's prefix (pure).
//! - [`record`]: log records and their assembly from stderr, csvlog and jsonlog (pure).
//! - [`event`]: what a record means to pgvigil (slow statements with their
//!   parameters, auto_explain plans, authentication failures, errors) (pure).
//! - [`duration`]: which `duration:` lines are executions, and the
//!   `log_min_duration_statement` in force for each database and role (pure).
//! - [`tail`]: following the log directory through rotation and truncation.
//! - [`feed`]: what the tailer hands the EXPLAIN worker.
//!
//! The `logs` collector ([`crate::collect::logs`]) ties them together.

pub mod duration;
pub mod event;
pub mod feed;
pub mod prefix;
pub mod record;
pub mod tail;
