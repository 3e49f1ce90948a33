//! Disk, tables, WAL archiving and pgBackRest backups against real servers:
//! a real pgBackRest repository in a temp dir with archive_command pointing
//! at it, a full backup, then a broken archive_command.

use std::time::Duration;

use crate::harness::pg::{chown_to_postgres, flush_stats, major_version, open_up};
use crate::harness::pgbackrest::Repo;
use crate::harness::unix_now;
use crate::harness::{Fixture, PgOptions, RunningAgent};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_of_every_database_are_watched_and_the_rest_folded() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE big (id int, pad text) WITH (autovacuum_enabled = off);
             INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g;
             CREATE INDEX big_id ON big (id);
             DO $$ BEGIN FOR t IN 1..150 LOOP EXECUTE format('CREATE TABLE tiny_%s (id int)', t); END LOOP; END $$;",
        )
        .await
        .unwrap();
    for _ in 0..7 {
        admin
            .batch_execute("SELECT count(*) FROM big WHERE pad = 'nope'")
            .await
            .unwrap();
    }
    // After the scans: a scan may prune dead rows (and on 13 that lowers
    // n_dead_tup), and autovacuum is off for the table.
    admin
        .batch_execute("DELETE FROM big WHERE id <= 10000")
        .await
        .unwrap();
    flush_stats(&admin).await;
    admin.batch_execute("CREATE DATABASE second").await.unwrap();
    let second = fx.pg.connect_to("second").await;
    second
        .batch_execute("CREATE TABLE elsewhere (id int); INSERT INTO elsewhere VALUES (1)")
        .await
        .unwrap();
    second
        .batch_execute("SELECT * FROM elsewhere")
        .await
        .unwrap();
    flush_stats(&second).await;
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("tables = \"1s\"")).await;
    let big = [
        ("datname", "postgres"),
        ("schemaname", "public"),
        ("relname", "big"),
    ];
    let m = agent
        .wait_for(WAIT, "the scans of big", |m| {
            m.get("pg_table_seq_scan_total", &big)
                .filter(|n| *n >= 7.0)
                .map(|_| m.clone())
        })
        .await;
    assert!(m.get("pg_table_size_bytes", &big).unwrap() > 10e6);
    assert!(m.get("pg_table_seq_tup_read_total", &big).unwrap() >= 7.0 * 40000.0);
    assert!(
        m.get("pg_table_dead_tuples", &big).unwrap() >= 9000.0,
        "the 10,000 deleted rows"
    );
    assert!(
        m.get(
            "pg_index_size_bytes",
            &[("relname", "big"), ("indexrelname", "big_id")]
        )
        .unwrap()
            > 100e3
    );
    // The other database is visited on a connection of its own.
    agent
        .wait_for(WAIT, "the scan of a table in the other database", |m| {
            m.get(
                "pg_table_seq_scan_total",
                &[("datname", "second"), ("relname", "elsewhere")],
            )
            .filter(|n| *n >= 1.0)
        })
        .await;
    // 152 tables: the largest 40 have series (twice as many while the
    // leaders change), the rest one "other".
    let tables = m.find("pg_table_size_bytes", &[]).count();
    assert!(tables <= 2 * 40 + 1, "{tables} table series");
    assert!(
        m.get("pg_table_size_bytes", &[("relname", "other")])
            .is_some()
    );
    assert_eq!(m.get("pg_tables_watched", &[]), Some(152.0));
    crate::harness::promtool_check(&agent.get("/metrics").await.body);

    // Sizes are measured every fifth run; a table created in between is
    // measured at once (src/collect/tables/sizes/tests.rs tests the schedule).
    admin
        .batch_execute(
            "CREATE TABLE late (id int, pad text);
             INSERT INTO late SELECT g, repeat('y', 200) FROM generate_series(1, 20000) g;
             CREATE INDEX late_id ON late (id);
             INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
             SELECT count(*) FROM big WHERE pad = 'nope';",
        )
        .await
        .unwrap();
    flush_stats(&admin).await;
    let late = [("datname", "postgres"), ("relname", "late")];
    let m = agent
        .wait_for(WAIT, "the late table and big's 8th scan", |m| {
            let scanned = m.get("pg_table_seq_scan_total", &big).filter(|n| *n >= 8.0);
            m.get("pg_table_size_bytes", &late)
                .and(scanned)
                .map(|_| m.clone())
        })
        .await;
    assert!(m.get("pg_table_size_bytes", &late).unwrap() > 4e6);
    assert!(
        m.get(
            "pg_index_size_bytes",
            &[("relname", "late"), ("indexrelname", "late_id")]
        )
        .unwrap()
            > 100e3
    );
    assert_eq!(m.get("pg_tables_watched", &[]), Some(153.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filesystems_of_data_and_tablespaces_are_measured() {
    let fx = Fixture::start().await;
    let space = tempfile::Builder::new()
        .prefix("pgvigil-ts-")
        .tempdir()
        .unwrap();
    open_up(space.path());
    chown_to_postgres(space.path());
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(&format!(
            "CREATE TABLESPACE archive_space LOCATION '{}'",
            space.path().display()
        ))
        .await
        .unwrap();
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let m = agent
        .wait_for(WAIT, "filesystem metrics", |m| {
            m.get("pg_filesystem_size_bytes", &[("purpose", "data")])
                .map(|_| m.clone())
        })
        .await;
    let size = m
        .get("pg_filesystem_size_bytes", &[("purpose", "data")])
        .unwrap();
    let avail = m
        .get("pg_filesystem_avail_bytes", &[("purpose", "data")])
        .unwrap();
    assert!(size > 0.0 && avail > 0.0 && avail <= size, "{size} {avail}");
    assert!(
        m.get("pg_filesystem_size_bytes", &[("purpose", "wal")])
            .is_some()
    );
    assert!(
        m.get("pg_filesystem_size_bytes", &[("purpose", "archive_space")])
            .is_some()
    );
    let mount = &m
        .find("pg_filesystem_size_bytes", &[("purpose", "data")])
        .next()
        .unwrap()
        .labels["mountpoint"];
    assert!(fx.pg.data_dir().starts_with(mount), "{mount}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_archiving_and_the_recovery_point_at_risk() {
    let repo = Repo::new();
    let fx = Fixture::start_with(PgOptions {
        conf: vec![
            "archive_mode = on".into(),
            format!("archive_command = '{}'", repo.archive_command()),
            "archive_timeout = 0".into(),
        ],
    })
    .await;
    repo.write_config(&fx.pg.data_dir(), &fx.pg.socket_dir(), fx.pg.port);
    // Debian 12's pgBackRest (2.45) knows PostgreSQL up to 15. On newer
    // servers WAL is archived with cp, and the backup collector must say
    // that the stanza has no backup.
    let supported = match repo.try_run(&["stanza-create"]) {
        Ok(()) => true,
        Err(e) if e.contains("VersionNotSupportedError") => {
            eprintln!(
                "pgBackRest does not support PostgreSQL {}: archiving with cp",
                major_version()
            );
            repo.use_copy();
            // Without a backup's WAL switch, complete a segment by hand.
            fx.pg
                .connect()
                .await
                .batch_execute("CREATE TABLE warm (n int); INSERT INTO warm SELECT generate_series(1, 1000); SELECT pg_switch_wal()")
                .await
                .unwrap();
            false
        }
        Err(e) => panic!("{e}"),
    };
    let started = unix_now();
    if supported {
        repo.run(&["--type=full", "backup"]);
    }

    let backup = format!(
        "[target.backup]\npgbackrest_stanza = \"main\"\npgbackrest_config = \"{}\"\ninterval = \"1s\"",
        repo.config().display()
    );
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config_with(&backup, "")).await;
    if supported {
        full_backup_is_reported(&agent, started).await;
    } else {
        let m = agent
            .wait_for(WAIT, "the backup collector's verdict", |m| {
                m.get("pg_backup_info_success", &[("stanza", "main")])
                    .map(|_| m.clone())
            })
            .await;
        assert_eq!(
            m.get("pg_backup_info_success", &[("stanza", "main")]),
            Some(0.0)
        );
        assert_eq!(
            m.find("pg_backup_last_completed_timestamp_seconds", &[])
                .count(),
            0
        );
    }
    archiving_failures_raise_the_recovery_point_at_risk(&agent, &fx, started).await;
}

async fn full_backup_is_reported(agent: &RunningAgent, started: f64) {
    let full = [("type", "full"), ("stanza", "main")];
    let m = agent
        .wait_for(WAIT, "the full backup", |m| {
            m.get("pg_backup_last_completed_timestamp_seconds", &full)
                .map(|_| m.clone())
        })
        .await;
    let completed = m
        .get("pg_backup_last_completed_timestamp_seconds", &full)
        .unwrap();
    assert!(
        completed >= started - 1.0 && completed <= unix_now() + 1.0,
        "{completed} vs {started}"
    );
    assert!(m.get("pg_backup_last_duration_seconds", &full).unwrap() >= 0.0);
    assert!(m.get("pg_backup_last_size_bytes", &full).unwrap() > 10e6);
    assert_eq!(
        m.get("pg_backup_info_success", &[("stanza", "main")]),
        Some(1.0)
    );
    assert!(
        m.get(
            "pg_backup_max_age_seconds",
            &[("type", "full"), ("stanza", "main")]
        )
        .unwrap()
            > 86400.0
    );
}

async fn archiving_failures_raise_the_recovery_point_at_risk(
    agent: &RunningAgent,
    fx: &Fixture,
    started: f64,
) {
    let m = agent
        .wait_for(WAIT, "archived WAL", |m| {
            m.get("pg_archiver_archived_total", &[])
                .filter(|n| *n >= 1.0)
                .map(|_| m.clone())
        })
        .await;
    let archived = m.get("pg_archiver_archived_total", &[]).unwrap();
    assert_eq!(m.get("pg_archiver_failed_total", &[]), Some(0.0));

    // Break archiving and keep writing: failures, a backlog and a growing RPO.
    let admin = fx.pg.connect().await;
    admin
        .batch_execute("ALTER SYSTEM SET archive_command = 'false'")
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE TABLE churn (n int)")
        .await
        .unwrap();
    for _ in 0..3 {
        admin
            .batch_execute(
                "INSERT INTO churn SELECT generate_series(1, 10000); SELECT pg_switch_wal()",
            )
            .await
            .unwrap();
    }
    let m = agent
        .wait_for(WAIT, "failures and pending segments", |m| {
            let failed = m.get("pg_archiver_failed_total", &[])?;
            let pending = m.get("pg_archiver_pending_segments", &[])?;
            (failed >= 1.0 && pending >= 2.0).then(|| m.clone())
        })
        .await;
    assert!(m.get("pg_archiver_archived_total", &[]).unwrap() >= archived);
    let rpo = m.get("pg_archiver_rpo_seconds", &[]).unwrap();
    assert!(rpo > 0.0, "{rpo}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = agent
        .metrics()
        .await
        .get("pg_archiver_rpo_seconds", &[])
        .unwrap();
    assert!(
        later >= rpo + 2.0,
        "RPO should keep rising: {rpo} then {later}"
    );
    assert!(
        agent
            .metrics()
            .await
            .get("pg_archiver_last_failed_timestamp_seconds", &[])
            .unwrap()
            > started
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pgbackrest_fails_only_the_backup_collector() {
    let fx = Fixture::start().await;
    let backup = "[target.backup]\npgbackrest_stanza = \"main\"\npgbackrest_command = \"/nonexistent/pgbackrest\"\ninterval = \"1s\"";
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config_with(backup, "")).await;
    let m = agent
        .wait_for(WAIT, "the backup collector to fail, the server up", |m| {
            let failed =
                m.get("pgvigil_collector_success", &[("collector", "backup")]) == Some(0.0);
            // The server collector too: pg_up is known before its first run ends.
            let server = m.get("pgvigil_collector_success", &[("collector", "server")]);
            (failed && m.get("pg_up", &[]).is_some() && server.is_some()).then(|| m.clone())
        })
        .await;
    assert_eq!(m.get("pg_up", &[]), Some(1.0));
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "server")]),
        Some(1.0)
    );
    assert!(
        agent
            .log()
            .contains("could not run /nonexistent/pgbackrest"),
        "{}",
        agent.log()
    );
}
