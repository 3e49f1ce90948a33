//! Config parsing and validation as `check-config` sees it: defaults,
//! every problem with its key path, secrets.

use super::*;

fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

fn problems(text: &str) -> Vec<String> {
    let var = env(&[("USER", "tester")]);
    match Config::parse(text, "test.toml", &Environment { var: &var }) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(|p| p.to_string()).collect()
        }
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn a_minimal_config_gets_every_default() {
    let var = env(&[("USER", "tester")]);
    let config = Config::parse(
        "[[target]]\ndsn = \"host=db1\"\n",
        "t",
        &Environment { var: &var },
    )
    .unwrap();
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.targets[0].name, "main");
    assert_eq!(config.targets[0].conn.user.as_deref(), Some("tester"));
    assert_eq!(config.collectors.server, Some(Duration::from_secs(15)));
    assert_eq!(config.collectors.timeout, Duration::from_secs(10));
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = r#"
listen = "nowhere"
bogus = 1
[collectors]
default_interval = "soon"
databases = { interval = "off", colour = "red" }
[[target]]
dsn = "host=a port=notaport"
[[target]]
name = "b"
dsn = "host=b"
password_env = "PGVIGIL_TEST_UNSET_VAR"
unknown_key = true
"#;
    let got = problems(text);
    let want = [
        "bogus: unknown field `bogus`",
        "collectors.default_interval: invalid value",
        "collectors.databases.colour: unknown field `colour`",
        "target[1].unknown_key: unknown field `unknown_key`",
        "listen: \"nowhere\" is not an address",
        "target[0].name: required when there are several targets",
        "target[1].password_env: environment variable PGVIGIL_TEST_UNSET_VAR is not set",
        "target[0].dsn: invalid value \"notaport\" for connection parameter \"port\"",
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for w in want {
        assert!(
            got.iter().any(|g| g.starts_with(w)),
            "missing {w:?} in {got:#?}"
        );
    }
}

#[test]
fn intervals_accept_shorthand_tables_and_off() {
    let var = env(&[]);
    let text = r#"
[collectors]
default_interval = "20s"
server = "off"
connections = { interval = "1m" }
[[target]]
dsn = "postgresql://u@h/d"
"#;
    let c = Config::parse(text, "t", &Environment { var: &var })
        .unwrap()
        .collectors;
    assert_eq!(c.server, None);
    assert_eq!(c.connections, Some(Duration::from_secs(60)));
    assert_eq!(c.databases, Some(Duration::from_secs(20)));
}

#[test]
fn bad_values_name_the_key() {
    let cases = [
        (
            "[collectors]\nserver = \"0s\"\n[[target]]\ndsn=''",
            "collectors.server: an interval must be longer than zero",
        ),
        (
            "[collectors]\ntimeout = 5\n[[target]]\ndsn=''",
            "collectors.timeout: invalid type",
        ),
        ("[[target]]\ndsn = 'x' \n", "target[0].dsn:"),
        (
            "[explain]\nstatement_timeout = '30000000000y'\n[[target]]\ndsn=''",
            "explain.statement_timeout: must be at most 24 days",
        ),
        ("listen = ", "TOML parse error"),
        ("", "target: no [[target]] configured"),
        (
            "[[target]]\nname='a b'\ndsn=''",
            "target[0].name: \"a b\" must be non-empty",
        ),
        (
            "[[target]]\nname='a'\ndsn=''\n[[target]]\nname='a'\ndsn=''",
            "target[1].name: \"a\" is used by another target",
        ),
        (
            "[[target]]\ndsn=''\npassword_file='/nonexistent/pw'",
            "target[0].password_file: could not read /nonexistent/pw",
        ),
    ];
    for (text, want) in cases {
        let got = problems(text);
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "{text:?}: want {want:?}, got {got:#?}"
        );
    }
}

