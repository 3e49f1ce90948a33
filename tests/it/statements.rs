//! The statements collector against real pg_stat_statements: labels and
//! counts a user would check, resets, missing or unloaded extension,
//! bounded cardinality, and the JSON API.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::pg::flush_stats;
use crate::harness::{Fixture, PgOptions, RunningAgent};

const WAIT: Duration = Duration::from_secs(40);

/// Agent config: statements every second, everything else off.
fn statements_only(fx: &Fixture, extra: &str) -> String {
    fx.config(&format!(
        "server = \"off\"\nconnections = \"off\"\ndatabases = \"off\"\n{extra}"
    ))
}

fn fingerprint(sql: &str) -> String {
    pgvigil::sql::fingerprint(sql).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_statement_is_counted_with_its_labels_and_text() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin.batch_execute("CREATE DATABASE shop").await.unwrap();
    let shop = fx.pg.connect_to("shop").await;
    shop.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric); INSERT INTO orders SELECT g, g FROM generate_series(1, 1000) g")
        .await
        .unwrap();
    let agent = RunningAgent::start(
        &fx.pg.scratch(),
        &statements_only(&fx, "statements = { interval = \"1s\", top = 10 }"),
    )
    .await;
    agent
        .wait_for(WAIT, "a first interval", |m| {
            m.get("pg_statement_latency_seconds_count", &[])
        })
        .await;

    let sql = "SELECT total FROM orders WHERE id = $1";
    for i in 1..=37 {
        shop.query(sql, &[&i]).await.unwrap();
    }
    flush_stats(&shop).await;
    let fp = fingerprint(sql);
    let labels = [
        ("datname", "shop"),
        ("usename", "postgres"),
        ("fingerprint", fp.as_str()),
    ];
    let m = agent
        .wait_for(WAIT, "37 calls of the order lookup", |m| {
            m.get("pg_stat_statements_calls_total", &labels)
                .filter(|n| *n == 37.0)
                .map(|_| m.clone())
        })
        .await;
    let queryid = m
        .find("pg_stat_statements_calls_total", &labels)
        .next()
        .unwrap()
        .labels["queryid"]
        .clone();
    assert!(queryid.parse::<i64>().is_ok(), "{queryid}");
    assert_eq!(m.get("pg_stat_statements_rows_total", &labels), Some(37.0));
    assert!(
        m.get("pg_stat_statements_exec_seconds_total", &labels)
            .unwrap()
            > 0.0
    );
    assert_eq!(
        m.get(
            "pg_stat_statements_query_info",
            &[("queryid", &queryid), ("fingerprint", &fp)]
        )
        .map(|_| ()),
        Some(()),
        "query_info for {queryid}"
    );
    let info_labels = [("queryid", queryid.as_str())];
    let info = m
        .find("pg_stat_statements_query_info", &info_labels)
        .next()
        .unwrap();
    assert_eq!(
        info.labels["query"],
        "SELECT total FROM orders WHERE id = $1"
    );
    // The latency histogram counts the same calls, in cumulative buckets.
    let count = agent
        .wait_for(WAIT, "the histogram to hold the 37 calls", |m| {
            m.get("pg_stat_statements_latency_seconds_count", &labels)
                .filter(|n| *n == 37.0)
        })
        .await;
    assert_eq!(count, 37.0);
    let m = agent.metrics().await;
    let inf = m.get(
        "pg_stat_statements_latency_seconds_bucket",
        &[labels[0], labels[1], labels[2], ("le", "+Inf")],
    );
    assert_eq!(inf, Some(37.0));
    assert!(m.get("pg_statement_latency_seconds_count", &[]).unwrap() >= 37.0);
    // pgvigil's own statements are not among the statements, but their cost is counted.
    let own: Vec<_> = m
        .find("pg_stat_statements_query_info", &[])
        .filter(|s| {
            m.find(
                "pg_stat_statements_calls_total",
                &[
                    ("usename", "pgvigil"),
                    ("queryid", s.labels["queryid"].as_str()),
                ],
            )
            .next()
            .is_some()
        })
        .map(|s| s.labels["query"].clone())
        .collect();
    assert!(
        m.find("pg_stat_statements_calls_total", &[("usename", "pgvigil")])
            .next()
            .is_none(),
        "own statements published: {own:#?}"
    );
    assert!(m.get("pgvigil_database_time_seconds_total", &[]).unwrap() > 0.0);
    assert_eq!(m.get("pg_stat_statements_max", &[]), Some(5000.0));
    assert!(m.get("pg_stat_statements_entries", &[]).unwrap() >= 3.0);
    assert!(
        m.get("pg_stat_statements_calls_total", &[("queryid", "other")])
            .is_some()
    );
    // Literal values never reach a label.
    assert!(
        !agent
            .get("/metrics")
            .await
            .body
            .contains("generate_series(1, 1000)")
    );
    crate::harness::promtool_check(&agent.get("/metrics").await.body);

    // The JSON API has the interval's percentiles with their method.
    let api = agent.get("/api/v1/statements").await;
    assert_eq!(api.status, 200);
    let doc: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    let report = &doc["targets"][0]["report"];
    assert!(report["interval_seconds"].as_f64().unwrap() > 0.0, "{doc}");
    assert!(
        report["instance"]["method"] == "estimate" || report["instance"]["method"] == "exact",
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_shows_as_a_statement_counter_reset() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin.batch_execute("CREATE TABLE t (n int)").await.unwrap();
    let sql = "INSERT INTO t VALUES ($1)";
    for i in 0..20 {
        admin.execute(sql, &[&i]).await.unwrap();
    }
    flush_stats(&admin).await;
    let agent = RunningAgent::start(
        &fx.pg.scratch(),
        &statements_only(&fx, "statements = \"1s\""),
    )
    .await;
    let fp = fingerprint(sql);
    let labels = [("usename", "postgres"), ("fingerprint", fp.as_str())];
    let before = agent
        .wait_for(WAIT, "20 inserts", |m| {
            m.get("pg_stat_statements_calls_total", &labels)
                .filter(|n| *n >= 20.0)
        })
        .await;
    admin
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();
    for i in 0..5 {
        admin.execute(sql, &[&i]).await.unwrap();
    }
    flush_stats(&admin).await;
    // The published counter is the server's: 5 calls since the reset,
    // never anything in between (such as a sum across the reset).
    let after = agent
        .wait_for(WAIT, "the 5 inserts after the reset", |m| {
            let v = m.get("pg_stat_statements_calls_total", &labels)?;
            assert!(v == before || v == 5.0, "{before} -> {v}");
            (v == 5.0).then_some(v)
        })
        .await;
    assert_eq!(after, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_extension_only_the_statements_collector_fails() {
    let fx = Fixture::start().await;
    fx.pg
        .connect()
        .await
        .batch_execute("DROP EXTENSION pg_stat_statements")
        .await
        .unwrap();
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("statements = \"1s\"")).await;
    let m = agent
        .wait_for(WAIT, "collectors to report", |m| {
            m.get("pgvigil_collector_success", &[("collector", "statements")])
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "statements")]),
        Some(0.0)
    );
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "server")]),
        Some(1.0)
    );
    assert_eq!(m.get("pg_up", &[]), Some(1.0));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = agent.log();
    assert_eq!(
        log.matches("run CREATE EXTENSION pg_stat_statements")
            .count(),
        1,
        "{log}"
    );
    let api: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/statements").await.body).unwrap();
    assert!(
        api["targets"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not installed"),
        "{api}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_that_is_not_preloaded_is_named_as_such() {
    let fx = Fixture::start_with(PgOptions {
        conf: vec!["shared_preload_libraries = ''".into()],
    })
    .await;
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("statements = \"1s\"")).await;
    agent
        .wait_for(WAIT, "the statements collector to fail", |m| {
            m.get("pgvigil_collector_success", &[("collector", "statements")])
                .filter(|v| *v == 0.0)
        })
        .await;
    assert!(
        agent
            .log()
            .contains("add it to shared_preload_libraries and restart PostgreSQL"),
        "{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_statements_stay_within_the_series_bound() {
    let fx = Fixture::start_with(PgOptions {
        conf: vec!["pg_stat_statements.max = 10000".into()],
    })
    .await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(
            "DO $$ BEGIN FOR t IN 1..100 LOOP
               EXECUTE format('CREATE TABLE wide_%s (%s)', t,
                 (SELECT string_agg(format('c%s int', c), ', ') FROM generate_series(1, 50) c));
             END LOOP; END $$",
        )
        .await
        .unwrap();
    let top = 25;
    let agent = RunningAgent::start(
        &fx.pg.scratch(),
        &statements_only(
            &fx,
            &format!("statements = {{ interval = \"1s\", top = {top} }}"),
        ),
    )
    .await;
    agent
        .wait_for(WAIT, "a first interval", |m| {
            m.get("pg_statement_latency_seconds_count", &[])
        })
        .await;
    // 100 tables × 50 columns: 5,000 distinct statements, each run twice.
    for t in 1..=100 {
        let batch: String = (1..=50)
            .map(|c| format!("SELECT c{c} FROM wide_{t};"))
            .collect();
        admin.batch_execute(&batch).await.unwrap();
        admin.batch_execute(&batch).await.unwrap();
    }
    flush_stats(&admin).await;
    let entries = agent
        .wait_for(WAIT, "5,000 more entries", |m| {
            m.get("pg_stat_statements_entries", &[])
                .filter(|n| *n >= 5000.0)
        })
        .await;
    assert!(entries >= 5000.0);
    // Let a few cycles of churn happen, checking the bound at every scrape.
    let bound = 2 * top + 1;
    for _ in 0..5 {
        let m = agent.metrics().await;
        let series: BTreeSet<String> = m
            .find("pg_stat_statements_calls_total", &[])
            .map(|s| s.labels["queryid"].clone())
            .collect();
        assert!(series.len() <= bound, "{} series > {bound}", series.len());
        assert!(series.contains("other"));
        let histograms = m
            .find("pg_stat_statements_latency_seconds_count", &[])
            .count();
        assert!(histograms <= bound, "{histograms} histograms");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Folding loses no calls: top statements plus "other" hold all 10,000.
    let m = agent.metrics().await;
    let total: f64 = m
        .find("pg_stat_statements_calls_total", &[])
        .map(|s| s.value)
        .sum();
    assert!(total >= 10_000.0, "{total}");
    crate::harness::promtool_check(&agent.get("/metrics").await.body);
}
