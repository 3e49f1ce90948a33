//! Packaging: the systemd unit, the container image, the Kubernetes sidecar, the Prometheus
//! scrape configs and the Debian package, each checked by the tool that consumes it where the
//! machine has one (systemd-analyze, promtool, dpkg, the agent's own `check-config`) and by
//! reading its structure otherwise; and the `.deb` built with cargo-deb, installed on this
//! machine, run as its own user against a throwaway cluster and purged.
//!
//! Tools: systemd-analyze (the `systemd` package), strace, promtool (`prometheus`), python3 with
//! PyYAML (`python3-yaml`, to read the Kubernetes YAML), cargo-deb, dpkg and runuser.
//! scripts/test.sh installs them; a missing one fails its test with what to install, never a
//! silent pass (only the unit's own test, without systemd-analyze, falls back to checking the
//! directives it reads, and says so). The image itself is not built here (no Docker daemon):
//! its Dockerfile is checked by reading.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::agent::binary;
use crate::harness::pg::{free_port, is_root};
use crate::harness::{Fixture, Metrics, eventually, http, outputs, pgvigil};

// The licence, the maintainer, and one unit path in every document.
mod licence;
// The scrape jobs the shipped configs name, against the alert rules' job selector.
mod scrape_jobs;

/// A file of the repository.
fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgvigil-packaging-")
        .tempdir()
        .expect("temp dir");
    // Readable by the service user of the installed package.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs a command to completion; panics naming `what` (and what to install) if it cannot start.
fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

/// Panics with the command's output unless it succeeded; its stdout.
fn must(out: Output, what: &str) -> String {
    let (stdout, stderr) = outputs(&out);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}{stderr}",
        out.status
    );
    stdout
}

/// `pgvigil check-config` on `text`, with the secret file it names at `secret` (a path that
/// exists only where it is deployed) replaced by a temporary one; panics unless it is valid.
fn check_config_with_secret(text: &str, secret: &str, what: &str) {
    assert!(
        text.contains(secret),
        "{what} should read its password from {secret}:\n{text}"
    );
    let dir = temp_dir();
    let password = dir.path().join("password");
    std::fs::write(&password, "not-the-real-one\n").unwrap();
    let file = dir.path().join("pgvigil.toml");
    std::fs::write(&file, text.replace(secret, password.to_str().unwrap())).unwrap();
    let stdout = must(
        pgvigil(&["check-config", file.to_str().unwrap()], &[]),
        &format!("pgvigil check-config of {what}"),
    );
    assert!(stdout.contains("ok (1 target)"), "{what}: {stdout}");
}

// ------------------------------------------------------------------ systemd

/// A unit file as (section, key, value) in file order, continuation lines joined.
fn unit_entries(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut pending = String::new();
    let mut entries = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with(['#', ';'])) {
            continue;
        }
        if pending.is_empty() && line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].to_string();
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        let full = std::mem::take(&mut pending) + line;
        let (key, value) = full
            .split_once('=')
            .unwrap_or_else(|| panic!("not a key=value line in the unit: {raw:?}"));
        entries.push((section.clone(), key.trim().into(), value.trim().into()));
    }
    entries
}

/// Every value assigned to `key` in [Service], in order.
fn service_values<'a>(entries: &'a [(String, String, String)], key: &str) -> Vec<&'a str> {
    entries
        .iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

/// Whether the agent handles SIGHUP anywhere (then the unit should offer a reload).
fn agent_handles_sighup() -> bool {
    fn scan(dir: &Path) -> bool {
        std::fs::read_dir(dir).unwrap().flatten().any(|e| {
            let path = e.path();
            if path.is_dir() {
                scan(&path)
            } else {
                path.extension().is_some_and(|x| x == "rs")
                    && read(&path).contains("SignalKind::hangup")
            }
        })
    }
    scan(&repo("src"))
}

