//! The restore test (`pgvigil restore-test`, and the backup collector on
//! `[target.backup] restore_test`): proves the newest pgBackRest backup
//! restores. It restores into `[target.backup]
//! restore_dir`, starts the copy as a private instance (no TCP, its own
//! port and socket directory, archiving off, no replication), lets it
//! recover to the end of the archived WAL, runs amcheck on a sample of
//! indexes and the optional read-only smoke query, then stops and deletes
//! it. It reads the repository and never touches the source server.
//!
//! Refused: a `restore_dir` holding anything but an interrupted test's
//! leftovers (marked by [`MARKER`], removed on the next start), or without
//! space for the backup's size plus a tenth. PostgreSQL refuses to run as
//! root: run as root, pgBackRest and the instance run as `postgres`.
//!
//! The recovery time (RTO) is from the start of the restore to the end of
//! recovery; the recovery point age (RPO) is the time from the start of
//! the test back to the last transaction replayed (on an idle source it
//! overstates what would be lost).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

use tokio::task::JoinHandle;

pub use super::report::{Outcome, Tested};
use crate::config::Backup;
use crate::desc;
use crate::metric::{Desc, Family};

/// `pg_backup_restore_test_success`.
pub static SUCCESS: Desc = desc!(Gauge "pg_backup_restore_test_success", ["stanza"],
    "1 if the daemon's last restore test restored the newest backup, started it, recovered to the end of the archive and passed amcheck and the smoke query, else 0.",
    only_when = "[target.backup] restore_test is set and a test has finished");
/// `pg_backup_restore_test_timestamp_seconds`.
pub static TIMESTAMP: Desc = desc!(Gauge "pg_backup_restore_test_timestamp", unit = Seconds, ["stanza"],
    "When the daemon's last restore test finished, as a Unix time.",
    only_when = "[target.backup] restore_test is set and a test has finished");
/// `pg_backup_restore_test_last_success_timestamp_seconds`.
pub static LAST_SUCCESS: Desc = desc!(Gauge "pg_backup_restore_test_last_success_timestamp", unit = Seconds, ["stanza"],
    "When a restore test of the daemon last succeeded, as a Unix time (kept across restarts in the state file).",
    only_when = "a restore test of the daemon has succeeded");
/// `pg_backup_restore_test_duration_seconds`.
pub static DURATION: Desc = desc!(Gauge "pg_backup_restore_test_duration", unit = Seconds, ["stanza"],
    "The last successful restore test's recovery time: from the start of the restore to the end of recovery, the RTO a restore would take today.",
    only_when = "a restore test of the daemon has succeeded");
/// `pg_backup_restore_test_recovery_point_age_seconds`.
pub static RECOVERY_POINT_AGE: Desc = desc!(Gauge "pg_backup_restore_test_recovery_point_age", unit = Seconds, ["stanza"],
    "How far behind its source the last successfully restored copy was: the test's start minus the last transaction it replayed (the achieved RPO; on an idle source it overstates).",
    only_when = "a restore test of the daemon has succeeded and replayed a transaction");
/// `pg_backup_restore_test_period_seconds`.
pub static PERIOD: Desc = desc!(Gauge "pg_backup_restore_test_period", unit = Seconds, ["stanza"],
    "[target.backup] restore_test: how often the daemon runs a restore test.",
    only_when = "[target.backup] restore_test is set");
/// `pg_backup_restore_test_rto_objective_seconds`.
pub static RTO_OBJECTIVE: Desc = desc!(Gauge "pg_backup_restore_test_rto_objective", unit = Seconds, ["stanza"],
    "[target.backup] restore_rto_objective: the recovery time a restore test may take.",
    only_when = "[target.backup] restore_test is set");
/// `pg_backup_restore_test_rpo_objective_seconds`.
pub static RPO_OBJECTIVE: Desc = desc!(Gauge "pg_backup_restore_test_rpo_objective", unit = Seconds, ["stanza"],
    "[target.backup] restore_rpo_objective: how far behind its source a restored copy may be (15 minutes by default).",
    only_when = "[target.backup] restore_test is set");

