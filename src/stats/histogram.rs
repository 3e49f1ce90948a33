//! Cumulative latency histograms built from estimated distributions.
//!
//! Each interval adds `calls × P(X ≤ bound)` to every bucket, so buckets
//! hold expected counts as floating point; they are rounded only when
//! published. Rounding a non-decreasing sequence keeps it non-decreasing,
//! so published buckets are always valid, and `_count` is exact.

use std::sync::Arc;

use super::latency::Dist;
use crate::metric::HistogramValue;

/// The default bucket upper bounds in seconds: 0.5 ms to 30 s (see docs/percentiles.md).
pub const DEFAULT_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0,
];

/// A cumulative histogram.
#[derive(Debug, Clone)]
pub struct Cumulative {
    bounds: Arc<[f64]>,
    below: Vec<f64>,
    count: f64,
    sum: f64,
}

impl Cumulative {
    /// An empty histogram over `bounds` (ascending, seconds).
    pub fn new(bounds: Arc<[f64]>) -> Cumulative {
        let below = vec![0.0; bounds.len()];
        Cumulative {
            bounds,
            below,
            count: 0.0,
            sum: 0.0,
        }
    }

    /// Adds one interval: `calls` calls distributed as `dist`, `total`
    /// seconds in all.
    pub fn add(&mut self, dist: &Dist, calls: f64, total: f64) {
        self.add_cdf(&dist.cdf_at(&self.bounds), calls, total);
    }

    /// Like [`Cumulative::add`] with the distribution's CDF at the bounds
    /// already computed (`dist.cdf_at(bounds)`).
    pub fn add_cdf(&mut self, cdf: &[f64], calls: f64, total: f64) {
        if calls <= 0.0 {
            return;
        }
        for (below, c) in self.below.iter_mut().zip(cdf) {
            *below += calls * c;
        }
        self.count += calls;
        self.sum += total;
    }

    /// The bucket bounds.
    pub fn bounds(&self) -> &Arc<[f64]> {
        &self.bounds
    }

    /// Adds another histogram's expected counts (same bounds).
    pub fn add_histogram(&mut self, other: &Cumulative) {
        debug_assert!(Arc::ptr_eq(&self.bounds, &other.bounds) || self.bounds == other.bounds);
        for (a, b) in self.below.iter_mut().zip(&other.below) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    /// Observations so far.
    pub fn count(&self) -> f64 {
        self.count
    }

    /// The histogram as published: per-bucket integer counts.
    pub fn value(&self) -> HistogramValue {
        let count = self.count.round().max(0.0) as u64;
        let mut previous = 0u64;
        let counts = self
            .below
            .iter()
            .map(|b| {
                let cumulative = (b.round().max(0.0) as u64).clamp(previous, count);
                let n = cumulative - previous;
                previous = cumulative;
                n
            })
            .collect();
        HistogramValue {
            bounds: self.bounds.clone(),
            counts,
            count,
            sum: self.sum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_accumulate_and_round_only_when_published() {
        let bounds: Arc<[f64]> = Arc::from([0.01, 0.1, 1.0]);
        let mut h = Cumulative::new(bounds);
        // 85 calls at 5 ms, 15 at 150 ms, over two intervals.
        let d = Dist::TwoPoint {
            lo: 0.005,
            hi: 0.150,
            p_hi: 0.15,
        };
        h.add(&d, 60.0, 60.0 * (0.85 * 0.005 + 0.15 * 0.150));
        h.add(&d, 40.0, 40.0 * (0.85 * 0.005 + 0.15 * 0.150));
        h.add(&Dist::Point(0.5), 0.0, 0.0); // no calls: nothing
        let v = h.value();
        assert_eq!(v.counts, [85, 0, 15]);
        assert_eq!(v.count, 100);
        assert!((v.sum - 2.675).abs() < 1e-9);
    }

    #[test]
    fn fractional_expectations_stay_monotonic() {
        let mut h = Cumulative::new(Arc::from([0.001, 0.002, 0.003]));
        let d = Dist::Beta {
            lo: 0.0,
            hi: 0.004,
            a: 2.0,
            b: 2.0,
        };
        for _ in 0..7 {
            h.add(&d, 3.0, 0.006);
        }
        let v = h.value();
        assert_eq!(v.count, 21);
        assert!(v.counts.iter().sum::<u64>() <= 21);
        let mut other = Cumulative::new(Arc::from([0.001, 0.002, 0.003]));
        other.add_histogram(&h);
        assert_eq!(other.value(), v);
    }
}
