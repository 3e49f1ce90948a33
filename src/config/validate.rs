//! Stage two: from the raw config to the validated one, one function per
//! section, every problem reported with its key path.
//!
//! A check that fails records a [`Problem`] and validation carries on, so
//! `check-config` lists everything at once. Not here: syntax and types
//! (`load.rs` and serde), where passwords come from (`secrets.rs`), what a
//! DSN may contain (`target/dsn`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::queries::{Definitions, validate_queries};
use super::raw::{
    Interval, RawBackup, RawCollectors, RawConfig, RawExplain, RawLogs, RawNotify, RawPgbouncer,
    RawTarget, RawWeb, Setting,
};
use super::secrets::{Secrets, apply_password};
use super::{
    Amcheck, Backup, Catalogue, Collectors, Config, Environment, Explain, Logs, Notify, Pgbouncer,
    Problem, Query, Report, Schema, Statements, Target, Web,
};
use crate::connection::dsn::ConnParams;

/// The longest timeout PostgreSQL accepts: `i32::MAX` milliseconds.
const MAX_SERVER_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Whether libpq's `PG*` environment variables complete a target's DSN:
/// only without a config file, as psql would (a file is the whole truth).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum LibpqEnv {
    /// A config file: the environment is not consulted.
    Ignored,
    /// `--dsn` or `PGVIGIL_DSN`: unset keys come from `PGHOST`, ….
    Fills,
}

/// Validates every section. `None` only when the result cannot even be
/// built (no listen address); otherwise the problems say what is wrong.
pub(super) fn validate(
    raw: RawConfig,
    env: &Environment,
    libpq_env: LibpqEnv,
    catalogue: Catalogue,
    problems: &mut Vec<Problem>,
) -> Option<Config> {
    let listen = validate_listen(&raw.listen, problems);
    let mut defined = Definitions::new(catalogue, raw.collectors.timeout);
    let no_redis = raw.redis.is_empty();
    let mut names = BTreeSet::new();
    let targets = validate_targets(
        raw.targets,
        env,
        libpq_env,
        &mut defined,
        &mut names,
        no_redis,
        problems,
    );
    let redis = raw
        .redis
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            super::redis::validate_redis(
                r,
                i,
                raw.collectors.default_interval,
                &mut names,
                env,
                problems,
            )
        })
        .collect();
    let collectors = validate_collectors(&raw.collectors, env, problems);
    let explain = validate_explain(&raw.explain, problems);
    let web = validate_web(&raw.web, problems);
    let notify = validate_notify(&raw.notify);
    Some(Config {
        listen: listen?,
        targets,
        redis,
        collectors,
        explain,
        notify,
        web,
    })
}

fn validate_listen(listen: &str, problems: &mut Vec<Problem>) -> Option<SocketAddr> {
    let addr = listen.parse::<SocketAddr>().ok();
    if addr.is_none() {
        problems.report(
            "listen",
            format!("{listen:?} is not an address and port such as \"0.0.0.0:9932\""),
        );
    }
    addr
}

/// `[[target]]`: names unique, DSNs valid, secrets readable, custom
/// queries guarded and their metric names free (`defined`).
fn validate_targets(
    raw: Vec<RawTarget>,
    env: &Environment,
    libpq_env: LibpqEnv,
    defined: &mut Definitions,
    names: &mut BTreeSet<String>,
    no_redis: bool,
    problems: &mut Vec<Problem>,
) -> Vec<Target> {
    if raw.is_empty() && no_redis {
        problems.report(
            "target",
            "no [[target]] configured: add one with at least a dsn",
        );
    }
    let several = raw.len() > 1;
    let mut targets = Vec::new();
    for (i, mut t) in raw.into_iter().enumerate() {
        let name = validate_target_name(t.name.take(), i, several, names, problems);
        // Checked whatever the rest of the target says, so that one bad
        // DSN does not hide a refused query.
        let queries = validate_queries(&t.queries, i, defined, problems);
        if let Some(target) = validate_target(t, name, queries, i, env, libpq_env, problems) {
            targets.push(target);
        }
    }
    targets
}

