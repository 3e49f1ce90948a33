//! The vacuum collector against a real cluster: a logical slot nobody
//! reads, a forgotten prepared transaction and a session holding an xid
//! hold the xmin horizon back; each is named in `/api/v1/vacuum`, in
//! `pgvigil once` (table and JSON) and on `/`, and its age is the one the
//! server's own views give the superuser. Wraparound ages and the freeze
//! settings are the server's; a VACUUM held on a pinned page shows as
//! running. A standby's old snapshot, through hot_standby_feedback, holds
//! the primary back at its walsender's age. Checked with a long-running
//! agent and a fresh `pgvigil once`.

use std::time::Duration;

use serde_json::Value as Json;
use tokio_postgres::Client;

use crate::harness::{Fixture, Metrics, PgOptions, RunningAgent, outputs, pgvigil};

const WAIT: Duration = Duration::from_secs(60);
const GID: &str = "forgotten-transfer-42";
const SLOT: &str = "abandoned_slot";

/// Burns `n` transaction IDs, each in a transaction of its own.
async fn burn(admin: &Client, n: usize) {
    for _ in 0..n {
        admin.batch_execute("SELECT txid_current()").await.unwrap();
    }
}

async fn f64_of(admin: &Client, sql: &str) -> f64 {
    admin.query_one(sql, &[]).await.unwrap().get(0)
}

/// The ages the server itself gives the superuser, read when nothing
/// consumes XIDs any more: (slot, prepared transaction, backend).
async fn truth(admin: &Client, pid: i32) -> (f64, f64, f64) {
    let slot = f64_of(
        admin,
        &format!("SELECT greatest(age(xmin), age(catalog_xmin))::float8 FROM pg_replication_slots WHERE slot_name = '{SLOT}'"),
    )
    .await;
    let prepared = f64_of(
        admin,
        &format!("SELECT age(transaction)::float8 FROM pg_prepared_xacts WHERE gid = '{GID}'"),
    )
    .await;
    let backend = f64_of(
        admin,
        &format!("SELECT greatest(age(backend_xid), age(backend_xmin))::float8 FROM pg_stat_activity WHERE pid = {pid}"),
    )
    .await;
    (slot, prepared, backend)
}

