//! The pgvigil binary under test: `run` as a child process on a free port,
//! `once` and `check-config` as commands, and a tiny HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::metrics::Metrics;
use super::pg::{eventually, free_port};

/// The binary cargo built for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pgvigil"))
}

/// Runs `pgvigil ARGS` to completion with `env` added.
pub fn pgvigil(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_remove("PGVIGIL_DSN")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run pgvigil")
}

/// stdout and stderr of a finished command, as text.
pub fn outputs(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A response: status code and body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one raw HTTP/1.0 request and reads the whole response.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    Client::default().request(addr, method, path, headers).await
}

/// How requests reach an agent: over TLS or not, with credentials or not.
#[derive(Clone, Default)]
pub struct Client {
    /// Speak HTTPS with this configuration (its roots are the trusted CAs).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// An `Authorization` header sent with every request.
    pub authorization: Option<String>,
}

impl Client {
    /// HTTPS to `localhost`, trusting only the CA certificate in `ca_file`.
    pub fn https(ca_file: &Path) -> Client {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file).expect("read CA file") {
            roots.add(cert.expect("CA certificate")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Client {
            tls: Some(Arc::new(config)),
            authorization: None,
        }
    }

    /// The same client, sending HTTP basic credentials.
    pub fn basic_auth(mut self, user: &str, password: &str) -> Client {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.authorization = Some(format!("Basic {token}"));
        self
    }

    /// Sends one raw HTTP/1.0 request and reads the whole response.
    pub async fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let stream = TcpStream::connect(addr).await?;
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(value) = &self.authorization {
            all.push(("Authorization", value));
        }
        match &self.tls {
            None => exchange(stream, addr, method, path, &all).await,
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let stream = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await?;
                exchange(stream, addr, method, path, &all).await
            }
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw).await {
        // A TLS peer that closes without close_notify after a complete
        // HTTP/1.0 response has still said everything.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        other => {
            other?;
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// A `pgvigil run` child process, killed on drop.
pub struct RunningAgent {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// How [`RunningAgent::get`] reaches it.
    pub client: Client,
    log: PathBuf,
    /// The config file it was started with.
    pub config_file: PathBuf,
}

impl RunningAgent {
    /// Starts `pgvigil run --config <file> --listen 127.0.0.1:<free port>`
    /// with `config` written to `dir`, and waits for `/healthz`.
    pub async fn start(dir: &Path, config: &str) -> RunningAgent {
        RunningAgent::start_with_env(dir, config, &[]).await
    }

    /// Like [`RunningAgent::start`] with extra environment variables.
    pub async fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> RunningAgent {
        RunningAgent::start_with_client(dir, config, env, Client::default()).await
    }

    /// Like [`RunningAgent::start_with_env`], reached through `client`
    /// (HTTPS, credentials) by [`RunningAgent::get`] and the start-up wait.
    pub async fn start_with_client(
        dir: &Path,
        config: &str,
        env: &[(&str, &str)],
        client: Client,
    ) -> RunningAgent {
        let file = dir.join(format!("pgvigil-{}.toml", free_port()));
        std::fs::write(&file, config).expect("write config");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = file.with_extension("log");
        let mut cmd = Command::new(binary());
        cmd.args(["run", "--config"])
            .arg(&file)
            .args(["--listen", &addr.to_string()]);
        cmd.env(
            "RUST_LOG",
            std::env::var("PGVIGIL_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env_remove("PGVIGIL_DSN")
        // State files (amcheck's, the backup collector's) in the test's
        // directory, not /var/lib/pgvigil: agents started in the same
        // directory share them, as a restarted daemon would.
        .env("STATE_DIRECTORY", dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("agent log"));
        let child = cmd.spawn().expect("spawn pgvigil run");
        let mut agent = RunningAgent {
            child,
            addr,
            client,
            log,
            config_file: file,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("pgvigil exited with {status}: {}", agent.log());
            }
            if agent
                .client
                .request(addr, "GET", "/healthz", &[])
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return agent;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pgvigil did not answer /healthz: {}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .request(self.addr, "GET", path, &[])
            .await
            .expect("http request")
    }

    /// Sends `method path` through [`RunningAgent::client`].
    pub async fn request(&self, method: &str, path: &str) -> Response {
        self.client
            .request(self.addr, method, path, &[])
            .await
            .expect("http request")
    }

    /// Replaces the config file's contents (the agent notices only when
    /// told to reload).
    pub fn rewrite_config(&self, config: &str) {
        std::fs::write(&self.config_file, config).expect("rewrite config");
    }

    /// Sends SIGHUP: reload the config.
    pub fn hangup(&self) {
        // SAFETY: kill with a valid pid and signal number.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGHUP);
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Scrapes and parses `/metrics`.
    pub async fn metrics(&self) -> Metrics {
        let response = self.get("/metrics").await;
        assert_eq!(response.status, 200, "{}", response.body);
        Metrics::parse(&response.body)
    }

    /// Scrapes until `f` finds what it wants in the metrics.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        f: impl Fn(&Metrics) -> Option<T>,
    ) -> T {
        eventually(timeout, what, || async { f(&self.metrics().await) }).await
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill with a valid pid and signal number.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pgvigil did not stop after SIGTERM: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
