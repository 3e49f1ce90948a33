//! The vacuum_tables collector against a real cluster: a table frozen long
//! ago (thousands of XIDs and a few multixacts consumed since, every other
//! table frozen again) is the oldest of the target, at the age the server
//! gives the superuser; a table's manual VACUUM and ANALYZE counts and
//! times are pg_stat_user_tables'. Checked with a long-running agent
//! (metrics, `/api/v1/vacuum`, `/`) and a fresh `pgvigil once`.

use std::time::Duration;

use serde_json::Value as Json;
use tokio_postgres::Client;

use crate::harness::{Fixture, Metrics, PgOptions, RunningAgent, outputs, pgvigil};

const WAIT: Duration = Duration::from_secs(60);
const DB: &str = "app";
const OLD: &str = "frozen_long_ago";
const CHURN: &str = "churn";
const XIDS: usize = 3000;
const MULTIXACTS: usize = 20;

async fn f64_of(client: &Client, sql: &str) -> f64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Freezes every table of the session's database but `except`.
async fn freeze_all_but(client: &Client, except: &str) {
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't' AND c.relname <> $1",
            &[&except],
        )
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    client
        .batch_execute(&format!("VACUUM (FREEZE) {}", names.join(", ")))
        .await
        .unwrap();
}

/// Creates `n` multixacts: two sessions share-lock the same row.
async fn multixacts(a: &Client, b: &Client, n: usize) {
    for _ in 0..n {
        a.batch_execute("BEGIN; SELECT * FROM locked WHERE id = 1 FOR SHARE")
            .await
            .unwrap();
        b.batch_execute("BEGIN; SELECT * FROM locked WHERE id = 1 FOR SHARE")
            .await
            .unwrap();
        // An xid of its own for each, so the two lockers are distinct.
        a.batch_execute("SELECT txid_current(); COMMIT")
            .await
            .unwrap();
        b.batch_execute("SELECT txid_current(); COMMIT")
            .await
            .unwrap();
    }
}

/// The superuser's view of the two tables: (xid age, mxid age of OLD),
/// (n_dead_tup, n_mod_since_analyze, vacuum_count, analyze_count,
/// last_vacuum, last_analyze) of CHURN.
async fn truth(app: &Client) -> ((f64, f64), [f64; 6]) {
    let old = app
        .query_one(
            &format!("SELECT age(relfrozenxid)::float8, mxid_age(relminmxid)::float8 FROM pg_class WHERE relname = '{OLD}'"),
            &[],
        )
        .await
        .unwrap();
    let c = app
        .query_one(
            &format!(
                "SELECT n_dead_tup::float8, n_mod_since_analyze::float8, vacuum_count::float8, analyze_count::float8,
                        coalesce(extract(epoch FROM last_vacuum), 0)::float8, coalesce(extract(epoch FROM last_analyze), 0)::float8
                   FROM pg_stat_user_tables WHERE relname = '{CHURN}'"
            ),
            &[],
        )
        .await
        .unwrap();
    (
        (old.get(0), old.get(1)),
        [c.get(0), c.get(1), c.get(2), c.get(3), c.get(4), c.get(5)],
    )
}

fn table(m: &Metrics, name: &str, relname: &str) -> Option<f64> {
    m.get(
        name,
        &[
            ("datname", DB),
            ("schemaname", "public"),
            ("relname", relname),
        ],
    )
}

