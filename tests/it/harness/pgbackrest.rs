//! A pgBackRest repository in a temp dir, its stanza `main` pointed at a
//! test cluster, pgBackRest run as `postgres` when the tests run as root.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::pg::{chown_to_postgres, is_root, open_up};

/// A pgBackRest configuration with its repository in a temp dir.
pub struct Repo {
    /// The temp dir: `repo/`, `log/`, `lock/`, the config and scripts.
    pub dir: tempfile::TempDir,
}

impl Repo {
    /// An empty repository (`stanza-create` not run).
    pub fn new() -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("pgvigil-pgbr-")
            .tempdir()
            .unwrap();
        open_up(dir.path());
        for sub in ["repo", "log", "lock"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Repo { dir }
    }

    /// pgBackRest's config file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("pgbackrest.conf")
    }

    /// Points the stanza `main` at a cluster.
    pub fn write_config(&self, data: &Path, socket: &Path, port: u16) {
        let d = self.dir.path();
        let text = format!(
            "[global]\nrepo1-path={}\nlog-path={}\nlock-path={}\nstart-fast=y\narchive-async=n\ncompress-type=none\n\n[main]\npg1-path={}\npg1-socket-path={}\npg1-port={port}\n",
            d.join("repo").display(),
            d.join("log").display(),
            d.join("lock").display(),
            data.display(),
            socket.display(),
        );
        std::fs::write(self.config(), text).unwrap();
        chown_to_postgres(d);
    }

    /// `archive_command`: a script that pushes to the repository with
    /// pgBackRest, or copies to a directory when pgBackRest does not
    /// support the server (see [`Repo::use_copy`]).
    pub fn archive_command(&self) -> String {
        let script = self.dir.path().join("pgbackrest-archive-push.sh");
        self.write_script(&format!(
            "exec pgbackrest --config={} --stanza=main archive-push \"$1\"",
            self.config().display()
        ));
        format!("{} %p", script.display())
    }

    fn write_script(&self, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let script = self.dir.path().join("pgbackrest-archive-push.sh");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Archives with cp instead (before any segment is complete).
    pub fn use_copy(&self) {
        let wal = self.dir.path().join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        chown_to_postgres(&wal);
        self.write_script(&format!("exec cp \"$1\" {}/", wal.display()));
    }

    /// Runs pgbackrest as postgres.
    pub fn run(&self, args: &[&str]) {
        if let Err(e) = self.try_run(args) {
            panic!("{e}");
        }
    }

    /// Runs pgbackrest as postgres; the error has its output.
    pub fn try_run(&self, args: &[&str]) -> Result<(), String> {
        let config = format!("--config={}", self.config().display());
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "pgbackrest"]);
            c
        } else {
            Command::new("pgbackrest")
        };
        let out = cmd
            .arg(&config)
            .arg("--stanza=main")
            .args(args)
            .output()
            .expect("pgbackrest is required");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pgbackrest {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}