/// `systemd-analyze verify` of `unit` (whose ExecStart binary must exist): no error and no
/// warning about the unit (unknown keys and bad values are warnings that exit 0).
fn systemd_verify(unit: &Path) {
    let out = run(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(unit),
        "systemd-analyze",
    );
    let (stdout, stderr) = outputs(&out);
    let name = unit.file_name().unwrap().to_str().unwrap();
    let complaints: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains(name) || l.contains("pgvigil"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify {}: {}\n{stdout}{stderr}",
        unit.display(),
        out.status
    );
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let path = repo("packaging/systemd/pgvigil.service");
    let text = read(&path);
    let entries = unit_entries(&text);
    let one = |key: &str| -> String {
        let values = service_values(&entries, key);
        assert_eq!(values.len(), 1, "[Service] {key}= should be set once");
        values[0].to_string()
    };

    for (key, expected) in [
        ("User", "pgvigil"),
        ("Group", "pgvigil"),
        ("DynamicUser", "no"),
        (
            "ExecStart",
            "/usr/bin/pgvigil run --config /etc/pgvigil/pgvigil.toml",
        ),
        ("EnvironmentFile", "-/etc/default/pgvigil"),
        ("Restart", "on-failure"),
        ("StateDirectory", "pgvigil"),
        ("ReadWritePaths", "/var/lib/pgvigil"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(one(key), expected, "[Service] {key}= in {}", path.display());
    }
    let filters = service_values(&entries, "SystemCallFilter");
    assert_eq!(
        filters.first().copied(),
        Some("@system-service"),
        "the first SystemCallFilter= must be the allow-list @system-service: {filters:?}"
    );
    assert!(
        filters.iter().skip(1).all(|f| f.starts_with('~')),
        "later SystemCallFilter= lines may only deny: {filters:?}"
    );
    // Without a SIGHUP handler a reload would kill the agent; with one, the unit offers it.
    assert_eq!(
        !service_values(&entries, "ExecReload").is_empty(),
        agent_handles_sighup(),
        "ExecReload= belongs in the unit exactly when the agent handles SIGHUP"
    );
    // The default config connects as the role named like the service user (peer authentication).
    let default_config = read(&repo("packaging/deb/pgvigil.toml"));
    assert!(
        default_config.contains("user=pgvigil"),
        "the packaged config should connect as the service user's role"
    );

    // systemd's own reading, with ExecStart pointing at a binary that exists here. Without
    // systemd-analyze, the directives above are what this test checked.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "packaging: systemd-analyze is missing (apt-get install systemd): checked the unit's \
             directives only, not systemd's verification"
        );
        return;
    }
    let dir = temp_dir();
    let unit = dir.path().join("pgvigil.service");
    let exec = binary();
    std::fs::write(
        &unit,
        text.replace("/usr/bin/pgvigil", exec.to_str().unwrap()),
    )
    .unwrap();
    systemd_verify(&unit);
    // systemd's exposure score (0 = fully locked down, 10 = none): 1.2 today. 20 means 2.0.
    let out = run(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20"])
            .arg(&unit),
        "systemd-analyze security",
    );
    let (stdout, stderr) = outputs(&out);
    assert!(
        out.status.success(),
        "the unit's exposure is over 2.0:\n{stdout}{stderr}"
    );
    assert!(stdout.contains("Overall exposure level"), "{stdout}");
}

/// systemd's system call groups (`systemd-analyze syscall-filter`), each expanded to the
/// system calls it holds, nested groups included.
fn syscall_groups() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let out = run(
        Command::new("systemd-analyze").arg("syscall-filter"),
        "systemd-analyze (apt-get install systemd)",
    );
    let text = must(out, "systemd-analyze syscall-filter");
    let mut direct: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut group: Option<String> = None;
    for line in text.lines() {
        if line.starts_with('@') {
            group = Some(line.trim().to_string());
            direct.entry(line.trim().to_string()).or_default();
        } else if !line.starts_with(' ') {
            group = None;
        } else if let Some(g) = &group {
            let item = line.trim();
            if !item.is_empty() && !item.starts_with('#') {
                direct.get_mut(g).unwrap().push(item.to_string());
            }
        }
    }
    fn expand(
        name: &str,
        direct: &std::collections::BTreeMap<String, Vec<String>>,
        into: &mut BTreeSet<String>,
    ) {
        for item in direct.get(name).map(Vec::as_slice).unwrap_or_default() {
            if item.starts_with('@') {
                expand(item, direct, into);
            } else {
                into.insert(item.clone());
            }
        }
    }
    direct
        .keys()
        .map(|g| {
            let mut calls = BTreeSet::new();
            expand(g, &direct, &mut calls);
            (g.clone(), calls)
        })
        .collect()
}

