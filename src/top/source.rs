//! Where `pgvigil top` gets its data: its own collectors against a DSN or
//! config (the daemon's supervisor, scheduled, without HTTP), or a running
//! agent's JSON APIs. Both hand over the same JSON documents, read by
//! [`Snapshot::from_json`]. Against a server, top also reads the sessions
//! itself (one query per refresh) and runs the guarded EXPLAIN on demand.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::state::{Session, Snapshot};
use crate::agent::Agent;
use crate::config::Config;
use crate::connection::dsn::ConnParams;
use crate::connection::session::{self, Limits, Live};
use crate::snapshot::unix_now;
use crate::supervisor::Supervisor;

/// Active and idle-in-transaction client sessions, oldest first, with
/// `pg_blocking_pids` asked only for those waiting on a lock (it takes
/// the lock manager's partition locks). pgvigil's own are left out.
pub const SESSIONS_SQL: &str =
    "SELECT pid, coalesce(datname, '') AS datname, coalesce(usename, '') AS usename, state,
        extract(epoch FROM clock_timestamp() - coalesce(xact_start, query_start))::float8 AS age,
        coalesce(wait_event_type || ':' || wait_event, '') AS wait,
        CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) END AS blocked_by,
        left(query, 2000) AS query
   FROM pg_stat_activity
  WHERE state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
    AND backend_type = 'client backend' AND pid <> pg_backend_pid()
    AND application_name <> 'pgvigil'
  ORDER BY age DESC NULLS LAST
  LIMIT 100";

/// The data source.
pub enum Source {
    /// Collectors run here.
    Direct(Box<Direct>),
    /// A running agent.
    Remote(Remote),
}

/// Collectors run in this process, and a session of top's own.
pub struct Direct {
    agent: Arc<Agent>,
    _supervisor: Supervisor,
    tracker: TaskTracker,
    token: CancellationToken,
    params: ConnParams,
    live: Option<Live>,
}

/// A running agent at `base` (`http://host:port`).
pub struct Remote {
    host: String,
    authority: String,
    path_prefix: String,
    auth: Option<String>,
}

/// The collectors top needs, at the refresh interval; the slow,
/// per-database ones (tables, schema, sizes, vacuum) are off.
pub fn tune(config: &mut Config, refresh: Duration) {
    let c = &mut config.collectors;
    for interval in [
        &mut c.server,
        &mut c.connections,
        &mut c.replication,
        &mut c.pgbouncer,
        &mut c.statements.interval,
    ] {
        *interval = Some(refresh);
    }
    c.active_sessions = Some(Duration::from_secs(1));
    for off in [
        &mut c.databases,
        &mut c.database_size,
        &mut c.slots,
        &mut c.wal,
        &mut c.checkpoints,
        &mut c.archiver,
        &mut c.filesystem,
        &mut c.tables,
        &mut c.vacuum,
        &mut c.schema.interval,
        &mut c.vacuum_tables,
    ] {
        *off = None;
    }
}

impl Source {
    /// Starts the collectors of the config's first target.
    pub async fn direct(mut config: Config, refresh: Duration) -> anyhow::Result<Source> {
        config.targets.truncate(1);
        let params = config
            .targets
            .first()
            .context("the config has no target")?
            .conn
            .clone();
        tune(&mut config, refresh);
        // Reach the server before taking the terminal: a wrong DSN is one
        // line on stderr, like `once`.
        let live = open(&params).await?;
        let mut agent = Agent::new(&config);
        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        let supervisor = Supervisor::start(&mut agent, &config, &tracker, &token);
        Ok(Source::Direct(Box::new(Direct {
            agent: Arc::new(agent),
            _supervisor: supervisor,
            tracker,
            token,
            params,
            live: Some(live),
        })))
    }

    /// A running agent; checks it answers before the terminal is taken.
    pub async fn remote(url: &str) -> anyhow::Result<Source> {
        let remote = Remote::parse(url)?;
        remote.get("/api/v1/overview").await?;
        Ok(Source::Remote(remote))
    }

    /// Who the data is about, for the header.
    pub fn describe(&self) -> String {
        match self {
            Source::Direct(d) => d.params.endpoint(),
            Source::Remote(r) => format!("agent {}", r.authority),
        }
    }

    /// Whether EXPLAIN can run (top has its own session).
    pub fn can_explain(&self) -> bool {
        matches!(self, Source::Direct(_))
    }

    /// The current data.
    pub async fn fetch(&mut self) -> anyhow::Result<Snapshot> {
        match self {
            Source::Direct(d) => {
                let views = d.agent.store.view(None);
                let overview = crate::report::json(&views);
                let plans = crate::report::plans_json(&views);
                let mut snapshot = Snapshot::from_json(&overview, &plans, unix_now());
                snapshot.sessions = Some(d.sessions().await?);
                Ok(snapshot)
            }
            Source::Remote(r) => {
                let overview = r.get("/api/v1/overview").await?;
                let plans = r.get("/api/v1/plans").await?;
                Ok(Snapshot::from_json(&overview, &plans, unix_now()))
            }
        }
    }

    /// The guarded EXPLAIN (never ANALYZE: a normalized text has no
    /// values) of `sql`, rendered with its findings.
    pub async fn explain(&mut self, sql: &str) -> String {
        let Source::Direct(d) = self else {
            return "EXPLAIN on demand needs a DSN (pgvigil top --dsn …), not --agent".into();
        };
        match d.explain(sql).await {
            Ok(text) => text,
            Err(e) => format!("no plan: {e:#}"),
        }
    }

