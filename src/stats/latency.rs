//! Latency distributions estimated from pg_stat_statements' moments.
//!
//! pg_stat_statements keeps, per entry, only cumulative calls, total time,
//! min, max and a population standard deviation. From two samples we get an
//! interval's calls `n`, total `T` and sum of squares `Q` (because
//! `Q = n·s² + T²/n`), hence its mean and variance. The shape is assumed:
//!
//! - one call, or no spread at all: a point mass (exact);
//! - otherwise a **beta distribution scaled to the entry's [min, max]**,
//!   fitted by moments. When the variance reaches the Bhatia–Davis bound
//!   `(max − mean)(mean − min)` the beta becomes U-shaped and, at the bound,
//!   a two-point distribution: the signature of bimodal latency (cache hit
//!   or miss, lock wait or not) that a log-normal cannot represent;
//! - but a **log-normal** by moments when it is consistent with the observed
//!   min and max (it expects at most 3 of the interval's calls beyond
//!   them): right-skewed latency with a long tail is log-normal-like, and a
//!   beta confined to the observed range cuts that tail short. The bimodal
//!   and bounded cases fail this check, so they keep the beta. The
//!   log-normal is also the fallback when min and max are unusable
//!   (missing, or too narrow for the variance, as after a min/max-only
//!   reset).
//!
//! min and max are cumulative since the entry's last reset, so one stale
//! outlier can stretch them far beyond this interval's values. The support
//! is therefore clipped to `mean ± 20σ`: past that, by Chebyshev, lies at
//! most 0.25% of the mass, and the clipped beta stays well conditioned
//! (α + β ≤ 400). `docs/percentiles.md` has the measurements behind this
//! choice. Everything here is in seconds and pure.

use statrs::function::{beta::checked_beta_reg, erf};

/// One statement's calls in one interval, summarised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// Calls in the interval.
    pub calls: f64,
    /// Total execution time in the interval, seconds.
    pub total: f64,
    /// Sum of squared execution times in the interval, seconds².
    pub sumsq: f64,
    /// The entry's minimum (cumulative since its reset), seconds; NaN if unknown.
    pub min: f64,
    /// The entry's maximum (cumulative since its reset), seconds; NaN if unknown.
    pub max: f64,
}

/// `Q = n·s² + T²/n`: the sum of squares behind a population standard
/// deviation. Zero when there are no calls.
pub fn sum_of_squares(calls: f64, total: f64, stddev: f64) -> f64 {
    if calls > 0.0 {
        calls * stddev * stddev + total * total / calls
    } else {
        0.0
    }
}

impl Moments {
    /// Mean time per call.
    pub fn mean(&self) -> f64 {
        if self.calls > 0.0 {
            self.total / self.calls
        } else {
            0.0
        }
    }

    /// Variance of the interval's times, never negative (rounding can make
    /// `Q/n − mean²` slightly so).
    pub fn variance(&self) -> f64 {
        if self.calls > 0.0 {
            let m = self.mean();
            (self.sumsq / self.calls - m * m).max(0.0)
        } else {
            0.0
        }
    }
}

/// Half-width of the support kept around the mean, in standard deviations.
pub const CLIP_SIGMAS: f64 = 20.0;

/// An estimated distribution of one statement's latency in one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    /// Every call took the same time.
    Point(f64),
    /// A share `p_hi` of calls took `hi`, the rest `lo`.
    TwoPoint {
        /// Lower value.
        lo: f64,
        /// Upper value.
        hi: f64,
        /// Probability of `hi`.
        p_hi: f64,
    },
    /// Beta(a, b) scaled to [lo, hi].
    Beta {
        /// Lower end of the support.
        lo: f64,
        /// Upper end of the support.
        hi: f64,
        /// First shape parameter.
        a: f64,
        /// Second shape parameter.
        b: f64,
    },
    /// Log-normal with the given parameters of the underlying normal.
    LogNormal {
        /// Mean of ln(x).
        mu: f64,
        /// Standard deviation of ln(x).
        sigma: f64,
    },
}

