//! Unit tests of the whole module: DSN forms, environment, defaults,
//! redaction, the driver's configuration and the password file.

use super::driver::DEFAULT_CONNECT_TIMEOUT;
use super::*;
use std::collections::HashMap;

const SECRET: &str = "s3cr3t-Pa55";

fn tcp(name: &str) -> Host {
    Host::Tcp(name.to_owned())
}

fn unix(dir: &str) -> Host {
    Host::Unix(PathBuf::from(dir))
}

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

/// The keys tokio-postgres parses, as a DSN would set them.
fn driver(pairs: &[(&str, &str)]) -> DriverParams {
    let mut params = ConnParams::default();
    for (key, value) in pairs {
        params.set(key, value).expect("test driver key parses");
    }
    params.driver
}

#[test]
fn parses_keyword_and_uri_forms() {
    let cases: Vec<(&str, ConnParams)> = vec![
        ("", ConnParams::default()),
        ("   ", ConnParams::default()),
        (
            "host=localhost port=5432 dbname='my db' password='it\\'s'",
            ConnParams {
                hosts: vec![tcp("localhost")],
                ports: vec![5432],
                dbname: some("my db"),
                password: some("it's"),
                ..Default::default()
            },
        ),
        (
            "host = db.example.com  user =alice sslmode= verify-full",
            ConnParams {
                hosts: vec![tcp("db.example.com")],
                user: some("alice"),
                sslmode: Some(SslMode::VerifyFull),
                ..Default::default()
            },
        ),
        (
            r"password=a\ b\\c options='-c search_path=x' connect_timeout=5",
            ConnParams {
                password: some(r"a b\c"),
                driver: driver(&[("options", "-c search_path=x"), ("connect_timeout", "5")]),
                ..Default::default()
            },
        ),
        (
            "host=/var/run/postgresql,db2 port=5433,5434 target_session_attrs=read-write",
            ConnParams {
                hosts: vec![unix("/var/run/postgresql"), tcp("db2")],
                ports: vec![5433, 5434],
                driver: driver(&[("target_session_attrs", "read-write")]),
                ..Default::default()
            },
        ),
        (
            "host=::1,h2 port=6432,  dbname='' application_name=x gssencmode=disable sslcrl=/c",
            ConnParams {
                hosts: vec![tcp("::1"), tcp("h2")],
                ports: vec![6432, 5432],
                ..Default::default()
            },
        ),
        (
            "sslrootcert=system sslcert=/c.pem sslkey=/k.pem passfile=/p keepalives=0 keepalives_idle=30 channel_binding=require",
            ConnParams {
                sslrootcert: some("system"),
                sslcert: Some(PathBuf::from("/c.pem")),
                sslkey: Some(PathBuf::from("/k.pem")),
                passfile: Some(PathBuf::from("/p")),
                keepalives: Some(false),
                driver: driver(&[("keepalives_idle", "30"), ("channel_binding", "require")]),
                ..Default::default()
            },
        ),
        (
            "connect_timeout=-3",
            ConnParams {
                driver: driver(&[("connect_timeout", "-3")]),
                ..Default::default()
            },
        ),
        ("postgresql://", ConnParams::default()),
        (
            "postgresql://alice:p%40ss%3Aw@db.example.com:5433/my%20db?sslmode=require&connect_timeout=7",
            ConnParams {
                hosts: vec![tcp("db.example.com")],
                ports: vec![5433],
                user: some("alice"),
                password: some("p@ss:w"),
                dbname: some("my db"),
                sslmode: Some(SslMode::Require),
                driver: driver(&[("connect_timeout", "7")]),
                ..Default::default()
            },
        ),
        (
            "postgres://bob:pa?ss:word@h/d",
            ConnParams {
                hosts: vec![tcp("h")],
                user: some("bob"),
                password: some("pa?ss:word"),
                dbname: some("d"),
                ..Default::default()
            },
        ),
        (
            "postgresql://[::1]:5432,[fe80::2],db3:6000/app",
            ConnParams {
                hosts: vec![tcp("::1"), tcp("fe80::2"), tcp("db3")],
                ports: vec![5432, 5432, 6000],
                dbname: some("app"),
                ..Default::default()
            },
        ),
        (
            "postgresql://h1,h2/app",
            ConnParams {
                hosts: vec![tcp("h1"), tcp("h2")],
                dbname: some("app"),
                ..Default::default()
            },
        ),
        (
            "postgresql://%2Fvar%2Frun%2Fpostgresql/app",
            ConnParams {
                hosts: vec![unix("/var/run/postgresql")],
                dbname: some("app"),
                ..Default::default()
            },
        ),
        (
            "postgresql:///app?host=/tmp&port=5999",
            ConnParams {
                hosts: vec![unix("/tmp")],
                ports: vec![5999],
                dbname: some("app"),
                ..Default::default()
            },
        ),
        (
            "postgresql://u@h:1/d?host=other&user=v&ssl=true&options=-c%20a%3Db",
            ConnParams {
                hosts: vec![tcp("other")],
                ports: vec![1],
                user: some("v"),
                dbname: some("d"),
                sslmode: Some(SslMode::Require),
                driver: driver(&[("options", "-c a=b")]),
                ..Default::default()
            },
        ),
        (
            "postgresql://:7000",
            ConnParams {
                ports: vec![7000],
                ..Default::default()
            },
        ),
        (
            "postgresql://h?sslrootcert=%2Fetc%2Fca.pem&target_session_attrs=read-only",
            ConnParams {
                hosts: vec![tcp("h")],
                sslrootcert: some("/etc/ca.pem"),
                driver: driver(&[("target_session_attrs", "read-only")]),
                ..Default::default()
            },
        ),
    ];
    for (dsn, expected) in cases {
        let parsed = ConnParams::parse(dsn).unwrap_or_else(|e| panic!("{dsn:?} failed: {e}"));
        assert_eq!(parsed, expected, "DSN {dsn:?}");
    }
}

