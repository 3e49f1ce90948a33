//! Counters across the conditions that break naive exporters: a
//! statistics reset followed by an agent restart, and another server
//! taking over the target's address (a failover behind a VIP).

use std::time::Duration;

use crate::harness::metrics::increase;
use crate::harness::pg::flush_stats;
use crate::harness::{Fixture, Metrics, PgOptions, RunningAgent, outputs, pgvigil};

const WAIT: Duration = Duration::from_secs(60);
const INSERT: &str = "INSERT INTO t VALUES ($1)";

/// Every scrape of the series the test follows, in order, as Prometheus
/// would have stored them.
#[derive(Default)]
struct Scrapes {
    inserted: Vec<f64>,
    calls: Vec<f64>,
}

impl Scrapes {
    /// Scrapes until `done` holds for the (tup_inserted, calls) pair,
    /// keeping every sample seen.
    async fn until(&mut self, agent: &RunningAgent, what: &str, done: impl Fn(f64, f64) -> bool) {
        let fp = pgvigil::sql::fingerprint(INSERT).unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let m: Metrics = agent.metrics().await;
            let inserted = m.get("pg_database_tup_inserted_total", &[("datname", "appdb")]);
            let calls = m.get(
                "pg_stat_statements_calls_total",
                &[("datname", "appdb"), ("fingerprint", fp.as_str())],
            );
            if let (Some(i), Some(c)) = (inserted, calls) {
                self.inserted.push(i);
                self.calls.push(c);
                if done(i, c) {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:?} {:?}\n{}",
                self.inserted,
                self.calls,
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn insert(client: &tokio_postgres::Client, rows: i32) {
    for i in 0..rows {
        client.execute(INSERT, &[&i]).await.unwrap();
    }
    flush_stats(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_then_an_agent_restart_neither_loses_nor_double_counts() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin.batch_execute("CREATE DATABASE appdb").await.unwrap();
    let app = fx.pg.connect_to("appdb").await;
    app.batch_execute("CREATE TABLE t (n int)").await.unwrap();
    // One row first, so that both series exist before the counted work.
    insert(&app, 1).await;
    let config = fx.config("statements = \"1s\"");
    let mut scrapes = Scrapes::default();

    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    scrapes
        .until(&agent, "the first reading", |_, c| c >= 1.0)
        .await;
    let (inserted0, calls0) = (scrapes.inserted[0], scrapes.calls[0]);
    insert(&app, 1000).await;
    scrapes
        .until(&agent, "1,000 more rows", |i, c| {
            i >= inserted0 + 1000.0 && c >= calls0 + 1000.0
        })
        .await;

    // The statistics reset, then 500 rows that count from zero.
    app.batch_execute("SELECT pg_stat_reset()").await.unwrap();
    admin
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();
    insert(&app, 500).await;
    scrapes
        .until(&agent, "500 rows after the reset", |i, c| {
            i < inserted0 + 1000.0 && i >= 500.0 && c == 500.0
        })
        .await;

    // The agent restarts (an upgrade, say) and 300 more rows come.
    agent.terminate();
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    insert(&app, 300).await;
    scrapes
        .until(&agent, "300 rows after the restart", |i, c| {
            i >= 800.0 && c >= 800.0
        })
        .await;

    // What Prometheus makes of every scrape: exactly the work done.
    assert_eq!(
        increase(&scrapes.inserted),
        1800.0,
        "tup_inserted samples {:?}",
        scrapes.inserted
    );
    assert_eq!(
        increase(&scrapes.calls),
        1800.0,
        "calls samples {:?}",
        scrapes.calls
    );

    // A fresh `pgvigil once` reads what the server says, as the agent does.
    let server_inserted: i64 = app
        .query_one(
            "SELECT tup_inserted FROM pg_stat_database WHERE datname = 'appdb'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let env = fx.once_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = pgvigil(
        &["once", "--dsn", &fx.dsn(), "--format", "prometheus"],
        &env,
    );
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let once = Metrics::parse(&stdout);
    assert_eq!(
        once.get("pg_database_tup_inserted_total", &[("datname", "appdb")]),
        Some(server_inserted as f64)
    );
    assert_eq!(
        server_inserted, 800,
        "the server's own count since the reset"
    );
}

/// The statements API's calls of `fingerprint` in each report, keyed by
/// the report's collection time.
async fn reported_calls(agent: &RunningAgent, fingerprint: &str) -> Option<(f64, f64)> {
    let body = agent.get("/api/v1/statements").await.body;
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    let report = &doc["targets"][0]["report"];
    let at = report["collected_at"].as_f64()?;
    let calls = report["statements"]
        .as_array()?
        .iter()
        .filter(|s| s["fingerprint"] == fingerprint)
        .filter_map(|s| s["calls"].as_f64())
        .sum();
    Some((at, calls))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_server_behind_the_address_is_never_compared_with_the_first() {
    let a = Fixture::start().await;
    let mut b = Fixture::start_distinct().await;
    for (fx, n) in [(&a, 10), (&b, 1000)] {
        let client = fx.pg.connect().await;
        client
            .batch_execute("CREATE TABLE t (n int)")
            .await
            .unwrap();
        insert(&client, n).await;
    }
    // B gets A's monitoring password, as a replica of A would have it.
    b.pg.connect()
        .await
        .batch_execute(&format!(
            "ALTER ROLE pgvigil PASSWORD '{}'",
            a.password.replace('\'', "''")
        ))
        .await
        .unwrap();
    let fp = pgvigil::sql::fingerprint(INSERT).unwrap();
    let agent = RunningAgent::start(&a.pg.scratch(), &a.config("statements = \"1s\"")).await;
    let labels = [("fingerprint", fp.as_str())];
    let before = agent
        .wait_for(WAIT, "A's 10 inserts and its start time", |m| {
            let calls = m.get("pg_stat_statements_calls_total", &labels)?;
            let started = m.get("pg_postmaster_start_time_seconds", &[])?;
            (calls == 10.0).then_some(started)
        })
        .await;
    // Reports exist on A before the switch.
    eventually_report(&agent, &fp).await;

    // A goes away and B answers at its address.
    a.pg.stop();
    let port = a.pg.port;
    b.pg.take_over_port(port, &PgOptions::default());
    agent
        .wait_for(WAIT, "B's readings", |m| {
            let calls = m.get("pg_stat_statements_calls_total", &labels)?;
            let started = m.get("pg_postmaster_start_time_seconds", &[])?;
            (calls == 1000.0 && started != before).then_some(())
        })
        .await;
    // Nothing ran since the switch: no interval may count B's past (1,000
    // calls, or 990 if compared with A's 10) as growth. Then 5 calls on B.
    let b_client = b.pg.connect().await;
    let mut seen = Vec::new();
    let mut sent = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(report) = reported_calls(&agent, &fp).await
            && seen.last() != Some(&report)
        {
            seen.push(report);
        }
        let reported: Vec<f64> = seen.iter().map(|(_, c)| *c).collect();
        if reported.len() >= 3 && !sent {
            insert(&b_client, 5).await;
            sent = true;
        }
        if sent && reported.contains(&5.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no report of B's 5 calls: {seen:?}\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.iter().all(|(_, calls)| *calls <= 5.0),
        "an interval counted calls that did not happen after the switch: {seen:?}"
    );
    assert!(
        agent
            .log()
            .contains("another server answers at this address"),
        "{}",
        agent.log()
    );
}

/// Waits for a statements report that names the statement.
async fn eventually_report(agent: &RunningAgent, fingerprint: &str) {
    crate::harness::eventually(WAIT, "a statements report", || async {
        reported_calls(agent, fingerprint).await.map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standbys_restartpoints_count_as_its_checkpoints() {
    use crate::harness::replica::{ReplicaOptions, replicated};
    let set = replicated(1, ReplicaOptions::default()).await;
    let replica = &set.replicas[0];
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &set.config("")).await;
    let on_replica = [("target", "replica1")];
    let before = agent
        .wait_for(WAIT, "the replica's checkpoint counters", |m| {
            m.get("pg_checkpoints_requested_total", &on_replica)
        })
        .await;
    // A checkpoint on the primary gives the replica a checkpoint record to
    // restart from; CHECKPOINT on the replica then makes a restartpoint
    // (PostgreSQL 17+ counts it in restartpoints_req, not num_requested).
    let primary = set.primary.pg.connect().await;
    primary
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1); CHECKPOINT")
        .await
        .unwrap();
    replica.wait_caught_up(&set.primary.pg).await;
    let standby = replica.connect().await;
    standby.batch_execute("CHECKPOINT").await.unwrap();
    // The server's own count, once its statistics have it (before 15 the
    // checkpointer reports to the statistics collector with a delay).
    let sql = if crate::harness::pg::major_version() >= 17 {
        "SELECT (num_requested + restartpoints_req)::float8 FROM pg_stat_checkpointer"
    } else {
        "SELECT checkpoints_req::float8 FROM pg_stat_bgwriter"
    };
    crate::harness::eventually(
        WAIT,
        "the standby's own count of the restartpoint",
        || async {
            let server_says: f64 = standby.query_one(sql, &[]).await.unwrap().get(0);
            (server_says >= before + 1.0).then_some(())
        },
    )
    .await;
    agent
        .wait_for(WAIT, "the restartpoint counted", |m| {
            m.get("pg_checkpoints_requested_total", &on_replica)
                .filter(|n| *n >= before + 1.0)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_fold_counts_from_zero_what_happens_after_the_agent_starts() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    // One heavy statement takes the single published place; the rest of
    // the server's history (30 light calls, the harness's set-up) would
    // fold into "other".
    for _ in 0..50 {
        admin.batch_execute("SELECT pg_sleep(0.01)").await.unwrap();
    }
    for i in 0..30 {
        admin.execute("SELECT 2 + $1::int", &[&i]).await.unwrap();
    }
    flush_stats(&admin).await;
    let agent = RunningAgent::start(
        &fx.pg.scratch(),
        &fx.config("statements = { interval = \"1s\", top = 1 }"),
    )
    .await;
    let other = [("queryid", "other")];
    let first = agent
        .wait_for(WAIT, "the other fold", |m| {
            m.get("pg_stat_statements_calls_total", &other)
        })
        .await;
    assert_eq!(first, 0.0, "the fold's first value is history, not growth");
    // The heavy statement keeps its place (it keeps running), so 7 more
    // light calls land in the fold.
    let heavy = fx.pg.connect().await;
    let keep_heavy = tokio::spawn(async move {
        loop {
            heavy.batch_execute("SELECT pg_sleep(0.01)").await.unwrap();
        }
    });
    for i in 0..7 {
        admin.execute("SELECT 2 + $1::int", &[&i]).await.unwrap();
    }
    flush_stats(&admin).await;
    agent
        .wait_for(WAIT, "the 7 calls in the fold", |m| {
            m.get("pg_stat_statements_calls_total", &other)
                .filter(|n| *n >= 7.0)
        })
        .await;
    keep_heavy.abort();
}
