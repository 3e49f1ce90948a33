//! Exact tail quantiles from the slow-statement log.
//!
//! Every execution slower than `log_min_duration_statement` is logged, and
//! pg_stat_statements says how many calls the interval had. So a quantile
//! whose rank falls among the logged executions is exactly one of them:
//! with `n` calls, the nearest-rank p-quantile is the `n - ceil(p·n) + 1`-th
//! largest call, known whenever that is at most the number logged. Below
//! the threshold the estimate stays; the histogram's buckets above the
//! threshold become exact counts the same way.

/// Nearest-rank quantiles `ps` of `n` calls whose slowest are `logged`
/// (seconds, any order): `Some` where the rank falls among them. `None`
/// everywhere when the log and the call count disagree (more logged than
/// called: the intervals are misaligned).
pub fn exact_quantiles(n: f64, logged: &[f64], ps: &[f64]) -> Vec<Option<f64>> {
    let m = logged.len();
    if n < 1.0 || m == 0 || m as f64 > n {
        return vec![None; ps.len()];
    }
    let mut desc = logged.to_vec();
    desc.sort_by(|a, b| b.total_cmp(a));
    ps.iter()
        .map(|p| {
            let rank = (p * n).ceil().clamp(1.0, n);
            let from_top = (n - rank + 1.0) as usize;
            (from_top >= 1 && from_top <= m).then(|| desc[from_top - 1])
        })
        .collect()
}

/// The interval's CDF at `bounds` with the buckets at or above
/// `threshold` (seconds) made exact from the `logged` durations: the
/// number of calls at or below such a bound is `n` minus the logged calls
/// above it. Below the threshold the estimate `cdf` is kept, capped so the
/// logged calls (all at or above the threshold) still fit. `None` when the
/// log and the count disagree.
pub fn tail_cdf(
    cdf: &[f64],
    bounds: &[f64],
    n: f64,
    threshold: f64,
    logged: &[f64],
) -> Option<Vec<f64>> {
    let m = logged.len() as f64;
    if n < 1.0 || m > n {
        return None;
    }
    let below_threshold = (n - m) / n;
    Some(
        bounds
            .iter()
            .zip(cdf)
            .map(|(b, c)| {
                if *b >= threshold {
                    let above = logged.iter().filter(|d| **d > *b).count() as f64;
                    (n - above) / n
                } else {
                    c.min(below_threshold)
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: [f64; 3] = [0.5, 0.95, 0.99];

    /// The same nearest-rank definition, on all calls.
    fn truth(all: &[f64], p: f64) -> f64 {
        let mut sorted = all.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn the_tail_quantiles_are_the_logged_ones() {
        // 100 calls: 90 fast (unlogged), 10 slow, logged.
        let slow: Vec<f64> = (1..=10).map(|i| 0.05 + i as f64 * 0.01).collect();
        let mut all = vec![0.001; 90];
        all.extend(&slow);
        let q = exact_quantiles(100.0, &slow, &PS);
        assert_eq!(q[0], None, "the median is among the unlogged calls");
        assert_eq!(q[1], Some(truth(&all, 0.95)));
        assert_eq!(q[2], Some(truth(&all, 0.99)));
        // Exactly at the boundary: p90 of 100 is the 11th largest, unlogged.
        assert_eq!(exact_quantiles(100.0, &slow, &[0.9])[0], None);
        assert_eq!(
            exact_quantiles(100.0, &slow, &[0.91])[0],
            Some(truth(&all, 0.91))
        );
    }

    #[test]
    fn disagreeing_counts_give_nothing() {
        assert_eq!(exact_quantiles(3.0, &[1.0; 4], &PS), vec![None; 3]);
        assert_eq!(exact_quantiles(0.0, &[], &PS), vec![None; 3]);
        assert_eq!(tail_cdf(&[0.5], &[1.0], 1.0, 0.1, &[1.0, 2.0]), None);
    }

    #[test]
    fn buckets_above_the_threshold_count_exactly() {
        let bounds = [0.01, 0.05, 0.1, 0.5];
        let estimate = [0.95, 0.97, 0.99, 1.0];
        let logged = [0.06, 0.2, 0.3];
        let cdf = tail_cdf(&estimate, &bounds, 100.0, 0.05, &logged).unwrap();
        // Below the threshold: the estimate, capped to leave room for the 3.
        assert_eq!(cdf[0], 0.95);
        // At 0.05 and above: n minus the logged calls above the bound.
        assert_eq!(cdf[1], 0.97);
        assert_eq!(cdf[2], 0.98);
        assert_eq!(cdf[3], 1.0);
        let capped = tail_cdf(&[0.99, 1.0], &[0.01, 0.5], 100.0, 0.05, &logged).unwrap();
        assert_eq!(capped[0], 0.97);
        assert!(cdf.windows(2).all(|w| w[0] <= w[1]));
    }
}