/// What the unit's `SystemCallFilter=` lines allow: the allow-list (plus `@default`, which
/// systemd always permits) less what later `~` lines deny.
fn unit_syscall_allowance(entries: &[(String, String, String)]) -> BTreeSet<String> {
    let groups = syscall_groups();
    let resolve = |item: &str| -> BTreeSet<String> {
        if item.starts_with('@') {
            groups
                .get(item)
                .unwrap_or_else(|| panic!("systemd has no group {item}"))
                .clone()
        } else {
            BTreeSet::from([item.to_string()])
        }
    };
    let mut allowed = resolve("@default");
    for filter in service_values(entries, "SystemCallFilter") {
        match filter.strip_prefix('~') {
            Some(denied) => {
                for item in denied.split_whitespace() {
                    for call in resolve(item) {
                        allowed.remove(&call);
                    }
                }
            }
            None => {
                for item in filter.split_whitespace() {
                    allowed.extend(resolve(item));
                }
            }
        }
    }
    allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_stays_within_the_units_system_call_filter() {
    // The unit's filter answers any other system call with EPERM: run the agent under strace
    // through start-up, collection, scrapes of every endpoint and a SIGTERM stop, and check that
    // it made no call the filter refuses.
    let entries = unit_entries(&read(&repo("packaging/systemd/pgvigil.service")));
    let allowed = unit_syscall_allowance(&entries);
    for (call, expected) in [("read", true), ("openat", true), ("setrlimit", false)] {
        assert_eq!(
            allowed.contains(call),
            expected,
            "{call} in the unit's filter"
        );
    }
    let fx = Fixture::start().await;
    let dir = temp_dir();
    let config = dir.path().join("pgvigil.toml");
    std::fs::write(&config, fx.config("")).unwrap();
    let summary = dir.path().join("strace.txt");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.path().join("pgvigil.log");
    let strace = Command::new("strace")
        .args(["-f", "-qq", "-c", "-o"])
        .arg(&summary)
        .arg("--")
        .arg(binary())
        .args(["run", "--config"])
        .arg(&config)
        .args(["--listen", &addr.to_string()])
        .env_remove("PGVIGIL_DSN")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("strace is required (apt-get install strace)");
    let mut traced = ServiceProcess {
        runuser: strace,
        log,
        exited: false,
    };
    let agent_pid = eventually(
        Duration::from_secs(10),
        "the agent under strace",
        || async { traced.agent_pid() },
    )
    .await;
    eventually(Duration::from_secs(60), "/readyz 200", || async {
        http(addr, "GET", "/readyz", &[])
            .await
            .ok()
            .filter(|r| r.status == 200)
    })
    .await;
    for path in [
        "/metrics",
        "/probe?target=main",
        "/healthz",
        "/api/v1/statements",
        "/api/v1/plans",
        "/",
    ] {
        let response = http(addr, "GET", path, &[]).await.expect("request");
        assert!(response.status < 500, "{path}: {}", response.status);
    }
    // SAFETY: kill with a valid signal.
    unsafe { libc::kill(agent_pid as i32, libc::SIGTERM) };
    let exit = tokio::task::block_in_place(|| traced.wait(Duration::from_secs(30)));
    assert!(exit.success(), "exit {exit}: {}", traced.log());

    // strace -c: one row per system call, the name last, between the dashed lines.
    let table = read(&summary);
    let called: BTreeSet<String> = table
        .lines()
        .skip_while(|l| !l.starts_with("------"))
        .skip(1)
        .take_while(|l| !l.starts_with("------"))
        .filter_map(|l| l.split_whitespace().last())
        .map(str::to_string)
        .collect();
    assert!(
        called.contains("epoll_wait") || called.contains("epoll_pwait"),
        "strace saw too little: {table}"
    );
    let refused: Vec<&String> = called.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "the unit's SystemCallFilter would refuse {refused:?} (EPERM):\n{table}"
    );
}

// ------------------------------------------------------------------ container

/// One Dockerfile instruction: its stage (0 = the first FROM), keyword and arguments.
#[derive(Debug)]
struct Instruction {
    stage: usize,
    op: String,
    args: String,
}

fn dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut stage = 0;
    let mut seen_from = false;
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (pending.is_empty() && trimmed.is_empty()) {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        let full = std::mem::take(&mut pending) + trimmed;
        let (op, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        let op = op.to_ascii_uppercase();
        if op == "FROM" {
            if seen_from {
                stage += 1;
            }
            seen_from = true;
        }
        out.push(Instruction {
            stage,
            op,
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
        });
    }
    out
}

/// The JSON (exec) form of ENTRYPOINT/CMD.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not exec form {args:?}: {e}"))
}

/// The uid the image runs as (its last USER, numeric).
fn image_uid(instructions: &[Instruction]) -> u32 {
    let user = instructions
        .iter()
        .rev()
        .find(|i| i.op == "USER")
        .expect("the image must set USER");
    user.args
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("USER {} should be numeric (runAsNonRoot)", user.args))
}

