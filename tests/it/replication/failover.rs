//! Failover awareness on a real switchover: the primary stops cleanly, its
//! replica is promoted under a running agent, and the old primary comes back
//! as a replica of the new one. Ground truth: each server's own
//! `pg_is_in_recovery()` and the timeline in a primary's current WAL file's
//! name.
//! The role-change and restart rules are then checked by promtool on a test
//! built from the series the agent published at each step.

use std::fmt::Write as _;

use super::{WAIT, on, once};
use crate::harness::pg::{PgOptions, chown_to_postgres};
use crate::harness::replica::{ReplicaOptions, replicated};
use crate::harness::{Metrics, RunningAgent, outputs};

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/pgvigil.rules.yml");

/// The families the failover rules read, per target.
const FAMILIES: [&str; 3] = [
    "pg_in_recovery",
    "pg_postmaster_start_time_seconds",
    "pg_system_identifier_info",
];

/// The timeline of the WAL file a primary writes: the first 8 hex digits
/// of its name.
async fn wal_timeline(client: &tokio_postgres::Client) -> f64 {
    let name: String = client
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await
        .expect("pg_walfile_name")
        .get(0);
    u32::from_str_radix(&name[..8], 16).expect("a timeline") as f64
}

async fn in_recovery(client: &tokio_postgres::Client) -> bool {
    client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("pg_is_in_recovery")
        .get(0)
}

/// One step of the switchover as the agent published it.
struct Step {
    /// Minutes from the start of the promtool test.
    start: usize,
    metrics: Metrics,
}

/// The promtool input series of one family and target over `steps`, each
/// step lasting `minutes`: the recorded value, or a staleness marker then
/// nothing once the agent stopped publishing it (as Prometheus records a
/// series that left the scrape).
fn input_series(steps: &[Step], minutes: usize, family: &str, target: &str) -> Option<String> {
    let mut labels = None;
    let mut values = Vec::new();
    let mut was_present = false;
    let labels_of = on(target);
    for step in steps {
        let sample = step.metrics.find(family, &labels_of).next();
        for i in 0..minutes {
            match sample {
                Some(s) => {
                    labels.get_or_insert_with(|| s.labels.clone());
                    values.push(format!("{}", s.value));
                    was_present = true;
                }
                None if was_present && i == 0 => {
                    values.push("stale".into());
                    was_present = false;
                }
                None => values.push("_".into()),
            }
        }
    }
    let labels = labels?;
    let mut text = String::from("instance=\"agent:9932\", job=\"pgvigil\"");
    for (k, v) in &labels {
        let _ = write!(text, ", {k}=\"{v}\"");
    }
    Some(format!(
        "      - series: '{family}{{{text}}}'\n        values: '{}'\n",
        values.join(" ")
    ))
}

