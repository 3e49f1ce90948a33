//! A table locked ACCESS EXCLUSIVE (a migration, VACUUM FULL, REINDEX):
//! the tables collector keeps publishing every other table and the
//! statistics of all, the locked table keeps its last size, flagged, and no
//! pgvigil session ever waits in the lock queue. Ground truth: the sizes the
//! test reads as superuser before taking the lock, the time it holds it, and
//! pg_locks / pg_stat_activity sampled by the test every 50 ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use pgvigil::collect::tables::sizes::{self, LOCK_WAIT, Rel, Skip, Stop};

use crate::harness::pg::flush_stats;
use crate::harness::{Fixture, Metrics, RunningAgent, eventually, outputs, pgvigil};

const WAIT: Duration = Duration::from_secs(60);
/// How long the test holds the lock.
const HELD: Duration = Duration::from_secs(40);

/// Tables with a heap, a TOAST table (values of 3,200 random hex digits
/// stay out of line) and an index each, autovacuum off so that nothing
/// changes their size during the test, vacuumed and analyzed so that
/// pg_class has their page counts.
const SETUP: &str = "
CREATE TABLE accounts (id int PRIMARY KEY, doc text) WITH (autovacuum_enabled = off);
INSERT INTO accounts SELECT g, (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 100) i)
  FROM generate_series(1, 500) g;
CREATE TABLE orders (id int PRIMARY KEY, pad text) WITH (autovacuum_enabled = off);
INSERT INTO orders SELECT g, repeat('o', 200) FROM generate_series(1, 20000) g;
CREATE TABLE events (id int PRIMARY KEY, pad text) WITH (autovacuum_enabled = off);
INSERT INTO events SELECT g, repeat('e', 100) FROM generate_series(1, 30000) g;";

const TABLES: [&str; 3] = ["accounts", "orders", "events"];

/// Creates the tables (VACUUM must run alone, outside the implicit
/// transaction of a multi-statement message).
async fn setup(admin: &Client) {
    admin.batch_execute(SETUP).await.unwrap();
    for t in TABLES {
        admin
            .batch_execute(&format!("VACUUM ANALYZE {t}"))
            .await
            .unwrap();
    }
}

/// What the server says about one table, read as superuser.
#[derive(Debug, Clone, Copy)]
struct Truth {
    oid: u32,
    /// pg_table_size.
    size: f64,
    /// pg_relation_size of its primary key.
    index_size: f64,
    /// pg_class pages of heap and TOAST table, times the block size.
    pages: f64,
    /// Its TOAST table's index.
    toast_index: u32,
}

async fn truth(admin: &Client, table: &str) -> Truth {
    let row = admin
        .query_one(
            "SELECT c.oid, pg_table_size(c.oid)::float8, pg_relation_size(i.indexrelid)::float8,
                    (c.relpages + coalesce(t.relpages, 0))::float8 * current_setting('block_size')::float8,
                    coalesce((SELECT ti.indexrelid FROM pg_index ti WHERE ti.indrelid = c.reltoastrelid), 0)
               FROM pg_class c JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
               LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
              WHERE c.oid = $1::text::regclass",
            &[&table],
        )
        .await
        .unwrap();
    Truth {
        oid: row.get(0),
        size: row.get(1),
        index_size: row.get(2),
        pages: row.get(3),
        toast_index: row.get(4),
    }
}

fn table(relname: &str) -> [(&str, &str); 3] {
    [
        ("datname", "postgres"),
        ("schemaname", "public"),
        ("relname", relname),
    ]
}

fn index(relname: &str) -> [(&'static str, String); 2] {
    [
        ("relname", relname.to_string()),
        ("indexrelname", format!("{relname}_pkey")),
    ]
}

fn index_get(m: &Metrics, name: &str, relname: &str) -> Option<f64> {
    let labels = index(relname);
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    m.get(name, &labels)
}

/// Samples pg_stat_activity and pg_locks every 50 ms, until stopped, for
/// pgvigil sessions (the agent's and any `pgvigil once`) waiting for a lock.
struct LockWaits {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u32, u32, f64)>,
}