/// The target's name: given, or "main" for a lone target; it becomes the
/// `target` label, so it must be unique and label-safe.
fn validate_target_name(
    name: Option<String>,
    i: usize,
    several: bool,
    seen: &mut BTreeSet<String>,
    problems: &mut Vec<Problem>,
) -> String {
    let path = format!("target[{i}].name");
    let name = match name {
        Some(n) => n,
        None if several => {
            problems.report(&path, "required when there are several targets");
            format!("target{i}")
        }
        None => "main".to_string(),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        problems.report(
            path,
            format!("{name:?} must be non-empty and use only letters, digits, '_', '.' and '-'"),
        );
    } else if !seen.insert(name.clone()) {
        problems.report(path, format!("{name:?} is used by another target"));
    }
    name
}

/// One target after its name. A DSN that does not parse leaves nothing to
/// check the rest against, so the target is skipped.
fn validate_target(
    t: RawTarget,
    name: String,
    queries: Vec<Query>,
    i: usize,
    env: &Environment,
    libpq_env: LibpqEnv,
    problems: &mut Vec<Problem>,
) -> Option<Target> {
    let path = |key: &str| format!("target[{i}].{key}");
    let mut conn = parse_dsn(&t.dsn, path("dsn"), problems)?;
    if libpq_env == LibpqEnv::Fills
        && let Err(e) = conn.fill_from_env(|name| (env.var)(name))
    {
        problems.report("", format!("environment: {e}"));
    }
    let secrets = Secrets {
        file: t.password_file.as_deref(),
        var: t.password_env.as_deref(),
    };
    apply_password(&mut conn, secrets, env, path, problems);
    conn.fill_defaults(env.os_user());
    if conn.password.is_none() {
        conn.password = conn.pgpass_password(env.home().as_deref());
    }
    let backup = t
        .backup
        .as_ref()
        .and_then(|b| validate_backup(b, &name, &path("backup"), env, problems));
    let pgbouncers = validate_pgbouncers(&t.pgbouncer.0, i, env, problems);
    let logs = t
        .logs
        .as_ref()
        .and_then(|l| validate_logs(l, &name, &path("logs"), env, problems));
    Some(Target {
        name,
        conn,
        databases: t.databases,
        backup,
        pgbouncers,
        logs,
        queries,
    })
}

/// A DSN, or the problem with it at `path`.
fn parse_dsn(dsn: &str, path: String, problems: &mut Vec<Problem>) -> Option<ConnParams> {
    match ConnParams::parse(dsn) {
        Ok(conn) => Some(conn),
        Err(e) => {
            problems.report(path, e.to_string());
            None
        }
    }
}

/// `[target.backup]` of target `target` at `path`.
fn validate_backup(
    b: &RawBackup,
    target: &str,
    path: &str,
    env: &Environment,
    problems: &mut Vec<Problem>,
) -> Option<Backup> {
    if b.pgbackrest_stanza.is_empty() {
        problems.report(
            format!("{path}.pgbackrest_stanza"),
            "required: the pgBackRest stanza to watch",
        );
        return None;
    }
    if b.restore_test != Interval::Off && b.restore_dir.is_none() {
        problems.report(
            format!("{path}.restore_dir"),
            "required with restore_test: the scratch directory to restore into",
        );
    }
    Some(Backup {
        stanza: b.pgbackrest_stanza.clone(),
        command: b.pgbackrest_command.clone(),
        config: b.pgbackrest_config.clone(),
        interval: b.interval,
        timeout: b.timeout,
        full_max_age: b.full_max_age,
        max_age: b.max_age,
        verify: match b.verify {
            Interval::Off => None,
            Interval::Every(d) => Some(d),
        },
        verify_timeout: b.verify_timeout,
        restore_dir: b.restore_dir.clone(),
        restore_port: b.restore_port,
        restore_timeout: b.restore_timeout,
        restore_smoke_query: b.restore_smoke_query.clone(),
        restore_smoke_database: b.restore_smoke_database.clone(),
        restore_test: match b.restore_test {
            Interval::Off => None,
            Interval::Every(d) => Some(d),
        },
        restore_rto_objective: b.restore_rto_objective,
        restore_rpo_objective: b.restore_rpo_objective,
        state_file: b
            .state_file
            .clone()
            .unwrap_or_else(|| default_state_directory(env).join(format!("backup-{target}.json"))),
    })
}

