//! The command line: `once` in each format and its failures, `check-config`,
//! `--version`, and bad input to `run`.

use std::time::Duration;

use crate::harness::{Fixture, RunningAgent, outputs, pgvigil, promtool_check};

fn once(fx: &Fixture, dsn: &str, format: &str) -> std::process::Output {
    let env = fx.once_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pgvigil(&["once", "--dsn", dsn, "--format", format], &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_prints_clean_prometheus_text_json_and_a_table() {
    let fx = Fixture::start().await;
    let out = once(&fx, &fx.dsn(), "prometheus");
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("pg_up{target=\"main\"} 1"), "{stdout}");
    assert!(
        stdout.contains("pg_database_xact_commit_total{target=\"main\",datname=\"postgres\"}"),
        "{stdout}"
    );
    promtool_check(&stdout);

    let out = once(&fx, &fx.dsn(), "json");
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    let target = &doc["targets"][0];
    assert_eq!(target["name"], "main");
    assert_eq!(target["up"], true);
    let collectors = target["collectors"].as_array().unwrap();
    assert!(
        collectors.iter().all(|c| c["success"] == true),
        "{collectors:?}"
    );
    let metrics = target["metrics"].as_array().unwrap();
    assert!(
        metrics
            .iter()
            .any(|m| m["name"] == "pg_settings_max_connections" && m["series"][0]["value"] == 40.0)
    );

    let out = once(&fx, &fx.dsn(), "table");
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("target main: up, PostgreSQL"), "{stdout}");
    assert!(stdout.contains("primary"), "{stdout}");
    assert!(
        stdout.contains("of 37 usable (40 max_connections - 3 reserved)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("DATABASE") && stdout.contains("template1"),
        "{stdout}"
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains(&fx.password));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_fails_with_one_clear_line_when_the_target_is_unreachable() {
    let fx = Fixture::start().await;
    let port = fx.pg.port;
    let unused = crate::harness::pg::free_port();
    let cases = [
        // (dsn, PGPASSWORD, expected in the message)
        (
            fx.dsn(),
            "wrong-password".to_string(),
            "password authentication failed for user \"pgvigil\"",
        ),
        (
            format!("postgresql://pgvigil@127.0.0.1:{port}/nope?sslmode=disable"),
            fx.password.clone(),
            "database \"nope\" does not exist",
        ),
        (
            format!("postgresql://pgvigil@127.0.0.1:{unused}/postgres?sslmode=disable"),
            fx.password.clone(),
            "onnection refused",
        ),
    ];
    for (dsn, password, want) in cases {
        let out = pgvigil(
            &["once", "--dsn", &dsn, "--format", "prometheus"],
            &[("PGPASSWORD", &password)],
        );
        let (stdout, stderr) = outputs(&out);
        assert!(!out.status.success(), "{dsn}: {stdout}");
        assert!(stdout.is_empty(), "{stdout}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains("could not connect to") && lines[0].contains(want),
            "{stderr}"
        );
        assert!(
            lines[0].contains("127.0.0.1") && lines[0].contains("pgvigil"),
            "{stderr}"
        );
        assert!(
            !stderr.contains(&password) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

#[test]
fn check_config_lists_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"
listen = "0.0.0.0:9932"
typo = true
[collectors]
default_interval = "15 parsecs"
[[target]]
dsn = "postgresql://pgvigil@db:5432/postgres"
password_file = "/nonexistent/secret"
"#,
    )
    .unwrap();
    let out = pgvigil(&["check-config", file.to_str().unwrap()], &[]);
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for want in [
        "typo: unknown field",
        "collectors.default_interval:",
        "target[0].password_file: could not read /nonexistent/secret",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in {stderr}");
    }
    assert!(stderr.contains("3 problems"), "{stderr}");

    std::fs::write(&file, "[[target]\n").unwrap();
    let out = pgvigil(&["check-config", file.to_str().unwrap()], &[]);
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("TOML parse error"), "{stderr}");

    let out = pgvigil(&["check-config", "/nonexistent/pgvigil.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        outputs(&out)
            .1
            .contains("could not read config file /nonexistent/pgvigil.toml")
    );
}

#[test]
fn the_shipped_example_config_is_valid_and_documents_every_key() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/pgvigil.toml");
    let out = pgvigil(
        &["check-config", example],
        &[
            ("PGVIGIL_PASSWORD", "example"),
            ("PGVIGIL_PGBOUNCER_PASSWORD", "example"),
        ],
    );
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    // Every key line is preceded by a comment that documents it.
    let text = std::fs::read_to_string(example).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('[') {
            continue;
        }
        assert!(
            i > 0 && lines[i - 1].trim().starts_with('#'),
            "undocumented key at line {}: {t}",
            i + 1
        );
    }
}

#[test]
fn version_names_the_release_and_revision() {
    let out = pgvigil(&["--version"], &[]);
    let (stdout, _) = outputs(&out);
    assert!(out.status.success());
    assert!(
        stdout.starts_with(&format!("pgvigil {} (", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_wrong_password_reports_pg_up_zero_and_logs_why() {
    let fx = Fixture::start().await;
    let secret = fx.pg.scratch().join("wrong.password");
    std::fs::write(&secret, "definitely-wrong-pw\n").unwrap();
    let config = format!(
        "[[target]]\ndsn = \"{}\"\npassword_file = \"{}\"\n[collectors]\ndefault_interval = \"1s\"\n",
        fx.dsn(),
        secret.display()
    );
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    let m = agent
        .wait_for(Duration::from_secs(20), "pg_up 0", |m| {
            // Each collector records its first failure on its own schedule.
            m.get("pg_up", &[])
                .and(m.get("pgvigil_collector_success", &[("collector", "server")]))
                .map(|_| m.clone())
        })
        .await;
    assert_eq!(m.get("pg_up", &[]), Some(0.0));
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "server")]),
        Some(0.0)
    );
    let log = agent.log();
    assert!(
        log.contains("password authentication failed for user \\\"pgvigil\\\"")
            || log.contains("password authentication failed"),
        "{log}"
    );
    assert!(!log.contains("definitely-wrong-pw"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // SIGTERM stops it cleanly.
    assert!(agent.terminate().success());
}
