//! The series budget (docs/performance.md): a server with more statements
//! and tables than pgvigil publishes individually, whose leaders change
//! completely, so that hysteresis keeps every leaver it may. Every family
//! of the statements and tables collectors stays at or under its documented
//! cap at every scrape and reaches it; statements published without a
//! histogram of their own keep their percentiles in the JSON API.

use std::time::Duration;

use pgvigil::metric::{Desc, Kind};

use crate::harness::{Fixture, Metrics, RunningAgent, eventually};

const WAIT: Duration = Duration::from_secs(60);

/// `collectors.statements.top` and `.histograms` here, scaled down from
/// the defaults (100 and 20) so that 300 statements are many.
const TOP: usize = 10;
const HISTOGRAMS: usize = 3;
/// The tables collector's top-N of tables and of indexes (not a setting).
const TABLES_TOP: usize = 40;
/// Series of one histogram with the default 16 buckets: those, `+Inf`,
/// `_sum` and `_count`.
const HISTOGRAM_SERIES: usize = 16 + 3;
/// Statements per slice of the load: more than `TOP` each time.
const SLICE: usize = 15;

/// The most series the budget allows a family of the statements or tables
/// collector (docs/performance.md): hysteresis keeps up to twice the top,
/// plus one `"other"` series. Panics on a family it has no rule for, so a
/// new family has to be budgeted.
fn cap(collector: &str, d: &Desc) -> usize {
    let per_object = d.labels.contains(&"queryid") || d.labels.contains(&"relname");
    match (collector, d.kind, per_object) {
        ("statements", Kind::Histogram, true) => (2 * HISTOGRAMS + 1) * HISTOGRAM_SERIES,
        ("statements", Kind::Info, true) => 2 * TOP,
        ("statements", _, true) => 2 * TOP + 1,
        ("statements", Kind::Histogram, false) => HISTOGRAM_SERIES,
        ("tables", _, true) => 2 * TABLES_TOP + 1,
        // One per sizing skip reason per database; only `postgres` here.
        ("tables", _, false) if d.labels == ["datname", "reason"] => 3,
        (_, _, false) if d.labels.is_empty() => 1,
        _ => panic!("no budget for {collector}'s {}", d.exposed_name()),
    }
}

/// Series of one family in a scrape.
fn series(m: &Metrics, d: &Desc) -> usize {
    let name = d.exposed_name();
    match d.kind {
        Kind::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|suffix| m.find(&format!("{name}{suffix}"), &[]).count())
            .sum(),
        _ => m.find(&name, &[]).count(),
    }
}