/// `[target.pgbouncer]` (one or several) of target `i`. Unlike a target,
/// a console gets no PG* environment and no password file lookup.
fn validate_pgbouncers(
    raw: &[RawPgbouncer],
    i: usize,
    env: &Environment,
    problems: &mut Vec<Problem>,
) -> Vec<Pgbouncer> {
    let mut pgbouncers = Vec::new();
    let mut names = BTreeSet::new();
    for (j, b) in raw.iter().enumerate() {
        let key = |k: &str| format!("target[{i}].pgbouncer[{j}].{k}");
        // The default depends on the position alone, not on how many
        // there are: adding a console renames none of the others' series.
        let name = b.name.clone().unwrap_or_else(|| match j {
            0 => "pgbouncer".into(),
            _ => format!("pgbouncer{j}"),
        });
        if name.is_empty() {
            problems.report(key("name"), "must be non-empty");
        } else if !names.insert(name.clone()) {
            problems.report(
                key("name"),
                format!("{name:?} is used by another PgBouncer of this target"),
            );
        }
        if b.dsn.is_empty() {
            problems.report(
                key("dsn"),
                "required: the admin console, e.g. postgresql://pgvigil@localhost:6432/pgbouncer",
            );
            continue;
        }
        let Some(mut conn) = parse_dsn(&b.dsn, key("dsn"), problems) else {
            continue;
        };
        let secrets = Secrets {
            file: b.password_file.as_deref(),
            var: b.password_env.as_deref(),
        };
        apply_password(&mut conn, secrets, env, key, problems);
        // The admin console is the "pgbouncer" database, whatever the user.
        if conn.dbname.is_none() {
            conn.dbname = Some("pgbouncer".into());
        }
        conn.fill_defaults(env.os_user());
        pgbouncers.push(Pgbouncer { name, conn });
    }
    pgbouncers
}

/// `[target.logs]` at `path` of the target named `target`, whose name
/// also names the default state file.
fn validate_logs(
    l: &RawLogs,
    target: &str,
    path: &str,
    env: &Environment,
    problems: &mut Vec<Problem>,
) -> Option<Logs> {
    if l.directory.as_os_str().is_empty() {
        problems.report(
            format!("{path}.directory"),
            "required: the server's log directory",
        );
        return None;
    }
    use crate::logs::record::Format;
    let format = match l.format.as_str() {
        "" | "auto" => None,
        "stderr" => Some(Format::Stderr),
        "csvlog" => Some(Format::Csv),
        "jsonlog" => Some(Format::Json),
        other => {
            problems.report(
                format!("{path}.format"),
                format!("{other:?}: expected \"auto\", \"stderr\", \"csvlog\" or \"jsonlog\""),
            );
            return None;
        }
    };
    let state_file = l
        .state_file
        .clone()
        .unwrap_or_else(|| default_state_directory(env).join(format!("logs-{target}.json")));
    Some(Logs {
        directory: l.directory.clone(),
        format,
        state_file,
    })
}

/// Where state files go unless configured: systemd's $STATE_DIRECTORY, else
/// /var/lib/pgvigil.
fn default_state_directory(env: &Environment) -> PathBuf {
    (env.var)("STATE_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/pgvigil"))
}