impl LockWaits {
    fn start(client: Client) -> LockWaits {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (mut samples, mut waiting, mut longest) = (0u32, 0u32, 0.0f64);
            while !flag.load(Ordering::Relaxed) {
                let row = client
                    .query_one(
                        "SELECT (SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                                  WHERE a.application_name = 'pgvigil' AND NOT l.granted)::int8,
                                (SELECT count(*) FROM pg_stat_activity a
                                  WHERE a.application_name = 'pgvigil' AND a.wait_event_type = 'Lock')::int8,
                                (SELECT coalesce(max(extract(epoch FROM now() - a.query_start)), 0) FROM pg_stat_activity a
                                  WHERE a.application_name = 'pgvigil' AND a.wait_event_type = 'Lock')::float8",
                        &[],
                    )
                    .await
                    .unwrap();
                let queued: i64 = row.get(0);
                let in_lock_wait: i64 = row.get(1);
                samples += 1;
                if queued > 0 || in_lock_wait > 0 {
                    waiting += 1;
                }
                longest = longest.max(row.get(2));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (samples, waiting, longest)
        });
        LockWaits { stop, task }
    }

    /// Samples taken, samples that saw a pgvigil session waiting, and the
    /// longest such wait (from its statement's start: an upper bound).
    async fn finish(self) -> (u32, u32, f64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_locked_for_forty_seconds_keeps_its_size_and_blanks_nothing() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    setup(&admin).await;
    let mut truths = Vec::new();
    for t in TABLES {
        truths.push((t, truth(&admin, t).await));
    }
    let accounts = truths[0].1;
    assert!(accounts.toast_index != 0, "accounts has a TOAST table");
    assert!(
        accounts.pages < accounts.size,
        "pages alone leave out the free space and visibility maps: {accounts:?}"
    );
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("tables = \"2s\"")).await;
    let sized = |m: &Metrics| {
        truths.iter().all(|(t, truth)| {
            m.get("pg_table_size_bytes", &table(t)) == Some(truth.size)
                && m.get("pg_table_size_estimated", &table(t)) == Some(0.0)
                && index_get(m, "pg_index_size_bytes", t) == Some(truth.index_size)
        })
    };
    agent
        .wait_for(WAIT, "every table sized as the server says", |m| {
            sized(m).then_some(())
        })
        .await;
    let scans_before = orders_scans(&admin).await;
    let waits = LockWaits::start(fx.pg.connect().await);
    let holder = fx.pg.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let locked_at = Instant::now();
    let (mut scrapes, mut flagged_at, mut once_checked) = (0, None, false);
    let (mut scanned, mut scans_seen) = (false, false);
    while locked_at.elapsed() < HELD {
        let m = agent.metrics().await;
        scrapes += 1;
        let health = m.get("pgvigil_collector_success", &[("collector", "tables")]);
        assert_eq!(
            health,
            Some(1.0),
            "tables failed {:?} into the lock",
            locked_at.elapsed()
        );
        assert_eq!(m.get("pg_up", &[]), Some(1.0));
        for (t, truth) in &truths {
            // Every table keeps its series; the locked one its last size.
            assert_eq!(
                m.get("pg_table_size_bytes", &table(t)),
                Some(truth.size),
                "{t} {:?} into the lock",
                locked_at.elapsed()
            );
            assert_eq!(
                index_get(&m, "pg_index_size_bytes", t),
                Some(truth.index_size),
                "{t}"
            );
            assert!(m.get("pg_table_live_tuples", &table(t)).is_some(), "{t}");
            if *t != "accounts" {
                assert_eq!(
                    m.get("pg_table_size_estimated", &table(t)),
                    Some(0.0),
                    "{t}"
                );
            }
        }
        // The first pass after the lock skips accounts and says so; from
        // then on the flag stays until the lock goes.
        let flag = m.get("pg_table_size_estimated", &table("accounts"));
        match flagged_at {
            None if flag == Some(1.0) => flagged_at = Some(locked_at.elapsed()),
            None => assert_eq!(flag, Some(0.0)),
            Some(_) => {
                assert_eq!(flag, Some(1.0), "{:?} into the lock", locked_at.elapsed());
                assert_eq!(
                    m.get(
                        "pg_tables_size_skipped",
                        &[("datname", "postgres"), ("reason", "locked")]
                    ),
                    Some(1.0),
                    "accounts only: its index and TOAST table are not locked"
                );
            }
        }
        // Statistics keep flowing: the agent follows the server's count
        // of scans of orders, which grows by the three the test makes.
        if scanned && !scans_seen {
            let server = orders_scans(&admin).await;
            scans_seen = server >= scans_before + 3.0
                && m.get("pg_table_seq_scan_total", &table("orders")) == Some(server);
        }
        if !scanned && locked_at.elapsed() > Duration::from_secs(5) {
            for _ in 0..3 {
                admin
                    .batch_execute("SELECT count(*) FROM orders WHERE pad = 'nope'")
                    .await
                    .unwrap();
            }
            flush_stats(&admin).await;
            scanned = true;
        }
        if !once_checked && locked_at.elapsed() > Duration::from_secs(15) {
            fresh_once_while_locked(&fx, &truths).await;
            once_checked = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        scans_seen,
        "the 3 scans of orders made during the lock: {scans_before} before, the server {}, the agent {:?}",
        orders_scans(&admin).await,
        agent
            .metrics()
            .await
            .get("pg_table_seq_scan_total", &table("orders"))
    );
    crate::harness::promtool_check(&agent.get("/metrics").await.body);
    holder.batch_execute("ROLLBACK").await.unwrap();
    let held = locked_at.elapsed();
    let (samples, waiting, longest) = waits.finish().await;
    println!(
        "locked table: held {held:?}, {scrapes} scrapes, flagged {flagged_at:?} into the lock; \
         {samples} samples of pg_locks, {waiting} with a pgvigil session waiting, longest wait {longest:.3}s"
    );
    assert!(once_checked && scanned);
    assert!(flagged_at.is_some(), "accounts was never flagged");
    assert!(samples > 100, "{samples} samples");
    assert_eq!(
        (waiting, longest),
        (0, 0.0),
        "no pgvigil session may wait in the lock queue"
    );
    let log = agent.log();
    assert!(!log.contains("lock timeout"), "{log}");

    // Released: measured again at the next run, no pass needed.
    agent
        .wait_for(WAIT, "accounts measured again", |m| {
            let skipped = m.get(
                "pg_tables_size_skipped",
                &[("datname", "postgres"), ("reason", "locked")],
            );
            (sized(m) && skipped == Some(0.0)).then_some(())
        })
        .await;
}