/// The daemon's restore tests: one at a time in a task of its own, the
/// first at the backup collector's second run after the agent starts
/// unless the state file holds one that started less than a period ago,
/// then every `restore_test` from the start of the last one.
#[derive(Debug, Default)]
pub struct Scheduled {
    ticks: u64,
    running: Option<(f64, JoinHandle<Result<Outcome, String>>)>,
    /// The last finished test, from the state file until one finishes.
    pub last: Option<Tested>,
    /// The last successful test, likewise.
    pub last_success: Option<Tested>,
}

impl Scheduled {
    /// Takes a finished test's result, starts one when due, and returns
    /// the families.
    pub fn tick(&mut self, b: &Backup) -> Vec<Family> {
        let Some(every) = b.restore_test else {
            return Vec::new();
        };
        if self.running.as_ref().is_some_and(|(_, h)| h.is_finished())
            && let Some((started_at, handle)) = self.running.take()
            && let Some(result) = super::verify::finished(handle)
        {
            let finished_at = crate::snapshot::unix_now();
            let tested = match result {
                Ok(o) => {
                    tracing::info!(stanza = %b.stanza, "{}", o.line(&b.stanza));
                    Tested {
                        started_at,
                        finished_at,
                        outcome: Some(o),
                        reason: None,
                    }
                }
                Err(why) => {
                    tracing::warn!(stanza = %b.stanza, reason = %why, "restore test failed");
                    Tested {
                        started_at,
                        finished_at,
                        outcome: None,
                        reason: Some(why),
                    }
                }
            };
            if tested.success() {
                self.last_success = Some(tested.clone());
            }
            self.last = Some(tested);
        }
        // Not on the collector's first run: a one-shot `pgvigil once` runs
        // it once and must not start a test it would abandon.
        self.ticks += 1;
        let now = crate::snapshot::unix_now();
        if self.ticks >= 2
            && self.running.is_none()
            && self
                .last
                .as_ref()
                .is_none_or(|t| now - t.started_at >= every.as_secs_f64())
        {
            tracing::info!(stanza = %b.stanza, "restore test started");
            let b = b.clone();
            self.running = Some((
                now,
                tokio::spawn(async move { run(&b).await.map_err(|e| format!("{e:#}")) }),
            ));
        }
        let stanza = [b.stanza.as_str()];
        let mut out = Vec::new();
        let mut push = |desc: &'static Desc, value: f64| {
            let mut f = Family::new(desc);
            f.push(&stanza, value);
            out.push(f);
        };
        push(&PERIOD, every.as_secs_f64());
        push(&RTO_OBJECTIVE, b.restore_rto_objective.as_secs_f64());
        push(&RPO_OBJECTIVE, b.restore_rpo_objective.as_secs_f64());
        if let Some(t) = &self.last {
            push(&SUCCESS, f64::from(u8::from(t.success())));
            push(&TIMESTAMP, t.finished_at);
        }
        if let Some(t) = &self.last_success
            && let Some(o) = &t.outcome
        {
            push(&LAST_SUCCESS, t.finished_at);
            push(&DURATION, o.recovery_seconds);
            if let Some(age) = o.recovery_point_age_seconds {
                push(&RECOVERY_POINT_AGE, age);
            }
        }
        out
    }
}

/// The file that marks a directory as a restore test's, so a test
/// interrupted by a crash is cleaned up by the next.
pub const MARKER: &str = ".pgvigil-restore-test";