#[test]
fn rejects_bad_input_without_leaking_the_password() {
    // (dsn, text the message must contain)
    let cases = [
        (format!("password={SECRET} port=99999"), "\"port\""),
        (format!("password={SECRET} port=abc"), "abc"),
        (format!("password={SECRET} sslmode=verify"), "\"verify\""),
        (
            format!("password={SECRET} connect_timeout=soon"),
            "connect_timeout",
        ),
        (format!("password={SECRET} colour=blue"), "\"colour\""),
        (
            format!("password={SECRET} service=prod"),
            "service files are not supported",
        ),
        (
            format!("password={SECRET} hostaddr=10.0.0.x"),
            "\"hostaddr\"",
        ),
        (
            format!("host=a,b hostaddr=10.0.0.1 password={SECRET}"),
            "1 hostaddr entries given for 2 hosts",
        ),
        (
            format!("hostaddr=10.0.0.1,10.0.0.2 port=1,2,3 password={SECRET}"),
            "3 ports given for 2 hosts",
        ),
        (
            format!("password={SECRET} tcp_user_timeout=soon"),
            "milliseconds",
        ),
        (
            format!("password={SECRET} keepalives_count=many"),
            "keepalives_count",
        ),
        (
            format!("password={SECRET} load_balance_hosts=maybe"),
            "disable or random",
        ),
        (
            format!("password={SECRET} sslnegotiation=direct"),
            "unknown connection parameter",
        ),
        (
            format!("password={SECRET} keepalives_retries=3"),
            "unknown connection parameter",
        ),
        (
            format!("password={SECRET} target_session_attrs=primary"),
            "target_session_attrs",
        ),
        (
            format!("password={SECRET} channel_binding=maybe"),
            "channel_binding",
        ),
        (format!("password={SECRET} keepalives=yes"), "keepalives"),
        (format!("password='{SECRET}"), "unterminated"),
        (format!("password={SECRET} port"), "expected '='"),
        (format!("password={SECRET} =x"), "parameter name"),
        (format!("host=a,,b password={SECRET}"), "entry #2"),
        (format!("host=a,b,c port=1,2 password={SECRET}"), "3 hosts"),
        (
            format!("sslrootcert=system sslmode=verify-ca password={SECRET}"),
            "verify-ca",
        ),
        (format!("postgresql://u:{SECRET}@h:99999/d"), "\"port\""),
        (format!("postgresql://u:{SECRET}@h/d?sslmode=nope"), "nope"),
        (
            format!("postgresql://u:{SECRET}@h/d?frobnicate=1"),
            "\"frobnicate\"",
        ),
        (format!("postgresql://u:{SECRET}@h/d?ssl=1"), "\"ssl\""),
        (
            format!("postgresql://u:{SECRET}@h/d?sslmode"),
            "query parameter #1",
        ),
        (
            format!("postgresql://u:{SECRET}@h/d?a=b=c"),
            "more than one '='",
        ),
        (format!("postgresql://u:{SECRET}%zz@h/d"), "password"),
        (format!("postgresql://u:{SECRET}%00@h/d"), "%00"),
        (format!("postgresql://u:{SECRET}@[::1/d"), "']'"),
        (format!("postgresql://u:{SECRET}@[::1]x/d"), "after an IPv6"),
        (format!("postgresql://u:{SECRET}@a,,b/d"), "entry #2"),
        (format!("postgresql://u:ab/{SECRET}@h/d"), "%2F"),
    ];
    for (dsn, needle) in cases {
        let err = match ConnParams::parse(&dsn) {
            Ok(params) => panic!("{dsn:?} parsed as {params:?}"),
            Err(err) => err,
        };
        let message = err.to_string();
        assert!(
            message.contains(needle),
            "{dsn:?}: {message:?} lacks {needle:?}"
        );
        assert!(
            !message.contains(SECRET),
            "{dsn:?}: message leaks the password: {message}"
        );
        assert!(
            !format!("{err:?}").contains(SECRET),
            "{dsn:?}: Debug leaks the password"
        );
    }
}

