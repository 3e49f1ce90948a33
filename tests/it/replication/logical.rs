//! Logical replication between two clusters: a publication on one, a
//! subscription on the other, both watched by one agent. The publisher's
//! slot falls behind while the subscriber is down (ground truth: the
//! publisher's own `pg_current_wal_lsn()` against the position the slot
//! had confirmed), and a row that already exists on the subscriber stops
//! the apply worker (a unique violation): the error counter rises as the
//! subscriber's own pg_stat_subscription_stats says (15+) and the alert
//! fires in a real Prometheus evaluating the shipped rules.

use std::path::Path;

use super::{MB, WAIT};
use crate::harness::replica::{current_lsn, parse_lsn, write_wal};
use crate::harness::{
    Fixture, Metrics, PgOptions, Prometheus, RunningAgent, eventually, outputs, pgvigil,
};

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/pgvigil.rules.yml");

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_falling_behind_and_failing_shows_on_both_ends() {
    let major = crate::harness::pg::major_version();
    let publisher = Fixture::start_with(PgOptions {
        conf: vec!["wal_level = logical".into()],
    })
    .await;
    let subscriber = Fixture::start_with(PgOptions {
        // The apply worker restarts a second after an error.
        conf: vec!["wal_retrieve_retry_interval = '1s'".into()],
    })
    .await;
    let source = publisher.pg.connect().await;
    source
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY);
             CREATE PUBLICATION pub FOR TABLE items;
             INSERT INTO items SELECT generate_series(1, 10);",
        )
        .await
        .unwrap();
    let sink = subscriber.pg.connect().await;
    sink.batch_execute("CREATE TABLE items (id int PRIMARY KEY)")
        .await
        .unwrap();
    sink.batch_execute(&format!(
        "CREATE SUBSCRIPTION sub CONNECTION 'host={} port={} user=postgres dbname=postgres' PUBLICATION pub;",
        publisher.pg.socket_dir().display(),
        publisher.pg.port
    ))
    .await
    .unwrap();
    eventually(WAIT, "the initial copy", || async {
        (count(&sink, "SELECT count(*) FROM items").await == 10).then_some(())
    })
    .await;
    // Five more transactions, decoded and applied one by one.
    for id in 11..=15 {
        source
            .execute("INSERT INTO items VALUES ($1)", &[&id])
            .await
            .unwrap();
    }
    eventually(WAIT, "five transactions applied", || async {
        (count(&sink, "SELECT count(*) FROM items").await == 15).then_some(())
    })
    .await;

    let config = format!(
        "[[target]]\nname = \"publisher\"\ndsn = \"{}\"\npassword_file = \"{}\"\n\n\
         [[target]]\nname = \"subscriber\"\ndsn = \"{}\"\npassword_file = \"{}\"\n\n\
         [collectors]\ndefault_interval = \"1s\"\n",
        publisher.dsn(),
        publisher.password_file().display(),
        subscriber.dsn(),
        subscriber.password_file().display()
    );
    let agent = RunningAgent::start(&publisher.pg.scratch(), &config).await;
    let prom = Prometheus::start(agent.addr, &[Path::new(RULES)]).await;
    let sub = [
        ("target", "subscriber"),
        ("datname", "postgres"),
        ("subname", "sub"),
    ];
    let slot = [("target", "publisher"), ("slot_name", "sub")];
    let m = agent
        .wait_for(WAIT, "the subscription streaming", |m| {
            (m.get("pg_subscription_worker_running", &sub) == Some(1.0)
                && m.get("pg_replication_slot_active", &slot) == Some(1.0)
                && m.get("pg_subscription_apply_lag_seconds", &sub).is_some())
            .then(|| m.clone())
        })
        .await;
    assert_eq!(m.get("pg_subscription_enabled", &sub), Some(1.0));
    let lag = m.get("pg_subscription_apply_lag_seconds", &sub).unwrap();
    assert!(lag < 60.0, "a streaming subscription {lag} s behind");
    assert!(
        m.get("pg_replication_slot_confirmed_flush_lag_bytes", &slot)
            .unwrap()
            < MB
    );
    // The subscriber side is the subscriber's only.
    assert!(
        m.find("pg_subscription_worker_running", &[("target", "publisher")])
            .next()
            .is_none()
    );
    if major >= 14 {
        let decoded = agent
            .wait_for(WAIT, "decoded transactions", |m| {
                m.get("pg_replication_slot_decoded_txns_total", &slot)
                    .filter(|n| *n >= 5.0)
            })
            .await;
        assert!(decoded >= 5.0);
        assert!(
            m.get("pg_replication_slot_spill_bytes_total", &slot)
                .is_some()
        );
    } else {
        assert!(
            m.find("pg_replication_slot_decoded_txns_total", &[])
                .next()
                .is_none()
        );
    }
    if major >= 16 {
        assert_eq!(m.get("pg_replication_slot_conflicting", &slot), Some(0.0));
    } else {
        assert!(
            m.find("pg_replication_slot_conflicting", &[])
                .next()
                .is_none()
        );
    }

    // The subscriber goes down: the publisher's slot keeps what it has not
    // confirmed, and the lag grows with every byte written.
    subscriber.pg.stop();
    let confirmed = eventually(WAIT, "the slot released", || async {
        let row = source
            .query_one(
                "SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'sub'",
                &[],
            )
            .await
            .unwrap();
        (!row.get::<_, bool>(0)).then(|| parse_lsn(row.get(1)))
    })
    .await;
    write_wal(&source, 5).await;
    let written = current_lsn(&source).await;
    let truth = (written - confirmed) as f64;
    assert!(truth >= 4.0 * MB, "{truth}");
    let lag = agent
        .wait_for(WAIT, "the slot's lag to cover the WAL written", |m| {
            m.get("pg_replication_slot_confirmed_flush_lag_bytes", &slot)
                .filter(|lag| {
                    *lag >= truth && m.get("pg_replication_slot_active", &slot) == Some(0.0)
                })
        })
        .await;
    let now = current_lsn(&source).await;
    assert!(
        lag <= (now - confirmed) as f64,
        "{lag} > {}",
        now - confirmed
    );
    // A fresh `pgvigil once` on the publisher reads the same lag.
    let dsn = publisher.dsn();
    let env = publisher.once_env();
    let out = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pgvigil(&["once", "--dsn", &dsn, "--format", "prometheus"], &env)
    })
    .await
    .unwrap();
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let once = Metrics::parse(&stdout);
    let fresh = once
        .get(
            "pg_replication_slot_confirmed_flush_lag_bytes",
            &[("slot_name", "sub")],
        )
        .expect("the slot's lag in `once`");
    let after = current_lsn(&source).await;
    assert!(
        fresh >= truth && fresh <= (after - confirmed) as f64,
        "once read {fresh}, the publisher {truth}..{}",
        after - confirmed
    );
    if major >= 17 {
        let m = agent.metrics().await;
        let since = m.get(
            "pg_replication_slot_inactive_since_timestamp_seconds",
            &slot,
        );
        assert!(
            since.is_some_and(|s| s <= crate::harness::unix_now()),
            "{since:?}"
        );
    }

    // Back, and a row the subscriber already has arrives: apply fails.
    subscriber.pg.restart_stopped();
    let sink = subscriber.pg.connect().await;
    agent
        .wait_for(WAIT, "the apply worker back", |m| {
            (m.get("pg_subscription_worker_running", &sub) == Some(1.0)).then_some(())
        })
        .await;
    // Disabled on purpose: no worker, and PostgresSubscriptionWorkerDown's
    // expression stays empty for it.
    sink.batch_execute("ALTER SUBSCRIPTION sub DISABLE")
        .await
        .unwrap();
    agent
        .wait_for(WAIT, "the disabled subscription", |m| {
            (m.get("pg_subscription_enabled", &sub) == Some(0.0)
                && m.get("pg_subscription_worker_running", &sub) == Some(0.0))
            .then_some(())
        })
        .await;
    eventually(WAIT, "Prometheus to see it disabled", || async {
        (!prom
            .query("pg_subscription_enabled{target=\"subscriber\"} == 0")
            .await
            .is_empty())
        .then_some(())
    })
    .await;
    let down = prom
        .query("pg_subscription_worker_running == 0 and on (instance, job, target, datname, subname) (pg_subscription_enabled == 1)")
        .await;
    assert!(down.is_empty(), "{down:?}");
    sink.batch_execute("ALTER SUBSCRIPTION sub ENABLE")
        .await
        .unwrap();
    agent
        .wait_for(WAIT, "the apply worker back after ENABLE", |m| {
            (m.get("pg_subscription_worker_running", &sub) == Some(1.0)).then_some(())
        })
        .await;
    sink.batch_execute("INSERT INTO items VALUES (1000)")
        .await
        .unwrap();
    source
        .batch_execute("INSERT INTO items VALUES (1000)")
        .await
        .unwrap();
    if major < 15 {
        // No error counters before 15; the worker keeps failing and restarting.
        eventually(WAIT, "the apply worker failing", || async {
            let log = std::fs::read_to_string(subscriber.pg.log_file()).unwrap_or_default();
            log.contains("duplicate key value violates unique constraint")
                .then_some(())
        })
        .await;
        assert!(
            agent
                .metrics()
                .await
                .find("pg_subscription_errors_total", &[])
                .next()
                .is_none()
        );
        return;
    }
    let errors = eventually(WAIT, "the subscriber's own apply error count", || async {
        let n = count(
            &sink,
            "SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subname = 'sub'",
        )
        .await;
        (n >= 1).then_some(n as f64)
    })
    .await;
    let mut apply = sub.to_vec();
    apply.push(("kind", "apply"));
    agent
        .wait_for(WAIT, "the apply errors counted", |m| {
            m.get("pg_subscription_errors_total", &apply)
                .filter(|n| *n >= errors)
        })
        .await;
    let fired = eventually(WAIT, "PostgresSubscriptionErrors firing", || async {
        let alerts = prom
            .query("ALERTS{alertname=\"PostgresSubscriptionErrors\", alertstate=\"firing\"}")
            .await;
        (!alerts.is_empty()).then_some(alerts)
    })
    .await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].label("target"), Some("subscriber"));
    assert_eq!(fired[0].label("subname"), Some("sub"));
    if major >= 18 {
        let conflicts = count(
            &sink,
            "SELECT confl_insert_exists FROM pg_stat_subscription_stats WHERE subname = 'sub'",
        )
        .await;
        assert!(conflicts >= 1, "{conflicts}");
        let mut insert_exists = sub.to_vec();
        insert_exists.push(("kind", "insert_exists"));
        agent
            .wait_for(WAIT, "the insert_exists conflicts counted", |m| {
                m.get("pg_subscription_conflicts_total", &insert_exists)
                    .filter(|n| *n >= conflicts as f64)
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_that_lost_its_wal_says_why() {
    let major = crate::harness::pg::major_version();
    let fx = Fixture::start_with(PgOptions {
        conf: vec![
            "wal_level = logical".into(),
            "max_slot_wal_keep_size = '1MB'".into(),
        ],
    })
    .await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(
            "SELECT pg_create_physical_replication_slot('doomed', true);
             SELECT pg_create_logical_replication_slot('kept', 'test_decoding');",
        )
        .await
        .unwrap();
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let kept = [("slot_name", "kept")];
    let doomed = [("slot_name", "doomed")];
    let m = agent
        .wait_for(WAIT, "both slots", |m| {
            m.get(
                "pg_replication_slot_active",
                &[("slot_name", "kept"), ("slot_type", "logical")],
            )
            .and(m.get("pg_replication_slot_retained_bytes", &doomed))
            .map(|_| m.clone())
        })
        .await;
    // A logical slot nobody consumed has confirmed its creation point.
    assert!(
        m.get("pg_replication_slot_confirmed_flush_lag_bytes", &kept)
            .is_some()
    );
    assert!(
        m.get("pg_replication_slot_confirmed_flush_lag_bytes", &doomed)
            .is_none()
    );
    // Past max_slot_wal_keep_size, a checkpoint removes the WAL both slots need.
    write_wal(&admin, 5).await;
    admin
        .batch_execute("SELECT pg_switch_wal(); CHECKPOINT; SELECT pg_switch_wal(); CHECKPOINT;")
        .await
        .unwrap();
    let status: String = admin
        .query_one(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'doomed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "lost");
    let mut lost = doomed.to_vec();
    lost.push(("wal_status", "lost"));
    let m = agent
        .wait_for(WAIT, "the lost slot", |m| {
            m.get("pg_replication_slot_wal_status_info", &lost)
                .map(|_| m.clone())
        })
        .await;
    let reasons: Vec<String> = m
        .find("pg_replication_slot_invalidation_info", &doomed)
        .map(|s| s.labels["reason"].clone())
        .collect();
    if major >= 17 {
        let truth: String = admin
            .query_one(
                "SELECT invalidation_reason FROM pg_replication_slots WHERE slot_name = 'doomed'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(reasons, [truth]);
        assert!(
            m.get(
                "pg_replication_slot_inactive_since_timestamp_seconds",
                &doomed
            )
            .is_some()
        );
    } else {
        assert!(reasons.is_empty(), "{reasons:?}");
        assert!(
            m.find("pg_replication_slot_inactive_since_timestamp_seconds", &[])
                .next()
                .is_none()
        );
    }
    // As the server says: 16 reports every invalidation of a logical slot
    // as conflicting, lost WAL included; 17 only conflicts with recovery.
    if major >= 16 {
        let conflicting: bool = admin
            .query_one(
                "SELECT conflicting FROM pg_replication_slots WHERE slot_name = 'kept'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(conflicting, major == 16, "the server's own conflicting");
        let want = if conflicting { 1.0 } else { 0.0 };
        agent
            .wait_for(WAIT, "kept's conflicting", |m| {
                (m.get("pg_replication_slot_conflicting", &kept) == Some(want)).then_some(())
            })
            .await;
    }
    assert!(
        m.find("pg_replication_slot_conflicting", &doomed)
            .next()
            .is_none()
    );
}