/// Which shape to assume. `Auto` is what pgvigil publishes (chosen by
/// measurement, see the module docs); the others exist for comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// The log-normal when it is consistent with the observed min and max,
    /// else the beta.
    Auto,
    /// Beta on the clipped [min, max], log-normal as fallback.
    Beta,
    /// Log-normal by moments, ignoring min and max.
    LogNormal,
}

/// Estimates the interval's distribution; `None` without calls.
pub fn estimate(m: &Moments, model: Model) -> Option<Dist> {
    if m.calls.is_nan() || m.calls < 1.0 || !m.total.is_finite() {
        return None;
    }
    let mean = m.mean();
    let var = m.variance();
    let sd = var.sqrt();
    if m.calls < 1.5 || sd <= mean.abs() * 1e-9 || mean <= 0.0 {
        return Some(Dist::Point(mean.max(0.0)));
    }
    let lognormal = lognormal_fit(mean, var);
    match model {
        Model::LogNormal => Some(lognormal),
        Model::Auto if consistent(&lognormal, m) => Some(lognormal),
        Model::Auto | Model::Beta => Some(beta_fit(mean, var, m.min, m.max).unwrap_or(lognormal)),
    }
}

/// Expected calls beyond an observed extreme above which a fitted model is
/// rejected. If the model is right, the expected number of n calls beyond
/// the largest of them is n/(n+1) ≈ 1, and more than 3 happens about 5% of
/// the time.
pub const EXTREME_TOLERANCE: f64 = 3.0;

/// Whether a fitted distribution agrees with the observed extremes: it
/// must not expect more than [`EXTREME_TOLERANCE`] of the interval's calls
/// above the maximum or below the minimum (which bound every call of the
/// interval).
fn consistent(d: &Dist, m: &Moments) -> bool {
    if !(m.min.is_finite() && m.max.is_finite()) {
        return true;
    }
    let above = m.calls * (1.0 - d.cdf(m.max));
    let below = m.calls * d.cdf(m.min);
    above <= EXTREME_TOLERANCE && below <= EXTREME_TOLERANCE
}

fn lognormal_fit(mean: f64, var: f64) -> Dist {
    let s2 = (1.0 + var / (mean * mean)).ln();
    Dist::LogNormal {
        mu: mean.ln() - s2 / 2.0,
        sigma: s2.sqrt(),
    }
}

fn beta_fit(mean: f64, var: f64, min: f64, max: f64) -> Option<Dist> {
    if !(min.is_finite() && max.is_finite()) || min > mean || max < mean || max <= min {
        return None;
    }
    let sd = var.sqrt();
    let lo = min.max(mean - CLIP_SIGMAS * sd).max(0.0);
    let hi = max.min(mean + CLIP_SIGMAS * sd);
    let width = hi - lo;
    if width <= 0.0 {
        return None;
    }
    let x = (mean - lo) / width;
    let y = var / (width * width);
    let bound = x * (1.0 - x);
    if y > bound * (1.0 + 1e-6) {
        // More spread than the range allows: min/max do not describe this
        // interval (a min/max-only reset, say).
        return None;
    }
    if y >= bound * (1.0 - 1e-6) {
        return Some(Dist::TwoPoint { lo, hi, p_hi: x });
    }
    let common = bound / y - 1.0;
    Some(Dist::Beta {
        lo,
        hi,
        a: x * common,
        b: (1.0 - x) * common,
    })
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * erf::erfc(-z / std::f64::consts::SQRT_2)
}