#[test]
fn sslmode_round_trips_through_its_libpq_spelling() {
    for mode in SslMode::ALL {
        assert_eq!(mode.to_string().parse::<SslMode>().ok(), Some(mode));
    }
    assert_eq!(SslMode::default(), SslMode::Prefer);
}

#[test]
fn env_fills_only_unset_fields() {
    let env: HashMap<&str, &str> = HashMap::from([
        ("PGHOST", "envhost1,envhost2"),
        ("PGPORT", "6000"),
        ("PGUSER", "envuser"),
        ("PGPASSWORD", "envpass"),
        ("PGDATABASE", "envdb"),
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", "/env/root.crt"),
        ("PGCONNECT_TIMEOUT", "3"),
        ("PGOPTIONS", ""),
        ("PGTARGETSESSIONATTRS", "read-write"),
    ]);
    let lookup = |var: &str| env.get(var).map(|v| (*v).to_owned());
    let cases = [
        (
            "host=dsnhost user=dsnuser sslmode=disable",
            ConnParams {
                hosts: vec![tcp("dsnhost")],
                ports: vec![6000],
                user: some("dsnuser"),
                password: some("envpass"),
                dbname: some("envdb"),
                sslmode: Some(SslMode::Disable),
                sslrootcert: some("/env/root.crt"),
                driver: driver(&[
                    ("connect_timeout", "3"),
                    ("target_session_attrs", "read-write"),
                ]),
                ..Default::default()
            },
        ),
        (
            "postgresql://u:p@h:1/d?connect_timeout=9&sslrootcert=/dsn.crt",
            ConnParams {
                hosts: vec![tcp("h")],
                ports: vec![1],
                user: some("u"),
                password: some("p"),
                dbname: some("d"),
                sslmode: Some(SslMode::VerifyFull),
                sslrootcert: some("/dsn.crt"),
                driver: driver(&[
                    ("connect_timeout", "9"),
                    ("target_session_attrs", "read-write"),
                ]),
                ..Default::default()
            },
        ),
        (
            "",
            ConnParams {
                hosts: vec![tcp("envhost1"), tcp("envhost2")],
                ports: vec![6000],
                user: some("envuser"),
                password: some("envpass"),
                dbname: some("envdb"),
                sslmode: Some(SslMode::VerifyFull),
                sslrootcert: some("/env/root.crt"),
                driver: driver(&[
                    ("connect_timeout", "3"),
                    ("target_session_attrs", "read-write"),
                ]),
                ..Default::default()
            },
        ),
    ];
    for (dsn, expected) in cases {
        let mut params = ConnParams::parse(dsn).expect("test DSN parses");
        params
            .fill_from_env(lookup)
            .expect("test environment is valid");
        assert_eq!(params, expected, "DSN {dsn:?}");
    }
}

