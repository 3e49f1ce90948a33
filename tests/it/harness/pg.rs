//! Throwaway PostgreSQL clusters on free ports in temp directories.
//!
//! Server binaries come from `PGVIGIL_PG_BINDIR`, else `pg_config --bindir`,
//! else the newest `/usr/lib/postgresql/*/bin` (as README.md says). PostgreSQL refuses
//! to run as root, so when the tests run as root every server command runs
//! as the `postgres` user. `initdb` runs once per binary directory into a
//! cache; each cluster is a copy of it. A cluster is stopped and removed
//! when its handle is dropped, also when the test panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

/// Bump when the cached template's initdb options change.
const TEMPLATE_VERSION: u32 = 1;

/// The server binaries in use.
pub fn bindir() -> PathBuf {
    static BINDIR: OnceLock<PathBuf> = OnceLock::new();
    BINDIR
        .get_or_init(|| {
            if let Some(dir) = std::env::var_os("PGVIGIL_PG_BINDIR").filter(|d| !d.is_empty()) {
                return PathBuf::from(dir);
            }
            if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
                let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                if out.status.success() && dir.join("initdb").exists() {
                    return dir;
                }
            }
            let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").exists())
                .collect();
            candidates.sort();
            candidates.pop().map(|(_, p)| p).expect(
                "no PostgreSQL server binaries: set PGVIGIL_PG_BINDIR or install postgresql (scripts/test.sh does)",
            )
        })
        .clone()
}

/// Whether the tests run as root (then servers run as `postgres`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a server binary from [`bindir`], as `postgres` when we are root.
/// Panics when it cannot be run at all; [`check`] its output.
pub fn pg_command(program: &str, args: &[&str]) -> Output {
    let exe = bindir().join(program);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args);
    // The npm server packages keep their shared libraries beside bin/.
    let lib = bindir().join("../lib");
    if lib.exists() {
        let existing = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
        cmd.env("LD_LIBRARY_PATH", format!("{}:{existing}", lib.display()));
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", exe.display()))
}

/// Panics with the command's output unless it succeeded: a harness failure
/// must say why.
pub fn check(out: Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Hands `path` (recursively) to the postgres user when we are root.
pub fn chown_to_postgres(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown {}", path.display());
    }
}

/// Makes `dir` traversable by the postgres user.
pub fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
}

/// The cached, freshly initdb'ed data directory for the current binaries.
fn template() -> PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let key = format!("{:x}", fxhash(bindir().to_string_lossy().as_bytes()));
            let root = std::env::temp_dir().join("pgvigil-test-templates");
            std::fs::create_dir_all(&root).expect("template root");
            open_up(&root);
            let dir = root.join(format!("v{TEMPLATE_VERSION}-{key}"));
            if dir.join("PG_VERSION").exists() {
                return dir;
            }
            // initdb into a private name, then rename: concurrent test
            // binaries never see a half-made template.
            let staging = root.join(format!("staging-{key}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&staging);
            initdb(&staging);
            if std::fs::rename(&staging, &dir).is_err() {
                // Another process won the race; use theirs.
                let _ = std::fs::remove_dir_all(&staging);
            }
            dir
        })
        .clone()
}

/// Makes a new cluster in `dir` (created here) with the harness's initdb
/// options.
fn initdb(dir: &Path) {
    std::fs::create_dir_all(dir).expect("data dir");
    chown_to_postgres(dir);
    let data = dir.to_str().expect("utf-8 path");
    check(
        pg_command(
            "initdb",
            &[
                "-D",
                data,
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        ),
        "initdb",
    );
}

/// The major version of the server binaries in use (13, 14, …), from the
/// template's `PG_VERSION`.
pub fn major_version() -> u32 {
    static MAJOR: OnceLock<u32> = OnceLock::new();
    *MAJOR.get_or_init(|| {
        let file = template().join("PG_VERSION");
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("odd PG_VERSION {text:?}"))
    })
}

fn fxhash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

/// A free TCP port on 127.0.0.1 (free when asked; the OS may reuse it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A port on 127.0.0.1 that refuses connections for as long as it is held:
/// a socket bound to it that never listens. Unlike a stopped server's freed
/// port, no other test's server can take it over meanwhile.
pub struct RefusedPort {
    fd: std::os::fd::OwnedFd,
    /// The port.
    pub port: u16,
}

