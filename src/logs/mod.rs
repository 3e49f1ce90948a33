//! PostgreSQL's own log: reading it where the agent runs beside the server.
//!
//! - [`prefix`]: `log_line_prefix` escapes, and matching a stderr line's prefix (pure).
//! - [`record`]: log records and their assembly from stderr, csvlog and jsonlog (pure).
//! - [`event`]: what a record means to pgvigil (slow statements with their
//!   parameters, auto_explain plans, authentication failures, errors) (pure).

pub mod event;
pub mod prefix;
pub mod record;
