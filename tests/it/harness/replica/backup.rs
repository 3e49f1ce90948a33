//! A replica's data directory: a base backup of the primary, made with
//! `pg_basebackup` when the binary directory has one of the server's
//! major version, else (the npm server packages ship only initdb, pg_ctl
//! and postgres) with the low-level backup API and a file copy.

use std::path::Path;

use super::super::pg::{self, PgServer, chown_to_postgres};

/// Whether [`pg::bindir`] has a `pg_basebackup` of the server's major
/// version (Debian's has; the npm server packages have none, and a
/// `pg_basebackup` of another major refuses the server).
pub(super) fn has_matching_basebackup() -> bool {
    static MATCHING: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MATCHING.get_or_init(|| {
        if !pg::bindir().join("pg_basebackup").exists() {
            return false;
        }
        let out = pg::pg_command("pg_basebackup", &["--version"]);
        // "pg_basebackup (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
        let text = String::from_utf8_lossy(&out.stdout);
        let major = text
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        out.status.success() && major == Some(pg::major_version())
    })
}

pub(super) fn pg_basebackup(upstream: &PgServer, data: &Path, slot: Option<&str>) {
    make_data_dir(data);
    chown_to_postgres(data);
    let port = upstream.port.to_string();
    let socket = upstream.socket_dir();
    let mut args = vec![
        "-D",
        data.to_str().expect("utf-8 path"),
        "-h",
        socket.to_str().expect("utf-8 path"),
        "-p",
        &port,
        "-U",
        "postgres",
        "-w",
        "-X",
        "stream",
        "-c",
        "fast",
        "--no-sync",
        "--no-manifest",
    ];
    if let Some(slot) = slot {
        args.extend(["-S", slot]);
    }
    pg::check(pg::pg_command("pg_basebackup", &args), "pg_basebackup");
}

/// A base backup with the low-level API: start a non-exclusive backup,
/// copy the data directory, stop the backup in the same session, write
/// its backup_label (and tablespace_map), then copy the WAL written so
/// far so the replica can reach consistency on its own.
pub(super) async fn low_level_backup(upstream: &PgServer, data: &Path) {
    let client = upstream.connect().await;
    let (start, stop) = if pg::major_version() >= 15 {
        (
            "SELECT pg_backup_start($1, true)::text",
            "SELECT labelfile, spcmapfile FROM pg_backup_stop(false)",
        )
    } else {
        (
            "SELECT pg_start_backup($1, true, false)::text",
            "SELECT labelfile, spcmapfile FROM pg_stop_backup(false, false)",
        )
    };
    client
        .query_one(start, &[&"pgvigil-tests replica"])
        .await
        .expect("start the base backup");
    let source = upstream.data_dir();
    let target = data.to_path_buf();
    tokio::task::spawn_blocking(move || copy_data_dir(&source, &target))
        .await
        .expect("copy the data directory");
    let row = client
        .query_one(stop, &[])
        .await
        .expect("stop the base backup");
    let label: String = row.get(0);
    let spcmap: Option<String> = row.get(1);
    std::fs::write(data.join("backup_label"), label).expect("write backup_label");
    if let Some(map) = spcmap.filter(|m| !m.is_empty()) {
        std::fs::write(data.join("tablespace_map"), map).expect("write tablespace_map");
    }
    // The stop switched to a new WAL segment: what the backup needs is in
    // complete segments now. The rest comes by streaming.
    let source = upstream.data_dir().join("pg_wal");
    for entry in std::fs::read_dir(&source).expect("read pg_wal").flatten() {
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file {
            copy_file(&entry.path(), &data.join("pg_wal").join(entry.file_name()));
        }
    }
}

/// Files a base backup leaves out, wherever they are: server state that is
/// rebuilt or must not carry over.
const SKIP_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
    "backup_manifest",
    "current_logfiles",
    "pg_internal.init",
    "standby.signal",
    "recovery.signal",
];
/// Top-level directories a base backup leaves empty (pg_wal keeps its
/// subdirectories): WAL comes separately, slots stay on the primary, the
/// rest is rebuilt at start.
const EMPTY_DIRS: &[&str] = &[
    "pg_wal",
    "pg_replslot",
    "pg_stat_tmp",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];
/// Our own directories, should they ever live inside the data directory.
const SKIP_DIRS: &[&str] = &["sock", "logs", "log"];

/// Copies a live data directory for a base backup, minus what a base
/// backup leaves out. Files may vanish or change underneath: WAL replay
/// repairs what changed, and what vanished is not needed.
fn copy_data_dir(source: &Path, target: &Path) {
    make_data_dir(target);
    copy_tree(source, target, true);
}

fn copy_tree(source: &Path, target: &Path, top: bool) {
    let entries = match std::fs::read_dir(source) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => panic!("read {}: {e}", source.display()),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let from = entry.path();
        let to = target.join(&*name);
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if top && SKIP_DIRS.contains(&&*name) {
                continue;
            }
            make_dir(&to);
            if top && name == "pg_wal" {
                // Keep the structure (archive_status; summaries on 17+).
                copy_subdirs_only(&from, &to);
            } else if top && EMPTY_DIRS.contains(&&*name) {
                // Left empty.
            } else {
                copy_tree(&from, &to, false);
            }
        } else if kind.is_symlink() {
            // Tablespaces: point at the same place (tests use none).
            if let Ok(link) = std::fs::read_link(&from) {
                std::os::unix::fs::symlink(link, &to).expect("copy symlink");
            }
        } else if !SKIP_FILES.contains(&&*name) {
            copy_file(&from, &to);
        }
    }
}

fn copy_subdirs_only(source: &Path, target: &Path) {
    for entry in std::fs::read_dir(source).into_iter().flatten().flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let to = target.join(entry.file_name());
            make_dir(&to);
            copy_subdirs_only(&entry.path(), &to);
        }
    }
}

/// Copies one file, skipping it if it vanished meanwhile.
fn copy_file(from: &Path, to: &Path) {
    match std::fs::copy(from, to) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("copy {} to {}: {e}", from.display(), to.display()),
    }
}

fn make_dir(dir: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
}

/// The data directory itself: PostgreSQL insists on mode 0700 (or 0750).
fn make_data_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    make_dir(dir);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod data dir");
}
