//! `alerts/compat/postgres-exporter.rules.yml` in a real Prometheus scraping a running agent:
//! every postgres_exporter name the file records returns data, with the labels and units
//! postgres_exporter gives it, and with values that follow from what the test did (rows
//! inserted and deleted, scans, an autovacuum, an open transaction holding a lock, a
//! replication slot reserving WAL, an archived segment, a checkpoint).
//!
//! The same Prometheus also scrapes a real postgres_exporter (Debian's 0.11, built-in collectors)
//! on the same server: each recorded name it publishes too has its labels, and the values the
//! test fixed (rows, a lock, a checkpoint, archiving, a slot) agree, in its units; so do the
//! settings that docs/migrating.md's custom query publishes under postgres_exporter's names.
//!
//! On a primary and its replica, `pg_replication_lag` and `pg_replication_is_replica` read as
//! postgres_exporter's (the replica's own view), while pgvigil's `pg_replication_lag_seconds`
//! keeps its own meaning: the primary's view per replica, which the rules never shadow.
//!
//! The rules need Prometheus' evaluation, so `pgvigil once` does not apply here; the unit tests
//! in `alerts/tests/compat-postgres-exporter.yml` pin each rule's arithmetic.

use std::path::Path;
use std::time::Duration;

use crate::harness::prometheus::{Sample, records};
use crate::harness::replica::{ReplicaOptions, replicated};
use crate::harness::{
    Fixture, PgOptions, PostgresExporter, Prometheus, RunningAgent, eventually, unix_now,
};

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/alerts/compat/postgres-exporter.rules.yml"
);
const MIGRATING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/migrating.md");
const WAIT: Duration = Duration::from_secs(90);

/// The `[[target.query]]` of docs/migrating.md that publishes the settings dashboards read,
/// as written there.
fn settings_query() -> String {
    let doc = std::fs::read_to_string(MIGRATING).expect("read docs/migrating.md");
    doc.split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(toml, _)| toml))
        .find(|toml| toml.contains("name = \"postgres_exporter_settings\""))
        .expect("the settings query in docs/migrating.md")
        .to_string()
}

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

/// A cluster after the test's work: `compat_orders` with 600 of 1000 rows left, scanned three
/// times and autovacuumed; a WAL-reserving slot `compat_slot`; an archived segment; a requested
/// checkpoint; and `locker`, a session idle in a transaction holding an ACCESS EXCLUSIVE lock on
/// `compat_locked`.
struct Scene {
    fx: Fixture,
    db: tokio_postgres::Client,
    _locker: tokio_postgres::Client,
}

impl Scene {
    async fn set_up() -> Scene {
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
                let archived =
                    scalar(&db, "SELECT archived_count::float8 FROM pg_stat_archiver").await;
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
        Scene {
            fx,
            db,
            _locker: locker,
        }
    }

    /// A running agent on the scene's cluster, every collector each second.
    async fn agent(&self) -> RunningAgent {
        self.agent_with("").await
    }

