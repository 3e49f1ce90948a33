//! A real Redis (Debian's `redis-server`) in a temp dir on a free port,
//! never the system service, stopped on drop. Redis runs fine as root, so
//! it runs as whoever runs the tests. The harness talks to it with
//! `redis-cli` as the default user (no password): the ground truth; the
//! agent logs in as [`USER`], an ACL user allowed only what pgvigil sends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::pg::free_port;

/// The least-privilege ACL user pgvigil logs in as, and its password.
pub const USER: (&str, &str) = ("pgvigil", "redis-pw-Secret");

/// The ACL rules of [`USER`], as README "Redis" documents them: no key
/// access, only the commands pgvigil sends (AUTH and HELLO are always
/// allowed).
pub const ACL_RULES: &str =
    "on -@all +ping +info +slowlog|get +slowlog|len +cluster|info resetkeys resetchannels";

/// A running Redis.
pub struct RedisServer {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1 (TLS port when started with TLS).
    pub port: u16,
    /// Its plain port when TLS is on (the harness's own access).
    plain: u16,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A Redis with `extra` config lines (`maxmemory 1mb`, …), the ACL
    /// user created.
    pub fn start(extra: &[&str]) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("pgvigil-redis-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let mut server = RedisServer {
            dir,
            port,
            plain: port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.launch();
        server.cli(&["ACL", "SETUSER", USER.0, "reset"]);
        let mut args = vec!["ACL", "SETUSER", USER.0];
        args.extend(ACL_RULES.split(' '));
        let pass = format!(">{}", USER.1);
        args.push(&pass);
        assert_eq!(server.cli(&args).trim(), "OK");
        server
    }

    /// A Redis with TLS on [`RedisServer::port`] (certificates from
    /// `certs`, made by `certs::make_certs`) and plain TCP on another port
    /// for the harness.
    pub fn start_tls(certs: &Path) -> RedisServer {
        let tls_port = free_port();
        let lines = [
            format!("tls-port {tls_port}"),
            format!("tls-cert-file {}", certs.join("server.crt").display()),
            format!("tls-key-file {}", certs.join("server.key").display()),
            format!("tls-ca-cert-file {}", certs.join("ca.crt").display()),
            "tls-auth-clients no".to_string(),
        ];
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let mut server = RedisServer::start(&refs);
        server.port = tls_port;
        server
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("redis.conf")
    }

    /// Its directory (RDB files go here unless `dir` is set).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn launch(&mut self) {
        let mut conf = format!(
            "port {}\nbind 127.0.0.1\ndir {}\nlogfile {}\nsave \"\"\nappendonly no\nprotected-mode no\n",
            self.plain,
            self.dir.path().display(),
            self.dir.path().join("redis.log").display(),
        );
        for line in &self.extra {
            conf.push_str(line);
            conf.push('\n');
        }
        std::fs::write(self.config(), conf).expect("write redis.conf");
        let child = Command::new("redis-server")
            .arg(self.config())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is required (apt-get install redis-server)");
        self.child = Some(child);
        for _ in 0..200 {
            if self.try_cli(&["PING"]).is_some_and(|o| o.trim() == "PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not answer: {}", self.log());
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["--no-auth-warning", "-h", "127.0.0.1", "-p"])
            .arg(self.plain.to_string())
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs one command as the default user and returns redis-cli's output.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed: {}", self.log()))
    }

    /// Runs many commands in one redis-cli session (one per line).
    pub fn pipe(&self, commands: &str) -> String {
        use std::io::Write;
        let mut child = Command::new("redis-cli")
            .args(["--no-auth-warning", "-h", "127.0.0.1", "-p"])
            .arg(self.plain.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-cli");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(commands.as_bytes())
            .unwrap();
        let out = child.wait_with_output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A field of `INFO`, as the server reports it.
    pub fn info(&self, field: &str) -> Option<String> {
        let text = self.cli(&["INFO", "everything"]);
        text.lines()
            .filter_map(|l| l.trim().split_once(':'))
            .find(|(k, _)| *k == field)
            .map(|(_, v)| v.to_string())
    }

    /// A file holding [`USER`]'s password, as `password_file` expects.
    pub fn password_file(&self) -> PathBuf {
        let file = self.dir.path().join("pgvigil.password");
        std::fs::write(&file, format!("{}\n", USER.1)).expect("password file");
        file
    }

    /// A `[[redis]]` table for this server named `name`, as [`USER`],
    /// every collector each second.
    pub fn redis_table(&self, name: &str) -> String {
        format!(
            "[[redis]]\nname = \"{name}\"\nurl = \"redis://127.0.0.1:{}\"\nusername = \"{}\"\npassword_file = \"{}\"\n\
             [redis.collectors]\nredis_info = \"1s\"\nredis_replication = \"1s\"\nredis_persistence = \"1s\"\n\
             redis_commands = \"1s\"\nredis_slowlog = \"1s\"\nredis_cluster = \"1s\"\n",
            self.port,
            USER.0,
            self.password_file().display()
        )
    }

    /// Freezes the server (SIGSTOP): it keeps its connections but answers
    /// nothing, like a hung process or a partitioned host.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill with our own child's pid and a valid signal.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// Stops the server (SIGKILL: no save, like a crash or a lost host).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: as in `signal`; a frozen server must run to die.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory, the ACL user
    /// recreated (ACLs are not persisted without an ACL file).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
        let mut args = vec!["ACL", "SETUSER", USER.0];
        args.extend(ACL_RULES.split(' '));
        let pass = format!(">{}", USER.1);
        args.push(&pass);
        self.cli(&args);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