impl RefusedPort {
    /// Binds a fresh port without SO_REUSEADDR, so nothing else can bind it.
    pub fn hold() -> RefusedPort {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: plain socket calls on a descriptor this function owns; the
        // address structures are fully initialised and their sizes passed.
        unsafe {
            let raw = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
            let fd = std::os::fd::OwnedFd::from_raw_fd(raw);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::bind(
                fd.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                len,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let mut len = len;
            let rc = libc::getsockname(
                fd.as_raw_fd(),
                &mut addr as *mut _ as *mut libc::sockaddr,
                &mut len,
            );
            assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
            RefusedPort {
                port: u16::from_be(addr.sin_port),
                fd,
            }
        }
    }
}

impl std::fmt::Debug for RefusedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RefusedPort({}, {:?})", self.port, self.fd)
    }
}

/// Options of a throwaway cluster.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// Extra postgresql.conf lines.
    pub conf: Vec<String>,
}

/// Tests that compare wall-clock latencies run alone, so that the load of
/// other tests does not distort what their clients measure: every cluster
/// holds a share, [`exclusive`] waits until no other test's cluster runs
/// and keeps new ones from starting.
struct Quiet {
    clusters: usize,
    exclusive: Option<std::thread::ThreadId>,
}

static QUIET: std::sync::Mutex<Quiet> = std::sync::Mutex::new(Quiet {
    clusters: 0,
    exclusive: None,
});
static QUIET_CHANGED: std::sync::Condvar = std::sync::Condvar::new();

/// A cluster's share of the machine.
struct Share;

impl Share {
    fn take() -> Share {
        let me = std::thread::current().id();
        let mut q = QUIET.lock().unwrap_or_else(|e| e.into_inner());
        while q.exclusive.is_some_and(|owner| owner != me) {
            q = QUIET_CHANGED.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.clusters += 1;
        Share
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        QUIET.lock().unwrap_or_else(|e| e.into_inner()).clusters -= 1;
        QUIET_CHANGED.notify_all();
    }
}

/// The machine to oneself until dropped.
pub struct Exclusive;

/// Waits until no other test has a cluster running, then keeps others from
/// starting one until the returned guard is dropped.
pub fn exclusive() -> Exclusive {
    let me = std::thread::current().id();
    let mut q = QUIET.lock().unwrap_or_else(|e| e.into_inner());
    while q.exclusive.is_some() || q.clusters > 0 {
        q = QUIET_CHANGED.wait(q).unwrap_or_else(|e| e.into_inner());
    }
    q.exclusive = Some(me);
    Exclusive
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        QUIET.lock().unwrap_or_else(|e| e.into_inner()).exclusive = None;
        QUIET_CHANGED.notify_all();
    }
}

/// A running throwaway cluster.
pub struct PgServer {
    root: tempfile::TempDir,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    _share: Share,
}

impl PgServer {
    /// A cluster with extra settings.
    pub fn start_with(options: PgOptions) -> PgServer {
        let mut server = PgServer::unstarted();
        let status = Command::new("cp")
            .arg("-a")
            .arg(template())
            .arg(server.data_dir())
            .status()
            .expect("cp template");
        assert!(status.success(), "copy template");
        server.start_prepared(&options);
        server
    }

    /// A cluster of its own initdb rather than a copy of the cached
    /// template: it has a system identifier no other test cluster shares
    /// (copies of the template all have the template's).
    pub fn start_distinct(options: PgOptions) -> PgServer {
        let mut server = PgServer::unstarted();
        initdb(&server.data_dir());
        server.start_prepared(&options);
        server
    }