#[test]
fn container_image_is_multi_stage_and_runs_unprivileged() {
    let text = read(&repo("packaging/Dockerfile"));
    let all = dockerfile(&text);
    let last = all.iter().map(|i| i.stage).max().unwrap();
    assert!(last >= 1, "multi-stage: a build stage and a runtime stage");
    let stage = |n: usize| -> Vec<&Instruction> { all.iter().filter(|i| i.stage == n).collect() };
    let (build, runtime) = (stage(0), stage(last));

    assert_eq!(build[0].args, "rust:1-bookworm AS build");
    let build_runs: String = build
        .iter()
        .filter(|i| i.op == "RUN")
        .map(|i| i.args.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        build_runs.contains("libclang-dev") && build_runs.contains("clang"),
        "pg_query's bindgen needs libclang in the build stage"
    );
    assert!(build_runs.contains("cargo build --release --locked"));
    assert_eq!(runtime[0].args, "debian:bookworm-slim");
    assert!(
        runtime
            .iter()
            .any(|i| i.op == "RUN" && i.args.contains("ca-certificates")),
        "sslrootcert=system needs ca-certificates"
    );

    // The binary: built in the first stage, copied where ENTRYPOINT finds it on PATH.
    let copy = runtime
        .iter()
        .find(|i| i.op == "COPY" && i.args.starts_with("--from=build "))
        .expect("COPY --from=build of the binary");
    let parts: Vec<&str> = copy.args.split(' ').collect();
    assert_eq!(parts.len(), 3, "{copy:?}");
    let (built, installed) = (parts[1], parts[2]);
    assert_eq!(installed, "/usr/bin/pgvigil");
    assert!(
        build_runs.contains(&format!("target/release/pgvigil {built}")),
        "the build stage should put target/release/pgvigil at {built}"
    );
    let entrypoint = runtime.iter().find(|i| i.op == "ENTRYPOINT").unwrap();
    assert_eq!(exec_form(&entrypoint.args), ["pgvigil"]);
    let cmd = runtime.iter().find(|i| i.op == "CMD").unwrap();
    assert_eq!(
        exec_form(&cmd.args),
        ["run", "--config", "/etc/pgvigil/pgvigil.toml"]
    );

    // Non-root, with a numeric uid Kubernetes can check, and the user exists in the image.
    let uid = image_uid(&all);
    assert!(
        uid >= 1000,
        "USER {uid} should be an unprivileged, non-system uid"
    );
    assert!(
        runtime
            .iter()
            .any(|i| i.op == "RUN" && i.args.contains(&format!("--uid {uid}"))),
        "the runtime stage should create user {uid}"
    );
    assert!(
        runtime.iter().any(|i| i.op == "USER"),
        "USER must be in the runtime stage"
    );
    assert!(
        runtime
            .iter()
            .any(|i| i.op == "EXPOSE" && i.args.split(' ').any(|p| p == "9932"))
    );
    for health in all.iter().filter(|i| i.op == "HEALTHCHECK") {
        assert!(
            !health.args.contains("curl") && !health.args.contains("wget"),
            "the runtime image has no curl or wget: {health:?}"
        );
    }

    // Every file copied from the context exists and is let through by the .dockerignore.
    let ignore = read(&repo("packaging/Dockerfile.dockerignore"));
    let allowed: BTreeSet<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    let mut copied = BTreeSet::new();
    for copy in all
        .iter()
        .filter(|i| i.op == "COPY" && !i.args.starts_with("--"))
    {
        let parts: Vec<&str> = copy.args.split(' ').collect();
        for source in &parts[..parts.len() - 1] {
            assert!(repo(source).exists(), "COPY {source}: no such file");
            assert!(
                allowed.contains(source),
                "COPY {source}: excluded by packaging/Dockerfile.dockerignore"
            );
            copied.insert(source.to_string());
        }
    }
    // What `cargo build` needs: the manifest's explicit targets (the bench) included.
    for needed in ["Cargo.toml", "Cargo.lock", "build.rs", "src"] {
        assert!(
            copied.contains(needed),
            "the build stage must COPY {needed}"
        );
    }
    if read(&repo("Cargo.toml")).contains("[[bench]]") {
        assert!(
            copied.contains("benches"),
            "Cargo.toml declares a bench: COPY benches"
        );
    }

    // The config baked into the image is valid and matches the CMD and the sidecar's secret.
    let config = runtime
        .iter()
        .find(|i| i.op == "COPY" && i.args.ends_with(" /etc/pgvigil/pgvigil.toml"))
        .expect("the image ships /etc/pgvigil/pgvigil.toml");
    let source = config.args.split(' ').next().unwrap();
    check_config_with_secret(
        &read(&repo(source)),
        "/run/secrets/pgvigil/password",
        source,
    );
}

// ------------------------------------------------------------------ YAML

/// The documents of a YAML file, as JSON (PyYAML's safe loader: the test has no YAML crate).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import yaml"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("python3 with PyYAML is required to read YAML (apt-get install python3-yaml)");
    let out = run(
        Command::new(python)
            .args([
                "-c",
                "import json, sys, yaml\njson.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
            ])
            .arg(path),
        "python3",
    );
    let stdout = must(out, &format!("parsing {} as YAML", path.display()));
    serde_json::from_str(&stdout).expect("JSON from python")
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, is {v}"))
}

