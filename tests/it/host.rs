//! What pgvigil reads of the host it runs on is only that of the server it
//! watches: a server whose `data_directory` path exists here but holds
//! another cluster (a remote server installed at the usual path) gets no
//! filesystem series; the local server gets them, also when pgvigil may
//! not read the data directory.

use crate::harness::{Fixture, Metrics, outputs};

/// `pgvigil once` against `fx`, run through `wrapper` (a command and its
/// arguments that end by running the program that follows; none: as is).
///
/// The binary runs from a copy in the fixture's scratch directory, which
/// every user may reach: the checkout holding the build may not be (a clone
/// under `mktemp -d` is 0700), and the test runs pgvigil as `nobody`.
fn once_through(fx: &Fixture, wrapper: &[&str]) -> Metrics {
    use std::os::unix::fs::PermissionsExt;
    let binary = fx.pg.scratch().join("pgvigil");
    if !binary.exists() {
        std::fs::copy(crate::harness::agent::binary(), &binary).expect("copy pgvigil");
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))
            .expect("make the copy executable for all");
    }
    let password = format!("PGPASSWORD={}", fx.password);
    let dsn = fx.dsn();
    let mut command: Vec<&str> = wrapper.to_vec();
    command.extend(["env", &password, binary.to_str().unwrap()]);
    command.extend(["once", "--dsn", &dsn, "--format", "prometheus"]);
    let out = std::process::Command::new(command[0])
        .args(&command[1..])
        .output()
        .expect("run pgvigil once");
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    Metrics::parse(&stdout)
}

fn has_data_filesystem(m: &Metrics) -> bool {
    m.get("pg_filesystem_size_bytes", &[("purpose", "data")])
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clusters_directory_at_the_servers_path_is_not_the_servers() {
    let other = Fixture::start().await;
    let fx = Fixture::start_distinct().await;

    let m = once_through(&fx, &[]);
    assert!(has_data_filesystem(&m), "its own directory is measured");

    // In a mount namespace of its own, pgvigil finds another cluster at
    // the server's data directory path, as it would on a host with a
    // local cluster at the usual path while watching a remote server.
    let data = fx.pg.data_dir();
    let bind = format!(
        "mount --bind '{}' '{}' && exec \"$@\"",
        other.pg.data_dir().display(),
        data.display()
    );
    let m = once_through(
        &fx,
        &[
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &bind,
            "sh",
        ],
    );
    assert!(
        !has_data_filesystem(&m),
        "another cluster's disk reported as the server's"
    );
    assert_eq!(
        m.get("pgvigil_collector_success", &[("collector", "filesystem")]),
        Some(1.0)
    );

    // pgvigil as a user who may not read the data directory (0700,
    // postgres'): the server's own process on this host identifies it.
    assert!(std::fs::read(data.join("global/pg_control")).is_ok());
    let m = once_through(&fx, &["runuser", "-u", "nobody", "--"]);
    assert!(
        has_data_filesystem(&m),
        "the local server not recognised without read access"
    );
}
