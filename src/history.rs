//! The last hour of a few figures per target, for the `/` page's charts:
//! database load (average active sessions), transactions per second,
//! instance p99 and replication lag. A bounded ring per target, sampled
//! from the store every [`SAMPLE_EVERY`]; nothing is kept beyond
//! [`POINTS`] samples, and a target no longer configured is forgotten.
//!
//! Rates come from the server's own counters between two samples, so a
//! statistics reset or a changed server gives a gap (no point), never a
//! negative or made-up rate. A figure pgvigil does not know is absent.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use crate::collect::{active_sessions, databases};
use crate::metric::{Desc, Value};
use crate::report::{replication_lag, statements_of};
use crate::snapshot::TargetView;

/// How often the ring is fed.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples kept: one hour.
pub const POINTS: usize = 720;

/// One sample of one target.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    /// Unix seconds.
    pub at: f64,
    /// Average active sessions since the previous sample.
    pub load: Option<f64>,
    /// Commits and rollbacks per second since the previous sample.
    pub tps: Option<f64>,
    /// The statements collector's last instance-wide p99, seconds.
    pub p99: Option<f64>,
    /// The largest replay lag, seconds.
    pub lag: Option<f64>,
}

#[derive(Debug, Default)]
struct Ring {
    points: VecDeque<Point>,
    /// (at, sampled active-session seconds, transactions) at the last sample.
    last: Option<(f64, Option<f64>, Option<f64>)>,
}

/// Every target's ring.
#[derive(Debug, Default)]
pub struct History {
    rings: Mutex<HashMap<String, Ring>>,
}

fn sum(view: &TargetView, desc: &'static Desc) -> Option<f64> {
    let family = view.family(desc)?;
    Some(
        family
            .series
            .iter()
            .map(|s| match s.value {
                Value::Number(v) => v,
                _ => 0.0,
            })
            .sum(),
    )
}

/// Growth per second between two counter readings; none across a reset.
fn rate(previous: Option<f64>, current: Option<f64>, seconds: f64) -> Option<f64> {
    let (p, c) = (previous?, current?);
    (c >= p && seconds > 0.0).then(|| (c - p) / seconds)
}

impl History {
    /// Adds one sample per target at `now` (Unix seconds).
    pub fn sample(&self, views: &[TargetView], now: f64) {
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        // Redis targets have none of these series; their section on the page is its own.
        let views = || views.iter().filter(|v| !v.redis);
        rings.retain(|name, _| views().any(|v| *v.name == **name));
        for view in views() {
            let ring = rings.entry(view.name.to_string()).or_default();
            let active = sum(view, &active_sessions::SECONDS);
            let xacts = match (
                sum(view, &databases::XACT_COMMIT),
                sum(view, &databases::XACT_ROLLBACK),
            ) {
                (Some(c), Some(r)) => Some(c + r),
                _ => None,
            };
            let (load, tps) = match ring.last {
                Some((at, a, x)) => (rate(a, active, now - at), rate(x, xacts, now - at)),
                None => (None, None),
            };
            ring.last = Some((now, active, xacts));
            let point = Point {
                at: now,
                load,
                tps,
                p99: statements_of(view)
                    .and_then(|r| r.instance.quantiles)
                    .map(|q| q.p99),
                lag: replication_lag(view),
            };
            ring.points.push_back(point);
            while ring.points.len() > POINTS {
                ring.points.pop_front();
            }
        }
    }

    /// A target's samples, oldest first.
    pub fn points(&self, target: &str) -> Vec<Point> {
        self.rings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(target)
            .map(|r| r.points.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_skip_resets() {
        assert_eq!(rate(Some(10.0), Some(30.0), 10.0), Some(2.0));
        assert_eq!(rate(Some(30.0), Some(10.0), 10.0), None);
        assert_eq!(rate(None, Some(10.0), 10.0), None);
        assert_eq!(rate(Some(1.0), Some(2.0), 0.0), None);
    }

    fn empty(name: &str) -> TargetView {
        TargetView {
            name: name.into(),
            up: None,
            redis: false,
            collectors: Vec::new(),
        }
    }

    #[test]
    fn the_ring_is_bounded_and_forgets_removed_targets() {
        let history = History::default();
        for i in 0..(POINTS + 50) {
            history.sample(&[empty("a")], i as f64);
        }
        let points = history.points("a");
        assert_eq!(points.len(), POINTS);
        assert_eq!(points[0].at, 50.0);
        history.sample(&[empty("b")], 1.0);
        assert!(history.points("a").is_empty());
    }
}
