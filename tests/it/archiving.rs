//! WAL archiving signals in the conditions that hide a risk: archiving
//! failing after the archiver's statistics were reset (the last archive
//! time is gone), and status files that are not WAL segments.

use std::time::Duration;

use crate::harness::pg::chown_to_postgres;
use crate::harness::{Fixture, Metrics, PgOptions, RunningAgent, outputs, pgvigil};

const WAIT: Duration = Duration::from_secs(60);

async fn seconds(client: &tokio_postgres::Client, sql: &str) -> f64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_archiver_counts_the_risk_from_the_reset_not_from_the_start() {
    let fx = Fixture::start_with(PgOptions {
        conf: vec![
            "archive_mode = on".into(),
            "archive_command = 'false'".into(),
        ],
    })
    .await;
    let admin = fx.pg.connect().await;
    // Old enough that "since the server started" is clearly not "since
    // the reset".
    tokio::time::sleep(Duration::from_secs(12)).await;

    // A timeline history file and a backup history file waiting to be
    // archived: not WAL segments, not data at risk.
    let wal = fx.pg.data_dir().join("pg_wal");
    let status = wal.join("archive_status");
    for name in [
        "00000002.history",
        "000000010000000000000001.00000028.backup",
    ] {
        std::fs::write(wal.join(name), "not WAL\n").unwrap();
        std::fs::write(status.join(format!("{name}.ready")), "").unwrap();
        chown_to_postgres(&wal.join(name));
        chown_to_postgres(&status.join(format!("{name}.ready")));
    }
    // Two segments that cannot be archived.
    admin
        .batch_execute("CREATE TABLE churn (n int)")
        .await
        .unwrap();
    for _ in 0..2 {
        admin
            .batch_execute(
                "INSERT INTO churn SELECT generate_series(1, 1000); SELECT pg_switch_wal()",
            )
            .await
            .unwrap();
    }
    admin
        .batch_execute("SELECT pg_stat_reset_shared('archiver')")
        .await
        .unwrap();
    let reset_at = seconds(&admin, "SELECT extract(epoch FROM now())::float8").await;
    let started_at = seconds(
        &admin,
        "SELECT extract(epoch FROM pg_postmaster_start_time())::float8",
    )
    .await;

    let check = |m: &Metrics, what: &str| {
        let rpo = m.get("pg_archiver_rpo_seconds", &[]).expect(what);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            rpo > 0.0 && rpo <= now - reset_at + 1.0,
            "{what}: RPO {rpo} s, reset {:.1} s ago, server up {:.1} s",
            now - reset_at,
            now - started_at
        );
        // Ground truth: the segments' status files as the directory has them.
        let segments = std::fs::read_dir(&status)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 30 && n.ends_with(".ready"))
            .count() as f64;
        assert!(segments >= 2.0, "{segments}");
        assert_eq!(
            m.get("pg_archiver_pending_segments", &[]),
            Some(segments),
            "{what}"
        );
    };

    // A fresh `pgvigil once` and a running agent agree.
    let env = fx.once_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = pgvigil(
        &["once", "--dsn", &fx.dsn(), "--format", "prometheus"],
        &env,
    );
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    check(&Metrics::parse(&stdout), "once");
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    let m = agent
        .wait_for(WAIT, "the archiver's readings", |m| {
            m.get("pg_archiver_rpo_seconds", &[]).map(|_| m.clone())
        })
        .await;
    check(&m, "run");
}
