//! Latency percentiles against ground truth: a workload whose per-call
//! durations the client records (`pg_sleep` with durations drawn from known
//! distributions), compared with the agent's estimates — the JSON report's
//! quantiles and `histogram_quantile` over the exported buckets — and with
//! the log-normal alternative computed from the same moments. And the
//! exact tails from the slow-statement log against pgbench's own
//! per-transaction log, in the extended and prepared protocol modes, from
//! the JSON API and from `pgvigil once --interval`.
//!
//! The measured errors are written to `target/percentiles-report.md`;
//! `docs/percentiles.md` quotes a run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pgvigil::agent::Agent;
use pgvigil::collect::statements::delta::interval;
use pgvigil::collect::statements::query::{self, EntryKey, Reading};
use pgvigil::config::{Config, Environment};
use pgvigil::exposition::Format;
use pgvigil::stats::latency::{Mixture, Model, estimate};
use tokio_postgres::Client;

use crate::harness::pg::flush_stats;
use crate::harness::pgbench::{Latencies, Pgbench};
use crate::harness::true_quantile;
use crate::harness::{Fixture, Metrics};

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// One statement shape and the distribution of its sleeps.
struct Shape {
    name: &'static str,
    sql: &'static str,
    sleeps: Vec<f64>,
}

fn shapes() -> Vec<Shape> {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let constant = vec![0.005; 200];
    let uniform = (0..300).map(|_| 0.002 + 0.018 * rng.next()).collect();
    let lognormal = (0..300)
        .map(|_| (0.004f64.ln() + 0.6 * rng.normal()).exp())
        .collect();
    let bimodal = (0..300)
        .map(|_| if rng.next() < 0.15 { 0.150 } else { 0.005 })
        .collect();
    vec![
        // First: no sleep at all, to measure what the client adds.
        Shape {
            name: "client overhead (no sleep)",
            sql: "SELECT $1::float8, pi()",
            sleeps: vec![0.0; 300],
        },
        Shape {
            name: "constant 5 ms",
            sql: "SELECT pg_sleep($1::float8)",
            sleeps: constant,
        },
        Shape {
            name: "uniform 2-20 ms",
            sql: "SELECT pg_sleep($1::float8), now()",
            sleeps: uniform,
        },
        Shape {
            name: "log-normal, median 4 ms, sigma 0.6",
            sql: "SELECT pg_sleep($1::float8), current_user",
            sleeps: lognormal,
        },
        Shape {
            name: "bimodal 85% 5 ms / 15% 150 ms",
            sql: "SELECT pg_sleep($1::float8), version()",
            sleeps: bimodal,
        },
    ]
}

/// Prometheus' histogram_quantile: linear interpolation inside the bucket.
fn histogram_quantile(buckets: &[(f64, f64)], p: f64) -> f64 {
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    let rank = p * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return lower.0;
            }
            let in_bucket = count - lower.1;
            return if in_bucket > 0.0 {
                lower.0 + (le - lower.0) * (rank - lower.1) / in_bucket
            } else {
                le
            };
        }
        lower = (le, count);
    }
    lower.0
}

