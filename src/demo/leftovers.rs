//! Where the demo keeps its files, and cleaning up after a demo that
//! could not (killed, crashed, the machine lost power).
//!
//! Every demo works in `$TMPDIR/pgvigil-demo-<uid>/run-<pid>/`, whose
//! `demo.pid` names the demo process. At start, a run directory whose demo
//! process is gone is a leftover: its servers (found by their
//! `postmaster.pid`) are stopped and the directory removed. A run whose
//! demo still lives belongs to another demo and is left alone.

use std::path::{Path, PathBuf};

/// The directory all demos of this user work in.
pub fn base() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("pgvigil-demo-{uid}"))
}

/// Whether process `pid` runs: it exists and is not a zombie (a
/// container's PID 1 may never reap the servers pg_ctl left to it).
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists =
        pid > 0 && unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM };
    exists
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
}

/// The postmaster pid recorded in a data directory, if it still runs.
pub fn postmaster(data: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// Stops leftover servers and removes leftover run directories; returns
/// what was removed.
pub fn clean() -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(base()) else {
        return removed;
    };
    for entry in entries.flatten() {
        let run = entry.path();
        let owner = std::fs::read_to_string(run.join("demo.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if owner.is_some_and(alive) {
            continue;
        }
        for data in ["primary", "replica"].map(|d| run.join(d)) {
            if let Some(pid) = postmaster(&data) {
                // SIGQUIT: immediate shutdown; nothing in a demo is worth keeping.
                // SAFETY: signalling a process we identified by its pid file.
                unsafe {
                    libc::kill(pid, libc::SIGQUIT);
                }
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while alive(pid) && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                if alive(pid) {
                    // SAFETY: as above.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        if std::fs::remove_dir_all(&run).is_ok() {
            removed.push(run);
        }
    }
    removed
}
