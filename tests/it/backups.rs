//! pgBackRest against a real repository (PostgreSQL 15, which Debian's
//! pgBackRest supports; on other versions each test says so and returns):
//! `pgbackrest verify` run by the backup collector, clean and then with a
//! backup file deleted; `pgvigil restore-test` and the daemon's scheduled
//! restore test, against the last row written on the source, a scratch
//! directory that is not empty or too small, a test killed mid-way.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::pg::major_version;
use crate::harness::pgbackrest::Repo;
use crate::harness::unix_now;
use crate::harness::{Fixture, PgOptions, RunningAgent};

const WAIT: Duration = Duration::from_secs(60);

/// A cluster archiving into a fresh pgBackRest repository with its stanza
/// created, or None (said) where pgBackRest does not support the server.
async fn archived_cluster(what: &str) -> Option<(Repo, Fixture)> {
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
        Ok(()) => Some((repo, fx)),
        Err(e) if e.contains("VersionNotSupportedError") => {
            eprintln!(
                "pgBackRest does not support PostgreSQL {}: nothing to {what}",
                major_version()
            );
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbackrest_verify_passes_then_names_a_deleted_backup_file() {
    let Some((repo, fx)) = archived_cluster("verify").await else {
        return;
    };
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
    let failed_at = m
        .get("pg_backup_verify_timestamp_seconds", &stanza)
        .unwrap();
    agent.terminate();

    // A restarted agent publishes the last result from its state file at
    // once, with the reason in the API, and does not verify again before
    // the period has passed since that verify started.
    let hourly = backup.replace("verify = \"2s\"", "verify = \"1h\"");
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config_with(&hourly, "")).await;
    let m = agent
        .wait_for(WAIT, "the kept verify result", |m| {
            m.get("pg_backup_verify_success", &stanza)
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(m.get("pg_backup_verify_success", &stanza), Some(0.0));
    assert_eq!(m.get("pg_backup_verify_errors", &stanza), Some(1.0));
    // The one seen failing, or a later one that finished before the stop.
    let kept_at = m
        .get("pg_backup_verify_timestamp_seconds", &stanza)
        .unwrap();
    assert!(kept_at >= failed_at, "{kept_at} < {failed_at}");
    let api = consistency(&agent).await;
    assert_eq!(api["backup"]["verify"]["reason"], reason.as_str(), "{api}");
    assert_eq!(api["backup"]["verify"]["errors"], 1, "{api}");
    let runs = collector_runs_after(&agent, 3).await;
    assert_eq!(
        runs.get("pg_backup_verify_timestamp_seconds", &stanza),
        Some(kept_at)
    );
    assert!(
        !agent.log().contains("pgbackrest verify started"),
        "a verify started after the restart: {}",
        agent.log()
    );
    println!(
        "after a restart: the failed verify of {kept_at:.0} kept, no verify started in 3 runs"
    );
    agent.terminate();
}

/// `/api/v1/consistency`'s entry of target main.
async fn consistency(agent: &RunningAgent) -> serde_json::Value {
    let response = agent.get("/api/v1/consistency").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let doc: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    doc["targets"][0].clone()
}

/// The metrics once the backup collector has run `n` more times (it runs
/// every second in these tests).
async fn collector_runs_after(agent: &RunningAgent, n: u32) -> crate::harness::Metrics {
    let labels = [("target", "main"), ("collector", "backup")];
    let last = |m: &crate::harness::Metrics| {
        m.get("pgvigil_collector_last_success_timestamp_seconds", &labels)
    };
    let first = agent
        .wait_for(WAIT, "a backup collector run", |m| last(m))
        .await;
    agent
        .wait_for(WAIT, "more backup collector runs", |m| {
            last(m)
                .filter(|t| *t >= first + f64::from(n) - 0.5)
                .map(|_| m.clone())
        })
        .await
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
    let Some((repo, fx)) = archived_cluster("restore").await else {
        return;
    };
    let admin = fx.pg.connect().await;
    // The application's data in a database of its own, as usual: the
    // smoke query must run there and the amcheck sample cover it.
    admin.batch_execute("CREATE DATABASE shop").await.unwrap();
    let shop = fx.pg.connect_to("shop").await;
    shop.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, at timestamptz DEFAULT now());
         INSERT INTO orders (id) SELECT generate_series(1, 1000);",
    )
    .await
    .unwrap();
    let databases: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datallowconn AND NOT datistemplate",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    repo.run(&["--type=full", "backup"]);
    // Rows after the backup, in archived WAL only: recovery must replay them.
    shop.batch_execute("INSERT INTO orders (id) SELECT generate_series(1001, 1500)")
        .await
        .unwrap();
    let last_row: f64 = shop
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
        "[target.backup]\npgbackrest_stanza = \"main\"\npgbackrest_config = \"{}\"\nrestore_dir = \"{}\"\nrestore_smoke_query = \"SELECT count(*) FROM orders\"\nrestore_smoke_database = \"shop\"",
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
    // Every database of the source sampled (shop's primary key among
    // them); the smoke query found `orders`, which only shop has.
    assert!(
        stdout.contains(&format!("indexes in {databases} databases")),
        "{databases} databases: {stdout}"
    );
    assert_eq!(
        std::fs::read_dir(&restore_dir).unwrap().count(),
        0,
        "scratch emptied"
    );
    // The source was not touched: still a primary with its rows.
    let n: i64 = shop
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
    // The copy runs for a second or two; a test that finished before it
    // was seen running is started again.
    let pid_file = restore_dir.join("data/postmaster.pid");
    let mut attempts = 0;
    loop {
        attempts += 1;
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
        let seen = loop {
            if pid_file.exists() {
                break true;
            }
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if seen {
            child.kill().unwrap();
            let _ = child.wait();
            break;
        }
        assert!(attempts < 5, "the restored copy was never seen running");
    }
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
    let succeeded_at = m
        .get(
            "pg_backup_restore_test_last_success_timestamp_seconds",
            &stanza,
        )
        .unwrap();
    agent.terminate();

    // Restarted, the daemon publishes that test from its state file and
    // does not restore again within the hour.
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config_with(&daemon, "")).await;
    let m = collector_runs_after(&agent, 3).await;
    assert_eq!(m.get("pg_backup_restore_test_success", &stanza), Some(1.0));
    assert_eq!(
        m.get(
            "pg_backup_restore_test_last_success_timestamp_seconds",
            &stanza
        ),
        Some(succeeded_at)
    );
    assert_eq!(
        m.get("pg_backup_restore_test_duration_seconds", &stanza),
        Some(rto)
    );
    assert!(
        !agent.log().contains("restore test started"),
        "a restore test started after the restart: {}",
        agent.log()
    );
    assert_eq!(std::fs::read_dir(&restore_dir).unwrap().count(), 0);
    let api = consistency(&agent).await;
    assert!(
        api["backup"]["restore_test"]["outcome"]["label"].is_string(),
        "{api}"
    );
    println!("after a restart: the test of {succeeded_at:.0} kept, none started in 3 runs");
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

    // And the daemon's, due 5 s after the last one started: success 0, the
    // reason in its log and the API, the last success still published.
    let soon = daemon.replace("restore_test = \"1h\"", "restore_test = \"5s\"");
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config_with(&soon, "")).await;
    let m = agent
        .wait_for(WAIT, "the daemon's failed restore test", |m| {
            (m.get("pg_backup_restore_test_success", &stanza) == Some(0.0)).then(|| m.clone())
        })
        .await;
    assert!(
        agent.log().contains("unable to open missing file"),
        "{}",
        agent.log()
    );
    assert_eq!(
        m.get(
            "pg_backup_restore_test_last_success_timestamp_seconds",
            &stanza
        ),
        Some(succeeded_at)
    );
    let api = consistency(&agent).await;
    let why = api["backup"]["restore_test"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("unable to open missing file"), "{api}");
    assert!(
        api["backup"]["restore_success"]["outcome"]["label"].is_string(),
        "{api}"
    );
    agent.terminate();
    // A fresh `pgvigil once` reads the same state file.
    let file = fx.pg.scratch().join("once-backup.toml");
    std::fs::write(&file, fx.config_with(&daemon, "")).unwrap();
    let scratch = fx.pg.scratch();
    let out = crate::harness::pgvigil(
        &[
            "once",
            "--format",
            "table",
            "--config",
            file.to_str().unwrap(),
        ],
        &[("STATE_DIRECTORY", scratch.to_str().unwrap())],
    );
    let (stdout, stderr) = crate::harness::outputs(&out);
    assert!(
        stdout.contains("restore test FAILED") && stdout.contains("unable to open missing file"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("last successful restore test ok"),
        "{stdout}"
    );
    println!(
        "{}",
        stdout
            .lines()
            .skip_while(|l| !l.starts_with("backup checks"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