impl Dist {
    /// The method name published with quantiles.
    pub fn name(&self) -> &'static str {
        match self {
            Dist::Point(_) => "point",
            Dist::TwoPoint { .. } => "two-point",
            Dist::Beta { .. } => "beta",
            Dist::LogNormal { .. } => "lognormal",
        }
    }

    /// Whether quantiles of this distribution are exact rather than
    /// estimated (all calls took the same time).
    pub fn is_exact(&self) -> bool {
        matches!(self, Dist::Point(_))
    }

    /// P(X ≤ x).
    pub fn cdf(&self, x: f64) -> f64 {
        match *self {
            Dist::Point(v) => f64::from(u8::from(x >= v)),
            Dist::TwoPoint { lo, hi, p_hi } => {
                if x < lo {
                    0.0
                } else if x < hi {
                    1.0 - p_hi
                } else {
                    1.0
                }
            }
            Dist::Beta { lo, hi, a, b } => {
                if x <= lo {
                    0.0
                } else if x >= hi {
                    1.0
                } else {
                    checked_beta_reg(a, b, (x - lo) / (hi - lo))
                        .unwrap_or(0.5)
                        .clamp(0.0, 1.0)
                }
            }
            Dist::LogNormal { mu, sigma } => {
                if x <= 0.0 {
                    0.0
                } else {
                    normal_cdf((x.ln() - mu) / sigma)
                }
            }
        }
    }

    /// The support's ends (for log-normal, its 1e-9 and 1−1e-9 quantiles).
    pub fn range(&self) -> (f64, f64) {
        match *self {
            Dist::Point(v) => (v, v),
            Dist::TwoPoint { lo, hi, .. } | Dist::Beta { lo, hi, .. } => (lo, hi),
            Dist::LogNormal { mu, sigma } => {
                let z = 5.997807; // Φ⁻¹(1 − 1e-9)
                ((mu - z * sigma).exp(), (mu + z * sigma).exp())
            }
        }
    }

    /// The smallest x with P(X ≤ x) ≥ p.
    pub fn quantile(&self, p: f64) -> f64 {
        let p = p.clamp(0.0, 1.0);
        match *self {
            Dist::Point(v) => v,
            Dist::TwoPoint { lo, hi, p_hi } => {
                if p <= 1.0 - p_hi {
                    lo
                } else {
                    hi
                }
            }
            Dist::LogNormal { mu, sigma } => {
                let z = std::f64::consts::SQRT_2 * erf::erf_inv(2.0 * p - 1.0);
                (mu + sigma * z).exp()
            }
            Dist::Beta { .. } => {
                let (lo, hi) = self.range();
                bisect(lo, hi, p, |x| self.cdf(x))
            }
        }
    }
}

/// Smallest x in [lo, hi] with `cdf(x) ≥ p`, to a relative precision of
/// about 1e-9 of the range.
fn bisect(lo: f64, hi: f64, p: f64, cdf: impl Fn(f64) -> f64) -> f64 {
    bisect_to(lo, hi, p, 1e-9, cdf)
}

/// [`bisect`] to a relative precision of `rel` of the result.
fn bisect_to(mut lo: f64, mut hi: f64, p: f64, rel: f64, cdf: impl Fn(f64) -> f64) -> f64 {
    if cdf(lo) >= p {
        return lo;
    }
    for _ in 0..64 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) >= p {
            hi = mid;
        } else {
            lo = mid;
        }
        if hi - lo <= 1e-12 + hi.abs() * rel {
            break;
        }
    }
    hi
}

/// Mixture quantiles are located to 0.01%: far finer than any estimate is
/// accurate, and each step evaluates every overlapping statement.
const MIXTURE_PRECISION: f64 = 1e-4;

/// A weighted mixture of distributions: the latency of a random call among
/// several statements, each weighted by its calls.
///
/// Every part comes with its CDF at a fixed set of bounds (the histogram's,
/// computed once for both uses). A quantile is then bracketed by those
/// bounds, and only the parts whose support overlaps the bracket are
/// evaluated while bisecting inside it: with a thousand active statements
/// that is a few dozen CDF evaluations per step instead of a thousand.
#[derive(Debug, Clone)]
pub struct Mixture {
    bounds: std::sync::Arc<[f64]>,
    below: Vec<f64>,
    parts: Vec<Part>,
    weight: f64,
    total: f64,
    /// `Some(v)` while every part is a point mass at `v`.
    single: Option<Option<f64>>,
}

