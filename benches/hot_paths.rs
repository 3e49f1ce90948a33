//! Micro-benchmarks of the agent's hot paths, without a database:
//! estimating distributions for a cycle's active statements, instance
//! quantiles over them, and encoding a large scrape. `cargo bench`.
//!
//! A plain timing loop (no benchmark framework): each case runs until a
//! second has passed and reports the mean time per iteration.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgvigil::desc;
use pgvigil::exposition::{Format, Scoped, encode};
use pgvigil::metric::{Desc, Family, Value};
use pgvigil::stats::histogram::{Cumulative, DEFAULT_BUCKETS};
use pgvigil::stats::latency::{Mixture, Model, Moments, estimate};

fn bench(name: &str, mut f: impl FnMut()) {
    f();
    let started = Instant::now();
    let mut iterations = 0u32;
    while started.elapsed() < Duration::from_secs(1) {
        f();
        iterations += 1;
    }
    let per = started.elapsed() / iterations;
    println!("{name:<60} {per:>12.2?} per iteration ({iterations} iterations)");
}

/// Interval moments of `n` statements with a spread of shapes.
fn moments(n: usize) -> Vec<Moments> {
    (0..n)
        .map(|i| {
            let mean = 0.0005 + 0.0001 * (i % 97) as f64;
            let calls = 1.0 + (i % 50) as f64;
            let sd = mean * (0.1 + (i % 7) as f64 * 0.4);
            Moments {
                calls,
                total: calls * mean,
                sumsq: calls * (sd * sd + mean * mean),
                min: mean * 0.3,
                max: mean * (2.0 + (i % 11) as f64),
            }
        })
        .collect()
}

static SERIES: Desc =
    desc!(Counter "bench_calls", ["datname", "usename", "queryid", "fingerprint"], "Bench.");
static LATENCY: Desc = desc!(Histogram "bench_latency", unit = Seconds, ["datname", "usename", "queryid", "fingerprint"], "Bench.");

fn main() {
    let bounds: Arc<[f64]> = DEFAULT_BUCKETS.into();
    for n in [1_000, 10_000] {
        let ms = moments(n);
        bench(
            &format!("estimate + bucket CDFs + histogram, {n} active statements"),
            || {
                let mut h = Cumulative::new(bounds.clone());
                for m in &ms {
                    if let Some(d) = estimate(m, Model::Auto) {
                        h.add_cdf(&d.cdf_at(&bounds), m.calls, m.total);
                    }
                }
                black_box(h.value());
            },
        );
        let mut mix = Mixture::new(bounds.clone());
        for m in &ms {
            if let Some(d) = estimate(m, Model::Auto) {
                mix.add(m.calls, d, &d.cdf_at(&bounds));
            }
        }
        bench(&format!("instance p50/p95/p99 over {n} statements"), || {
            for p in [0.5, 0.95, 0.99] {
                black_box(mix.quantile(p));
            }
        });
    }

    // A scrape of 200 published statements: 8 counters and a histogram each.
    let mut calls = Family::new(&SERIES);
    let mut latency = Family::new(&LATENCY);
    let mut h = Cumulative::new(bounds.clone());
    for m in moments(50) {
        if let Some(d) = estimate(&m, Model::Auto) {
            h.add(&d, m.calls, m.total);
        }
    }
    for i in 0..200 {
        let labels = [
            "shop".to_string(),
            "app".to_string(),
            (1_000_000_007i64 * i).to_string(),
            format!("{i:016x}"),
        ];
        for _ in 0..8 {
            calls.push(&labels, i as f64);
        }
        latency.push_value(&labels, Value::Histogram(Box::new(h.value())));
    }
    let families = Arc::new(vec![calls, latency]);
    let series: usize = families.iter().map(|f| f.series.len()).sum();
    for format in [Format::Prometheus, Format::OpenMetrics] {
        bench(
            &format!("encode {series} series ({format:?}), uncached"),
            || {
                black_box(encode(
                    vec![Scoped {
                        target: None,
                        label: None,
                        families: families.clone(),
                    }],
                    format,
                ));
            },
        );
    }
}
