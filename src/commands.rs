//! What each subcommand does, on top of the library.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::Agent;
use crate::cli::{OnceFormat, Source};
use crate::config::{Config, Environment};
use crate::exposition::Format;
use crate::supervisor::Supervisor;
use crate::{http, report, shutdown};

/// How long a stop may take before remaining work is abandoned.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Loads the config from a file, or builds the one-target config from the
/// DSN and libpq's environment.
pub fn load(source: &Source) -> Result<Config, crate::config::ConfigError> {
    let env = Environment::process();
    match &source.config {
        Some(path) => Config::load_with(path, &env, &crate::registry::publishes),
        None => Config::from_dsn(source.dsn.as_deref(), &env),
    }
}

/// `pgvigil run`: the config from `source` (read again on SIGHUP and
/// `POST /-/reload`), served on `listen` or the config's address.
pub async fn run(source: &Source, listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let mut hangups = shutdown::hangups().context("could not listen for SIGHUP")?;
    let mut config = load(source)?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    let listener = http::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, version = crate::cli::VERSION, "pgvigil started");
    let token = CancellationToken::new();
    shutdown::on_signal(token.clone());
    let tracker = TaskTracker::new();
    let mut agent = Agent::new(&config);
    let mut supervisor = Supervisor::start(&mut agent, &config, &tracker, &token);
    let agent = Arc::new(agent);
    let (access, access_rx) = tokio::sync::watch::channel(Arc::new(http::Access::new(&config.web)));
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<http::ReloadRequest>(4);
    let control = http::Control {
        access: access_rx,
        reload: reload_tx,
    };
    let server = tracker.spawn(http::spawn(
        listener,
        agent.clone(),
        control,
        token.clone(),
        SHUTDOWN_DEADLINE,
    )?);
    // The page's charts: a sample of every target into the bounded ring.
    {
        let (agent, token) = (agent.clone(), token.clone());
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(crate::history::SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => agent
                        .history
                        .sample(&agent.store.view(None), crate::snapshot::unix_now()),
                }
            }
        });
    }
    let mut daemon = Daemon {
        source,
        listen: config.listen,
        listen_flag: listen.is_some(),
        supervisor: &mut supervisor,
        access,
        agent: &agent,
    };
    loop {
        let reply = tokio::select! {
            _ = token.cancelled() => break,
            _ = hangups.recv() => {
                tracing::info!("SIGHUP received, reloading the config");
                None
            }
            Some(reply) = reload_rx.recv() => {
                tracing::info!("reload requested over HTTP");
                Some(reply)
            }
        };
        let outcome = daemon.reload().await;
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within {SHUTDOWN_DEADLINE:?}; exiting anyway");
        server.abort();
    }
    tracing::info!("pgvigil stopped");
    Ok(())
}

/// What a reload acts on.
struct Daemon<'a> {
    source: &'a Source,
    /// The address the server is bound to.
    listen: std::net::SocketAddr,
    /// Whether `--listen` chose it (then the config's `listen` is ignored).
    listen_flag: bool,
    supervisor: &'a mut Supervisor,
    access: tokio::sync::watch::Sender<Arc<http::Access>>,
    agent: &'a Agent,
}

impl Daemon<'_> {
    /// Reads the config again and applies it; on any problem the running
    /// config stays and every problem is logged with its key path. The
    /// result is what `POST /-/reload` answers.
    async fn reload(&mut self) -> Result<String, String> {
        let config = match load(self.source) {
            Ok(config) => config,
            Err(e) => {
                self.agent.store.config_loaded(false);
                match &e {
                    crate::config::ConfigError::Invalid { problems, .. } => {
                        for problem in problems {
                            tracing::error!(key = %problem.path, problem = %problem.message, "config reload failed; keeping the running config");
                        }
                    }
                    crate::config::ConfigError::Read { .. } => {
                        tracing::error!(error = %e, "config reload failed; keeping the running config");
                    }
                }
                return Err(e.to_string());
            }
        };
        if !self.listen_flag && config.listen != self.listen {
            tracing::warn!(listen = %self.listen, configured = %config.listen, "listen changed in the config: it takes effect at the next restart");
        }
        let changes = self.supervisor.apply(&config).await;
        let renewed = http::Access::renewed(&config.web, &self.access.borrow());
        self.access.send_replace(Arc::new(renewed));
        self.agent.store.config_loaded(true);
        tracing::info!(
            added = ?changes.added,
            removed = ?changes.removed,
            rebuilt = ?changes.rebuilt,
            kept = ?changes.kept,
            "config reloaded"
        );
        let list = |names: &[String]| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        Ok(format!(
            "config reloaded: added {}; removed {}; rebuilt {}; kept {}",
            list(&changes.added),
            list(&changes.removed),
            list(&changes.rebuilt),
            list(&changes.kept)
        ))
    }
}