/// Runs one restore test.
pub async fn run(b: &Backup) -> anyhow::Result<Outcome> {
    let began_unix = crate::snapshot::unix_now();
    let dir = b
        .restore_dir
        .clone()
        .ok_or_else(|| anyhow!("[target.backup] restore_dir is not set: where to restore"))?;
    let as_postgres = unsafe_is_root();
    prepare(&dir, as_postgres)?;
    let info = pgbackrest(b, &["--output=json", "info"], as_postgres)?;
    let info: serde_json::Value =
        serde_json::from_slice(&info.stdout).context("pgbackrest info printed no JSON")?;
    let newest = info
        .pointer("/0/backup")
        .and_then(|v| v.as_array())
        .and_then(|a| a.last())
        .ok_or_else(|| anyhow!("stanza {} has no backup to restore", b.stanza))?;
    let label = newest["label"].as_str().unwrap_or("?").to_string();
    let size = newest
        .pointer("/info/size")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let avail = available_bytes(&dir)?;
    if avail < size * 1.1 {
        bail!(
            "restore_dir {} has {:.0} MB free, the backup needs {:.0} MB and a tenth more: refusing",
            dir.display(),
            avail / 1e6,
            size / 1e6
        );
    }
    std::fs::write(dir.join(MARKER), b"pgvigil restore test\n")?;
    let result = restore_and_check(b, &dir, as_postgres, &label, began_unix).await;
    cleanup(&dir, as_postgres);
    result
}