/// A promql_expr_test: at `minute`, these alerts fire (labels besides
/// alertname and alertstate), and no others of that name.
fn firing(alert: &str, minute: usize, labels: &[String]) -> String {
    let mut text = format!(
        "      - expr: ALERTS{{alertname=\"{alert}\", alertstate=\"firing\"}}\n        eval_time: {minute}m\n        exp_samples:"
    );
    if labels.is_empty() {
        text.push_str(" []\n");
    } else {
        text.push('\n');
        for l in labels {
            let _ = writeln!(
                text,
                "          - labels: 'ALERTS{{alertname=\"{alert}\", alertstate=\"firing\", {l}}}'\n            value: 1"
            );
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_shows_as_a_new_timeline_and_the_role_change_rules_fire() {
    let mut set = replicated(
        1,
        ReplicaOptions {
            // Replay cancels conflicting queries on the replica quickly.
            conf: vec!["max_standby_streaming_delay = '100ms'".into()],
            ..Default::default()
        },
    )
    .await;
    let agent = RunningAgent::start(&set.primary.pg.scratch(), &set.config("")).await;
    let both = |m: &Metrics| {
        ["primary", "replica1"]
            .iter()
            .all(|t| m.get("pg_timeline_id", &on(t)).is_some())
    };
    let steady = agent
        .wait_for(WAIT, "both servers' timelines", |m| {
            both(m).then(|| m.clone())
        })
        .await;
    let sysid = |m: &Metrics, target: &str| {
        m.find("pg_system_identifier_info", &on(target))
            .next()
            .map(|s| s.labels["system_identifier"].clone())
    };
    let cluster = sysid(&steady, "primary").expect("the primary's system identifier");
    assert_eq!(
        sysid(&steady, "replica1").as_deref(),
        Some(cluster.as_str())
    );
    let truth: i64 = set
        .primary
        .pg
        .connect()
        .await
        .query_one("SELECT system_identifier FROM pg_control_system()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(cluster, truth.to_string());
    let replica = &set.replicas[0];
    let before = wal_timeline(&set.primary.pg.connect().await).await;
    assert_eq!(steady.get("pg_timeline_id", &on("primary")), Some(before));
    assert_eq!(steady.get("pg_timeline_id", &on("replica1")), Some(before));

    // While it is a replica: a query holding a lock that replay needs is
    // cancelled, a recovery conflict of kind `lock`; and replay prefetches
    // (15+). The primary publishes neither.
    let primary = set.primary.pg.connect().await;
    primary
        .batch_execute("CREATE TABLE conflict_t (n int); INSERT INTO conflict_t VALUES (1)")
        .await
        .unwrap();
    replica.wait_caught_up(&set.primary.pg).await;
    let reader = replica.connect().await;
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM conflict_t")
        .await
        .unwrap();
    primary
        .batch_execute("DROP TABLE conflict_t")
        .await
        .unwrap();
    replica.wait_caught_up(&set.primary.pg).await;
    assert!(
        reader.batch_execute("SELECT 1").await.is_err(),
        "the reader's transaction survived a conflicting DROP TABLE"
    );
    // The cancelled backend reports the conflict to the statistics; before
    // 15 through the collector process, which counts it a moment later.
    let own = replica.connect().await;
    let conflicts: i64 =
        crate::harness::eventually(WAIT, "the replica counting the conflict", || async {
            own.batch_execute("SELECT pg_stat_clear_snapshot()")
                .await
                .unwrap();
            let n: i64 = own
                .query_one(
                    "SELECT confl_lock FROM pg_stat_database_conflicts WHERE datname = 'postgres'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (n >= 1).then_some(n)
        })
        .await;
    let lock = [
        ("target", "replica1"),
        ("datname", "postgres"),
        ("kind", "lock"),
    ];
    let m = agent
        .wait_for(WAIT, "the lock conflict on replica1", |m| {
            (m.get("pg_database_conflicts_total", &lock) == Some(conflicts as f64))
                .then(|| m.clone())
        })
        .await;
    let kinds: Vec<String> = m
        .find(
            "pg_database_conflicts_total",
            &[("target", "replica1"), ("datname", "postgres")],
        )
        .map(|s| s.labels["kind"].clone())
        .collect();
    let mut expected = vec!["tablespace", "lock", "snapshot", "bufferpin", "deadlock"];
    if crate::harness::pg::major_version() >= 16 {
        expected.push("logicalslot");
    }
    assert_eq!(kinds, expected);
    assert!(
        m.find("pg_database_conflicts_total", &on("primary"))
            .next()
            .is_none()
    );
    if crate::harness::pg::major_version() >= 15 {
        let examined: f64 = own
            .query_one(
                "SELECT (prefetch + hit + skip_init + skip_new + skip_fpw + skip_rep)::float8
                   FROM pg_stat_recovery_prefetch",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(examined > 0.0, "replay examined no block");
        agent
            .wait_for(WAIT, "replica1's prefetch counters", |m| {
                (m.sum("pg_recovery_prefetch_blocks_total", &on("replica1"))? >= examined)
                    .then_some(())
            })
            .await;
        let m = agent.metrics().await;
        assert!(
            m.get("pg_recovery_prefetch_io_depth", &on("replica1"))
                .is_some()
        );
        assert!(
            m.get("pg_recovery_prefetch_wal_distance_bytes", &on("replica1"))
                .is_some()
        );
        assert!(
            m.find("pg_recovery_prefetch_blocks_total", &on("primary"))
                .next()
                .is_none()
        );
    } else {
        assert!(
            m.find("pg_recovery_prefetch_blocks_total", &[])
                .next()
                .is_none()
        );
    }

    // The primary stops: the cluster has no primary.
    set.primary.pg.stop();
    let down = agent
        .wait_for(WAIT, "the primary's families gone", |m| {
            (m.get("pg_up", &on("primary")) == Some(0.0)
                && m.get("pg_in_recovery", &on("primary")).is_none())
            .then(|| m.clone())
        })
        .await;

    // Its replica is promoted: a new timeline, seen by the running agent
    // and by a fresh `pgvigil once`.
    replica.promote().await;
    let own = replica.connect().await;
    assert!(!in_recovery(&own).await);
    let after = wal_timeline(&own).await;
    assert_eq!(after, before + 1.0, "the promotion's new timeline");
    let promoted = agent
        .wait_for(WAIT, "replica1 a primary on the new timeline", |m| {
            (m.get("pg_in_recovery", &on("replica1")) == Some(0.0)
                && m.get("pg_timeline_id", &on("replica1")) == Some(after))
            .then(|| m.clone())
        })
        .await;
    let fresh = once(replica).await;
    assert_eq!(fresh.get("pg_timeline_id", &[]), Some(after));
    assert_eq!(fresh.get("pg_in_recovery", &[]), Some(0.0));

    // The old primary, shut down cleanly before the promotion, rejoins as
    // a replica of the new one: demoted, and restarted.
    let data = set.primary.pg.data_dir();
    let signal = data.join("standby.signal");
    std::fs::write(&signal, "").expect("standby.signal");
    chown_to_postgres(&signal);
    let conninfo = format!(
        "host={} port={} user=postgres dbname=postgres application_name=old_primary",
        replica.pg.socket_dir().display(),
        replica.port()
    );
    let port = set.primary.pg.port;
    set.primary.pg.take_over_port(
        port,
        &PgOptions {
            conf: vec![
                "wal_keep_size = '128MB'".into(),
                format!("primary_conninfo = '{conninfo}'"),
            ],
        },
    );
    assert!(in_recovery(&set.primary.pg.connect().await).await);
    let started_before = steady
        .get("pg_postmaster_start_time_seconds", &on("primary"))
        .unwrap();
    let demoted = agent
        .wait_for(WAIT, "the old primary back as a replica", |m| {
            let restarted = m.get("pg_postmaster_start_time_seconds", &on("primary"))?;
            (m.get("pg_in_recovery", &on("primary")) == Some(1.0) && restarted > started_before)
                .then(|| m.clone())
        })
        .await;
    assert_eq!(
        demoted.get("pg_postmaster_start_time_seconds", &on("replica1")),
        steady.get("pg_postmaster_start_time_seconds", &on("replica1")),
        "replica1 was promoted, not restarted"
    );
    drop(agent);

    // The rules on what the agent published at each step, 15 minutes each.
    const MINUTES: usize = 15;
    let steps: Vec<Step> = [steady, down, promoted, demoted]
        .into_iter()
        .enumerate()
        .map(|(i, metrics)| Step {
            start: i * MINUTES,
            metrics,
        })
        .collect();
    let mut series = String::new();
    for family in FAMILIES {
        for target in ["primary", "replica1"] {
            series += &input_series(&steps, MINUTES, family, target)
                .unwrap_or_else(|| panic!("{family} of {target} was never published"));
        }
    }
    let at = |target: &str, severity: &str| {
        vec![format!(
            "instance=\"agent:9932\", job=\"pgvigil\", severity=\"{severity}\", target=\"{target}\""
        )]
    };
    let cluster_alert = vec![format!(
        "severity=\"critical\", system_identifier=\"{cluster}\""
    )];
    let end = |step: usize| steps[step].start + MINUTES - 1;
    let start = |step: usize| steps[step].start + 1;
    let mut tests = String::new();
    for alert in [
        "PostgresClusterWithoutPrimary",
        "PostgresReplicaPromoted",
        "PostgresPrimaryDemoted",
        "PostgresRestarted",
    ] {
        tests += &firing(alert, end(0), &[]);
    }
    tests += &firing("PostgresClusterWithoutPrimary", end(1), &cluster_alert);
    tests += &firing("PostgresReplicaPromoted", end(1), &[]);
    tests += &firing("PostgresClusterWithoutPrimary", start(2), &[]);
    tests += &firing(
        "PostgresReplicaPromoted",
        start(2),
        &at("replica1", "warning"),
    );
    tests += &firing("PostgresPrimaryDemoted", start(2), &[]);
    tests += &firing(
        "PostgresPrimaryDemoted",
        start(3),
        &at("primary", "warning"),
    );
    tests += &firing("PostgresRestarted", start(3), &at("primary", "warning"));
    tests += &firing("PostgresClusterWithoutPrimary", start(3), &[]);
    let test = format!(
        "rule_files:\n  - {RULES}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}    promql_expr_test:\n{tests}"
    );
    let file = set.replicas[0].pg.scratch().join("failover-recorded.yml");
    std::fs::write(&file, &test).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool is required (scripts/test.sh installs the prometheus package)");
    let (stdout, stderr) = outputs(&out);
    assert!(
        out.status.success() && stdout.contains("SUCCESS"),
        "promtool test rules on the recorded series:\n{stdout}{stderr}\n---\n{test}"
    );
}