#[test]
fn kubernetes_sidecar_is_locked_down_and_cannot_make_the_pod_unready() {
    let path = repo("packaging/kubernetes/sidecar.yaml");
    let docs = yaml_documents(&path);
    let kind = |k: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == k).collect() };
    let workload = docs
        .iter()
        .find(|d| d["kind"] == "StatefulSet" || d["kind"] == "Deployment")
        .expect("a StatefulSet or Deployment");
    let pod = &workload["spec"]["template"];
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().expect("containers");
    let container = |name: &str| -> &Value {
        containers
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} container"))
    };
    let (postgres, agent) = (container("postgres"), container("pgvigil"));
    let volume = |name: &str| -> &Value {
        spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mount = |c: &Value, path: &str| -> Value {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("{} mounts nothing at {path}", c["name"]))
            .clone()
    };

    // Alive while it answers, on its own port. No readiness (nor startup) probe: a pod is
    // ready only when all its containers are, so a slow or failing monitoring sidecar would
    // take PostgreSQL out of its Service. The database's own readiness stays.
    let port = agent["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["containerPort"] == 9932)
        .expect("containerPort 9932");
    let get = &agent["livenessProbe"]["httpGet"];
    assert_eq!(get["path"], "/healthz", "livenessProbe");
    assert!(
        get["port"] == 9932 || get["port"] == port["name"],
        "livenessProbe should probe port 9932, probes {}",
        get["port"]
    );
    for probe in ["readinessProbe", "startupProbe"] {
        assert!(
            agent[probe].is_null(),
            "the pgvigil sidecar must have no {probe}: it would make the PostgreSQL pod unready"
        );
    }
    assert!(
        postgres["readinessProbe"].is_object(),
        "the postgres container keeps its readinessProbe"
    );
    for kind in ["requests", "limits"] {
        assert!(
            agent["resources"][kind]["memory"].is_string(),
            "the sidecar needs a memory {kind}"
        );
    }

    // Locked down, as the uid the image runs as.
    let sc = &agent["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let image_uid = image_uid(&dockerfile(&read(&repo("packaging/Dockerfile"))));
    assert_eq!(sc["runAsUser"], image_uid, "runAsUser = the image's USER");

    // The config from the ConfigMap, at the path the container's command reads.
    let args: Vec<&str> = agent["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    assert_eq!(args, ["run", "--config", "/etc/pgvigil/pgvigil.toml"]);
    let config_mount = mount(agent, "/etc/pgvigil");
    assert_eq!(config_mount["readOnly"], true);
    let map_name = &volume(str_of(&config_mount["name"], "volume"))["configMap"]["name"];
    let map = kind("ConfigMap")
        .into_iter()
        .find(|m| m["metadata"]["name"] == *map_name)
        .unwrap_or_else(|| panic!("no ConfigMap {map_name}"));
    let config = str_of(&map["data"]["pgvigil.toml"], "pgvigil.toml");

    // The password from the Secret as a file, where the config's password_file points.
    let secret_mount = mount(agent, "/run/secrets/pgvigil");
    assert_eq!(secret_mount["readOnly"], true);
    let secret = &volume(str_of(&secret_mount["name"], "volume"))["secret"];
    assert!(secret["secretName"].is_string());
    assert!(
        secret["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["path"] == "password"),
        "the Secret volume should hold the file `password`"
    );
    assert!(
        !agent.to_string().contains("secretKeyRef"),
        "the password belongs in a file, not the environment"
    );
    check_config_with_secret(config, "/run/secrets/pgvigil/password", "the ConfigMap");

    // The log directory: written by postgres, shared read-only with the agent.
    let postgres_args: Vec<&str> = postgres["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    let log_directory = postgres_args
        .iter()
        .find_map(|a| a.strip_prefix("log_directory="))
        .expect("postgres -c log_directory=...");
    assert!(postgres_args.contains(&"logging_collector=on"));
    let agent_logs = mount(agent, log_directory);
    let server_logs = mount(postgres, log_directory);
    assert_eq!(agent_logs["readOnly"], true);
    assert_ne!(server_logs["readOnly"], true);
    assert_eq!(agent_logs["name"], server_logs["name"]);
    assert!(
        config.lines().any(|l| l == "[target.logs]")
            && config.contains(&format!("\ndirectory = \"{log_directory}\"")),
        "the config should tail the shared log directory ([target.logs]):\n{config}"
    );
    // The tailer's read position: the sidecar's one writable path.
    let state = mount(agent, "/var/lib/pgvigil");
    assert_ne!(state["readOnly"], true);
    assert!(
        volume(str_of(&state["name"], "volume"))["emptyDir"].is_object(),
        "/var/lib/pgvigil should be an emptyDir"
    );

    // Scraped: by annotation, and by the Prometheus Operator.
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9932");
    let monitor = kind("PodMonitor");
    assert_eq!(monitor.len(), 1, "one PodMonitor");
    assert_eq!(
        monitor[0]["spec"]["podMetricsEndpoints"][0]["port"],
        port["name"]
    );
}

#[test]
fn prometheus_scrape_configs_load_and_relabel_probe_targets() {
    // promtool resolves rule_files relative to the config: give it the layout the files describe.
    let dir = temp_dir();
    std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
    std::fs::write(dir.path().join("alerts/pgvigil.rules.yml"), "groups: []\n").unwrap();
    for name in ["single-target.yml", "multi-target.yml"] {
        let file = dir.path().join(name);
        std::fs::copy(repo(&format!("packaging/prometheus/{name}")), &file).unwrap();
        let out = run(
            Command::new("promtool")
                .args(["check", "config"])
                .arg(&file),
            "promtool (apt-get install prometheus)",
        );
        let stdout = must(out, &format!("promtool check config {name}"));
        assert!(stdout.contains("1 rule files found"), "{name}: {stdout}");
        let doc = &yaml_documents(&file)[0];
        assert_eq!(
            doc["rule_files"],
            serde_json::json!(["alerts/pgvigil.rules.yml"])
        );
    }

    let single = &yaml_documents(&repo("packaging/prometheus/single-target.yml"))[0];
    let job = &single["scrape_configs"][0];
    assert!(
        job["static_configs"][0]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| str_of(t, "target").ends_with(":9932")),
        "{job}"
    );

    let multi = &yaml_documents(&repo("packaging/prometheus/multi-target.yml"))[0];
    let probe = multi["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["metrics_path"] == "/probe")
        .expect("a job scraping /probe");
    let rules = probe["relabel_configs"].as_array().unwrap();
    let rule = |target: &str| -> &Value {
        rules
            .iter()
            .find(|r| r["target_label"] == target)
            .unwrap_or_else(|| panic!("no relabelling to {target}"))
    };
    assert_eq!(
        rule("__param_target")["source_labels"],
        serde_json::json!(["__address__"])
    );
    assert_eq!(
        rule("instance")["source_labels"],
        serde_json::json!(["__param_target"])
    );
    assert!(str_of(&rule("__address__")["replacement"], "replacement").ends_with(":9932"));
    // Applied in order: the address is read before it is replaced by the agent's.
    let position = |t: &str| rules.iter().position(|r| r["target_label"] == t).unwrap();
    assert!(position("__param_target") < position("__address__"));
}

// ------------------------------------------------------------------ Debian package

/// The package's revision in this test, so that a package it left behind (a killed run) is
/// told apart from one an administrator installed, which the test must not replace.
const TEST_REVISION: &str = "0~test";

/// Runs `program` as root (through `sudo -n` when the tests do not run as root).
fn as_root(program: &str) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.args(["-n", program]);
        cmd
    }
}

/// dpkg ARGS, waiting while another dpkg or apt holds the dpkg lock (at most 10 minutes).
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let out = run(
            as_root("dpkg").args(args),
            "dpkg (the Debian package test needs Debian or Ubuntu)",
        );
        let (_, stderr) = outputs(&out);
        if out.status.success()
            || !stderr.contains("locked by another process")
            || Instant::now() > deadline
        {
            return out;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The installed pgvigil package's version, if any.
fn installed_version() -> Option<String> {
    let out = run(
        Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}${Version}", "pgvigil"]),
        "dpkg-query",
    );
    let (stdout, _) = outputs(&out);
    (out.status.success() && stdout.starts_with("ii")).then(|| stdout[2..].trim().to_string())
}

/// Holds an exclusive lock on a file shared by every test process of this machine: two test
/// runs must not install and purge the package under each other.
struct MachineLock {
    _file: std::fs::File,
}

impl MachineLock {
    fn take() -> MachineLock {
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join("pgvigil-packaging-deb.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .or_else(|_| std::fs::File::open(&path))
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
        MachineLock { _file: file }
    }
}

/// Purges the package when the test ends, also when it fails half-way.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if installed_version().is_some() {
            let _ = dpkg(&["--purge", "pgvigil"]);
        }
    }
}

