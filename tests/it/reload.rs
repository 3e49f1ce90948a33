//! Reload without restart: SIGHUP and `POST /-/reload` re-read the config
//! and the certificate. Targets added and removed, a target whose password
//! file changed rebuilt, the untouched one left running on the same
//! connection, a renewed certificate served, a broken file refused with
//! its key paths while the old config keeps running, and the endpoint
//! behind the same credentials as the rest.

use std::time::Duration;

use crate::harness::certs::{certificate_der, make_certs, renew_server_cert, served_certificate};
use crate::harness::{
    Client, Fixture, Metrics, RunningAgent, eventually, outputs, pgvigil, unix_now,
};

const WAIT: Duration = Duration::from_secs(30);

/// A `[[target]]` section for `fx` named `name`, password from its file.
fn target(fx: &Fixture, name: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\ndsn = \"{}\"\npassword_file = \"{}\"\n",
        fx.dsn(),
        fx.password_file().display()
    )
}

/// Targets, then 1 s collector intervals, then `rest` (e.g. `[web]`).
fn config(targets: &[String], rest: &str) -> String {
    format!(
        "{}\n[collectors]\ndefault_interval = \"1s\"\n\n{rest}\n",
        targets.join("\n")
    )
}

/// The server's own view: pids of pgvigil's backends in the target's own
/// database (the DSN's `postgres`). Collectors that read every database
/// (tables, schema, amcheck) also open a short visit to each other one
/// (`only_on_second` here) every interval; those come and go and are not
/// the target's session.
async fn agent_backends(fx: &Fixture) -> Vec<i32> {
    let rows = fx
        .pg
        .connect()
        .await
        .query(
            "SELECT pid FROM pg_stat_activity
              WHERE application_name = 'pgvigil' AND datname = 'postgres'
              ORDER BY pid",
            &[],
        )
        .await
        .expect("pg_stat_activity");
    rows.iter().map(|r| r.get(0)).collect()
}

/// Whether any backend of pgvigil's is left at `fx`, visits included.
async fn agent_left(fx: &Fixture) -> bool {
    let row = fx
        .pg
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgvigil'",
            &[],
        )
        .await
        .expect("pg_stat_activity");
    row.get::<_, i64>(0) == 0
}

fn reloaded(m: &Metrics) -> Option<f64> {
    m.get("pgvigil_config_last_reload_successful", &[])
}

