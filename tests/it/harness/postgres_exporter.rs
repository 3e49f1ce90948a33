//! The prometheus-community postgres_exporter (Debian's `prometheus-postgres-exporter`) on a free
//! port, connected to a test cluster as its superuser over the Unix socket, with its built-in
//! collectors only: the reference for the names, labels and units that
//! `alerts/compat/postgres-exporter.rules.yml` reproduces. Killed on drop.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::agent::http;
use super::pg::{PgServer, free_port};

/// The Debian package's binary.
const BINARY: &str = "prometheus-postgres-exporter";

/// A running postgres_exporter.
pub struct PostgresExporter {
    child: Child,
    log: tempfile::NamedTempFile,
    /// Where it serves `/metrics`.
    pub addr: SocketAddr,
}

impl PostgresExporter {
    /// Starts it against `pg` and waits until a scrape reports `pg_up 1`.
    pub async fn start(pg: &PgServer) -> PostgresExporter {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = tempfile::NamedTempFile::new().expect("exporter log");
        let dsn = format!(
            "host={} port={} user=postgres dbname=postgres sslmode=disable",
            pg.socket_dir().display(),
            pg.port
        );
        let child = Command::new(BINARY)
            .arg(format!("--web.listen-address={addr}"))
            .env("DATA_SOURCE_NAME", dsn)
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("exporter log"))
            .spawn()
            .expect("postgres_exporter is required (scripts/test.sh installs prometheus-postgres-exporter)");
        let mut exporter = PostgresExporter { child, log, addr };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = exporter.child.try_wait() {
                panic!("postgres_exporter exited with {status}: {}", exporter.log());
            }
            if http(addr, "GET", "/metrics", &[])
                .await
                .is_ok_and(|r| r.status == 200 && r.body.lines().any(|l| l == "pg_up 1"))
            {
                return exporter;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "postgres_exporter did not reach the server: {}",
                exporter.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for PostgresExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
