//! Fleet mode: one agent watching several targets. Every series names its
//! target, a lone one too, so that adding a second target (or PgBouncer)
//! renames nothing; `/probe?target=NAME` serves one target only, `databases
//! = "auto"` follows databases created after start, and one target in
//! trouble never holds up another.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::harness::bouncer::{ADMIN, Bouncer};
use crate::harness::health::{COLLECTORS, EVERY_SECOND, Scrapes, all_failed, all_ok, health};
use crate::harness::pg::PgOptions;
use crate::harness::proxy::{Mode, Proxy};
use crate::harness::{Fixture, Metrics, RunningAgent, outputs, pgvigil, unix_now};

const WAIT: Duration = Duration::from_secs(45);

/// A `[[target]]` table for `fx` reached on `port`, with a 2 s connect
/// timeout and `extra` keys.
fn target(name: &str, fx: &Fixture, port: u16, extra: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\ndsn = \"postgresql://pgvigil@127.0.0.1:{port}/postgres?sslmode=disable&connect_timeout=2\"\npassword_file = \"{}\"\n{extra}\n\n",
        fx.password_file().display()
    )
}

/// The agent's own series: the only ones without a `target` label.
fn agent_wide(name: &str) -> bool {
    name.starts_with("process_")
        || name == "pgvigil_build_info"
        || name.starts_with("pgvigil_config_")
}

/// A label set.
type Labels = BTreeMap<String, String>;

/// Target `main`'s series, by family: each series' labels.
fn series_of_main(m: &Metrics) -> BTreeMap<&str, BTreeSet<&Labels>> {
    let mut out: BTreeMap<&str, BTreeSet<&Labels>> = BTreeMap::new();
    for s in &m.samples {
        if s.labels.get("target").map(String::as_str) == Some("main") {
            out.entry(s.name.as_str()).or_default().insert(&s.labels);
        }
    }
    out
}

/// Checks a scrape of the lone, unnamed target with its one, unnamed
/// PgBouncer: every series but the agent's own has `target="main"`, and
/// exactly the PgBouncer's have `pgbouncer="pgbouncer"`.
fn assert_lone_target_labelled(m: &Metrics, what: &str) {
    let mut pooled = 0;
    for sample in &m.samples {
        if agent_wide(&sample.name) {
            assert_eq!(sample.labels.get("target"), None, "{what}: {sample:?}");
            continue;
        }
        assert_eq!(
            sample.labels.get("target").map(String::as_str),
            Some("main"),
            "{what}: {sample:?}"
        );
        let pgbouncer = sample.labels.get("pgbouncer").map(String::as_str);
        if sample.name.starts_with("pgbouncer_") {
            assert_eq!(pgbouncer, Some("pgbouncer"), "{what}: {sample:?}");
            pooled += 1;
        } else {
            assert_eq!(pgbouncer, None, "{what}: {sample:?}");
        }
    }
    assert!(pooled >= 10, "{what}: {pooled} PgBouncer series");
    assert_eq!(
        m.get(
            "pgvigil_collector_success",
            &[("target", "main"), ("collector", "pgbouncer")]
        ),
        Some(1.0),
        "{what}"
    );
}