fn holders<'a>(report: &'a Json, kind: &str) -> Vec<&'a Json> {
    report["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .filter(|h| h["holder"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_a_prepared_transaction_and_a_session_hold_vacuum_back_and_are_named() {
    let fx = Fixture::start_with(PgOptions {
        conf: vec![
            "wal_level = logical".into(),
            "max_prepared_transactions = 5".into(),
            "autovacuum_freeze_max_age = 150000000".into(),
        ],
    })
    .await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute("CREATE TABLE ledger (id int PRIMARY KEY, amount int)")
        .await
        .unwrap();
    // Oldest first: the slot, then the session, then the prepared transaction
    // (a snapshot's xmin is the oldest running xid, so a session that starts
    // after a prepared transaction holds as much as it).
    admin
        .batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{SLOT}', 'pgoutput')"
        ))
        .await
        .unwrap();
    burn(&admin, 5).await;
    let holder = fx.pg.connect().await;
    holder
        .batch_execute("BEGIN; INSERT INTO ledger VALUES (2, 200)")
        .await
        .unwrap();
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    burn(&admin, 5).await;
    let preparer = fx.pg.connect().await;
    preparer
        .batch_execute(&format!(
            "BEGIN; INSERT INTO ledger VALUES (1, 100); PREPARE TRANSACTION '{GID}'"
        ))
        .await
        .unwrap();
    drop(preparer);
    burn(&admin, 5).await;
    let (slot, prepared, backend) = truth(&admin, pid).await;
    assert!(
        slot > backend && backend > prepared && prepared >= 5.0,
        "{slot} {prepared} {backend}"
    );

    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let m = agent
        .wait_for(WAIT, "the three holders", |m| {
            (m.get(
                "pg_xmin_horizon_holders",
                &[("holder", "prepared_transaction")],
            )? >= 1.0)
                .then(|| m.clone())
        })
        .await;
    // Nothing consumed an XID since the truth was read.
    let check = |m: &Metrics, what: &str| {
        let age = |holder| m.get("pg_xmin_horizon_age", &[("holder", holder)]);
        assert_eq!(age("replication_slot"), Some(slot), "{what}");
        assert_eq!(age("prepared_transaction"), Some(prepared), "{what}");
        assert_eq!(age("backend"), Some(backend), "{what}");
        // No standby: no horizon of that kind, and a count of 0.
        assert_eq!(age("standby"), None, "{what}");
        assert_eq!(
            m.get("pg_xmin_horizon_holders", &[("holder", "standby")]),
            Some(0.0),
            "{what}"
        );
        assert_eq!(
            m.get("pg_xmin_horizon_holders", &[("holder", "replication_slot")]),
            Some(1.0),
            "{what}"
        );
        assert_eq!(
            m.get(
                "pg_xmin_horizon_holders",
                &[("holder", "prepared_transaction")]
            ),
            Some(1.0),
            "{what}"
        );
        assert_eq!(
            m.get("pg_settings_autovacuum_freeze_max_age", &[]),
            Some(150_000_000.0),
            "{what}"
        );
    };
    check(&m, "agent");
    let (truth_after, _, _) = truth(&admin, pid).await;
    assert_eq!(truth_after, slot, "something consumed XIDs during the test");

    // Wraparound and settings, from the server's own views.
    let mxid = f64_of(
        &admin,
        "SELECT mxid_age(datminmxid)::float8 FROM pg_database WHERE datname = 'template0'",
    )
    .await;
    let xid = f64_of(
        &admin,
        "SELECT age(datfrozenxid)::float8 FROM pg_database WHERE datname = 'postgres'",
    )
    .await;
    let shared = f64_of(
        &admin,
        "SELECT pg_size_bytes(current_setting('shared_buffers'))::float8",
    )
    .await;
    let workers = f64_of(
        &admin,
        "SELECT current_setting('autovacuum_max_workers')::float8",
    )
    .await;
    assert_eq!(
        m.get("pg_database_mxid_age", &[("datname", "template0")]),
        Some(mxid)
    );
    assert_eq!(
        m.get("pg_database_frozen_xid_age", &[("datname", "postgres")]),
        Some(xid)
    );
    assert_eq!(m.get("pg_settings_shared_buffers_bytes", &[]), Some(shared));
    assert_eq!(
        m.get("pg_settings_autovacuum_max_workers", &[]),
        Some(workers)
    );
    assert_eq!(m.get("pg_settings_block_size", &[]), Some(8192.0));

    // The holders, named.
    let api = agent.get("/api/v1/vacuum").await;
    assert_eq!(api.status, 200);
    let api: Json = serde_json::from_str(&api.body).unwrap();
    let report = &api["targets"][0]["report"];
    assert_eq!(report["held_back_by"], "replication_slot", "{report}");
    let s = holders(report, "replication_slot");
    assert_eq!(s.len(), 1, "{report}");
    assert_eq!(s[0]["slot_name"], SLOT);
    assert_eq!(s[0]["active"], false);
    assert_eq!(s[0]["slot_type"], "logical");
    assert_eq!(s[0]["age"], slot);
    let p = holders(report, "prepared_transaction");
    assert_eq!(p[0]["gid"], GID, "{report}");
    assert_eq!(p[0]["datname"], "postgres");
    assert_eq!(p[0]["age"], prepared);
    let b = holders(report, "backend");
    assert!(
        b.iter()
            .any(|h| h["pid"] == pid && h["age"] == backend && h["state"] == "idle in transaction"),
        "{report}"
    );
    // pgvigil's own sessions are never holders.
    assert!(
        b.iter().all(|h| h["application_name"] != "pgvigil"),
        "{report}"
    );
    let dbs = report["wraparound"]["databases"].as_array().unwrap();
    let postgres = dbs.iter().find(|d| d["datname"] == "postgres").unwrap();
    assert_eq!(postgres["xid_age"], xid);
    let share = postgres["xid_share_of_freeze_max_age"].as_f64().unwrap();
    assert!((share - xid / 150_000_000.0).abs() < 1e-12, "{share}");

    let page = agent.get("/").await.body;
    assert!(
        page.contains("Vacuum held back by") && page.contains(GID) && page.contains(SLOT),
        "{page}"
    );

    // A fresh `pgvigil once` says the same.
    let env = fx.once_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = pgvigil(&["once", "--dsn", &fx.dsn(), "--format", "table"], &env);
    let (table, err) = outputs(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        table.contains("vacuum held back by: replication_slot"),
        "{table}"
    );
    assert!(table.contains(&format!("gid {GID}")), "{table}");
    assert!(
        table.contains(&format!("slot {SLOT} (logical inactive)")),
        "{table}"
    );
    assert!(table.contains(&format!("pid {pid}")), "{table}");
    let out = pgvigil(&["once", "--dsn", &fx.dsn(), "--format", "json"], &env);
    let (json, err) = outputs(&out);
    assert!(out.status.success(), "{err}");
    let json: Json = serde_json::from_str(&json).unwrap();
    let report = &json["targets"][0]["vacuum"];
    assert_eq!(report["held_back_by"], "replication_slot", "{report}");
    assert_eq!(holders(report, "prepared_transaction")[0]["age"], prepared);
    assert_eq!(holders(report, "replication_slot")[0]["age"], slot);
    let out = pgvigil(
        &["once", "--dsn", &fx.dsn(), "--format", "prometheus"],
        &env,
    );
    let (text, _) = outputs(&out);
    check(&Metrics::parse(&text), "once");
    crate::harness::promtool_check(&text);

    // Released, each holder leaves.
    admin
        .batch_execute(&format!("ROLLBACK PREPARED '{GID}'"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("SELECT pg_drop_replication_slot('{SLOT}')"))
        .await
        .unwrap();
    holder.batch_execute("COMMIT").await.unwrap();
    agent
        .wait_for(WAIT, "no holder left", |m| {
            let gone = ["replication_slot", "prepared_transaction"]
                .iter()
                .all(|h| {
                    m.get("pg_xmin_horizon_holders", &[("holder", h)]) == Some(0.0)
                        && m.get("pg_xmin_horizon_age", &[("holder", h)]).is_none()
                });
            gone.then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vacuum_waiting_on_a_pinned_page_shows_as_running() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE pinned (id int, pad text) WITH (autovacuum_enabled = off);
             INSERT INTO pinned SELECT g, repeat('p', 100) FROM generate_series(1, 5000) g",
        )
        .await
        .unwrap();
    // A cursor keeps the first page pinned; VACUUM (FREEZE) must freeze its
    // rows, so it waits for a cleanup lock on that page, in its heap scan.
    let reader = fx.pg.connect().await;
    reader
        .batch_execute("BEGIN; DECLARE c CURSOR FOR SELECT * FROM pinned; FETCH 1 FROM c")
        .await
        .unwrap();
    let vacuumer = fx.pg.connect().await;
    let pid: i32 = vacuumer
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let vacuum =
        tokio::spawn(async move { vacuumer.batch_execute("VACUUM (FREEZE) pinned").await });
    let total = crate::harness::eventually(WAIT, "VACUUM in pg_stat_progress_vacuum", || async {
        admin
            .query_opt(
                "SELECT heap_blks_total::float8 FROM pg_stat_progress_vacuum WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap()
            .map(|r| r.get::<_, f64>(0))
    })
    .await;
    let pages = f64_of(
        &admin,
        "SELECT (pg_relation_size('pinned') / current_setting('block_size')::int)::float8",
    )
    .await;
    assert_eq!(total, pages);

    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let labels = [("datname", "postgres"), ("relname", "public.pinned")];
    let m = agent
        .wait_for(WAIT, "the running VACUUM", |m| {
            m.get("pg_vacuum_progress_heap_blocks", &labels)
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(
        m.get("pg_vacuum_progress_heap_blocks", &labels),
        Some(pages)
    );
    assert_eq!(
        m.get(
            "pg_vacuum_progress_info",
            &[
                ("relname", "public.pinned"),
                ("kind", "manual"),
                ("phase", "scanning heap")
            ]
        ),
        Some(1.0)
    );
    let api: Json = serde_json::from_str(&agent.get("/api/v1/vacuum").await.body).unwrap();
    let running = &api["targets"][0]["report"]["running"];
    assert_eq!(running[0]["pid"], pid, "{running}");
    assert_eq!(running[0]["relname"], "public.pinned");

    // Released, the VACUUM finishes and its series go.
    reader.batch_execute("COMMIT").await.unwrap();
    vacuum.await.unwrap().unwrap();
    agent
        .wait_for(WAIT, "no running VACUUM", |m| {
            m.get("pg_vacuum_progress_heap_blocks", &labels)
                .is_none()
                .then_some(())
        })
        .await;
}

/// A standby with hot_standby_feedback whose session holds an old snapshot
/// holds the primary's horizon through its walsender: the primary's
/// `pg_xmin_horizon_age{holder="standby"}` is the primary's own
/// `age(backend_xmin)` of that walsender, for a running agent and a fresh
/// `pgvigil once`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_snapshot_holds_the_primary_back_through_feedback() {
    use crate::harness::replica::{ReplicaOptions, replicated};

    let set = replicated(
        1,
        ReplicaOptions {
            conf: vec![
                "hot_standby_feedback = on".into(),
                "wal_receiver_status_interval = 1s".into(),
            ],
            ..ReplicaOptions::default()
        },
    )
    .await;
    let primary = set.primary.pg.connect().await;
    let replica = set.replicas[0].connect().await;
    // Wait for the standby's first feedback, then hold a snapshot there.
    let walsender_age =
        "SELECT age(backend_xmin)::float8 FROM pg_stat_replication WHERE backend_xmin IS NOT NULL";
    let p = &primary;
    crate::harness::eventually(WAIT, "the standby's feedback", || async move {
        p.query_opt(walsender_age, &[]).await.unwrap().map(|_| ())
    })
    .await;
    replica
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class")
        .await
        .unwrap();
    burn(&primary, 200).await;
    // The feedback keeps the snapshot's xmin: the age grows by what was burned
    // and then stays.
    let truth = crate::harness::eventually(WAIT, "the walsender's xmin held", || async move {
        let a: Option<f64> = p
            .query_opt(walsender_age, &[])
            .await
            .unwrap()
            .map(|r| r.get(0));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let b: Option<f64> = p
            .query_opt(walsender_age, &[])
            .await
            .unwrap()
            .map(|r| r.get(0));
        (a == b && b >= Some(200.0)).then_some(b).flatten()
    })
    .await;

    let agent = RunningAgent::start(&set.primary.pg.scratch(), &set.primary.config("")).await;
    agent
        .wait_for(WAIT, "the standby's horizon", |m| {
            (m.get("pg_xmin_horizon_age", &[("holder", "standby")]) == Some(truth)).then_some(())
        })
        .await;
    let api: Json = serde_json::from_str(&agent.get("/api/v1/vacuum").await.body).unwrap();
    let report = &api["targets"][0]["report"];
    let s = holders(report, "standby");
    assert_eq!(s.len(), 1, "{report}");
    assert_eq!(s[0]["age"], truth, "{report}");
    assert_eq!(s[0]["application_name"], "replica1", "{report}");
    // A fresh `pgvigil once` says the same.
    let env = set.primary.once_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = pgvigil(
        &[
            "once",
            "--dsn",
            &set.primary.dsn(),
            "--format",
            "prometheus",
        ],
        &env,
    );
    let (text, err) = outputs(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        Metrics::parse(&text).get("pg_xmin_horizon_age", &[("holder", "standby")]),
        Some(truth)
    );
    let again: f64 = primary.query_one(walsender_age, &[]).await.unwrap().get(0);
    assert_eq!(again, truth, "the walsender's xmin moved during the test");

    // Released, the standby's horizon catches up.
    replica.batch_execute("COMMIT").await.unwrap();
    agent
        .wait_for(WAIT, "the standby's horizon released", |m| {
            m.get("pg_xmin_horizon_age", &[("holder", "standby")])
                .is_none_or(|age| age < 200.0)
                .then_some(())
        })
        .await;
}
