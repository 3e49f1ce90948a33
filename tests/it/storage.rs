//! Disk, tables, WAL archiving and pgBackRest backups against real servers:
//! a real pgBackRest repository in a temp dir with archive_command pointing
//! at it, a full backup, then a broken archive_command.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::pg::{chown_to_postgres, flush_stats, is_root, major_version, open_up};
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

/// A pgBackRest configuration with its repository in a temp dir.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("pgvigil-pgbr-")
            .tempdir()
            .unwrap();
        open_up(dir.path());
        for sub in ["repo", "log", "lock"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Repo { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("pgbackrest.conf")
    }

    fn write_config(&self, data: &Path, socket: &Path, port: u16) {
        let d = self.dir.path();
        let text = format!(
            "[global]\nrepo1-path={}\nlog-path={}\nlock-path={}\nstart-fast=y\narchive-async=n\ncompress-type=none\n\n[main]\npg1-path={}\npg1-socket-path={}\npg1-port={port}\n",
            d.join("repo").display(),
            d.join("log").display(),
            d.join("lock").display(),
            data.display(),
            socket.display(),
        );
        std::fs::write(self.config(), text).unwrap();
        chown_to_postgres(d);
    }

    /// `archive_command`: a script that pushes to the repository with
    /// pgBackRest, or copies to a directory when pgBackRest does not
    /// support the server (see [`Repo::use_copy`]).
    fn archive_command(&self) -> String {
        let script = self.dir.path().join("pgbackrest-archive-push.sh");
        self.write_script(&format!(
            "exec pgbackrest --config={} --stanza=main archive-push \"$1\"",
            self.config().display()
        ));
        format!("{} %p", script.display())
    }

    fn write_script(&self, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let script = self.dir.path().join("pgbackrest-archive-push.sh");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Archives with cp instead (before any segment is complete).
    fn use_copy(&self) {
        let wal = self.dir.path().join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        chown_to_postgres(&wal);
        self.write_script(&format!("exec cp \"$1\" {}/", wal.display()));
    }

    /// Runs pgbackrest as postgres.
    fn run(&self, args: &[&str]) {
        if let Err(e) = self.try_run(args) {
            panic!("{e}");
        }
    }

    fn try_run(&self, args: &[&str]) -> Result<(), String> {
        let config = format!("--config={}", self.config().display());
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "pgbackrest"]);
            c
        } else {
            Command::new("pgbackrest")
        };
        let out = cmd
            .arg(&config)
            .arg("--stanza=main")
            .args(args)
            .output()
            .expect("pgbackrest is required");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pgbackrest {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
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
            (failed && m.get("pg_up", &[]).is_some()).then(|| m.clone())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbackrest_verify_passes_then_names_a_deleted_backup_file() {
    let repo = Repo::new();
    let fx = Fixture::start_with(PgOptions {
        conf: vec![
            "archive_mode = on".into(),
            format!("archive_command = '{}'", repo.archive_command()),
        ],
    })
    .await;
    repo.write_config(&fx.pg.data_dir(), &fx.pg.socket_dir(), fx.pg.port);
    match repo.try_run(&["stanza-create"]) {
        Ok(()) => {}
        Err(e) if e.contains("VersionNotSupportedError") => {
            eprintln!(
                "pgBackRest does not support PostgreSQL {}: nothing to verify",
                major_version()
            );
            return;
        }
        Err(e) => panic!("{e}"),
    }
    repo.run(&["--type=full", "backup"]);
    // Ground truth first: pgBackRest itself finds nothing wrong.
    repo.run(&["--output=text", "verify"]);

    let backup = format!(
        "[target.backup]\npgbackrest_stanza = \"main\"\npgbackrest_config = \"{}\"\ninterval = \"1s\"\nverify = \"2s\"",
        repo.config().display()
    );
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config_with(&backup, "")).await;
    let stanza = [("stanza", "main")];
    let m = agent
        .wait_for(WAIT, "a finished verify", |m| {
            m.get("pg_backup_verify_success", &stanza)
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(m.get("pg_backup_verify_success", &stanza), Some(1.0));
    assert_eq!(m.get("pg_backup_verify_errors", &stanza), Some(0.0));
    let seconds = m.get("pg_backup_verify_duration_seconds", &stanza).unwrap();
    assert!(seconds > 0.0 && seconds < 60.0, "{seconds}");
    let finished = m
        .get("pg_backup_verify_timestamp_seconds", &stanza)
        .unwrap();
    assert!((unix_now() - finished).abs() < 30.0, "{finished}");
    println!("verify of a fresh full backup: ok in {seconds:.2}s");

    // One file of the backup deleted from the repository.
    let label = std::fs::read_dir(repo.dir.path().join("repo/backup/main"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.ends_with('F'))
        .unwrap();
    let base = repo
        .dir
        .path()
        .join(format!("repo/backup/main/{label}/pg_data/base"));
    let db = std::fs::read_dir(&base)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let victim = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .unwrap();
    std::fs::remove_file(&victim).unwrap();
    let m = agent
        .wait_for(WAIT, "verify to find the missing file", |m| {
            (m.get("pg_backup_verify_success", &stanza) == Some(0.0)).then(|| m.clone())
        })
        .await;
    assert_eq!(m.get("pg_backup_verify_errors", &stanza), Some(1.0));
    let log = agent.log();
    let reason = format!("backup {label}: missing 1");
    assert!(log.contains(&reason), "{reason} in the log: {log}");
    println!("deleted {}: {reason}", victim.display());
    agent.terminate();
}

/// `pgvigil restore-test --config FILE --target main`.
fn restore_test(config: &Path) -> (bool, String, String) {
    let t = std::time::Instant::now();
    let out = crate::harness::pgvigil(
        &[
            "restore-test",
            "--config",
            config.to_str().unwrap(),
            "--target",
            "main",
        ],
        &[],
    );
    let (stdout, stderr) = crate::harness::outputs(&out);
    println!("restore-test took {:?}", t.elapsed());
    (out.status.success(), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_test_restores_recovers_and_checks_the_newest_backup() {
    let repo = Repo::new();
    let fx = Fixture::start_with(PgOptions {
        conf: vec![
            "archive_mode = on".into(),
            format!("archive_command = '{}'", repo.archive_command()),
        ],
    })
    .await;
    repo.write_config(&fx.pg.data_dir(), &fx.pg.socket_dir(), fx.pg.port);
    match repo.try_run(&["stanza-create"]) {
        Ok(()) => {}
        Err(e) if e.contains("VersionNotSupportedError") => {
            eprintln!(
                "pgBackRest does not support PostgreSQL {}: nothing to restore",
                major_version()
            );
            return;
        }
        Err(e) => panic!("{e}"),
    }
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, at timestamptz DEFAULT now());
             INSERT INTO orders (id) SELECT generate_series(1, 1000);",
        )
        .await
        .unwrap();
    repo.run(&["--type=full", "backup"]);
    // Rows after the backup, in archived WAL only: recovery must replay them.
    admin
        .batch_execute("INSERT INTO orders (id) SELECT generate_series(1001, 1500)")
        .await
        .unwrap();
    let last_row: f64 = admin
        .query_one(
            "SELECT date_part('epoch', max(at))::float8 FROM orders",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    admin.batch_execute("SELECT pg_switch_wal()").await.unwrap();
    // Wait until that segment is archived.
    crate::harness::pg::eventually(WAIT, "the last segment archived", || async {
        let row = admin
            .query_one(
                "SELECT last_archived_wal IS NOT NULL AND last_archived_wal >= pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, bool>(0).then_some(())
    })
    .await;

    let restore_dir = fx.pg.scratch().join("restore");
    let config = fx.pg.scratch().join("restore.toml");
    let backup = format!(
        "[target.backup]\npgbackrest_stanza = \"main\"\npgbackrest_config = \"{}\"\nrestore_dir = \"{}\"\nrestore_smoke_query = \"SELECT count(*) FROM orders\"",
        repo.config().display(),
        restore_dir.display()
    );
    std::fs::write(&config, fx.config_with(&backup, "")).unwrap();
    let began = unix_now();
    let (ok, stdout, stderr) = restore_test(&config);
    let took = unix_now() - began;
    assert!(ok, "{stdout}{stderr}");
    println!("{}", stdout.trim());
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let seconds: f64 = stdout
        .split("recovered in ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(seconds > 0.0 && seconds <= took, "{seconds} of {took}");
    let behind: f64 = stdout
        .split("recovery point ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    // The last row written on the source was replayed: the recovery point
    // is no older than it (to within the display's 0.1 s).
    assert!(
        behind <= began - last_row + 0.1,
        "{behind} vs {}",
        began - last_row
    );
    assert!(stdout.contains("amcheck clean on"), "{stdout}");
    assert_eq!(
        std::fs::read_dir(&restore_dir).unwrap().count(),
        0,
        "scratch emptied"
    );
    // The source was not touched: still a primary with its rows.
    let n: i64 = admin
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1500);

    // A directory holding something else is refused and left alone.
    std::fs::write(restore_dir.join("precious"), "x").unwrap();
    let (ok, _, stderr) = restore_test(&config);
    assert!(!ok);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(restore_dir.join("precious").exists());
    std::fs::remove_file(restore_dir.join("precious")).unwrap();

    // A test killed mid-way (SIGKILL once the restored copy runs) leaves
    // the instance running and its files behind; the next test stops it,
    // removes them, and succeeds.
    let mut child = Command::new(crate::harness::agent::binary())
        .args([
            "restore-test",
            "--config",
            config.to_str().unwrap(),
            "--target",
            "main",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = restore_dir.join("data/postmaster.pid");
    crate::harness::pg::eventually(WAIT, "the restored copy running", || async {
        pid_file.exists().then_some(())
    })
    .await;
    child.kill().unwrap();
    let _ = child.wait();
    assert!(restore_dir.join(".pgvigil-restore-test").exists());
    let (ok, stdout, stderr) = restore_test(&config);
    assert!(ok, "{stdout}{stderr}");
    assert!(stderr.contains("interrupted restore test"), "{stderr}");
    assert_eq!(std::fs::read_dir(&restore_dir).unwrap().count(), 0);
    // No process of the killed test's instance left (from /proc).
    let data_dir = format!("{}/data", restore_dir.display());
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&data_dir))
        .collect();
    assert!(left.is_empty(), "no instance left: {left:?}");

    // A scratch filesystem too small for the backup is refused (a 1 MB
    // tmpfs, where the test may mount one).
    let small = fx.pg.scratch().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1M", "tmpfs"])
        .arg(&small)
        .output()
        .is_ok_and(|o| o.status.success());
    if mounted {
        let small_config = fx.pg.scratch().join("small.toml");
        let text = fx.config_with(
            &backup.replace(
                &format!("restore_dir = \"{}\"", restore_dir.display()),
                &format!("restore_dir = \"{}\"", small.display()),
            ),
            "",
        );
        std::fs::write(&small_config, text).unwrap();
        let (ok, _, stderr) = restore_test(&small_config);
        let _ = Command::new("umount").arg(&small).status();
        assert!(!ok);
        assert!(
            stderr.contains("MB free") && stderr.contains("refusing"),
            "{stderr}"
        );
        println!("{}", stderr.trim());
    } else {
        println!("no tmpfs could be mounted here: the space check is not exercised");
    }

    // The daemon's scheduled test: the same, published.
    let daemon = format!("{backup}\ninterval = \"1s\"\nverify = \"off\"\nrestore_test = \"1h\"");
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config_with(&daemon, "")).await;
    let stanza = [("stanza", "main")];
    let m = agent
        .wait_for(WAIT, "the daemon's restore test", |m| {
            m.get("pg_backup_restore_test_success", &stanza)
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(
        m.get("pg_backup_restore_test_success", &stanza),
        Some(1.0),
        "{}",
        agent.log()
    );
    let rto = m
        .get("pg_backup_restore_test_duration_seconds", &stanza)
        .unwrap();
    let rpo = m
        .get("pg_backup_restore_test_recovery_point_age_seconds", &stanza)
        .unwrap();
    assert!(rto > 0.0 && rto < 60.0, "{rto}");
    assert!(rpo >= 0.0 && rpo <= unix_now() - last_row, "{rpo}");
    assert_eq!(
        m.get("pg_backup_restore_test_rpo_objective_seconds", &stanza),
        Some(900.0)
    );
    assert_eq!(
        m.get("pg_backup_restore_test_period_seconds", &stanza),
        Some(3600.0)
    );
    assert!(
        m.get(
            "pg_backup_restore_test_last_success_timestamp_seconds",
            &stanza
        )
        .is_some()
    );
    assert_eq!(std::fs::read_dir(&restore_dir).unwrap().count(), 0);
    println!("daemon: recovered in {rto:.1}s, recovery point {rpo:.1}s behind");
    agent.terminate();

    // A backup file deleted from the repository fails the restore, named.
    let label = std::fs::read_dir(repo.dir.path().join("repo/backup/main"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.ends_with('F'))
        .unwrap();
    let base = repo
        .dir
        .path()
        .join(format!("repo/backup/main/{label}/pg_data/base"));
    let db = std::fs::read_dir(&base)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let victim = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .unwrap();
    std::fs::remove_file(&victim).unwrap();
    // pgBackRest retries a failed file twice, the second after 15 s: not
    // in a test.
    let conf = std::fs::read_to_string(repo.config()).unwrap();
    std::fs::write(
        repo.config(),
        conf.replace("[global]\n", "[global]\njob-retry=0\n"),
    )
    .unwrap();
    let (ok, stdout, stderr) = restore_test(&config);
    assert!(!ok, "{stdout}");
    println!("after deleting {}: {}", victim.display(), stderr.trim());
    assert!(stderr.contains("pgbackrest restore"), "{stderr}");
    assert_eq!(std::fs::read_dir(&restore_dir).unwrap().count(), 0);

    // And the daemon's: success 0, the reason in its log.
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config_with(&daemon, "")).await;
    agent
        .wait_for(WAIT, "the daemon's failed restore test", |m| {
            (m.get("pg_backup_restore_test_success", &stanza) == Some(0.0)).then_some(())
        })
        .await;
    assert!(
        agent.log().contains("unable to open missing file"),
        "{}",
        agent.log()
    );
    agent.terminate();
}
