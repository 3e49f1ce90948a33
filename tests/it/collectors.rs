//! Server, connections and databases collectors against a real cluster,
//! each metric proven with a value the test caused.

use std::time::Duration;

use crate::harness::pg::flush_stats;
use crate::harness::{Fixture, Metrics, RunningAgent};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_in_transaction_sessions_are_counted_and_aged() {
    let fx = Fixture::start().await;
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let client = fx.pg.connect().await;
        client.batch_execute("BEGIN; SELECT 1").await.unwrap();
        sessions.push(client);
    }
    let m = agent
        .wait_for(
            WAIT,
            "3 sessions idle in transaction, idle for a while",
            |m| {
                let n = m.sum("pg_connections", &[("state", "idle in transaction")])?;
                let idle = m.get(
                    "pg_longest_idle_in_transaction_seconds",
                    &[("datname", "postgres")],
                )?;
                (n >= 3.0 && idle > 0.0).then(|| m.clone())
            },
        )
        .await;
    // The test's sessions are the superuser's, named by the harness.
    let ours = m.sum(
        "pg_connections",
        &[
            ("usename", "postgres"),
            ("application_name", "pgvigil-tests"),
            ("state", "idle in transaction"),
        ],
    );
    assert!(ours.unwrap() >= 3.0, "{ours:?}");
    assert!(
        m.get("pg_longest_transaction_seconds", &[("datname", "postgres")])
            .unwrap()
            > 0.0
    );
    // The agent itself runs as the least-privilege role and names itself.
    assert!(
        m.sum(
            "pg_connections",
            &[("usename", "pgvigil"), ("application_name", "pgvigil")]
        )
        .unwrap()
            >= 1.0
    );
    drop(sessions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_failures_are_counted_only_where_checksums_can_find_them() {
    // The harness's clusters have checksums off up to 17; initdb turns
    // them on by default from 18. Either way, the server says which.
    let fx = Fixture::start().await;
    let on = fx
        .pg
        .connect()
        .await
        .query_one("SHOW data_checksums", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        == "on";
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let m = agent
        .wait_for(WAIT, "settings and database counters", |m| {
            m.get("pg_database_xact_commit_total", &[("datname", "postgres")])
                .and(m.get("pg_settings_data_checksums", &[]))
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(
        m.get("pg_settings_data_checksums", &[]),
        Some(if on { 1.0 } else { 0.0 })
    );
    let failures = m.get(
        "pg_database_checksum_failures_total",
        &[("datname", "postgres")],
    );
    if on {
        assert_eq!(failures, Some(0.0));
    } else {
        assert_eq!(
            failures, None,
            "0 failures would read as healthy with checksums off"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvigils_own_transactions_are_not_the_longest() {
    let fx = Fixture::start().await;
    // A session naming itself pgvigil (as the agent's EXPLAIN transaction
    // does) opens a transaction and stays idle in it.
    let own = fx.pg.connect_as("pgvigil", "postgres").await;
    own.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let own_opened = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    // An application's transaction, opened 6 s later.
    let app = fx.pg.connect().await;
    app.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let app_opened = std::time::Instant::now();
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let m = agent
        .wait_for(WAIT, "the application's transaction", |m| {
            m.get("pg_longest_transaction_seconds", &[("datname", "postgres")])
                .filter(|s| *s > 0.0)
                .map(|_| m.clone())
        })
        .await;
    let (own_age, app_age) = (
        own_opened.elapsed().as_secs_f64(),
        app_opened.elapsed().as_secs_f64(),
    );
    for family in [
        "pg_longest_transaction_seconds",
        "pg_longest_idle_in_transaction_seconds",
    ] {
        let seconds = m.get(family, &[("datname", "postgres")]).unwrap();
        assert!(
            seconds > 0.0 && seconds <= app_age + 0.5 && seconds < own_age - 5.0,
            "{family} {seconds}: the application's is {app_age:.1} s old, pgvigil's {own_age:.1} s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_transactions_raise_the_commit_counter() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin.batch_execute("CREATE DATABASE appdb").await.unwrap();
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let before = agent
        .wait_for(WAIT, "a commit counter for appdb", |m| {
            m.get("pg_database_xact_commit_total", &[("datname", "appdb")])
        })
        .await;
    let app = fx.pg.connect_to("appdb").await;
    app.batch_execute("CREATE TABLE t (n int)").await.unwrap();
    for i in 0..50 {
        app.execute("INSERT INTO t VALUES ($1)", &[&i])
            .await
            .unwrap();
    }
    flush_stats(&app).await;
    let after = agent
        .wait_for(WAIT, "the commit counter to grow by 51", |m| {
            m.get("pg_database_xact_commit_total", &[("datname", "appdb")])
                .filter(|v| *v >= before + 51.0)
        })
        .await;
    assert!(after >= before + 51.0);
    let inserted = agent
        .metrics()
        .await
        .get("pg_database_tup_inserted_total", &[("datname", "appdb")])
        .unwrap();
    assert!(inserted >= 50.0, "{inserted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statistics_reset_shows_as_a_counter_reset() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    for _ in 0..200 {
        admin.batch_execute("SELECT 1").await.unwrap();
    }
    flush_stats(&admin).await;
    // Only the databases collector, so that the agent's own commits (one
    // per run) stay few next to the test's after the reset.
    let only_databases = "server = \"off\"\nconnections = \"off\"\ndatabase_size = \"off\"\nreplication = \"off\"\nslots = \"off\"\nwal = \"off\"\ncheckpoints = \"off\"\narchiver = \"off\"\nfilesystem = \"off\"\ntables = \"off\"\nstatements = \"off\"";
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config(only_databases)).await;
    let before = agent
        .wait_for(WAIT, "the 200 commits of postgres", |m| {
            m.get("pg_database_xact_commit_total", &[("datname", "postgres")])
                .filter(|v| *v >= 200.0)
        })
        .await;
    admin.batch_execute("SELECT pg_stat_reset()").await.unwrap();
    for _ in 0..5 {
        admin.batch_execute("SELECT 1").await.unwrap();
    }
    flush_stats(&admin).await;
    // After the reset PostgreSQL's own counter restarts near zero, and so
    // does the published one: Prometheus reads the drop as a counter reset.
    let after = agent
        .wait_for(WAIT, "a reading after the reset", |m| {
            m.get("pg_database_xact_commit_total", &[("datname", "postgres")])
                .filter(|v| *v < before && *v >= 5.0)
        })
        .await;
    let raw: i64 = admin
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        after <= raw as f64,
        "published {after} after the reset, the server now says {raw} (before: {before})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_waiting_on_a_row_lock_is_blocked() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin.batch_execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 100)").await.unwrap();
    let holder = fx.pg.connect().await;
    holder
        .batch_execute("BEGIN; UPDATE accounts SET balance = 90 WHERE id = 1")
        .await
        .unwrap();
    let waiter = fx.pg.connect().await;
    let blocked = tokio::spawn(async move {
        waiter
            .batch_execute("UPDATE accounts SET balance = 80 WHERE id = 1")
            .await
    });
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let m = agent
        .wait_for(WAIT, "one blocked session", |m| {
            m.get("pg_blocked_connections", &[("datname", "postgres")])
                .filter(|n| *n >= 1.0)
                .map(|_| m.clone())
        })
        .await;
    assert!(
        m.get(
            "pg_locks",
            &[("datname", "postgres"), ("mode", "RowExclusiveLock")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(
        m.get("pg_longest_transaction_seconds", &[("datname", "postgres")])
            .unwrap()
            > 0.0
    );
    assert_eq!(
        m.sum(
            "pg_connections",
            &[("state", "active"), ("usename", "postgres")]
        ),
        Some(1.0)
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    blocked.await.unwrap().unwrap();
    agent
        .wait_for(WAIT, "no blocked session", |m| {
            m.get("pg_blocked_connections", &[("datname", "postgres")])
                .filter(|n| *n == 0.0)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_up_follows_the_server_going_away_and_coming_back() {
    let fx = Fixture::start().await;
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    // pg_up is 1 from the first collector that ran; the server collector's
    // own first success may come a run later, and the test needs it.
    agent
        .wait_for(
            WAIT,
            "pg_up 1 and the server collector's first success",
            |m| {
                m.get("pg_up", &[]).filter(|v| *v == 1.0).and(m.get(
                    "pgvigil_collector_last_success_timestamp_seconds",
                    &[("collector", "server")],
                ))
            },
        )
        .await;
    fx.pg.stop();
    let m = agent
        .wait_for(WAIT, "pg_up 0", |m| {
            // Each collector records the failure on its own schedule.
            let server = m.get("pgvigil_collector_success", &[("collector", "server")]);
            m.get("pg_up", &[])
                .filter(|v| *v == 0.0 && server == Some(0.0))
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "server")]),
        Some(0.0)
    );
    // While the server is down its metrics are absent rather than stale.
    assert_eq!(m.get("pg_in_recovery", &[]), None);
    assert!(
        m.get(
            "pgvigil_collector_last_success_timestamp_seconds",
            &[("collector", "server")]
        )
        .unwrap()
            > 1.6e9
    );
    // /metrics keeps answering while the server is down.
    fx.pg.restart_stopped();
    let m = agent
        .wait_for(WAIT, "pg_up 1 again", |m| {
            // pg_in_recovery returns with the server collector's next run.
            m.get("pg_up", &[])
                .filter(|v| *v == 1.0)
                .and(m.get("pg_in_recovery", &[]))
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(m.get("pg_in_recovery", &[]), Some(0.0));
    let log = agent.log();
    assert!(
        log.contains("connection lost") || log.contains("could not connect"),
        "{log}"
    );
    assert!(log.contains("reconnected"), "{log}");
    assert!(!log.contains(&fx.password), "password leaked into the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_identity_sizes_and_limits_match_the_server() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    let num: String = admin
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap()
        .get(0);
    let reserved: i32 = admin
        .query_one("SELECT current_setting('superuser_reserved_connections')::int + coalesce(current_setting('reserved_connections', true)::int, 0)", &[])
        .await
        .unwrap()
        .get(0);
    admin.batch_execute("CREATE TABLE filler AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 20000) g").await.unwrap();
    let size: i64 = admin
        .query_one("SELECT pg_database_size('postgres')", &[])
        .await
        .unwrap()
        .get(0);
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let m = agent
        .wait_for(WAIT, "server and database metrics", |m| {
            // Each collector's first run ends on its own time: wait for all
            // the ones this test reads.
            (ran(m, &["server", "connections", "databases"])
                && m.get("pg_database_size_bytes", &[("datname", "postgres")])
                    .is_some())
            .then(|| m.clone())
        })
        .await;
    assert_eq!(
        m.get("pg_server_info", &[("server_version_num", &num)]),
        Some(1.0)
    );
    assert_eq!(m.get("pg_in_recovery", &[]), Some(0.0));
    assert_eq!(m.get("pg_settings_max_connections", &[]), Some(40.0));
    assert_eq!(m.get("pg_connections_reserved", &[]), Some(reserved as f64));
    let reported = m
        .get("pg_database_size_bytes", &[("datname", "postgres")])
        .unwrap();
    // The table alone is over 10 MB; the size is read at a slightly different moment.
    assert!(
        reported > 10e6 && (reported - size as f64).abs() < 0.2 * size as f64,
        "{reported} vs {size}"
    );
    assert!(
        m.get("pg_database_frozen_xid_age", &[("datname", "template0")])
            .unwrap()
            > 0.0
    );
    let start = m.get("pg_postmaster_start_time_seconds", &[]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(start <= now && start > now - 600.0, "start {start}");
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "databases")]),
        Some(1.0)
    );
    assert!(m.get("process_resident_memory_bytes", &[]).unwrap() > 1e6);
}

/// Whether each of `collectors` has finished a run (successful or not):
/// pg_up is known from the first collector that ran, the others' first
/// runs end on their own time.
fn ran(m: &Metrics, collectors: &[&str]) -> bool {
    collectors.iter().all(|c| {
        m.get("pgvigil_collector_success", &[("collector", c)])
            .is_some()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_collector_fails_alone_and_recovers() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    // A hardened server where the monitoring role may not size databases.
    admin
        .batch_execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_database_size(oid) FROM PUBLIC")
        .await
        .unwrap();
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("database_size = \"1s\"")).await;
    let m = agent
        .wait_for(WAIT, "the database_size collector to fail", |m| {
            m.get(
                "pgvigil_collector_success",
                &[("collector", "database_size")],
            )
            .filter(|v| *v == 0.0)
            .filter(|_| ran(m, &["server", "connections", "databases"]))
            .map(|_| m.clone())
        })
        .await;
    assert_eq!(m.get("pg_up", &[]), Some(1.0));
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "server")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "connections")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "databases")]),
        Some(1.0)
    );
    assert!(m.get("pg_connections_reserved", &[]).is_some());
    assert!(
        m.get("pg_database_xact_commit_total", &[("datname", "postgres")])
            .is_some()
    );
    assert_eq!(
        m.get("pg_database_size_bytes", &[("datname", "postgres")]),
        None
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = agent.log();
    assert_eq!(
        log.matches("permission denied for function pg_database_size")
            .count(),
        1,
        "logged once, not every cycle: {log}"
    );
    admin
        .batch_execute("GRANT EXECUTE ON FUNCTION pg_catalog.pg_database_size(oid) TO PUBLIC")
        .await
        .unwrap();
    agent
        .wait_for(WAIT, "the database_size collector to recover", |m| {
            m.get("pg_database_size_bytes", &[("datname", "postgres")])
        })
        .await;
    assert!(agent.log().contains("collector recovered"));
}
