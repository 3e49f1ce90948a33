//! Schema risks against real servers: an int4 serial set near 2^31−1 with
//! setval, a failed CREATE INDEX CONCURRENTLY, an unused index over the
//! floor, duplicate indexes, sequences the role may not read, and locks
//! that must not hold the collector up. Ground truth is the server's own
//! catalogs read by the test as superuser.

use std::time::Duration;

use tokio_postgres::Client;

use crate::harness::pg::{flush_stats, version_num};
use crate::harness::{Fixture, Metrics, RunningAgent, outputs, pgvigil, promtool_check};

const WAIT: Duration = Duration::from_secs(60);
const INT4_MAX: f64 = 2147483647.0;

/// In `postgres`: `accounts`, an int4 serial whose sequence became bigint
/// (as after pg_upgrade from 9.x), 50 million short of 2^31−1; `dups`,
/// whose unique index built concurrently failed; `events`, a 100,000-row
/// table with an index never scanned; `small`, with two pairs of
/// duplicate indexes (one on an expression with a predicate) and one that
/// differs only in its predicate.
async fn set_up(admin: &Client) {
    admin
        .batch_execute(
            "CREATE TABLE accounts (id serial PRIMARY KEY, note text);
             ALTER SEQUENCE accounts_id_seq AS bigint;
             INSERT INTO accounts (note) VALUES ('a'), ('b');
             SELECT setval('accounts_id_seq', 2147483647 - 50000000);
             CREATE TABLE dups (v int);
             INSERT INTO dups VALUES (1), (1), (2);
             CREATE TABLE events (id int, k int);
             INSERT INTO events SELECT g, g FROM generate_series(1, 100000) g;
             CREATE INDEX events_k ON events (k);
             CREATE TABLE small (id int, t text);
             INSERT INTO small SELECT g, 'x' || g FROM generate_series(1, 1000) g;
             CREATE INDEX small_a ON small (id);
             CREATE INDEX small_b ON small (id);
             CREATE INDEX small_lower_a ON small (lower(t)) WHERE id > 10;
             CREATE INDEX small_lower_b ON small (lower(t)) WHERE id > 10;
             CREATE INDEX small_lower_c ON small (lower(t)) WHERE id > 20;",
        )
        .await
        .unwrap();
    let failed = admin
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY dups_v_key ON dups (v)")
        .await;
    assert!(
        failed.is_err(),
        "the unique build over duplicates must fail"
    );
}

/// The share of its range a sequence used, from pg_sequences as superuser,
/// against `column_max` when its column's type stops it first.
async fn expected_ratio(client: &Client, sequence: &str, column_max: f64) -> f64 {
    let row = client
        .query_one(
            "SELECT last_value::float8, min_value::float8, max_value::float8 FROM pg_sequences WHERE sequencename = $1",
            &[&sequence],
        )
        .await
        .unwrap();
    let (last, min, max): (f64, f64, f64) = (row.get(0), row.get(1), row.get(2));
    (last - min) / (max.min(column_max) - min)
}

async fn index_bytes(client: &Client, index: &str) -> f64 {
    client
        .query_one(
            "SELECT pg_relation_size($1::text::regclass)::float8",
            &[&index],
        )
        .await
        .unwrap()
        .get(0)
}

