//! Redis targets against Debian's redis-server, the agent logged in as the
//! least-privilege ACL user: exact hit and miss counts, evictions under
//! maxmemory, a replica whose master is gone, a failed save, the slow
//! log by entry id across an agent restart, TLS, a server that goes away
//! and comes back, `once`, `check-config`. PostgreSQL-version-independent.

use std::time::Duration;

use crate::harness::redis::{RedisServer, USER};
use crate::harness::{Metrics, RunningAgent, outputs, pgvigil};

const WAIT: Duration = Duration::from_secs(20);

fn get(m: &Metrics, name: &str, target: &str) -> Option<f64> {
    m.get(name, &[("target", target)])
}

#[tokio::test(flavor = "multi_thread")]
async fn hits_misses_evictions_and_commands_are_the_servers_own() {
    let redis = RedisServer::start(&["maxmemory 4mb", "maxmemory-policy allkeys-lru"]);
    // A known workload: 12 keys, 3 reads of each (36 hits), 7 misses.
    let mut cmds = String::new();
    for i in 0..12 {
        cmds.push_str(&format!("SET key:{i} v{i}\n"));
    }
    for _ in 0..3 {
        for i in 0..12 {
            cmds.push_str(&format!("GET key:{i}\n"));
        }
    }
    for i in 0..7 {
        cmds.push_str(&format!("GET missing:{i}\n"));
    }
    redis.pipe(&cmds);
    assert_eq!(redis.info("keyspace_hits").as_deref(), Some("36"));
    assert_eq!(redis.info("keyspace_misses").as_deref(), Some("7"));

    let dir = tempfile::tempdir().unwrap();
    let agent = RunningAgent::start(dir.path(), &redis.redis_table("cache")).await;
    let m = agent
        .wait_for(WAIT, "redis_keyspace_hits_total", |m| {
            m.get(
                "redis_commands_total",
                &[("target", "cache"), ("cmd", "get")],
            )
            .map(|_| m.clone())
        })
        .await;
    assert_eq!(get(&m, "redis_up", "cache"), Some(1.0));
    assert_eq!(get(&m, "redis_keyspace_hits_total", "cache"), Some(36.0));
    assert_eq!(get(&m, "redis_keyspace_misses_total", "cache"), Some(7.0));
    let hit_ratio = 36.0 / 43.0;
    let ours = get(&m, "redis_keyspace_hits_total", "cache").unwrap()
        / (get(&m, "redis_keyspace_hits_total", "cache").unwrap()
            + get(&m, "redis_keyspace_misses_total", "cache").unwrap());
    assert_eq!(ours, hit_ratio);
    assert_eq!(
        m.get("redis_db_keys", &[("target", "cache"), ("db", "db0")]),
        Some(12.0)
    );
    assert_eq!(
        m.get(
            "redis_commands_total",
            &[("target", "cache"), ("cmd", "get")]
        ),
        Some(43.0)
    );
    assert_eq!(
        m.get(
            "redis_commands_total",
            &[("target", "cache"), ("cmd", "set")]
        ),
        Some(12.0)
    );
    assert_eq!(
        get(&m, "redis_memory_max_bytes", "cache"),
        Some(4.0 * 1024.0 * 1024.0)
    );
    for q in ["p50", "p99", "p99.9"] {
        let p = m
            .get(
                "redis_latency_percentiles_seconds",
                &[("target", "cache"), ("cmd", "get"), ("percentile", q)],
            )
            .unwrap_or_else(|| panic!("latencystats p{q} of get"));
        assert!(p > 0.0 && p < 0.1, "{q}: {p}");
    }
    // Every collector works with only the ACL user's commands.
    for c in [
        "redis_info",
        "redis_replication",
        "redis_persistence",
        "redis_commands",
        "redis_slowlog",
        "redis_cluster",
    ] {
        assert_eq!(
            m.get(
                "pgvigil_collector_success",
                &[("target", "cache"), ("collector", c)]
            ),
            Some(1.0),
            "{c}: {}",
            agent.log()
        );
    }
    assert!(!agent.log().contains(USER.1), "the password was logged");

    // Evictions: 100 values of 64 KiB are 6.4 MB against 4 MB of
    // maxmemory. Ground truth: keys written minus keys left.
    let value = "x".repeat(64 * 1024);
    let mut big = String::new();
    for i in 0..100 {
        big.push_str(&format!("SET big:{i} {value}\n"));
    }
    redis.pipe(&big);
    let left: f64 = redis.cli(&["DBSIZE"]).trim().parse().unwrap();
    let evicted = 112.0 - left;
    assert!(evicted > 0.0, "nothing was evicted");
    assert_eq!(redis.info("evicted_keys"), Some(format!("{evicted}")));
    agent
        .wait_for(WAIT, "evictions counted", |m| {
            (get(m, "redis_evicted_keys_total", "cache") == Some(evicted)
                && m.get("redis_db_keys", &[("target", "cache"), ("db", "db0")]) == Some(left))
            .then_some(())
        })
        .await;

    // /api/v1/redis: the top commands by time, with percentiles.
    let api = agent.get("/api/v1/redis").await;
    assert_eq!(api.status, 200);
    let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    let top = json["targets"]["cache"]["commands"]["top"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", api.body));
    let set = top
        .iter()
        .find(|c| c["cmd"] == "set")
        .expect("set in the top");
    assert_eq!(set["calls"], 112.0);
    assert!(set["p99_seconds"].as_f64().is_some(), "{set}");
    // Saturation: clients against maxclients.
    let sat: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/saturation").await.body).unwrap();
    let clients = &sat["redis"]["cache"];
    assert_eq!(clients["max_clients"], 10000.0, "{sat}");
    assert!(
        clients["connected_clients"].as_f64().unwrap() >= 1.0,
        "{sat}"
    );
    // The / page shows the Redis section with the top commands.
    let page = agent.get("/").await.body;
    assert!(page.contains("<h3>Redis</h3><p>hit ratio 83.7%"), "{page}");
    assert!(page.contains("<td>set</td><td>112</td>"), "{page}");
    // The password is in no output.
    for path in [
        "/metrics",
        "/api/v1/redis",
        "/api/v1/saturation",
        "/",
        "/probe?target=cache",
    ] {
        assert!(!agent.get(path).await.body.contains(USER.1), "{path}");
    }
    // /probe keeps to the one target.
    let probe = agent.get("/probe?target=cache").await;
    assert!(
        probe
            .body
            .contains("redis_keyspace_hits_total{target=\"cache\"} 36"),
        "{}",
        probe.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_whose_master_is_gone_shows_its_link_down_for_longer_and_longer() {
    let mut master = RedisServer::start(&[]);
    let replica = RedisServer::start(&[&format!("replicaof 127.0.0.1 {}", master.port)]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}",
        master.redis_table("primary"),
        replica.redis_table("replica")
    );
    let agent = RunningAgent::start(dir.path(), &config).await;
    let port = master.port.to_string();
    let link = [
        ("target", "replica"),
        ("master_host", "127.0.0.1"),
        ("master_port", port.as_str()),
    ];
    agent
        .wait_for(WAIT, "the replica linked", |m| {
            (m.get("redis_master_link_up", &link) == Some(1.0)
                && get(m, "redis_connected_slaves", "primary") == Some(1.0))
            .then_some(())
        })
        .await;
    assert_eq!(master.info("connected_slaves").as_deref(), Some("1"));
    // Written on the primary, acknowledged by the replica: lag goes to 0.
    master.cli(&["SET", "k", "v"]);
    agent
        .wait_for(WAIT, "lag 0 bytes", |m| {
            m.find("redis_connected_slave_lag_bytes", &[("target", "primary")])
                .next()
                .filter(|s| s.value == 0.0)
                .map(|_| ())
        })
        .await;
    let m = agent.metrics().await;
    assert!(m.get("redis_master_last_io_seconds_ago", &link).is_some());

    master.stop();
    let first = agent
        .wait_for(WAIT, "link down", |m| {
            (m.get("redis_master_link_up", &link) == Some(0.0))
                .then(|| m.get("redis_master_link_down_since_seconds", &link))
                .flatten()
        })
        .await;
    assert_eq!(replica.info("master_link_status").as_deref(), Some("down"));
    let later = agent
        .wait_for(WAIT, "seconds growing", |m| {
            m.get("redis_master_link_down_since_seconds", &link)
                .filter(|s| *s >= first + 2.0)
        })
        .await;
    assert!(later >= first + 2.0);
    // The primary is gone: its redis_up says so, the replica's stays.
    let m = agent.metrics().await;
    assert_eq!(get(&m, "redis_up", "primary"), Some(0.0));
    assert_eq!(get(&m, "redis_up", "replica"), Some(1.0));
    assert!(
        m.get("redis_master_last_io_seconds_ago", &link).is_none(),
        "-1 (not known) is absent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_save_a_server_that_goes_away_and_the_slowlog_by_id() {
    let mut redis = RedisServer::start(&[
        "slowlog-log-slower-than 100000",
        "enable-debug-command local",
        "enable-protected-configs local",
    ]);
    // Three commands over 100 ms: slow-log entries 0, 1, 2.
    for _ in 0..3 {
        redis.cli(&["DEBUG", "SLEEP", "0.15"]);
    }
    // The RDB directory removed: the next background save fails.
    let gone = redis.dir().join("rdb");
    std::fs::create_dir(&gone).unwrap();
    redis.cli(&["CONFIG", "SET", "dir", gone.to_str().unwrap()]);
    std::fs::remove_dir(&gone).unwrap();
    redis.cli(&["SET", "k", "v"]);
    redis.cli(&["BGSAVE"]);
    crate::harness::eventually(WAIT, "bgsave failed", || async {
        (redis.info("rdb_last_bgsave_status").as_deref() == Some("err")).then_some(())
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let config = redis.redis_table("cache");
    let agent = RunningAgent::start(dir.path(), &config).await;
    let m = agent
        .wait_for(WAIT, "persistence and slowlog", |m| {
            (get(m, "redis_rdb_last_bgsave_status", "cache").is_some()
                && get(m, "redis_slowlog_entries_total", "cache").is_some())
            .then(|| m.clone())
        })
        .await;
    assert_eq!(get(&m, "redis_rdb_last_bgsave_status", "cache"), Some(0.0));
    assert_eq!(
        get(&m, "redis_rdb_changes_since_last_save", "cache"),
        Some(1.0)
    );
    assert_eq!(get(&m, "redis_aof_enabled", "cache"), Some(0.0));
    assert_eq!(get(&m, "redis_slowlog_entries_total", "cache"), Some(3.0));
    assert_eq!(get(&m, "redis_slowlog_length", "cache"), Some(3.0));
    let slowest = get(&m, "redis_slowlog_slowest_duration_seconds", "cache").unwrap();
    assert!((0.15..1.0).contains(&slowest), "{slowest}");
    // A restarted pgvigil counts nothing twice: the count is the server's.
    drop(agent);
    let agent = RunningAgent::start(dir.path(), &config).await;
    let m = agent
        .wait_for(WAIT, "slowlog after an agent restart", |m| {
            get(m, "redis_slowlog_entries_total", "cache").map(|_| m.clone())
        })
        .await;
    assert_eq!(get(&m, "redis_slowlog_entries_total", "cache"), Some(3.0));
    // And `once` reads the same.
    let file = dir.path().join("once.toml");
    std::fs::write(&file, &config).unwrap();
    let once = |format: &str| {
        let out = pgvigil(
            &[
                "once",
                "--config",
                file.to_str().unwrap(),
                "--format",
                format,
            ],
            &[],
        );
        let (stdout, stderr) = outputs(&out);
        assert!(out.status.success(), "{stderr}");
        stdout
    };
    let table = once("table");
    assert!(table.contains("target cache (redis): up"), "{table}");
    assert!(table.contains("slowest Redis slow-log entries"), "{table}");
    assert!(table.contains("debug"), "{table}");
    assert!(table.contains("top Redis commands by time"), "{table}");
    let text = once("prometheus");
    crate::harness::promtool_check(&text);
    let once = Metrics::parse(&text);
    // Every Redis family published is documented, and every one
    // documented as always present is published.
    let seen: std::collections::BTreeSet<String> = once.family_names().into_iter().collect();
    for (collector, descs) in pgvigil::registry::catalog() {
        for d in descs.iter().filter(|_| collector.starts_with("redis")) {
            if d.only_when.is_none() {
                assert!(
                    seen.contains(&d.exposed_name()),
                    "{} not published",
                    d.exposed_name()
                );
            }
        }
    }
    let documented: std::collections::BTreeSet<String> = pgvigil::registry::catalog()
        .flat_map(|(_, descs)| descs.iter().map(|d| d.exposed_name()))
        .collect();
    let undocumented: Vec<_> = seen.difference(&documented).collect();
    assert!(undocumented.is_empty(), "{undocumented:?}");
    assert_eq!(
        get(&once, "redis_slowlog_entries_total", "cache"),
        Some(3.0)
    );
    assert_eq!(
        get(&once, "redis_rdb_last_bgsave_status", "cache"),
        Some(0.0)
    );

    // /api/v1/redis names the slowest entries, by command only.
    let api: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/redis").await.body).unwrap();
    let slowest = &api["targets"]["cache"]["slowlog"]["slowest"];
    assert_eq!(slowest.as_array().map(Vec::len), Some(3), "{api}");
    assert_eq!(slowest[0]["command"], "debug", "{api}");
    assert_eq!(api["targets"]["cache"]["last_bgsave_ok"], false, "{api}");

    // Gone: redis_up 0 within an interval (1 s here), families absent, not stale.
    redis.stop();
    let stopped = std::time::Instant::now();
    agent
        .wait_for(WAIT, "redis_up 0", |m| {
            (get(m, "redis_up", "cache") == Some(0.0)
                && get(m, "redis_keyspace_hits_total", "cache").is_none())
            .then_some(())
        })
        .await;
    let down_after = stopped.elapsed();
    assert!(
        down_after < Duration::from_secs(4),
        "redis_up 0 after {down_after:?}"
    );
    // Back: reconnected, counters from the new server.
    redis.restart();
    redis.cli(&["GET", "nothing"]);
    let restarted = std::time::Instant::now();
    agent
        .wait_for(Duration::from_secs(45), "redis_up 1 again", |m| {
            (get(m, "redis_up", "cache") == Some(1.0)
                && get(m, "redis_keyspace_misses_total", "cache") == Some(1.0))
            .then_some(())
        })
        .await;
    eprintln!(
        "redis_up 0 after {down_after:?}; 1 again {:?} after the restart",
        restarted.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_is_verified_as_for_postgresql() {
    let certs = tempfile::tempdir().unwrap();
    crate::harness::certs::make_certs(certs.path());
    let redis = RedisServer::start_tls(certs.path());
    let pw = redis.password_file();
    let table = |name: &str, ca: &str| {
        format!(
            "[[redis]]\nname = \"{name}\"\nurl = \"rediss://localhost:{}?sslrootcert={}\"\nusername = \"{}\"\npassword_file = \"{}\"\n[redis.collectors]\nredis_info = \"1s\"\n",
            redis.port,
            certs.path().join(ca).display(),
            USER.0,
            pw.display()
        )
    };
    let config = format!(
        "{}{}",
        table("trusted", "ca.crt"),
        table("untrusted", "other.crt")
    );
    let dir = tempfile::tempdir().unwrap();
    let agent = RunningAgent::start(dir.path(), &config).await;
    agent
        .wait_for(WAIT, "one up, one refused", |m| {
            (get(m, "redis_up", "trusted") == Some(1.0)
                && get(m, "redis_up", "untrusted") == Some(0.0)
                && get(m, "redis_keyspace_hits_total", "trusted").is_some())
            .then_some(())
        })
        .await;
    assert!(agent.log().contains("certificate"), "{}", agent.log());
}

#[test]
fn check_config_names_the_redis_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[redis]]\nname = \"c\"\nurl = \"http://x\"\n[[redis]]\nname = \"c\"\nurl = \"redis://h\"\npassword_env = \"PGVIGIL_NO_SUCH_VAR\"\n",
    )
    .unwrap();
    let out = pgvigil(&["check-config", file.to_str().unwrap()], &[]);
    let (stdout, stderr) = outputs(&out);
    let text = format!("{stdout}{stderr}");
    assert!(!out.status.success());
    assert!(text.contains("redis[0].url"), "{text}");
    assert!(text.contains("redis[1].name"), "{text}");
    assert!(text.contains("redis[1].password_env"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_info_when_cluster_mode_is_on() {
    let redis = RedisServer::start(&["cluster-enabled yes", "cluster-config-file nodes.conf"]);
    // One node with every slot: the cluster is ok.
    assert_eq!(
        redis
            .cli(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
            .trim(),
        "OK"
    );
    crate::harness::eventually(WAIT, "cluster_state:ok", || async {
        redis
            .cli(&["CLUSTER", "INFO"])
            .contains("cluster_state:ok")
            .then_some(())
    })
    .await;
    let plain = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}",
        redis.redis_table("shard"),
        plain.redis_table("plain")
    );
    let agent = RunningAgent::start(dir.path(), &config).await;
    let m = agent
        .wait_for(WAIT, "cluster families", |m| {
            get(m, "redis_cluster_state", "shard").map(|_| m.clone())
        })
        .await;
    assert_eq!(get(&m, "redis_cluster_state", "shard"), Some(1.0));
    assert_eq!(
        get(&m, "redis_cluster_slots_assigned", "shard"),
        Some(16384.0)
    );
    assert_eq!(get(&m, "redis_cluster_slots_ok", "shard"), Some(16384.0));
    assert_eq!(get(&m, "redis_cluster_slots_fail", "shard"), Some(0.0));
    assert_eq!(get(&m, "redis_cluster_known_nodes", "shard"), Some(1.0));
    // Cluster mode off: nothing, and no failure.
    let m = agent
        .wait_for(WAIT, "the plain one's cluster collector ran", |m| {
            m.get(
                "pgvigil_collector_success",
                &[("target", "plain"), ("collector", "redis_cluster")],
            )
            .map(|_| m.clone())
        })
        .await;
    assert_eq!(
        m.get(
            "pgvigil_collector_success",
            &[("target", "plain"), ("collector", "redis_cluster")]
        ),
        Some(1.0)
    );
    assert_eq!(get(&m, "redis_cluster_state", "plain"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_redis_is_down_within_the_command_timeout_and_alone() {
    let frozen = RedisServer::start(&[]);
    let healthy = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[collectors]\ntimeout = \"2s\"\n{}{}",
        frozen.redis_table("frozen"),
        healthy.redis_table("healthy")
    );
    let agent = RunningAgent::start(dir.path(), &config).await;
    agent
        .wait_for(WAIT, "both up", |m| {
            (get(m, "redis_up", "frozen") == Some(1.0)
                && get(m, "redis_up", "healthy") == Some(1.0))
            .then_some(())
        })
        .await;
    frozen.freeze();
    let since = std::time::Instant::now();
    agent
        .wait_for(WAIT, "the frozen one down", |m| {
            (get(m, "redis_up", "frozen") == Some(0.0)).then_some(())
        })
        .await;
    let down_after = since.elapsed();
    // The 2 s command timeout plus a 1 s interval, and a scrape.
    assert!(down_after < Duration::from_secs(5), "{down_after:?}");
    let m = agent.metrics().await;
    assert_eq!(get(&m, "redis_up", "healthy"), Some(1.0));
    assert!(
        agent.log().contains("no answer within 2s"),
        "{}",
        agent.log()
    );
    frozen.thaw();
    agent
        .wait_for(Duration::from_secs(45), "the thawed one up", |m| {
            (get(m, "redis_up", "frozen") == Some(1.0)).then_some(())
        })
        .await;
    eprintln!("frozen Redis: redis_up 0 after {down_after:?}");
}