/// Builds the .deb with cargo-deb from the binary this test run already built.
///
/// cargo-deb normally runs a release build (`cargo deb`), which for pgvigil takes several minutes
/// on CI's two cores and says nothing more about the packaging than the debug binary does. So the
/// test packages the binary cargo built for it: `--no-build` makes cargo-deb take
/// `target/release/pgvigil` from `$CARGO_TARGET_DIR/release`, and a private target directory
/// holding a copy of the test binary there is all it needs. (cargo-deb's `--profile dev` would
/// point it at target/debug directly, but that profile is deprecated in cargo-deb and would
/// strip the shared debug binary in place.) cargo-deb strips the copy (24 MB) and `--fast`
/// compresses it quickly: about 10 s in all.
fn build_deb(dir: &Path) -> PathBuf {
    let target = dir.join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(binary(), target.join("release/pgvigil")).expect("copy the test binary");
    let deb = dir.join("pgvigil.deb");
    let out = run(
        Command::new(env!("CARGO"))
            .args([
                "deb",
                "--no-build",
                "--fast",
                "--deb-revision",
                TEST_REVISION,
            ])
            .arg("--output")
            .arg(&deb)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", &target),
        "cargo",
    );
    let (stdout, stderr) = outputs(&out);
    assert!(
        out.status.success(),
        "cargo deb failed ({}); it needs cargo-deb: cargo install --locked --version 3.8.0 \
         cargo-deb (scripts/test.sh installs it)\n{stdout}{stderr}",
        out.status
    );
    assert!(deb.exists(), "cargo deb wrote no {}", deb.display());
    deb
}

/// A `getent passwd` entry: (uid, home, shell).
fn passwd(user: &str) -> (u32, String, String) {
    let line = must(
        run(Command::new("getent").args(["passwd", user]), "getent"),
        &format!("getent passwd {user}"),
    );
    let fields: Vec<&str> = line.trim().split(':').collect();
    (
        fields[2].parse().unwrap(),
        fields[5].to_string(),
        fields[6].to_string(),
    )
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(
                files_under(&path)
                    .into_iter()
                    .map(|p| Path::new(&entry.file_name()).join(p)),
            );
        } else {
            out.push(PathBuf::from(entry.file_name()));
        }
    }
    out
}

/// `pgvigil run` as the package's service user (runuser, as systemd's User= would), killed on
/// drop.
struct ServiceProcess {
    runuser: Child,
    log: PathBuf,
    /// Reaped: its pid (and its child's) may belong to someone else now.
    exited: bool,
}

