//! The `/` page's section of a Redis target: state, hit ratio, memory,
//! clients, the top commands with their latency percentiles and the
//! slowest slow-log entries (command names only).

use std::fmt::Write as _;

use super::escape;
use crate::collect::redis::info;
use crate::report::redis::{commands_of, hit_ratio, slowlog_of};
use crate::snapshot::TargetView;

fn micros(seconds: Option<f64>) -> String {
    seconds
        .map(|s| format!("{:.1}", s * 1e6))
        .unwrap_or_else(|| "-".into())
}

fn number(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// A Redis target's section, after its heading and collectors.
pub fn section(view: &TargetView, out: &mut String) {
    let _ = writeln!(
        out,
        "<h3>Redis</h3><p>hit ratio {} · memory {} of {} bytes (0: no limit) · clients {} of {} · blocked {}</p>",
        hit_ratio(view)
            .map(|r| format!("{:.1}%", r * 100.0))
            .unwrap_or_else(|| "-".into()),
        number(view.value(&info::MEMORY_USED, &[])),
        number(view.value(&info::MEMORY_MAX, &[])),
        number(view.value(&info::CONNECTED_CLIENTS, &[])),
        number(view.value(&info::MAX_CLIENTS, &[])),
        number(view.value(&info::BLOCKED_CLIENTS, &[])),
    );
    if let Some(report) = commands_of(view).filter(|r| !r.top.is_empty()) {
        out.push_str(
            "<table class=\"redis-commands\"><tr><th>command</th><th>calls</th><th>total s</th>\
             <th>mean µs</th><th>p50 µs</th><th>p99 µs</th><th>p99.9 µs</th><th>errors</th></tr>\n",
        );
        for c in &report.top {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&c.cmd),
                c.calls,
                c.total_seconds,
                micros(Some(c.mean_seconds)),
                micros(c.p50_seconds),
                micros(c.p99_seconds),
                micros(c.p999_seconds),
                c.rejected_calls + c.failed_calls,
            );
        }
        out.push_str("</table>\n");
    }
    if let Some(slow) = slowlog_of(view).filter(|s| !s.slowest.is_empty()) {
        out.push_str("<h3>Slowest Redis slow-log entries</h3><table class=\"redis-slowlog\"><tr><th>id</th><th>command</th><th>ms</th></tr>\n");
        for e in &slow.slowest {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{:.3}</td></tr>",
                e.id,
                escape(&e.command),
                e.duration_seconds * 1e3
            );
        }
        out.push_str("</table>\n");
    }
}
