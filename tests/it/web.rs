//! `[web]`: basic authentication on every endpoint but the probes, HTTPS
//! with the configured certificate, and no secret in any output.

use std::time::{Duration, Instant};

use crate::harness::{Client, Fixture, RunningAgent, eventually, http, outputs, pgvigil};

/// Endpoints that need credentials once `basic_auth_users` is set (with
/// `/` and an unknown path: a refusal must not say what exists).
const PROTECTED: [&str; 8] = [
    "/metrics",
    "/probe?target=main",
    "/api/v1/statements",
    "/api/v1/plans",
    "/api/v1/saturation",
    "/api/v1/schema",
    "/",
    "/no-such-page",
];

fn with_web(fx: &Fixture, web: &str) -> String {
    format!("{}\n[web]\n{web}\n", fx.config(""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_guards_every_endpoint_but_the_probes() {
    let fx = Fixture::start().await;
    // Cost 10, what `htpasswd -B` makes by default.
    let hash = bcrypt::hash("scrape-pw", 10).unwrap();
    let config = with_web(
        &fx,
        &format!("basic_auth_users = {{ prometheus = '{hash}' }}"),
    );
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let right = Client::default().basic_auth("prometheus", "scrape-pw");

    // Probes work without credentials: the orchestrator has none.
    eventually(
        Duration::from_secs(30),
        "/readyz 200 without credentials",
        || async { (agent.get("/readyz").await.status == 200).then_some(()) },
    )
    .await;
    assert_eq!(agent.get("/healthz").await.status, 200);

    let refusals = [
        ("none", Client::default()),
        (
            "wrong password",
            Client::default().basic_auth("prometheus", "nope"),
        ),
        (
            "unknown user",
            Client::default().basic_auth("grafana", "scrape-pw"),
        ),
        (
            "empty password",
            Client::default().basic_auth("prometheus", ""),
        ),
        (
            "not basic",
            Client {
                authorization: Some("Bearer scrape-pw".into()),
                ..Client::default()
            },
        ),
        (
            "not base64",
            Client {
                authorization: Some("Basic !!!".into()),
                ..Client::default()
            },
        ),
    ];
    for path in PROTECTED {
        for (what, client) in &refusals {
            let r = client.request(agent.addr, "GET", path, &[]).await.unwrap();
            assert_eq!(r.status, 401, "{path} with {what}: {}", r.body);
            assert_eq!(
                r.header("www-authenticate"),
                Some("Basic realm=\"pgvigil\""),
                "{path} with {what}"
            );
            assert!(!r.body.contains("pg_up"), "{path} with {what}: {}", r.body);
        }
        let r = right.request(agent.addr, "GET", path, &[]).await.unwrap();
        assert_ne!(r.status, 401, "{path} with the right credentials");
    }
    // A method the server refuses is refused after authentication, not
    // before: without credentials nothing is revealed.
    assert_eq!(
        http(agent.addr, "POST", "/metrics", &[])
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        right
            .request(agent.addr, "POST", "/metrics", &[])
            .await
            .unwrap()
            .status,
        405
    );
    let metrics = right
        .request(agent.addr, "GET", "/metrics", &[])
        .await
        .unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("pg_up{target=\"main\"} 1"),
        "{}",
        metrics.body
    );
    for path in [
        "/api/v1/statements",
        "/api/v1/plans",
        "/api/v1/saturation",
        "/api/v1/schema",
    ] {
        let r = right.request(agent.addr, "GET", path, &[]).await.unwrap();
        assert_eq!(r.status, 200, "{path}");
        serde_json::from_str::<serde_json::Value>(&r.body).expect("JSON");
    }

    // Verified credentials are remembered: a scrape does not pay bcrypt's
    // cost again. Ten scrapes take less than five bcrypt checks would.
    let started = Instant::now();
    assert!(bcrypt::verify("scrape-pw", &hash).unwrap());
    let one_check = started.elapsed();
    let started = Instant::now();
    for _ in 0..10 {
        let r = right
            .request(agent.addr, "GET", "/metrics", &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let ten_scrapes = started.elapsed();
    println!(
        "one bcrypt check (cost 10): {one_check:?}; ten authenticated scrapes: {ten_scrapes:?}"
    );
    assert!(
        ten_scrapes < one_check * 5,
        "ten scrapes took {ten_scrapes:?}, one bcrypt check {one_check:?}: are verifications cached?"
    );
    let log = agent.log();
    assert!(
        !log.contains("scrape-pw") && !log.contains("panicked"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_configured_certificate() {
    let certs = tempfile::tempdir().unwrap();
    crate::harness::certs::make_certs(certs.path());
    let cert = certs.path().join("server.crt");
    let key = certs.path().join("server.key");
    let fx = Fixture::start().await;
    let hash = bcrypt::hash("scrape-pw", 4).unwrap();
    let config = with_web(
        &fx,
        &format!(
            "basic_auth_users = {{ prometheus = '{hash}' }}\ntls_cert_file = '{}'\ntls_key_file = '{}'",
            cert.display(),
            key.display()
        ),
    );
    let https = Client::https(&certs.path().join("ca.crt"));
    // Starting waits for /healthz over HTTPS, without credentials.
    let agent =
        RunningAgent::start_with_client(&fx.pg.scratch(), &config, &[], https.clone()).await;
    let authed = https.clone().basic_auth("prometheus", "scrape-pw");
    let m = eventually(Duration::from_secs(30), "pg_up 1 over HTTPS", || async {
        let r = authed
            .request(agent.addr, "GET", "/metrics", &[])
            .await
            .ok()?;
        (r.status == 200 && r.body.contains("pg_up{target=\"main\"} 1")).then_some(r)
    })
    .await;
    crate::harness::promtool_check(&m.body);
    assert_eq!(agent.get("/metrics").await.status, 401);

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = http(agent.addr, "GET", "/healthz", &[]).await;
    assert!(
        !matches!(&plain, Ok(r) if r.status != 0),
        "plain HTTP answered: {plain:?}"
    );
    // A client trusting another CA refuses the server.
    let stranger = Client::https(&certs.path().join("other.crt"));
    let refused = stranger.request(agent.addr, "GET", "/healthz", &[]).await;
    let error = refused.expect_err("a certificate from an untrusted CA was accepted");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
    // The server still serves after the failed handshakes.
    assert_eq!(agent.get("/healthz").await.status, 200);

    // check-config names the key of each TLS problem.
    let file = fx.pg.scratch().join("web.toml");
    let cases = [
        (
            format!("tls_cert_file = '{}'", cert.display()),
            "web.tls_key_file: required with tls_cert_file",
        ),
        (
            format!(
                "tls_cert_file = '{}'\ntls_key_file = '{}'",
                cert.display(),
                cert.display()
            ),
            "web.tls_key_file:",
        ),
        (
            format!(
                "tls_cert_file = '{}'\ntls_key_file = '{}'",
                certs.path().join("missing.crt").display(),
                key.display()
            ),
            "web.tls_cert_file:",
        ),
        (
            format!(
                "tls_cert_file = '{}'\ntls_key_file = '{}'",
                cert.display(),
                certs.path().join("other.key").display()
            ),
            "web.tls_cert_file: certificate and key cannot be used together",
        ),
    ];
    for (web, want) in cases {
        std::fs::write(&file, with_web(&fx, &web)).unwrap();
        let out = pgvigil(&["check-config", file.to_str().unwrap()], &[]);
        let (_, stderr) = outputs(&out);
        assert_eq!(out.status.code(), Some(1), "{web}: {stderr}");
        assert!(stderr.contains(want), "{web}: want {want:?} in {stderr}");
    }
    std::fs::write(
        &file,
        with_web(
            &fx,
            &format!(
                "tls_cert_file = '{}'\ntls_key_file = '{}'",
                cert.display(),
                key.display()
            ),
        ),
    )
    .unwrap();
    let out = pgvigil(&["check-config", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{:?}", outputs(&out));
}

/// Forms in which a secret could show up: as is, percent-encoded (in a
/// URI), and with its quotes escaped (in JSON or a label value).
fn spellings(secret: &str) -> Vec<String> {
    let encoded: String =
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let escaped = secret.replace('\\', "\\\\").replace('"', "\\\"");
    // The part before the first quote is distinctive on its own.
    let prefix = secret
        .split(['\'', '"'])
        .next()
        .unwrap_or(secret)
        .to_string();
    vec![secret.to_string(), encoded, escaped, prefix]
}

fn assert_clean(what: &str, text: &str, secrets: &[(&str, &str)]) {
    for (name, secret) in secrets {
        for spelling in spellings(secret) {
            assert!(
                !text.contains(&spelling),
                "{what} contains the {name} ({spelling:?}):\n{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_contains_the_password_the_dsn_or_a_literal() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    crate::harness::data::grant_reading(&admin).await;
    const LITERAL: &str = "secret-literal-42";
    admin
        .batch_execute(&format!(
            "CREATE TABLE ledger (id int, note text);
             INSERT INTO ledger SELECT g, 'row ' || g FROM generate_series(1, 50000) g;
             ANALYZE ledger;
             CREATE ROLE app LOGIN PASSWORD '{LITERAL}-role';
             GRANT ALL ON ledger TO app;"
        ))
        .await
        .unwrap();
    // Every statement counts as slow, so that the EXPLAIN worker samples
    // real parameter values from pg_stat_activity and publishes plans.
    let config = fx.config(
        "statements = { interval = \"1s\" }\n[explain]\nslow_threshold = \"1us\"\nper_statement_interval = \"1s\"\nmax_per_hour = 1000\n",
    );
    let agent =
        RunningAgent::start_with_env(&fx.pg.scratch(), &config, &[("RUST_LOG", "debug")]).await;
    // The workload: literals inline (the simple protocol), in reads,
    // writes, a function call and a utility statement.
    let app = fx.pg.connect().await;
    let load = tokio::spawn(async move {
        // One statement per query, so that pg_stat_activity shows each
        // with its values and the EXPLAIN worker can use them for ANALYZE.
        let statements = [
            format!("SELECT count(*) FROM ledger WHERE note <> '{LITERAL}' AND id > 10"),
            format!("SELECT id FROM ledger WHERE note = '{LITERAL}'"),
            format!("UPDATE ledger SET note = '{LITERAL}' WHERE id = 1"),
            format!("SELECT length('{LITERAL}'), upper('{LITERAL}')"),
            "SET application_name = 'leak-test'".to_string(),
        ];
        loop {
            for sql in &statements {
                app.batch_execute(sql).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // Wait until the workload went through every output: a statement
    // report naming the ledger, and a plan of one of its statements, run
    // with the values sampled from the workload where the server allows
    // (14+: EXPLAIN ANALYZE of the text with its literals).
    let want_mode = if crate::harness::pg::major_version() >= 14 {
        "analyze"
    } else {
        "generic"
    };
    eventually(
        Duration::from_secs(60),
        "the workload's statements and a plan",
        || async {
            let statements = agent.get("/api/v1/statements").await.body;
            let plans: serde_json::Value =
                serde_json::from_str(&agent.get("/api/v1/plans").await.body).ok()?;
            let planned = plans["plans"].as_array()?.iter().any(|p| {
                p["mode"] == want_mode
                    && p["query"]
                        .as_str()
                        .is_some_and(|q| q.contains("FROM ledger"))
            });
            (statements.contains("FROM ledger") && planned).then_some(())
        },
    )
    .await;
    load.abort();

    let dsn_with_password = format!(
        "postgresql://pgvigil:{}@127.0.0.1:{}/postgres?sslmode=disable",
        percent_encoding::utf8_percent_encode(&fx.password, percent_encoding::NON_ALPHANUMERIC),
        fx.pg.port
    );
    let secrets = [
        ("password", fx.password.as_str()),
        ("DSN with its password", dsn_with_password.as_str()),
        ("literal", LITERAL),
    ];
    for (path, accept) in [
        ("/metrics", None),
        (
            "/metrics",
            Some("application/openmetrics-text; version=1.0.0"),
        ),
        ("/probe?target=main", None),
        ("/api/v1/statements", None),
        ("/api/v1/plans", None),
        ("/api/v1/saturation", None),
        ("/api/v1/schema", None),
        ("/", None),
    ] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let r = http(agent.addr, "GET", path, &headers).await.unwrap();
        assert_clean(&format!("{path} ({accept:?})"), &r.body, &secrets);
    }
    // `pgvigil once`, from the same config file and from a DSN that holds
    // the password, in every format.
    let config_file = fx.pg.scratch().join("once.toml");
    std::fs::write(&config_file, &config).unwrap();
    for format in ["json", "table", "prometheus"] {
        for source in [
            ["--config", config_file.to_str().unwrap()],
            ["--dsn", dsn_with_password.as_str()],
        ] {
            let out = pgvigil(
                &[
                    "once",
                    source[0],
                    source[1],
                    "--format",
                    format,
                    "--interval",
                    "1s",
                ],
                &[],
            );
            let (stdout, stderr) = outputs(&out);
            assert!(out.status.success(), "{stderr}");
            assert!(!stdout.is_empty());
            assert_clean(
                &format!("once {} --format {format}", source[0]),
                &stdout,
                &secrets,
            );
            assert_clean(&format!("once {} stderr", source[0]), &stderr, &secrets);
        }
    }
    // A failing connection's message names host, port and user only.
    let wrong = dsn_with_password.replace(
        &format!(":{}/", fx.pg.port),
        &format!(":{}/", crate::harness::pg::free_port()),
    );
    let out = pgvigil(&["once", "--dsn", &wrong], &[]);
    let (stdout, stderr) = outputs(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("could not connect"), "{stderr}");
    assert_clean("a failed once", &format!("{stdout}{stderr}"), &secrets);

    // The agent's own log at debug level, dependencies included.
    let log = agent.log();
    assert!(
        log.contains("DEBUG"),
        "the log is not at debug level: {log}"
    );
    assert_clean("the agent's debug log", &log, &secrets);
}