    /// Like [`Scene::agent`], with `target_tables` (`[[target.query]]`) in the target.
    async fn agent_with(&self, target_tables: &str) -> RunningAgent {
        RunningAgent::start(
            self.fx.pg.scratch().as_path(),
            &self.fx.config_with(
                target_tables,
                "tables = \"1s\"\nstatements = { interval = \"1s\" }\n[explain]\nenabled = false\n",
            ),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_postgres_exporter_name_is_recorded_from_a_running_agent() {
    let started = unix_now();
    let scene = Scene::set_up().await;
    let db = &scene.db;
    let agent = scene.agent().await;
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
        db,
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
    let archived = scalar(db, "SELECT archived_count::float8 FROM pg_stat_archiver").await;
    assert_eq!(
        one(&prom, "pg_stat_archiver_archived_count").await.value,
        archived
    );
    let requested = one(&prom, "pg_stat_bgwriter_checkpoints_req_total").await;
    assert!(requested.value >= 1.0, "{requested:?}");

    // Reserved slots as the server reports them.
    let reserved = scalar(
        db,
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
    // (The set-up's statements ran as postgres.)
    let statements = eventually(WAIT, "statements of user postgres", || async {
        let samples = prom.query("pg_stat_statements_seconds_total").await;
        samples
            .iter()
            .any(|s| s.label("user") == Some("postgres"))
            .then_some(samples)
    })
    .await;
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
}

/// Labels postgres_exporter 0.11 has that the recorded names leave out, on purpose
/// (docs/migrating.md): `server` everywhere (pgvigil has `target`), `datid` on pg_stat_database,
/// `state` on max_tx_duration (pgvigil's oldest transaction is per database), `database` on slots.
fn left_out(name: &str) -> &'static [&'static str] {
    match name {
        n if n.starts_with("pg_stat_database_") => &["server", "datid"],
        "pg_stat_activity_max_tx_duration" => &["server", "state"],
        n if n.starts_with("pg_replication_slots_") => &["server", "database"],
        _ => &["server"],
    }
}

/// Label names of `samples` other than those of the scrape and `also`.
fn label_names(samples: &[Sample], also: &[&str]) -> std::collections::BTreeSet<String> {
    samples
        .iter()
        .flat_map(|s| s.labels.keys().cloned())
        .filter(|k| !["__name__", "instance", "job", "target"].contains(&k.as_str()))
        .filter(|k| !also.contains(&k.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_names_agree_with_a_real_postgres_exporter_on_the_same_server() {
    let scene = Scene::set_up().await;
    let settings = settings_query();
    let agent = scene.agent_with(&settings).await;
    let exporter = PostgresExporter::start(&scene.fx.pg).await;
    let prom = Prometheus::start_jobs(
        &[
            ("pgvigil", agent.addr),
            ("postgres_exporter", exporter.addr),
        ],
        &[Path::new(RULES)],
    )
    .await;
    let mine = |expr: &str| format!("{{__name__=\"{expr}\", job=\"pgvigil\"}}");
    let theirs = |expr: &str| format!("{{__name__=\"{expr}\", job=\"postgres_exporter\"}}");
    eventually(WAIT, "a scrape of both", || async {
        let up = prom.query("up == 1").await;
        (up.len() == 2).then_some(())
    })
    .await;
    // Give every rule a scrape of the agent's full snapshot, then compare name by name.
    eventually(WAIT, "the recorded tables", || async {
        (!prom
            .query(&mine("pg_stat_user_tables_seq_scan"))
            .await
            .is_empty())
        .then_some(())
    })
    .await;

    let mut compared = Vec::new();
    for name in records(Path::new(RULES)) {
        let reference = prom.query(&theirs(&name)).await;
        if reference.is_empty() {
            // Not among 0.11's built-in collectors (tables, statements, replication lag
            // come from its queries.yaml or later releases).
            continue;
        }
        if name == "pg_stat_database_checksum_failures"
            && one(&prom, "pg_settings_data_checksums{job=\"pgvigil\"}")
                .await
                .value
                == 0.0
        {
            // Checksums off: postgres_exporter writes NaN (NULL), pgvigil has nothing to count.
            assert!(reference.iter().all(|s| s.value.is_nan()), "{reference:?}");
            assert!(prom.query(&mine(&name)).await.is_empty());
            continue;
        }
        let recorded = eventually(WAIT, &name, || async {
            let s = prom.query(&mine(&name)).await;
            (!s.is_empty()).then_some(s)
        })
        .await;
        assert_eq!(
            label_names(&recorded, &[]),
            label_names(&reference, left_out(&name)),
            "{name}: labels of the recorded series (left) and of postgres_exporter's (right)"
        );
        compared.push(name);
    }
    // 0.11's built-in collectors cover the database, activity, lock, bgwriter, archiver,
    // settings and slot names (bgwriter's fails on PostgreSQL 17+, where the view changed).
    assert!(
        compared.len() >= 20,
        "postgres_exporter published too few of the recorded names: {compared:?}\n{}",
        exporter.log()
    );

    // Values that stay put once the test's work is done agree exactly, once both have read them.
    let mut same = vec![
        "pg_stat_database_tup_inserted{datname=\"postgres\"}",
        "pg_stat_database_tup_deleted{datname=\"postgres\"}",
        "pg_stat_activity_count{datname=\"postgres\", state=\"idle in transaction\"}",
        "pg_locks_count{datname=\"postgres\", mode=\"accessexclusivelock\"}",
        "pg_stat_archiver_archived_count",
        "pg_stat_archiver_failed_count",
        "pg_settings_superuser_reserved_connections",
        "pg_replication_slots_active{slot_name=\"compat_slot\"}",
    ];
    if compared.iter().any(|n| n.starts_with("pg_stat_bgwriter_")) {
        same.extend([
            "pg_stat_bgwriter_checkpoints_req_total",
            // Milliseconds in both.
            "pg_stat_bgwriter_checkpoint_write_time_total",
            "pg_stat_bgwriter_checkpoint_sync_time_total",
            "pg_stat_bgwriter_buffers_checkpoint_total",
        ]);
    }
    for expr in same {
        let with_job = |job: &str| {
            let (name, selector) = expr.split_once('{').unwrap_or((expr, "}"));
            let sep = if selector == "}" { "" } else { ", " };
            format!("{name}{{job=\"{job}\"{sep}{selector}")
        };
        eventually(WAIT, expr, || async {
            let a = prom.query(&with_job("pgvigil")).await;
            let b = prom.query(&with_job("postgres_exporter")).await;
            (a.len() == 1 && b.len() == 1 && a[0].value == b[0].value).then_some(())
        })
        .await;
    }
    // The settings query of docs/migrating.md: postgres_exporter's names, units and values.
    let setting_names: Vec<&str> = settings
        .split("name = \"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name))
        .filter(|name| name.starts_with("pg_settings_"))
        .collect();
    assert!(setting_names.len() >= 10, "{setting_names:?}");
    for name in setting_names {
        let (a, b) = eventually(WAIT, name, || async {
            let a = prom.query(&mine(name)).await;
            let b = prom.query(&theirs(name)).await;
            (a.len() == 1 && b.len() == 1).then(|| (a[0].value, b[0].value))
        })
        .await;
        assert_eq!(a, b, "{name}: the settings query against postgres_exporter");
    }
    // Ages, in seconds in both: the test's open transaction, the archived segment.
    for (expr, reference) in [
        (
            "pg_stat_activity_max_tx_duration{job=\"pgvigil\", datname=\"postgres\"}",
            "max(pg_stat_activity_max_tx_duration{job=\"postgres_exporter\", datname=\"postgres\"})",
        ),
        (
            "pg_stat_archiver_last_archive_age{job=\"pgvigil\"}",
            "pg_stat_archiver_last_archive_age{job=\"postgres_exporter\"}",
        ),
    ] {
        let (a, b) = eventually(WAIT, expr, || async {
            let a = prom.query(expr).await;
            let b = prom.query(reference).await;
            (a.len() == 1 && b.len() == 1 && a[0].value >= 2.0).then(|| (a[0].value, b[0].value))
        })
        .await;
        assert!(
            (a - b).abs() < 5.0,
            "{expr}: {a} against postgres_exporter's {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_replica_reads_its_own_lag_as_postgres_exporter_did() {
    let set = replicated(1, ReplicaOptions::default()).await;
    let replica = &set.replicas[0];
    replica.wait_streaming().await;
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &set.config("")).await;
    let prom = Prometheus::start(agent.addr, &[Path::new(RULES)]).await;
    let on = |name: &str, target: &str| format!("{name}{{target=\"{target}\"}}");
    let value = |expr: String| {
        let prom = &prom;
        async move { one(prom, &expr).await.value }
    };
    eventually(WAIT, "both servers' roles", || async {
        let primary = prom
            .query(&on("pg_replication_is_replica", "primary"))
            .await;
        let replica = prom
            .query(&on("pg_replication_is_replica", "replica1"))
            .await;
        (primary.len() == 1 && replica.len() == 1).then_some(())
    })
    .await;
    assert_eq!(value(on("pg_replication_is_replica", "primary")).await, 0.0);
    assert_eq!(
        value(on("pg_replication_is_replica", "replica1")).await,
        1.0
    );
    assert_eq!(value(on("pg_replication_lag", "primary")).await, 0.0);

    // A transaction replayed, then replay paused while the primary commits: the replica falls
    // behind by the age of the last transaction it replayed, which it reports itself.
    let primary = set.primary.pg.connect().await;
    primary
        .batch_execute("CREATE TABLE compat_behind (n int)")
        .await
        .expect("write on the primary");
    replica.wait_caught_up(&set.primary.pg).await;
    eventually(WAIT, "the caught-up replica's lag", || async {
        (value(on("pg_replication_lag", "replica1")).await == 0.0).then_some(())
    })
    .await;
    replica.pause_replay().await;
    primary
        .batch_execute("INSERT INTO compat_behind VALUES (1)")
        .await
        .expect("write on the primary");
    let lag = eventually(WAIT, "the replica's recorded lag", || async {
        let lag = value(on("pg_replication_lag", "replica1")).await;
        (lag >= 2.0).then_some(lag)
    })
    .await;
    let own = replica.connect().await;
    let truth = scalar(
        &own,
        "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8",
    )
    .await;
    assert!(
        lag <= truth,
        "recorded lag {lag} s, but the replica says it is {truth} s behind"
    );

    // pgvigil's own pg_replication_lag_seconds is the primary's view of each replica, with
    // kind, as documented; no recorded series under that name.
    let series = prom.query("pg_replication_lag_seconds").await;
    assert!(!series.is_empty());
    for s in &series {
        assert_eq!(s.label("target"), Some("primary"), "{s:?}");
        assert_eq!(
            s.label("application_name"),
            Some(replica.application_name.as_str())
        );
        assert!(s.label("kind").is_some(), "{s:?}");
    }
    replica.resume_replay().await;
}