/// Checks that every series of target `main` in `alone` (one target, one
/// PgBouncer) keeps its identity in `grown` (a second target and a second
/// PgBouncer added): per family, the same label names; and for the
/// families whose series do not depend on what the server happens to be
/// doing, the very same label sets.
fn assert_nothing_renamed(alone: &Metrics, grown: &Metrics, what: &str) {
    let (before, after) = (series_of_main(alone), series_of_main(grown));
    let names = |sets: &BTreeSet<&Labels>| -> BTreeSet<Vec<String>> {
        sets.iter().map(|l| l.keys().cloned().collect()).collect()
    };
    let mut compared = 0;
    for (family, series) in &before {
        let Some(later) = after.get(family) else {
            continue;
        };
        compared += 1;
        assert_eq!(
            names(series),
            names(later),
            "{what}: the label names of {family} changed when a target and a PgBouncer were added"
        );
    }
    assert!(
        compared >= 40,
        "{what}: only {compared} families in both runs"
    );
    for family in [
        "pg_up",
        "pg_settings_max_connections",
        "pg_server_info",
        "pgvigil_collector_success",
        "pgbouncer_up",
        "pgbouncer_config_max_client_connections",
        "pgbouncer_databases_pool_size",
    ] {
        let (series, later) = (&before[family], &after[family]);
        let missing: Vec<_> = series.difference(later).collect();
        assert!(
            missing.is_empty(),
            "{what}: {family} series renamed by a second target and PgBouncer: {missing:?}, now {later:?}"
        );
    }
    // The additions are there, under their own names.
    assert_eq!(
        grown.get(
            "pgbouncer_up",
            &[("target", "main"), ("pgbouncer", "pgbouncer1")]
        ),
        Some(1.0),
        "{what}"
    );
    assert_eq!(
        grown.get("pg_up", &[("target", "other")]),
        Some(1.0),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_target_or_pgbouncer_renames_none_of_the_first_ones_series() {
    let fx = Fixture::start().await;
    let bouncer = Bouncer::start(&fx.pg, 2).await;
    let collectors = "[collectors]\ndefault_interval = \"1s\"\n";
    // One target and one PgBouncer, neither named: the sidecar layout.
    let alone = format!(
        "[[target]]\ndsn = \"{}\"\npassword_file = \"{}\"\n{}\n{collectors}",
        fx.dsn(),
        fx.password_file().display(),
        bouncer.target_table(None, ADMIN, true)
    );
    // The same, grown: a second PgBouncer (unnamed: "pgbouncer1") in front
    // of the first target, and a second target, which makes naming the
    // first one required: "main", as its series already say.
    let grown = format!(
        "[[target]]\nname = \"main\"\ndsn = \"{}\"\npassword_file = \"{}\"\n{}\n{}\n{}{collectors}",
        fx.dsn(),
        fx.password_file().display(),
        bouncer.target_table(None, ADMIN, true),
        bouncer.target_table(None, ADMIN, true),
        target("other", &fx, fx.pg.port, "")
    );

    // A long-running agent: the lone layout, then the grown one.
    let mut scraped = Vec::new();
    for (config, targets) in [(&alone, &["main"][..]), (&grown, &["main", "other"][..])] {
        let agent = RunningAgent::start(&fx.pg.scratch(), config).await;
        let m = agent
            .wait_for(WAIT, "every collector of every target succeeding", |m| {
                let ok = targets.iter().all(|t| all_ok(m, Some(t), COLLECTORS + 1))
                    && m.get("pgbouncer_up", &[("pgbouncer", "pgbouncer")]) == Some(1.0);
                ok.then(|| m.clone())
            })
            .await;
        crate::harness::promtool_check(&agent.get("/metrics").await.body);
        scraped.push(m);
    }
    assert_lone_target_labelled(&scraped[0], "run");
    assert_nothing_renamed(&scraped[0], &scraped[1], "run");

    // A fresh `pgvigil once` of each config says the same.
    let once = |config: &str| -> Metrics {
        let file = fx
            .pg
            .scratch()
            .join(format!("once-{}.toml", crate::harness::pg::free_port()));
        std::fs::write(&file, config).unwrap();
        let out = pgvigil(
            &[
                "once",
                "--config",
                file.to_str().unwrap(),
                "--format",
                "prometheus",
            ],
            &[],
        );
        let (stdout, stderr) = outputs(&out);
        assert!(out.status.success(), "pgvigil once: {stderr}");
        Metrics::parse(&stdout)
    };
    let (lone, both) = (once(&alone), once(&grown));
    assert_lone_target_labelled(&lone, "once");
    assert_nothing_renamed(&lone, &both, "once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_names_its_target_and_a_probe_serves_one_target() {
    let east = Fixture::start().await;
    let west = Fixture::start_with(PgOptions {
        conf: vec!["max_connections = 30".into()],
    })
    .await;
    let config = target("east", &east, east.pg.port, "")
        + &target("west", &west, west.pg.port, "")
        + "[collectors]\ndefault_interval = \"1s\"\n";
    let agent = RunningAgent::start(&east.pg.scratch(), &config).await;
    let mut s = Scrapes::new(&agent, "fleet");
    let m = s
        .until(WAIT, "both targets collected", |m| {
            (all_ok(m, Some("east"), COLLECTORS) && all_ok(m, Some("west"), COLLECTORS))
                .then(|| m.clone())
        })
        .await;

    // /metrics: both targets, every series labelled with its own.
    for sample in &m.samples {
        if agent_wide(&sample.name) {
            assert_eq!(sample.labels.get("target"), None, "{sample:?}");
        } else {
            let t = sample.labels.get("target").map(String::as_str);
            assert!(
                matches!(t, Some("east" | "west")),
                "a series without its target: {sample:?}"
            );
        }
    }
    assert_eq!(
        m.get("pg_settings_max_connections", &[("target", "east")]),
        Some(40.0)
    );
    assert_eq!(
        m.get("pg_settings_max_connections", &[("target", "west")]),
        Some(30.0)
    );
    assert!(m.get("process_open_fds", &[]).is_some());

    // /probe?target=west: west only, and none of the agent-wide series.
    let probe = s.get("/probe?target=west").await;
    assert!(!probe.samples.is_empty());
    for sample in &probe.samples {
        assert_eq!(
            sample.labels.get("target").map(String::as_str),
            Some("west"),
            "{sample:?}"
        );
    }
    assert_eq!(
        probe.get("pg_settings_max_connections", &[]),
        Some(30.0),
        "{:?}",
        health(&probe)
    );
    assert_eq!(probe.get("pg_up", &[]), Some(1.0));
    assert!(probe.get("process_open_fds", &[]).is_none());
    // Every west series of /metrics is in the probe and nothing else:
    // compare the sets of series names.
    let mut in_metrics: Vec<&str> = m
        .samples
        .iter()
        .filter(|s| s.labels.get("target").map(String::as_str) == Some("west"))
        .map(|s| s.name.as_str())
        .collect();
    let mut in_probe: Vec<&str> = probe.samples.iter().map(|s| s.name.as_str()).collect();
    in_metrics.sort();
    in_metrics.dedup();
    in_probe.sort();
    in_probe.dedup();
    assert_eq!(in_probe, in_metrics);

    // Unknown and missing targets.
    let unknown = agent.get("/probe?target=north").await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let missing = agent.get("/probe").await;
    assert_eq!(missing.status, 400, "{}", missing.body);
    s.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_databases_include_a_database_created_after_start() {
    let fx = Fixture::start().await;
    let agent = RunningAgent::start(
        &fx.pg.scratch(),
        &fx.config_with("databases = \"auto\"", "tables = \"1s\""),
    )
    .await;
    let mut s = Scrapes::new(&agent, "auto databases");
    s.until(WAIT, "the tables collector succeeding", |m| {
        (m.get("pgvigil_collector_success", &[("collector", "tables")]) == Some(1.0)).then_some(())
    })
    .await;
    let m = s.metrics().await;
    assert!(
        m.find("pg_table_size_bytes", &[("datname", "latecomer")])
            .next()
            .is_none()
    );

    let admin = fx.pg.connect().await;
    admin
        .batch_execute("CREATE DATABASE latecomer")
        .await
        .unwrap();
    let late = fx.pg.connect_to("latecomer").await;
    late.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, total numeric); INSERT INTO orders SELECT g, g FROM generate_series(1, 500) g",
    )
    .await
    .unwrap();
    // No restart, no reload: the next cycles visit it.
    let orders = [
        ("datname", "latecomer"),
        ("schemaname", "public"),
        ("relname", "orders"),
    ];
    let m = s
        .until(WAIT, "latecomer.orders in the tables metrics", |m| {
            m.get("pg_table_size_bytes", &orders).map(|_| m.clone())
        })
        .await;
    assert!(m.get("pg_table_size_bytes", &orders).unwrap() > 8192.0);
    assert!(m.get("pg_table_seq_scan_total", &orders).is_some());
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "tables")]),
        Some(1.0)
    );
    s.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_target_never_delays_another_targets_collection() {
    let fx = Fixture::start().await;
    let proxy = Proxy::start(fx.pg.port);
    // The same server twice: once directly, once through the proxy.
    let config = target("stalled", &fx, proxy.port, "")
        + &target("healthy", &fx, fx.pg.port, "")
        + "[collectors]\ndefault_interval = \"1s\"\ntimeout = \"3s\"\n"
        + EVERY_SECOND;
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let mut s = Scrapes::new(&agent, "fleet stall");
    s.until(WAIT, "both targets collected", |m| {
        (all_ok(m, Some("stalled"), COLLECTORS) && all_ok(m, Some("healthy"), COLLECTORS))
            .then_some(())
    })
    .await;

    proxy.set(Mode::Stall);
    s.fault(true);
    let stalled = Instant::now();
    // While one target stalls (and until it is declared down, and after),
    // every collector of the other keeps succeeding every interval.
    let mut previous: Vec<(String, f64)> = Vec::new();
    let mut samples = 0;
    let mut worst_age = 0.0f64;
    while stalled.elapsed() < Duration::from_secs(15) {
        let m = s.metrics().await;
        assert!(all_ok(&m, Some("healthy"), COLLECTORS), "{:?}", health(&m));
        let now = unix_now();
        let last: Vec<(String, f64)> = m
            .find(
                "pgvigil_collector_last_success_timestamp_seconds",
                &[("target", "healthy")],
            )
            .map(|s| (s.labels["collector"].clone(), s.value))
            .collect();
        assert!(last.len() >= COLLECTORS);
        for (collector, at) in &last {
            worst_age = worst_age.max(now - at);
            assert!(
                now - at < 4.0,
                "healthy/{collector} last succeeded {:.1}s ago while the other target stalls",
                now - at
            );
            if let Some((_, before)) = previous.iter().find(|(c, _)| c == collector) {
                assert!(at > before, "healthy/{collector} did not advance in 2 s");
            }
        }
        previous = last;
        samples += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "fleet stall: {samples} samples, the healthy target's oldest success was {worst_age:.2}s old"
    );
    // Meanwhile the stalled target was found out.
    let m = s
        .until(WAIT, "the stalled target down", |m| {
            all_failed(m, Some("stalled")).then(|| m.clone())
        })
        .await;
    assert!(all_ok(&m, Some("healthy"), COLLECTORS), "{:?}", health(&m));

    proxy.set(Mode::Forward);
    s.until(WAIT, "the stalled target back", |m| {
        all_ok(m, Some("stalled"), COLLECTORS).then_some(())
    })
    .await;
    s.fault(false);
    s.report();
}
