//! Active sessions by wait event: a lock queue the test builds shows as
//! Lock seconds at the rate of its waiters, per statement in the JSON API
//! (14+), in a fresh `pgvigil once`, and as the longest running query.

use std::time::{Duration, Instant};

use crate::harness::pg::version_num;
use crate::harness::{Fixture, Metrics, RunningAgent, eventually, outputs, pgvigil};

const WAITERS: usize = 4;
/// How long the Lock seconds are measured while the queue stands.
const MEASURE: Duration = Duration::from_secs(20);
/// How long the lock is held in all.
const HOLD: Duration = Duration::from_secs(25);

fn seconds(m: &Metrics, kind: &str) -> f64 {
    m.sum(
        "pg_active_session_seconds_total",
        &[("datname", "postgres"), ("wait_event_type", kind)],
    )
    .unwrap_or(0.0)
}

/// The agent's metrics and when it read them: the middle of the request,
/// so a slow scrape does not shift the window the test compares with.
async fn scrape(agent: &RunningAgent) -> (Metrics, Instant) {
    let before = Instant::now();
    let m = agent.metrics().await;
    (m, before + before.elapsed() / 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_queue_grows_lock_seconds_by_its_waiters() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    let version = version_num(&admin).await;
    admin
        .batch_execute("CREATE TABLE queue_target (n int); INSERT INTO queue_target VALUES (1)")
        .await
        .unwrap();
    // Statements are reported every 10 s, so the waiters' statement stays
    // in the report long enough for the test to read it.
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("statements = \"10s\"")).await;

    // One session holds a row lock (idle in its transaction: not active),
    // four queue behind it. A row lock, not a table lock: a session waiting
    // for a table lock waits while its statement is parsed, before it has
    // a query_id; one waiting for a row has its statement's.
    let holder = fx.pg.connect().await;
    holder
        .batch_execute("BEGIN; UPDATE queue_target SET n = n + 1")
        .await
        .unwrap();
    let locked = Instant::now();
    let mut waiters = Vec::new();
    for _ in 0..WAITERS {
        let client = fx.pg.connect().await;
        waiters.push(tokio::spawn(async move {
            client
                .simple_query("UPDATE queue_target SET n = n + 1")
                .await
                .map(|_| ())
        }));
    }
    let waiting = || async {
        let row = admin
            .query_one(
                "SELECT count(*) AS n FROM pg_stat_activity
                  WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE queue_target%'",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, i64>("n")
    };
    eventually(Duration::from_secs(10), "four sessions queued", || async {
        (waiting().await == WAITERS as i64).then_some(())
    })
    .await;
    // The server's own word for the waiters' statement.
    let query_id: Option<i64> = if version >= 140000 {
        admin
            .query_one(
                "SELECT max(query_id) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    } else {
        None
    };

    let (m0, t0) = scrape(&agent).await;
    // A fresh `once` while the queue stands, in the background.
    let dsn = fx.dsn();
    let env = fx.once_env();
    let once = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let json = pgvigil(&["once", "--dsn", &dsn, "--format", "json"], &env);
        let table = pgvigil(&["once", "--dsn", &dsn, "--format", "table"], &env);
        (json, table)
    });

    tokio::time::sleep(MEASURE).await;
    let (m1, t1) = scrape(&agent).await;
    let elapsed = (t1 - t0).as_secs_f64();
    // Ground truth: the queue was still whole at the end of the window.
    assert_eq!(waiting().await, WAITERS as i64);
    let running: f64 = admin
        .query_one(
            "SELECT extract(epoch FROM now() - min(query_start))::float8 FROM pg_stat_activity
              WHERE wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let expected = WAITERS as f64 * elapsed;
    let lock = seconds(&m1, "Lock") - seconds(&m0, "Lock");
    assert!(
        (lock - expected).abs() <= 0.25 * expected,
        "Lock seconds grew by {lock:.1} over {elapsed:.1} s of {WAITERS} waiters (expected {expected:.1})"
    );
    let busy = seconds(&m1, "CPU") - seconds(&m0, "CPU") + seconds(&m1, "IO") - seconds(&m0, "IO");
    assert!(
        busy <= 0.1 * expected,
        "CPU and IO grew by {busy:.1} s while only lock waiters were active"
    );
    let longest = m1.get("pg_longest_query_seconds", &[]).unwrap();
    eprintln!(
        "lock queue: Lock +{lock:.1} s (truth {expected:.1}), CPU+IO +{busy:.1} s, longest {longest:.1} s (truth {running:.1})"
    );
    assert!(
        longest > 0.8 * MEASURE.as_secs_f64() && longest <= running + 2.0,
        "longest query {longest:.1} s, the waiters have run {running:.1} s"
    );

    // The fresh `once` saw the same queue: four sessions on Lock.
    let (json, table) = once.await.unwrap();
    let (stdout, stderr) = outputs(&json);
    assert!(json.status.success(), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let load = &doc["targets"][0]["load"];
    let lock_load: f64 = load["wait_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["wait_event_type"] == "Lock")
        .map(|w| w["seconds"].as_f64().unwrap())
        .sum::<f64>()
        / load["window_seconds"].as_f64().unwrap();
    eprintln!("once: {lock_load:.2} sessions on Lock");
    assert!(
        (lock_load - WAITERS as f64).abs() < 0.5,
        "once: {lock_load:.2} sessions on Lock: {load}"
    );
    let (stdout, stderr) = outputs(&table);
    assert!(table.status.success(), "{stderr}");
    assert!(
        stdout.contains("Lock:transactionid") || stdout.contains("Lock:tuple"),
        "{stdout}"
    );

    // Release after the whole hold; the waiters then finish.
    tokio::time::sleep(HOLD.saturating_sub(locked.elapsed())).await;
    holder.batch_execute("COMMIT").await.unwrap();
    for w in waiters {
        w.await.unwrap().unwrap();
    }

    // 14+: the waiters' statement spent its time on Lock, in the API.
    let Some(query_id) = query_id else {
        let api: serde_json::Value =
            serde_json::from_str(&agent.get("/api/v1/statements").await.body).unwrap();
        assert_eq!(
            api["targets"][0]["report"]["statements"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| !s["load"].is_null())
                .count(),
            0,
            "{api}"
        );
        return;
    };
    let queryid = query_id.to_string();
    let statement = eventually(
        Duration::from_secs(30),
        "the waiters' statement in /api/v1/statements with its load",
        || async {
            let api: serde_json::Value =
                serde_json::from_str(&agent.get("/api/v1/statements").await.body).ok()?;
            api["targets"][0]["report"]["statements"]
                .as_array()?
                .iter()
                .find(|s| s["queryid"] == queryid.as_str() && !s["load"].is_null())
                .cloned()
        },
    )
    .await;
    let on_locks: f64 = statement["load"]["wait_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["wait_event_type"] == "Lock")
        .map(|w| w["ratio"].as_f64().unwrap())
        .sum();
    assert!(on_locks > 0.9, "{statement}");
    // About 25 s of four sessions: seconds in the window, within a quarter.
    let seconds = statement["load"]["seconds"].as_f64().unwrap();
    let held = WAITERS as f64 * HOLD.as_secs_f64();
    eprintln!("statement {queryid}: {seconds:.1} s sampled, held {held:.1}");
    assert!(
        (seconds - held).abs() <= 0.25 * held,
        "{seconds:.1} s sampled for {held:.1} s of waiting: {statement}"
    );
    // The page says where its time went.
    let page = agent.get("/").await.body;
    assert!(
        page.contains("Database load") && page.contains("Lock:transactionid"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_sessions_count_as_cpu_and_pgvigils_own_are_left_out() {
    const RUN: &str = "14 s";
    const WINDOW: Duration = Duration::from_secs(8);
    let fx = Fixture::start().await;
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    agent
        .wait_for(Duration::from_secs(30), "a first sample", |m| {
            m.get("pg_longest_query_seconds", &[])
        })
        .await;
    // Two sessions spin on CPU (never waiting), one sleeps (Timeout:PgSleep),
    // and one naming itself pgvigil sleeps too: it must not count.
    let spin = format!(
        "DO $$ BEGIN WHILE clock_timestamp() < now() + interval '{RUN}' LOOP END LOOP; END $$"
    );
    let sleep = format!("SELECT pg_sleep_for('{RUN}')");
    let mut running = Vec::new();
    for sql in [spin.clone(), spin, sleep.clone()] {
        let client = fx.pg.connect().await;
        running.push(tokio::spawn(
            async move { client.batch_execute(&sql).await },
        ));
    }
    let own = fx.pg.connect_as("pgvigil", "postgres").await;
    running.push(tokio::spawn(async move { own.batch_execute(&sleep).await }));

    let admin = fx.pg.connect().await;
    eventually(Duration::from_secs(10), "four sessions active", || async {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'
                   AND (query LIKE 'DO $$%' OR query LIKE 'SELECT pg_sleep_for%')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (n == 4).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (m0, t0) = scrape(&agent).await;
    tokio::time::sleep(WINDOW).await;
    let (m1, t1) = scrape(&agent).await;
    let elapsed = (t1 - t0).as_secs_f64();
    let grew = |kind: &str| seconds(&m1, kind) - seconds(&m0, kind);
    let (cpu, timeout) = (grew("CPU"), grew("Timeout"));
    eprintln!(
        "CPU +{cpu:.1} s (truth {:.1}), Timeout +{timeout:.1} s (truth {elapsed:.1})",
        2.0 * elapsed
    );
    // Ground truth: two spinning sessions and one sleeping one of ours
    // over the window; the pgvigil-named sleeper adds nothing.
    assert!(
        (cpu - 2.0 * elapsed).abs() <= 0.25 * 2.0 * elapsed,
        "CPU +{cpu:.1} s over {elapsed:.1} s of two spinning sessions"
    );
    assert!(
        (timeout - elapsed).abs() <= 0.25 * elapsed,
        "Timeout +{timeout:.1} s over {elapsed:.1} s of one sleeping session (pgvigil's own left out)"
    );
    for r in running {
        r.await.unwrap().unwrap();
    }
}
