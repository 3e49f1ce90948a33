//! Time around the work rather than in it: planning, JIT compilation, and
//! parallel workers that were planned but never started.
//!
//! Planning and JIT are statement-wide (they read the top-level object, not
//! a node); missing workers are reported on their Gather node.

use serde_json::{Map, Value};

use super::plan::{fmt_num, num};
use super::{Context, Finding, QUERY_PATH, Severity};

/// Planning under 10 ms is not worth a remark, even if execution is faster.
const PLANNING_INFO_MS: f64 = 10.0;
/// Planning over 100 ms on every execution is a real cost.
const PLANNING_WARNING_MS: f64 = 100.0;
/// JIT is a problem when it takes over half the run…
const JIT_SHARE: f64 = 0.5;
/// …and costs a noticeable absolute time.
const JIT_MIN_MS: f64 = 50.0;

pub(super) fn planning_dominates(top: &Map<String, Value>) -> Option<Finding> {
    let planning = num(top, "Planning Time")?;
    let execution = num(top, "Execution Time")?;
    if planning <= execution || planning < PLANNING_INFO_MS {
        return None;
    }
    let severity = if planning >= PLANNING_WARNING_MS {
        Severity::Warning
    } else {
        Severity::Info
    };
    Some(Finding {
        id: "planning_dominates",
        severity,
        node_path: QUERY_PATH.to_owned(),
        relation: None,
        explanation: format!("planning took {planning:.1} ms, longer than execution ({execution:.1} ms)"),
        action: "use a prepared statement so the plan is reused; fewer partitions or joins also plan faster".to_owned(),
    })
}

pub(super) fn jit_dominates(top: &Map<String, Value>) -> Option<Finding> {
    let timing = top.get("JIT")?.as_object()?.get("Timing")?.as_object()?;
    let jit = num(timing, "Total")?;
    let execution = num(top, "Execution Time")?;
    if jit < JIT_MIN_MS || jit <= execution * JIT_SHARE {
        return None;
    }
    Some(Finding {
        id: "jit_dominates",
        severity: Severity::Warning,
        node_path: QUERY_PATH.to_owned(),
        relation: None,
        explanation: format!(
            "JIT compilation took {jit:.1} ms of {execution:.1} ms execution ({:.0}%)",
            jit / execution.max(f64::MIN_POSITIVE) * 100.0
        ),
        action: "raise jit_above_cost (and the inline/optimize thresholds), or SET jit = off for this workload"
            .to_owned(),
    })
}

pub(super) fn parallel_workers_not_launched(
    node: &Map<String, Value>,
    at: &Context,
) -> Option<Finding> {
    let planned = num(node, "Workers Planned")?;
    let launched = num(node, "Workers Launched")?;
    if launched >= planned {
        return None;
    }
    Some(Finding {
        id: "parallel_workers_not_launched",
        severity: Severity::Warning,
        node_path: at.path.clone(),
        relation: None,
        explanation: format!(
            "only {} of {} planned parallel workers started, so fewer processes did the work",
            fmt_num(launched),
            fmt_num(planned)
        ),
        action: "raise max_parallel_workers / max_worker_processes, or run fewer parallel queries at once".to_owned(),
    })
}