#[test]
fn statement_histograms_default_to_twenty_and_never_exceed_top() {
    let var = env(&[]);
    // (as written under [collectors], expected top and histograms)
    let cases = [
        ("", 100, 20),
        ("statements = \"30s\"", 100, 20),
        ("statements = { top = 50, histograms = 0 }", 50, 0),
        ("statements = { top = 10 }", 10, 10),
        ("statements = { top = 30, histograms = 40 }", 30, 30),
    ];
    for (collectors, top, histograms) in cases {
        let text = format!("[collectors]\n{collectors}\n[[target]]\ndsn = 'host=h'\n");
        let st = Config::parse(&text, "t", &Environment { var: &var })
            .unwrap()
            .collectors
            .statements;
        assert_eq!((st.top, st.histograms), (top, histograms), "{collectors}");
    }
    let got = problems("[collectors]\nstatements = { histograms = -1 }\n[[target]]\ndsn=''");
    assert!(
        got.iter()
            .any(|g| g.starts_with("collectors.statements.histograms: invalid value")),
        "{got:#?}"
    );
}

#[test]
fn secrets_come_from_a_file_or_a_named_variable_never_both() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret\nignored\n").unwrap();
    let var = env(&[("MY_PW", "fromenv")]);
    let e = Environment { var: &var };
    let text = format!(
        "[[target]]\ndsn='host=h'\npassword_file='{}'",
        file.display()
    );
    assert_eq!(
        Config::parse(&text, "t", &e).unwrap().targets[0]
            .conn
            .password
            .as_deref(),
        Some("s3cret")
    );
    let text = "[[target]]\ndsn='host=h'\npassword_env='MY_PW'";
    assert_eq!(
        Config::parse(text, "t", &e).unwrap().targets[0]
            .conn
            .password
            .as_deref(),
        Some("fromenv")
    );
    let text = "[[target]]\ndsn='host=h password=x'\npassword_env='MY_PW'";
    let err = Config::parse(text, "t", &e).unwrap_err().to_string();
    assert!(
        err.contains("already contains a password") && !err.contains("fromenv"),
        "{err}"
    );
}

#[test]
fn web_problems_name_their_key() {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let target = "[[target]]\ndsn = 'host=h'\n";
    let cases = [
        (
            format!("[web]\ntls_cert_file = '/x.crt'\n{target}"),
            "web.tls_key_file: required with tls_cert_file",
        ),
        (
            format!("[web]\ntls_key_file = '/x.key'\n{target}"),
            "web.tls_cert_file: required with tls_key_file",
        ),
        (
            format!("[web]\ntls_cert_file = '/nonexistent.crt'\ntls_key_file = '/x.key'\n{target}"),
            "web.tls_cert_file: /nonexistent.crt: could not read",
        ),
        (
            format!("[web]\nbasic_auth_users = {{ alice = 'secret' }}\n{target}"),
            "web.basic_auth_users.alice: not a bcrypt hash",
        ),
        (
            format!("[web]\nbasic_auth_users = {{ 'a:b' = '{hash}' }}\n{target}"),
            "web.basic_auth_users: \"a:b\": a user name must be non-empty",
        ),
        (
            format!("[web]\nbasic_auth_users = ['alice']\n{target}"),
            "web.basic_auth_users: invalid type",
        ),
    ];
    for (text, want) in cases {
        let got = problems(&text);
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "{text:?}: want {want:?}, got {got:#?}"
        );
        assert!(!got.iter().any(|g| g.contains("secret")), "{got:#?}");
    }
    let var = env(&[]);
    let ok = format!("[web]\nbasic_auth_users = {{ alice = '{hash}' }}\n{target}");
    let web = Config::parse(&ok, "t", &Environment { var: &var })
        .unwrap()
        .web;
    assert_eq!(web.basic_auth_users.len(), 1);
    assert!(web.tls.is_none());
}

