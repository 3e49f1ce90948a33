//! Custom queries (`[[target.query]]`) against a real cluster: business
//! metrics from rows the test inserted, writes refused at check-config, the
//! series cap, a slow query cancelled at its timeout without leaving a
//! session or a transaction behind.

use std::time::Duration;

use tokio_postgres::Client;

use crate::harness::health::health;
use crate::harness::{
    Fixture, Metrics, RunningAgent, eventually, outputs, pgvigil, promtool_check,
};

const WAIT: Duration = Duration::from_secs(30);

/// `[[target.query]]` tables: the pending orders by region, in `app`,
/// and the shipped orders as a counter.
const BUSINESS: &str = r#"
[[target.query]]
name = "pending_orders"
database = "app"
interval = "1s"
sql = "SELECT region, count(*) AS n, sum(total) AS amount FROM orders WHERE state = 'pending' GROUP BY region"
labels = ["region"]
metrics = [
  { column = "n", name = "app_pending_orders", help = "Orders waiting to ship" },
  { column = "amount", name = "app_pending_amount", help = "Value of the orders waiting to ship" },
]

[[target.query]]
name = "shipped_orders"
database = "app"
interval = "1s"
sql = "SELECT count(*) AS shipped FROM orders WHERE state = 'shipped'"
metrics = [{ column = "shipped", name = "app_orders_shipped", type = "counter" }]
"#;

/// A database `app` with an `orders` table the monitoring role may read.
async fn app_database(fx: &Fixture) -> Client {
    fx.pg
        .connect()
        .await
        .batch_execute("CREATE DATABASE app")
        .await
        .unwrap();
    let app = fx.pg.connect_to("app").await;
    app.batch_execute(
        "CREATE TABLE orders (region text, state text, total numeric);
         GRANT SELECT ON orders TO pgvigil;",
    )
    .await
    .unwrap();
    app
}

/// `n` orders in `region` (NULL when `None`) and `state`, each worth
/// `total` (NULL when `None`).
async fn insert(app: &Client, n: i32, region: Option<&str>, state: &str, total: Option<&str>) {
    app.execute(
        "INSERT INTO orders SELECT $1, $2, $3::text::numeric FROM generate_series(1, $4)",
        &[&region, &state, &total, &n],
    )
    .await
    .unwrap();
}

