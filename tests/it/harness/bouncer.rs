//! A real PgBouncer (Debian's package) in front of a throwaway cluster, in
//! a temp dir on a free port, run as `postgres` (PgBouncer refuses root),
//! stopped on drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::pg::{PgServer, RefusedPort, chown_to_postgres, free_port, is_root, open_up};

/// Users in PgBouncer's auth file: (name, password).
pub const APP: (&str, &str) = ("app", "app-pw");
/// In admin_users.
pub const ADMIN: (&str, &str) = ("bouncer_admin", "admin-pw");
/// In stats_users only.
pub const STATS: (&str, &str) = ("bouncer_stats", "stats-pw");
/// In the auth file, but neither admin nor stats user.
pub const NOBODY: (&str, &str) = ("bouncer_nobody", "nobody-pw");
/// The `max_client_conn` every harness PgBouncer is configured with.
pub const MAX_CLIENT_CONN: u32 = 100;

/// A running PgBouncer.
pub struct Bouncer {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// For [`Bouncer::unreachable`]: the port held so that it keeps refusing.
    _refused: Option<RefusedPort>,
}

fn as_postgres(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn pgbouncer() -> String {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
        .unwrap_or_else(|| "pgbouncer".into())
}

impl Bouncer {
    /// Starts PgBouncer with pools of `pool_size` server connections for
    /// database `appdb` (the cluster's `postgres` database), after creating
    /// the `app` role on the cluster.
    pub async fn start(pg: &PgServer, pool_size: u32) -> Bouncer {
        Bouncer::start_with(pg, pool_size, &[], &[]).await
    }

    /// As [`Bouncer::start`], with more `[databases]` lines (`name = connstr`)
    /// and more `[pgbouncer]` settings (`key = value`, none of those the
    /// harness sets itself).
    pub async fn start_with(
        pg: &PgServer,
        pool_size: u32,
        databases: &[&str],
        settings: &[&str],
    ) -> Bouncer {
        let bouncer = Bouncer::prepare(pg, pool_size, free_port(), None).await;
        bouncer.add_to_config(databases, settings);
        bouncer.launch();
        bouncer
    }

    /// A PgBouncer that never starts, on a port that refuses connections
    /// for the Bouncer's whole life (a stopped one's freed port could be
    /// taken by another test's PgBouncer running in parallel).
    pub async fn unreachable(pg: &PgServer) -> Bouncer {
        let refused = RefusedPort::hold();
        Bouncer::prepare(pg, 2, refused.port, Some(refused)).await
    }

    async fn prepare(
        pg: &PgServer,
        pool_size: u32,
        port: u16,
        refused: Option<RefusedPort>,
    ) -> Bouncer {
        let admin = pg.connect().await;
        admin
            .batch_execute(&format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{0}') THEN CREATE ROLE {0} LOGIN PASSWORD '{1}'; END IF; END $$",
                APP.0, APP.1
            ))
            .await
            .expect("create app role");
        let dir = tempfile::Builder::new()
            .prefix("pgvigil-bouncer-")
            .tempdir()
            .expect("temp dir");
        open_up(dir.path());
        let users: String = [APP, ADMIN, STATS, NOBODY]
            .iter()
            .map(|(u, p)| format!("\"{u}\" \"{p}\"\n"))
            .collect();
        std::fs::write(dir.path().join("userlist.txt"), users).expect("auth file");
        let ini = format!(
            "[databases]\nappdb = host=127.0.0.1 port={pg_port} dbname=postgres\n\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir = {dir}\n\
             auth_type = md5\nauth_file = {dir}/userlist.txt\nadmin_users = {admin}\nstats_users = {stats}\n\
             pool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_client_conn = {MAX_CLIENT_CONN}\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            pg_port = pg.port,
            dir = dir.path().display(),
            admin = ADMIN.0,
            stats = STATS.0,
        );
        std::fs::write(dir.path().join("pgbouncer.ini"), ini).expect("ini");
        chown_to_postgres(dir.path());
        Bouncer {
            dir,
            port,
            _refused: refused,
        }
    }

    /// Inserts `databases` lines after `[databases]`'s own and appends
    /// `settings` to `[pgbouncer]`, the last section.
    fn add_to_config(&self, databases: &[&str], settings: &[&str]) {
        let ini = std::fs::read_to_string(self.config()).expect("read ini");
        let (dbs, rest) = ini.split_once("\n\n[pgbouncer]").expect("two sections");
        let mut out = String::from(dbs);
        for line in databases {
            out.push('\n');
            out.push_str(line);
        }
        out.push_str("\n\n[pgbouncer]");
        out.push_str(rest);
        for line in settings {
            out.push_str(line);
            out.push('\n');
        }
        std::fs::write(self.config(), out).expect("write ini");
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("pgbouncer.ini")
    }

    fn launch(&self) {
        let out = as_postgres(&pgbouncer())
            .arg("-d")
            .arg(self.config())
            .output()
            .expect("pgbouncer is required");
        assert!(
            out.status.success(),
            "pgbouncer did not start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        // Listening comes before the daemon writes its pid file: wait for
        // both, so that stop() always finds the process to stop.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.pid().is_some()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pgbouncer does not listen on {}: {}", self.port, self.log());
    }

    /// PgBouncer's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops PgBouncer.
    pub fn stop(&self) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill with a pid we read and a valid signal.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            for _ in 0..100 {
                // SAFETY: signal 0 only checks that the process exists.
                if unsafe { libc::kill(pid, 0) } != 0 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// A DSN for `user` (password separate) to `dbname` through PgBouncer.
    pub fn dsn(&self, user: &str, dbname: &str) -> String {
        format!(
            "postgresql://{user}@127.0.0.1:{}/{dbname}?sslmode=disable",
            self.port
        )
    }

    /// Runs `command` on the admin console as [`ADMIN`], on a connection of
    /// its own: the ground truth a test compares the agent with, and how it
    /// changes PgBouncer (`PAUSE`, `DISABLE`). Rows as column → text (NULL
    /// as "").
    pub async fn admin(&self, command: &str) -> Vec<BTreeMap<String, String>> {
        let mut config: tokio_postgres::Config =
            self.dsn(ADMIN.0, "pgbouncer").parse().expect("admin DSN");
        config.password(ADMIN.1);
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to the admin console");
        tokio::spawn(connection);
        client
            .simple_query(command)
            .await
            .unwrap_or_else(|e| panic!("{command}: {e}"))
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    row.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let v = row.get(i).unwrap_or("");
                            (c.name().to_string(), v.to_string())
                        })
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    /// A file holding `password`, for `password_file`.
    pub fn password_file(&self, password: &str) -> PathBuf {
        let file = self.dir.path().join(format!("{password}.password"));
        std::fs::write(&file, format!("{password}\n")).expect("password file");
        file
    }

    /// `[target.pgbouncer]` TOML for this PgBouncer as `user`.
    pub fn target_table(&self, name: Option<&str>, user: (&str, &str), array: bool) -> String {
        let header = if array {
            "[[target.pgbouncer]]"
        } else {
            "[target.pgbouncer]"
        };
        let name = name
            .map(|n| format!("name = \"{n}\"\n"))
            .unwrap_or_default();
        format!(
            "{header}\n{name}dsn = \"{}\"\npassword_file = \"{}\"\n",
            self.dsn(user.0, "pgbouncer"),
            self.password_file(user.1).display()
        )
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        self.stop();
    }
}