async fn restore_and_check(
    b: &Backup,
    dir: &Path,
    as_postgres: bool,
    label: &str,
    began_unix: f64,
) -> anyhow::Result<Outcome> {
    let data = dir.join("data");
    let sock = dir.join("sock");
    let conf = dir.join("conf");
    for d in [&data, &sock, &conf] {
        std::fs::create_dir_all(d)?;
        set_mode(d, 0o700)?;
    }
    if as_postgres {
        run_cmd(Command::new("chown").args(["-R", "postgres:"]).arg(dir))?;
    }
    let started = Instant::now();
    let pg1 = format!("--pg1-path={}", data.display());
    pgbackrest(
        b,
        &[
            &pg1,
            "--archive-mode=off",
            "--log-level-console=error",
            "restore",
        ],
        as_postgres,
    )
    .context("pgbackrest restore")?;
    let bindir = bindir(&data)?;
    // The instance's own settings, on its command line so that nothing in
    // the restored postgresql.auto.conf (ALTER SYSTEM) overrides them:
    // no TCP, its own socket and port, no archiving, no replication (the
    // hba file admits no replication connection), and
    // the parameters recovery demands at least the source's values of
    // (from pg_controldata).
    let port = if b.restore_port == 0 {
        free_port()?
    } else {
        b.restore_port
    };
    let mut settings = vec![
        "listen_addresses=".to_string(),
        format!("port={port}"),
        format!("unix_socket_directories={}", sock.display()),
        "archive_mode=off".into(),
        "max_replication_slots=0".into(),
        "wal_level=replica".into(),
        format!("hba_file={}", conf.join("pg_hba.conf").display()),
        format!("ident_file={}", conf.join("pg_ident.conf").display()),
        format!("config_file={}", conf.join("postgresql.conf").display()),
        "logging_collector=off".into(),
    ];
    settings.extend(controldata_minimums(&bindir, &data, as_postgres)?);
    if settings
        .iter()
        .any(|s| s.contains(char::is_whitespace) || s.contains('\'') || s.contains('"'))
    {
        bail!(
            "restore_dir {} must not contain spaces or quotes",
            dir.display()
        );
    }
    std::fs::write(
        conf.join("postgresql.conf"),
        "# pgvigil restore test: settings are on the command line\n",
    )?;
    std::fs::write(conf.join("pg_hba.conf"), "local all all trust\n")?;
    std::fs::write(conf.join("pg_ident.conf"), "")?;
    if as_postgres {
        run_cmd(Command::new("chown").args(["-R", "postgres:"]).arg(&conf))?;
    }
    let log = dir.join("server.log");
    let opts = settings
        .iter()
        .map(|s| format!("-c {s}"))
        .collect::<Vec<_>>()
        .join(" ");
    let timeout = b.restore_timeout.as_secs().max(1).to_string();
    let mut start = pg_ctl(&bindir, as_postgres);
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-o", &opts, "-w", "-t", &timeout, "start"]);
    if let Err(e) = run_cmd(&mut start) {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let last = tail
            .lines()
            .rev()
            .find(|l| l.contains("FATAL") || l.contains("ERROR"))
            .unwrap_or("");
        bail!("the restored copy did not start: {e} {last}");
    }
    let user = if as_postgres {
        "postgres".to_string()
    } else {
        std::env::var("USER").unwrap_or_else(|_| "postgres".into())
    };
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(&sock)
        .port(port)
        .user(&user)
        .dbname("postgres")
        .application_name("pgvigil");
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to the restored copy")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let deadline = started + b.restore_timeout;
    loop {
        let row = client
            .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
            .await?;
        if !row.get::<_, bool>(0) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the restored copy was still recovering after {:?}",
                b.restore_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovery_seconds = started.elapsed().as_secs_f64();
    let replayed: Option<f64> = client
        .query_one("SELECT pg_catalog.date_part('epoch', pg_catalog.pg_last_xact_replay_timestamp())::float8", &[])
        .await?
        .get(0);
    let recovery_point_age_seconds = replayed.map(|t| (began_unix - t).max(0.0));
    let databases: Vec<String> = client
        .query(
            "SELECT datname FROM pg_catalog.pg_database
              WHERE datallowconn AND NOT datistemplate ORDER BY datname",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(client);
    // The sample is spread over every database: the data that matters is
    // rarely in `postgres`.
    let per_database = (SAMPLED_INDEXES / databases.len().max(1) as i64).max(MIN_PER_DATABASE);
    let mut checked = 0;
    for datname in &databases {
        let client = connect(&cfg, datname).await?;
        checked += check_indexes(&client, datname, per_database).await?;
    }
    if let Some(sql) = &b.restore_smoke_query {
        let client = connect(&cfg, &b.restore_smoke_database).await?;
        client.batch_execute("BEGIN READ ONLY").await?;
        let r = client.simple_query(sql).await;
        let _ = client.batch_execute("ROLLBACK").await;
        r.map_err(|e| {
            anyhow!(
                "smoke query on the restored copy (database {}): {}",
                b.restore_smoke_database,
                crate::connection::session::describe(&e)
            )
        })?;
    }
    Ok(Outcome {
        label: label.to_string(),
        recovery_seconds,
        recovery_point_age_seconds,
        indexes_checked: checked,
        databases_checked: databases.len() as i64,
    })
}

/// Valid B-tree indexes checked in a restored copy, at most, spread over
/// its databases.
const SAMPLED_INDEXES: i64 = 50;
/// Indexes checked per database, at least, however many there are.
const MIN_PER_DATABASE: i64 = 5;

/// A session to `datname` of the restored copy.
async fn connect(
    cfg: &tokio_postgres::Config,
    datname: &str,
) -> anyhow::Result<tokio_postgres::Client> {
    let mut cfg = cfg.clone();
    cfg.dbname(datname);
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to database {datname} of the restored copy"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// `bt_index_check` on up to `limit` random valid B-tree indexes of the
/// database `client` is in, installing amcheck there first (the copy is
/// thrown away); how many were checked.
async fn check_indexes(
    client: &tokio_postgres::Client,
    datname: &str,
    limit: i64,
) -> anyhow::Result<i64> {
    let _ = client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        .await;
    let row = client
        .query_one(
            "SELECT count(*) FROM (SELECT bt_index_check(c.oid::pg_catalog.regclass, false)
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
              WHERE c.relam = 403 AND i.indisvalid ORDER BY random() LIMIT $1) s",
            &[&limit],
        )
        .await
        .map_err(|e| {
            anyhow!(
                "amcheck on database {datname} of the restored copy: {}",
                crate::connection::session::describe(&e)
            )
        })?;
    Ok(row.get(0))
}

/// Checks and readies `dir`: created if missing; an interrupted test's
/// leftovers removed; anything else refused.
fn prepare(dir: &Path, as_postgres: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating restore_dir {}", dir.display()))?;
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    if entries.is_empty() {
        return Ok(());
    }
    if dir.join(MARKER).exists() {
        tracing::warn!(dir = %dir.display(), "removing what an interrupted restore test left");
        eprintln!(
            "restore_dir {}: removing an interrupted restore test's leftovers",
            dir.display()
        );
        cleanup(dir, as_postgres);
        return Ok(());
    }
    bail!(
        "restore_dir {} is not empty: refusing to restore into it (empty it, or choose another)",
        dir.display()
    )
}

/// Stops an instance left running in `dir` and removes everything in it.
fn cleanup(dir: &Path, as_postgres: bool) {
    let data = dir.join("data");
    if data.join("postmaster.pid").exists()
        && let Ok(bindir) = bindir(&data)
    {
        let mut stop = pg_ctl(&bindir, as_postgres);
        stop.arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// The server binaries of the restored data directory's major version.
fn bindir(data: &Path) -> anyhow::Result<PathBuf> {
    let version =
        std::fs::read_to_string(data.join("PG_VERSION")).context("the restored PG_VERSION")?;
    let major = version.trim();
    if let Ok(dir) = std::env::var("PGVIGIL_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    if debian.join("pg_ctl").exists() {
        return Ok(debian);
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .context("pg_config")?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn pg_ctl(bindir: &Path, as_postgres: bool) -> Command {
    let pg_ctl = bindir.join("pg_ctl");
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_ctl);
        c
    } else {
        Command::new(pg_ctl)
    }
}

/// `max_connections = N` and the like from pg_controldata: hot standby
/// refuses lower values than the source had.
fn controldata_minimums(
    bindir: &Path,
    data: &Path,
    as_postgres: bool,
) -> anyhow::Result<Vec<String>> {
    let tool = bindir.join("pg_controldata");
    let mut c = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool);
        c
    } else {
        Command::new(tool)
    };
    let out = run_cmd(c.arg(data))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = Vec::new();
    for name in [
        "max_wal_senders",
        "max_connections",
        "max_worker_processes",
        "max_prepared_xacts",
        "max_locks_per_xact",
    ] {
        let setting = match name {
            "max_prepared_xacts" => "max_prepared_transactions",
            "max_locks_per_xact" => "max_locks_per_transaction",
            n => n,
        };
        if let Some(v) = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} setting:")))
            .and_then(|l| l.split(':').nth(1))
        {
            lines.push(format!("{setting}={}", v.trim()));
        }
    }
    Ok(lines)
}

fn pgbackrest(b: &Backup, args: &[&str], as_postgres: bool) -> anyhow::Result<Output> {
    let mut c = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&b.command);
        c
    } else {
        Command::new(&b.command)
    };
    if let Some(config) = &b.config {
        c.arg(format!("--config={}", config.display()));
    }
    c.arg(format!("--stanza={}", b.stanza)).args(args);
    run_cmd(&mut c)
}

/// Runs a command; its first line of error output is the error.
fn run_cmd(c: &mut Command) -> anyhow::Result<Output> {
    let out = c
        .output()
        .with_context(|| format!("could not run {:?}", c.get_program()))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        let why = text
            .lines()
            .find(|l| l.contains("ERROR") || l.contains("FATAL") || l.contains("error"))
            .or_else(|| text.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or("no output")
            .trim()
            .to_string();
        // Named for what ran, not for the runuser in front of it.
        let args: Vec<_> = c.get_args().collect();
        let program = match args.iter().position(|a| *a == "--") {
            Some(i) if c.get_program() == "runuser" => args.get(i + 1).copied().unwrap_or_default(),
            _ => c.get_program(),
        };
        let program = Path::new(program)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        bail!("{program} failed ({}): {why}", out.status);
    }
    Ok(out)
}

fn available_bytes(dir: &Path) -> anyhow::Result<f64> {
    let out = run_cmd(Command::new("df").args(["--output=avail", "-B1"]).arg(dir))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| anyhow!("could not read the free space of {}", dir.display()))
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Whether this process runs as root (PostgreSQL refuses to).
fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