#[test]
fn env_errors_name_the_variable() {
    let cases = [
        ("", "PGPORT", "x1", "PGPORT"),
        ("", "PGSSLMODE", "strict", "PGSSLMODE"),
        ("host=a,b", "PGPORT", "1,2,3", "3 ports"),
        ("sslrootcert=system", "PGSSLMODE", "require", "require"),
    ];
    for (dsn, var, value, needle) in cases {
        let mut params = ConnParams::parse(dsn).expect("test DSN parses");
        let result = params.fill_from_env(|name| (name == var).then(|| value.to_owned()));
        let message = result
            .expect_err("invalid environment must fail")
            .to_string();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
}

#[test]
fn defaults_fill_socket_port_user_and_dbname() {
    let cases = [
        // (dsn, /var/run/postgresql exists, os user, expected)
        (
            "",
            true,
            some("alice"),
            ConnParams {
                hosts: vec![unix("/var/run/postgresql")],
                ports: vec![5432],
                user: some("alice"),
                dbname: some("alice"),
                ..Default::default()
            },
        ),
        (
            "user=bob",
            false,
            some("alice"),
            ConnParams {
                hosts: vec![unix("/tmp")],
                ports: vec![5432],
                user: some("bob"),
                dbname: some("bob"),
                ..Default::default()
            },
        ),
        (
            "host=h port=1 dbname=d",
            true,
            None,
            ConnParams {
                hosts: vec![tcp("h")],
                ports: vec![1],
                dbname: some("d"),
                ..Default::default()
            },
        ),
    ];
    for (dsn, socket_dir_exists, os_user, expected) in cases {
        let mut params = ConnParams::parse(dsn).expect("test DSN parses");
        params.fill_defaults_with(os_user, |_| socket_dir_exists);
        assert_eq!(params, expected, "DSN {dsn:?}");
        assert_eq!(params.sslmode, None);
    }
}

#[test]
fn effective_sslmode_follows_libpq() {
    let cases = [
        ("", SslMode::Prefer),
        ("sslmode=disable", SslMode::Disable),
        ("sslmode=require", SslMode::Require),
        ("sslmode=require sslrootcert=/ca.pem", SslMode::VerifyCa),
        (
            "sslmode=verify-full sslrootcert=/ca.pem",
            SslMode::VerifyFull,
        ),
        ("sslmode=prefer sslrootcert=/ca.pem", SslMode::Prefer),
        ("sslrootcert=system", SslMode::VerifyFull),
    ];
    for (dsn, expected) in cases {
        let params = ConnParams::parse(dsn).expect("test DSN parses");
        assert_eq!(params.effective_sslmode(), expected, "DSN {dsn:?}");
    }
}

#[test]
fn redaction_never_shows_the_password() {
    let cases = [
        (
            format!("postgresql://alice:{SECRET}@db1:5433/app"),
            "alice@db1:5433/app",
        ),
        (
            format!("host=db1,db2,db3 password={SECRET} dbname=app"),
            "db1/app (+2 more hosts)",
        ),
        (
            format!("host=/tmp port=5432 user=u password={SECRET}"),
            "u@unix:/tmp:5432",
        ),
        (
            format!("postgresql://u:{SECRET}@[::1]:5432/d"),
            "u@[::1]:5432/d",
        ),
        (format!("password={SECRET}"), "(default host)"),
    ];
    for (dsn, expected) in cases {
        let params = ConnParams::parse(&dsn).expect("test DSN parses");
        assert_eq!(params.redacted(), expected);
        assert!(
            !format!("{params:?}").contains(SECRET),
            "Debug leaks the password"
        );
    }
}

#[test]
fn tokio_config_carries_the_parameters() {
    use tokio_postgres::config::{
        ChannelBinding, Host as TokioHost, SslMode as TokioSsl, TargetSessionAttrs,
    };
    let params = ConnParams::parse(
        "host=db1,/sock port=1,2 user=u password=pw dbname=d options=-cx=1 \
         application_name=other target_session_attrs=read-write sslmode=verify-ca \
         keepalives_idle=60 channel_binding=require",
    )
    .expect("test DSN parses");
    let config = params.to_tokio_config();
    assert_eq!(
        config.get_hosts(),
        &[
            TokioHost::Tcp("db1".into()),
            TokioHost::Unix(PathBuf::from("/sock"))
        ]
    );
    assert_eq!(config.get_ports(), &[1, 2]);
    assert_eq!(config.get_user(), Some("u"));
    assert_eq!(config.get_password(), Some(&b"pw"[..]));
    assert_eq!(config.get_dbname(), Some("d"));
    assert_eq!(config.get_options(), Some("-cx=1"));
    assert_eq!(config.get_application_name(), Some("pgvigil"));
    assert_eq!(
        config.get_target_session_attrs(),
        TargetSessionAttrs::ReadWrite
    );
    assert_eq!(config.get_ssl_mode(), TokioSsl::Require);
    assert_eq!(config.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
    assert_eq!(config.get_keepalives_idle(), Duration::from_secs(60));
    assert_eq!(config.get_channel_binding(), ChannelBinding::Require);
}

#[test]
fn tokio_ssl_mode_mapping() {
    use tokio_postgres::config::SslMode as TokioSsl;
    let cases = [
        ("host=h sslmode=disable", TokioSsl::Disable),
        ("host=h sslmode=allow", TokioSsl::Prefer),
        ("host=h", TokioSsl::Prefer),
        ("host=h sslmode=require", TokioSsl::Require),
        ("host=h sslmode=verify-full", TokioSsl::Require),
        ("host=h sslrootcert=system", TokioSsl::Require),
        ("host=/tmp sslmode=require", TokioSsl::Disable),
    ];
    for (dsn, expected) in cases {
        let config = ConnParams::parse(dsn)
            .expect("test DSN parses")
            .to_tokio_config();
        assert_eq!(config.get_ssl_mode(), expected, "DSN {dsn:?}");
    }
}

#[test]
fn connect_timeout_zero_means_no_timeout() {
    let cases = [
        ("host=h", Some(DEFAULT_CONNECT_TIMEOUT)),
        ("host=h connect_timeout=0", None),
        ("host=h connect_timeout=-3", None),
        ("host=h connect_timeout=' 4 '", Some(Duration::from_secs(4))),
        ("host=h connect_timeout=4", Some(Duration::from_secs(4))),
    ];
    for (dsn, expected) in cases {
        let config = ConnParams::parse(dsn)
            .expect("test DSN parses")
            .to_tokio_config();
        assert_eq!(
            config.get_connect_timeout().copied(),
            expected,
            "DSN {dsn:?}"
        );
    }
}

fn write_pgpass(dir: &Path, contents: &str, mode: u32) -> PathBuf {
    let path = dir.join(".pgpass");
    std::fs::write(&path, contents).expect("write test pgpass");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("chmod test pgpass");
    }
    #[cfg(not(unix))]
    let _ = mode;
    path
}

#[test]
fn pgpass_lookup() {
    let contents = "\
# comment line:*:*:*:nope
db1.example.com:5432:app:alice:exact
db1.example.com:*:*:bob:wild\\:card\\\\pw
*:5433:*:*:anyhost
localhost:5432:*:carol:sockpw
/custom/dir:5432:*:carol:custompw
we\\:ird:5432:app:dave:escaped-host
db2:5432:app:erin:first
db2:5432:app:erin:second
db3:5432:app:frank:pw:ignored-tail
";
    let dir = tempfile::tempdir().expect("tempdir");
    write_pgpass(dir.path(), contents, 0o600);
    let cases = [
        ("host=db1.example.com user=alice dbname=app", Some("exact")),
        (
            "host=db1.example.com port=6000 user=bob dbname=x",
            Some(r"wild:card\pw"),
        ),
        (
            "host=elsewhere port=5433 user=zed dbname=z",
            Some("anyhost"),
        ),
        (
            "host=/var/run/postgresql user=carol dbname=c",
            Some("sockpw"),
        ),
        ("user=carol dbname=c", Some("sockpw")),
        ("host=/custom/dir user=carol dbname=c", Some("custompw")),
        ("host=we:ird user=dave dbname=app", Some("escaped-host")),
        ("host=db2 user=erin dbname=app", Some("first")),
        ("host=db3 user=frank dbname=app", Some("pw")),
        ("host=db1.example.com user=alice dbname=other", None),
        ("host=db1.example.com user=alice", None),
    ];
    for (dsn, expected) in cases {
        let params = ConnParams::parse(dsn).expect("test DSN parses");
        assert_eq!(
            params.pgpass_password(Some(dir.path())).as_deref(),
            expected,
            "DSN {dsn:?}"
        );
    }
}

#[test]
fn pgpass_file_selection_and_permissions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line = "*:*:*:*:filepw\n";
    let private = dir.path().join("private");
    std::fs::create_dir(&private).expect("mkdir");
    write_pgpass(&private, line, 0o600);
    let open = dir.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    let open_file = write_pgpass(&open, line, 0o644);
    let private_file = private.join(".pgpass");
    let cases = [
        // (passfile, home, expected)
        (None, Some(private.as_path()), Some("filepw")),
        (None, Some(open.as_path()), None),
        (None, None, None),
        (Some(private_file.clone()), None, Some("filepw")),
        (Some(open_file.clone()), Some(private.as_path()), None),
        (
            Some(dir.path().join("missing")),
            Some(private.as_path()),
            None,
        ),
    ];
    for (passfile, home, expected) in cases {
        let params = ConnParams {
            hosts: vec![tcp("h")],
            user: some("u"),
            dbname: some("d"),
            passfile: passfile.clone(),
            ..Default::default()
        };
        assert_eq!(
            params.pgpass_password(home).as_deref(),
            expected,
            "passfile {passfile:?}, home {home:?}"
        );
    }
}

