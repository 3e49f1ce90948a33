//! The demo's throwaway PostgreSQL: server binaries found like the test
//! harness finds them, a primary made by initdb, a streaming replica made
//! by pg_basebackup and held back by `recovery_min_apply_delay`, each on a
//! free port, run as `postgres` when we are root (PostgreSQL refuses root).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::Context as _;

/// How to install server binaries, for the refusal message.
pub const INSTALL_HINT: &str = "install them (Debian/Ubuntu: sudo apt-get install postgresql postgresql-contrib; \
     Fedora: sudo dnf install postgresql-server postgresql-contrib; macOS: brew install postgresql) \
     or point PGVIGIL_PG_BINDIR at a directory holding initdb, pg_ctl and postgres";

/// Where the server binaries are: `PGVIGIL_PG_BINDIR` (only there, when
/// set), else `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn bindir() -> anyhow::Result<PathBuf> {
    let usable = |dir: &Path| dir.join("initdb").exists() && dir.join("pg_ctl").exists();
    if let Some(dir) = std::env::var_os("PGVIGIL_PG_BINDIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        anyhow::ensure!(
            usable(&dir),
            "no PostgreSQL server binaries in PGVIGIL_PG_BINDIR={} (initdb and pg_ctl are missing): {INSTALL_HINT}",
            dir.display()
        );
        return Ok(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && usable(&dir) {
            return Ok(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| usable(p))
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).with_context(|| {
        format!(
            "no PostgreSQL server binaries found (PGVIGIL_PG_BINDIR, pg_config --bindir, /usr/lib/postgresql/*/bin): {INSTALL_HINT}"
        )
    })
}

/// Whether we run as root (then the servers run as `postgres`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The server binaries and how to run them.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// Their directory.
    pub dir: PathBuf,
}

impl Binaries {
    /// A command for `program`, as `postgres` when we are root, in a
    /// process group of its own so that a Ctrl-C at the terminal reaches
    /// the demo (which stops the servers in order), not the servers.
    pub fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt as _;
        let exe = self.dir.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        // The npm server packages keep their shared libraries beside bin/.
        let lib = self.dir.join("../lib");
        if lib.exists() {
            let existing = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
            cmd.env("LD_LIBRARY_PATH", format!("{}:{existing}", lib.display()));
        }
        cmd.process_group(0).stdin(Stdio::null());
        cmd
    }

    /// Runs `program` to completion; the error has its output.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("could not run {}", self.dir.join(program).display()))?;
        anyhow::ensure!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        Ok(out)
    }

    /// The server's major version, from `postgres --version`.
    pub fn major(&self) -> anyhow::Result<u32> {
        let out = self.run("postgres", &["--version"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find_map(|w| w.split('.').next()?.parse().ok())
            .with_context(|| format!("odd postgres --version: {text}"))
    }
}

/// Hands `path` (recursively) to the postgres user when we are root.
pub fn chown_to_postgres(path: &Path) -> anyhow::Result<()> {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .context("chown")?;
        anyhow::ensure!(status.success(), "chown {} failed", path.display());
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One server of the demo.
#[derive(Debug, Clone)]
pub struct Server {
    /// Its data directory.
    pub data: PathBuf,
    /// Its port.
    pub port: u16,
}

impl Server {
    /// The log directory (logging_collector writes there).
    pub fn log_dir(&self) -> PathBuf {
        self.data.join("log")
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub fn start(&self, bin: &Binaries, root: &Path) -> anyhow::Result<()> {
        let log = root.join(format!("pg_ctl-{}.log", self.port));
        std::fs::write(&log, "")?;
        chown_to_postgres(&log)?;
        bin.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map(|_| ())
        .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// `pg_ctl stop` (fast, else immediate).
    pub fn stop(&self, bin: &Binaries) {
        let data = self.data.to_string_lossy().into_owned();
        for mode in ["fast", "immediate"] {
            if bin
                .run(
                    "pg_ctl",
                    &["-D", &data, "-m", mode, "-w", "-t", "20", "stop"],
                )
                .is_ok()
            {
                return;
            }
        }
    }
}

/// The settings both servers share: the extensions, the log as jsonlog
/// (csvlog before 15) with slow statements and auto_explain plans.
fn settings(port: u16, socket: &Path, major: u32) -> Vec<String> {
    let destination = if major >= 15 { "jsonlog" } else { "csvlog" };
    vec![
        format!("port = {port}"),
        "listen_addresses = '127.0.0.1'".into(),
        format!("unix_socket_directories = '{}'", socket.display()),
        "shared_preload_libraries = 'pg_stat_statements,auto_explain'".into(),
        "max_connections = 40".into(),
        "shared_buffers = 32MB".into(),
        "fsync = off".into(),
        "synchronous_commit = off".into(),
        "logging_collector = on".into(),
        format!("log_destination = '{destination}'"),
        "log_directory = 'log'".into(),
        "lc_messages = 'C'".into(),
        "log_min_duration_statement = '20ms'".into(),
        // With ANALYZE (no timing: cheap), so plans carry the rows a filter threw away.
        "auto_explain.log_min_duration = '10ms'".into(),
        "auto_explain.log_analyze = on".into(),
        "auto_explain.log_timing = off".into(),
        "auto_explain.log_format = 'json'".into(),
        "track_io_timing = on".into(),
        "hot_standby = on".into(),
    ]
}

/// initdb into `data`, with the demo's settings.
pub fn primary(bin: &Binaries, data: &Path, socket: &Path, major: u32) -> anyhow::Result<Server> {
    std::fs::create_dir_all(data)?;
    chown_to_postgres(data)?;
    bin.run(
        "initdb",
        &[
            "-D",
            &data.to_string_lossy(),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
    )?;
    let server = Server {
        data: data.to_path_buf(),
        port: free_port()?,
    };
    append_conf(&server.data, &settings(server.port, socket, major))?;
    Ok(server)
}

/// A streaming replica of `primary` that applies WAL 10 s late.
pub fn replica(
    bin: &Binaries,
    primary: &Server,
    data: &Path,
    socket: &Path,
    major: u32,
) -> anyhow::Result<Server> {
    std::fs::create_dir_all(data)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        // The server refuses a data directory others may read.
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))?;
    }
    chown_to_postgres(data)?;
    bin.run(
        "pg_basebackup",
        &[
            "-D",
            &data.to_string_lossy(),
            "-h",
            &socket.to_string_lossy(),
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-X",
            "stream",
            "-c",
            "fast",
            "-R",
            "--no-sync",
        ],
    )?;
    let server = Server {
        data: data.to_path_buf(),
        port: free_port()?,
    };
    let mut conf = settings(server.port, socket, major);
    conf.push("recovery_min_apply_delay = '10s'".into());
    append_conf(&server.data, &conf)?;
    Ok(server)
}

/// Appends to postgresql.auto.conf (read last; pg_basebackup -R wrote
/// primary_conninfo there).
fn append_conf(data: &Path, lines: &[String]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let path = data.join("postgresql.auto.conf");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    writeln!(file, "\n{}", lines.join("\n"))?;
    chown_to_postgres(&path)
}
