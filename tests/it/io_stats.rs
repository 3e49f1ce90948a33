//! I/O, WAL and session statistics against what the test did: temporary
//! files from a sort past work_mem, sessions opened and one terminated,
//! WAL records from rows inserted, a checkpoint's writes, I/O by process
//! type (16+) and the SLRU caches; each family present exactly on the
//! versions that have its data. Ground truth: the server's own views,
//! read after the work is done.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::pg::{flush_stats, major_version};
use crate::harness::{Fixture, Metrics, PgOptions, RunningAgent, outputs, pgvigil};

const WAIT: Duration = Duration::from_secs(60);

async fn scalar(client: &tokio_postgres::Client, sql: &str) -> f64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

const DB: [(&str, &str); 1] = [("datname", "postgres")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_wal_and_session_statistics_count_what_the_test_did() {
    let major = major_version();
    let mut conf = vec!["track_io_timing = on".to_string()];
    if major >= 14 {
        conf.push("track_wal_io_timing = on".into());
    }
    let fx = Fixture::start_with(PgOptions { conf }).await;
    let admin = fx.pg.connect().await;
    // Sessions: three that end normally, one terminated.
    for _ in 0..3 {
        let c = fx.pg.connect().await;
        c.batch_execute("SELECT 1").await.unwrap();
    }
    let victim = fx.pg.connect_as("io-victim", "postgres").await;
    victim.batch_execute("SELECT 1").await.unwrap();
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'io-victim'",
        )
        .await
        .unwrap();
    // A sort past work_mem writes a temporary file; rows make WAL; a
    // checkpoint writes them out.
    admin
        .batch_execute(
            "SET work_mem = '64kB';
             SELECT count(*) FROM (SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC) s;
             RESET work_mem;
             CREATE TABLE io_t (n int, pad text);
             INSERT INTO io_t SELECT g, repeat('x', 100) FROM generate_series(1, 10000) g;
             CHECKPOINT;",
        )
        .await
        .unwrap();
    flush_stats(&admin).await;
    let temp_files = scalar(
        &admin,
        "SELECT temp_files::float8 FROM pg_stat_database WHERE datname = 'postgres'",
    )
    .await;
    assert!(temp_files >= 1.0, "{temp_files}");

    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let m = agent
        .wait_for(
            WAIT,
            "the databases, wal, checkpoints and io collectors",
            |m| {
                (m.get("pg_database_temp_files_total", &DB) == Some(temp_files)
                    && m.get("pg_buffers_allocated_total", &[]).is_some()
                    && m.find("pg_slru_blocks_hit_total", &[]).next().is_some()
                    && (major < 14 || m.get("pg_wal_records_total", &[]).is_some())
                    && (major < 16 || m.find("pg_io_operations_total", &[]).next().is_some()))
                .then(|| m.clone())
            },
        )
        .await;
    // track_io_timing is on: the times are there (and may be 0 on a fast disk).
    assert!(
        m.get("pg_database_blk_read_time_seconds_total", &DB)
            .is_some()
    );
    assert!(
        m.get("pg_database_blk_write_time_seconds_total", &DB)
            .is_some()
    );
    assert!(m.get("pg_bgwriter_maxwritten_clean_total", &[]).is_some());
    assert!(m.get("pg_buffers_allocated_total", &[]).unwrap() > 0.0);

    // Sessions, 14+.
    if major >= 14 {
        let killed = scalar(
            &admin,
            "SELECT sessions_killed::float8 FROM pg_stat_database WHERE datname = 'postgres'",
        )
        .await;
        assert!(killed >= 1.0, "{killed}");
        let m = agent
            .wait_for(WAIT, "the terminated session", |m| {
                (m.get("pg_database_sessions_killed_total", &DB) == Some(killed)).then(|| m.clone())
            })
            .await;
        assert!(m.get("pg_database_sessions_total", &DB).unwrap() >= 5.0);
        let session = m
            .get("pg_database_session_time_seconds_total", &DB)
            .unwrap();
        let active = m.get("pg_database_active_time_seconds_total", &DB).unwrap();
        assert!(
            session > 0.0 && active > 0.0 && active <= session,
            "{active} of {session}"
        );
        assert!(
            m.get("pg_database_idle_in_transaction_time_seconds_total", &DB)
                .is_some()
        );
        assert!(m.get("pg_database_sessions_fatal_total", &DB).is_some());
        assert!(m.get("pg_database_sessions_abandoned_total", &DB).is_some());
        // WAL: at least a record per row inserted, and the times (track_wal_io_timing).
        assert!(m.get("pg_wal_records_total", &[]).unwrap() >= 10000.0);
        assert!(m.get("pg_wal_fpi_total", &[]).is_some());
        assert!(m.get("pg_wal_generated_bytes_total", &[]).unwrap() >= 1_000_000.0);
        assert!(m.get("pg_wal_writes_total", &[]).unwrap() > 0.0);
        assert!(m.get("pg_wal_syncs_total", &[]).is_some());
        assert!(m.get("pg_wal_write_time_seconds_total", &[]).is_some());
        assert!(m.get("pg_wal_buffers_full_total", &[]).is_some());
    } else {
        for family in [
            "pg_database_sessions_total",
            "pg_database_session_time_seconds_total",
            "pg_wal_records_total",
            "pg_wal_writes_total",
        ] {
            assert!(m.find(family, &[]).next().is_none(), "{family} on 13");
        }
    }

    // I/O by process type and object, 16+: contexts summed, idle pairs left out.
    if major >= 16 {
        let checkpointer = [
            ("backend_type", "checkpointer"),
            ("object", "relation"),
            ("op", "write"),
        ];
        let written = m.get("pg_io_operations_total", &checkpointer).unwrap();
        assert!(written >= 100.0, "the checkpoint wrote {written} buffers");
        let hits = [
            ("backend_type", "client backend"),
            ("object", "relation"),
            ("op", "hit"),
        ];
        assert!(m.get("pg_io_operations_total", &hits).unwrap() > 0.0);
        let series: Vec<_> = m.find("pg_io_operations_total", &[]).collect();
        let mut pairs = BTreeSet::new();
        for s in &series {
            assert!(!s.labels.contains_key("context"), "{s:?}");
            assert_ne!(s.labels["object"], "wal", "WAL is the wal collector's");
            pairs.insert((s.labels["backend_type"].clone(), s.labels["object"].clone()));
        }
        for (backend, object) in &pairs {
            let busy = series.iter().any(|s| {
                &s.labels["backend_type"] == backend
                    && &s.labels["object"] == object
                    && s.value > 0.0
            });
            assert!(busy, "{backend}/{object} did no I/O but is published");
        }
        assert!(series.len() <= 6 * pairs.len());
        assert!(m.get("pg_io_time_seconds_total", &checkpointer).is_some());
        eprintln!(
            "pg_stat_io: {} pairs, {} operation series, {} time series",
            pairs.len(),
            series.len(),
            m.find("pg_io_time_seconds_total", &[]).count()
        );
    } else {
        assert!(m.find("pg_io_operations_total", &[]).next().is_none());
    }

    // SLRU caches under PostgreSQL 17's names on every version.
    let slrus: BTreeSet<String> = m
        .find("pg_slru_blocks_hit_total", &[])
        .map(|s| s.labels["slru"].clone())
        .collect();
    for name in [
        "transaction",
        "subtransaction",
        "multixact_member",
        "multixact_offset",
        "other",
    ] {
        assert!(slrus.contains(name), "{name} in {slrus:?}");
    }
    assert_eq!(
        m.find("pg_slru_blocks_read_total", &[]).count(),
        slrus.len()
    );

    // A fresh `pgvigil once` reads the same counters.
    let dsn = fx.dsn();
    let env = fx.once_env();
    let out = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pgvigil(&["once", "--dsn", &dsn, "--format", "prometheus"], &env)
    })
    .await
    .unwrap();
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    crate::harness::promtool_check(&stdout);
    let once = Metrics::parse(&stdout);
    assert_eq!(
        once.get("pg_database_temp_files_total", &DB),
        Some(temp_files)
    );
    assert_eq!(
        once.find("pg_slru_blocks_hit_total", &[]).count(),
        slrus.len()
    );
}