/// The indexes the server itself says are invalid.
async fn invalid_indexes(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The monitoring role may read the sequences' positions: pg_read_all_data
/// on 14+, SELECT on the schema's sequences before.
async fn grant_sequences(admin: &Client, other: &Client) {
    if version_num(admin).await >= 140000 {
        admin
            .batch_execute("GRANT pg_read_all_data TO pgvigil")
            .await
            .unwrap();
    } else {
        for c in [admin, other] {
            c.batch_execute("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO pgvigil")
                .await
                .unwrap();
        }
    }
}

fn once(fx: &Fixture, format: &str) -> String {
    let env = fx.once_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = pgvigil(&["once", "--dsn", &fx.dsn(), "--format", format], &env);
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    stdout
}

/// Checks the sequence, invalid, unused and duplicate figures in `m`.
async fn check_metrics(m: &Metrics, admin: &Client, second: &Client, what: &str) {
    let accounts = [
        ("datname", "postgres"),
        ("schemaname", "public"),
        ("sequence", "accounts_id_seq"),
    ];
    let ratio = m.get("pg_sequence_used_ratio", &accounts).unwrap();
    let truth = expected_ratio(admin, "accounts_id_seq", INT4_MAX).await;
    assert!((ratio - truth).abs() < 1e-9, "{what}: {ratio} vs {truth}");
    assert!(ratio > 0.95, "{what}: past the critical threshold: {ratio}");
    let orders = [("datname", "second"), ("sequence", "orders_id_seq")];
    let ratio = m.get("pg_sequence_used_ratio", &orders).unwrap();
    let truth = expected_ratio(second, "orders_id_seq", INT4_MAX).await;
    assert!((ratio - truth).abs() < 1e-9, "{what}: {ratio} vs {truth}");
    assert!(ratio > 0.8 && ratio < 0.95, "{what}: {ratio}");

    let mut published: Vec<String> = m
        .find("pg_index_invalid", &[("datname", "postgres")])
        .map(|s| s.labels["indexrelname"].clone())
        .collect();
    published.sort();
    assert_eq!(published, invalid_indexes(admin).await, "{what}");
    assert_eq!(published, ["dups_v_key"], "{what}");

    let unused = m
        .get("pg_indexes_unused_bytes", &[("datname", "postgres")])
        .unwrap();
    assert_eq!(unused, index_bytes(admin, "events_k").await, "{what}");
    assert!(unused > 1024.0 * 1024.0, "{what}: over the 1 MiB floor");
    let duplicate = m
        .get("pg_indexes_duplicate_bytes", &[("datname", "postgres")])
        .unwrap();
    let truth = index_bytes(admin, "small_b").await + index_bytes(admin, "small_lower_b").await;
    assert_eq!(duplicate, truth, "{what}");
    assert_eq!(m.get("pg_sequences_unreadable", &[]), Some(0.0), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_near_their_limit_and_invalid_unused_and_duplicate_indexes() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    set_up(&admin).await;
    admin.batch_execute("CREATE DATABASE second").await.unwrap();
    let second = fx.pg.connect_to("second").await;
    // A plain int4 serial: its own sequence (AS integer) stops at 2^31−1.
    second
        .batch_execute(
            "CREATE TABLE orders (id serial, note text);
             INSERT INTO orders (note) VALUES ('x');
             SELECT setval('orders_id_seq', 1900000000);",
        )
        .await
        .unwrap();
    flush_stats(&admin).await;

    // pg_monitor alone may not read a sequence's position: counted, absent.
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("schema = \"1s\"")).await;
    let m = agent
        .wait_for(WAIT, "the first schema run", |m| {
            m.get("pg_sequences_unreadable", &[]).map(|_| m.clone())
        })
        .await;
    // Ground truth: the sequences the monitoring role may not read, as
    // the server itself says in each database.
    async fn unreadable(client: &tokio_postgres::Client) -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM pg_sequence WHERE NOT has_sequence_privilege('pgvigil', seqrelid, 'SELECT,USAGE')",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }
    let hidden = unreadable(&admin).await;
    assert!(hidden >= 1);
    let hidden_second = unreadable(&second).await;
    assert_eq!(
        m.get("pg_sequences_unreadable", &[]),
        Some((hidden + hidden_second) as f64)
    );
    assert_eq!(m.find("pg_sequence_used_ratio", &[]).count(), 0);

    grant_sequences(&admin, &second).await;
    let m = agent
        .wait_for(WAIT, "sequences readable after the grant", |m| {
            m.find("pg_sequence_used_ratio", &[("datname", "second")])
                .next()
                .map(|_| m.clone())
        })
        .await;
    check_metrics(&m, &admin, &second, "running agent").await;
    promtool_check(&agent.get("/metrics").await.body);

    let api: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/schema").await.body).unwrap();
    let report = &api["targets"][0]["report"];
    assert_eq!(report["unused_index_min_bytes"], 1048576);
    let db = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["datname"] == "postgres")
        .unwrap();
    let first = &db["sequences"][0];
    assert_eq!(first["sequence"], "accounts_id_seq");
    assert_eq!(first["limited_by"], "column");
    assert_eq!(first["column"], "accounts.id");
    assert_eq!(first["column_type"], "integer");
    assert_eq!(first["limit"], 2147483647_i64);
    assert_eq!(db["invalid_indexes"][0]["indexrelname"], "dups_v_key");
    assert_eq!(db["unused_indexes"].as_array().unwrap().len(), 1);
    assert_eq!(db["unused_indexes"][0]["indexrelname"], "events_k");
    let mut duplicates: Vec<(String, String)> = db["duplicate_indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["indexrelname"].as_str().unwrap().to_string(),
                d["duplicate_of"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    duplicates.sort();
    assert_eq!(
        duplicates,
        [
            ("small_b".to_string(), "small_a".to_string()),
            ("small_lower_b".to_string(), "small_lower_a".to_string())
        ]
    );
    let page = agent.get("/").await.body;
    for name in [
        "Schema risks",
        "accounts_id_seq",
        "dups_v_key",
        "events_k",
        "repeats small_lower_a",
    ] {
        assert!(page.contains(name), "{name} on the page");
    }
    agent.terminate();

    // A fresh `once` reads the same from the server.
    let m = Metrics::parse(&once(&fx, "prometheus"));
    check_metrics(&m, &admin, &second, "once").await;
    let table = once(&fx, "table");
    for text in [
        "accounts_id_seq",
        "column accounts.id (integer)",
        "dups_v_key",
        "repeats small_a",
    ] {
        assert!(table.contains(text), "{text} in:\n{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sequence_or_index_is_skipped_never_waited_for() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE t (id serial, k int);
             INSERT INTO t (k) SELECT g FROM generate_series(1, 100000) g;
             SELECT setval('t_id_seq', 2000000000);
             CREATE INDEX t_k ON t (k);
             CREATE SEQUENCE free_seq MAXVALUE 1000;
             SELECT setval('free_seq', 900);",
        )
        .await
        .unwrap();
    grant_sequences(&admin, &admin).await;
    let size = index_bytes(&admin, "t_k").await;
    // Another session holds SHARE ROW EXCLUSIVE on t_id_seq (ALTER
    // SEQUENCE) and ACCESS EXCLUSIVE on t_k (REINDEX) in an open transaction.
    let holder = fx.pg.connect().await;
    holder
        .batch_execute("BEGIN; ALTER SEQUENCE t_id_seq INCREMENT BY 1; REINDEX INDEX t_k;")
        .await
        .unwrap();
    let m = Metrics::parse(&once(&fx, "prometheus"));
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "schema")]),
        Some(1.0)
    );
    // The unlocked sequence is read, the locked one left out this run.
    assert_eq!(
        m.get("pg_sequence_used_ratio", &[("sequence", "free_seq")]),
        Some(899.0 / 999.0)
    );
    assert_eq!(
        m.get("pg_sequence_used_ratio", &[("sequence", "t_id_seq")]),
        None
    );
    // The locked index is not measured: its size comes from pg_class.
    let relpages: f64 = admin
        .query_one(
            "SELECT relpages::float8 * current_setting('block_size')::float8 FROM pg_class WHERE relname = 't_k'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        m.get("pg_indexes_unused_bytes", &[("datname", "postgres")]),
        Some(relpages)
    );
    assert_eq!(relpages, size, "relpages as CREATE INDEX left it");
    holder.batch_execute("ROLLBACK").await.unwrap();
    let m = Metrics::parse(&once(&fx, "prometheus"));
    let truth = expected_ratio(&admin, "t_id_seq", INT4_MAX).await;
    assert_eq!(
        m.get("pg_sequence_used_ratio", &[("sequence", "t_id_seq")]),
        Some(truth)
    );
    assert_eq!(
        m.get("pg_indexes_unused_bytes", &[("datname", "postgres")]),
        Some(size)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_being_built_concurrently_is_not_reported_invalid() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE t (id int, k int); INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g;",
        )
        .await
        .unwrap();
    // A writer in an open transaction keeps CREATE INDEX CONCURRENTLY
    // waiting after it has entered the index, invalid, in pg_index.
    let writer = fx.pg.connect().await;
    writer
        .batch_execute("BEGIN; INSERT INTO t VALUES (0, 0);")
        .await
        .unwrap();
    let builder = fx.pg.connect().await;
    let build = tokio::spawn(async move {
        builder
            .batch_execute("CREATE INDEX CONCURRENTLY t_k ON t (k)")
            .await
    });
    crate::harness::eventually(WAIT, "the build to enter the index", || async {
        let building = invalid_indexes(&admin).await == ["t_k"];
        building.then_some(())
    })
    .await;
    let m = Metrics::parse(&once(&fx, "prometheus"));
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "schema")]),
        Some(1.0)
    );
    assert_eq!(m.find("pg_index_invalid", &[]).count(), 0);
    assert_eq!(invalid_indexes(&admin).await, ["t_k"], "still being built");
    writer.batch_execute("COMMIT").await.unwrap();
    build.await.unwrap().unwrap();
    assert!(invalid_indexes(&admin).await.is_empty());
}