#[test]
fn driver_keys_reach_tokio_postgres_as_libpq_means_them() {
    use tokio_postgres::config::{Host as TokioHost, LoadBalanceHosts};
    let params = ConnParams::parse(
        "host=db1,db2 hostaddr=10.0.0.1,::1 keepalives_interval=5 keepalives_count=' 3 ' \
         tcp_user_timeout=2500 load_balance_hosts=random",
    )
    .expect("test DSN parses");
    assert_eq!(params.keepalives_count, Some(3));
    let config = params.to_tokio_config();
    assert_eq!(
        config.get_hosts(),
        &[TokioHost::Tcp("db1".into()), TokioHost::Tcp("db2".into())]
    );
    let addrs: Vec<String> = config
        .get_hostaddrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(addrs, ["10.0.0.1", "::1"]);
    assert_eq!(
        config.get_keepalives_interval(),
        Some(Duration::from_secs(5))
    );
    assert_eq!(config.get_keepalives_retries(), Some(3));
    // libpq's unit is milliseconds; the driver's own parser would read seconds.
    assert_eq!(
        config.get_tcp_user_timeout(),
        Some(&Duration::from_millis(2500))
    );
    assert_eq!(config.get_load_balance_hosts(), LoadBalanceHosts::Random);
    assert_eq!(params.endpoint(), "db1 (+1 more hosts)");

    // Zero or negative: the system default, as in libpq (a count of 0
    // would reach the kernel, which refuses it); any non-zero turns on.
    let cases = [
        (
            "host=h tcp_user_timeout=0 keepalives_count=0",
            None,
            None,
            true,
        ),
        (
            "host=h tcp_user_timeout=-1 keepalives_count=-1",
            None,
            None,
            true,
        ),
        ("host=h keepalives=-1 keepalives_idle=-5", None, None, true),
        ("host=h keepalives=0", None, None, false),
        ("host=h", None, None, true),
    ];
    for (dsn, timeout, retries, keepalives) in cases {
        let config = ConnParams::parse(dsn)
            .expect("test DSN parses")
            .to_tokio_config();
        assert_eq!(config.get_tcp_user_timeout(), timeout, "DSN {dsn:?}");
        assert_eq!(config.get_keepalives_retries(), retries, "DSN {dsn:?}");
        assert_eq!(config.get_keepalives(), keepalives, "DSN {dsn:?}");
        assert_eq!(
            config.get_keepalives_idle(),
            Duration::from_secs(7200),
            "DSN {dsn:?}"
        );
    }
}

