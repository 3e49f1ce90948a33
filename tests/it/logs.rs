//! The log tailer against a real server writing real logs: every format,
//! rotation, truncation, an agent restart, and what it feeds the EXPLAIN
//! worker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::harness::pg::{PgOptions, major_version};
use crate::harness::true_quantile;
use crate::harness::{Fixture, RunningAgent};

const WAIT: Duration = Duration::from_secs(40);
const APP: (&str, &str) = ("app", "app-password");

fn logged(destination: &str, extra: &[&str]) -> PgOptions {
    let mut conf: Vec<String> = [
        "logging_collector = on",
        "log_directory = 'log'",
        "log_filename = 'postgresql-%Y%m%d-%H%M%S.log'",
        "log_min_duration_statement = 50",
        "log_line_prefix = '%m [%p] %q%u@%d '",
        "lc_messages = 'C'",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    conf.push(format!("log_destination = '{destination}'"));
    conf.extend(extra.iter().map(|s| s.to_string()));
    PgOptions { conf }
}

fn log_dir(fx: &Fixture) -> PathBuf {
    fx.pg.data_dir().join("log")
}

fn config(fx: &Fixture, state: &Path, extra_collectors: &str) -> String {
    fx.config_with(
        &format!(
            "[target.logs]\ndirectory = \"{}\"\nstate_file = \"{}\"\n",
            log_dir(fx).display(),
            state.display()
        ),
        &format!("logs = \"500ms\"\n{extra_collectors}"),
    )
}

async fn connect_as(
    fx: &Fixture,
    user: &str,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = format!(
        "host=127.0.0.1 port={} dbname=postgres user={user}",
        fx.pg.port
    )
    .parse()
    .unwrap();
    config.password(password);
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn app_role(fx: &Fixture) -> Client {
    fx.pg
        .connect()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}'; CREATE TABLE secret (x int);",
            APP.0, APP.1
        ))
        .await
        .unwrap();
    connect_as(fx, APP.0, APP.1).await.unwrap()
}

