//! Faults an agent meets in production, injected for real: the server
//! killed with SIGKILL and restarted, a network that stalls, a network
//! partition, a collector query stuck behind an ACCESS EXCLUSIVE lock, a
//! server out of connection slots, a replica promoted under the agent.
//!
//! Every test checks the same four things: `/metrics` keeps answering
//! quickly throughout (each scrape is timed; the worst is printed and must
//! stay under [`SCRAPE_LIMIT`], loose because CI machines are noisy),
//! `pg_up` and `pgvigil_collector_success` say what is true during the
//! fault and after it, nothing leaks (the agent's sessions in
//! `pg_stat_activity`, connections through the proxy, `process_open_fds`),
//! and the agent recovers by itself, without a restart.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::harness::health::{
    COLLECTORS, EVERY_SECOND, Scrapes, agent_sessions, all_failed, all_ok, health, successes,
};
use crate::harness::metrics::Metrics;
use crate::harness::pg::{self, PgOptions, PgServer};
use crate::harness::proxy::{Mode, Proxy};
use crate::harness::replica::{ReplicaOptions, replicated};
use crate::harness::unix_now;
use crate::harness::{Fixture, RunningAgent};

const WAIT: Duration = Duration::from_secs(45);

/// The agent's open file descriptors, the least of three scrapes (a
/// scrape may catch the tables collector's short-lived connection).
async fn settled_fds(s: &mut Scrapes<'_>) -> f64 {
    let mut least = f64::INFINITY;
    for _ in 0..3 {
        let m = s.metrics().await;
        least = least.min(m.get("process_open_fds", &[]).expect("process_open_fds"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    least
}

/// After recovery: the agent is back to at most two sessions at the
/// server (collectors and explain), the proxy (if any) holds no
/// more than that either, and the agent has no more descriptors than
/// before the fault (one of slack for a scrape landing mid-collection).
async fn assert_no_leaks(
    s: &mut Scrapes<'_>,
    admin: &Client,
    fds_before: f64,
    proxy: Option<&Proxy>,
) {
    let what = s.what;
    pg::eventually(WAIT, "the agent back to at most 2 sessions", || async {
        (agent_sessions(admin).await <= 2).then_some(())
    })
    .await;
    if let Some(proxy) = proxy {
        pg::eventually(WAIT, "at most 2 connections through the proxy", || async {
            (proxy.connections() <= 2).then_some(())
        })
        .await;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let fds = s
            .metrics()
            .await
            .get("process_open_fds", &[])
            .expect("process_open_fds");
        println!("{what}: open fds {fds_before} before the fault, {fds} after");
        if fds <= fds_before + 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the agent holds {fds} descriptors after the fault, {fds_before} before"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// After the fault is lifted (at `lifted`): every collector succeeds again,
/// the agent is the same process (`started`: its start time before the
/// fault) and nothing leaked (see [`assert_no_leaks`]). Returns the
/// metrics of the recovered agent.
async fn assert_recovers(
    s: &mut Scrapes<'_>,
    fx: &Fixture,
    lifted: Instant,
    since: &str,
    started: Option<f64>,
    fds_before: f64,
    proxy: Option<&Proxy>,
) -> Metrics {
    s.until(WAIT, "pg_up 1 and every collector succeeding again", |m| {
        all_ok(m, None, COLLECTORS).then_some(())
    })
    .await;
    s.fault(false);
    println!("{}: recovered {:?} {since}", s.what, lifted.elapsed());
    let m = s.metrics().await;
    assert_eq!(
        m.get("process_start_time_seconds", &[]),
        started,
        "the agent did not restart"
    );
    let admin = fx.pg.connect().await;
    assert_no_leaks(s, &admin, fds_before, proxy).await;
    m
}

/// A config for one target `main` reached on `port` (the proxy's, say),
/// with a 2 s connect timeout and `collectors` TOML (1 s intervals).
fn config_via(fx: &Fixture, port: u16, collectors: &str) -> String {
    format!(
        "[[target]]\nname = \"main\"\ndsn = \"postgresql://pgvigil@127.0.0.1:{port}/postgres?sslmode=disable&connect_timeout=2\"\npassword_file = \"{}\"\n\n[collectors]\ndefault_interval = \"1s\"\n{collectors}\n",
        fx.password_file().display()
    )
}

// ---------------------------------------------------------------- SIGKILL

/// The postmaster's pid, from the first line of `postmaster.pid`.
fn postmaster_pid(pg: &PgServer) -> i32 {
    let file = pg.data_dir().join("postmaster.pid");
    let text = std::fs::read_to_string(&file).expect("read postmaster.pid");
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a pid on the first line of postmaster.pid")
}

/// Pids whose parent is `parent`, from /proc.
fn children(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if stat_field(pid, 1) == Some(parent.to_string()) {
            out.push(pid);
        }
    }
    out
}

/// Field `n` after the command in /proc/PID/stat (0 = state, 1 = ppid).
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    after_comm.split_whitespace().nth(n).map(str::to_string)
}

/// Whether `pid` is gone (or a zombie waiting to be reaped).
fn gone(pid: i32) -> bool {
    stat_field(pid, 0).is_none_or(|state| state == "Z")
}

/// `pg_ctl start` after a crash, retried while the old server's children
/// are still letting go of shared memory.
fn start_after_crash(pg: &PgServer) {
    let mut last = String::new();
    for _ in 0..10 {
        match pg.try_start() {
            Ok(()) => return,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("PostgreSQL did not start after the crash: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_with_sigkill_mid_collection_is_reported_down_and_rejoined() {
    let fx = Fixture::start().await;
    fx.pg
        .connect()
        .await
        .batch_execute("CREATE TABLE accounts (id int PRIMARY KEY); INSERT INTO accounts SELECT generate_series(1, 1000)")
        .await
        .unwrap();
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config(EVERY_SECOND)).await;
    let mut s = Scrapes::new(&agent, "sigkill");
    s.until(WAIT, "every collector succeeding", |m| {
        all_ok(m, None, COLLECTORS).then_some(())
    })
    .await;
    let fds_before = settled_fds(&mut s).await;
    let started = s.metrics().await.get("process_start_time_seconds", &[]);

    // Kill the postmaster while one of the agent's queries runs, if one
    // can be caught running within a few seconds (they take milliseconds).
    let admin = fx.pg.connect().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut mid_query = false;
    while Instant::now() < deadline && !mid_query {
        let active: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgvigil' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        mid_query = active > 0;
    }
    let pid = postmaster_pid(&fx.pg);
    let kids = children(pid);
    // SAFETY: kill with a pid read from the cluster we started.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGKILL) },
        0,
        "kill -9 {pid}"
    );
    s.fault(true);
    let killed = Instant::now();
    println!("sigkill: killed postmaster {pid} (an agent query was running: {mid_query})");
    drop(admin);

    let m = s
        .until(WAIT, "pg_up 0 and every collector failed", |m| {
            all_failed(m, None).then(|| m.clone())
        })
        .await;
    println!("sigkill: down reported after {:?}", killed.elapsed());
    // Stale numbers are not served while the server is gone.
    assert_eq!(m.get("pg_in_recovery", &[]), None);
    assert_eq!(m.get("pg_settings_max_connections", &[]), None);

    // The server's own processes notice the postmaster's death and exit;
    // then it can start again (crash recovery).
    pg::eventually(WAIT, "the killed server's processes to exit", || async {
        (gone(pid) && kids.iter().all(|k| gone(*k))).then_some(())
    })
    .await;
    for _ in 0..5 {
        s.metrics().await;
    }
    start_after_crash(&fx.pg);
    let restarted = Instant::now();
    let m = assert_recovers(
        &mut s,
        &fx,
        restarted,
        "after the restart",
        started,
        fds_before,
        None,
    )
    .await;
    assert!(
        m.get("pg_table_size_bytes", &[("relname", "accounts")])
            .is_some()
    );
    assert!(agent.log().contains("reconnected"), "{}", agent.log());
    s.report();
}

// ---------------------------------------------------------------- network

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_network_is_reported_down_within_the_budget_and_recovers() {
    let fx = Fixture::start().await;
    let proxy = Proxy::start(fx.pg.port);
    // A 2 s budget: a stalled link looks like a slow query until the
    // budget runs out, so that is how long the truth takes.
    let agent = RunningAgent::start(
        &fx.pg.scratch(),
        &config_via(
            &fx,
            proxy.port,
            &format!("timeout = \"2s\"\n{EVERY_SECOND}"),
        ),
    )
    .await;
    let mut s = Scrapes::new(&agent, "stall");
    s.until(WAIT, "every collector succeeding", |m| {
        all_ok(m, None, COLLECTORS).then_some(())
    })
    .await;
    let fds_before = settled_fds(&mut s).await;
    let started = s.metrics().await.get("process_start_time_seconds", &[]);
    assert!(proxy.connections() >= 1);

    proxy.set(Mode::Stall);
    s.fault(true);
    let stalled = Instant::now();
    s.until(WAIT, "pg_up 0", |m| {
        (m.get("pg_up", &[]) == Some(0.0)).then_some(())
    })
    .await;
    println!("stall: pg_up 0 after {:?}", stalled.elapsed());
    s.until(WAIT, "every collector failed", |m| {
        all_failed(m, None).then_some(())
    })
    .await;
    println!(
        "stall: every collector failed after {:?}",
        stalled.elapsed()
    );
    // The agent gives up on stalled sockets instead of piling them up:
    // every attempt is bounded by the connect timeout and then dropped.
    for _ in 0..10 {
        let m = s.metrics().await;
        let fds = m.get("process_open_fds", &[]).unwrap();
        assert!(
            fds <= fds_before + 3.0,
            "stall: {fds} descriptors while stalled, {fds_before} before"
        );
        assert_eq!(m.get("pg_up", &[]), Some(0.0), "{:?}", health(&m));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Both halves of a stall: the query in flight gets no answer, even
    // after a cancel request, and new connections are accepted but never
    // completed; each is given up within its bound.
    let log = agent.log();
    assert!(log.contains("nor after a cancel request"), "{log}");
    assert!(log.contains("within connect_timeout"), "{log}");

    proxy.set(Mode::Forward);
    let resumed = Instant::now();
    let since = "after the link came back";
    assert_recovers(
        &mut s,
        &fx,
        resumed,
        since,
        started,
        fds_before,
        Some(&proxy),
    )
    .await;
    s.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_partition_is_reported_down_at_once_and_recovers() {
    let fx = Fixture::start().await;
    let proxy = Proxy::start(fx.pg.port);
    let agent =
        RunningAgent::start(&fx.pg.scratch(), &config_via(&fx, proxy.port, EVERY_SECOND)).await;
    let mut s = Scrapes::new(&agent, "partition");
    s.until(WAIT, "every collector succeeding", |m| {
        all_ok(m, None, COLLECTORS).then_some(())
    })
    .await;
    let fds_before = settled_fds(&mut s).await;
    let started = s.metrics().await.get("process_start_time_seconds", &[]);

    proxy.set(Mode::Partition);
    s.fault(true);
    let cut = Instant::now();
    s.until(WAIT, "pg_up 0 and every collector failed", |m| {
        all_failed(m, None).then_some(())
    })
    .await;
    let detected = cut.elapsed();
    println!("partition: every collector failed after {detected:?}");
    // Connections are dropped, not stalled: the agent notices on its next
    // query or connection attempt, within a couple of 1 s intervals.
    assert!(
        detected < Duration::from_secs(10),
        "{detected:?}\n{}",
        agent.log()
    );
    let attempts_before = proxy.accepted();
    let watched = Instant::now();
    for _ in 0..10 {
        let m = s.metrics().await;
        assert!(all_failed(&m, None), "{:?}", health(&m));
        assert_eq!(proxy.connections(), 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Twelve collectors a second, but reconnection attempts back off.
    let attempts = proxy.accepted() - attempts_before;
    println!(
        "partition: {attempts} connection attempts in {:?}",
        watched.elapsed()
    );
    assert!(
        attempts <= 6,
        "{attempts} attempts in {:?}",
        watched.elapsed()
    );
    assert!(agent.log().contains("could not connect"), "{}", agent.log());

    proxy.set(Mode::Forward);
    let healed = Instant::now();
    let since = "after the network healed";
    assert_recovers(
        &mut s,
        &fx,
        healed,
        since,
        started,
        fds_before,
        Some(&proxy),
    )
    .await;
    s.report();
}

// ---------------------------------------------------------------- locks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_exclusive_lock_fails_no_collector_and_nothing_queues_behind_it() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    admin
        .batch_execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 1000) g")
        .await
        .unwrap();
    let size: f64 = admin
        .query_one("SELECT pg_table_size('accounts')::float8", &[])
        .await
        .unwrap()
        .get(0);
    let accounts = [("relname", "accounts")];
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config(EVERY_SECOND)).await;
    let mut s = Scrapes::new(&agent, "lock");
    s.until(WAIT, "every collector succeeding, accounts sized", |m| {
        (all_ok(m, None, COLLECTORS) && m.get("pg_table_size_bytes", &accounts) == Some(size))
            .then_some(())
    })
    .await;
    let fds_before = settled_fds(&mut s).await;

    // A migration holds ACCESS EXCLUSIVE on a table the tables collector
    // sizes (pg_table_size takes ACCESS SHARE) in a pass every fifth run,
    // 5 s here. The pass skips it, seen in pg_locks, instead of queueing.
    let holder = fx.pg.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let locked_at = Instant::now();
    s.fault(true);
    s.until(WAIT, "a sizing pass to skip accounts", |m| {
        // The connections collector sees the lock on its own schedule.
        let seen = m
            .sum("pg_locks", &[("mode", "AccessExclusiveLock")])
            .unwrap_or(0.0)
            >= 1.0;
        (m.get("pg_table_size_estimated", &accounts) == Some(1.0) && seen).then_some(())
    })
    .await;
    println!(
        "lock: accounts flagged {:?} into the lock",
        locked_at.elapsed()
    );
    // For two more passes: every collector succeeds, tables included, and
    // accounts keeps the size measured before the lock. The agent never
    // appears waiting for a lock in the server's own view.
    let mut longest_wait = 0.0f64;
    let mut waits_seen = 0;
    let mut samples = 0;
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(11) {
        let row = admin
            .query_one(
                "SELECT count(*), coalesce(max(extract(epoch FROM now() - query_start)), 0)::float8
                   FROM pg_stat_activity
                  WHERE application_name = 'pgvigil' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap();
        samples += 1;
        if row.get::<_, i64>(0) > 0 {
            waits_seen += 1;
        }
        longest_wait = longest_wait.max(row.get(1));
        let m = s.metrics().await;
        assert!(all_ok(&m, None, COLLECTORS), "{:?}", health(&m));
        assert_eq!(m.get("pg_table_size_bytes", &accounts), Some(size));
        assert_eq!(m.get("pg_table_size_estimated", &accounts), Some(1.0));
        assert!(m.get("pg_table_seq_scan_total", &accounts).is_some());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "lock: {samples} samples of pg_stat_activity, {waits_seen} with the agent waiting for a lock, longest {longest_wait:.3}s"
    );
    assert_eq!(
        (waits_seen, longest_wait),
        (0, 0.0),
        "the agent waited in the lock queue"
    );
    let log = agent.log();
    assert!(!log.contains("lock timeout"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("collector failed") && l.contains("\"tables\"")),
        "{log}"
    );

    holder.batch_execute("ROLLBACK").await.unwrap();
    s.fault(false);
    s.until(WAIT, "accounts measured again after the lock", |m| {
        (all_ok(m, None, COLLECTORS) && m.get("pg_table_size_estimated", &accounts) == Some(0.0))
            .then_some(())
    })
    .await;
    assert_no_leaks(&mut s, &admin, fds_before, None).await;
    s.report();
}

// ---------------------------------------------------------------- slots

/// A superuser connection over the socket, or the server's refusal.
async fn try_connect(pg: &PgServer) -> Result<Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(pg.socket_dir())
        .port(pg.port)
        .user("postgres")
        .dbname("postgres")
        .application_name("pgvigil-tests");
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Takes every free connection slot, and keeps trying for `patience` so
/// that slots another session frees only briefly are taken too.
async fn fill_slots(pg: &PgServer, held: &mut Vec<Client>, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        match try_connect(pg).await {
            Ok(client) => held.push(client),
            Err(e) => {
                let text = e.to_string() + &format!("{:?}", e.as_db_error());
                assert!(
                    text.contains("too many clients") || text.contains("reserved"),
                    "unexpected refusal: {text}"
                );
                if Instant::now() >= deadline {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

const MAX_CONNECTIONS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_out_of_connection_slots_is_reported_truthfully() {
    let fx = Fixture::start_with(PgOptions {
        conf: vec![
            format!("max_connections = {MAX_CONNECTIONS}"),
            "superuser_reserved_connections = 1".into(),
        ],
    })
    .await;
    // A second database, so the tables collector needs a connection of
    // its own to it every cycle.
    let setup = fx.pg.connect().await;
    setup.batch_execute("CREATE DATABASE appdb").await.unwrap();
    drop(setup);
    let mut held = Vec::new();
    fill_slots(&fx.pg, &mut held, Duration::ZERO).await;
    assert!(
        held.len() >= MAX_CONNECTIONS - 1,
        "{} slots taken",
        held.len()
    );

    // Full before the agent starts: it cannot get in, and says so.
    // The collectors that visit every database on a connection of their own.
    const PER_DATABASE: [&str; 3] = ["tables", "vacuum_tables", "schema"];
    let agent = RunningAgent::start(
        &fx.pg.scratch(),
        &fx.config_with("databases = \"auto\"", EVERY_SECOND),
    )
    .await;
    let mut s = Scrapes::new(&agent, "max_connections");
    s.fault(true);
    s.until(WAIT, "pg_up 0 and every collector failed", |m| {
        all_failed(m, None).then_some(())
    })
    .await;
    assert!(agent.log().contains("too many clients"), "{}", agent.log());

    // Five slots free: one for the agent's session, one for each visit to
    // appdb (the tables, vacuum_tables and schema collectors), one that
    // stays reserved for superusers.
    held.truncate(held.len() - 5);
    s.fault(false);
    s.until(WAIT, "every collector succeeding", |m| {
        all_ok(m, None, COLLECTORS).then_some(())
    })
    .await;
    let fds_before = settled_fds(&mut s).await;
    let log_before = agent.log().len();

    // Full while the agent is connected: its session keeps working and
    // reports the saturation; only the visits to appdb, which need a new
    // connection, fail, and that must not cost the agent its session.
    fill_slots(&fx.pg, &mut held, Duration::from_secs(3)).await;
    s.fault(true);
    let m = s
        .until(
            WAIT,
            "the tables collector to fail while the rest works",
            |m| {
                (m.get("pgvigil_collector_success", &[("collector", "tables")]) == Some(0.0)
                    && m.sum("pg_connections", &[]) == Some(MAX_CONNECTIONS as f64))
                .then(|| m.clone())
            },
        )
        .await;
    for _ in 0..10 {
        let m = s.metrics().await;
        assert_eq!(m.get("pg_up", &[]), Some(1.0), "{:?}", health(&m));
        for (collector, ok) in successes(&m, None) {
            if !PER_DATABASE.contains(&collector.as_str()) {
                assert_eq!(ok, 1.0, "{collector}: {:?}", health(&m));
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        m.get("pg_settings_max_connections", &[]),
        Some(MAX_CONNECTIONS as f64)
    );
    let log = agent.log()[log_before..].to_string();
    assert!(log.contains("too many clients"), "{log}");
    assert!(
        !log.contains("connection lost"),
        "the agent dropped its working session: {log}"
    );

    held.clear();
    s.fault(false);
    s.until(WAIT, "every collector succeeding again", |m| {
        all_ok(m, None, COLLECTORS).then_some(())
    })
    .await;
    let admin = fx.pg.connect().await;
    assert_no_leaks(&mut s, &admin, fds_before, None).await;
    s.report();
}

// ---------------------------------------------------------------- promotion

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_promoted_under_the_agent_keeps_every_collector_working() {
    let set = replicated(1, ReplicaOptions::default()).await;
    let replica = &set.replicas[0];
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &set.config(EVERY_SECOND)).await;
    let mut s = Scrapes::new(&agent, "promotion");
    let on = [("target", "replica1")];
    s.until(
        WAIT,
        "both targets' collectors succeeding, replica1 in recovery",
        |m| {
            (all_ok(m, Some("primary"), COLLECTORS)
                && all_ok(m, Some("replica1"), COLLECTORS)
                && m.get("pg_in_recovery", &on) == Some(1.0))
            .then_some(())
        },
    )
    .await;
    let fds_before = settled_fds(&mut s).await;
    let started = s.metrics().await.get("process_start_time_seconds", &[]);
    let log_before = agent.log().len();

    s.fault(true);
    replica.promote().await;
    let promoted = Instant::now();
    s.until(WAIT, "replica1 out of recovery", |m| {
        (m.get("pg_in_recovery", &on) == Some(0.0)).then_some(())
    })
    .await;
    println!("promotion: pg_in_recovery 0 after {:?}", promoted.elapsed());
    // For several cycles after the promotion every collector of both
    // targets succeeds, on the same session (promotion keeps connections).
    let settled = s
        .until(
            WAIT,
            "every collector succeeding on the promoted server",
            |m| {
                (all_ok(m, Some("replica1"), COLLECTORS) && all_ok(m, Some("primary"), COLLECTORS))
                    .then(Instant::now)
            },
        )
        .await;
    println!(
        "promotion: every collector succeeding {:?} after the promotion",
        promoted.elapsed()
    );
    while settled.elapsed() < Duration::from_secs(4) {
        let m = s.metrics().await;
        assert!(all_ok(&m, Some("replica1"), COLLECTORS), "{:?}", health(&m));
        assert!(all_ok(&m, Some("primary"), COLLECTORS), "{:?}", health(&m));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    s.fault(false);
    let m = s.metrics().await;
    assert_eq!(m.get("process_start_time_seconds", &[]), started);
    // A primary now: it writes WAL of its own, and the agent reads it.
    assert!(
        m.get("pg_wal_lsn_bytes_total", &on).is_some(),
        "{:?}",
        health(&m)
    );
    let log = agent.log()[log_before..].to_string();
    assert!(!log.contains("connection lost"), "{log}");
    let admin = replica.connect().await;
    assert_no_leaks(&mut s, &admin, fds_before, None).await;
    let primary = set.primary.pg.connect().await;
    assert!(agent_sessions(&primary).await <= 2);
    println!(
        "promotion: last success of replica1's server collector {:.1}s ago",
        unix_now()
            - m.get(
                "pgvigil_collector_last_success_timestamp_seconds",
                &[("target", "replica1"), ("collector", "server")]
            )
            .unwrap()
    );
    s.report();
}