impl ServiceProcess {
    /// The agent itself: runuser's child.
    fn agent_pid(&self) -> Option<u32> {
        if self.exited {
            return None;
        }
        let pid = self.runuser.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for runuser (which exits as its child did), at most `timeout`.
    fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.runuser.try_wait().expect("wait for runuser") {
                self.exited = true;
                return status;
            }
            assert!(Instant::now() < deadline, "still running: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        if let Some(pid) = self.agent_pid() {
            // SAFETY: kill with a valid signal.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = self.runuser.kill();
        let _ = self.runuser.wait();
    }
}

#[test]
fn deb_default_config_passes_check_config() {
    // As installed: the local socket with peer authentication needs no password file.
    let path = repo("packaging/deb/pgvigil.toml");
    let stdout = must(
        pgvigil(&["check-config", path.to_str().unwrap()], &[]),
        "pgvigil check-config packaging/deb/pgvigil.toml",
    );
    assert!(stdout.contains("ok (1 target)"), "{stdout}");
    let text = read(&path);
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("dsn = ")
            && l.contains("host=/var/run/postgresql")),
        "the default config should use Debian's socket directory:\n{text}"
    );
    // A short file that points to the full reference instead of repeating it.
    assert!(text.lines().count() < 40, "keep the default config short");
    assert!(text.contains("/usr/share/doc/pgvigil/examples/pgvigil.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deb_installs_runs_as_its_own_user_and_purges() {
    let _machine = MachineLock::take();
    match installed_version() {
        Some(v) if !v.ends_with(TEST_REVISION) => panic!(
            "pgvigil {v} is installed on this machine; this test installs and purges its own \
             package and will not replace it: dpkg -r pgvigil first"
        ),
        _ => {}
    }
    // The cluster first: it holds the harness's share of the machine while the package builds.
    let fx = Fixture::start().await;
    let dir = temp_dir();
    let started = Instant::now();
    let deb = tokio::task::block_in_place(|| build_deb(dir.path()));
    let built = started.elapsed();

    let _installed = Installed;
    let deb_path = deb.to_str().unwrap();
    must(
        tokio::task::block_in_place(|| dpkg(&["-i", deb_path])),
        "dpkg -i",
    );
    let version = installed_version().expect("pgvigil installed");
    assert!(version.ends_with(TEST_REVISION), "{version}");

    // The binary, the same build as the one under test.
    let installed = must(
        run(Command::new("/usr/bin/pgvigil").arg("--version"), "pgvigil"),
        "/usr/bin/pgvigil --version",
    );
    let (ours, _) = outputs(&pgvigil(&["--version"], &[]));
    assert_eq!(installed, ours);
    assert!(installed.starts_with("pgvigil 0."), "{installed}");

    // The system user and its state directory.
    let (uid, home, shell) = passwd("pgvigil");
    assert!(
        uid > 0 && uid < 1000,
        "pgvigil should be a system user, uid {uid}"
    );
    assert_eq!(
        (home.as_str(), shell.as_str()),
        ("/var/lib/pgvigil", "/usr/sbin/nologin")
    );
    let state = std::fs::metadata("/var/lib/pgvigil").expect("/var/lib/pgvigil");
    assert_eq!(state.uid(), uid);
    assert_eq!(state.mode() & 0o777, 0o750);

    // The files, as in the repository; /etc as conffiles.
    let conffiles = must(
        run(
            Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "pgvigil"]),
            "dpkg-query",
        ),
        "dpkg-query Conffiles",
    );
    for conffile in ["/etc/pgvigil/pgvigil.toml", "/etc/default/pgvigil"] {
        assert!(
            conffiles.contains(conffile),
            "{conffile} is no conffile: {conffiles}"
        );
    }
    // Where every document says it is (licence::every_document_names_the_unit_...).
    let unit = PathBuf::from("/usr/lib/systemd/system/pgvigil.service");
    assert!(unit.exists(), "{} not installed", unit.display());
    for (installed, source) in [
        ("/etc/pgvigil/pgvigil.toml", "packaging/deb/pgvigil.toml"),
        ("/etc/default/pgvigil", "packaging/deb/default"),
        (
            "/usr/share/doc/pgvigil/examples/pgvigil.toml",
            "packaging/pgvigil.toml",
        ),
        (
            "/usr/share/pgvigil/pgvigil-role.sql",
            "packaging/sql/pgvigil-role.sql",
        ),
        (unit.to_str().unwrap(), "packaging/systemd/pgvigil.service"),
    ] {
        assert_eq!(
            read(Path::new(installed)),
            read(&repo(source)),
            "{installed} differs from {source}"
        );
    }
    // The licence, machine-readable, where Debian looks for it.
    let copyright = read(Path::new("/usr/share/doc/pgvigil/copyright"));
    assert_eq!(copyright, read(&repo("packaging/deb/copyright")));
    for licence in [
        "License: MIT or Apache-2.0\n",
        "License: MIT\n",
        "License: Apache-2.0\n",
    ] {
        assert!(copyright.contains(licence), "{licence:?} in {copyright}");
    }
    // Its maintainer, as Cargo.toml names it.
    let maintainer = must(
        run(
            Command::new("dpkg-query").args(["-W", "-f=${Maintainer}", "pgvigil"]),
            "dpkg-query",
        ),
        "dpkg-query Maintainer",
    );
    let cargo: toml::Table = read(&repo("Cargo.toml")).parse().unwrap();
    assert_eq!(
        Some(maintainer.as_str()),
        cargo["package"]["metadata"]["deb"]["maintainer"].as_str()
    );

    // The environment file may hold the password: root and the service's group only, which the
    // kernel enforces: the service user reads it, another user cannot.
    let environment = std::fs::metadata("/etc/default/pgvigil").expect("/etc/default/pgvigil");
    let group = must(
        run(Command::new("getent").args(["group", "pgvigil"]), "getent"),
        "getent group pgvigil",
    );
    let gid: u32 = group.split(':').nth(2).unwrap().parse().unwrap();
    assert_eq!(
        (
            environment.mode() & 0o777,
            environment.uid(),
            environment.gid()
        ),
        (0o640, 0, gid),
        "/etc/default/pgvigil should be 0640 root:pgvigil"
    );
    let reads = |user: &str| {
        run(
            as_root("runuser").args(["-u", user, "--", "cat", "/etc/default/pgvigil"]),
            "runuser",
        )
        .status
        .success()
    };
    assert!(
        reads("pgvigil"),
        "the service user cannot read /etc/default/pgvigil"
    );
    assert!(!reads("nobody"), "nobody can read /etc/default/pgvigil");

    for shipped in ["alerts", "dashboards"] {
        let files = files_under(&repo(shipped));
        assert!(!files.is_empty());
        for file in files {
            let at = Path::new("/usr/share/pgvigil").join(shipped).join(&file);
            assert!(at.exists(), "{} not installed", at.display());
        }
    }
    // Enabled for the next boot (deb-systemd-helper works without a running systemd).
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/pgvigil.service").exists(),
        "pgvigil.service not enabled"
    );
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        systemd_verify(&unit);
    }

    // The installed config is valid for the service user.
    let stdout = must(
        run(
            as_root("runuser").args([
                "-u",
                "pgvigil",
                "--",
                "/usr/bin/pgvigil",
                "check-config",
                "/etc/pgvigil/pgvigil.toml",
            ]),
            "runuser",
        ),
        "pgvigil check-config /etc/pgvigil/pgvigil.toml as pgvigil",
    );
    assert!(stdout.contains("ok (1 target)"), "{stdout}");

    // Start it as systemd would: the unit's ExecStart, as the unit's User=, with the installed
    // config pointed at the throwaway cluster's socket instead of Debian's (its local
    // connections are trusted, as peer authentication trusts pgvigil on a real host).
    let config = read(Path::new("/etc/pgvigil/pgvigil.toml"));
    let dsn_line = config
        .lines()
        .find(|l| l.starts_with("dsn = "))
        .expect("a dsn line");
    let config = config.replace(
        dsn_line,
        &format!(
            "dsn = \"postgresql:///postgres?host={}&port={}&user=pgvigil\"",
            fx.pg.socket_dir().display(),
            fx.pg.port
        ),
    );
    let config_file = dir.path().join("pgvigil.toml");
    std::fs::write(&config_file, config).unwrap();
    let entries = unit_entries(&read(&unit));
    let exec: Vec<String> = service_values(&entries, "ExecStart")[0]
        .split_whitespace()
        .map(|a| {
            if a == "/etc/pgvigil/pgvigil.toml" {
                config_file.to_str().unwrap().to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let user = service_values(&entries, "User")[0];
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.path().join("pgvigil.log");
    let runuser = as_root("runuser")
        .args(["-u", user, "--"])
        .args(&exec)
        .args(["--listen", &addr.to_string()])
        .env_remove("PGVIGIL_DSN")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("runuser");
    let service = ServiceProcess {
        runuser,
        log,
        exited: false,
    };
    let agent_pid = eventually(
        Duration::from_secs(10),
        "the agent under runuser",
        || async { service.agent_pid() },
    )
    .await;
    let status = read(Path::new(&format!("/proc/{agent_pid}/status")));
    let runs_as = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .map(|u| u.parse::<u32>().unwrap())
        .collect::<Vec<_>>();
    assert!(
        runs_as.iter().all(|&u| u == uid),
        "the agent should run as pgvigil ({uid}) only: {runs_as:?}"
    );
    eventually(Duration::from_secs(60), "/readyz 200", || async {
        http(addr, "GET", "/readyz", &[])
            .await
            .ok()
            .filter(|r| r.status == 200)
    })
    .await;
    eventually(Duration::from_secs(30), "pg_up 1 in /metrics", || async {
        let response = http(addr, "GET", "/metrics", &[]).await.ok()?;
        (response.status == 200 && Metrics::parse(&response.body).get("pg_up", &[]) == Some(1.0))
            .then_some(())
    })
    .await;
    // SIGTERM, as `systemctl stop` sends: a clean exit.
    // SAFETY: kill with a valid signal.
    unsafe { libc::kill(agent_pid as i32, libc::SIGTERM) };
    let mut service = service;
    let exit = tokio::task::block_in_place(|| service.wait(Duration::from_secs(20)));
    assert!(
        exit.success(),
        "exit {exit} after SIGTERM: {}",
        service.log()
    );

    // Purge removes everything but the user (Debian policy).
    must(
        tokio::task::block_in_place(|| dpkg(&["--purge", "pgvigil"])),
        "dpkg --purge",
    );
    assert_eq!(installed_version(), None);
    for gone in [
        "/usr/bin/pgvigil",
        "/etc/pgvigil",
        "/etc/default/pgvigil",
        "/var/lib/pgvigil",
        "/etc/systemd/system/multi-user.target.wants/pgvigil.service",
        unit.to_str().unwrap(),
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    eprintln!(
        "packaging: deb built in {built:?}, whole test {:?}",
        started.elapsed()
    );
}
