//! PgBouncer through its admin console, with a real PgBouncer in front of a
//! throwaway cluster: waiting clients, several PgBouncers, failures.

use std::time::Duration;

use tokio::sync::watch;

use crate::harness::bouncer::{ADMIN, APP, Bouncer, MAX_CLIENT_CONN, NOBODY, STATS};
use crate::harness::{Fixture, RunningAgent};

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_the_pool_wait_and_stop_waiting_when_released() {
    let fx = Fixture::start().await;
    let bouncer = Bouncer::start(&fx.pg, 2).await;
    let agent = RunningAgent::start(
        &fx.pg.scratch(),
        &fx.config_with(&bouncer.target_table(None, ADMIN, false), ""),
    )
    .await;
    // A lone, unnamed PgBouncer still names itself, as a second one would.
    agent
        .wait_for(WAIT, "pgbouncer_up 1", |m| {
            m.get(
                "pgbouncer_up",
                &[("target", "main"), ("pgbouncer", "pgbouncer")],
            )
            .filter(|v| *v == 1.0)
        })
        .await;

    // 10 transactions held open through a pool of 2.
    let (release, released) = watch::channel(false);
    let mut clients = Vec::new();
    for _ in 0..10 {
        let dsn = bouncer.dsn(APP.0, "appdb");
        let mut released = released.clone();
        clients.push(tokio::spawn(async move {
            let mut config: tokio_postgres::Config = dsn.parse().unwrap();
            config.password(APP.1);
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute("BEGIN; SELECT 1").await.unwrap();
            released.wait_for(|r| *r).await.unwrap();
            client.batch_execute("COMMIT").await.unwrap();
        }));
    }
    let pool = [
        ("pgbouncer", "pgbouncer"),
        ("database", "appdb"),
        ("user", APP.0),
    ];
    let m = agent
        .wait_for(WAIT, "8 waiting clients", |m| {
            let waiting = m.get("pgbouncer_pools_client_waiting_connections", &pool)?;
            let maxwait = m.get("pgbouncer_pools_client_maxwait_seconds", &pool)?;
            (waiting >= 8.0 && maxwait > 0.0).then(|| m.clone())
        })
        .await;
    assert_eq!(
        m.get("pgbouncer_pools_server_active_connections", &pool),
        Some(2.0)
    );
    assert_eq!(
        m.get("pgbouncer_pools_client_active_connections", &pool),
        Some(2.0)
    );
    assert_eq!(
        m.get("pgbouncer_databases_pool_size", &[("name", "appdb")]),
        Some(2.0)
    );
    assert_eq!(
        m.get("pgbouncer_config_max_client_connections", &[]),
        Some(f64::from(MAX_CLIENT_CONN))
    );
    // Sub-second waits are visible: microseconds are kept.
    let maxwait = m
        .get("pgbouncer_pools_client_maxwait_seconds", &pool)
        .unwrap();
    assert!(maxwait.fract() != 0.0, "{maxwait}");
    // Saturation across layers: the pool is full and clients queue behind
    // it, while PostgreSQL itself has room.
    let doc: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/saturation").await.body).unwrap();
    let saturation = &doc["targets"][0]["saturation"];
    let busiest = &saturation["pools"][0];
    assert_eq!(busiest["pgbouncer"], "pgbouncer", "{doc}");
    assert_eq!(busiest["database"], "appdb", "{doc}");
    assert_eq!(busiest["user"], APP.0);
    assert!(busiest["clients_waiting"].as_f64().unwrap() >= 8.0, "{doc}");
    assert_eq!(busiest["servers_used"], 2.0);
    assert_eq!(busiest["pool_size"], 2.0);
    assert_eq!(busiest["ratio"], 1.0);
    // The oldest wait is there too, not 0 (it was, when the family was
    // looked up by a misspelled name).
    let api_maxwait = busiest["maxwait_seconds"].as_f64().unwrap();
    assert!(api_maxwait > 0.0 && api_maxwait.fract() != 0.0, "{doc}");
    let pg = &saturation["postgres"];
    let max: f64 = fx
        .pg
        .connect()
        .await
        .query_one("SHOW max_connections", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap();
    assert_eq!(pg["max_connections"], max, "{doc}");
    assert_eq!(
        pg["usable"].as_f64().unwrap(),
        max - pg["reserved"].as_f64().unwrap()
    );
    // The two pooled server connections and the agent's own are counted.
    assert!(pg["used"].as_f64().unwrap() >= 3.0, "{doc}");
    release.send(true).unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let m = agent
        .wait_for(WAIT, "no waiting client", |m| {
            m.get("pgbouncer_pools_client_waiting_connections", &pool)
                .filter(|n| *n == 0.0)
                .map(|_| m.clone())
        })
        .await;
    assert!(
        m.get(
            "pgbouncer_stats_totals_sql_transactions_pooled_total",
            &[("database", "appdb")]
        )
        .unwrap()
            >= 10.0
    );
    assert!(
        m.get(
            "pgbouncer_stats_totals_client_wait_seconds_total",
            &[("database", "appdb")]
        )
        .unwrap()
            > 0.0
    );
    crate::harness::promtool_check(&agent.get("/metrics").await.body);

    // The table shows saturation across layers.
    let out = crate::harness::pgvigil(
        &[
            "once",
            "--config",
            &write(
                &fx,
                &fx.config_with(&bouncer.target_table(None, ADMIN, false), ""),
            ),
            "--format",
            "table",
            "--interval",
            "100ms",
        ],
        &[],
    );
    let (stdout, stderr) = crate::harness::outputs(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("pools:")
            && stdout.contains("POOL SIZE")
            && stdout
                .lines()
                .any(|l| l.contains("appdb") && l.contains(APP.0)),
        "{stdout}"
    );
}

fn write(fx: &Fixture, config: &str) -> String {
    let file = fx.pg.scratch().join("once.toml");
    std::fs::write(&file, config).unwrap();
    file.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pgbouncer_reports_on_its_own_and_failures_stay_local() {
    let fx = Fixture::start().await;
    let bouncer = Bouncer::start(&fx.pg, 2).await;
    let down = Bouncer::unreachable(&fx.pg).await;
    let tables = [
        bouncer.target_table(Some("admin"), ADMIN, true),
        bouncer.target_table(Some("stats"), STATS, true),
        bouncer.target_table(Some("nobody"), NOBODY, true),
        bouncer.target_table(Some("wrongpw"), (ADMIN.0, "not-the-password"), true),
        down.target_table(Some("down"), ADMIN, true),
    ]
    .join("\n");
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config_with(&tables, "")).await;
    let m = agent
        .wait_for(WAIT, "every pgbouncer collector to report", |m| {
            let all = ["admin", "stats", "nobody", "wrongpw", "down"]
                .iter()
                .all(|n| m.get("pgbouncer_up", &[("pgbouncer", n)]).is_some());
            // The server collector too: pg_up is known before its first run ends.
            let server = m.get("pgvigil_collector_success", &[("collector", "server")]);
            (all && m.get("pg_up", &[]).is_some() && server.is_some()).then(|| m.clone())
        })
        .await;
    for (name, up) in [
        ("admin", 1.0),
        ("stats", 1.0),
        ("nobody", 0.0),
        ("wrongpw", 0.0),
        ("down", 0.0),
    ] {
        assert_eq!(
            m.get("pgbouncer_up", &[("pgbouncer", name)]),
            Some(up),
            "{name}"
        );
        let collector = format!("pgbouncer:{name}");
        assert_eq!(
            m.get("pgvigil_collector_success", &[("collector", &collector)]),
            Some(up),
            "{name}"
        );
    }
    // A stats user sees the pools too.
    assert!(
        m.get(
            "pgbouncer_databases_pool_size",
            &[("pgbouncer", "stats"), ("name", "appdb")]
        )
        .is_some()
    );
    assert_eq!(m.get("pg_up", &[]), Some(1.0));
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "server")]),
        Some(1.0)
    );
    let log = agent.log();
    assert!(log.contains("password authentication failed"), "{log}");
    assert!(
        log.contains("not allowed") || log.contains("no such user"),
        "{log}"
    );
    assert!(log.contains("onnection refused"), "{log}");
    assert!(!log.contains("admin-pw") && !log.contains("stats-pw"));

    // A PgBouncer keeps reporting when PostgreSQL is gone.
    fx.pg.stop();
    let m = agent
        .wait_for(WAIT, "pg_up 0", |m| {
            m.get("pg_up", &[]).filter(|v| *v == 0.0).map(|_| m.clone())
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m2 = agent.metrics().await;
    assert_eq!(
        m2.get("pgbouncer_up", &[("pgbouncer", "admin")]),
        Some(1.0),
        "{m:?}"
    );
    fx.pg.restart_stopped();
}