    /// A cluster's directories (socket, logs; no data directory yet), not
    /// running, for a data directory made some other way, e.g. a base
    /// backup into [`PgServer::data_dir`]; then [`PgServer::start_prepared`].
    /// Dropping it removes everything, started or not.
    pub fn unstarted() -> PgServer {
        let share = Share::take();
        let root = tempfile::Builder::new()
            .prefix("pgvigil-it-")
            .tempdir()
            .expect("temp dir");
        open_up(root.path());
        let sock = root.path().join("sock");
        std::fs::create_dir_all(&sock).expect("socket dir");
        chown_to_postgres(&sock);
        let logs = root.path().join("logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        chown_to_postgres(&logs);
        PgServer {
            root,
            port: 0,
            _share: share,
        }
    }

    /// Starts a cluster from [`PgServer::unstarted`] once its data
    /// directory is in place, on a free port: hands the data directory to
    /// `postgres` when we are root and replaces its postgresql.auto.conf
    /// with the harness settings (port, socket, fast settings) plus
    /// `options.conf`.
    pub fn start_prepared(&mut self, options: &PgOptions) {
        chown_to_postgres(&self.data_dir());
        let mut last_error = String::new();
        for _ in 0..5 {
            self.port = free_port();
            self.write_conf(options);
            match self.try_start() {
                Ok(()) => return,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start PostgreSQL: {last_error}");
    }

    fn write_conf(&self, options: &PgOptions) {
        let mut conf = vec![
            format!("port = {}", self.port),
            "listen_addresses = '127.0.0.1'".to_string(),
            format!(
                "unix_socket_directories = '{}'",
                self.socket_dir().display()
            ),
            "shared_preload_libraries = 'pg_stat_statements,auto_explain'".into(),
            "fsync = off".into(),
            "synchronous_commit = off".into(),
            "full_page_writes = off".into(),
            "max_connections = 40".into(),
            "shared_buffers = 16MB".into(),
        ];
        conf.extend(options.conf.iter().cloned());
        // postgresql.auto.conf is read last and wins, and it is ours alone.
        let path = self.data_dir().join("postgresql.auto.conf");
        std::fs::write(&path, conf.join("\n") + "\n").expect("write postgresql.auto.conf");
        chown_to_postgres(&path);
    }

    /// `pg_ctl start` on the existing data directory; the error has
    /// pg_ctl's output and the server log.
    pub fn try_start(&self) -> Result<(), String> {
        let data = self.data_dir();
        let log = self.log_file();
        let out = pg_command(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The directory holding the Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.path().join("sock")
    }

    /// The server log.
    pub fn log_file(&self) -> PathBuf {
        self.root.path().join("logs/server.log")
    }

    /// A scratch directory for the test's own files (configs, secrets).
    pub fn scratch(&self) -> PathBuf {
        let dir = self.root.path().join("scratch");
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    /// Stops the server (fast shutdown), keeping its data.
    pub fn stop(&self) {
        check(
            pg_command(
                "pg_ctl",
                &[
                    "-D",
                    self.data_dir().to_str().unwrap(),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
            ),
            "pg_ctl stop",
        );
    }

    /// Stops the server (if it runs) and starts it again on `port`, with
    /// the harness settings plus `options`: another server taking over a
    /// stopped one's address, as after a failover behind a VIP or a DNS
    /// name.
    pub fn take_over_port(&mut self, port: u16, options: &PgOptions) {
        if self.data_dir().join("postmaster.pid").exists() {
            self.stop();
        }
        self.port = port;
        self.write_conf(options);
        if let Err(e) = self.try_start() {
            panic!("could not start PostgreSQL on port {port}: {e}");
        }
    }

    /// Starts a stopped server again on the same port.
    pub fn restart_stopped(&self) {
        if let Err(e) = self.try_start() {
            panic!("could not start PostgreSQL again: {e}");
        }
    }

    /// A superuser connection over the Unix socket.
    pub async fn connect(&self) -> Client {
        self.connect_to("postgres").await
    }

    /// A superuser connection to `dbname`.
    pub async fn connect_to(&self, dbname: &str) -> Client {
        self.connect_as("pgvigil-tests", dbname).await
    }

    /// A superuser connection to `dbname` under `application_name` (as
    /// "pgvigil", one the agent takes for its own).
    pub async fn connect_as(&self, application_name: &str, dbname: &str) -> Client {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.socket_dir())
            .port(self.port)
            .user("postgres")
            .dbname(dbname)
            .application_name(application_name);
        let (client, connection) = config.connect(NoTls).await.expect("superuser connection");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Creates the least-privilege role from `packaging/sql/pgvigil-role.sql`
    /// with `password`, as a user would.
    pub async fn create_monitoring_role(&self, password: &str) {
        let sql = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/sql/pgvigil-role.sql"
        ))
        .expect("read pgvigil-role.sql");
        let client = self.connect().await;
        client.batch_execute(&sql).await.expect("pgvigil-role.sql");
        client
            .batch_execute(&format!(
                "ALTER ROLE pgvigil PASSWORD '{}'",
                password.replace('\'', "''")
            ))
            .await
            .expect("set password");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data_dir();
        if data.join("postmaster.pid").exists() {
            let _ = pg_command(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap_or(""),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
    }
}

/// The server's `server_version_num`, e.g. 150004.
pub async fn version_num(client: &Client) -> i32 {
    client
        .query_one("SHOW server_version_num", &[])
        .await
        .expect("SHOW server_version_num")
        .get::<_, String>(0)
        .parse()
        .expect("a number")
}

/// Makes sure the session's statistics reached the cumulative views.
///
/// A backend sends its counts when it goes idle, but not within a short
/// interval of its last report (500 ms before PostgreSQL 15, 1 s since),
/// and then only on the next statement (before 15) or after an idle timer
/// of up to 10 s (15+). So wait past that interval and run one more
/// statement, whose end flushes everything pending.
pub async fn flush_stats(client: &Client) {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .batch_execute("SELECT 1")
        .await
        .expect("flush statement");
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