fn success(m: &Metrics, collector: &str) -> Option<f64> {
    m.get("pgvigil_collector_success", &[("collector", collector)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_query_publishes_the_rows_the_test_inserted() {
    let fx = Fixture::start().await;
    let app = app_database(&fx).await;
    insert(&app, 3, Some("eu"), "pending", Some("10.25")).await;
    insert(&app, 5, Some("us"), "pending", None).await;
    insert(&app, 1, None, "pending", Some("7")).await;
    insert(&app, 2, Some("asia"), "shipped", Some("1")).await;
    let config = fx.config_with(BUSINESS, "statements = \"1s\"");
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let m = agent
        .wait_for(WAIT, "both queries", |m| {
            m.get("app_pending_orders", &[("region", "eu")])
                .and(m.get("app_orders_shipped_total", &[]))
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(
        success(&m, "query:pending_orders"),
        Some(1.0),
        "{:?}",
        health(&m)
    );
    assert_eq!(
        success(&m, "query:shipped_orders"),
        Some(1.0),
        "{:?}",
        health(&m)
    );
    // The test's own counts, by region; a NULL region is an empty label.
    let pending = |region: &str| m.get("app_pending_orders", &[("region", region)]);
    assert_eq!(pending("eu"), Some(3.0));
    assert_eq!(pending("us"), Some(5.0));
    assert_eq!(pending(""), Some(1.0));
    assert_eq!(pending("asia"), None, "asia has no pending order");
    // sum(numeric); the US orders have no total, so that series is absent.
    let amount = |region: &str| m.get("app_pending_amount", &[("region", region)]);
    assert_eq!(amount("eu"), Some(30.75));
    assert_eq!(amount(""), Some(7.0));
    assert_eq!(amount("us"), None, "a NULL value is absent, not 0");
    // A counter gets _total and its type.
    assert_eq!(m.get("app_orders_shipped_total", &[]), Some(2.0));
    assert_eq!(
        m.types.get("app_orders_shipped_total").map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        m.types.get("app_pending_orders").map(String::as_str),
        Some("gauge")
    );
    promtool_check(&agent.get("/metrics").await.body);

    // The next rows show up in the next runs.
    insert(&app, 2, Some("eu"), "pending", Some("1")).await;
    app.batch_execute("UPDATE orders SET state = 'shipped' WHERE region = 'us'")
        .await
        .unwrap();
    let m = agent
        .wait_for(WAIT, "the new orders", |m| {
            (m.get("app_pending_orders", &[("region", "eu")]) == Some(5.0)
                && m.get("app_orders_shipped_total", &[]) == Some(7.0))
            .then(|| m.clone())
        })
        .await;
    assert_eq!(m.get("app_pending_orders", &[("region", "us")]), None);

    // The SQL is the user's: the statements collector shows it as a
    // workload statement of the agent's role, not as pgvigil's own cost.
    agent
        .wait_for(WAIT, "the custom query among the statements", |m| {
            m.find("pg_stat_statements_query_info", &[])
                .any(|s| s.labels["query"].starts_with("SELECT region, count(*) AS n"))
                .then_some(())
        })
        .await;

    // A fresh `pgvigil once` with the same config prints the same values.
    let dir = fx.pg.scratch();
    let file = dir.join("queries-once.toml");
    std::fs::write(&file, &config).unwrap();
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
    assert!(out.status.success(), "{stderr}");
    let once = Metrics::parse(&stdout);
    assert_eq!(
        once.get("app_pending_orders", &[("region", "eu")]),
        Some(5.0),
        "{stdout}"
    );
    assert_eq!(once.get("app_pending_orders", &[("region", "")]), Some(1.0));
    assert_eq!(
        once.get("app_pending_amount", &[("region", "eu")]),
        Some(32.75)
    );
    assert_eq!(once.get("app_orders_shipped_total", &[]), Some(7.0));
    assert_eq!(success(&once, "query:pending_orders"), Some(1.0));
    promtool_check(&stdout);
}

#[test]
fn check_config_refuses_writes_with_the_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let query = |name: &str, sql: &str| {
        format!(
            "[[target.query]]\nname = \"{name}\"\nsql = \"{sql}\"\nmetrics = [{{ column = \"n\", name = \"app_{name}\" }}]\n"
        )
    };
    let config = [
        "[[target]]\ndsn = \"postgresql://pgvigil@127.0.0.1:1/postgres\"\n".to_string(),
        query("insert", "INSERT INTO orders (state) VALUES ('pending')"),
        query(
            "cte",
            "WITH gone AS (DELETE FROM orders RETURNING 1) SELECT count(*) AS n FROM gone",
        ),
        query("locking", "SELECT count(*) AS n FROM orders FOR UPDATE"),
        query("denied", "SELECT count(*) AS n FROM dblink('dbname=app', 'DELETE FROM orders') AS t(x int)"),
        query("fine", "SELECT count(*) AS n FROM orders"),
        "[[target.query]]\nname = \"shadow\"\nsql = \"SELECT 1 AS n\"\nmetrics = [{ column = \"n\", name = \"pg_up\" }]\n".to_string(),
    ]
    .concat();
    let file = dir.path().join("pgvigil.toml");
    std::fs::write(&file, &config).unwrap();
    let out = pgvigil(&["check-config", file.to_str().unwrap()], &[]);
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let want = [
        "target[0].query[0].sql: refused: INSERT would modify data",
        "target[0].query[1].sql: refused: a data-modifying CTE (DELETE)",
        "target[0].query[2].sql: refused: FOR UPDATE/SHARE locks rows",
        "target[0].query[3].sql: refused: calls dblink()",
        // pgvigil's own families, handed down by the registry.
        "target[0].query[5].metrics[0].name: pg_up is one of pgvigil's own metrics",
    ];
    for w in want {
        assert!(
            stderr.lines().any(|l| l.trim().starts_with(w)),
            "missing {w:?} in:\n{stderr}"
        );
    }
    assert!(stderr.starts_with("5 problems in"), "{stderr}");
    assert!(
        !stderr.contains("query[4]"),
        "the plain SELECT passes:\n{stderr}"
    );
    // The agent refuses to start on it, with the same words.
    let out = pgvigil(&["once", "--config", file.to_str().unwrap()], &[]);
    let (_, stderr) = outputs(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("target[0].query[0].sql: refused: INSERT would modify data"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_its_series_cap_fails_alone() {
    let fx = Fixture::start().await;
    // 1,000 rows fit the default cap; 1,001 do not.
    let queries = r#"
[[target.query]]
name = "wide"
interval = "1s"
sql = "SELECT g::text AS k, 1 AS n FROM generate_series(1, 1001) g"
labels = ["k"]
metrics = [{ column = "n", name = "app_wide" }]

[[target.query]]
name = "full"
interval = "1s"
sql = "SELECT g::text AS k, g AS n FROM generate_series(1, 1000) g"
labels = ["k"]
metrics = [{ column = "n", name = "app_full" }]
"#;
    let config = fx.config_with(queries, "");
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let m = agent
        .wait_for(WAIT, "both queries run", |m| {
            (success(m, "query:wide").is_some()
                && success(m, "query:full").is_some()
                && success(m, "connections") == Some(1.0))
            .then(|| m.clone())
        })
        .await;
    assert_eq!(success(&m, "query:wide"), Some(0.0), "{:?}", health(&m));
    assert_eq!(
        m.find("app_wide", &[]).count(),
        0,
        "nothing of a failed query"
    );
    // The others keep succeeding, the server is up.
    assert_eq!(success(&m, "query:full"), Some(1.0));
    assert_eq!(m.find("app_full", &[]).count(), 1000);
    assert_eq!(m.get("app_full", &[("k", "1000")]), Some(1000.0));
    assert_eq!(m.get("pg_up", &[]), Some(1.0));
    assert_eq!(success(&m, "server"), Some(1.0));
    let log = agent.log();
    assert!(
        log.contains("query:wide")
            && log.contains("the result has more than 1000 series, its max_series"),
        "{log}"
    );
    // `pgvigil once` says the same.
    let file = fx.pg.scratch().join("cap-once.toml");
    std::fs::write(&file, &config).unwrap();
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
    assert!(out.status.success(), "{stderr}");
    let once = Metrics::parse(&stdout);
    assert_eq!(success(&once, "query:wide"), Some(0.0));
    assert_eq!(success(&once, "query:full"), Some(1.0));
    assert_eq!(once.find("app_full", &[]).count(), 1000);
}

/// Backends still running the test's slow SQL, or any of the agent's
/// sessions left inside a transaction.
async fn left_behind(admin: &Client) -> (i64, i64) {
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE query LIKE '%generate_series(1, 200000) a%' AND state = 'active'),
                    count(*) FILTER (WHERE application_name = 'pgvigil' AND state LIKE 'idle in transaction%')
             FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_is_cancelled_at_its_timeout_and_leaves_nothing_behind() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin.batch_execute("CREATE DATABASE app").await.unwrap();
    // 4·10^10 rows: far longer than any timeout. pg_sleep would be refused
    // by the guard, so the slowness is real work.
    let slow =
        "SELECT count(*) AS n FROM generate_series(1, 200000) a, generate_series(1, 200000) b";
    // In another database (a connection of its own) with a 1 s timeout; on
    // the target's session with the collector budget (2 s) as its timeout,
    // where the budget and the statement_timeout run out together.
    let queries = format!(
        r#"
[[target.query]]
name = "slow_elsewhere"
database = "app"
interval = "1h"
timeout = "1s"
sql = "{slow}"
metrics = [{{ column = "n", name = "app_slow_elsewhere" }}]

[[target.query]]
name = "slow_here"
interval = "1h"
sql = "{slow}"
metrics = [{{ column = "n", name = "app_slow_here" }}]
"#
    );
    let config = fx.config_with(&queries, "timeout = \"2s\"");
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let m = agent
        .wait_for(WAIT, "both slow queries to fail", |m| {
            (success(m, "query:slow_elsewhere") == Some(0.0)
                && success(m, "query:slow_here") == Some(0.0))
            .then(|| m.clone())
        })
        .await;
    assert_eq!(m.find("app_slow_elsewhere", &[]).count(), 0);
    assert_eq!(m.find("app_slow_here", &[]).count(), 0);
    let log = agent.log();
    assert!(
        log.contains("query:slow_elsewhere: cancelled after")
            && log.contains("its timeout being 1s"),
        "{log}"
    );
    // Neither runs again for an hour: nothing may still be running, and no
    // session of the agent may be left inside the query's transaction.
    eventually(
        WAIT,
        "no slow query running, no open transaction",
        || async { (left_behind(&admin).await == (0, 0)).then_some(()) },
    )
    .await;
    // The target's session is clean: the collectors after the cancelled
    // query keep succeeding on it, and it is still the only session. (The
    // connections collector may not have had its first turn yet: the
    // session's queue is longer than the slow query's 2 s on slow servers.)
    let before = m
        .get(
            "pgvigil_collector_last_success_timestamp_seconds",
            &[("collector", "connections")],
        )
        .unwrap_or(0.0);
    let m = agent
        .wait_for(WAIT, "the connections collector to succeed again", |m| {
            let last = m.get(
                "pgvigil_collector_last_success_timestamp_seconds",
                &[("collector", "connections")],
            )?;
            (last > before).then(|| m.clone())
        })
        .await;
    assert_eq!(success(&m, "connections"), Some(1.0), "{:?}", health(&m));
    assert_eq!(success(&m, "server"), Some(1.0), "{:?}", health(&m));
    assert_eq!(m.get("pg_up", &[]), Some(1.0));
    let sessions: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgvigil' AND datname = 'app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sessions, 0, "the connection to app was closed");
    assert_eq!(left_behind(&admin).await, (0, 0));
}
