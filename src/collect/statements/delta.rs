//! From two cumulative readings of an entry to one interval, with reset
//! detection. Pure.
//!
//! An entry starts over when the whole view was reset, when it was evicted
//! and created again, or reset on its own; we see that as calls or time
//! going backwards, or (1.11+) a changed `stats_since`. The interval is then
//! everything the new entry counted. An entry not in the previous reading
//! is new since then, so its whole count belongs to the interval too.

use super::query::Reading;
use crate::stats::latency::{Moments, sum_of_squares};

/// Number of published counters per statement.
pub const COUNTER_FIELDS: usize = 8;

/// The published counters: calls, exec seconds, plan seconds, rows,
/// shared blocks hit and read, temp blocks written, WAL bytes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counters([f64; COUNTER_FIELDS]);

impl Counters {
    /// A reading's cumulative counters, times in seconds.
    pub fn from_reading(r: &Reading) -> Counters {
        Counters([
            r.calls,
            r.exec_ms / 1000.0,
            r.plan_ms / 1000.0,
            r.rows,
            r.shared_blks_hit,
            r.shared_blks_read,
            r.temp_blks_written,
            r.wal_bytes,
        ])
    }

    /// Adds another set of counters.
    pub fn add(&mut self, other: &Counters) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// The values, in publishing order.
    pub fn values(&self) -> [f64; COUNTER_FIELDS] {
        self.0
    }

    /// Execution seconds.
    pub fn exec_seconds(&self) -> f64 {
        self.0[1]
    }

    /// Planning seconds.
    pub fn plan_seconds(&self) -> f64 {
        self.0[2]
    }

    /// Rows.
    pub fn rows(&self) -> f64 {
        self.0[3]
    }

    /// Shared blocks hit.
    pub fn shared_blks_hit(&self) -> f64 {
        self.0[4]
    }

    /// Shared blocks read.
    pub fn shared_blks_read(&self) -> f64 {
        self.0[5]
    }
}

/// One entry between two readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Counter growth.
    pub growth: Counters,
    /// Latency moments, seconds.
    pub moments: Moments,
}

impl Interval {
    /// Two entries' intervals as one (the toplevel variants of a statement).
    pub fn merge(&self, other: &Interval) -> Interval {
        let mut growth = self.growth;
        growth.add(&other.growth);
        let (a, b) = (&self.moments, &other.moments);
        // An extreme of an entry without calls is not a reading.
        let extreme =
            |pick: fn(f64, f64) -> f64, x: f64, y: f64| match (a.calls > 0.0, b.calls > 0.0) {
                (true, true) => pick(x, y),
                (true, false) => x,
                _ => y,
            };
        let min = extreme(f64::min, a.min, b.min);
        let max = extreme(f64::max, a.max, b.max);
        Interval {
            growth,
            moments: Moments {
                calls: a.calls + b.calls,
                total: a.total + b.total,
                sumsq: a.sumsq + b.sumsq,
                min,
                max,
            },
        }
    }
}

fn sumsq_seconds(r: &Reading) -> f64 {
    sum_of_squares(r.calls, r.exec_ms, r.stddev_ms) / 1e6
}

/// Whether `current` is a new life of the entry rather than a continuation
/// of `previous`.
fn started_over(previous: &Reading, current: &Reading) -> bool {
    current.calls < previous.calls
        || current.exec_ms < previous.exec_ms
        || (previous.stats_since.is_some() && current.stats_since != previous.stats_since)
}

