//! Replication, slots, WAL and checkpoints on real primary/replica pairs:
//! the cases peers get wrong (an idle primary, a paused replica, a stopped
//! replica holding its slot, a promotion).

use std::time::Duration;

use crate::harness::replica::{LOGICAL_SLOT, ReplicaOptions, replicated, write_wal};
use crate::harness::{Fixture, RunningAgent};

const WAIT: Duration = Duration::from_secs(60);
const MB: f64 = 1_000_000.0;

fn on(target: &str) -> [(&str, &str); 1] {
    [("target", target)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_lag_follows_a_paused_replica_and_ignores_an_idle_primary() {
    let set = replicated(1, ReplicaOptions::default()).await;
    let replica = &set.replicas[0];
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &set.config("")).await;
    let primary = set.primary.pg.connect().await;
    primary
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    replica.wait_caught_up(&set.primary.pg).await;

    // Both ends see the pair.
    let replica1 = [("target", "primary"), ("application_name", "replica1")];
    let m = agent
        .wait_for(WAIT, "the primary sees replica1 streaming", |m| {
            m.get(
                "pg_replication_replica_info",
                &[
                    ("target", "primary"),
                    ("application_name", "replica1"),
                    ("state", "streaming"),
                ],
            )
            .and(m.get("pg_in_recovery", &on("primary")))
            .and(m.get("pg_in_recovery", &on("replica1")))
            .and(m.get("pg_replica_wal_receiver_connected", &on("replica1")))
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
    assert_eq!(
        m.get("pg_in_recovery", &on("replica1")),
        Some(1.0),
        "{}",
        agent.log()
    );
    assert_eq!(m.get("pg_in_recovery", &on("primary")), Some(0.0));
    for kind in ["write", "flush", "replay"] {
        let mut labels = replica1.to_vec();
        labels.push(("kind", kind));
        assert!(
            m.get("pg_replication_lag_seconds", &labels).is_some(),
            "{kind}"
        );
    }
    // Replica-side metrics only on the replica, primary-side per replica
    // only on the primary.
    assert_eq!(m.get("pg_replica_replay_paused", &on("primary")), None);
    assert_eq!(
        m.get("pg_replication_lag_bytes", &[("target", "replica1")]),
        None
    );

    // An idle primary for 30 s: the last replayed commit gets old, but the
    // replica is not behind, so its lag stays 0 on every scrape.
    let client = replica.connect().await;
    for _ in 0..15 {
        let m = agent.metrics().await;
        assert_eq!(
            m.get("pg_replica_replay_lag_seconds", &on("replica1")),
            Some(0.0),
            "an idle primary is not replica lag"
        );
        // An idle primary still writes background records (running-xacts
        // snapshots, a few kB); one may be caught between receipt and
        // replay, as CI saw once on 16 (4,360 bytes).
        let bytes = m.get("pg_replica_replay_lag_bytes", &on("replica1"));
        assert!(bytes.is_some_and(|b| b < 0.1 * MB), "{bytes:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let naive: f64 = client
        .query_one(
            "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // What a naive now() - pg_last_xact_replay_timestamp() would report.
    assert!(naive > 25.0, "the last replayed commit is {naive}s old");

    // Paused replay: WAL arrives, is not applied, and the lag grows.
    replica.pause_replay().await;
    write_wal(&primary, 10).await;
    // Each end is its own target with its own collector runs: wait for
    // both to have seen the 10 MB.
    let m = agent
        .wait_for(WAIT, "10 MB received and not replayed, on both ends", |m| {
            let primary_side = m
                .get("pg_replication_lag_bytes", &replica1)
                .filter(|b| *b >= 10.0 * MB);
            m.get("pg_replica_replay_lag_bytes", &on("replica1"))
                .filter(|b| *b >= 10.0 * MB)
                .and(primary_side)
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(
        m.get("pg_replica_replay_paused", &on("replica1")),
        Some(1.0)
    );
    let first = m
        .get("pg_replica_replay_lag_seconds", &on("replica1"))
        .unwrap();
    let later = agent
        .wait_for(WAIT, "replay lag seconds growing", |m| {
            m.get("pg_replica_replay_lag_seconds", &on("replica1"))
                .filter(|s| *s >= first + 2.0)
        })
        .await;
    // Bounded by the time the replica has actually been behind, not by
    // the age of the last commit before the pause (over 30 s old).
    // A lag read off the last commit's age would already exceed `naive`.
    assert!(later < naive, "{later} vs the commit age {naive}");

    // Resumed: caught up again, and both ends say so.
    replica.resume_replay().await;
    replica.wait_caught_up(&set.primary.pg).await;
    agent
        .wait_for(WAIT, "replay lag back to 0", |m| {
            let seconds = m.get("pg_replica_replay_lag_seconds", &on("replica1"))?;
            let bytes = m.get("pg_replica_replay_lag_bytes", &on("replica1"))?;
            let paused = m.get("pg_replica_replay_paused", &on("replica1"))?;
            // Background records (running-xacts snapshots) may trickle in.
            let behind = m.get("pg_replication_lag_bytes", &replica1)?;
            (seconds == 0.0 && bytes == 0.0 && paused == 0.0 && behind < 0.1 * MB).then_some(())
        })
        .await;
    crate::cli::promtool_check(&agent.get("/metrics").await.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_slot_holding_wal_stands_out() {
    let set = replicated(
        1,
        ReplicaOptions {
            slot: true,
            logical_slot: true,
            conf: vec!["max_slot_wal_keep_size = '1GB'".into()],
        },
    )
    .await;
    let replica = &set.replicas[0];
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &set.config("")).await;
    let physical = [("target", "primary"), ("slot_name", "replica1")];
    let logical = [("target", "primary"), ("slot_name", LOGICAL_SLOT)];
    let m = agent
        .wait_for(WAIT, "replica1's slot active", |m| {
            m.get("pg_replication_slot_active", &physical)
                .filter(|a| *a == 1.0)
                .map(|_| m.clone())
        })
        .await;
    let slot_type = |m: &crate::harness::metrics::Metrics, labels: &[(&str, &str)]| {
        m.find("pg_replication_slot_active", labels)
            .next()
            .map(|s| s.labels["slot_type"].clone())
    };
    assert_eq!(slot_type(&m, &physical).as_deref(), Some("physical"));
    assert_eq!(slot_type(&m, &logical).as_deref(), Some("logical"));
    assert_eq!(m.get("pg_replication_slot_active", &logical), Some(0.0));
    let safe_before = m
        .get("pg_replication_slot_safe_wal_size_bytes", &physical)
        .expect("safe_wal_size with max_slot_wal_keep_size set");
    assert!(
        safe_before > 0.0 && safe_before <= 1.2 * 1024.0 * 1024.0 * 1024.0,
        "{safe_before}"
    );
    let mut reserved = physical.to_vec();
    reserved.push(("wal_status", "reserved"));
    assert_eq!(
        m.get("pg_replication_slot_wal_status_info", &reserved),
        Some(1.0)
    );

    // The replica goes away; its slot keeps every byte written since.
    replica.stop();
    write_wal(&set.primary.pg.connect().await, 20).await;
    let m = agent
        .wait_for(WAIT, "the stopped replica's slot retains 20 MB", |m| {
            let active = m.get("pg_replication_slot_active", &physical)?;
            let retained = m.get("pg_replication_slot_retained_bytes", &physical)?;
            (active == 0.0 && retained >= 20.0 * MB).then(|| m.clone())
        })
        .await;
    // The unconsumed logical slot holds at least as much.
    assert!(
        m.get("pg_replication_slot_retained_bytes", &logical)
            .unwrap()
            >= 20.0 * MB
    );
    // And the room left before the slot is invalidated shrank with it.
    let safe_after = m
        .get("pg_replication_slot_safe_wal_size_bytes", &physical)
        .unwrap();
    assert!(
        safe_after <= safe_before - 19.0 * MB,
        "{safe_before} -> {safe_after}"
    );

    // Back: it streams again and releases the WAL.
    replica.start();
    replica.wait_streaming().await;
    agent
        .wait_for(WAIT, "the slot active and caught up", |m| {
            let active = m.get("pg_replication_slot_active", &physical)?;
            let retained = m.get("pg_replication_slot_retained_bytes", &physical)?;
            (active == 1.0 && retained < 1.0 * MB).then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_turns_into_a_primary_without_a_restart() {
    let set = replicated(1, ReplicaOptions::default()).await;
    let replica = &set.replicas[0];
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &set.config("")).await;
    agent
        .wait_for(WAIT, "replica1 in recovery and streaming", |m| {
            m.get("pg_replica_wal_receiver_connected", &on("replica1"))
                .filter(|v| *v == 1.0)
        })
        .await;
    replica.promote().await;
    let m = agent
        .wait_for(WAIT, "replica1 out of recovery", |m| {
            m.get("pg_in_recovery", &on("replica1"))
                .filter(|v| *v == 0.0)
                .map(|_| m.clone())
        })
        .await;
    // Replica-side families go with the role, within the same cycle or the
    // next; the agent was not restarted.
    let m = if m.get("pg_replica_replay_paused", &on("replica1")).is_some() {
        agent
            .wait_for(Duration::from_secs(5), "replica metrics gone", |m| {
                m.get("pg_replica_replay_paused", &on("replica1"))
                    .is_none()
                    .then(|| m.clone())
            })
            .await
    } else {
        m
    };
    for family in [
        "pg_replica_replay_lag_seconds",
        "pg_replica_replay_lag_bytes",
        "pg_replica_wal_receiver_connected",
    ] {
        assert_eq!(m.get(family, &on("replica1")), None, "{family}");
    }
    assert_eq!(
        m.get("pg_replication_connected_replicas", &on("replica1")),
        Some(0.0)
    );
    // The old primary lost its replica.
    agent
        .wait_for(WAIT, "the primary without replicas", |m| {
            m.get("pg_replication_connected_replicas", &on("primary"))
                .filter(|n| *n == 0.0)
        })
        .await;
    assert_eq!(
        agent.metrics().await.get(
            "pgvigil_collector_success",
            &[("target", "replica1"), ("collector", "replication")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_position_and_checkpoints_count_what_the_server_did() {
    let fx = Fixture::start().await;
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let m = agent
        .wait_for(WAIT, "WAL and checkpoint metrics", |m| {
            m.get("pg_checkpoints_requested_total", &[])
                .and(m.get("pg_wal_lsn_bytes_total", &[]))
                .map(|_| m.clone())
        })
        .await;
    let lsn_before = m.get("pg_wal_lsn_bytes_total", &[]).unwrap();
    let requested_before = m.get("pg_checkpoints_requested_total", &[]).unwrap();
    let checkpoint_writes_before = m
        .get("pg_buffers_written_total", &[("by", "checkpoint")])
        .unwrap();
    let segments = m.get("pg_wal_segments", &[]).unwrap();
    let size = m.get("pg_wal_size_bytes", &[]).unwrap();
    assert!(segments >= 1.0);
    // Segments are 16 MB by default; the directory holds little else.
    assert!(
        size >= segments * 16.0 * 1024.0 * 1024.0,
        "{size} bytes in {segments} segments"
    );
    let admin = fx.pg.connect().await;
    let server_lsn: f64 = admin
        .query_one("SELECT (pg_current_wal_lsn() - '0/0')::float8", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        lsn_before <= server_lsn && lsn_before > 0.0,
        "{lsn_before} vs {server_lsn}"
    );

    write_wal(&admin, 10).await;
    admin.batch_execute("CHECKPOINT").await.unwrap();
    let m = agent
        .wait_for(WAIT, "10 MB of WAL and one more checkpoint", |m| {
            let lsn = m.get("pg_wal_lsn_bytes_total", &[])?;
            let requested = m.get("pg_checkpoints_requested_total", &[])?;
            (lsn >= lsn_before + 10.0 * MB && requested >= requested_before + 1.0)
                .then(|| m.clone())
        })
        .await;
    // The checkpoint wrote the table's dirty buffers (at least the bulk
    // insert's ring, 1/8 of shared_buffers = 256 buffers).
    let written = m
        .get("pg_buffers_written_total", &[("by", "checkpoint")])
        .unwrap();
    assert!(
        written >= checkpoint_writes_before + 200.0,
        "{checkpoint_writes_before} -> {written}"
    );
    assert!(m.get("pg_checkpoint_write_seconds_total", &[]).is_some());
    assert!(m.get("pg_checkpoint_sync_seconds_total", &[]).is_some());
    assert!(m.get("pg_checkpoints_timed_total", &[]).is_some());
}
