//! The amcheck collector against real servers: a healthy cluster checks
//! clean and completes passes; an index whose middle block was overwritten
//! while the server was stopped is found, named with its block, in the
//! metrics, /api/v1/consistency, `once --format table` and the page, and
//! the alert's expression is true in a real Prometheus; a relation locked
//! ACCESS EXCLUSIVE is skipped, never waited for; the page budget holds
//! per interval; a restarted agent resumes its pass. Ground truth: the
//! server's catalogs, the bytes the test overwrote, pg_locks.
//! Tables (verify_heapam) are checked on 14+ only; on 13 the heap series
//! are absent.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::harness::pg::version_num;
use crate::harness::prometheus::Prometheus;
use crate::harness::{Fixture, Metrics, RunningAgent, outputs, pgvigil, promtool_check};

const WAIT: Duration = Duration::from_secs(60);
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/pgvigil.rules.yml");
const ROLE_SQL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/sql/pgvigil-role.sql"
);

/// The extension, and the grants packaging/sql/pgvigil-role.sql documents
/// (its commented `GRANT EXECUTE` lines for amcheck, run as written).
async fn install(admin: &Client) {
    admin
        .batch_execute("CREATE EXTENSION amcheck")
        .await
        .unwrap();
    let heap = version_num(admin).await >= 140000;
    let sql = std::fs::read_to_string(ROLE_SQL).unwrap();
    let grants: Vec<&str> = sql
        .lines()
        .filter_map(|l| l.strip_prefix("--   "))
        .filter(|l| l.starts_with("GRANT EXECUTE ON FUNCTION public."))
        .filter(|l| heap || !l.contains("verify_heapam"))
        .collect();
    assert_eq!(grants.len(), if heap { 2 } else { 1 }, "{grants:?}");
    for g in grants {
        let g = g.split("--").next().unwrap();
        admin.batch_execute(g).await.unwrap();
    }
}

/// `once --config FILE --format FORMAT`.
fn once(fx: &Fixture, config: &str, format: &str) -> String {
    let file = fx.pg.scratch().join("once.toml");
    std::fs::write(&file, config).unwrap();
    let out = pgvigil(
        &[
            "once",
            "--config",
            file.to_str().unwrap(),
            "--format",
            format,
        ],
        &[],
    );
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    stdout
}

fn amcheck(fx: &Fixture, state: &Path, settings: &str) -> String {
    fx.config(&format!(
        "amcheck = {{ interval = \"1s\", full_pass = \"1h\", state_directory = \"{}\", {settings} }}",
        state.display()
    ))
}

/// Valid B-tree indexes of the connected database, as the server lists them.
async fn btree_indexes(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
              WHERE c.relkind = 'i' AND c.relam = 403 AND i.indisvalid AND c.relpersistence <> 't'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Overwrites block `block` of `relation`'s main fork with garbage, the
/// server stopped.
fn overwrite_block(data_dir: &Path, filepath: &str, block: u64) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(data_dir.join(filepath))
        .unwrap();
    file.seek(SeekFrom::Start(block * 8192)).unwrap();
    file.write_all(&[0xA5; 8192]).unwrap();
    file.sync_all().unwrap();
}

