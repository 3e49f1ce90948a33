//! Automatic, guarded EXPLAIN of slow statements; docs/explain.md says what
//! makes it harmless.
//!
//! - [`guard`]: what may be EXPLAINed, and whether with ANALYZE (pure).
//! - [`runner`]: the guarded EXPLAIN on a connection (read-only, rolled back).
//! - [`worker`]: selection, rate limits, parameters, plans and their metrics.
//! - [`plan`]: what an EXPLAIN produced (plain data the store and outputs read).
//! - [`findings`]: plan heuristics and the plan-shape hash (pure).
//! - [`redact`]: literal values out of plans (pure).
//! - [`render`]: a plan as an indented tree for humans (pure).

pub mod findings;
pub mod guard;
pub mod plan;
pub mod redact;
pub mod render;
pub mod runner;
pub mod worker;