/// Checks what `m` publishes against the superuser's truth.
fn check(m: &Metrics, (old, churn): ((f64, f64), [f64; 6]), what: &str) {
    assert_eq!(
        table(m, "pg_table_frozen_xid_age", OLD),
        Some(old.0),
        "{what}"
    );
    assert_eq!(
        table(m, "pg_table_min_mxid_age", OLD),
        Some(old.1),
        "{what}"
    );
    // The oldest of the rest is younger: the table frozen long ago leads.
    let other = m
        .get("pg_table_frozen_xid_age", &[("relname", "other")])
        .unwrap_or(0.0);
    assert!(other < old.0 - XIDS as f64, "{what}: other {other}");
    assert_eq!(
        table(m, "pg_table_n_mod_since_analyze", CHURN),
        Some(churn[1]),
        "{what}"
    );
    assert_eq!(
        table(m, "pg_table_vacuums_total", CHURN),
        Some(churn[2]),
        "{what}"
    );
    assert_eq!(
        table(m, "pg_table_analyzes_total", CHURN),
        Some(churn[3]),
        "{what}"
    );
    assert_eq!(
        table(m, "pg_table_autovacuums_total", CHURN),
        Some(0.0),
        "{what}"
    );
    assert_eq!(
        table(m, "pg_table_last_vacuum_timestamp_seconds", CHURN),
        Some(churn[4]),
        "{what}"
    );
    assert_eq!(
        table(m, "pg_table_last_analyze_timestamp_seconds", CHURN),
        Some(churn[5]),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_frozen_long_ago_leads_and_vacuum_counts_are_the_servers() {
    let fx = Fixture::start_with(PgOptions {
        conf: vec!["autovacuum = off".into()],
    })
    .await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .await
        .unwrap();
    let app = fx.pg.connect_to(DB).await;
    let other = fx.pg.connect_to(DB).await;
    app.batch_execute(&format!(
        "CREATE TABLE {OLD} (id int, pad text);
         INSERT INTO {OLD} SELECT g, repeat('x', 50) FROM generate_series(1, 1000) g;
         CREATE TABLE locked (id int PRIMARY KEY);
         INSERT INTO locked VALUES (1)"
    ))
    .await
    .unwrap();
    app.batch_execute(&format!("VACUUM (FREEZE) {OLD}"))
        .await
        .unwrap();
    // XIDs and multixacts consumed since; everything else frozen again,
    // in both databases.
    for _ in 0..XIDS {
        admin.batch_execute("SELECT txid_current()").await.unwrap();
    }
    multixacts(&app, &other, MULTIXACTS).await;
    freeze_all_but(&app, OLD).await;
    freeze_all_but(&admin, OLD).await;
    // Manual VACUUMs and an ANALYZE, then dead rows.
    app.batch_execute(&format!(
        "CREATE TABLE {CHURN} (id int);
         INSERT INTO {CHURN} SELECT generate_series(1, 1000)"
    ))
    .await
    .unwrap();
    for sql in ["VACUUM", "VACUUM", "ANALYZE"] {
        app.batch_execute(&format!("{sql} {CHURN}")).await.unwrap();
    }
    app.batch_execute(&format!("DELETE FROM {CHURN} WHERE id <= 300"))
        .await
        .unwrap();
    drop(other);
    // Loose wait for the statistics to reach the server's views.
    let mut truth_now = truth(&app).await;
    for _ in 0..60 {
        if truth_now.1[0] == 300.0 && truth_now.1[2] == 2.0 && truth_now.1[3] == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        truth_now = truth(&app).await;
    }
    let (old, churn) = truth_now;
    assert!(old.0 > XIDS as f64, "{old:?}");
    assert!(old.1 >= MULTIXACTS as f64, "{old:?}");
    assert_eq!(
        [churn[0], churn[2], churn[3]],
        [300.0, 2.0, 1.0],
        "{churn:?}"
    );
    // The DELETE, and the INSERT too if its statistics reached the server
    // only after the ANALYZE.
    assert!(churn[1] == 300.0 || churn[1] == 1300.0, "{churn:?}");

    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("vacuum_tables = \"1s\"")).await;
    let m = agent
        .wait_for(WAIT, "the churn table's vacuum history", |m| {
            table(m, "pg_table_vacuums_total", CHURN).map(|_| m.clone())
        })
        .await;
    check(&m, truth_now, "agent");
    // Nothing consumed an XID meanwhile: the truth holds.
    assert_eq!(truth(&app).await, truth_now);

    let api: Json = serde_json::from_str(&agent.get("/api/v1/vacuum").await.body).unwrap();
    let tables = &api["targets"][0]["report"]["tables"];
    let dbs = tables["oldest"].as_array().expect("oldest");
    let mine = dbs.iter().find(|d| d["datname"] == DB).expect("app");
    assert_eq!(dbs[0]["datname"], DB, "{tables}");
    assert_eq!(mine["tables"][0]["relname"], OLD, "{tables}");
    assert_eq!(mine["tables"][0]["xid_age"], old.0);
    let freeze = f64_of(
        &admin,
        "SELECT current_setting('autovacuum_freeze_max_age')::float8",
    )
    .await;
    let share = mine["tables"][0]["xid_share_of_freeze_max_age"]
        .as_f64()
        .unwrap();
    assert!((share - old.0 / freeze).abs() < 1e-12, "{share}");
    let churned = tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["relname"] == CHURN)
        .expect("churn in the report");
    assert_eq!(churned["vacuum_count"], churn[2]);
    assert_eq!(churned["dead_tuples"], churn[0]);
    let page = agent.get("/").await.body;
    assert!(
        page.contains("Oldest tables") && page.contains(&format!("public.{OLD}")),
        "{page}"
    );

    // A fresh `pgvigil once` says the same.
    let env = fx.once_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = pgvigil(
        &["once", "--dsn", &fx.dsn(), "--format", "prometheus"],
        &env,
    );
    let (text, err) = outputs(&out);
    assert!(out.status.success(), "{err}");
    check(&Metrics::parse(&text), truth_now, "once");
    crate::harness::promtool_check(&text);
    let out = pgvigil(&["once", "--dsn", &fx.dsn(), "--format", "table"], &env);
    let (text, err) = outputs(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        text.contains("oldest tables") && text.contains(&format!("public.{OLD}")),
        "{text}"
    );
    assert!(text.contains(&format!("public.{CHURN}")), "{text}");
    let out = pgvigil(&["once", "--dsn", &fx.dsn(), "--format", "json"], &env);
    let (json, err) = outputs(&out);
    assert!(out.status.success(), "{err}");
    let json: Json = serde_json::from_str(&json).unwrap();
    let oldest = &json["targets"][0]["vacuum"]["tables"]["oldest"][0];
    assert_eq!(oldest["tables"][0]["relname"], OLD, "{json}");
    assert_eq!(oldest["tables"][0]["xid_age"], old.0);
    assert_eq!(truth(&app).await, truth_now, "something changed the truth");

    // Vacuumed, the table no longer leads.
    app.batch_execute(&format!("VACUUM (FREEZE) {OLD}"))
        .await
        .unwrap();
    agent
        .wait_for(WAIT, "the frozen table gone from the oldest", |m| {
            (table(m, "pg_table_frozen_xid_age", OLD).is_none_or(|age| age < XIDS as f64))
                .then_some(())
        })
        .await;
}