fn loaded_at(m: &Metrics) -> f64 {
    m.get("pgvigil_config_last_reload_success_timestamp_seconds", &[])
        .expect("the last successful load's time is always published")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_added_and_removed_leaves_the_other_running() {
    let main = Fixture::start().await;
    let second = Fixture::start_distinct().await;
    second
        .pg
        .connect()
        .await
        .batch_execute("CREATE DATABASE only_on_second")
        .await
        .unwrap();
    let agent =
        RunningAgent::start(&main.pg.scratch(), &config(&[target(&main, "main")], "")).await;
    agent
        .wait_for(WAIT, "main up", |m| {
            (m.get("pg_up", &[("target", "main")]) == Some(1.0)).then_some(())
        })
        .await;
    let before = agent.metrics().await;
    assert_eq!(reloaded(&before), Some(1.0), "set at start");
    let started_at = loaded_at(&before);
    let main_backends = agent_backends(&main).await;
    assert_eq!(main_backends.len(), 1, "one session for main");

    // Add a target by editing the file and sending SIGHUP.
    agent.rewrite_config(&config(
        &[target(&main, "main"), target(&second, "second")],
        "",
    ));
    agent.hangup();
    let seen = agent
        .wait_for(WAIT, "the second target's databases", |m| {
            m.get(
                "pg_database_size_bytes",
                &[("target", "second"), ("datname", "only_on_second")],
            )
            .map(|_| m.clone())
        })
        .await;
    assert_eq!(seen.get("pg_up", &[("target", "second")]), Some(1.0));
    // What the test created exists only on the second server.
    assert_eq!(
        seen.get(
            "pg_database_size_bytes",
            &[("target", "main"), ("datname", "only_on_second")]
        ),
        None
    );
    assert_eq!(reloaded(&seen), Some(1.0));
    assert!(loaded_at(&seen) >= started_at);
    // main kept its connection (the server says so), so nothing of its
    // state was rebuilt.
    assert_eq!(agent_backends(&main).await, main_backends);
    assert_eq!(agent_backends(&second).await.len(), 1);

    // Remove it again, over HTTP: the answer comes after the change.
    agent.rewrite_config(&config(&[target(&main, "main")], ""));
    let response = agent.request("POST", "/-/reload").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response.body.contains("removed second") && response.body.contains("kept main"),
        "{}",
        response.body
    );
    let after = agent.metrics().await;
    assert!(
        after
            .find("pg_up", &[("target", "second")])
            .next()
            .is_none()
            && after
                .find("pgvigil_collector_success", &[("target", "second")])
                .next()
                .is_none(),
        "the removed target's series are gone at once"
    );
    assert_eq!(after.get("pg_up", &[("target", "main")]), Some(1.0));
    eventually(WAIT, "the second server sees pgvigil leave", || async {
        agent_left(&second).await.then_some(())
    })
    .await;
    assert_eq!(agent_backends(&main).await, main_backends);
    // And main keeps being collected.
    let last = |m: &Metrics| {
        m.get(
            "pgvigil_collector_last_success_timestamp_seconds",
            &[("target", "main"), ("collector", "server")],
        )
    };
    let then = last(&after).expect("main's server collector has run");
    agent
        .wait_for(WAIT, "main collected after the reload", |m| {
            last(m).filter(|t| *t > then)
        })
        .await;
    assert!(agent.log().contains("config reloaded"));

    // Many reloads leave no connection behind: each removal closes the
    // second target's session, and main's stays the one it had.
    let with_second = config(&[target(&main, "main"), target(&second, "second")], "");
    let without = config(&[target(&main, "main")], "");
    let rss = |m: &Metrics| m.get("process_resident_memory_bytes", &[]).unwrap_or(0.0);
    let rss_before = rss(&agent.metrics().await);
    let started = std::time::Instant::now();
    for _ in 0..CYCLES {
        for text in [&with_second, &without] {
            agent.rewrite_config(text);
            let r = agent.request("POST", "/-/reload").await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
    eventually(WAIT, "no session of the removed target left", || async {
        agent_left(&second).await.then_some(())
    })
    .await;
    assert_eq!(agent_backends(&main).await, main_backends);
    let rss_after = rss(&agent.metrics().await);
    eprintln!(
        "{CYCLES} add/remove reload pairs in {:?}; resident memory {:.1} MB -> {:.1} MB",
        started.elapsed(),
        rss_before / 1e6,
        rss_after / 1e6
    );
}

/// Add/remove reload pairs in the leak check.
const CYCLES: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_file_rebuilds_the_target_with_the_new_password() {
    let fx = Fixture::start().await;
    let text = config(&[target(&fx, "main")], "");
    let agent = RunningAgent::start(&fx.pg.scratch(), &text).await;
    agent
        .wait_for(WAIT, "up with the first password", |m| {
            (m.get("pg_up", &[("target", "main")]) == Some(1.0)).then_some(())
        })
        .await;
    let old_backends = agent_backends(&fx).await;
    assert_eq!(old_backends.len(), 1);

    // The file changes first (as a secret rotation writes it), the role's
    // password after: until then the rebuilt target cannot log in, which
    // proves it reads the new file.
    let new_password = "rotated-Secret-2";
    std::fs::write(
        fx.pg.scratch().join("pgvigil.password"),
        format!("{new_password}\n"),
    )
    .unwrap();
    let response = agent.request("POST", "/-/reload").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response.body.contains("rebuilt main"), "{}", response.body);
    agent
        .wait_for(
            WAIT,
            "pg_up 0 with a password the role does not have",
            |m| (m.get("pg_up", &[("target", "main")]) == Some(0.0)).then_some(()),
        )
        .await;
    fx.pg
        .connect()
        .await
        .batch_execute(&format!("ALTER ROLE pgvigil PASSWORD '{new_password}'"))
        .await
        .unwrap();
    agent
        .wait_for(WAIT, "pg_up 1 with the new password", |m| {
            (m.get("pg_up", &[("target", "main")]) == Some(1.0)).then_some(())
        })
        .await;
    let new_backends = agent_backends(&fx).await;
    assert_eq!(new_backends.len(), 1, "the old session was closed");
    assert_ne!(new_backends, old_backends, "a new session");
    let log = agent.log();
    assert!(!log.contains(new_password) && !log.contains(&fx.password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_keeps_the_old_one_running_and_names_its_keys() {
    let fx = Fixture::start().await;
    let good = config(&[target(&fx, "main")], "");
    let agent = RunningAgent::start(&fx.pg.scratch(), &good).await;
    let last = |m: &Metrics| {
        m.get(
            "pgvigil_collector_last_success_timestamp_seconds",
            &[("target", "main"), ("collector", "server")],
        )
    };
    agent.wait_for(WAIT, "main collected", |m| last(m)).await;
    let loaded = loaded_at(&agent.metrics().await);

    // Two mistakes: both are reported, with their key paths.
    let broken = good
        .replace("default_interval = \"1s\"", "default_interval = \"soon\"")
        .replace("[[target]]\n", "[[target]]\nbogus_key = 1\n");
    agent.rewrite_config(&broken);
    let response = agent.request("POST", "/-/reload").await;
    assert_eq!(response.status, 500, "{}", response.body);
    for key in ["collectors.default_interval", "target[0].bogus_key"] {
        assert!(response.body.contains(key), "{key} in {}", response.body);
        assert!(agent.log().contains(key), "{key} in the log");
    }
    // check-config says the same of the same file.
    let out = pgvigil(&["check-config", agent.config_file.to_str().unwrap()], &[]);
    let (_, stderr) = outputs(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("collectors.default_interval") && stderr.contains("target[0].bogus_key")
    );

    let failed = agent.metrics().await;
    assert_eq!(reloaded(&failed), Some(0.0));
    assert_eq!(loaded_at(&failed), loaded, "the last success did not move");
    // The old config keeps running.
    let then = last(&failed).expect("main's state is kept");
    agent
        .wait_for(WAIT, "main still collected", |m| {
            last(m).filter(|t| *t > then)
        })
        .await;

    // SIGHUP with the file still broken: refused again (logged once more),
    // the process alive.
    let failures = |log: &str| log.matches("config reload failed").count();
    let logged = failures(&agent.log());
    agent.hangup();
    eventually(WAIT, "the SIGHUP reload refused", || async {
        (failures(&agent.log()) > logged).then_some(())
    })
    .await;
    let mut agent = agent;
    assert!(agent.is_running());
    assert_eq!(reloaded(&agent.metrics().await), Some(0.0));

    // Fixed: success again, and a newer load time.
    agent.rewrite_config(&good);
    agent.hangup();
    let fixed = agent
        .wait_for(WAIT, "reload successful again", |m| {
            (reloaded(m) == Some(1.0)).then(|| loaded_at(m))
        })
        .await;
    assert!(fixed > loaded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_needs_credentials_and_renews_users_and_the_certificate() {
    let fx = Fixture::start().await;
    let certs = tempfile_dir(&fx);
    make_certs(&certs);
    let hash = |pw: &str| bcrypt::hash(pw, 4).unwrap();
    let web = |users: &str| {
        format!(
            "[web]\nbasic_auth_users = {{ {users} }}\ntls_cert_file = '{}'\ntls_key_file = '{}'\n",
            certs.join("server.crt").display(),
            certs.join("server.key").display()
        )
    };
    let first = config(
        &[target(&fx, "main")],
        &web(&format!("prometheus = '{}'", hash("one"))),
    );
    let https = Client::https(&certs.join("ca.crt"));
    let agent = RunningAgent::start_with_client(
        &fx.pg.scratch(),
        &first,
        &[],
        https.clone().basic_auth("prometheus", "one"),
    )
    .await;
    let original = certificate_der(&certs.join("server.crt"));
    assert_eq!(
        served_certificate(agent.addr, &certs.join("ca.crt")).await,
        original
    );

    // Without or with wrong credentials: refused, nothing reloaded.
    for client in [https.clone(), https.clone().basic_auth("prometheus", "two")] {
        let r = client
            .request(agent.addr, "POST", "/-/reload", &[])
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{}", r.body);
    }
    // GET is not a reload.
    let r = agent.request("GET", "/-/reload").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert!(!agent.log().contains("config reloaded"));

    // Renew the certificate in place and change the user's password.
    renew_server_cert(&certs);
    let renewed = certificate_der(&certs.join("server.crt"));
    assert_ne!(renewed, original);
    agent.rewrite_config(&config(
        &[target(&fx, "main")],
        &web(&format!("prometheus = '{}'", hash("two"))),
    ));
    let r = agent.request("POST", "/-/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("kept main"),
        "web changes rebuild no target: {}",
        r.body
    );
    assert_eq!(
        served_certificate(agent.addr, &certs.join("ca.crt")).await,
        renewed
    );
    let old = https
        .clone()
        .basic_auth("prometheus", "one")
        .request(agent.addr, "GET", "/metrics", &[])
        .await
        .unwrap();
    assert_eq!(old.status, 401, "the old password no longer works");
    let new = https
        .basic_auth("prometheus", "two")
        .request(agent.addr, "GET", "/metrics", &[])
        .await
        .unwrap();
    assert_eq!(new.status, 200);
    assert_eq!(
        Metrics::parse(&new.body).get("pgvigil_config_last_reload_successful", &[]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_reports_the_config_it_loaded() {
    let fx = Fixture::start().await;
    let file = fx.pg.scratch().join("once.toml");
    std::fs::write(&file, config(&[target(&fx, "main")], "")).unwrap();
    let started = unix_now();
    let out = pgvigil(
        &[
            "once",
            "--config",
            file.to_str().unwrap(),
            "--format",
            "prometheus",
        ],
        &[],
    );
    let finished = unix_now();
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let m = Metrics::parse(&stdout);
    assert_eq!(reloaded(&m), Some(1.0));
    let at = loaded_at(&m);
    assert!(
        (started..=finished).contains(&at),
        "{started} <= {at} <= {finished}"
    );
}

fn tempfile_dir(fx: &Fixture) -> std::path::PathBuf {
    let dir = fx.pg.scratch().join("web-certs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