/// Asserts every statements and tables family is within its cap; returns
/// the scrape.
fn within_caps(m: &Metrics) -> &Metrics {
    for (collector, descs) in pgvigil::registry::catalog() {
        if collector != "statements" && collector != "tables" {
            continue;
        }
        for d in descs {
            let (n, cap) = (series(m, d), cap(collector, d));
            assert!(
                n <= cap,
                "{}: {n} series, over its cap of {cap}",
                d.exposed_name()
            );
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_stay_within_the_budget_when_the_leaders_change() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    // Tables of one row: as many as the cap that grow first (a), as many
    // that grow later past them (b), and 200 that stay small (t).
    admin
        .batch_execute(&format!(
            "DO $$ DECLARE name text; BEGIN
               FOR name IN SELECT p || g FROM unnest(ARRAY['a', 'b']) p, generate_series(1, {TABLES_TOP}) g
                           UNION ALL SELECT 't' || g FROM generate_series(1, 200) g LOOP
                 EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, c int)', name);
                 EXECUTE format('INSERT INTO %I VALUES (1, 1)', name);
               END LOOP;
               FOR g IN 1..{TABLES_TOP} LOOP
                 EXECUTE format('INSERT INTO a%s SELECT g, g FROM generate_series(2, 1000) g', g);
               END LOOP;
             END $$"
        ))
        .await
        .unwrap();
    let agent = RunningAgent::start(
        &fx.pg.scratch(),
        &fx.config(&format!(
            "server = \"off\"\nconnections = \"off\"\ndatabases = \"off\"\ntables = \"1s\"\n\
             statements = {{ interval = \"1s\", top = {TOP}, histograms = {HISTOGRAMS} }}"
        )),
    )
    .await;

    // Statements: every slice of 15 statements (3 calls each) does all the
    // work of its interval, so each interval has 10 new leaders and 3 new
    // histograms, and the leavers are kept for 5 cycles, up to the caps.
    agent
        .wait_for(WAIT, "a first interval", |m| {
            m.get("pg_statement_latency_seconds_count", &[])
        })
        .await;
    let mut reached = false;
    let mut without_histogram = 0;
    for slice in 0..200 / SLICE {
        let tables: Vec<String> = (slice * SLICE + 1..=(slice + 1) * SLICE)
            .map(|t| format!("t{t}"))
            .collect();
        let batch: String = tables
            .iter()
            .map(|t| format!("SELECT c FROM {t} WHERE id = 1;").repeat(3))
            .collect();
        admin.batch_execute(&batch).await.unwrap();
        let summaries = eventually(WAIT, "the slice's interval in the JSON API", || async {
            let api: serde_json::Value =
                serde_json::from_str(&agent.get("/api/v1/statements").await.body).ok()?;
            let of_slice: Vec<serde_json::Value> = api["targets"][0]["report"]["statements"]
                .as_array()?
                .iter()
                .filter(|s| {
                    let query = s["query"].as_str().unwrap_or_default();
                    tables
                        .iter()
                        .any(|t| query == format!("SELECT c FROM {t} WHERE id = $1"))
                })
                .cloned()
                .collect();
            (!of_slice.is_empty()).then_some(of_slice)
        })
        .await;
        let m = agent.metrics().await;
        within_caps(&m);
        // Published without a histogram of its own, a statement keeps its
        // percentiles in the JSON API.
        for s in &summaries {
            let queryid = s["queryid"].as_str().unwrap();
            let own = m
                .find(
                    "pg_stat_statements_latency_seconds_count",
                    &[("queryid", queryid)],
                )
                .next()
                .is_some();
            let q = &s["quantiles"];
            let (p50, p99) = (q["p50"].as_f64().unwrap(), q["p99"].as_f64().unwrap());
            assert!(
                s["calls"].as_f64().unwrap() >= 1.0 && p50 > 0.0 && p99 >= p50,
                "{s}"
            );
            if !own {
                without_histogram += 1;
            }
        }
        let counters = m.find("pg_stat_statements_calls_total", &[]).count();
        let infos = m.find("pg_stat_statements_query_info", &[]).count();
        let histograms = m
            .find("pg_stat_statements_latency_seconds_count", &[])
            .count();
        if (counters, infos, histograms) == (2 * TOP + 1, 2 * TOP, 2 * HISTOGRAMS + 1) {
            reached = true;
            break;
        }
    }
    assert!(reached, "the statements caps were never reached");
    assert!(
        without_histogram > 0,
        "no statement without a histogram had percentiles"
    );

    // Tables: the a tables lead; then the b tables grow past them and lead,
    // while the a tables are kept for 3 runs: twice the cap, plus "other".
    agent
        .wait_for(WAIT, "the a tables to lead", |m| {
            (1..=TABLES_TOP)
                .all(|t| {
                    m.find("pg_table_size_bytes", &[("relname", &format!("a{t}"))])
                        .next()
                        .is_some()
                })
                .then_some(())
        })
        .await;
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN FOR g IN 1..{TABLES_TOP} LOOP
               EXECUTE format('INSERT INTO b%s SELECT g, g FROM generate_series(2, 3000) g', g);
             END LOOP; END $$"
        ))
        .await
        .unwrap();
    agent
        .wait_for(WAIT, "the a and b tables and indexes, all published", |m| {
            let tables = within_caps(m).find("pg_table_size_bytes", &[]).count();
            let indexes = m.find("pg_index_size_bytes", &[]).count();
            (tables == 2 * TABLES_TOP + 1 && indexes == 2 * TABLES_TOP + 1).then_some(())
        })
        .await;
    let m = agent.metrics().await;
    within_caps(&m);
    assert_eq!(
        m.get("pg_tables_watched", &[]),
        Some((2 * TABLES_TOP + 200) as f64)
    );
    crate::harness::promtool_check(&agent.get("/metrics").await.body);
}
