//! Replication, slots, WAL and checkpoints on real primary/replica pairs:
//! the cases peers get wrong. Replica lag as the replica sees it (an idle
//! primary, a paused replica, a slow or silent link, a stopped primary, a
//! replica fed from an archive) is in [`replica_lag`]; the primary's view
//! of its walsenders (twins, logical consumers, base backups) in
//! [`walsenders`]; a switchover (timeline, role-change and restart rules on
//! the recorded series) in [`failover`]; logical replication between two
//! clusters, both ends, in [`logical`]; here a stopped replica holding its slot, a promotion,
//! WAL and checkpoints.
//!
//! Ground truth comes from the servers' own views and the test's clock,
//! and each value is checked both on a long-running agent and on a fresh
//! `pgvigil once` where the issue was that they differed.

use std::time::Duration;

use crate::harness::replica::{LOGICAL_SLOT, Replica, ReplicaOptions, replicated, write_wal};
use crate::harness::{Fixture, Metrics, RunningAgent, outputs, pgvigil};

mod failover;
mod logical;
mod replica_lag;
mod walsenders;

const WAIT: Duration = Duration::from_secs(60);
const MB: f64 = 1_000_000.0;

fn on(target: &str) -> [(&str, &str); 1] {
    [("target", target)]
}

/// `pgvigil once --dsn` on `replica` (a fresh agent), checked with
/// promtool; returns its metrics.
async fn once(replica: &Replica) -> Metrics {
    let dsn = replica.dsn();
    let env = replica.once_env();
    let out = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pgvigil(&["once", "--dsn", &dsn, "--format", "prometheus"], &env)
    })
    .await
    .expect("run pgvigil once");
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    crate::harness::promtool_check(&stdout);
    Metrics::parse(&stdout)
}

/// Scrapes until `target`'s replication collector has run entirely after
/// `after` (a Unix time): its queries then saw the server after `after`,
/// and before the scrape returned.
async fn collected_after(agent: &RunningAgent, target: &str, after: f64) -> Metrics {
    let labels = [("target", target), ("collector", "replication")];
    agent
        .wait_for(WAIT, &format!("a replication run on {target}"), |m| {
            let done = m.get("pgvigil_collector_last_success_timestamp_seconds", &labels)?;
            let took = m.get("pgvigil_collector_duration_seconds", &labels)?;
            (done - took > after).then(|| m.clone())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_slot_holding_wal_stands_out() {
    let set = replicated(
        1,
        ReplicaOptions {
            slot: true,
            logical_slot: true,
            conf: vec!["max_slot_wal_keep_size = '1GB'".into()],
            ..Default::default()
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
        "pg_replica_wal_receiver_last_message_age_seconds",
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
