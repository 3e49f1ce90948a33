//! Whether pgvigil runs beside the server it watches, so that the server's
//! directories (filesystems, logs) on this host are that server's.
//!
//! A directory at the server's `data_directory` path existing here proves
//! nothing: a remote server installed the usual way has the same path as
//! a local cluster. So the cluster is identified: the system identifier in
//! the local `global/pg_control` must be the server's. Where pgvigil may
//! not read that file (the data directory is `postgres`' alone, 0700),
//! the server's own process is looked for instead: the backend serving
//! pgvigil's session, a process on this host whose parent (the
//! postmaster) started when the server says it did. Neither proves a
//! sidecar without a shared process namespace and without read access to
//! the data directory: such a sidecar is not taken for colocated, and the
//! host metrics are absent rather than those of another disk.

use std::path::Path;

use super::caps::ServerIdentity;

/// How far apart the postmaster's start time as PostgreSQL recorded it
/// and as the kernel did may be.
const START_TOLERANCE_SECONDS: f64 = 2.0;

/// Whether `data_directory` here belongs to `server`, whose backend for
/// this session has process id `backend_pid`.
pub fn beside(data_directory: &Path, server: ServerIdentity, backend_pid: i32) -> bool {
    match control_file_identifier(data_directory) {
        Ok(id) => id == server.system_identifier,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let started = server.started_at_micros as f64 / 1e6;
            postmaster_started_at(backend_pid)
                .is_some_and(|t| (t - started).abs() <= START_TOLERANCE_SECONDS)
        }
        Err(_) => false,
    }
}

/// The system identifier in `global/pg_control`: its first 8 bytes, in the
/// host's byte order (the file is only valid on the host's architecture).
fn control_file_identifier(data_directory: &Path) -> std::io::Result<i64> {
    use std::io::Read as _;
    let mut bytes = [0u8; 8];
    std::fs::File::open(data_directory.join("global/pg_control"))?.read_exact(&mut bytes)?;
    Ok(i64::from_ne_bytes(bytes))
}

/// When the parent of process `pid` started, as a Unix time, from
/// `/proc` (readable by anyone): `None` when there is no such process
/// here or `/proc` is not Linux's.
fn postmaster_started_at(pid: i32) -> Option<f64> {
    let parent = stat_fields(pid)?.ppid;
    let ticks = stat_fields(parent)?.start_ticks as f64;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<f64>()
        .ok()?;
    (hz > 0).then(|| boot + ticks / hz as f64)
}

struct Stat {
    ppid: i32,
    start_ticks: u64,
}

/// The parent and start time fields of `/proc/<pid>/stat`.
fn stat_fields(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Fields after the command name, which is in parentheses and may hold
/// spaces and parentheses itself: state is field 3, ppid 4, starttime 22.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        ppid: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_past_odd_command_names() {
        let cases = [
            (
                "4242 (postgres) S 4200 4242 4242 0 -1 4194560 123 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50 0",
                Some((4200, 987654)),
            ),
            (
                "7 (post gres: a) b) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 1 1 0",
                Some((1, 55)),
            ),
            ("9 (short) S", None),
            ("no parenthesis", None),
        ];
        for (line, want) in cases {
            let got = parse_stat(line).map(|s| (s.ppid, s.start_ticks));
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn our_own_parent_is_found_in_proc() {
        // The test process's parent started before now and after boot.
        let now = crate::snapshot::unix_now();
        let started = postmaster_started_at(std::process::id() as i32).expect("a parent in /proc");
        assert!(started > 0.0 && started <= now + 1.0, "{started} vs {now}");
    }

    #[test]
    fn a_directory_without_pg_control_is_not_the_server() {
        let dir = std::env::temp_dir();
        let server = ServerIdentity {
            system_identifier: 1,
            started_at_micros: 0,
        };
        assert!(!beside(&dir, server, std::process::id() as i32));
    }
}
