//! The primary's view of its walsenders (`pg_replication_*`): replicas
//! that share an `application_name` and an address, and walsenders that
//! are not replicas (a logical consumer, a base backup, a WAL archiver).
//! Ground truth: the primary's own pg_stat_replication, and which replica
//! the test paused.

use super::{MB, WAIT, on};
use crate::harness::replica::{
    LOGICAL_SLOT, ReplicaOptions, ReplicationClient, replicated, write_wal,
};
use crate::harness::{Metrics, RunningAgent};

const INFO: &str = "pg_replication_replica_info";

/// The labels of one of the twins: both stream as `walreceiver` (the
/// default) over the Unix socket ("local"); only the slot differs.
fn twin(slot: &str) -> [(&str, &str); 4] {
    [
        ("target", "primary"),
        ("application_name", "walreceiver"),
        ("client_addr", "local"),
        ("slot_name", slot),
    ]
}

/// `labels` plus `kind`.
fn kind<'a>(labels: &[(&'a str, &'a str)], kind: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut labels = labels.to_vec();
    labels.push(("kind", kind));
    labels
}

/// The state in the info series of the walsender with these labels.
fn state(m: &Metrics, labels: &[(&str, &str)]) -> Option<String> {
    let mut found = m.find(INFO, labels);
    let state = found.next()?.labels["state"].clone();
    assert!(found.next().is_none(), "more than one walsender {labels:?}");
    Some(state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walsenders_are_told_apart_by_slot_and_only_physical_replicas_count() {
    let set = replicated(
        2,
        ReplicaOptions {
            slot: true,
            logical_slot: true,
            application_name: Some("walreceiver".into()),
            // The raw replication clients below never answer keepalives.
            conf: vec!["wal_sender_timeout = 0".into()],
            ..Default::default()
        },
    )
    .await;
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &set.config("")).await;
    let primary = set.primary.pg.connect().await;
    agent
        .wait_for(WAIT, "both twins streaming, each with its lag", |m| {
            ["replica1", "replica2"]
                .iter()
                .all(|slot| {
                    state(m, &twin(slot)).as_deref() == Some("streaming")
                        && m.get("pg_replication_lag_seconds", &kind(&twin(slot), "replay"))
                            .is_some()
                })
                .then_some(())
        })
        .await;

    // Walsenders that are not replicas.
    let _logical = ReplicationClient::logical(&set.primary.pg, LOGICAL_SLOT).await;
    let _backup = ReplicationClient::base_backup(&set.primary.pg).await;
    let _archiver = ReplicationClient::wal_stream(&set.primary.pg).await;
    let logical = [
        ("target", "primary"),
        ("application_name", "logical_consumer"),
        ("slot_name", LOGICAL_SLOT),
    ];
    let backup = [
        ("target", "primary"),
        ("application_name", "base_backup"),
        ("slot_name", ""),
    ];
    let archiver = [
        ("target", "primary"),
        ("application_name", "wal_archiver"),
        ("slot_name", ""),
    ];
    let m = agent
        .wait_for(WAIT, "all five walsenders", |m| {
            let ready = state(m, &logical).is_some()
                && state(m, &backup).as_deref() == Some("backup")
                && state(m, &archiver).as_deref() == Some("streaming");
            ready.then(|| m.clone())
        })
        .await;
    let truth: String = primary
        .query_one(
            "SELECT string_agg(application_name || ':' || coalesce(s.slot_name::text, '-'), ','
                               ORDER BY application_name, s.slot_name)
               FROM pg_stat_replication r
               LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        truth,
        "base_backup:-,logical_consumer:logical_slot,wal_archiver:-,walreceiver:replica1,walreceiver:replica2"
    );
    assert_eq!(m.find(INFO, &on("primary")).count(), 5);
    // Two physical replicas, not five walsenders.
    assert_eq!(
        m.get("pg_replication_connected_replicas", &on("primary")),
        Some(2.0)
    );
    // What is not measured is absent: a WAL archiver sends no feedback, a
    // base backup streams no WAL.
    for labels in [&archiver, &backup] {
        assert_eq!(m.find("pg_replication_lag_seconds", labels).count(), 0);
        assert_eq!(m.get("pg_replication_lag_bytes", labels), None);
    }
    assert!(
        m.get("pg_replication_lsn_lag_bytes", &kind(&archiver, "sent"))
            .is_some()
    );

    // One twin paused, 5 MB written: the primary tells which one lags.
    set.replicas[1].pause_replay().await;
    write_wal(&primary, 5).await;
    set.replicas[0].wait_caught_up(&set.primary.pg).await;
    let m = agent
        .wait_for(WAIT, "replica2's slot 5 MB behind, replica1's not", |m| {
            let paused = m.get("pg_replication_lag_bytes", &twin("replica2"))?;
            let streaming = m.get("pg_replication_lag_bytes", &twin("replica1"))?;
            (paused >= 5.0 * MB && streaming < 0.1 * MB).then(|| m.clone())
        })
        .await;
    let behind: f64 = primary
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8
               FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid
              WHERE s.slot_name = 'replica2'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(behind >= 5.0 * MB, "{behind}");
    assert_eq!(
        m.get("pg_replication_connected_replicas", &on("primary")),
        Some(2.0)
    );
    crate::harness::promtool_check(&agent.get("/metrics").await.body);
}
