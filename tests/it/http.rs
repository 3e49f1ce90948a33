//! The HTTP endpoints, served from stored snapshots.

use std::time::Duration;

use crate::harness::{Fixture, Metrics, RunningAgent, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_as_the_spec_says() {
    let fx = Fixture::start().await;
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    assert_eq!(agent.get("/healthz").await.status, 200);
    crate::harness::eventually(Duration::from_secs(30), "/readyz 200", || async {
        (agent.get("/readyz").await.status == 200).then_some(())
    })
    .await;

    let plain = agent.get("/metrics").await;
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(!plain.body.contains("# EOF"));
    crate::harness::promtool_check(&plain.body);
    let m = Metrics::parse(&plain.body);
    assert_eq!(m.get("pg_up", &[]), Some(1.0));
    assert!(
        m.get(
            "pgvigil_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        )
        .is_some()
    );

    let om = http(
        agent.addr,
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
    )
    .await
    .unwrap();
    assert_eq!(om.status, 200);
    assert!(
        om.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om.body.contains("# TYPE pg_database_xact_commit counter"));

    let probe = agent.get("/probe?target=main").await;
    assert_eq!(probe.status, 200);
    assert!(probe.body.contains("pg_up{target=\"main\"} 1"));
    assert!(
        !probe.body.contains("process_resident_memory_bytes"),
        "probe is one target only"
    );
    assert_eq!(agent.get("/probe?target=other").await.status, 404);
    assert_eq!(agent.get("/probe").await.status, 400);
    assert_eq!(agent.get("/nope").await.status, 404);
    assert_eq!(
        http(agent.addr, "POST", "/metrics", &[])
            .await
            .unwrap()
            .status,
        405
    );
    assert_eq!(
        http(agent.addr, "HEAD", "/metrics", &[])
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_never_reach_the_database() {
    let fx = Fixture::start().await;
    // Collect rarely, then scrape a lot: the agent's statement count must
    // not move with the scrapes.
    let agent = RunningAgent::start(
        &fx.pg.scratch(),
        &fx.config("")
            .replace("default_interval = \"1s\"", "default_interval = \"1h\""),
    )
    .await;
    crate::harness::eventually(Duration::from_secs(30), "/readyz 200", || async {
        (agent.get("/readyz").await.status == 200).then_some(())
    })
    .await;
    let admin = fx.pg.connect().await;
    let count = || async {
        let row = admin
            .query_one("SELECT coalesce(sum(calls), 0)::float8 FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = 'pgvigil'", &[])
            .await;
        row.map(|r| r.get::<_, f64>(0))
    };
    admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .unwrap();
    let before = count().await.unwrap();
    for _ in 0..50 {
        assert_eq!(agent.get("/metrics").await.status, 200);
    }
    let after = count().await.unwrap();
    assert_eq!(
        before,
        after,
        "scrapes caused {} statements",
        after - before
    );
}