/// The server's count of sequential scans of orders.
async fn orders_scans(admin: &Client) -> f64 {
    admin
        .query_one(
            "SELECT seq_scan::float8 FROM pg_stat_user_tables WHERE relname = 'orders'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A fresh `pgvigil once` while accounts is locked: it succeeds, sizes the
/// other tables as the server does, and, having no size of its own to carry
/// over, estimates accounts from pg_class, flagged.
async fn fresh_once_while_locked(fx: &Fixture, truths: &[(&str, Truth)]) {
    let dsn = fx.dsn();
    let password = fx.password.clone();
    let out = tokio::task::spawn_blocking(move || {
        pgvigil(
            &["once", "--dsn", &dsn, "--format", "prometheus"],
            &[("PGPASSWORD", &password)],
        )
    })
    .await
    .unwrap();
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    crate::harness::promtool_check(&stdout);
    let m = Metrics::parse(&stdout);
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "tables")]),
        Some(1.0),
        "{stderr}"
    );
    for (t, truth) in truths {
        let (size, flag) = if *t == "accounts" {
            (truth.pages, 1.0)
        } else {
            (truth.size, 0.0)
        };
        assert_eq!(
            m.get("pg_table_size_bytes", &table(t)),
            Some(size),
            "once: {t}"
        );
        assert_eq!(
            m.get("pg_table_size_estimated", &table(t)),
            Some(flag),
            "once: {t}"
        );
        assert_eq!(
            index_get(&m, "pg_index_size_bytes", t),
            Some(truth.index_size),
            "once: {t}"
        );
    }
    assert_eq!(
        m.get(
            "pg_tables_size_skipped",
            &[("datname", "postgres"), ("reason", "locked")]
        ),
        Some(1.0)
    );
}

/// A connection as the monitoring role with no lock_timeout nor
/// statement_timeout (wait forever), so that only the sizing's own limits
/// can end a wait.
async fn monitoring_role(fx: &Fixture) -> Client {
    let mut config: tokio_postgres::Config = fx.dsn().parse().unwrap();
    config.password(&fx.password);
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("SET lock_timeout = 0; SET statement_timeout = 0")
        .await
        .unwrap();
    client
}

