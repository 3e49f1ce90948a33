//! pgbouncer_exporter compatibility: against a real PgBouncer, pgvigil
//! publishes the names and label sets of prometheus-community's
//! pgbouncer_exporter (plus its own `target` and `pgbouncer`), and the
//! values follow from PgBouncer's config and from PAUSE and DISABLE.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::bouncer::{ADMIN, APP, Bouncer, MAX_CLIENT_CONN};
use crate::harness::{Fixture, Metrics, RunningAgent};

const WAIT: Duration = Duration::from_secs(40);

/// The labels of every `pgbouncer_databases_*` series.
const DATABASES: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_mode",
];
/// The labels of every `pgbouncer_pools_*` series.
const POOLS: &[&str] = &["database", "user"];
/// The labels of every `pgbouncer_stats_totals_*` series.
const TOTALS: &[&str] = &["database"];

/// The contract: every series name pgbouncer_exporter 0.11.1 publishes
/// (prometheus-community/pgbouncer_exporter, tag v0.11.1, collector.go:
/// `metricMaps`, `listsMap`, `configMap`, `bouncerVersionDesc`,
/// `scrapeSuccessDesc`), its labels, and the PgBouncer version (major,
/// minor) whose SHOW output first has the column it comes from. Left out:
/// `pgbouncer_stats_totals_queries_total`, from the `requests` column of
/// PgBouncer before 1.8, which 0.11 no longer supports; and 0.12's
/// `pgbouncer_client_connections` (SHOW CLIENTS by application_name and
/// state), which pgvigil does not publish.
const EXPORTER: &[(&str, &[&str], (u32, u32))] = &[
    ("pgbouncer_up", &[], (1, 8)),
    ("pgbouncer_version_info", &["version"], (1, 8)),
    ("pgbouncer_databases_pool_size", DATABASES, (1, 8)),
    ("pgbouncer_databases_reserve_pool", DATABASES, (1, 8)),
    ("pgbouncer_databases_max_connections", DATABASES, (1, 8)),
    ("pgbouncer_databases_current_connections", DATABASES, (1, 8)),
    ("pgbouncer_databases_paused", DATABASES, (1, 8)),
    ("pgbouncer_databases_disabled", DATABASES, (1, 8)),
    (
        "pgbouncer_stats_totals_queries_pooled_total",
        TOTALS,
        (1, 8),
    ),
    (
        "pgbouncer_stats_totals_queries_duration_seconds_total",
        TOTALS,
        (1, 8),
    ),
    (
        "pgbouncer_stats_totals_received_bytes_total",
        TOTALS,
        (1, 8),
    ),
    ("pgbouncer_stats_totals_sent_bytes_total", TOTALS, (1, 8)),
    (
        "pgbouncer_stats_totals_client_wait_seconds_total",
        TOTALS,
        (1, 8),
    ),
    (
        "pgbouncer_stats_totals_sql_transactions_pooled_total",
        TOTALS,
        (1, 8),
    ),
    (
        "pgbouncer_stats_totals_server_in_transaction_seconds_total",
        TOTALS,
        (1, 8),
    ),
    (
        "pgbouncer_stats_totals_client_parses_total",
        TOTALS,
        (1, 21),
    ),
    (
        "pgbouncer_stats_totals_server_parses_total",
        TOTALS,
        (1, 21),
    ),
    ("pgbouncer_stats_totals_binds_total", TOTALS, (1, 21)),
    (
        "pgbouncer_stats_totals_server_assignments_total",
        TOTALS,
        (1, 23),
    ),
    ("pgbouncer_pools_client_active_connections", POOLS, (1, 8)),
    (
        "pgbouncer_pools_client_active_cancel_connections",
        POOLS,
        (1, 18),
    ),
    ("pgbouncer_pools_client_waiting_connections", POOLS, (1, 8)),
    (
        "pgbouncer_pools_client_waiting_cancel_connections",
        POOLS,
        (1, 18),
    ),
    ("pgbouncer_pools_server_active_connections", POOLS, (1, 8)),
    (
        "pgbouncer_pools_server_active_cancel_connections",
        POOLS,
        (1, 18),
    ),
    (
        "pgbouncer_pools_server_being_canceled_connections",
        POOLS,
        (1, 18),
    ),
    ("pgbouncer_pools_server_idle_connections", POOLS, (1, 8)),
    ("pgbouncer_pools_server_used_connections", POOLS, (1, 8)),
    ("pgbouncer_pools_server_testing_connections", POOLS, (1, 8)),
    ("pgbouncer_pools_server_login_connections", POOLS, (1, 8)),
    ("pgbouncer_pools_client_maxwait_seconds", POOLS, (1, 8)),
    ("pgbouncer_databases", &[], (1, 8)),
    ("pgbouncer_users", &[], (1, 8)),
    ("pgbouncer_pools", &[], (1, 8)),
    ("pgbouncer_free_clients", &[], (1, 8)),
    ("pgbouncer_used_clients", &[], (1, 8)),
    ("pgbouncer_login_clients", &[], (1, 8)),
    ("pgbouncer_free_servers", &[], (1, 8)),
    ("pgbouncer_used_servers", &[], (1, 8)),
    ("pgbouncer_cached_dns_names", &[], (1, 8)),
    ("pgbouncer_cached_dns_zones", &[], (1, 8)),
    ("pgbouncer_in_flight_dns_queries", &[], (1, 8)),
    ("pgbouncer_config_max_client_connections", &[], (1, 8)),
    ("pgbouncer_config_max_user_connections", &[], (1, 8)),
];