#[test]
fn hostaddr_alone_is_the_server() {
    use tokio_postgres::config::{Host as TokioHost, SslMode as TokioSsl};
    let mut params = ConnParams::parse(&format!(
        "hostaddr=::1 port=6000 user=u dbname=d sslmode=require password={SECRET}"
    ))
    .expect("test DSN parses");
    params.fill_defaults_with(None, |_| true);
    // No socket directory is added: libpq connects to the address.
    assert_eq!(params.hosts, []);
    assert_eq!(params.endpoint(), "[::1]:6000 as u");
    assert_eq!(params.redacted(), "u@[::1]:6000/d");
    let config = params.to_tokio_config();
    // The address doubles as the TLS server name, which rustls needs.
    assert_eq!(config.get_hosts(), &[TokioHost::Tcp("::1".into())]);
    assert_eq!(config.get_ssl_mode(), TokioSsl::Require);

    let socket_and_addr = ConnParams::parse("host=/tmp hostaddr=10.0.0.1 sslmode=require")
        .expect("test DSN parses")
        .to_tokio_config();
    assert_eq!(
        socket_and_addr.get_ssl_mode(),
        TokioSsl::Require,
        "a hostaddr means TCP, so sslmode applies"
    );
}

#[test]
fn pgpass_matches_a_lone_hostaddr() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pgpass(dir.path(), "10.0.0.1:5432:app:alice:bypass\n", 0o600);
    let cases = [
        ("hostaddr=10.0.0.1 user=alice dbname=app", Some("bypass")),
        // libpq matches the host name when there is one.
        ("host=db hostaddr=10.0.0.1 user=alice dbname=app", None),
    ];
    for (dsn, expected) in cases {
        let params = ConnParams::parse(dsn).expect("test DSN parses");
        assert_eq!(
            params.pgpass_password(Some(dir.path())).as_deref(),
            expected,
            "DSN {dsn:?}"
        );
    }
}
