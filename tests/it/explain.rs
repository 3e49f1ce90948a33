//! The EXPLAIN guard and runner against a real server: nothing that is
//! refused or only planned may change anything, ANALYZE is cancelled at its
//! timeout and leaves no session behind, findings name the right table,
//! and the worker explains slow statements on its own.

use std::time::Duration;

use tokio_postgres::Client;

use crate::harness::data::{create_orders, grant_reading};
use crate::harness::{Fixture, RunningAgent, outputs, pgvigil};

/// Everything a write could have changed.
async fn state(admin: &Client) -> (i64, i64, bool) {
    let (rows, seq, archive, ..) = leftovers(admin).await;
    (rows, seq, archive)
}

/// The data state, plus what a run could leave behind: pgvigil's locks and sessions.
async fn leftovers(admin: &Client) -> (i64, i64, bool, i64, i64) {
    let row = admin
        .query_one(
            "SELECT (SELECT count(*) FROM ledger),
                    (SELECT last_value FROM ledger_seq),
                    to_regclass('archive') IS NOT NULL,
                    (SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                      WHERE a.application_name = 'pgvigil' AND l.locktype <> 'virtualxid'),
                    (SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgvigil')",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

fn explain(fx: &Fixture, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["explain", "--dsn"];
    let dsn = fx.dsn();
    all.push(&dsn);
    all.extend_from_slice(args);
    let out = pgvigil(&all, &[("PGPASSWORD", &fx.password)]);
    let (stdout, stderr) = outputs(&out);
    (out.status.success(), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_refused_or_only_planned_changes_anything() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE ledger (id int PRIMARY KEY, amount int);
             INSERT INTO ledger SELECT g, g FROM generate_series(1, 100) g;
             CREATE SEQUENCE ledger_seq;
             SELECT nextval('ledger_seq');
             CREATE FUNCTION write_something() RETURNS int LANGUAGE sql VOLATILE
               AS 'INSERT INTO ledger VALUES (1000 + (random() * 1000)::int, 0) RETURNING 1';
             CREATE VIEW writing_view AS SELECT write_something() AS w;
             CREATE PROCEDURE tidy() LANGUAGE sql AS 'DELETE FROM ledger';",
        )
        .await
        .unwrap();
    grant_reading(&admin).await;
    // Even a role that may write must change nothing through EXPLAIN.
    admin
        .batch_execute(
            "GRANT ALL ON ledger, ledger_seq TO pgvigil; GRANT CREATE ON SCHEMA public TO pgvigil",
        )
        .await
        .unwrap();
    let before = state(&admin).await;
    // (statement, succeeds with a plan, the mode it must report)
    let cases = [
        ("INSERT INTO ledger VALUES (500, 1)", true, "plain"),
        ("UPDATE ledger SET amount = 0", true, "plain"),
        ("DELETE FROM ledger", true, "plain"),
        (
            "MERGE INTO ledger l USING (SELECT 1 AS id) s ON l.id = s.id WHEN MATCHED THEN DELETE",
            true,
            "plain",
        ),
        (
            "WITH gone AS (DELETE FROM ledger RETURNING *) SELECT count(*) FROM gone",
            true,
            "plain",
        ),
        ("SELECT * INTO archive FROM ledger", true, "plain"),
        ("SELECT * FROM ledger FOR UPDATE", true, "plain"),
        ("SELECT * FROM ledger FOR NO KEY UPDATE", true, "plain"),
        ("SELECT * FROM ledger FOR SHARE", true, "plain"),
        ("SELECT * FROM ledger FOR KEY SHARE", true, "plain"),
        ("SELECT nextval('ledger_seq')", true, "plain"),
        ("SELECT setval('ledger_seq', 99)", true, "plain"),
        ("SELECT write_something()", true, "plain"),
        ("SELECT * FROM writing_view", true, "plain"),
        ("SELECT pg_advisory_lock(42)", true, "plain"),
        ("SELECT pg_sleep(30)", true, "plain"),
        ("COPY ledger TO STDOUT", false, ""),
        ("VACUUM ledger", false, ""),
        ("CREATE TABLE archive (id int)", false, ""),
        ("SET work_mem = '1GB'", false, ""),
        ("LOCK TABLE ledger", false, ""),
        ("CALL tidy()", false, ""),
        ("DO $$ BEGIN DELETE FROM ledger; END $$", false, ""),
        ("TRUNCATE ledger", false, ""),
        ("SELECT 1; DELETE FROM ledger", false, ""),
        (
            "SELECT * FROM ledger WHERE amount = 'unterminated",
            false,
            "",
        ),
    ];
    let version: i32 = crate::harness::pg::version_num(&admin).await;
    for (sql, ok, mode) in cases {
        if sql.starts_with("MERGE") && version < 150000 {
            continue; // no MERGE before PostgreSQL 15
        }
        let (success, stdout, stderr) = explain(&fx, &["--analyze", "--json", sql]);
        assert_eq!(success, ok, "{sql}\n{stdout}{stderr}");
        if ok {
            let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(doc["mode"], mode, "{sql}: {doc}");
            assert!(
                doc["note"].as_str().is_some_and(|n| !n.is_empty()),
                "{sql}: why not ANALYZE? {doc}"
            );
        } else {
            assert!(
                stderr.contains("refused") || stderr.contains("not a query"),
                "{sql}: {stderr}"
            );
        }
        assert_eq!(state(&admin).await, before, "state changed after {sql}");
    }
    // Nothing is left behind: no pgvigil session, hence no lock.
    crate::harness::eventually(
        Duration::from_secs(10),
        "no pgvigil session or lock",
        || async {
            let (.., locks, sessions) = leftovers(&admin).await;
            (locks == 0 && sessions == 0).then_some(())
        },
    )
    .await;
    // A plain read is analyzed, and rolled back like the rest.
    let (ok, stdout, _) = explain(
        &fx,
        &[
            "--analyze",
            "--json",
            "SELECT sum(amount) FROM ledger WHERE id < 50",
        ],
    );
    assert!(ok);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["mode"], "analyze");
    assert!(doc["plan"][0]["Execution Time"].as_f64().is_some(), "{doc}");
    assert_eq!(state(&admin).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyze_past_its_timeout_is_cancelled_and_leaves_nothing_behind() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute("CREATE TABLE ledger (id int); CREATE SEQUENCE ledger_seq")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = explain(
        &fx,
        &[
            "--analyze",
            "--json",
            "--timeout",
            "1s",
            "SELECT count(*) FROM generate_series(1, 2000000000) a",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["mode"], "plain", "{doc}");
    assert!(
        doc["note"].as_str().unwrap().contains("statement timeout"),
        "{doc}"
    );
    // No pgvigil session is left, let alone one still counting.
    crate::harness::eventually(Duration::from_secs(10), "no pgvigil session", || async {
        let (.., sessions) = leftovers(&admin).await;
        (sessions == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_name_the_table_that_causes_them() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE events (id int, kind int, payload text) WITH (autovacuum_enabled = off);
             INSERT INTO events SELECT g, g % 1000, repeat('x', 50) FROM generate_series(1, 200000) g;
             ANALYZE events;
             CREATE TABLE stale (id int, grp int) WITH (autovacuum_enabled = off);
             INSERT INTO stale SELECT g, 1 FROM generate_series(1, 10) g;
             ANALYZE stale;
             INSERT INTO stale SELECT g, 1 FROM generate_series(11, 200000) g;",
        )
        .await
        .unwrap();
    grant_reading(&admin).await;
    // (statement, work_mem of the explaining role, finding, table)
    let cases = [
        (
            "SELECT * FROM events WHERE kind = 7",
            "4MB",
            "seq_scan_large_filter",
            Some("events"),
        ),
        (
            "SELECT * FROM stale WHERE grp = 1",
            "4MB",
            "row_misestimate",
            Some("stale"),
        ),
        (
            "SELECT * FROM events ORDER BY payload, id",
            "64kB",
            "sort_spill",
            None,
        ),
    ];
    for (sql, work_mem, finding, table) in cases {
        admin
            .batch_execute(&format!("ALTER ROLE pgvigil SET work_mem = '{work_mem}'"))
            .await
            .unwrap();
        let (ok, stdout, stderr) = explain(&fx, &["--analyze", "--json", sql]);
        assert!(ok, "{sql}: {stderr}");
        let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(doc["mode"], "analyze", "{sql}");
        let found = doc["findings"].as_array().unwrap();
        let hit = found
            .iter()
            .find(|f| f["id"] == finding)
            .unwrap_or_else(|| panic!("{sql}: no {finding} in {found:#?}"));
        if let Some(table) = table {
            assert_eq!(hit["relation"], table, "{sql}: {hit}");
        }
        if finding == "seq_scan_large_filter" {
            assert!(
                hit["action"].as_str().unwrap().contains("events (kind)"),
                "index candidate column named: {hit}"
            );
        }
    }
    // The text form shows the tree and the findings.
    let (ok, stdout, _) = explain(&fx, &["--analyze", "SELECT * FROM events WHERE kind = 7"]);
    assert!(ok);
    assert!(
        stdout.contains("Seq Scan on events") && stdout.contains("seq_scan_large_filter"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_explains_slow_statements_and_notices_plan_changes() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    create_orders(&admin, "secret-").await;
    // Every statement counts as slow here, so that the one under test is
    // explained again once an index has made it fast.
    let config = fx.config(
        "statements = { interval = \"1s\" }\n[explain]\nslow_threshold = \"1us\"\nstatement_timeout = \"10s\"\nper_statement_interval = \"1s\"\nmax_per_hour = 1000\n",
    );
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let version: i32 = crate::harness::pg::version_num(&admin).await;
    // Before anything was explained, every result and skip reason is 0, not
    // absent, so that increase() sees the first one.
    let m = agent
        .wait_for(Duration::from_secs(30), "the worker's counters", |m| {
            m.get("pgvigil_explain_runs_total", &[("result", "failed")])
                .map(|_| m.clone())
        })
        .await;
    for result in ["analyze", "plain", "generic", "refused", "failed"] {
        assert_eq!(
            m.get("pgvigil_explain_runs_total", &[("result", result)]),
            Some(0.0),
            "{result}"
        );
    }
    for reason in ["rate_limit", "pressure", "too_slow"] {
        assert_eq!(
            m.get("pgvigil_explain_skipped_total", &[("reason", reason)]),
            Some(0.0),
            "{reason}"
        );
    }
    // A slow statement with its literal inline (simple protocol), run over and over.
    let app = fx.pg.connect().await;
    let load = tokio::spawn(async move {
        loop {
            app.batch_execute(
                "SELECT count(*) FROM orders WHERE customer = 4242 AND note <> 'classified-text'",
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let plan = crate::harness::eventually(
        Duration::from_secs(60),
        "a plan of the slow statement",
        || async {
            let doc: serde_json::Value =
                serde_json::from_str(&agent.get("/api/v1/plans").await.body).ok()?;
            doc["plans"]
                .as_array()?
                .iter()
                .find(|p| {
                    p["query"]
                        .as_str()
                        .is_some_and(|q| q.contains("FROM orders"))
                })
                .cloned()
        },
    )
    .await;
    let want_mode = if version >= 140000 {
        "analyze"
    } else {
        "generic"
    };
    assert_eq!(plan["mode"], want_mode, "{plan}\n{}", agent.log());
    // The seq-scan finding needs ANALYZE's row counts; before 14 there are
    // no sampled parameter values, so no ANALYZE and no such finding.
    let findings = plan["findings"].as_array().unwrap();
    let seq_scan = findings
        .iter()
        .any(|f| f["id"] == "seq_scan_large_filter" && f["relation"] == "orders");
    assert_eq!(seq_scan, version >= 140000, "{plan}");
    // Literal values are redacted everywhere the plan is published.
    let published = agent.get("/api/v1/plans").await.body;
    // (A number could appear by chance among row counts and timings; the
    // string literal cannot.)
    assert!(
        !published.contains("classified-text"),
        "a literal leaked into /api/v1/plans"
    );
    let m = agent.metrics().await;
    assert!(
        m.get("pgvigil_explain_runs_total", &[("result", want_mode)])
            .unwrap()
            >= 1.0
    );
    let queryid = plan["queryid"].as_str().unwrap().to_string();
    if version >= 140000 {
        let finding = m
            .find("pg_plan_findings", &[("finding", "seq_scan_large_filter")])
            .next()
            .expect("finding metric");
        assert_eq!(finding.labels["datname"], "postgres");
        assert_eq!(finding.labels["queryid"], queryid);
        assert_eq!(finding.value, 1.0);
    }
    // An index changes the plan's shape; the next EXPLAIN notices.
    admin
        .batch_execute("CREATE INDEX ON orders (customer); ANALYZE orders")
        .await
        .unwrap();
    agent
        .wait_for(Duration::from_secs(60), "a plan change", |m| {
            m.get("pg_plan_changes_total", &[("queryid", queryid.as_str())])
                .filter(|n| *n >= 1.0)
        })
        .await;
    let doc: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/plans").await.body).unwrap();
    let newest = doc["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["queryid"] == queryid.as_str())
        .unwrap();
    assert!(newest["previous"]["shape_hash"].is_string(), "{newest}");
    assert_ne!(newest["previous"]["shape_hash"], newest["shape_hash"]);
    // The worker's EXPLAINs are in pg_stat_statements (a utility statement
    // each), and are pgvigil's own: never published as workload.
    let explains: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_statements WHERE query LIKE 'EXPLAIN (%FORMAT JSON)%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(explains >= 1, "the server recorded {explains} EXPLAINs");
    let m = agent.metrics().await;
    let texts: Vec<String> = m
        .find("pg_stat_statements_query_info", &[])
        .map(|s| s.labels["query"].clone())
        .collect();
    assert!(texts.iter().any(|q| q.contains("FROM orders")), "{texts:?}");
    assert!(
        !texts.iter().any(|q| q.to_uppercase().starts_with("EXPLAIN")
            || q.to_uppercase().starts_with("BEGIN READ ONLY")),
        "pgvigil's own EXPLAINs published as workload: {texts:?}"
    );
    let api = agent.get("/api/v1/statements").await.body;
    assert!(!api.contains("FORMAT JSON"), "{api}");
    load.abort();
    assert!(!agent.log().contains(&fx.password));
}