/// "PgBouncer 1.18.0" → (1, 18).
fn major_minor(version: &str) -> (u32, u32) {
    let number = version
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no version number in {version:?}"));
    let mut parts = number.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// Every exporter name this PgBouncer can feed is there with exactly the
/// exporter's labels plus pgvigil's own; the newer ones are absent, not 0;
/// and pgvigil publishes no `pgbouncer_` name the exporter does not.
fn assert_contract(m: &Metrics, version: (u32, u32)) {
    let mut expected = BTreeSet::new();
    for (name, labels, since) in EXPORTER {
        let samples: Vec<_> = m.find(name, &[]).collect();
        if version < *since {
            assert!(samples.is_empty(), "{name} needs PgBouncer {since:?}");
            continue;
        }
        expected.insert(name.to_string());
        assert!(!samples.is_empty(), "{name} missing");
        let mut want: BTreeSet<&str> = labels.iter().copied().collect();
        want.extend(["target", "pgbouncer"]);
        for s in samples {
            let got: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
            assert_eq!(got, want, "{name}: {:?}", s.labels);
        }
    }
    let published: BTreeSet<String> = m
        .samples
        .iter()
        .filter(|s| s.name.starts_with("pgbouncer_"))
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(
        published, expected,
        "pgbouncer_ names outside the exporter's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_exporter_names_labels_and_values() {
    let fx = Fixture::start().await;
    // A second database with every per-database setting the exporter labels
    // or reports, and limits that differ from the defaults.
    let reportdb = format!(
        "reportdb = host=127.0.0.1 port={} dbname=postgres user={} pool_mode=session pool_size=5 reserve_pool=4 max_db_connections=7",
        fx.pg.port, APP.0
    );
    let bouncer = Bouncer::start_with(
        &fx.pg,
        2,
        &[&reportdb],
        &["reserve_pool_size = 3", "max_user_connections = 9"],
    )
    .await;
    let version = bouncer.admin("SHOW VERSION").await[0]["version"].clone();
    let table = bouncer.target_table(None, ADMIN, false);
    let config = fx.config_with(&table, "");
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;

    // A client through appdb makes its pool (and a server connection).
    let mut client_config: tokio_postgres::Config = bouncer.dsn(APP.0, "appdb").parse().unwrap();
    client_config.password(APP.1);
    let (client, connection) = client_config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await.unwrap();

    let reportdb = [("name", "reportdb")];
    let appdb = [("name", "appdb")];
    let before = agent
        .wait_for(WAIT, "reportdb running and the app pool", |m| {
            let paused = m.get("pgbouncer_databases_paused", &reportdb)?;
            let pool = [("database", "appdb"), ("user", APP.0)];
            m.get("pgbouncer_pools_server_idle_connections", &pool)?;
            (paused == 0.0).then(|| m.clone())
        })
        .await;
    assert_eq!(
        before.get("pgbouncer_databases_disabled", &appdb),
        Some(0.0)
    );

    bouncer.admin("PAUSE reportdb").await;
    bouncer.admin("DISABLE appdb").await;
    let m = agent
        .wait_for(WAIT, "reportdb paused, appdb disabled", |m| {
            let paused = m.get("pgbouncer_databases_paused", &reportdb)?;
            let disabled = m.get("pgbouncer_databases_disabled", &appdb)?;
            (paused == 1.0 && disabled == 1.0).then(|| m.clone())
        })
        .await;
    assert_contract(&m, major_minor(&version));
    assert_eq!(m.get("pgbouncer_databases_paused", &appdb), Some(0.0));
    assert_eq!(m.get("pgbouncer_databases_disabled", &reportdb), Some(0.0));

    // PgBouncer's database is `name`, the server's is `database`, with
    // where it lives, who it logs in as and how it pools.
    let port = fx.pg.port.to_string();
    let labels = [
        ("name", "reportdb"),
        ("host", "127.0.0.1"),
        ("port", port.as_str()),
        ("database", "postgres"),
        ("force_user", APP.0),
        ("pool_mode", "session"),
        ("pgbouncer", "pgbouncer"),
        ("target", "main"),
    ];
    assert_eq!(m.get("pgbouncer_databases_pool_size", &labels), Some(5.0));
    assert_eq!(
        m.get("pgbouncer_databases_reserve_pool", &labels),
        Some(4.0)
    );
    assert_eq!(
        m.get("pgbouncer_databases_max_connections", &labels),
        Some(7.0)
    );
    // appdb takes the harness's pool size and the global reserve pool.
    assert_eq!(m.get("pgbouncer_databases_pool_size", &appdb), Some(2.0));
    assert_eq!(m.get("pgbouncer_databases_reserve_pool", &appdb), Some(3.0));
    assert_eq!(
        m.get("pgbouncer_config_max_client_connections", &[]),
        Some(f64::from(MAX_CLIENT_CONN))
    );
    assert_eq!(
        m.get("pgbouncer_config_max_user_connections", &[]),
        Some(9.0)
    );
    assert_eq!(
        m.get("pgbouncer_version_info", &[("version", version.as_str())]),
        Some(1.0)
    );
    // The lists, against PgBouncer's own rows: appdb, reportdb and the
    // console's own database; the app pool and the console user's.
    let databases = bouncer.admin("SHOW DATABASES").await.len();
    assert_eq!(databases, 3);
    assert_eq!(m.get("pgbouncer_databases", &[]), Some(databases as f64));
    let pools = bouncer.admin("SHOW POOLS").await.len();
    assert_eq!(m.get("pgbouncer_pools", &[]), Some(pools as f64));
    crate::harness::promtool_check(&agent.get("/metrics").await.body);

    // A fresh `pgvigil once` reads the same state.
    let file = fx.pg.scratch().join("compat-once.toml");
    std::fs::write(&file, &config).unwrap();
    let out = crate::harness::pgvigil(
        &[
            "once",
            "--config",
            file.to_str().unwrap(),
            "--format",
            "prometheus",
        ],
        &[],
    );
    let (stdout, stderr) = crate::harness::outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let once = Metrics::parse(&stdout);
    assert_eq!(once.get("pgbouncer_databases_paused", &reportdb), Some(1.0));
    assert_eq!(once.get("pgbouncer_databases_disabled", &appdb), Some(1.0));
    assert_eq!(
        once.get("pgbouncer_databases_reserve_pool", &reportdb),
        Some(4.0)
    );
}
