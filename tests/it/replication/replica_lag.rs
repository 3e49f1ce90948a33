//! A replica's lag as the replica itself reports it
//! (`pg_replica_replay_lag_seconds`, `_bytes`, the WAL receiver): the
//! conditions an operator fears, recreated on real servers, each checked
//! on a long-running agent and on a fresh `pgvigil once`.
//!
//! Ground truth: positions the test reads from the servers' own views
//! (the primary's WAL position, the replica's replay position, its
//! receiver's last message), and the test's clock: when it committed the
//! last transaction the replica replayed, when it paused replay, stalled
//! the link or stopped the primary. A reading is compared with the range
//! the truth can have had while pgvigil's query ran, bracketed by reads
//! before and after it.

use std::time::Duration;

use tokio_postgres::Client;

use super::{MB, WAIT, collected_after, on, once};
use crate::harness::Metrics;
use crate::harness::RunningAgent;
use crate::harness::eventually;
use crate::harness::proxy::Mode;
use crate::harness::replica::{
    Replica, ReplicaOptions, Upstream, archive_current_segment, inserted_lsn, parse_lsn,
    replicated, write_wal,
};
use crate::harness::unix_now;

const SECONDS: &str = "pg_replica_replay_lag_seconds";
const BYTES: &str = "pg_replica_replay_lag_bytes";
const CONNECTED: &str = "pg_replica_wal_receiver_connected";
const LAST_MESSAGE: &str = "pg_replica_wal_receiver_last_message_age_seconds";
const REPLICA1: [(&str, &str); 1] = [("target", "replica1")];

/// The slow link: 1 MB/s, so 30 MB take half a minute while replay keeps
/// up with whatever arrives.
const LINK: u64 = 1_000_000;

/// `pg_current_wal_insert_lsn()`: no WAL the primary has can be past it.
async fn insert_lsn(primary: &Client) -> u64 {
    let row = primary
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("pg_current_wal_insert_lsn");
    parse_lsn(row.get(0))
}

/// The replica's own pg_stat_wal_receiver: `latest_end_lsn` (the primary's
/// WAL end as of its last message) and `last_msg_receipt_time` (Unix
/// time); `None` without a receiver.
async fn receiver_view(replica: &Replica) -> Option<(Option<u64>, f64)> {
    let row = replica
        .connect()
        .await
        .query_opt(
            "SELECT latest_end_lsn::text, extract(epoch FROM last_msg_receipt_time)::float8
               FROM pg_stat_wal_receiver",
            &[],
        )
        .await
        .expect("pg_stat_wal_receiver")?;
    Some((row.get::<_, Option<&str>>(0).map(parse_lsn), row.get(1)))
}

/// Asserts that `value` lies in `[low, high]`, naming what it is.
fn assert_within(value: Option<f64>, (low, high): (f64, f64), what: &str) -> f64 {
    let value = value.unwrap_or_else(|| panic!("{what}: no value"));
    assert!(
        low <= high && value >= low && value <= high,
        "{what}: {value} outside [{low}, {high}]"
    );
    value
}

