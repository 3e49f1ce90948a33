//! Hostile input: names, texts and bytes that PostgreSQL accepts end up as
//! valid, correctly escaped exposition and JSON; garbage HTTP requests get
//! an answer, never a dropped connection; garbage configs get problems,
//! never a panic.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

use crate::harness::{Fixture, Metrics, RunningAgent, eventually, http, outputs, pgvigil};

/// Identifiers PostgreSQL accepts when quoted: every character that means
/// something in the exposition format or JSON.
const NAMES: [&str; 5] = [
    "we\"ird",
    "back\\slash",
    "new\nline",
    "{brace}=\"x\",y=\"",
    "ünï ✓ # tab\there",
];

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Runs `sql` with psql as the superuser, from a file so that it may hold
/// bytes that are not UTF-8 (which a Rust client cannot send).
fn psql(fx: &Fixture, dbname: &str, sql: &[u8]) {
    let file = fx.pg.scratch().join(format!("psql-{}.sql", rand_suffix()));
    std::fs::write(&file, sql).unwrap();
    crate::harness::pg::check(
        crate::harness::pg::pg_command(
            "psql",
            &[
                "-X",
                "-q",
                "-h",
                fx.pg.socket_dir().to_str().unwrap(),
                "-p",
                &fx.pg.port.to_string(),
                "-U",
                "postgres",
                "-d",
                dbname,
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                file.to_str().unwrap(),
            ],
        ),
        "psql",
    );
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An OpenMetrics text page: only known line kinds, samples that parse,
/// one `# EOF` at the very end.
fn check_openmetrics(text: &str) {
    let body = text.strip_suffix("# EOF\n").unwrap_or_else(|| {
        panic!(
            "no final # EOF:\n{}",
            &text[text.len().saturating_sub(500)..]
        )
    });
    assert!(!body.contains("# EOF"), "# EOF before the end");
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let kind = rest.split(' ').next().unwrap_or("");
            assert!(
                ["HELP", "TYPE", "UNIT"].contains(&kind),
                "unexpected comment line {line:?}"
            );
            continue;
        }
        assert!(!line.is_empty(), "empty line in OpenMetrics text");
        // The harness parser panics on a malformed sample or label value.
        let one = Metrics::parse(line);
        assert_eq!(one.samples.len(), 1, "{line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_texts_stay_valid_exposition_and_json() {
    let fx = Fixture::start().await;
    let admin = fx.pg.connect().await;
    crate::harness::data::grant_reading(&admin).await;
    let db = "hostile \"db\" \\ {x}\nend";
    let role = "ro\"le \\ {x}";
    // One statement per call: CREATE DATABASE cannot share a transaction.
    for sql in [
        format!("CREATE DATABASE {}", quote_ident(db)),
        format!("CREATE ROLE {} LOGIN", quote_ident(role)),
        "CREATE DATABASE hostile_ascii ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'".to_string(),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    let weird_db = fx.pg.connect_to(db).await;
    for (i, name) in NAMES.iter().enumerate() {
        let table = quote_ident(name);
        let sql = format!(
            "CREATE TABLE {table} (id int);
             INSERT INTO {table} SELECT generate_series(1, {});
             CREATE INDEX {} ON {table} (id);
             ANALYZE {table};",
            1000 * (i + 1),
            quote_ident(&format!("{name} idx"))
        );
        admin.batch_execute(&sql).await.unwrap();
        weird_db.batch_execute(&sql).await.unwrap();
    }
    // Bytes that are not UTF-8, where a SQL_ASCII database allows them:
    // a table and a comment-bearing statement there.
    psql(
        &fx,
        "hostile_ascii",
        b"CREATE TABLE \"bad\xff\xfename\" (id int);\nINSERT INTO \"bad\xff\xfename\" SELECT generate_series(1, 100);\n",
    );

    let config = fx.config(
        "statements = { interval = \"1s\" }\ntables = \"1s\"\ndatabase_size = \"1s\"\n[explain]\nslow_threshold = \"1us\"\nper_statement_interval = \"1s\"\nmax_per_hour = 1000\n",
    );
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;

    // A session under the hostile role, in the hostile database, with a
    // hostile application_name (PostgreSQL escapes its non-ASCII bytes).
    let app_name = "app \"q\" \\ {x}=\"";
    let mut session = tokio_postgres::Config::new();
    session
        .host_path(fx.pg.socket_dir())
        .port(fx.pg.port)
        .user(role)
        .dbname(db)
        .application_name(app_name);
    let (hostile_session, connection) = session.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    hostile_session
        .batch_execute("BEGIN; SELECT 1")
        .await
        .unwrap();

    // Wait for everything to be collected: every hostile table, and the
    // long statement in the report.
    let m = agent
        .wait_for(
            Duration::from_secs(60),
            "hostile tables and sessions",
            |m| {
                let tables_ok = NAMES.iter().all(|name| {
                    m.find("pg_table_size_bytes", &[("datname", db), ("relname", name)])
                        .next()
                        .is_some()
                });
                let session_ok = m
                    .find("pg_connections", &[("usename", role), ("datname", db)])
                    .next()
                    .is_some();
                (tables_ok && session_ok).then(|| m.clone())
            },
        )
        .await;
    // Label values come back exactly as PostgreSQL has them.
    let labels = [("usename", role), ("datname", db)];
    let connection = m.find("pg_connections", &labels).next().unwrap();
    assert_eq!(connection.labels["application_name"], app_name);
    for name in NAMES {
        assert!(
            m.find(
                "pg_table_size_bytes",
                &[("datname", "postgres"), ("relname", name)]
            )
            .next()
            .is_some(),
            "{name:?} in postgres"
        );
    }
    // The statement psql sent in hostile_ascii keeps its bytes in
    // pg_stat_statements, which then cannot return any text in a UTF-8
    // database: the collector goes on without texts, and says why.
    agent
        .wait_for(Duration::from_secs(30), "statements collected", |m| {
            m.get("pgvigil_collector_success", &[("collector", "statements")])
                .filter(|v| *v == 1.0)
        })
        .await;
    assert!(
        agent.log().contains("query texts unavailable"),
        "{}",
        agent.log()
    );
    admin
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();

    // Statements whose normalized texts carry the same characters, and a
    // 1 MB one.
    let long_comment = "x".repeat(1 << 20);
    let statements = [
        format!("SELECT 1 AS {}", quote_ident(NAMES[0])),
        format!("SELECT 2 AS {} /* {} */", quote_ident(NAMES[1]), NAMES[3]),
        format!("SELECT count(*) FROM {}", quote_ident(NAMES[2])),
        format!("SELECT id FROM {} WHERE id = 7", quote_ident(NAMES[4])),
        format!("SELECT {} AS t", quote_literal("quote ' \" \\ {}\n")),
        format!("SELECT 3 /* {long_comment} */"),
        format!("SELECT length({})", quote_literal(&long_comment)),
    ];
    let app = fx.pg.connect().await;
    let load = tokio::spawn(async move {
        loop {
            for sql in &statements {
                app.batch_execute(sql).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // Texts are back, the hostile ones included.
    eventually(
        Duration::from_secs(60),
        "the hostile statements' report",
        || async {
            let body = agent.get("/api/v1/statements").await.body;
            let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
            let texts: Vec<String> = doc["targets"][0]["report"]["statements"]
                .as_array()?
                .iter()
                .filter_map(|s| s["query"].as_str().map(str::to_string))
                .collect();
            // (Published texts have their whitespace runs collapsed.)
            let want = [
                "SELECT length($1)".to_string(),
                format!("SELECT $1 AS {}", quote_ident(NAMES[0])),
                format!("SELECT count(*) FROM {}", quote_ident(NAMES[2])).replace('\n', " "),
            ];
            want.iter()
                .all(|w| texts.iter().any(|t| t == w))
                .then_some(())
        },
    )
    .await;
    let m = agent.metrics().await;

    let plain = agent.get("/metrics").await;
    assert_eq!(plain.status, 200);
    crate::harness::promtool_check(&plain.body);
    let om = http(
        agent.addr,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await
    .unwrap();
    check_openmetrics(&om.body);
    let probe = agent.get("/probe?target=main").await;
    crate::harness::promtool_check(&probe.body);
    for path in [
        "/api/v1/statements",
        "/api/v1/plans",
        "/api/v1/saturation",
        "/api/v1/schema",
    ] {
        let r = agent.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        serde_json::from_str::<serde_json::Value>(&r.body)
            .unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {}", r.body));
    }
    // Texts are cut: a megabyte of comment does not reach a label.
    let longest_label = m
        .samples
        .iter()
        .flat_map(|s| s.labels.values())
        .map(|v| v.len())
        .max()
        .unwrap();
    assert!(
        longest_label <= 1024,
        "a label value of {longest_label} bytes"
    );

    // The table that is not UTF-8 is published with replacement
    // characters, and nothing else in that database suffers.
    let ascii = m
        .find("pg_table_size_bytes", &[("datname", "hostile_ascii")])
        .map(|s| s.labels["relname"].clone())
        .collect::<Vec<_>>();
    assert!(
        ascii
            .iter()
            .any(|r| r.starts_with("bad") && r.contains('\u{fffd}')),
        "{ascii:?}\n{}",
        agent.log()
    );

    // `pgvigil once` sees the same server the same way.
    let config_file = fx.pg.scratch().join("hostile.toml");
    std::fs::write(&config_file, &config).unwrap();
    for format in ["prometheus", "json", "table"] {
        let out = pgvigil(
            &[
                "once",
                "--config",
                config_file.to_str().unwrap(),
                "--format",
                format,
                "--interval",
                "1s",
            ],
            &[],
        );
        let (stdout, stderr) = outputs(&out);
        assert!(out.status.success(), "once --format {format}: {stderr}");
        match format {
            "prometheus" => crate::harness::promtool_check(&stdout),
            "json" => {
                serde_json::from_str::<serde_json::Value>(&stdout).expect("once --format json");
            }
            _ => assert!(stdout.contains("hostile_ascii"), "{stdout}"),
        }
    }
    load.abort();
    let log = agent.log();
    assert!(!log.contains("panicked"), "{log}");
    drop(hostile_session);
}

/// A request that is well-formed HTTP/1.x on the wire, whatever its
/// method, target, headers and query string say.
#[derive(Debug, Clone)]
struct Garbage {
    method: String,
    target: String,
    version: &'static str,
    headers: Vec<(String, String)>,
}

fn garbage_request() -> impl Strategy<Value = Garbage> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("HEAD".to_string()),
        Just("POST".to_string()),
        Just("OPTIONS".to_string()),
        Just("DELETE".to_string()),
        "[A-Z]{1,12}",
        "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,16}",
    ];
    let known = prop_oneof![
        Just("/metrics"),
        Just("/probe"),
        Just("/healthz"),
        Just("/readyz"),
        Just("/api/v1/statements"),
        Just("/api/v1/plans"),
        Just("/api/v1/saturation"),
        Just("/api/v1/schema"),
        Just("/"),
    ];
    let target = prop_oneof![
        // Known paths with garbage query strings.
        (known.clone(), "[!-~]{0,120}").prop_map(|(p, q)| format!("{p}?{q}")),
        // /probe with targets of every kind, percent escapes included.
        "[!-~]{0,80}".prop_map(|t| format!("/probe?target={t}")),
        "(%[0-9A-Fa-f]{2}|%[G-Z]{2}|[a-z]){0,40}"
            .prop_map(|t| format!("/probe?a=1&target={t}&target=x")),
        // Any visible characters as a path.
        "/[!-~]{0,200}",
        // Long ones.
        (known, 1000usize..9000).prop_map(|(p, n)| format!("{p}?{}", "a".repeat(n))),
        // Absolute and asterisk forms.
        Just("*".to_string()),
        "http://[a-z]{1,10}(:[0-9]{1,5})?/[!-~]{0,40}",
    ];
    let header = (
        prop_oneof![
            Just("Accept".to_string()),
            Just("Authorization".to_string()),
            Just("Accept-Encoding".to_string()),
            Just("Connection".to_string()),
            "[A-Za-z0-9-]{1,30}",
        ],
        "[ -~]{0,200}",
    );
    (
        method,
        target,
        prop_oneof![Just("HTTP/1.0"), Just("HTTP/1.1")],
        proptest::collection::vec(header, 0..8),
    )
        .prop_map(|(method, target, version, headers)| Garbage {
            method,
            target,
            version,
            // A body length or chunking we do not send would only make the
            // server wait for it: leave those headers out.
            headers: headers
                .into_iter()
                .filter(|(k, _)| {
                    let k = k.to_ascii_lowercase();
                    k != "content-length" && k != "transfer-encoding" && k != "expect"
                })
                .map(|(k, v)| (k, v.trim().to_string()))
                .collect(),
        })
}

/// Sends the request on a fresh connection; the status line's code.
fn send(addr: SocketAddr, req: &Garbage) -> Result<u16, String> {
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut text = format!(
        "{} {} {}\r\nHost: pgvigil\r\n",
        req.method, req.target, req.version
    );
    for (k, v) in &req.headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    stream
        .write_all(text.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read after {} bytes: {e}", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..raw.len().min(100)]).to_string();
    head.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_requests_always_get_an_answer() {
    let fx = Fixture::start().await;
    let hash = bcrypt::hash("pw", 4).unwrap();
    // Twice: without authentication, and with it (garbage credentials
    // then meet the bcrypt path).
    for web in [
        String::new(),
        format!("[web]\nbasic_auth_users = {{ u = '{hash}' }}\n"),
    ] {
        let config = format!("{}\n{web}", fx.config(""));
        let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
        // Before the first collection /readyz is a rightful 503.
        eventually(Duration::from_secs(30), "/readyz 200", || async {
            (agent.get("/readyz").await.status == 200).then_some(())
        })
        .await;
        let addr = agent.addr;
        let outcome = tokio::task::spawn_blocking(move || {
            let mut runner = TestRunner::new(ProptestConfig {
                cases: 1000,
                failure_persistence: None,
                ..ProptestConfig::default()
            });
            runner
                .run(&garbage_request(), |req| {
                    let status = send(addr, &req).map_err(TestCaseError::fail)?;
                    prop_assert!(
                        (200..300).contains(&status) || (400..500).contains(&status),
                        "{status} for {req:?}"
                    );
                    Ok(())
                })
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap();
        if let Err(e) = outcome {
            panic!("{e}\n{}", agent.log());
        }
        assert_eq!(agent.get("/healthz").await.status, 200);
        let log = agent.log();
        assert!(!log.contains("panicked"), "{log}");
    }
}

/// Every key of the config file, by path, for generated configs.
const KEYS: &[&str] = &[
    "listen",
    "target.name",
    "target.dsn",
    "target.password_file",
    "target.password_env",
    "target.databases",
    "target.backup.pgbackrest_stanza",
    "target.backup.interval",
    "target.backup.timeout",
    "target.backup.full_max_age",
    "target.pgbouncer.dsn",
    "target.pgbouncer.name",
    "target.logs.directory",
    "target.logs.format",
    "collectors.default_interval",
    "collectors.timeout",
    "collectors.lock_timeout",
    "collectors.server",
    "collectors.tables",
    "collectors.statements",
    "collectors.statements.interval",
    "collectors.statements.top",
    "collectors.statements.buckets",
    "explain.enabled",
    "explain.slow_threshold",
    "explain.statement_timeout",
    "explain.max_per_hour",
    "explain.per_statement_interval",
    "notify.desktop",
    "web.basic_auth_users",
    "web.basic_auth_users.user",
    "web.tls_cert_file",
    "web.tls_key_file",
    "bogus",
];

fn toml_value() -> impl Strategy<Value = toml::Value> {
    let scalar = prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        ".{0,30}".prop_map(toml::Value::String),
        "[0-9]{1,22} ?(ns|us|ms|s|m|h|d|w|y|parsecs)?".prop_map(toml::Value::String),
        Just(toml::Value::String("off".into())),
        Just(toml::Value::String("auto".into())),
        "(postgresql://|host=)[ -~]{0,40}".prop_map(toml::Value::String),
    ];
    scalar.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(toml::Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

/// Puts `value` at the dotted `path`, making tables (or, for `target`, an
/// array of one table) on the way; gives up quietly on a clash.
fn place(root: &mut toml::Table, path: &str, value: toml::Value) {
    let mut table = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            table.insert(part.to_string(), value);
            return;
        }
        let entry = table.entry(part.to_string()).or_insert_with(|| {
            if *part == "target" {
                toml::Value::Array(vec![toml::Value::Table(toml::Table::new())])
            } else {
                toml::Value::Table(toml::Table::new())
            }
        });
        table = match entry {
            toml::Value::Table(t) => t,
            toml::Value::Array(a) => match a.first_mut() {
                Some(toml::Value::Table(t)) => t,
                _ => return,
            },
            _ => return,
        };
    }
}

fn parse_config(text: &str) {
    let env = |_: &str| None;
    let _ =
        pgvigil::config::Config::parse(text, "fuzz", &pgvigil::config::Environment { var: &env });
}

#[test]
fn garbage_configs_are_problems_never_panics() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/pgvigil.toml"
    ))
    .unwrap();
    let config = || ProptestConfig {
        cases: 600,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    // Arbitrary text.
    TestRunner::new(config())
        .run(&any::<String>(), |text| {
            parse_config(&text);
            Ok(())
        })
        .unwrap();
    // The shipped example, mutated: a stretch replaced by random text.
    let chars: Vec<char> = example.chars().collect();
    let n = chars.len();
    TestRunner::new(config())
        .run(&(0..n, 0usize..40, "[ -~\n]{0,20}"), |(at, len, insert)| {
            let mut mutated: String = chars[..at].iter().collect();
            mutated.push_str(&insert);
            mutated.extend(&chars[(at + len).min(n)..]);
            parse_config(&mutated);
            Ok(())
        })
        .unwrap();
    // Known keys with values of every type and size.
    let assignments =
        proptest::collection::vec((proptest::sample::select(KEYS), toml_value()), 1..10);
    TestRunner::new(config())
        .run(&assignments, |pairs| {
            let mut root = toml::Table::new();
            for (path, value) in pairs {
                place(&mut root, path, value);
            }
            if let Ok(text) = toml::to_string(&root) {
                parse_config(&text);
            }
            Ok(())
        })
        .unwrap();
    // Connection strings, on their own.
    let dsn = prop_oneof![
        any::<String>(),
        "(postgres|postgresql)://[ -~]{0,60}",
        "(postgresql://)?([a-z%0-9:@\\[\\]/?=&,.-]|%[0-9A-Fa-f]{0,2}){0,60}",
        "([a-z]{1,12} ?= ?('([^'\\\\]|\\\\.){0,10}'?|[ -~]{0,10}) ?){0,6}",
    ];
    TestRunner::new(config())
        .run(&dsn, |text| {
            let _ = pgvigil::connection::dsn::ConnParams::parse(&text);
            Ok(())
        })
        .unwrap();
}

#[test]
fn check_config_survives_hostile_files() {
    let dir = tempfile::tempdir().unwrap();
    let nested = format!("a = {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("binary", (0..=255u8).cycle().take(4096).collect()),
        ("nul", b"listen = \"\0\"\n[[target]]\ndsn = \"\0\"\n".to_vec()),
        ("nested arrays", nested.into_bytes()),
        (
            "nested tables",
            format!("{}= 1\n", "a.".repeat(50_000)).into_bytes(),
        ),
        ("huge", "# comment\n".repeat(1_000_000).into_bytes()),
        (
            "absurd durations",
            b"[collectors]\ndefault_interval = \"99999999999999999999999y\"\ntimeout = \"500000000000y\"\n[explain]\nstatement_timeout = \"18446744073709551615s\"\n[[target]]\ndsn = \"host=h\"\n".to_vec(),
        ),
        (
            "hostile web",
            "[web]\nbasic_auth_users = { \"\" = \"$2y$99$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"é\" = \"ü\" }\ntls_cert_file = \"/dev/null\"\ntls_key_file = \"/proc/self/mem\"\n[[target]]\ndsn = \"host=h\"\n"
                .as_bytes()
                .to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let file = dir.path().join(format!("{}.toml", what.replace(' ', "-")));
        std::fs::write(&file, &bytes).unwrap();
        let out = pgvigil(&["check-config", file.to_str().unwrap()], &[]);
        let (stdout, stderr) = outputs(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: {:?}\n{stdout}{}",
            out.status,
            &stderr[..stderr.len().min(2000)]
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(!stderr.trim().is_empty(), "{what}: no message");
    }
}