async fn waiting_locks(admin: &Client, pid: i32) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizing_skips_held_awaited_and_late_locks_and_stops_at_its_budget() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    setup(&admin).await;
    let mut truths = Vec::new();
    for t in TABLES {
        truths.push(truth(&admin, t).await);
    }
    let [accounts, orders, events] = [truths[0], truths[1], truths[2]];
    let rels = [
        Rel {
            oid: orders.oid,
            table: true,
        },
        Rel {
            oid: accounts.oid,
            table: true,
        },
        Rel {
            oid: events.oid,
            table: true,
        },
    ];
    let client = monitoring_role(&fx).await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let budget = Duration::from_secs(5);

    // A lock taken after pg_locks was read: the sizing statement alone
    // meets it, waits LOCK_WAIT, and keeps the size it had before.
    let holder = fx.pg.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let partial = tokio::time::timeout(
        Duration::from_secs(20),
        sizes::size_in_order(&client, &rels, budget, LOCK_WAIT),
    )
    .await
    .expect("the sizing statement must not wait for the lock")
    .unwrap();
    println!(
        "race: the sizing statement gave up after {:?}",
        started.elapsed()
    );
    assert_eq!(partial.sizes, [(orders.oid, Some(orders.size))]);
    assert_eq!(partial.stop, Some(Stop::At(Skip::Locked)));
    assert_eq!(waiting_locks(&admin, pid).await, 0, "not left in the queue");
    // The limits ended with the message: the session's own (none) are back.
    for (setting, value) in [("lock_timeout", "0"), ("statement_timeout", "0")] {
        let row = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), value, "{setting}");
    }

    // The whole procedure checks pg_locks first: accounts is skipped, the
    // others measured, nothing waits.
    let measured = sizes::measure(&client, &rels, budget, LOCK_WAIT)
        .await
        .unwrap();
    assert_eq!(
        measured.sizes,
        [
            (orders.oid, Some(orders.size)),
            (events.oid, Some(events.size))
        ]
    );
    assert_eq!(measured.skipped, [(accounts.oid, Skip::Locked)]);
    holder.batch_execute("ROLLBACK").await.unwrap();

    // An awaited lock counts too: a migration queued behind a reader of
    // orders. A size request now would queue behind the migration.
    let reader = fx.pg.connect().await;
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM orders")
        .await
        .unwrap();
    let migration = fx.pg.connect().await;
    let queued = tokio::spawn(async move {
        migration
            .batch_execute("BEGIN; ALTER TABLE orders ADD COLUMN note text; COMMIT")
            .await
    });
    eventually(WAIT, "the migration waiting for its lock", || async {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE relation = $1 AND mode = 'AccessExclusiveLock' AND NOT granted",
                &[&orders.oid],
            )
            .await
            .unwrap()
            .get(0);
        (n == 1).then_some(())
    })
    .await;
    let blocked = sizes::blocked(&client).await.unwrap();
    assert!(blocked.contains(&orders.oid), "{blocked:?}");

    // REINDEX TABLE locks the TOAST table's index, which pg_table_size
    // opens: the table is skipped, although its heap is free.
    let reindex = fx.pg.connect().await;
    reindex
        .batch_execute(&format!(
            "BEGIN; REINDEX INDEX {}",
            admin
                .query_one("SELECT $1::oid::regclass::text", &[&accounts.toast_index])
                .await
                .unwrap()
                .get::<_, String>(0)
        ))
        .await
        .unwrap();
    let measured = sizes::measure(&client, &rels, budget, LOCK_WAIT)
        .await
        .unwrap();
    assert_eq!(measured.sizes, [(events.oid, Some(events.size))]);
    assert_eq!(
        measured.skipped,
        [(orders.oid, Skip::Locked), (accounts.oid, Skip::Locked)]
    );
    assert_eq!(waiting_locks(&admin, pid).await, 0);
    reindex.batch_execute("ROLLBACK").await.unwrap();
    reader.batch_execute("COMMIT").await.unwrap();
    queued.await.unwrap().unwrap();

    // The budget: events sized 100,000 times over takes seconds, so its
    // own statement_timeout stops the statement; the sizes computed until
    // then are kept and the rest is carried over to the next pass.
    let many = vec![
        Rel {
            oid: events.oid,
            table: true,
        };
        100_000
    ];
    let budget = Duration::from_millis(300);
    let partial = sizes::size_in_order(&client, &many, budget, LOCK_WAIT)
        .await
        .unwrap();
    assert_eq!(partial.stop, Some(Stop::Rest(Skip::Budget)));
    let done = partial.sizes.len();
    assert!(done > 0 && done < many.len(), "{done} sized");
    assert!(
        partial
            .sizes
            .iter()
            .all(|s| *s == (events.oid, Some(events.size)))
    );
    let measured = sizes::measure(&client, &many, budget, LOCK_WAIT)
        .await
        .unwrap();
    println!(
        "budget: {done} sizes in the statement stopped at 300 ms, {} in the procedure",
        measured.sizes.len()
    );
    assert_eq!(measured.sizes.len() + measured.skipped.len(), many.len());
    assert!(
        measured
            .skipped
            .iter()
            .all(|s| *s == (events.oid, Skip::Budget))
    );
    let row = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "0");

    // Estimates for what was never measured: pg_class pages, no lock.
    let estimates = sizes::estimates(&client, &[accounts.oid]).await.unwrap();
    assert_eq!(estimates.get(&accounts.oid), Some(&accounts.pages));
}