/// Sleeps until `at` (a Unix time), if it is still ahead.
async fn sleep_until(at: f64) {
    let left = at - unix_now();
    if left > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(left)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_primary_is_no_lag_and_a_paused_replica_lags_since_its_pause() {
    let set = replicated(1, ReplicaOptions::default()).await;
    let replica = &set.replicas[0];
    let config = set.config("");
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &config).await;
    let primary = set.primary.pg.connect().await;
    primary
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    replica.wait_caught_up(&set.primary.pg).await;

    // Both ends see the pair. Without a slot, slot_name is empty.
    let replica1 = [
        ("target", "primary"),
        ("application_name", "replica1"),
        ("client_addr", "local"),
        ("slot_name", ""),
    ];
    let m = agent
        .wait_for(WAIT, "the primary sees replica1 streaming", |m| {
            let mut streaming = replica1.to_vec();
            streaming.push(("state", "streaming"));
            m.get("pg_replication_replica_info", &streaming)
                .and(m.get("pg_in_recovery", &on("primary")))
                .and(m.get("pg_in_recovery", &on("replica1")))
                .and(m.get(CONNECTED, &REPLICA1))
                .filter(|v| *v == 1.0)
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(
        m.get("pg_replication_connected_replicas", &on("primary")),
        Some(1.0)
    );
    assert_eq!(
        m.get("pg_replication_connected_replicas", &on("replica1")),
        Some(0.0)
    );
    assert_eq!(m.get("pg_in_recovery", &on("replica1")), Some(1.0));
    assert_eq!(m.get("pg_in_recovery", &on("primary")), Some(0.0));
    // Replica-side metrics only on the replica, primary-side per replica
    // only on the primary.
    assert_eq!(m.get("pg_replica_replay_paused", &on("primary")), None);
    assert_eq!(m.get(LAST_MESSAGE, &on("primary")), None);
    assert_eq!(m.get("pg_replication_lag_bytes", &REPLICA1), None);

    // An idle primary for 30 s: the last replayed commit gets old, but the
    // replica is not behind, so its lag is 0.
    let mut caught_up = 0;
    for _ in 0..15 {
        let m = agent.metrics().await;
        // An idle primary still writes background records (running-xacts
        // snapshots, a few kB); one may be caught between receipt and
        // replay, as CI saw once on 16 (4,360 bytes). For that moment the
        // replica is behind and its lag is the age of its last replayed
        // commit: the documented upper bound that alert rules ride over.
        let bytes = m.get(BYTES, &REPLICA1).expect("lag bytes");
        assert!(bytes < 0.1 * MB, "{bytes}");
        if bytes == 0.0 {
            assert_eq!(
                m.get(SECONDS, &REPLICA1),
                Some(0.0),
                "an idle primary is not replica lag"
            );
            caught_up += 1;
        }
        assert!(m.get(LAST_MESSAGE, &REPLICA1).is_some());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        caught_up >= 10,
        "caught up on only {caught_up} of 15 scrapes"
    );
    let naive: f64 = replica
        .connect()
        .await
        .query_one(
            "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // What a naive now() - pg_last_xact_replay_timestamp() would report.
    assert!(naive > 25.0, "the last replayed commit is {naive}s old");
    // A fresh agent says the same.
    let m = eventually(WAIT, "a `once` with everything replayed", || async {
        let m = once(replica).await;
        (m.get(BYTES, &[]) == Some(0.0)).then_some(m)
    })
    .await;
    assert_eq!(m.get(SECONDS, &[]), Some(0.0), "once on an idle primary");

    // The newest commit the replica will have replayed: committed, and
    // replayed, before the pause.
    let marker = unix_now();
    primary
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    replica.wait_caught_up(&set.primary.pg).await;
    // Paused replay: WAL arrives, is not applied, and the lag grows.
    replica.pause_replay().await;
    let paused = unix_now();
    write_wal(&primary, 10).await;
    let written = inserted_lsn(&primary).await;
    eventually(
        WAIT,
        "the 10 MB to arrive at the paused replica",
        || async { (replica.receive_lsn().await >= written).then_some(()) },
    )
    .await;
    // What the lag must be for a query that ran between `from` and `to`:
    // the replica's last replayed commit came after `marker`, before
    // `paused`; it has not replayed past `replayed` and not less than
    // `since`, and the primary has at least `written`, at most `end`.
    let truth = |from: f64, to: f64, since: u64, replayed: u64, end: u64| {
        (
            (from - paused, to - marker),
            (
                written.saturating_sub(replayed) as f64,
                end.saturating_sub(since) as f64,
            ),
        )
    };

    // The long-running agent.
    let (r0, t0) = (replica.replay_lsn().await, unix_now());
    let m = collected_after(&agent, "replica1", t0).await;
    let (t1, r1, end) = (
        unix_now(),
        replica.replay_lsn().await,
        insert_lsn(&primary).await,
    );
    let (seconds, bytes) = truth(t0, t1, r0, r1, end);
    let lag = assert_within(m.get(SECONDS, &REPLICA1), seconds, "agent: lag seconds");
    let behind = assert_within(m.get(BYTES, &REPLICA1), bytes, "agent: lag bytes");
    assert!(bytes.0 >= 10.0 * MB, "{bytes:?}");
    assert_eq!(m.get("pg_replica_replay_paused", &REPLICA1), Some(1.0));
    assert_eq!(m.get(CONNECTED, &REPLICA1), Some(1.0));
    eprintln!(
        "paused replay, agent: {lag:.1} s in [{:.1}, {:.1}], {behind:.0} bytes in [{:.0}, {:.0}]",
        seconds.0, seconds.1, bytes.0, bytes.1
    );
    // The primary's view agrees once the replica's feedback has reached it.
    eventually(
        WAIT,
        "the primary to see the paused replica's lag",
        || async {
            let m = agent.metrics().await;
            let seen = m.get("pg_replication_lag_bytes", &replica1)?;
            let end = insert_lsn(&primary).await;
            (seen >= bytes.0 && seen <= (end - r0) as f64).then_some(())
        },
    )
    .await;

    // A fresh `pgvigil once`, 20 s after the pause: what the server knows,
    // not what some agent saw since the pause began.
    sleep_until(paused + 20.0).await;
    let (r0, t0) = (replica.replay_lsn().await, unix_now());
    let m = once(replica).await;
    let (t1, r1, end) = (
        unix_now(),
        replica.replay_lsn().await,
        insert_lsn(&primary).await,
    );
    let (seconds, bytes) = truth(t0, t1, r0, r1, end);
    let lag = assert_within(m.get(SECONDS, &[]), seconds, "once: lag seconds");
    assert!(lag >= 20.0, "{lag}");
    let behind = assert_within(m.get(BYTES, &[]), bytes, "once: lag bytes");
    assert_eq!(m.get("pg_replica_replay_paused", &[]), Some(1.0));
    eprintln!(
        "paused replay, once after 20 s: {lag:.1} s in [{:.1}, {:.1}], {behind:.0} bytes in [{:.0}, {:.0}]",
        seconds.0, seconds.1, bytes.0, bytes.1
    );

    // The agent restarted during the lag reads the whole lag at once.
    drop(agent);
    let restarted = unix_now();
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &config).await;
    let m = agent
        .wait_for(WAIT, "the restarted agent's replica lag", |m| {
            m.get(SECONDS, &REPLICA1).map(|_| m.clone())
        })
        .await;
    let (seconds, _) = truth(restarted, unix_now(), 0, 0, 0);
    let lag = assert_within(m.get(SECONDS, &REPLICA1), seconds, "restarted agent");
    eprintln!(
        "paused replay, restarted agent's first reading: {lag:.1} s in [{:.1}, {:.1}]",
        seconds.0, seconds.1
    );

    // Resumed: caught up again, and both ends say so.
    replica.resume_replay().await;
    replica.wait_caught_up(&set.primary.pg).await;
    let mut walsender = replica1.to_vec();
    walsender.push(("kind", "replay"));
    agent
        .wait_for(WAIT, "replay lag back to 0", |m| {
            let seconds = m.get(SECONDS, &REPLICA1)?;
            let bytes = m.get(BYTES, &REPLICA1)?;
            let paused = m.get("pg_replica_replay_paused", &REPLICA1)?;
            // Background records (running-xacts snapshots) may trickle in.
            let behind = m.get("pg_replication_lag_bytes", &replica1)?;
            // The primary measured the replay lag while it caught up.
            m.get("pg_replication_lag_seconds", &walsender)?;
            (seconds == 0.0 && bytes == 0.0 && paused == 0.0 && behind < 0.1 * MB).then_some(())
        })
        .await;
    crate::harness::promtool_check(&agent.get("/metrics").await.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_a_slow_link_reports_how_far_behind_its_primary_it_is() {
    let set = replicated(
        1,
        ReplicaOptions {
            upstream: Upstream::Proxy,
            ..Default::default()
        },
    )
    .await;
    let replica = &set.replicas[0];
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &set.config("")).await;
    let primary = set.primary.pg.connect().await;
    // Streaming over TCP, through the proxy.
    let walsender = [
        ("target", "primary"),
        ("application_name", "replica1"),
        ("client_addr", "127.0.0.1"),
    ];
    agent
        .wait_for(WAIT, "the primary sees replica1 over TCP", |m| {
            let mut streaming = walsender.to_vec();
            streaming.push(("state", "streaming"));
            m.get("pg_replication_replica_info", &streaming)
        })
        .await;
    let marker = unix_now();
    primary
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    replica.wait_caught_up(&set.primary.pg).await;
    let before = replica.replay_lsn().await;

    // 30 MB through a 1 MB/s link. The replica replays whatever arrives
    // at once, so received − replayed stays small: the replica does not
    // know it is behind from what it received, only from what the
    // primary said in its messages.
    replica.proxy().set(Mode::Throttle {
        bytes_per_second: LINK,
    });
    write_wal(&primary, 30).await;
    let wrote = unix_now();
    let written = inserted_lsn(&primary).await;
    eventually(WAIT, "the replica to hear where the primary is", || async {
        let (latest_end, _) = receiver_view(replica).await?;
        (latest_end? >= written).then_some(())
    })
    .await;
    // While the query ran, the last replayed commit was one made before the
    // 30 MB were written (their own commit is at their end), and after the
    // marker; replay was between `since` and `replayed`; the primary had
    // at least `written`, at most `end`.
    let truth = |from: f64, to: f64, since: u64, replayed: u64, end: u64| {
        (
            (from - wrote, to - marker),
            (
                written.saturating_sub(replayed) as f64,
                end.saturating_sub(since) as f64,
            ),
        )
    };

    // A fresh `pgvigil once`.
    let (r0, t0) = (replica.replay_lsn().await, unix_now());
    let m = once(replica).await;
    let (t1, r1, end) = (
        unix_now(),
        replica.replay_lsn().await,
        insert_lsn(&primary).await,
    );
    let received = replica.receive_lsn().await;
    let (seconds, bytes) = truth(t0, t1, r0, r1, end);
    assert!(
        bytes.0 >= 5.0 * MB,
        "the link no longer held the replica back: {bytes:?}"
    );
    let lag = assert_within(m.get(BYTES, &[]), bytes, "once: lag bytes");
    let lag_seconds = assert_within(m.get(SECONDS, &[]), seconds, "once: lag seconds");
    assert!(lag_seconds > 0.0);
    eprintln!(
        "slow link, once: {lag:.0} bytes (truth {:.0}..{:.0}), {lag_seconds:.1} s; \
         received − replayed {}",
        bytes.0,
        bytes.1,
        received.saturating_sub(r1)
    );

    // The long-running agent, both ends.
    let (r0, t0) = (replica.replay_lsn().await, unix_now());
    let m = collected_after(&agent, "replica1", t0).await;
    let (t1, r1, end) = (
        unix_now(),
        replica.replay_lsn().await,
        insert_lsn(&primary).await,
    );
    let (seconds, bytes) = truth(t0, t1, r0, r1, end);
    let lag = assert_within(m.get(BYTES, &REPLICA1), bytes, "agent: lag bytes");
    let lag_seconds = assert_within(m.get(SECONDS, &REPLICA1), seconds, "agent: lag seconds");
    // The primary knows the replica's replay position from its feedback,
    // which is never ahead of the replica: it sees at least as much lag.
    let seen = assert_within(
        m.get("pg_replication_lag_bytes", &walsender),
        (bytes.0, (end - before) as f64),
        "agent: the primary's lag bytes",
    );
    eprintln!(
        "slow link, agent: replica says {lag:.0} bytes (truth {:.0}..{:.0}), {lag_seconds:.1} s; \
         primary says {seen:.0} bytes",
        bytes.0, bytes.1
    );

    // The link recovers; both ends catch up.
    replica.proxy().set(Mode::Forward);
    replica.wait_caught_up(&set.primary.pg).await;
    agent
        .wait_for(WAIT, "both ends caught up", |m| {
            let seconds = m.get(SECONDS, &REPLICA1)?;
            let bytes = m.get(BYTES, &REPLICA1)?;
            let behind = m.get("pg_replication_lag_bytes", &walsender)?;
            (seconds == 0.0 && bytes == 0.0 && behind < 0.1 * MB).then_some(())
        })
        .await;
    crate::harness::promtool_check(&agent.get("/metrics").await.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_shows_in_the_last_message_age_and_a_stopped_primary_as_no_receiver() {
    let set = replicated(
        1,
        ReplicaOptions {
            upstream: Upstream::Proxy,
            // A silent link ends the receiver's connection after 20 s.
            conf: vec!["wal_receiver_timeout = '20s'".into()],
            ..Default::default()
        },
    )
    .await;
    let replica = &set.replicas[0];
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &set.config("")).await;
    let primary = set.primary.pg.connect().await;
    let marker = unix_now();
    primary
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    replica.wait_caught_up(&set.primary.pg).await;
    agent
        .wait_for(WAIT, "replica1 streaming", |m| {
            m.get(CONNECTED, &REPLICA1).filter(|c| *c == 1.0)
        })
        .await;

    // The link goes silent without closing: nothing moves, both sockets
    // stay open, the receiver still says it streams.
    replica.proxy().set(Mode::Stall);
    let stalled = unix_now();
    write_wal(&primary, 5).await;
    let walsender = [("target", "primary"), ("application_name", "replica1")];
    agent
        .wait_for(WAIT, "the primary to see replica1 5 MB behind", |m| {
            m.get("pg_replication_lag_bytes", &walsender)
                .filter(|b| *b >= 5.0 * MB)
        })
        .await;
    agent
        .wait_for(WAIT, "5 s without a message from the primary", |m| {
            let age = m.get(LAST_MESSAGE, &REPLICA1)?;
            let connected = m.get(CONNECTED, &REPLICA1)?;
            (age >= 5.0 && connected == 1.0).then_some(())
        })
        .await;
    let (_, receipt) = receiver_view(replica).await.expect("a receiver");
    let t0 = unix_now();
    let m = once(replica).await;
    let t1 = unix_now();
    let (_, receipt_after) = receiver_view(replica).await.expect("a receiver");
    assert_eq!(
        receipt, receipt_after,
        "a message came through a stalled link"
    );
    let age = assert_within(
        m.get(LAST_MESSAGE, &[]),
        (t0 - receipt, t1 - receipt),
        "once: last message age",
    );
    assert!(age >= 5.0, "{age}");
    assert_eq!(m.get(CONNECTED, &[]), Some(1.0));
    eprintln!(
        "silent link, once: last message {age:.1} s ago; lag {:?} s, {:?} bytes",
        m.get(SECONDS, &[]),
        m.get(BYTES, &[])
    );

    // wal_receiver_timeout ends the connection; the new one hangs on the
    // stalled link. No receiver: PostgreSQL shows no row, so no message
    // age; and the replica cannot show it is caught up, so its lag is the
    // age of its last replayed commit (made before the stall, after the
    // marker).
    agent
        .wait_for(WAIT, "the receiver to time out", |m| {
            m.get(CONNECTED, &REPLICA1).filter(|c| *c == 0.0)
        })
        .await;
    let t0 = unix_now();
    let m = once(replica).await;
    let t1 = unix_now();
    assert_eq!(m.get(CONNECTED, &[]), Some(0.0));
    assert_eq!(
        m.get(LAST_MESSAGE, &[]),
        None,
        "no receiver, no message age"
    );
    let bound = (t0 - stalled, t1 - marker);
    let lag = assert_within(
        m.get(SECONDS, &[]),
        bound,
        "once: lag seconds without a receiver",
    );
    assert_eq!(m.get(BYTES, &[]), Some(0.0), "all received is replayed");
    eprintln!(
        "receiver timed out, once: lag {lag:.1} s in [{:.1}, {:.1}] (upper bound)",
        bound.0, bound.1
    );

    // The link comes back: streaming, caught up, 0 again.
    replica.proxy().set(Mode::Forward);
    replica.wait_caught_up(&set.primary.pg).await;
    agent
        .wait_for(WAIT, "replica1 streaming and caught up", |m| {
            let connected = m.get(CONNECTED, &REPLICA1)?;
            let seconds = m.get(SECONDS, &REPLICA1)?;
            let age = m.get(LAST_MESSAGE, &REPLICA1)?;
            (connected == 1.0 && seconds == 0.0 && age < 20.0).then_some(())
        })
        .await;

    // The primary stops. Every commit the replica replayed was made before.
    let committed = unix_now();
    primary
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    replica.wait_caught_up(&set.primary.pg).await;
    let stopped = unix_now();
    set.primary.pg.stop();
    agent
        .wait_for(WAIT, "no receiver once the primary stopped", |m| {
            let connected = m.get(CONNECTED, &REPLICA1)?;
            let bytes = m.get(BYTES, &REPLICA1)?;
            (connected == 0.0 && bytes == 0.0 && m.get(LAST_MESSAGE, &REPLICA1).is_none())
                .then_some(())
        })
        .await;
    let t0 = unix_now();
    let m = once(replica).await;
    let t1 = unix_now();
    assert_eq!(m.get(LAST_MESSAGE, &[]), None);
    let bound = (t0 - stopped, t1 - committed);
    let lag = assert_within(
        m.get(SECONDS, &[]),
        bound,
        "once: lag seconds with the primary stopped",
    );
    eprintln!(
        "primary stopped, once: lag {lag:.1} s in [{:.1}, {:.1}] (upper bound)",
        bound.0, bound.1
    );

    // Back: streaming, and 0.
    set.primary.pg.restart_stopped();
    replica.wait_streaming().await;
    agent
        .wait_for(WAIT, "replica1 streaming again, caught up", |m| {
            let connected = m.get(CONNECTED, &REPLICA1)?;
            let seconds = m.get(SECONDS, &REPLICA1)?;
            (connected == 1.0 && seconds == 0.0).then_some(())
        })
        .await;
    crate::harness::promtool_check(&agent.get("/metrics").await.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_fed_from_an_archive_is_never_reported_caught_up() {
    let set = replicated(
        1,
        ReplicaOptions {
            upstream: Upstream::Archive,
            ..Default::default()
        },
    )
    .await;
    let replica = &set.replicas[0];
    let primary = set.primary.pg.connect().await;
    let marker = unix_now();
    primary
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let committed = inserted_lsn(&primary).await;
    archive_current_segment(&set.primary.pg).await;
    eventually(
        WAIT,
        "the replica to restore and replay the marker",
        || async { (replica.replay_lsn().await >= committed).then_some(()) },
    )
    .await;
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &set.config("")).await;

    // Replay paused; the archive gets 5 MB more. Only the archive knows.
    replica.pause_replay().await;
    let paused = unix_now();
    write_wal(&primary, 5).await;
    let archived = archive_current_segment(&set.primary.pg).await;
    let switched = unix_now();
    let replayed = replica.replay_lsn().await;
    assert!(
        archived >= replayed + 5_000_000,
        "the archive ends at {archived}, replay at {replayed}"
    );
    let check = |m: &Metrics, labels: &[(&str, &str)], from: f64, to: f64, what: &str| {
        // No receiver, no receive position: the end of the archive is not
        // visible from SQL, so no bytes; and never 0 seconds.
        assert_eq!(m.get(CONNECTED, labels), Some(0.0), "{what}");
        assert_eq!(m.get(LAST_MESSAGE, labels), None, "{what}");
        assert_eq!(m.get(BYTES, labels), None, "{what}");
        assert_within(m.get(SECONDS, labels), (from - paused, to - marker), what)
    };
    let t0 = unix_now();
    let m = once(replica).await;
    let lag = check(&m, &[], t0, unix_now(), "once, paused");
    eprintln!("archive replica paused, once: {lag:.1} s");
    let t0 = unix_now();
    let m = collected_after(&agent, "replica1", t0).await;
    check(&m, &REPLICA1, t0, unix_now(), "agent, paused");

    // Resumed, it replays the archive to its end, and the lag is the age
    // of the newest commit there: still not 0, the replica cannot tell
    // whether the primary has written more since.
    replica.resume_replay().await;
    eventually(WAIT, "the replica to replay the archive", || async {
        (replica.replay_lsn().await >= archived).then_some(())
    })
    .await;
    let t0 = unix_now();
    let m = once(replica).await;
    let lag = assert_within(
        m.get(SECONDS, &[]),
        (t0 - switched, unix_now() - paused),
        "once, replayed the whole archive",
    );
    assert!(lag > 0.0);
    assert_eq!(m.get(BYTES, &[]), None);
    eprintln!("archive replica at the archive's end, once: {lag:.1} s");
}