fn buckets(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = m
        .find(name, labels)
        .map(|s| {
            (
                if s.labels["le"] == "+Inf" {
                    f64::INFINITY
                } else {
                    s.labels["le"].parse().unwrap()
                },
                s.value,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

async fn readings(client: &Client) -> HashMap<EntryKey, Reading> {
    let ext = query::find(client, "postgres").await.unwrap();
    query::entries(client, &pgvigil::sql::OwnStatements::default(), &ext)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn run_workload(fx: &Fixture, shapes: &[Shape]) -> Vec<Vec<f64>> {
    let mut tasks: Vec<(usize, f64)> = shapes
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.sleeps.iter().map(move |d| (i, *d)))
        .collect();
    // Interleave the shapes so every statement spans the whole interval.
    let mut rng = Rng(42);
    for i in (1..tasks.len()).rev() {
        tasks.swap(i, (rng.next() * (i + 1) as f64) as usize);
    }
    let queue = Arc::new(Mutex::new(tasks));
    let measured = Arc::new(Mutex::new(vec![Vec::new(); shapes.len()]));
    let sqls: Vec<&'static str> = shapes.iter().map(|s| s.sql).collect();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = fx.pg.connect().await;
        let (queue, measured, sqls) = (queue.clone(), measured.clone(), sqls.clone());
        workers.push(tokio::spawn(async move {
            let statements: Vec<_> = futures_prepare(&client, &sqls).await;
            loop {
                let Some((shape, sleep)) = queue.lock().unwrap().pop() else {
                    break;
                };
                let started = Instant::now();
                client.query(&statements[shape], &[&sleep]).await.unwrap();
                measured.lock().unwrap()[shape].push(started.elapsed().as_secs_f64());
            }
            flush_stats(&client).await;
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    Arc::try_unwrap(measured).unwrap().into_inner().unwrap()
}

async fn futures_prepare(client: &Client, sqls: &[&str]) -> Vec<tokio_postgres::Statement> {
    let mut out = Vec::new();
    for sql in sqls {
        out.push(client.prepare(sql).await.unwrap());
    }
    out
}

fn rel(estimate: f64, truth: f64) -> f64 {
    (estimate - truth) / truth
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimated_percentiles_match_client_measured_ground_truth() {
    // The client's timings are the ground truth: keep other tests' load away.
    let _alone = crate::harness::pg::exclusive();
    let first = measure().await;
    println!("{}", first.table);
    if first.failures.is_empty() {
        return;
    }
    // Moments cannot tell one stall of the machine from a tail
    // (docs/percentiles.md, "Limits"): when the client saw one, the
    // measurement is repeated once on a fresh interval, and that one must
    // hold. A failure without a stall fails at once.
    assert!(
        !first.stalled.is_empty(),
        "{:#?}\n{}",
        first.failures,
        first.table
    );
    println!(
        "isolated stalls in {:?} ({:?}): measuring again",
        first.stalled, first.failures
    );
    let second = measure().await;
    println!("{}", second.table);
    assert!(
        second.failures.is_empty(),
        "{:#?}\n{}",
        second.failures,
        second.table
    );
}

/// One measurement: the table of docs/percentiles.md, the bounds it broke,
/// and the shapes whose client-measured durations have an isolated stall.
struct Outcome {
    table: String,
    failures: Vec<String>,
    stalled: Vec<&'static str>,
}

/// Whether the slowest call took more than 1.25 times the next slowest:
/// one stall of the machine (a scheduling hiccup, an fsync) rather than the
/// workload's own tail. The uniform and constant shapes never do this by
/// themselves; the client sees every stall the server does.
fn isolated_stall(sorted: &[f64]) -> bool {
    matches!(sorted, [.., second, last] if *last > 1.25 * *second)
}

async fn measure() -> Outcome {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    let text = fx.config("server = \"off\"\nconnections = \"off\"\ndatabases = \"off\"\nstatements = { interval = \"1h\", top = 20 }");
    let config = Config::parse(&text, "test", &Environment::process()).unwrap();
    let mut agent = Agent::new(&config);
    agent.collect_cycle().await.unwrap();
    let before = readings(&admin).await;

    let shapes = shapes();
    let measured = run_workload(&fx, &shapes).await;
    agent.collect_cycle().await.unwrap();
    let after = readings(&admin).await;

    let views = agent.store.view(None);
    let report = pgvigil::report::statements_of(&views[0])
        .expect("a statements report")
        .clone();
    let metrics = Metrics::parse(&String::from_utf8_lossy(&agent.metrics(Format::Prometheus)));

    let mut table = String::from(
        "| workload | calls | quantile | truth (client) ms | JSON API (auto) ms | error | histogram_quantile ms | error | beta only | error | log-normal only | error |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut worst: f64 = 0.0;
    let mut failures = Vec::new();
    let mut stalled = Vec::new();
    let mut all_truth = Vec::new();
    // What the client adds to every call, by quantile (the first shape does not sleep).
    let mut overhead = measured[0].clone();
    overhead.sort_by(f64::total_cmp);
    let bounds: std::sync::Arc<[f64]> = pgvigil::stats::histogram::DEFAULT_BUCKETS.into();
    let mut beta_mixture = Mixture::new(bounds.clone());
    let mut lognormal_mixture = Mixture::new(bounds.clone());
    for (i, (shape, durations)) in shapes.iter().zip(&measured).enumerate() {
        let mut sorted = durations.clone();
        sorted.sort_by(f64::total_cmp);
        all_truth.extend(sorted.iter().copied());
        if isolated_stall(&sorted) {
            stalled.push(shape.name);
        }
        if i == 0 {
            // The calibration statement: part of the instance, not compared.
            continue;
        }
        let fp = pgvigil::sql::fingerprint(shape.sql).unwrap();
        let matching: Vec<_> = report
            .statements
            .iter()
            .filter(|s| s.fingerprint == fp)
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{}: one statement with fingerprint {fp}",
            shape.name
        );
        let s = matching[0];
        assert_eq!(s.calls, sorted.len() as f64, "{}", shape.name);
        let labels = [("fingerprint", fp.as_str()), ("usename", "postgres")];
        let hist = buckets(
            &metrics,
            "pg_stat_statements_latency_seconds_bucket",
            &labels,
        );
        // The same interval's moments, for the log-normal comparison.
        let (key, cur) = after
            .iter()
            .find(|(k, _)| k.queryid.to_string() == s.queryid)
            .unwrap();
        let iv = interval(before.get(key), cur, false);
        let lognormal = estimate(&iv.moments, Model::LogNormal).unwrap();
        let beta = estimate(&iv.moments, Model::Beta).unwrap();
        beta_mixture.add(iv.moments.calls, beta, &beta.cdf_at(&bounds));
        lognormal_mixture.add(iv.moments.calls, lognormal, &lognormal.cdf_at(&bounds));
        for (p, est) in [
            (0.5, s.quantiles.p50),
            (0.95, s.quantiles.p95),
            (0.99, s.quantiles.p99),
        ] {
            let truth = true_quantile(&sorted, p);
            let h = histogram_quantile(&hist, p);
            let ln = lognormal.quantile(p);
            let b = beta.quantile(p);
            worst = worst.max(rel(est, truth).abs());
            table.push_str(&format!(
                "| {} | {} | p{} | {:.2} | {:.2} | {:+.1}% | {:.2} | {:+.1}% | {:.2} | {:+.1}% | {:.2} | {:+.1}% |\n",
                shape.name,
                sorted.len(),
                (p * 100.0) as u32,
                truth * 1e3,
                est * 1e3,
                rel(est, truth) * 100.0,
                h * 1e3,
                rel(h, truth) * 100.0,
                b * 1e3,
                rel(b, truth) * 100.0,
                ln * 1e3,
                rel(ln, truth) * 100.0
            ));
            failures.extend(check_estimate(
                shape.name,
                p,
                est,
                truth,
                true_quantile(&overhead, p),
            ));
            failures.extend(check_histogram(shape.name, p, h, truth, &hist));
        }
    }
    all_truth.sort_by(f64::total_cmp);
    let q = report.instance.quantiles.expect("instance quantiles");
    let hist = buckets(&metrics, "pg_statement_latency_seconds_bucket", &[]);
    for (p, est) in [(0.5, q.p50), (0.95, q.p95), (0.99, q.p99)] {
        let truth = true_quantile(&all_truth, p);
        let h = histogram_quantile(&hist, p);
        let ln = lognormal_mixture.quantile(p).unwrap();
        let b = beta_mixture.quantile(p).unwrap();
        worst = worst.max(rel(est, truth).abs());
        table.push_str(&format!(
            "| all statements (instance) | {} | p{} | {:.2} | {:.2} | {:+.1}% | {:.2} | {:+.1}% | {:.2} | {:+.1}% | {:.2} | {:+.1}% |\n",
            report.instance.calls,
            (p * 100.0) as u32,
            truth * 1e3,
            est * 1e3,
            rel(est, truth) * 100.0,
            h * 1e3,
            rel(h, truth) * 100.0,
            b * 1e3,
            rel(b, truth) * 100.0,
            ln * 1e3,
            rel(ln, truth) * 100.0
        ));
        failures.extend(check_estimate(
            "instance",
            p,
            est,
            truth,
            true_quantile(&overhead, p),
        ));
        failures.extend(check_histogram("instance", p, h, truth, &hist));
    }
    table.push_str(&format!(
        "\nworst error of the published estimate: {:.1}%\n",
        worst * 100.0
    ));
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/target/percentiles-report.md");
    let _ = std::fs::write(out, &table);
    Outcome {
        table,
        failures,
        stalled,
    }
}

/// The bound we guarantee for the JSON API's quantiles (docs/percentiles.md):
/// within 20% of the client-measured value, plus what the client itself adds
/// at that quantile. The server times what the client measures minus the
/// round trip and the client's own scheduling; the no-sleep statement
/// measures that part (about 0.3 ms at the median, a few ms at p99 on a
/// busy two-core machine).
fn check_estimate(
    name: &str,
    p: f64,
    est: f64,
    truth: f64,
    client_overhead: f64,
) -> Option<String> {
    let err = (est - truth).abs();
    (err > 0.20 * truth + client_overhead).then(|| {
        format!("{name} p{p}: estimate {est} vs truth {truth} (client overhead at p{p}: {client_overhead})")
    })
}

/// histogram_quantile can only be as good as the buckets: the estimate must
/// fall in the bucket that holds the true value, or a neighbour of it.
fn check_histogram(
    name: &str,
    p: f64,
    est: f64,
    truth: f64,
    buckets: &[(f64, f64)],
) -> Option<String> {
    let bounds: Vec<f64> = std::iter::once(0.0)
        .chain(buckets.iter().map(|b| b.0))
        .collect();
    let bucket_of = |v: f64| bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
    let (a, b) = (bucket_of(est) as i64, bucket_of(truth) as i64);
    ((a - b).abs() > 1)
        .then(|| format!("{name} p{p}: histogram_quantile {est} is not near the bucket of {truth}"))
}

/// Every fifth call (by a sequence: exactly n/5 of them) sleeps 25 to 65
/// ms, over the 20 ms threshold; the others do not sleep. One statement per
/// transaction, with a bind parameter in the extended modes.
const TAIL_SCRIPT: &str = "\\set jitter random(0, 40)\nSELECT pg_sleep(CASE WHEN nextval('tail_calls') % 5 = 0 THEN 0.025 + :jitter * 0.001 ELSE 0 END);\n";
/// The statement as the server sees it in the extended modes.
const TAIL_SQL: &str =
    "SELECT pg_sleep(CASE WHEN nextval('tail_calls') % 5 = 0 THEN 0.025 + $1 * 0.001 ELSE 0 END);";
const TAIL_CLIENTS: u32 = 2;

/// A cluster logging every execution over 20 ms as slow and, through
/// sampling, every other execution and extended-protocol message too; the
/// pgvigil role with its own `log_min_duration_statement = -1` (which
/// hides the server's value from its session) and allowed to read
/// pg_file_settings, as docs/percentiles.md recommends.
async fn sampled_log(destination: &str) -> Fixture {
    let mut conf: Vec<String> = [
        "logging_collector = on",
        "log_directory = 'log'",
        "log_filename = 'postgresql-%Y%m%d-%H%M%S.log'",
        "log_line_prefix = '%m [%p] %q%u@%d '",
        "lc_messages = 'C'",
        "log_min_duration_statement = 20",
        "log_min_duration_sample = 0",
        "log_statement_sample_rate = 1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    conf.push(format!("log_destination = '{destination}'"));
    let fx = Fixture::start_with(crate::harness::PgOptions { conf }).await;
    fx.pg
        .connect()
        .await
        .batch_execute(
            "CREATE SEQUENCE tail_calls;
             ALTER ROLE pgvigil SET log_min_duration_statement = -1;
             GRANT SELECT ON pg_catalog.pg_file_settings TO pgvigil;
             GRANT EXECUTE ON FUNCTION pg_catalog.pg_show_all_file_settings() TO pgvigil;",
        )
        .await
        .unwrap();
    fx
}

fn tail_config(fx: &Fixture, collectors: &str) -> String {
    fx.config_with(
        &format!(
            "[target.logs]\ndirectory = \"{}\"\nstate_file = \"{}\"\n",
            fx.pg.data_dir().join("log").display(),
            fx.pg.scratch().join("logs.json").display()
        ),
        collectors,
    )
}

/// `duration:` lines of the workload's statement in the server's log,
/// whatever they timed.
fn duration_lines(fx: &Fixture) -> Vec<String> {
    let dir = fx.pg.data_dir().join("log");
    std::fs::read_dir(&dir)
        .unwrap()
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
            text.lines()
                .filter(|l| l.contains("duration: ") && l.contains("nextval('tail_calls')"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The server's own time for each execution (`execute <name>:` lines),
/// seconds, slowest first.
fn server_times(lines: &[String]) -> Vec<f64> {
    let mut times: Vec<f64> = lines
        .iter()
        .filter_map(|l| {
            let (ms, rest) = l.split_once("duration: ")?.1.split_once(" ms  ")?;
            (rest.starts_with("execute ") && !rest.starts_with("execute fetch from "))
                .then(|| ms.parse::<f64>().unwrap() / 1e3)
        })
        .collect();
    times.sort_by(|a, b| b.total_cmp(a));
    times
}

/// pgvigil's p95 and p99 for the workload against pgbench's own: every
/// client latency is the server's time plus a round trip, so each client
/// order statistic is at least the server's and at most the worst round
/// trip more. The round trip is measured on the calls that do not sleep
/// (the fastest 4/5 of pgbench's log): what pgbench measures for them is
/// the round trip and pgbench's own overhead. A step of the wall clock
/// during the run (the server's clock, not pgbench's) widens both bounds by
/// its size.
fn compare(what: &str, pgbench: &Latencies, p95: f64, p99: f64) -> String {
    let fast = &pgbench.sorted[..pgbench.sorted.len() * 4 / 5];
    let round_trip = fast[fast.len() - 1];
    let median_round_trip = fast[fast.len() / 2];
    let step = pgbench.wall_clock_step;
    let mut report = String::new();
    if step > 0.000_01 {
        report.push_str(&format!(
            "{what}: the wall clock moved {:.3} ms against the monotonic clock during the run\n",
            step * 1e3
        ));
    }
    for (p, ours) in [(0.95, p95), (0.99, p99)] {
        let theirs = pgbench.quantile(p);
        let gap = theirs - ours;
        report.push_str(&format!(
            "{what} p{}: pgvigil {:.3} ms, pgbench {:.3} ms, gap {:.3} ms (round trip: median {:.3} ms, worst {:.3} ms)\n",
            p * 100.0,
            ours * 1e3,
            theirs * 1e3,
            gap * 1e3,
            median_round_trip * 1e3,
            round_trip * 1e3
        ));
        // Both log microseconds.
        assert!(
            (-0.000_002 - step..=round_trip + 0.000_002 + step).contains(&gap),
            "{what} p{}: pgvigil {ours} vs pgbench {theirs}: the gap is not within the round trip {round_trip} (wall clock step {step})",
            p * 100.0
        );
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_tails_from_the_log_match_pgbench_in_extended_and_prepared_modes() {
    // pgbench's timings are the ground truth: keep other tests' load away.
    let _alone = crate::harness::pg::exclusive();
    let mut report = String::new();
    for (mode, destination) in [("extended", "stderr"), ("prepared", "csvlog")] {
        let fx = sampled_log(destination).await;
        let text = tail_config(
            &fx,
            "server = \"off\"\nconnections = \"off\"\ndatabases = \"off\"\nstatements = { interval = \"1h\", top = 20 }",
        );
        let config = Config::parse(&text, "test", &Environment::process()).unwrap();
        let mut agent = Agent::new(&config);
        agent.collect_cycle().await.unwrap();
        let lines_before = duration_lines(&fx).len();

        let bench = Pgbench {
            mode,
            clients: TAIL_CLIENTS,
            transactions: 200,
            script: TAIL_SCRIPT,
        };
        let pgbench = bench.run(&fx.pg, &fx.pg.scratch());
        let n = pgbench.sorted.len();
        // The syslogger writes what the backends sent it shortly after.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        agent.collect_cycle().await.unwrap();

        // The log holds every protocol message and every sampled call:
        // extended logs parse, bind and execute per call; prepared parses
        // once per connection.
        let logged = duration_lines(&fx).split_off(lines_before);
        let lines = logged.len();
        let want_lines = match mode {
            "extended" => 3 * n,
            _ => 2 * n + TAIL_CLIENTS as usize,
        };
        assert_eq!(lines, want_lines, "{mode}: duration lines");
        let server = server_times(&logged);
        assert_eq!(server.len(), n, "{mode}: one execute line per call");

        let doc = agent.statements_json();
        let report_doc = &doc["targets"][0]["report"];
        let fp = pgvigil::sql::fingerprint(TAIL_SQL).unwrap();
        let s = report_doc["statements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["fingerprint"] == fp.as_str())
            .unwrap_or_else(|| panic!("{mode}: the statement in {doc:#}"));
        assert_eq!(s["calls"], n as f64, "{mode}: {s}");
        assert_eq!(s["method"], "exact_tail", "{mode}: {s}");
        assert_eq!(
            s["exact_quantiles"],
            serde_json::json!(["p95", "p99"]),
            "{mode}: {s}"
        );
        let q = |v: &serde_json::Value, p: &str| v["quantiles"][p].as_f64().unwrap();
        // Exactly the server's own times: p95 of 400 calls is the 21st
        // slowest, p99 the 5th.
        assert_eq!(q(s, "p95"), server[n - (n * 95).div_ceil(100)], "{mode}");
        assert_eq!(q(s, "p99"), server[n - (n * 99).div_ceil(100)], "{mode}");
        report.push_str(&compare(
            &format!("{mode} (statement)"),
            &pgbench,
            q(s, "p95"),
            q(s, "p99"),
        ));
        // The workload is all the interval had: the instance's tail is the same.
        let instance = &report_doc["instance"];
        assert_eq!(instance["method"], "exact_tail", "{mode}: {instance}");
        assert_eq!(q(instance, "p99"), q(s, "p99"), "{mode}");

        // Each slow execution counted once, sampled calls and parse/bind not.
        let metrics = Metrics::parse(&String::from_utf8_lossy(&agent.metrics(Format::Prometheus)));
        let slow = metrics.get(
            "pg_log_slow_statements_total",
            &[("datname", "postgres"), ("usename", "postgres")],
        );
        assert_eq!(slow, Some((n / 5) as f64), "{mode}: slow executions");
        // Above the threshold the buckets are exact: the 4/5 that did not
        // sleep are at or below 25 ms, every sleeping one above.
        let bucket = |le: &str| {
            metrics.get(
                "pg_stat_statements_latency_seconds_bucket",
                &[("fingerprint", fp.as_str()), ("le", le)],
            )
        };
        assert_eq!(bucket("0.025"), Some((n - n / 5) as f64), "{mode}");
        assert_eq!(bucket("+Inf"), Some(n as f64), "{mode}");
        report.push_str(&format!(
            "{mode}: {n} executions, {} slow, {lines} duration lines of the statement\n",
            n / 5
        ));
    }
    println!("{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvigil_once_with_an_interval_takes_the_exact_tail_from_the_log() {
    use std::process::{Command, Stdio};
    // pgbench's timings are the ground truth: keep other tests' load away.
    let _alone = crate::harness::pg::exclusive();
    let destination = if crate::harness::pg::major_version() >= 15 {
        "jsonlog"
    } else {
        "csvlog"
    };
    let fx = sampled_log(destination).await;
    let file = fx.pg.scratch().join("once.toml");
    std::fs::write(
        &file,
        tail_config(&fx, "statements = { interval = \"1h\", top = 20 }"),
    )
    .unwrap();
    let mut once = Command::new(crate::harness::agent::binary())
        .args(["once", "--format", "json", "--interval", "10s", "--config"])
        .arg(&file)
        .env_remove("RUST_LOG")
        .env_remove("PGVIGIL_DSN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = once.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut text);
        text
    });
    // The first cycle ends with the statements sample; then `once` waits
    // 10 s, its session idle. The workload runs in that wait, as the
    // server sees it: the agent's session idle for a second.
    let admin = fx.pg.connect().await;
    crate::harness::eventually(
        std::time::Duration::from_secs(30),
        "pgvigil once waiting between its samples",
        || async {
            admin
                .query_opt(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgvigil' AND state = 'idle' AND state_change < clock_timestamp() - interval '1 second'",
                    &[],
                )
                .await
                .unwrap()
                .map(|_| ())
        },
    )
    .await;
    let bench = Pgbench {
        mode: "extended",
        clients: TAIL_CLIENTS,
        transactions: 150,
        script: TAIL_SCRIPT,
    };
    let pgbench = bench.run(&fx.pg, &fx.pg.scratch());
    let n = pgbench.sorted.len();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut once.stdout.take().unwrap(), &mut stdout).unwrap();
    let status = once.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "pgvigil once: {status}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let target = &doc["targets"][0];
    let fp = pgvigil::sql::fingerprint(TAIL_SQL).unwrap();
    let s = target["statements"]["statements"]
        .as_array()
        .unwrap_or_else(|| panic!("a statements report: {target:#}"))
        .iter()
        .find(|s| s["fingerprint"] == fp.as_str())
        .unwrap_or_else(|| panic!("the statement in {target:#}"));
    assert_eq!(s["calls"], n as f64, "{s}");
    assert_eq!(s["method"], "exact_tail", "{s}");
    let q = |p: &str| s["quantiles"][p].as_f64().unwrap();
    println!(
        "{}",
        compare("pgvigil once (statement)", &pgbench, q("p95"), q("p99"))
    );
    let slow: f64 = target["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "pg_log_slow_statements_total")
        .flat_map(|m| m["series"].as_array().unwrap().iter())
        .filter(|s| s["labels"]["usename"] == "postgres")
        .map(|s| s["value"].as_f64().unwrap())
        .sum();
    assert_eq!(slow, (n / 5) as f64, "slow executions");
}