/// Waits until the agent's counter equals `want` (and stays there for a
/// few more cycles: nothing is counted twice).
async fn settles(agent: &RunningAgent, metric: &str, labels: &[(&str, &str)], want: f64) {
    agent
        .wait_for(WAIT, &format!("{metric}{labels:?} = {want}"), |m| {
            m.get(metric, labels).filter(|v| *v >= want)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = agent.metrics().await.get(metric, labels);
    assert_eq!(got, Some(want), "{metric}{labels:?}\n{}", agent.log());
}

async fn slow(client: &Client, n: usize) {
    for _ in 0..n {
        client.batch_execute("SELECT pg_sleep(0.06)").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_statements_auth_failures_and_errors_are_counted_in_every_format() {
    let mut formats = vec!["stderr", "csvlog"];
    if major_version() >= 15 {
        formats.push("jsonlog");
    }
    for format in formats {
        let fx = Fixture::start_with(logged(format, &[])).await;
        let app = app_role(&fx).await;
        let state = fx.pg.scratch().join("logs.json");
        let agent = RunningAgent::start(&fx.pg.scratch(), &config(&fx, &state, "")).await;
        agent
            .wait_for(WAIT, "the logs collector running", |m| {
                m.get("pgvigil_collector_success", &[("collector", "logs")])
                    .filter(|v| *v == 1.0)
            })
            .await;

        // Slow statements: simple protocol, and extended with a parameter.
        slow(&app, 3).await;
        for _ in 0..2 {
            app.query("SELECT now(), pg_sleep($1::float8)", &[&0.06f64])
                .await
                .unwrap();
        }
        // Failed logins: a wrong password, an unknown role.
        for _ in 0..2 {
            assert!(connect_as(&fx, APP.0, "wrong").await.is_err());
        }
        assert!(connect_as(&fx, "mallory", "guess").await.is_err());
        // Errors: division by zero (22), permission denied (42).
        assert!(app.batch_execute("SELECT 1/0").await.is_err());
        assert!(app.batch_execute("SELECT * FROM secret").await.is_err());

        let by_app = [("datname", "postgres"), ("usename", APP.0)];
        settles(&agent, "pg_log_slow_statements_total", &by_app, 5.0).await;
        let m = agent.metrics().await;
        let ctx = format!("{format}\n{}", agent.log());
        assert_eq!(
            m.get("pg_log_auth_failures_total", &[("usename", APP.0)]),
            Some(2.0),
            "{ctx}"
        );
        assert_eq!(
            m.get("pg_log_auth_failures_total", &[("usename", "mallory")]),
            Some(1.0),
            "{ctx}"
        );
        assert_eq!(
            m.get("pg_log_errors_total", &[("sqlstate_class", "22")]),
            Some(1.0),
            "{ctx}"
        );
        assert!(
            m.get("pg_log_errors_total", &[("sqlstate_class", "42")])
                .unwrap_or(0.0)
                >= 1.0,
            "{ctx}"
        );
        // Two statement shapes were new for app.
        assert_eq!(
            m.get("pg_new_fingerprints_total", &by_app),
            Some(2.0),
            "{ctx}"
        );
        assert!(m.get("pgvigil_log_read_bytes_total", &[]).unwrap() > 0.0);
        crate::harness::promtool_check(&agent.get("/metrics").await.body);
        assert!(!agent.log().contains(&fx.password));
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    files
}

async fn rotate(fx: &Fixture) {
    // File names have seconds in them: a rotation within the same second
    // would reopen the same file.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = files(&log_dir(fx)).len();
    fx.pg
        .connect()
        .await
        .batch_execute("SELECT pg_rotate_logfile()")
        .await
        .unwrap();
    crate::harness::eventually(WAIT, "a new log file", || async {
        (files(&log_dir(fx)).len() > before).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_truncation_and_a_restart_neither_lose_nor_repeat_a_line() {
    let fx = Fixture::start_with(logged("stderr", &[])).await;
    let app = app_role(&fx).await;
    let state = fx.pg.scratch().join("state").join("logs.json");
    let by_app = [("datname", "postgres"), ("usename", APP.0)];
    let agent = RunningAgent::start(&fx.pg.scratch(), &config(&fx, &state, "")).await;
    agent
        .wait_for(WAIT, "the logs collector running", |m| {
            m.get("pgvigil_collector_success", &[("collector", "logs")])
                .filter(|v| *v == 1.0)
        })
        .await;
    slow(&app, 2).await;
    settles(&agent, "pg_log_slow_statements_total", &by_app, 2.0).await;

    // Rotation: the rest of the old file and the new one, once each.
    slow(&app, 1).await;
    rotate(&fx).await;
    slow(&app, 2).await;
    settles(&agent, "pg_log_slow_statements_total", &by_app, 5.0).await;

    // Truncation of the current file: read again from its start.
    let current = files(&log_dir(&fx)).pop().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&current)
        .unwrap()
        .set_len(0)
        .unwrap();
    slow(&app, 2).await;
    settles(&agent, "pg_log_slow_statements_total", &by_app, 7.0).await;
    assert_eq!(
        agent
            .metrics()
            .await
            .get("pg_new_fingerprints_total", &by_app),
        Some(1.0)
    );

    // The agent stops; the server goes on logging, and rotates.
    let status = agent.terminate();
    assert!(status.success());
    assert!(state.exists(), "the state file is written");
    slow(&app, 2).await;
    rotate(&fx).await;
    slow(&app, 1).await;
    let agent = RunningAgent::start(&fx.pg.scratch(), &config(&fx, &state, "")).await;
    // Exactly the 3 logged while it was away: none before, none twice.
    settles(&agent, "pg_log_slow_statements_total", &by_app, 3.0).await;
    // The statement is not new to app after the restart; another one is.
    app.batch_execute("SELECT pg_sleep(0.06), current_user")
        .await
        .unwrap();
    settles(&agent, "pg_new_fingerprints_total", &by_app, 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_parameters_and_auto_explain_plans_feed_the_explain_worker() {
    let fx = Fixture::start_with(logged("csvlog", &["log_min_duration_statement = 10"])).await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE orders (id int, customer int, note text);
             INSERT INTO orders SELECT g, g % 50000, 'secret-' || g FROM generate_series(1, 400000) g;
             CREATE TABLE events (id int, kind int);
             INSERT INTO events SELECT g, g % 100 FROM generate_series(1, 400000) g;
             ANALYZE orders; ANALYZE events;",
        )
        .await
        .unwrap();
    // pg_read_all_data is 14+; 13 needs the tables granted.
    let grant = if major_version() >= 14 {
        "GRANT pg_read_all_data TO pgvigil"
    } else {
        "GRANT SELECT ON orders, events TO pgvigil"
    };
    admin.batch_execute(grant).await.unwrap();
    let state = fx.pg.scratch().join("logs.json");
    let agent = RunningAgent::start(
        &fx.pg.scratch(),
        &config(
            &fx,
            &state,
            "statements = { interval = \"1s\" }\n[explain]\nslow_threshold = \"1ms\"\nstatement_timeout = \"10s\"\nper_statement_interval = \"1h\"\nmax_per_hour = 1000\n",
        ),
    )
    .await;

    // A slow statement sent with parameters (extended protocol): only the
    // log has its values, on every version.
    let app = fx.pg.connect().await;
    let load = tokio::spawn(async move {
        loop {
            app.query(
                "SELECT count(*) FROM orders WHERE customer = $1 AND note <> $2",
                &[&4242i32, &"classified-text"],
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let plan = plan_where(&agent, |p| {
        p["query"]
            .as_str()
            .is_some_and(|q| q.contains("FROM orders"))
            && p["parameters"] == "from the slow-statement log"
    })
    .await;
    load.abort();
    assert_eq!(plan["mode"], "analyze", "{plan}");
    assert!(
        plan["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "seq_scan_large_filter"),
        "{plan}"
    );

    // auto_explain logs a plan: analysed as it is, nothing run by pgvigil.
    admin
        .batch_execute(
            "LOAD 'auto_explain';
             SET auto_explain.log_min_duration = 0;
             SET auto_explain.log_format = 'json';
             SET auto_explain.log_analyze = on;",
        )
        .await
        .unwrap();
    let admin_load = tokio::spawn(async move {
        loop {
            admin
                .batch_execute("SELECT count(*) FROM events WHERE kind = 7")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let plan = plan_where(&agent, |p| p["mode"] == "auto_explain").await;
    admin_load.abort();
    assert_eq!(plan["parameters"], "auto_explain in the server log");
    let finding = plan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "seq_scan_large_filter")
        .cloned()
        .unwrap_or_else(|| panic!("{plan}"));
    assert_eq!(finding["relation"], "events");
    let m = agent.metrics().await;
    assert!(
        m.find(
            "pg_plan_findings",
            &[
                ("finding", "seq_scan_large_filter"),
                ("queryid", plan["queryid"].as_str().unwrap())
            ]
        )
        .next()
        .is_some()
    );
    let published = agent.get("/api/v1/plans").await.body;
    assert!(!published.contains("classified-text"), "a literal leaked");
    assert!(
        !published.contains("Query Text"),
        "auto_explain's text leaked"
    );
}

async fn plan_where(
    agent: &RunningAgent,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    crate::harness::eventually(Duration::from_secs(60), "a plan", || async {
        let doc: serde_json::Value =
            serde_json::from_str(&agent.get("/api/v1/plans").await.body).ok()?;
        doc["plans"].as_array()?.iter().find(|p| want(p)).cloned()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_percentiles_come_exactly_from_the_slow_statement_log() {
    use pgvigil::agent::Agent;
    use pgvigil::config::{Config, Environment};
    // The client's timings are the ground truth: keep other tests' load away.
    let _alone = crate::harness::pg::exclusive();
    let fx = Fixture::start_with(logged("csvlog", &["log_min_duration_statement = 20"])).await;
    let state = fx.pg.scratch().join("logs.json");
    let text = config(
        &fx,
        &state,
        "server = \"off\"\nconnections = \"off\"\ndatabases = \"off\"\nstatements = { interval = \"1h\", top = 20 }",
    );
    let config = Config::parse(&text, "test", &Environment::process()).unwrap();
    let mut agent = Agent::new(&config);
    agent.collect_cycle().await.unwrap();

    // 200 calls: 180 fast ones the log never sees, 10 between 30 and 39 ms
    // and 10 between 60 and 78 ms, interleaved.
    let mut sleeps: Vec<f64> = vec![0.001; 180];
    sleeps.extend((0..10).map(|i| 0.030 + i as f64 * 0.001));
    sleeps.extend((0..10).map(|i| 0.060 + i as f64 * 0.002));
    let mut order: Vec<usize> = (0..sleeps.len()).collect();
    order.sort_by_key(|i| (i * 7919) % sleeps.len());
    let client = fx.pg.connect().await;
    let sql = "SELECT pg_sleep($1)";
    let statement = client.prepare(sql).await.unwrap();
    let mut measured = Vec::new();
    let clock = crate::harness::ClockWatch::start();
    for i in order {
        let started = std::time::Instant::now();
        client.query(&statement, &[&sleeps[i]]).await.unwrap();
        measured.push(started.elapsed().as_secs_f64());
    }
    // The server's durations are wall-clock times, the client's monotonic:
    // a step of the wall clock in between widens the bounds by its size.
    let step = clock.stepped();
    measured.sort_by(f64::total_cmp);
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent.collect_cycle().await.unwrap();

    let views = agent.store.view(None);
    let report = pgvigil::report::statements_of(&views[0])
        .expect("a statements report")
        .clone();
    let fp = pgvigil::sql::fingerprint(sql).unwrap();
    let s = report
        .statements
        .iter()
        .find(|s| s.fingerprint == fp)
        .expect("the statement");
    let doc = serde_json::to_value(s).unwrap();
    assert_eq!(s.calls, 200.0);
    // p95 (the 11th slowest) and p99 (the 3rd slowest) are among the 20
    // logged executions; the median is not.
    assert_eq!(doc["method"], "exact_tail", "{doc}");
    assert_eq!(doc["exact_quantiles"], serde_json::json!(["p95", "p99"]));
    // Each call's client time is its server time plus the round trip, so
    // every client order statistic is at least the server's, and at most
    // the worst round trip more (measured on the 180 fast calls, which
    // sleep 1 ms). The log rounds to microseconds.
    let worst_round_trip = (measured[179] - 0.001).max(0.001);
    for (p, exact) in [(0.95, s.quantiles.p95), (0.99, s.quantiles.p99)] {
        let truth = true_quantile(&measured, p);
        let gap = truth - exact;
        assert!(
            gap >= -0.00001 - step && gap <= worst_round_trip + 0.001 + step,
            "p{}: exact {exact} vs client {truth} (round trips up to {worst_round_trip}, wall clock step {step})",
            p * 100.0
        );
    }
    // Instance-wide, the same tail.
    let instance = serde_json::to_value(&report.instance).unwrap();
    assert_eq!(instance["method"], "exact_tail", "{instance}");
    assert_eq!(
        report.instance.quantiles.as_ref().unwrap().p99,
        s.quantiles.p99
    );

    // Above the threshold (20 ms) the histogram's buckets are exact counts.
    let metrics = crate::harness::metrics::Metrics::parse(&String::from_utf8_lossy(
        &agent.metrics(pgvigil::exposition::Format::Prometheus),
    ));
    let bucket = |le: &str| {
        metrics
            .get(
                "pg_stat_statements_latency_seconds_bucket",
                &[("fingerprint", fp.as_str()), ("le", le)],
            )
            .unwrap()
    };
    assert_eq!(bucket("0.025"), 180.0);
    assert_eq!(bucket("0.05"), 190.0);
    assert_eq!(bucket("0.1"), 200.0);
    assert_eq!(bucket("+Inf"), 200.0);
}

/// Every execution and extended-protocol message logged: over the
/// threshold as slow, under it through sampling.
const SAMPLED: [&str; 2] = [
    "log_min_duration_sample = 0",
    "log_statement_sample_rate = 1",
];

async fn connect_to(fx: &Fixture, dbname: &str, user: &str, password: &str) -> Client {
    let mut config: tokio_postgres::Config = format!(
        "host=127.0.0.1 port={} dbname={dbname} user={user}",
        fx.pg.port
    )
    .parse()
    .unwrap();
    config.password(password);
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn sleeps(client: &Client, seconds: &[f64]) {
    for s in seconds {
        client
            .batch_execute(&format!("SELECT pg_sleep({s})"))
            .await
            .unwrap();
    }
}

/// Reads one portal a row at a time: one `execute` line, then one
/// `execute fetch from` line per further batch.
async fn fetch_in_batches(client: &mut Client, sql: &str) -> usize {
    let tx = client.transaction().await.unwrap();
    let statement = tx.prepare(sql).await.unwrap();
    let portal = tx.bind(&statement, &[]).await.unwrap();
    let mut rows = 0;
    loop {
        let batch = tx.query_portal(&portal, 1).await.unwrap();
        if batch.is_empty() {
            break;
        }
        rows += batch.len();
    }
    tx.commit().await.unwrap();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_statements_are_judged_by_the_threshold_of_their_database_and_role() {
    // The server's threshold is 50 ms; every other execution is sampled.
    // Calls under a threshold stay well under it, so that a loaded
    // machine's late wake-up does not make them slow.
    let fx = Fixture::start_with(logged("stderr", &SAMPLED)).await;
    let app = app_role(&fx).await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute("CREATE DATABASE reports")
        .await
        .unwrap();
    admin
        .batch_execute(
            "ALTER DATABASE reports SET log_min_duration_statement = 100;
             CREATE ROLE eager LOGIN PASSWORD 'eager-pw';
             ALTER ROLE eager SET log_min_duration_statement = 20;
             CREATE ROLE batch LOGIN PASSWORD 'batch-pw';
             ALTER ROLE batch IN DATABASE postgres SET log_min_duration_statement = -1;
             ALTER ROLE pgvigil SET log_min_duration_statement = -1;
             GRANT SELECT ON pg_catalog.pg_file_settings TO pgvigil;
             GRANT EXECUTE ON FUNCTION pg_catalog.pg_show_all_file_settings() TO pgvigil;",
        )
        .await
        .unwrap();
    let state = fx.pg.scratch().join("logs.json");
    let agent = RunningAgent::start(&fx.pg.scratch(), &config(&fx, &state, "")).await;
    agent
        .wait_for(WAIT, "the logs collector running", |m| {
            m.get("pgvigil_collector_success", &[("collector", "logs")])
                .filter(|v| *v == 1.0)
        })
        .await;

    // app in postgres: the server's 50 ms.
    sleeps(&app, &[0.01, 0.01, 0.07]).await;
    // app in reports: the database's 100 ms.
    let app_reports = connect_to(&fx, "reports", APP.0, APP.1).await;
    sleeps(&app_reports, &[0.03, 0.12]).await;
    // eager: its own 20 ms, whatever protocol.
    let mut eager = connect_to(&fx, "postgres", "eager", "eager-pw").await;
    sleeps(&eager, &[0.03, 0.03, 0.0]).await;
    for _ in 0..2 {
        // Parse, bind and execute, all logged: one execution each.
        eager
            .query("SELECT pg_sleep($1::float8)", &[&0.03f64])
            .await
            .unwrap();
    }
    // Three batches of 30 ms, each logged: one execution.
    let rows = fetch_in_batches(
        &mut eager,
        "SELECT g, pg_sleep(0.03) FROM generate_series(1, 3) g",
    )
    .await;
    assert_eq!(rows, 3);
    // batch in postgres: nothing is slow for it.
    let batch = connect_to(&fx, "postgres", "batch", "batch-pw").await;
    sleeps(&batch, &[0.12]).await;

    let pair = |db, user| [("datname", db), ("usename", user)];
    settles(
        &agent,
        "pg_log_slow_statements_total",
        &pair("postgres", "eager"),
        5.0,
    )
    .await;
    let m = agent.metrics().await;
    let ctx = agent.log();
    assert_eq!(
        m.get("pg_log_slow_statements_total", &pair("postgres", APP.0)),
        Some(1.0),
        "{ctx}"
    );
    assert_eq!(
        m.get("pg_log_slow_statements_total", &pair("reports", APP.0)),
        Some(1.0),
        "{ctx}"
    );
    assert_eq!(
        m.get("pg_log_slow_statements_total", &pair("postgres", "batch")),
        None,
        "{ctx}"
    );

    // A reload lowers the server's threshold to 25 ms: the agent follows
    // when the log says so, well before its once-a-minute re-read.
    admin
        .batch_execute("ALTER SYSTEM SET log_min_duration_statement = 25")
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    crate::harness::eventually(WAIT, "the agent following the reload", || async {
        agent
            .log()
            .contains("log_min_duration_statement changed")
            .then_some(())
    })
    .await;
    sleeps(&app, &[0.03, 0.03, 0.0]).await;
    settles(
        &agent,
        "pg_log_slow_statements_total",
        &pair("postgres", APP.0),
        3.0,
    )
    .await;
    assert!(
        !agent
            .log()
            .contains("log_min_duration_statement is unknown"),
        "the server's threshold is known: {}",
        agent.log()
    );
}

/// One agent cycle, a workload, another cycle: the statements report.
async fn interval_report(
    config: &pgvigil::config::Config,
    workload: impl std::future::Future<Output = ()>,
) -> serde_json::Value {
    let mut agent = pgvigil::agent::Agent::new(config);
    agent.collect_cycle().await.unwrap();
    workload.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.collect_cycle().await.unwrap();
    agent.statements_json()["targets"][0]["report"].clone()
}

fn method_of(report: &serde_json::Value, user: &str, sql: &str) -> String {
    let fp = pgvigil::sql::fingerprint(sql).unwrap();
    report["statements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["fingerprint"] == fp.as_str() && s["usename"] == user)
        .unwrap_or_else(|| panic!("{user}: {sql} in {report:#}"))["method"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_tails_are_claimed_only_where_the_log_holds_every_slow_execution() {
    use pgvigil::config::{Config, Environment};
    let fx = Fixture::start_with(logged(
        "csvlog",
        &["log_min_duration_statement = 20", SAMPLED[0], SAMPLED[1]],
    ))
    .await;
    let admin = fx.pg.connect().await;
    // The monitoring role's own -1 hides the server's 20 ms from it, and
    // it may not read pg_file_settings: only eager's threshold is known.
    admin
        .batch_execute(&format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}';
             CREATE ROLE eager LOGIN PASSWORD 'eager-pw';
             ALTER ROLE eager SET log_min_duration_statement = 20;
             ALTER ROLE pgvigil SET log_min_duration_statement = -1;",
            APP.0, APP.1
        ))
        .await
        .unwrap();
    let state = fx.pg.scratch().join("logs.json");
    let text = config(
        &fx,
        &state,
        "server = \"off\"\nconnections = \"off\"\ndatabases = \"off\"\nstatements = { interval = \"1h\", top = 20 }",
    );
    let config = Config::parse(&text, "test", &Environment::process()).unwrap();
    let sql = "SELECT pg_sleep($1::float8)";
    let batched = "SELECT g, pg_sleep(0.025) FROM generate_series(1, 2) g";
    // 40 calls each, 8 of them over 20 ms: p95 and p99 among the slow.
    let calls = |client: Client| async move {
        let statement = client.prepare(sql).await.unwrap();
        for i in 0..40 {
            let sleep = if i % 5 == 0 {
                0.025 + i as f64 * 0.0005
            } else {
                0.0
            };
            client.query(&statement, &[&sleep]).await.unwrap();
        }
    };

    let report = interval_report(&config, async {
        calls(connect_to(&fx, "postgres", "eager", "eager-pw").await).await;
        calls(connect_to(&fx, "postgres", APP.0, APP.1).await).await;
        let mut eager = connect_to(&fx, "postgres", "eager", "eager-pw").await;
        for _ in 0..2 {
            fetch_in_batches(&mut eager, batched).await;
        }
    })
    .await;
    assert_eq!(method_of(&report, "eager", sql), "exact_tail", "{report:#}");
    // The server's threshold is unknown: app's tail is estimated.
    assert_eq!(method_of(&report, APP.0, sql), "estimate", "{report:#}");
    // Read in batches: the log has first batches only.
    assert_ne!(
        method_of(&report, "eager", batched),
        "exact_tail",
        "{report:#}"
    );
    assert_ne!(report["instance"]["method"], "exact_tail", "{report:#}");

    // Allowed to read the configuration files, the agent knows the server's
    // 20 ms, and with no statement read in batches the instance is exact.
    admin
        .batch_execute(
            "GRANT SELECT ON pg_catalog.pg_file_settings TO pgvigil;
             GRANT EXECUTE ON FUNCTION pg_catalog.pg_show_all_file_settings() TO pgvigil;",
        )
        .await
        .unwrap();
    let report = interval_report(&config, async {
        calls(connect_to(&fx, "postgres", "eager", "eager-pw").await).await;
        calls(connect_to(&fx, "postgres", APP.0, APP.1).await).await;
    })
    .await;
    assert_eq!(method_of(&report, "eager", sql), "exact_tail", "{report:#}");
    assert_eq!(method_of(&report, APP.0, sql), "exact_tail", "{report:#}");
    assert_eq!(report["instance"]["method"], "exact_tail", "{report:#}");
}