    /// Stops the collectors.
    pub async fn stop(self) {
        if let Source::Direct(d) = self {
            d.token.cancel();
            d.tracker.close();
            let _ = tokio::time::timeout(Duration::from_secs(5), d.tracker.wait()).await;
        }
    }
}

async fn open(params: &ConnParams) -> anyhow::Result<Live> {
    let limits = Limits {
        statement_timeout: Duration::from_secs(10),
        lock_timeout: Duration::from_secs(1),
        monitoring: false,
    };
    Ok(session::open(params, limits).await?)
}

impl Direct {
    async fn live(&mut self) -> anyhow::Result<&Live> {
        if self.live.as_ref().is_none_or(|l| l.client.is_closed()) {
            self.live = Some(open(&self.params).await?);
        }
        Ok(self.live.as_ref().expect("just opened"))
    }

    async fn sessions(&mut self) -> anyhow::Result<Vec<Session>> {
        // Top's own query is pgvigil's, not the workload's.
        let sql = self.agent.own_statements().register(SESSIONS_SQL);
        let live = self.live().await?;
        let rows = live
            .client
            .query(sql, &[])
            .await
            .context("reading pg_stat_activity")?;
        Ok(rows
            .iter()
            .map(|r| {
                let raw: Option<String> = r.get("query");
                Session {
                    pid: r.get("pid"),
                    datname: r.get("datname"),
                    usename: r.get("usename"),
                    state: r.get::<_, Option<String>>("state").unwrap_or_default(),
                    age_seconds: r.get::<_, Option<f64>>("age").unwrap_or(0.0),
                    wait: r.get("wait"),
                    blocked_by: r
                        .get::<_, Option<Vec<i32>>>("blocked_by")
                        .unwrap_or_default(),
                    // Literals stay out of the screen as out of everything else.
                    query: raw
                        .as_deref()
                        .and_then(crate::sql::normalize)
                        .unwrap_or_else(|| "(text not shown: it does not parse)".into()),
                }
            })
            .collect())
    }

    async fn explain(&mut self, sql: &str) -> anyhow::Result<String> {
        use crate::explain::{findings, render, runner};
        let own = self.agent.own_statements().clone();
        let live = self.live().await?;
        let server = runner::Server {
            version_num: live.caps.server_version_num,
        };
        let limits = runner::Limits {
            statement_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(1),
        };
        let cancel = CancellationToken::new();
        let explained =
            runner::explain(&live.client, server, sql, false, limits, &cancel, &own).await?;
        let found = findings::findings(&explained.plan);
        let mut text = format!("{} plan", explained.mode.as_str());
        if let Some(note) = &explained.note {
            text.push_str(&format!(" ({note})"));
        }
        text.push_str(":\n");
        text.push_str(&render::render_tree(&explained.plan, &found));
        Ok(text)
    }
}

impl Remote {
    /// `http://[user:password@]host:port[/prefix]`; HTTPS is not spoken.
    pub fn parse(url: &str) -> anyhow::Result<Remote> {
        let rest = url.strip_prefix("http://").with_context(|| {
            format!("--agent takes an http:// URL (HTTPS is not supported by top), not {url:?}")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (auth, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                use base64::Engine as _;
                let decoded = percent_encoding::percent_decode_str(userinfo).decode_utf8_lossy();
                (
                    Some(base64::engine::general_purpose::STANDARD.encode(decoded.as_bytes())),
                    host,
                )
            }
            None => (None, authority),
        };
        anyhow::ensure!(!host.is_empty(), "--agent {url:?} has no host");
        let host = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        Ok(Remote {
            authority: host.clone(),
            host,
            path_prefix: path.to_string(),
            auth,
        })
    }

    /// GET a JSON document (HTTP/1.0, one connection per request).
    async fn get(&self, path: &str) -> anyhow::Result<Json> {
        let fetch = async {
            let mut stream = tokio::net::TcpStream::connect(&self.host)
                .await
                .with_context(|| format!("could not reach the agent at {}", self.authority))?;
            let mut request = format!(
                "GET {}{path} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\n",
                self.path_prefix, self.authority
            );
            if let Some(auth) = &self.auth {
                request.push_str(&format!("Authorization: Basic {auth}\r\n"));
            }
            request.push_str("\r\n");
            stream.write_all(request.as_bytes()).await?;
            let mut body = Vec::new();
            stream.read_to_end(&mut body).await?;
            anyhow::Ok(body)
        };
        let raw = tokio::time::timeout(Duration::from_secs(10), fetch)
            .await
            .with_context(|| format!("the agent at {} did not answer", self.authority))??;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("the agent's answer has no body")?;
        let status = head.split_whitespace().nth(1).unwrap_or("");
        anyhow::ensure!(
            status == "200",
            "the agent at {} answered {path} with {}",
            self.authority,
            head.lines().next().unwrap_or("")
        );
        serde_json::from_str(body).with_context(|| format!("the agent's {path} is not JSON"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_urls() {
        let r = Remote::parse("http://127.0.0.1:9932").unwrap();
        assert_eq!(
            (r.host.as_str(), r.path_prefix.as_str()),
            ("127.0.0.1:9932", "")
        );
        assert!(r.auth.is_none());
        let r = Remote::parse("http://me:s%40cret@db.local/pgvigil/").unwrap();
        assert_eq!(r.host, "db.local:80");
        assert_eq!(r.path_prefix, "/pgvigil");
        // base64("me:s@cret")
        assert_eq!(r.auth.as_deref(), Some("bWU6c0BjcmV0"));
        assert!(Remote::parse("https://x:1").is_err());
    }
}