#[derive(Debug, Clone)]
struct Part {
    weight: f64,
    dist: Dist,
    lo: f64,
    hi: f64,
}

impl Dist {
    /// The distribution's mean.
    pub fn mean(&self) -> f64 {
        match *self {
            Dist::Point(v) => v,
            Dist::TwoPoint { lo, hi, p_hi } => lo + p_hi * (hi - lo),
            Dist::Beta { lo, hi, a, b } => lo + (hi - lo) * a / (a + b),
            Dist::LogNormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
        }
    }

    /// The CDF at each of `bounds`.
    pub fn cdf_at(&self, bounds: &[f64]) -> Vec<f64> {
        bounds.iter().map(|b| self.cdf(*b)).collect()
    }
}

impl Mixture {
    /// An empty mixture bracketing quantiles with `bounds` (ascending).
    pub fn new(bounds: std::sync::Arc<[f64]>) -> Mixture {
        let below = vec![0.0; bounds.len()];
        Mixture {
            bounds,
            below,
            parts: Vec::new(),
            weight: 0.0,
            total: 0.0,
            single: None,
        }
    }

    /// Adds `dist` with `weight` calls; `cdf` is `dist.cdf_at(bounds)`.
    pub fn add(&mut self, weight: f64, dist: Dist, cdf: &[f64]) {
        if weight <= 0.0 {
            return;
        }
        for (b, c) in self.below.iter_mut().zip(cdf) {
            *b += weight * c;
        }
        let (lo, hi) = dist.range();
        self.parts.push(Part {
            weight,
            dist,
            lo,
            hi,
        });
        self.weight += weight;
        self.total += weight * dist.mean();
        self.single = match (self.single, dist) {
            (None, Dist::Point(v)) => Some(Some(v)),
            (Some(Some(a)), Dist::Point(v)) if a == v => Some(Some(a)),
            _ => Some(None),
        };
    }

    /// The sum of all parts' values (calls × mean).
    pub fn total(&self) -> f64 {
        self.total
    }

    /// The one value every call took, if that is what the parts say.
    pub fn single_value(&self) -> Option<f64> {
        self.single.flatten()
    }

    /// Total weight (calls).
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// P(X ≤ x).
    pub fn cdf(&self, x: f64) -> f64 {
        if self.weight <= 0.0 {
            return 0.0;
        }
        self.parts
            .iter()
            .map(|p| p.weight * p.dist.cdf(x))
            .sum::<f64>()
            / self.weight
    }