#[test]
fn without_a_file_libpq_environment_fills_the_gaps() {
    let var = env(&[
        ("PGHOST", "envhost"),
        ("PGPORT", "6000"),
        ("PGUSER", "envuser"),
        ("USER", "os"),
    ]);
    let e = Environment { var: &var };
    let c = Config::from_dsn(Some("postgresql://explicit@/db"), &e).unwrap();
    let conn = &c.targets[0].conn;
    assert_eq!(conn.user.as_deref(), Some("explicit"));
    assert_eq!(conn.ports, [6000]);
    assert_eq!(conn.dbname.as_deref(), Some("db"));
    let c = Config::from_dsn(None, &e).unwrap();
    assert_eq!(c.targets[0].conn.user.as_deref(), Some("envuser"));
    assert_eq!(c.targets[0].conn.dbname.as_deref(), Some("envuser"));
}

#[test]
fn pgbouncer_names_default_by_position_and_must_be_unique() {
    let var = env(&[("USER", "tester")]);
    let parse = |consoles: &[&str]| {
        let mut text = String::from("[[target]]\ndsn = \"host=db1\"\n");
        for (j, name) in consoles.iter().enumerate() {
            text += "[[target.pgbouncer]]\n";
            if !name.is_empty() {
                text += &format!("name = \"{name}\"\n");
            }
            text += &format!("dsn = \"host=pool{j} port=6432\"\n");
        }
        let config = Config::parse(&text, "t", &Environment { var: &var }).unwrap();
        config.targets[0]
            .pgbouncers
            .iter()
            .map(|b| b.name.clone())
            .collect::<Vec<_>>()
    };
    // Adding a console renames none of those before it.
    assert_eq!(parse(&[""]), ["pgbouncer"]);
    assert_eq!(parse(&["", ""]), ["pgbouncer", "pgbouncer1"]);
    assert_eq!(
        parse(&["", "", "edge"]),
        ["pgbouncer", "pgbouncer1", "edge"]
    );
    assert_eq!(parse(&["edge", ""]), ["edge", "pgbouncer1"]);

    let got = problems(
        "[[target]]\ndsn = \"host=db1\"\n\
         [[target.pgbouncer]]\nname = \"pgbouncer1\"\ndsn = \"host=a\"\n\
         [[target.pgbouncer]]\ndsn = \"host=b\"\n\
         [[target.pgbouncer]]\nname = \"\"\ndsn = \"host=c\"\n",
    );
    assert_eq!(
        got,
        [
            "target[0].pgbouncer[1].name: \"pgbouncer1\" is used by another PgBouncer of this target",
            "target[0].pgbouncer[2].name: must be non-empty",
        ],
        "{got:#?}"
    );
}

#[test]
fn the_schema_collector_runs_every_ten_minutes_with_a_one_mebibyte_floor() {
    let var = env(&[("USER", "tester")]);
    let parse = |collectors: &str| {
        let text = format!("[[target]]\ndsn = \"host=db1\"\n[collectors]\n{collectors}\n");
        Config::parse(&text, "t", &Environment { var: &var })
            .unwrap()
            .collectors
            .schema
    };
    let default = parse("default_interval = \"5s\"");
    assert_eq!(default.interval, Some(Duration::from_secs(600)));
    assert_eq!(default.unused_index_min_bytes, 1024 * 1024);
    let short = parse("schema = \"1m\"");
    assert_eq!(short.interval, Some(Duration::from_secs(60)));
    assert_eq!(short.unused_index_min_bytes, 1024 * 1024);
    let table = parse("schema = { unused_index_min_bytes = 8192 }");
    assert_eq!(table.interval, Some(Duration::from_secs(600)));
    assert_eq!(table.unused_index_min_bytes, 8192);
    assert_eq!(parse("schema = \"off\"").interval, None);
    let bad = problems(
        "[[target]]\ndsn = \"host=db1\"\n[collectors]\nschema = { unused_index_min_bytes = -1 }\n",
    );
    assert!(
        bad.iter().any(|p| p.contains("collectors.schema")),
        "{bad:?}"
    );
}
