//! `pgvigil demo`: everything pgvigil does, in one command, without
//! touching the user's servers.
//!
//! - `cluster`: server binaries, a throwaway primary and a late replica;
//! - `workload`: what makes them interesting (bimodal latency, a missing
//!   index, a lock queue, inserts, failed logins);
//! - `leftovers`: where demos keep their files, and cleaning up after a
//!   demo that could not.
//!
//! The agent itself is `pgvigil run` on a config written here, so the
//! demo shows exactly what the daemon does.

mod cluster;
mod leftovers;
mod workload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::cluster::{Binaries, Server};

/// The default address of the demo's agent.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9932";

/// Stops the servers and removes the run directory when dropped: on
/// Ctrl-C, SIGTERM, an error half-way, or a panic.
struct Cleanup {
    bin: Option<Binaries>,
    servers: Vec<Server>,
    run: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(bin) = &self.bin {
            // The replica first: it would otherwise keep asking for WAL.
            for server in self.servers.iter().rev() {
                server.stop(bin);
            }
        }
        let _ = std::fs::remove_dir_all(&self.run);
        // The base directory too, when no other demo uses it.
        let _ = std::fs::remove_dir(leftovers::base());
        eprintln!("pgvigil demo: stopped, {} removed", self.run.display());
    }
}

fn random_hex() -> anyhow::Result<String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn make_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
    // The servers run as postgres when we are root: they must get through.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The agent's config: both servers, the primary's log, short intervals.
fn config(
    primary: &Server,
    replica: Option<&Server>,
    run: &Path,
    password_file: &Path,
    listen: SocketAddr,
) -> String {
    let target = |name: &str, port: u16| {
        format!(
            "[[target]]\nname = \"{name}\"\ndsn = \"postgresql://pgvigil@127.0.0.1:{port}/postgres?sslmode=disable\"\npassword_file = \"{}\"\n",
            password_file.display()
        )
    };
    let mut out = format!("listen = \"{listen}\"\n\n{}", target("demo", primary.port));
    out.push_str(&format!(
        "[target.logs]\ndirectory = \"{}\"\nstate_file = \"{}\"\n\n",
        primary.log_dir().display(),
        run.join("logs-demo.json").display()
    ));
    if let Some(r) = replica {
        out.push_str(&target("demo-replica", r.port));
        out.push('\n');
    }
    out.push_str(
        "[collectors]\ndefault_interval = \"5s\"\nactive_sessions = \"1s\"\nlogs = \"2s\"\n\n\
         [collectors.statements]\ninterval = \"5s\"\n\n\
         [explain]\nslow_threshold = \"20ms\"\n",
    );
    out
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(listen: SocketAddr, with_replica: bool) -> anyhow::Result<()> {
    for old in leftovers::clean() {
        eprintln!(
            "pgvigil demo: removed what an earlier demo left behind: {}",
            old.display()
        );
    }
    let bin = Binaries {
        dir: cluster::bindir()?,
    };
    let major = bin.major()?;
    let base = leftovers::base();
    make_dir(&base)?;
    let run = base.join(format!("run-{}", std::process::id()));
    make_dir(&run)?;
    std::fs::write(run.join("demo.pid"), std::process::id().to_string())?;
    let mut cleanup = Cleanup {
        bin: Some(bin.clone()),
        servers: Vec::new(),
        run: run.clone(),
    };
    let socket = run.join("sock");
    make_dir(&socket)?;
    cluster::chown_to_postgres(&socket)?;

    eprintln!(
        "pgvigil demo: starting PostgreSQL {major} from {} in {}",
        bin.dir.display(),
        run.display()
    );
    let primary = cluster::primary(&bin, &run.join("primary"), &socket, major)?;
    primary.start(&bin, &run)?;
    cleanup.servers.push(primary.clone());

    let (admin, connection) = tokio_postgres::Config::new()
        .host_path(&socket)
        .port(primary.port)
        .user("postgres")
        .dbname("postgres")
        .application_name("pgvigil-demo")
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to the demo server")?;
    tokio::spawn(connection);
    let password = random_hex()?;
    workload::prepare(&admin, &password).await?;
    let read_all = if major >= 14 {
        "GRANT pg_read_all_data TO pgvigil"
    } else {
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgvigil"
    };
    admin.batch_execute(read_all).await?;

    let with_replica = with_replica && {
        let found = bin.dir.join("pg_basebackup").exists();
        if !found {
            eprintln!(
                "pgvigil demo: no pg_basebackup in {}: running without a replica",
                bin.dir.display()
            );
        }
        found
    };
    let replica = if with_replica {
        let replica = cluster::replica(&bin, &primary, &run.join("replica"), &socket, major)?;
        replica.start(&bin, &run)?;
        cleanup.servers.push(replica.clone());
        Some(replica)
    } else {
        None
    };

    let password_file = run.join("pgvigil.password");
    std::fs::write(&password_file, format!("{password}\n"))?;
    let config_file = run.join("pgvigil.toml");
    std::fs::write(
        &config_file,
        config(&primary, replica.as_ref(), &run, &password_file, listen),
    )?;

    let token = CancellationToken::new();
    let tasks = TaskTracker::new();
    workload::start(&tasks, &token, primary.port);

    println!(
        "\npgvigil demo is running: PostgreSQL {major} on 127.0.0.1:{}{}, with a workload.\n\n\
         \x20 page        http://{listen}/\n\
         \x20 metrics     http://{listen}/metrics\n\
         \x20 statements  http://{listen}/api/v1/statements\n\
         \x20 plans       http://{listen}/api/v1/plans\n\n\
         Try:\n\
         \x20 pgvigil top --agent http://{listen}\n\
         \x20 psql -h {} -p {} -U postgres postgres\n\
         \x20 curl -s http://{listen}/metrics | grep -E 'pg_plan_findings|pg_replication_lag_seconds|pg_log_auth_failures_total'\n\n\
         Ctrl-C stops it and removes everything.\n",
        primary.port,
        replica
            .as_ref()
            .map(|r| format!(" (replica on {}, applying 10 s late)", r.port))
            .unwrap_or_default(),
        socket.display(),
        primary.port,
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let source = crate::cli::Source {
        config: Some(config_file),
        dsn: None,
    };
    let outcome = crate::commands::run(&source, Some(listen)).await;
    token.cancel();
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    drop(admin);
    drop(cleanup);
    outcome
}