    /// The smallest x with P(X ≤ x) ≥ p; `None` when empty.
    pub fn quantile(&self, p: f64) -> Option<f64> {
        if let [only] = self.parts.as_slice() {
            return Some(only.dist.quantile(p));
        }
        let lo = self.parts.iter().map(|p| p.lo).reduce(f64::min)?;
        let hi = self.parts.iter().map(|p| p.hi).reduce(f64::max)?;
        let target = p.clamp(0.0, 1.0) * self.weight;
        // Bracket with the bounds: the quantile lies above the last bound
        // holding less than the target and at or below the first holding it.
        let (mut from, mut to) = (lo, hi);
        for (bound, below) in self.bounds.iter().zip(&self.below) {
            if *below >= target {
                to = to.min(*bound);
                break;
            }
            from = from.max(*bound);
        }
        if from > to {
            from = to;
        }
        let mut settled = 0.0;
        let mut live = Vec::new();
        for part in &self.parts {
            if part.hi <= from {
                settled += part.weight;
            } else if part.lo <= to {
                live.push(part);
            }
        }
        let cdf = |x: f64| {
            (settled + live.iter().map(|p| p.weight * p.dist.cdf(x)).sum::<f64>()) / self.weight
        };
        Some(bisect_to(from, to, p, MIXTURE_PRECISION, cdf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments_of(values: &[f64], min: f64, max: f64) -> Moments {
        Moments {
            calls: values.len() as f64,
            total: values.iter().sum(),
            sumsq: values.iter().map(|v| v * v).sum(),
            min,
            max,
        }
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-12)
    }

    #[test]
    fn sum_of_squares_recovers_the_interval_variance() {
        // Two cumulative samples of an entry: first [1, 3], then [1, 3, 5, 7].
        let s1 = [1.0, 3.0];
        let s2 = [1.0, 3.0, 5.0, 7.0];
        let pop_sd = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let q1 = sum_of_squares(2.0, 4.0, pop_sd(&s1));
        let q2 = sum_of_squares(4.0, 16.0, pop_sd(&s2));
        let interval = Moments {
            calls: 2.0,
            total: 12.0,
            sumsq: q2 - q1,
            min: 1.0,
            max: 7.0,
        };
        assert!(close(interval.mean(), 6.0, 1e-12));
        assert!(
            close(interval.variance(), 1.0, 1e-9),
            "{}",
            interval.variance()
        );
        assert_eq!(sum_of_squares(0.0, 0.0, 0.0), 0.0);
    }

    #[test]
    fn degenerate_intervals() {
        let cases: [(Moments, Option<Dist>); 4] = [
            // no calls
            (
                Moments {
                    calls: 0.0,
                    total: 0.0,
                    sumsq: 0.0,
                    min: 1.0,
                    max: 2.0,
                },
                None,
            ),
            // one call: exact
            (moments_of(&[0.25], 0.1, 0.9), Some(Dist::Point(0.25))),
            // zero variance: exact (0.005 is not exact in binary; 40 of them sum to 8 in 0.2)
            (
                moments_of(&[0.125; 40], 0.125, 0.125),
                Some(Dist::Point(0.125)),
            ),
            // counters going backwards gave a negative total: nothing sensible
            (
                Moments {
                    calls: 3.0,
                    total: f64::NAN,
                    sumsq: 0.0,
                    min: 0.0,
                    max: 1.0,
                },
                None,
            ),
        ];
        for (m, want) in cases {
            assert_eq!(estimate(&m, Model::Beta), want, "{m:?}");
        }
    }

    #[test]
    fn bimodal_latency_is_a_u_shaped_beta_with_the_right_tail() {
        // 85% at 5 ms, 15% at 150 ms: the experiment.
        let mut values = vec![0.005; 85];
        values.extend([0.150; 15]);
        let m = moments_of(&values, 0.005, 0.150);
        let d = estimate(&m, Model::Beta).unwrap();
        assert!(matches!(d, Dist::TwoPoint { .. }), "{d:?}");
        assert!(close(d.quantile(0.99), 0.150, 0.01));
        assert!(close(d.quantile(0.50), 0.005, 0.01));
        // A log-normal by moments misses the true 150 ms by far (it puts
        // p99 past the maximum, at about 224 ms).
        let ln = estimate(&m, Model::LogNormal).unwrap();
        assert!(
            (ln.quantile(0.99) - 0.150).abs() > 0.05,
            "{}",
            ln.quantile(0.99)
        );
    }

    #[test]
    fn near_bimodal_is_a_beta_close_to_the_truth() {
        // Not exactly two values: 5±0.5 ms and 150±10 ms.
        let mut values: Vec<f64> = (0..85)
            .map(|i| 0.0045 + 0.001 * (i as f64 / 84.0))
            .collect();
        values.extend((0..15).map(|i| 0.140 + 0.020 * (i as f64 / 14.0)));
        let m = moments_of(&values, 0.0045, 0.160);
        let d = estimate(&m, Model::Beta).unwrap();
        assert!(matches!(d, Dist::Beta { .. }), "{d:?}");
        let p99 = d.quantile(0.99);
        assert!(p99 > 0.13 && p99 <= 0.160, "p99 {p99}");
    }

    #[test]
    fn a_stale_max_is_clipped_and_the_tail_stays_plausible() {
        // 1 ms ± 0.1 ms this interval; the max is a 30 s lock wait from long ago.
        let values: Vec<f64> = (0..1000)
            .map(|i| 0.0009 + 0.0002 * (i as f64 / 999.0))
            .collect();
        let m = moments_of(&values, 0.0009, 30.0);
        let d = estimate(&m, Model::Beta).unwrap();
        let Dist::Beta { hi, a, b, .. } = d else {
            panic!("{d:?}")
        };
        assert!(hi < 0.003 && a + b <= 401.0, "{d:?}");
        let p99 = d.quantile(0.99);
        assert!(p99 > 0.00105 && p99 < 0.0013, "p99 {p99}");
    }

    #[test]
    fn a_range_too_narrow_for_the_variance_falls_back_to_lognormal() {
        let values = [0.001, 0.002, 0.010, 0.050];
        let m = moments_of(&values, 0.002, 0.011); // min/max reset mid-interval
        assert!(matches!(
            estimate(&m, Model::Beta),
            Some(Dist::LogNormal { .. })
        ));
        let m = moments_of(&values, f64::NAN, f64::NAN);
        assert!(matches!(
            estimate(&m, Model::Beta),
            Some(Dist::LogNormal { .. })
        ));
    }

    #[test]
    fn quantiles_invert_the_cdf() {
        let dists = [
            Dist::Beta {
                lo: 0.001,
                hi: 0.1,
                a: 2.0,
                b: 5.0,
            },
            Dist::LogNormal {
                mu: (0.004f64).ln(),
                sigma: 0.6,
            },
            Dist::TwoPoint {
                lo: 0.005,
                hi: 0.15,
                p_hi: 0.15,
            },
        ];
        for d in dists {
            for p in [0.5, 0.95, 0.99] {
                let q = d.quantile(p);
                assert!(d.cdf(q) >= p - 1e-9, "{d:?} p={p} q={q}");
                assert!(d.cdf(q * (1.0 - 1e-6)) <= p + 1e-6, "{d:?} p={p} q={q}");
            }
        }
        // Log-normal's median is exp(mu).
        assert!(close(dists[1].quantile(0.5), 0.004, 1e-9));
    }

    fn mixture(parts: &[(f64, Dist)]) -> Mixture {
        let bounds: std::sync::Arc<[f64]> = std::sync::Arc::from([0.001, 0.01, 0.1, 1.0]);
        let mut mix = Mixture::new(bounds.clone());
        for (w, d) in parts {
            mix.add(*w, *d, &d.cdf_at(&bounds));
        }
        mix
    }

    #[test]
    fn a_mixture_weights_statements_by_calls() {
        let mix = mixture(&[
            (90.0, Dist::Point(0.001)),
            (10.0, Dist::Point(0.200)),
            (0.0, Dist::Point(9.0)), // no calls, no weight
        ]);
        assert_eq!(mix.weight(), 100.0);
        assert!(close(mix.quantile(0.5).unwrap(), 0.001, 1e-6));
        assert!(close(mix.quantile(0.95).unwrap(), 0.200, 1e-6));
        assert!(close(mix.cdf(0.1), 0.9, 1e-12));
        assert_eq!(mixture(&[]).quantile(0.5), None);
    }

    #[test]
    fn bracketed_mixture_quantiles_equal_a_plain_bisection() {
        let parts = [
            (
                50.0,
                Dist::Beta {
                    lo: 0.0005,
                    hi: 0.02,
                    a: 2.0,
                    b: 5.0,
                },
            ),
            (
                30.0,
                Dist::LogNormal {
                    mu: (0.004f64).ln(),
                    sigma: 0.6,
                },
            ),
            (
                15.0,
                Dist::TwoPoint {
                    lo: 0.005,
                    hi: 0.15,
                    p_hi: 0.15,
                },
            ),
            (5.0, Dist::Point(2.5)),
        ];
        let mix = mixture(&parts);
        for p in [0.01, 0.5, 0.9, 0.95, 0.99, 0.999] {
            let plain = bisect(1e-6, 10.0, p, |x| mix.cdf(x));
            let q = mix.quantile(p).unwrap();
            assert!(
                close(q, plain, 2.0 * MIXTURE_PRECISION),
                "p={p}: {q} vs {plain}"
            );
        }
    }
}
