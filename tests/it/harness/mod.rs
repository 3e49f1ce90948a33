//! The one test harness: real PostgreSQL clusters, the real pgvigil binary, a real Prometheus.

pub mod agent;
pub mod bouncer;
pub mod certs;
pub mod checks;
pub mod data;
pub mod health;
pub mod metrics;
pub mod pg;
pub mod pgbackrest;
pub mod pgbench;
pub mod postgres_exporter;
pub mod prometheus;
pub mod proxy;
pub mod redis;
pub mod replica;

use std::path::PathBuf;

pub use agent::{Client, RunningAgent, http, outputs, pgvigil};
pub use checks::{ClockWatch, promtool_check, true_quantile, unix_now};
pub use metrics::Metrics;
pub use pg::{PgOptions, PgServer, eventually};
pub use postgres_exporter::PostgresExporter;
pub use prometheus::Prometheus;

/// A cluster with the least-privilege `pgvigil` role, as a user would set
/// it up, and a password file for it.
pub struct Fixture {
    /// The cluster.
    pub pg: PgServer,
    /// The pgvigil role's password (tests check it never leaks).
    pub password: String,
}

impl Fixture {
    /// A default cluster plus the monitoring role.
    pub async fn start() -> Fixture {
        Fixture::start_with(PgOptions::default()).await
    }

    /// A cluster with extra settings plus the monitoring role.
    pub async fn start_with(options: PgOptions) -> Fixture {
        Fixture::set_up(PgServer::start_with(options)).await
    }

    /// Like [`Fixture::start`], on a cluster with a system identifier of
    /// its own ([`PgServer::start_distinct`]): another server, not a copy.
    pub async fn start_distinct() -> Fixture {
        Fixture::set_up(PgServer::start_distinct(PgOptions::default())).await
    }

    async fn set_up(pg: PgServer) -> Fixture {
        let password = format!("pw-{}-Secret'\"x", pg.port);
        pg.create_monitoring_role(&password).await;
        // The reference setup: pg_stat_statements in the database pgvigil
        // connects to (the harness preloads the library).
        pg.connect()
            .await
            .batch_execute("CREATE EXTENSION pg_stat_statements")
            .await
            .expect("create pg_stat_statements");
        Fixture { pg, password }
    }

    /// A file holding the password, as `password_file` expects.
    pub fn password_file(&self) -> PathBuf {
        let file = self.pg.scratch().join("pgvigil.password");
        std::fs::write(&file, format!("{}\n", self.password)).expect("write password file");
        file
    }

    /// The TCP DSN of the monitoring role without its password.
    pub fn dsn(&self) -> String {
        format!(
            "postgresql://pgvigil@127.0.0.1:{}/postgres?sslmode=disable",
            self.pg.port
        )
    }

    /// An agent config for this cluster: 1 s intervals, the password from a
    /// file, plus `extra` TOML appended to `[collectors]`.
    pub fn config(&self, extra_collectors: &str) -> String {
        self.config_with("", extra_collectors)
    }

    /// Like [`Fixture::config`], with `target_tables` (sub-tables of the
    /// target such as `[target.backup]`) placed after the target's keys.
    pub fn config_with(&self, target_tables: &str, extra_collectors: &str) -> String {
        format!(
            "[[target]]\nname = \"main\"\ndsn = \"{}\"\npassword_file = \"{}\"\n{target_tables}\n\n[collectors]\ndefault_interval = \"1s\"\n{extra_collectors}\n",
            self.dsn(),
            self.password_file().display()
        )
    }

    /// Environment for `pgvigil once --dsn …` with the password in
    /// PGPASSWORD, like psql.
    pub fn once_env(&self) -> Vec<(&'static str, String)> {
        vec![("PGPASSWORD", self.password.clone())]
    }
}