/// `[collectors]`: each interval resolved (its own, else the default, or
/// off), the statements settings checked.
fn validate_collectors(
    c: &RawCollectors,
    env: &Environment,
    problems: &mut Vec<Problem>,
) -> Collectors {
    for (key, value) in [
        ("default_interval", c.default_interval),
        ("timeout", c.timeout),
    ] {
        if value.is_zero() {
            problems.report(format!("collectors.{key}"), "must be longer than zero");
        }
    }
    let resolve = |i: Option<Interval>| match i {
        None => Some(c.default_interval),
        Some(Interval::Off) => None,
        Some(Interval::Every(d)) => Some(d),
    };
    let interval = |s: &Setting| resolve(s.0.interval);
    let st = &c.statements.0;
    if st.top == 0 {
        problems.report("collectors.statements.top", "must be at least 1");
    }
    let ascending = st.buckets.windows(2).all(|w| w[0] < w[1]);
    if st.buckets.is_empty()
        || !ascending
        || st.buckets.iter().any(|b| !b.is_finite() || *b <= 0.0)
        || st.buckets.len() > 40
    {
        problems.report(
            "collectors.statements.buckets",
            "must be 1 to 40 positive, finite, strictly ascending bounds in seconds, e.g. [0.001, 0.01, 0.1, 1]",
        );
    }
    check_server_timeout("collectors.timeout", c.timeout, problems);
    check_server_timeout("collectors.lock_timeout", c.lock_timeout, problems);
    let am = &c.amcheck.0;
    if am.pages_per_hour == 0 {
        problems.report("collectors.amcheck.pages_per_hour", "must be at least 1");
    }
    if am.full_pass < Duration::from_secs(3600) {
        problems.report("collectors.amcheck.full_pass", "must be at least an hour");
    }
    Collectors {
        timeout: c.timeout,
        lock_timeout: c.lock_timeout,
        server: interval(&c.server),
        connections: interval(&c.connections),
        databases: interval(&c.databases),
        database_size: resolve(c.database_size.0.interval),
        replication: interval(&c.replication),
        slots: interval(&c.slots),
        subscriptions: interval(&c.subscriptions),
        wal: interval(&c.wal),
        checkpoints: interval(&c.checkpoints),
        io: interval(&c.io),
        archiver: interval(&c.archiver),
        filesystem: interval(&c.filesystem),
        tables: resolve(c.tables.0.interval),
        vacuum: interval(&c.vacuum),
        schema: Schema {
            interval: resolve(c.schema.0.interval),
            unused_index_min_bytes: c.schema.0.unused_index_min_bytes,
        },
        vacuum_tables: resolve(c.vacuum_tables.0.interval),
        active_sessions: resolve(c.active_sessions.0.interval),
        amcheck: Amcheck {
            interval: resolve(am.interval),
            pages_per_hour: am.pages_per_hour,
            full_pass: am.full_pass,
            state_directory: am
                .state_directory
                .clone()
                .unwrap_or_else(|| default_state_directory(env)),
        },
        pgbouncer: interval(&c.pgbouncer),
        logs: resolve(c.logs.0.interval),
        statements: Statements {
            interval: resolve(st.interval),
            top: st.top,
            // More histograms than published statements cannot be: the
            // default (20) must not make a smaller `top` an error.
            histograms: st.histograms.min(st.top),
            buckets: st.buckets.clone().into(),
        },
    }
}

/// `[explain]`; `None` when disabled (its values are still checked).
fn validate_explain(e: &RawExplain, problems: &mut Vec<Problem>) -> Option<Explain> {
    if e.statement_timeout.is_zero() {
        problems.report("explain.statement_timeout", "must be longer than zero");
    }
    check_server_timeout("explain.statement_timeout", e.statement_timeout, problems);
    e.enabled.then_some(Explain {
        slow_threshold: e.slow_threshold,
        analyze: e.analyze,
        statement_timeout: e.statement_timeout,
        max_per_hour: e.max_per_hour,
        per_statement_interval: e.per_statement_interval,
        redact: e.redact,
    })
}

/// These timeouts become PostgreSQL settings in milliseconds, which stop
/// at 2^31 - 1 (about 24.8 days); past that every session would fail.
fn check_server_timeout(key: &str, value: Duration, problems: &mut Vec<Problem>) {
    if value > MAX_SERVER_TIMEOUT {
        problems.report(
            key,
            "must be at most 24 days (PostgreSQL's limit for timeouts)",
        );
    }
}

/// `[web]`: every basic-auth hash checked, the TLS certificate and key
/// loaded now so a bad file fails at start-up rather than at the first
/// scrape.
fn validate_web(raw: &RawWeb, problems: &mut Vec<Problem>) -> Web {
    for (user, hash) in &raw.basic_auth_users {
        if user.is_empty() || user.contains(':') {
            problems.report(
                "web.basic_auth_users",
                format!("{user:?}: a user name must be non-empty and without ':'"),
            );
        }
        if let Some(why) = crate::web::auth::check_hash(hash) {
            problems.report(format!("web.basic_auth_users.{user}"), why);
        }
    }
    let cert = &raw.tls_cert_file;
    let key = &raw.tls_key_file;
    let tls = match (cert.as_os_str().is_empty(), key.as_os_str().is_empty()) {
        (true, true) => None,
        (false, true) => {
            problems.report(
                "web.tls_key_file",
                "required with tls_cert_file: set both for HTTPS, or neither",
            );
            None
        }
        (true, false) => {
            problems.report(
                "web.tls_cert_file",
                "required with tls_key_file: set both for HTTPS, or neither",
            );
            None
        }
        (false, false) => match crate::web::tls::server_config(cert, key) {
            Ok(config) => Some(config),
            Err(e) => {
                problems.report(format!("web.{}", e.key()), e.to_string());
                None
            }
        },
    };
    Web {
        basic_auth_users: raw.basic_auth_users.clone(),
        tls,
    }
}

/// `[notify]`: nothing can be wrong with a flag.
fn validate_notify(raw: &RawNotify) -> Notify {
    Notify {
        desktop: raw.desktop,
    }
}