/// The gap between `once`'s two samples without `--interval`: enough for
/// the load sampler and the log tailer to see something.
pub const ONCE_DEFAULT_GAP: Duration = Duration::from_secs(2);

/// `pgvigil once`: prints to stdout; errors when a target is unreachable.
/// Without `interval` the statements shown are those since the last
/// statistics reset; with it, those of the interval.
pub async fn once(
    config: Config,
    format: OnceFormat,
    interval: Option<Duration>,
) -> anyhow::Result<()> {
    let mut agent = Agent::new(&config);
    agent
        .collect_once(interval.unwrap_or(ONCE_DEFAULT_GAP))
        .await?;
    let shown = match interval {
        Some(_) => report::Shown::Interval,
        None => report::Shown::SinceReset,
    };
    let out = match format {
        OnceFormat::Prometheus => {
            String::from_utf8_lossy(&agent.metrics(Format::Prometheus)).into_owned()
        }
        OnceFormat::Json => {
            let mut text = serde_json::to_string_pretty(&report::json(&agent.store.view(None)))?;
            text.push('\n');
            text
        }
        OnceFormat::Table => report::table(&agent.store.view(None), shown),
    };
    use std::io::Write as _;
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("could not write to stdout")?;
    Ok(())
}

/// `pgvigil check-config`: true when the file is valid. Problems go to
/// stderr, one per line with its key path.
pub fn check_config(path: &Path) -> bool {
    match Config::load_with(path, &Environment::process(), &crate::registry::publishes) {
        Ok(config) => {
            println!(
                "{}: ok ({} target{})",
                path.display(),
                config.targets.len(),
                if config.targets.len() == 1 { "" } else { "s" }
            );
            true
        }
        Err(e) => {
            eprintln!("{e}");
            false
        }
    }
}

/// `pgvigil explain`: the guard's verdict, then the plan and its findings.
pub async fn explain(
    dsn: Option<&str>,
    analyze: bool,
    json: bool,
    timeout: Duration,
    sql: &str,
) -> anyhow::Result<()> {
    use crate::explain::{findings, guard, render, runner};
    let config = Config::from_dsn(dsn, &Environment::process())?;
    let params = &config.targets[0].conn;
    let session_limits = crate::connection::session::Limits {
        statement_timeout: timeout * 2,
        lock_timeout: Duration::from_secs(1),
        monitoring: false,
    };
    let live = crate::connection::session::open(params, session_limits).await?;
    let cancel = CancellationToken::new();
    shutdown::on_signal(cancel.clone());
    let limits = runner::Limits {
        statement_timeout: timeout,
        lock_timeout: Duration::from_secs(1),
    };
    let server = runner::Server {
        version_num: live.caps.server_version_num,
    };
    let explained = runner::explain(
        &live.client,
        server,
        sql,
        analyze,
        limits,
        &cancel,
        &crate::sql::OwnStatements::default(),
    )
    .await;
    let explained = match explained {
        Err(runner::ExplainError::Cancelled) => {
            // Stop the statement server-side before going.
            let tls = crate::connection::tls::make_connector(params)?;
            let _ = live.client.cancel_token().cancel_query(tls).await;
            anyhow::bail!("cancelled");
        }
        other => other?,
    };
    let found = findings::findings(&explained.plan);
    let out = if json {
        let verdict = match guard::judge(sql) {
            guard::Verdict::Analyze { .. } => "analyze allowed".to_string(),
            guard::Verdict::PlanOnly { reason } => format!("plain EXPLAIN only: {reason}"),
            guard::Verdict::Refuse { reason } => format!("refused: {reason}"),
        };
        let doc = serde_json::json!({
            "mode": explained.mode,
            "note": explained.note,
            "guard": verdict,
            "shape_hash": findings::shape_hash(&explained.plan),
            "findings": found,
            "plan": explained.plan,
        });
        serde_json::to_string_pretty(&doc)? + "\n"
    } else {
        let mut text = format!("{} plan", explained.mode.as_str());
        if let Some(note) = &explained.note {
            text.push_str(&format!(" ({note})"));
        }
        text.push_str(":\n");
        text.push_str(&render::render_tree(&explained.plan, &found));
        text
    };
    use std::io::Write as _;
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("could not write to stdout")?;
    Ok(())
}

/// `pgvigil restore-test`: one line on stdout and exit 0, or an error
/// (one line).
pub async fn restore_test(config: &Path, target: &str) -> anyhow::Result<()> {
    let config = Config::load_with(config, &Environment::process(), &crate::registry::publishes)?;
    let t = config
        .targets
        .iter()
        .find(|t| t.name == target)
        .ok_or_else(|| anyhow::anyhow!("no [[target]] named {target:?} in the config"))?;
    let backup = t
        .backup
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("target {target:?} has no [target.backup]"))?;
    let outcome = crate::collect::backup::restore::run(backup).await?;
    println!("{}", outcome.line(&backup.stanza));
    Ok(())
}
