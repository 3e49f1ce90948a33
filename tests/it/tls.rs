//! TLS to PostgreSQL: verify-full against a server with a test CA.

use std::path::Path;

use crate::harness::certs::make_certs;
use crate::harness::{Fixture, PgOptions, outputs, pgvigil};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_connects_only_with_the_right_ca_and_host_name() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    // The server reads its certificate and key as postgres; the key must be private.
    crate::harness::pg::open_up(certs.path());
    std::fs::set_permissions(
        certs.path().join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    crate::harness::pg::chown_to_postgres(certs.path());
    let fx = Fixture::start_with(PgOptions {
        conf: vec![
            "ssl = on".into(),
            format!(
                "ssl_cert_file = '{}'",
                certs.path().join("server.crt").display()
            ),
            format!(
                "ssl_key_file = '{}'",
                certs.path().join("server.key").display()
            ),
        ],
    })
    .await;
    let ca = certs.path().join("ca.crt");
    let other = certs.path().join("other.crt");
    let dsn = |host: &str, mode: &str, root: &Path| {
        format!(
            "host={host} port={} user=pgvigil dbname=postgres sslmode={mode} sslrootcert={}",
            fx.pg.port,
            root.display()
        )
    };
    let cases = [
        (dsn("localhost", "verify-full", &ca), true, ""),
        (dsn("localhost", "verify-ca", &ca), true, ""),
        (dsn("localhost", "require", &other), false, "certificate"), // require + root cert = verify-ca, like libpq
        (
            dsn("localhost", "verify-full", &other),
            false,
            "certificate",
        ),
        (
            format!(
                "host=localhost port={} user=pgvigil dbname=postgres sslmode=require",
                fx.pg.port
            ),
            true,
            "",
        ),
    ];
    for (dsn, ok, want) in cases {
        let out = pgvigil(
            &["once", "--dsn", &dsn, "--format", "prometheus"],
            &[("PGPASSWORD", &fx.password)],
        );
        let (stdout, stderr) = outputs(&out);
        assert_eq!(out.status.success(), ok, "{dsn}\n{stdout}{stderr}");
        if ok {
            assert!(stdout.contains("pg_up{target=\"main\"} 1"), "{stdout}");
        } else {
            assert!(
                stderr.contains("could not connect") && stderr.to_lowercase().contains(want),
                "{dsn}: {stderr}"
            );
        }
    }
}