/// The interval between `previous` (absent: the entry is new) and
/// `current`; `reset_all` when the whole view was reset in between.
pub fn interval(previous: Option<&Reading>, current: &Reading, reset_all: bool) -> Interval {
    let cur = Counters::from_reading(current);
    let (growth, sumsq) = match previous {
        Some(prev) if !reset_all && !started_over(prev, current) => {
            let old = Counters::from_reading(prev);
            let mut growth = Counters::default();
            for (g, (c, o)) in growth.0.iter_mut().zip(cur.0.iter().zip(old.0)) {
                *g = (c - o).max(0.0);
            }
            (
                growth,
                (sumsq_seconds(current) - sumsq_seconds(prev)).max(0.0),
            )
        }
        _ => (cur, sumsq_seconds(current)),
    };
    Interval {
        growth,
        moments: Moments {
            calls: growth.0[0],
            total: growth.0[1],
            sumsq,
            min: current.min_ms / 1000.0,
            max: current.max_ms / 1000.0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reading of `values` (milliseconds), as pg_stat_statements would report it.
    fn reading(values: &[f64], since: Option<f64>) -> Reading {
        let n = values.len() as f64;
        let total: f64 = values.iter().sum();
        let mean = if n > 0.0 { total / n } else { 0.0 };
        let var = if n > 0.0 {
            values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n
        } else {
            0.0
        };
        Reading {
            calls: n,
            exec_ms: total,
            min_ms: values.iter().copied().fold(f64::INFINITY, f64::min),
            max_ms: values.iter().copied().fold(0.0, f64::max),
            stddev_ms: var.sqrt(),
            rows: n,
            stats_since: since,
            ..Reading::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn intervals_between_readings() {
        let a = [1.0, 2.0, 3.0];
        let ab = [1.0, 2.0, 3.0, 10.0, 20.0];
        // (previous, current, reset_all, expected calls, mean ms, variance ms²)
        let cases: [(Option<Reading>, Reading, bool, f64, f64, f64); 6] = [
            // growth: the interval is the two new calls, 10 and 20 ms
            (
                Some(reading(&a, None)),
                reading(&ab, None),
                false,
                2.0,
                15.0,
                25.0,
            ),
            // a new entry: everything it counted
            (None, reading(&a, None), false, 3.0, 2.0, 2.0 / 3.0),
            // reset inside the interval: only the post-reset calls
            (
                Some(reading(&ab, None)),
                reading(&[7.0, 9.0], None),
                false,
                2.0,
                8.0,
                1.0,
            ),
            // a full reset even though counts grew
            (
                Some(reading(&[1.0], None)),
                reading(&[4.0, 6.0], None),
                true,
                2.0,
                5.0,
                1.0,
            ),
            // 17+: stats_since changed although counts grew (evicted and re-created)
            (
                Some(reading(&[1.0], Some(100.0))),
                reading(&[4.0, 6.0], Some(200.0)),
                false,
                2.0,
                5.0,
                1.0,
            ),
            // no calls in between
            (
                Some(reading(&a, None)),
                reading(&a, None),
                false,
                0.0,
                0.0,
                0.0,
            ),
        ];
        for (i, (prev, cur, reset, calls, mean_ms, var_ms2)) in cases.iter().enumerate() {
            let iv = interval(prev.as_ref(), cur, *reset);
            let m = iv.moments;
            assert!(close(m.calls, *calls), "case {i}: calls {}", m.calls);
            assert!(
                close(m.mean() * 1000.0, *mean_ms),
                "case {i}: mean {}",
                m.mean() * 1000.0
            );
            assert!(
                close(m.variance() * 1e6, *var_ms2),
                "case {i}: variance {}",
                m.variance() * 1e6
            );
            assert!(
                iv.growth.values().iter().all(|v| *v >= 0.0),
                "case {i}: negative growth"
            );
        }
    }

    #[test]
    fn counters_going_backwards_never_give_negative_growth() {
        // Calls grew but rows went backwards (a concurrent reset of another
        // field cannot happen, but rounding can): clamp at zero.
        let mut prev = reading(&[1.0], None);
        prev.rows = 50.0;
        let cur = reading(&[1.0, 2.0], None);
        assert_eq!(interval(Some(&prev), &cur, false).growth.rows(), 0.0);
    }

    #[test]
    fn toplevel_variants_merge() {
        let a = interval(None, &reading(&[1.0, 3.0], None), false);
        let b = interval(None, &reading(&[10.0], None), false);
        let m = a.merge(&b).moments;
        assert_eq!(m.calls, 3.0);
        assert!(close(m.total, 0.014));
        assert!(close(m.min, 0.001) && close(m.max, 0.010));
        let none = interval(Some(&reading(&[5.0], None)), &reading(&[5.0], None), false);
        assert!(close(a.merge(&none).moments.max, 0.003));
    }
}