/// The alert's `expr:` line in the rules file.
fn alert_expr(name: &str) -> String {
    let rules = std::fs::read_to_string(RULES).unwrap();
    let mut lines = rules
        .lines()
        .skip_while(|l| l.trim() != format!("- alert: {name}"));
    lines
        .find_map(|l| l.trim().strip_prefix("expr: "))
        .unwrap_or_else(|| panic!("{name} in {RULES}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_index_is_found_named_and_alerted_a_healthy_cluster_shows_zero() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    let heap = version_num(&admin).await >= 140000;
    let state = fx.pg.scratch().join("state");
    let config = amcheck(&fx, &state, "pages_per_hour = 100000000");

    // Without the extension: the collector succeeds, says so, publishes nothing.
    let table = once(&fx, &config, "table");
    assert!(
        table.contains("amcheck extension is not installed"),
        "{table}"
    );
    let m = Metrics::parse(&once(&fx, &config, "prometheus"));
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "amcheck")]),
        Some(1.0)
    );
    assert_eq!(m.find("pg_amcheck_corrupt_relations", &[]).count(), 0);
    assert!(!state.exists(), "no state file where nothing is checked");

    install(&admin).await;
    admin
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
             CREATE INDEX t_v ON t (v);
             CREATE TABLE locked (id int PRIMARY KEY);
             CREATE TABLE h (id int, v text) WITH (autovacuum_enabled = off);
             INSERT INTO h SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
             ANALYZE;",
        )
        .await
        .unwrap();
    // Another session holds ACCESS EXCLUSIVE on `locked` (a migration).
    let holder = fx.pg.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE;")
        .await
        .unwrap();

    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let first = agent
        .wait_for(WAIT, "a complete pass", |m| {
            m.get("pg_amcheck_last_pass_timestamp_seconds", &[])
        })
        .await;
    let m = agent
        .wait_for(WAIT, "a second complete pass", |m| {
            m.get("pg_amcheck_last_pass_timestamp_seconds", &[])
                .filter(|t| *t > first)
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(
        m.get("pg_amcheck_corrupt_relations", &[("datname", "postgres")]),
        Some(0.0)
    );
    let indexes = btree_indexes(&admin).await as f64;
    let checked = m
        .get("pg_amcheck_relations_checked_total", &[("kind", "btree")])
        .unwrap();
    // Two passes over every index but locked_pkey (skipped, never waited for).
    assert!(checked >= 2.0 * (indexes - 1.0), "{checked} of {indexes}");
    assert!(
        m.get(
            "pg_amcheck_relations_skipped_total",
            &[("reason", "locked")]
        )
        .unwrap()
            >= 2.0
    );
    let waiting: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
              WHERE NOT l.granted AND a.application_name = 'pgvigil'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0, "pgvigil never queues behind the lock");
    match m.get("pg_amcheck_relations_checked_total", &[("kind", "heap")]) {
        Some(tables) => {
            assert!(heap);
            assert!(tables >= 2.0, "{tables}");
            assert!(
                m.get("pg_amcheck_pages_checked_total", &[("kind", "heap")])
                    .unwrap()
                    > 0.0
            );
        }
        None => assert!(!heap, "tables are checked on 14+"),
    }
    promtool_check(&agent.get("/metrics").await.body);
    holder.batch_execute("ROLLBACK").await.unwrap();
    agent.terminate();

    // The middle block of t_v, overwritten while the server is stopped.
    let row = admin
        .query_one(
            "SELECT pg_relation_filepath('t_v'), (pg_relation_size('t_v') / 8192)::int8",
            &[],
        )
        .await
        .unwrap();
    let (filepath, blocks): (String, i64) = (row.get(0), row.get(1));
    assert!(blocks >= 20, "{blocks}");
    let middle = (blocks / 2) as u64;
    // And the middle block of table h (found on 14+ only).
    let row = admin
        .query_one(
            "SELECT pg_relation_filepath('h'), (pg_relation_size('h') / 8192)::int8",
            &[],
        )
        .await
        .unwrap();
    let (heap_path, heap_blocks): (String, i64) = (row.get(0), row.get(1));
    let heap_middle = (heap_blocks / 2) as u64;
    drop(admin);
    fx.pg.stop();
    overwrite_block(&fx.pg.data_dir(), &filepath, middle);
    overwrite_block(&fx.pg.data_dir(), &heap_path, heap_middle);
    fx.pg.restart_stopped();
    let corrupt = if heap { 2.0 } else { 1.0 };

    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let found = Instant::now();
    let m = agent
        .wait_for(WAIT, "the corrupt index (and table on 14+)", |m| {
            m.get("pg_amcheck_corrupt_relations", &[("datname", "postgres")])
                .filter(|n| *n == corrupt)
                .map(|_| m.clone())
        })
        .await;
    println!("found in {:?}", found.elapsed());
    assert!(
        m.get("pg_amcheck_relations_checked_total", &[("kind", "btree")])
            .unwrap()
            >= checked
    );
    let api: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/consistency").await.body).unwrap();
    let findings = api["targets"][0]["report"]["findings"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(findings.len() as f64, corrupt, "{findings:?}");
    let f = findings.iter().find(|f| f["kind"] == "btree").unwrap();
    assert_eq!(f["relname"], "t_v");
    assert_eq!(f["kind"], "btree");
    assert_eq!(f["table"], "t");
    assert_eq!(f["datname"], "postgres");
    assert_eq!(f["block"], middle, "{f}");
    println!("finding: {f}");
    if heap {
        let h = findings.iter().find(|f| f["kind"] == "heap").unwrap();
        assert_eq!(h["relname"], "h");
        assert_eq!(h["block"], heap_middle, "{h}");
        println!("finding: {h}");
    }

    // The alert's own expression, evaluated by Prometheus on the scrape.
    let expr = alert_expr("PostgresCorruptionFound");
    let prom = Prometheus::start(agent.addr, &[Path::new(RULES)]).await;
    let firing = crate::harness::pg::eventually(WAIT, "the alert expression", || async {
        let samples = prom.query(&expr).await;
        (!samples.is_empty()).then_some(samples)
    })
    .await;
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0].value, corrupt);
    assert_eq!(firing[0].label("datname"), Some("postgres"));
    let page = agent.get("/").await.body;
    assert!(
        page.contains("Consistency (amcheck)") && page.contains("t_v"),
        "on the page"
    );
    drop(prom);
    agent.terminate();

    // A fresh `once` reads the finding from the state and checks on.
    let table = once(&fx, &config, "table");
    assert!(table.contains("CORRUPT RELATIONS"), "{table}");
    assert!(table.contains("public.t_v"), "{table}");

    // REINDEX rebuilds it: the next check finds it clean (the table stays).
    fx.pg
        .connect()
        .await
        .batch_execute("REINDEX INDEX t_v")
        .await
        .unwrap();
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    agent
        .wait_for(WAIT, "the rebuilt index clean", |m| {
            m.get("pg_amcheck_corrupt_relations", &[("datname", "postgres")])
                .filter(|n| *n == corrupt - 1.0)
        })
        .await;
    agent.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_budget_holds_per_interval_and_a_restart_resumes_the_pass() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    install(&admin).await;
    let state = fx.pg.scratch().join("state");
    // 18,000 pages an hour: 5 a second.
    let per_second: f64 = 5.0;
    let config = amcheck(&fx, &state, "pages_per_hour = 18000");
    // The credit may hold two turns, or the largest index waiting for it.
    let largest: f64 = admin
        .query_one(
            "SELECT max(pg_relation_size(c.oid) / 8192)::float8 FROM pg_class c
              WHERE c.relkind = 'i' AND c.relam = 403",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let pages = |m: &Metrics| m.sum("pg_amcheck_pages_checked_total", &[]);
    let start = agent.wait_for(WAIT, "the first turn", pages).await;
    let t0 = Instant::now();
    let mut samples = vec![(0.0, start)];
    while t0.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let p = pages(&agent.metrics().await).unwrap();
        samples.push((t0.elapsed().as_secs_f64(), p));
    }
    let m = agent.metrics().await;
    let started = m
        .get("pg_amcheck_pass_started_timestamp_seconds", &[])
        .unwrap();
    assert_eq!(
        m.get("pg_amcheck_last_pass_timestamp_seconds", &[]),
        None,
        "the pass is budget-bound"
    );
    let cap = (2.0 * per_second).max(largest);
    for w in samples.windows(2) {
        let ((ta, a), (tb, b)) = (w[0], w[1]);
        // What the bucket held plus what accrued, with one turn of slack
        // for when the agent's reading and the test's differ.
        let most = cap + per_second * (tb - ta + 1.0);
        assert!(
            b - a <= most,
            "{} pages in {:.1}s (most {most}): {samples:?}",
            b - a,
            tb - ta
        );
    }
    let (t_end, end) = *samples.last().unwrap();
    let done = end - start;
    println!("{done} pages in {t_end:.1}s at a budget of {per_second}/s: {samples:?}");
    assert!(done <= cap + per_second * (t_end + 1.0), "{samples:?}");
    assert!(
        done >= 0.3 * per_second * t_end,
        "the budget is used: {samples:?}"
    );
    let before: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/consistency").await.body).unwrap();
    let position = before["targets"][0]["report"]["position"].clone();
    agent.terminate();

    // A restarted agent resumes: same pass, totals and position carried on.
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let m = agent
        .wait_for(WAIT, "the first turn after the restart", |m| {
            pages(m).map(|_| m.clone())
        })
        .await;
    // The same pass (equal to the float JSON reading keeps: a microsecond).
    let resumed_from = m
        .get("pg_amcheck_pass_started_timestamp_seconds", &[])
        .unwrap();
    assert!(
        (resumed_from - started).abs() < 1e-3,
        "{resumed_from} vs {started}"
    );
    assert!(pages(&m).unwrap() >= end, "{:?} after {end}", pages(&m));
    let after: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/consistency").await.body).unwrap();
    let resumed = &after["targets"][0]["report"]["position"];
    assert!(
        resumed["oid"].as_u64() >= position["oid"].as_u64(),
        "{position} then {resumed}"
    );
    agent.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_pause_while_connections_are_near_the_limit() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    install(&admin).await;
    let state = fx.pg.scratch().join("state");
    let config = amcheck(&fx, &state, "pages_per_hour = 18000");
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let pages = |m: &Metrics| m.sum("pg_amcheck_pages_checked_total", &[]);
    agent
        .wait_for(WAIT, "checks under way", |m| {
            (m.get("pgvigil_amcheck_paused", &[]) == Some(0.0))
                .then(|| pages(m))
                .flatten()
        })
        .await;
    // 32 more sessions: with the test's and the agent's, over 90 % of the
    // 37 usable slots (max_connections 40, 3 reserved).
    let mut held = Vec::new();
    for _ in 0..32 {
        held.push(fx.pg.connect().await);
    }
    let paused_at = agent
        .wait_for(WAIT, "checks paused", |m| {
            (m.get("pgvigil_amcheck_paused", &[]) == Some(1.0))
                .then(|| pages(m))
                .flatten()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let m = agent.metrics().await;
    assert_eq!(m.get("pgvigil_amcheck_paused", &[]), Some(1.0));
    assert_eq!(pages(&m), Some(paused_at), "no page read while paused");
    let api: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/consistency").await.body).unwrap();
    let reason = api["targets"][0]["report"]["paused"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("usable connections in use"), "{reason}");
    println!("paused: {reason}");
    drop(held);
    agent
        .wait_for(WAIT, "checks resumed", |m| {
            (m.get("pgvigil_amcheck_paused", &[]) == Some(0.0) && pages(m) > Some(paused_at))
                .then_some(())
        })
        .await;
    agent.terminate();
}
