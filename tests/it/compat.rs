//! `alerts/compat/postgres-exporter.rules.yml` in a real Prometheus scraping a running agent:
//! every postgres_exporter name the file records returns data, with the labels and units
//! postgres_exporter gives it, and with values that follow from what the test did (rows
//! inserted and deleted, scans, an autovacuum, an open transaction holding a lock, a
//! replication slot reserving WAL, an archived segment, a checkpoint).
//!
//! The rules need Prometheus' evaluation, so `pgvigil once` does not apply here; the unit tests
//! in `alerts/tests/compat-postgres-exporter.yml` pin each rule's arithmetic.

use std::path::Path;
use std::time::Duration;

use crate::harness::prometheus::{Sample, records};
use crate::harness::{Fixture, PgOptions, Prometheus, RunningAgent, eventually, unix_now};

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/alerts/compat/postgres-exporter.rules.yml"
);
const WAIT: Duration = Duration::from_secs(90);

/// The one sample of `expr`, once Prometheus has it.
async fn one(prom: &Prometheus, expr: &str) -> Sample {
    eventually(WAIT, expr, || async {
        let samples = prom.query(expr).await;
        (samples.len() == 1).then(|| samples[0].clone())
    })
    .await
}

async fn scalar(client: &tokio_postgres::Client, sql: &str) -> f64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_postgres_exporter_name_is_recorded_from_a_running_agent() {
    let started = unix_now();
    let fx = Fixture::start_with(PgOptions {
        conf: vec![
            "archive_mode = on".into(),
            "archive_command = 'true'".into(),
            "autovacuum_naptime = 1".into(),
        ],
    })
    .await;
    let db = fx.pg.connect().await;
    // 1000 rows in, 400 out, three full scans; autovacuum on any change.
    db.batch_execute(
        "CREATE TABLE compat_orders (id int PRIMARY KEY, state text)
           WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,
                 autovacuum_analyze_threshold = 0, autovacuum_analyze_scale_factor = 0);
         INSERT INTO compat_orders SELECT g, 'new' FROM generate_series(1, 1000) g;
         DELETE FROM compat_orders WHERE id > 600;
         SELECT count(*) FROM compat_orders;
         SELECT count(*) FROM compat_orders;
         SELECT count(*) FROM compat_orders;
         CREATE TABLE compat_locked (n int);
         SELECT pg_create_physical_replication_slot('compat_slot', true);
         SELECT pg_switch_wal();
         CHECKPOINT;",
    )
    .await
    .expect("set up");
    eventually(
        WAIT,
        "autovacuum of compat_orders and an archived segment",
        || async {
            let vacuumed = scalar(
                &db,
                "SELECT count(*)::float8 FROM pg_stat_user_tables
              WHERE relname = 'compat_orders' AND last_autovacuum IS NOT NULL
                AND last_autoanalyze IS NOT NULL",
            )
            .await;
            let archived = scalar(&db, "SELECT archived_count::float8 FROM pg_stat_archiver").await;
            (vacuumed == 1.0 && archived >= 1.0).then_some(())
        },
    )
    .await;
    // A session that stays idle in a transaction holding an ACCESS EXCLUSIVE lock.
    let locker = fx.pg.connect().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE compat_locked IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");

    let agent = RunningAgent::start(
        fx.pg.scratch().as_path(),
        &fx.config(
            "tables = \"1s\"\nstatements = { interval = \"1s\" }\n[explain]\nenabled = false\n",
        ),
    )
    .await;
    let prom = Prometheus::start(agent.addr, &[Path::new(RULES)]).await;

    // Every record evaluates without error and returns data. Checksum failures exist only
    // where data checksums are on (pgvigil cannot count what is not checked).
    let checksums = one(&prom, "pg_settings_data_checksums").await.value == 1.0;
    let names = records(Path::new(RULES));
    assert!(names.len() >= 30, "{names:?}");
    for name in &names {
        if name == "pg_stat_database_checksum_failures" && !checksums {
            assert!(
                prom.query(name).await.is_empty(),
                "{name} without checksums"
            );
            continue;
        }
        eventually(WAIT, name, || async {
            let samples = prom.query(name).await;
            (!samples.is_empty()).then_some(())
        })
        .await;
    }
    let health = prom.rules().await;
    let failing: Vec<_> = health
        .iter()
        .filter(|(_, h)| h.starts_with("err"))
        .collect();
    assert!(
        failing.is_empty(),
        "rules failing in Prometheus: {failing:?}"
    );
    for name in &names {
        assert!(health.contains_key(name), "{name} not loaded: {health:?}");
    }

    // Every series keeps the job and instance of the scrape and the agent's target.
    for sample in prom
        .query("{__name__=~\"pg_stat_.*|pg_locks_count|pg_replication_.*\"}")
        .await
    {
        assert_eq!(sample.label("job"), Some("pgvigil"), "{sample:?}");
        assert_eq!(sample.label("target"), Some("main"), "{sample:?}");
        assert_eq!(
            sample.label("instance"),
            Some(agent.addr.to_string().as_str())
        );
    }

    // Tables: what the test did to compat_orders, in postgres_exporter's names.
    let table = "{datname=\"postgres\", schemaname=\"public\", relname=\"compat_orders\"}";
    let live = one(&prom, &format!("pg_stat_user_tables_n_live_tup{table}")).await;
    assert_eq!(live.value, 600.0);
    let seq_scans = scalar(
        &db,
        "SELECT seq_scan::float8 FROM pg_stat_user_tables WHERE relname = 'compat_orders'",
    )
    .await;
    assert!(seq_scans >= 3.0);
    let recorded = eventually(WAIT, "seq_scan", || async {
        let s = one(&prom, &format!("pg_stat_user_tables_seq_scan{table}")).await;
        (s.value == seq_scans).then_some(s.value)
    })
    .await;
    assert_eq!(recorded, seq_scans);
    let vacuumed = one(
        &prom,
        &format!("pg_stat_user_tables_last_autovacuum{table}"),
    )
    .await;
    assert!(
        vacuumed.value >= started && vacuumed.value <= unix_now(),
        "last_autovacuum {} is not a Unix time after the test started ({started})",
        vacuumed.value
    );
    let inserted = one(&prom, "pg_stat_database_tup_inserted{datname=\"postgres\"}").await;
    assert!(inserted.value >= 1000.0, "{inserted:?}");
    let deleted = one(&prom, "pg_stat_database_tup_deleted{datname=\"postgres\"}").await;
    assert!(deleted.value >= 400.0, "{deleted:?}");

    // The open transaction: its session, its lock (mode lower-cased), its age.
    let idle = one(
        &prom,
        "pg_stat_activity_count{datname=\"postgres\", state=\"idle in transaction\"}",
    )
    .await;
    assert!(idle.value >= 1.0, "{idle:?}");
    let zero = one(
        &prom,
        "pg_stat_activity_count{datname=\"postgres\", state=\"idle in transaction (aborted)\"}",
    )
    .await;
    assert_eq!(zero.value, 0.0, "postgres_exporter's 0 for an empty state");
    let locks = one(
        &prom,
        "pg_locks_count{datname=\"postgres\", mode=\"accessexclusivelock\"}",
    )
    .await;
    assert!(locks.value >= 1.0, "{locks:?}");
    assert!(
        prom.query("pg_locks_count{mode=\"AccessExclusiveLock\"}")
            .await
            .is_empty()
    );
    eventually(WAIT, "max_tx_duration of the open transaction", || async {
        let age = one(
            &prom,
            "pg_stat_activity_max_tx_duration{datname=\"postgres\"}",
        )
        .await;
        (age.value >= 2.0).then_some(())
    })
    .await;

    // A primary: no replica lag, not a replica; the test's inactive slot.
    assert_eq!(one(&prom, "pg_replication_is_replica").await.value, 0.0);
    assert_eq!(one(&prom, "pg_replication_lag").await.value, 0.0);
    let slot = one(
        &prom,
        "pg_replication_slots_active{slot_name=\"compat_slot\"}",
    )
    .await;
    assert_eq!(slot.value, 0.0);
    assert_eq!(slot.label("slot_type"), None);
    let retained = one(
        &prom,
        "pg_replication_slots_pg_wal_lsn_diff{slot_name=\"compat_slot\"}",
    )
    .await;
    assert!(
        retained.value > 0.0,
        "a reserving slot keeps WAL: {retained:?}"
    );

    // Archiving and the checkpoint the test asked for.
    let archived = scalar(&db, "SELECT archived_count::float8 FROM pg_stat_archiver").await;
    assert_eq!(
        one(&prom, "pg_stat_archiver_archived_count").await.value,
        archived
    );
    let requested = one(&prom, "pg_stat_bgwriter_checkpoints_req_total").await;
    assert!(requested.value >= 1.0, "{requested:?}");

    // Reserved slots as the server reports them.
    let reserved = scalar(
        &db,
        "SELECT (current_setting('superuser_reserved_connections')::int
                 + coalesce(current_setting('reserved_connections', true)::int, 0))::float8",
    )
    .await;
    assert_eq!(
        one(&prom, "pg_settings_superuser_reserved_connections")
            .await
            .value,
        reserved
    );

    // Statement time under postgres_exporter's `user` label, pgvigil's labels summed away.
    let statements = prom.query("pg_stat_statements_seconds_total").await;
    assert!(
        statements
            .iter()
            .any(|s| s.label("user") == Some("postgres")),
        "{statements:?}"
    );
    for s in &statements {
        assert!(
            s.label("usename").is_none() && s.label("fingerprint").is_none(),
            "{s:?}"
        );
        assert!(
            s.label("datname").is_some() && s.label("queryid").is_some(),
            "{s:?}"
        );
    }
    drop(locker);
}
