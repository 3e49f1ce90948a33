//! The HTTP server: `/metrics`, `/probe`, `/healthz`, `/readyz`.
//!
//! Handlers only read the store; nothing here talks to PostgreSQL, so a
//! scrape costs the database nothing however many scrapers there are.
//! Slow or idle clients are bounded by a header read timeout (and a TLS
//! handshake timeout) and a cap on open connections at which the longest
//! idle connection gives way to a newcomer (`web::slots`), so a
//! slow-loris client cannot keep a scrape out. With `[web]` set, every
//! endpoint except `/healthz` and `/readyz` needs basic authentication
//! (probes from the orchestrator carry no credentials, and say nothing
//! but "alive" and "ready"), and the server speaks HTTPS. Shutdown drains
//! open requests.
//!
//! `[web]` can change while the server runs: the users and the TLS
//! certificate are an [`Access`] behind a watch channel, read for each new
//! connection (TLS) and each request (credentials), so a reload takes
//! effect without closing the listener. `POST /-/reload` asks the daemon
//! to reload (the same as SIGHUP) and answers with the outcome.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::exposition::Format;
use crate::web::auth::{self, BasicAuth};
use crate::web::slots::{Slot, Slots};

/// At most this many client connections are open at once; at the cap, the
/// connection idle the longest is closed for a newcomer.
pub const MAX_CONNECTIONS: usize = 512;
/// A client must send its request headers (and finish a TLS handshake)
/// within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Paths answered without credentials: liveness and readiness probes.
pub const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];
/// The path that reloads the config, as Prometheus names it.
pub const RELOAD_PATH: &str = "/-/reload";

/// Who may reach the server and how, from `[web]`: replaced whole when
/// the config is reloaded.
pub struct Access {
    auth: Option<Arc<BasicAuth>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Access {
    /// The access `web` describes.
    pub fn new(web: &crate::config::Web) -> Access {
        Access {
            auth: BasicAuth::new(&web.basic_auth_users).map(Arc::new),
            tls: web.tls.clone().map(tokio_rustls::TlsAcceptor::from),
        }
    }

    /// The access a reloaded `web` describes. When the users and hashes
    /// are unchanged the previous checker is kept, so scrapers are not
    /// made to pay bcrypt again; the certificate is always the one just
    /// read, since the files may have been renewed in place.
    pub fn renewed(web: &crate::config::Web, previous: &Access) -> Access {
        let auth = match &previous.auth {
            Some(auth) if auth.has_users(&web.basic_auth_users) => Some(auth.clone()),
            _ => BasicAuth::new(&web.basic_auth_users).map(Arc::new),
        };
        Access {
            auth,
            tls: web.tls.clone().map(tokio_rustls::TlsAcceptor::from),
        }
    }
}

/// Asks the daemon to reload its config; the answer is a summary of what
/// changed, or every problem of the new config (one per line, with its
/// key path).
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<String, String>>;

/// What the server is handed besides the agent: the current [`Access`],
/// and where reload requests go.
pub struct Control {
    /// The current access, replaced on reload.
    pub access: tokio::sync::watch::Receiver<Arc<Access>>,
    /// Where `POST /-/reload` sends its request.
    pub reload: tokio::sync::mpsc::Sender<ReloadRequest>,
}

type Body = Full<Bytes>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn html(page: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(page)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn metrics_response(body: Bytes, format: Format) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Answers one request from the agent's stored state.
pub fn route(agent: &Agent, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are supported\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    match req.uri().path() {
        "/metrics" => metrics_response(agent.metrics(format), format),
        "/probe" => match query_param(req.uri().query(), "target") {
            None => text(StatusCode::BAD_REQUEST, "missing ?target=NAME\n"),
            Some(name) => {
                let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
                match agent.probe(&name, format) {
                    Some(body) => metrics_response(body, format),
                    None => text(StatusCode::NOT_FOUND, "no such target\n"),
                }
            }
        },
        "/api/v1/statements" => json(&agent.statements_json()),
        "/api/v1/redis" => json(&crate::report::redis::redis_json(&agent.store.view(None))),
        "/api/v1/overview" => json(&crate::report::json(&agent.store.view(None))),
        "/api/v1/saturation" => json(&crate::saturation::json(&agent.store.view(None))),
        "/api/v1/vacuum" => json(&crate::report::vacuum::vacuum_json(&agent.store.view(None))),
        "/api/v1/plans" => json(&crate::report::plans_json(&agent.store.view(None))),
        "/api/v1/schema" => json(&crate::report::schema::schema_json(&agent.store.view(None))),
        "/api/v1/consistency" => json(&crate::report::consistency::consistency_json(
            &agent.store.view(None),
        )),
        "/" => html(crate::page::render(&agent.store.view(None), &agent.history)),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if agent.store.ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: waiting for the first collection of every target\n",
                )
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found; try /metrics\n"),
    }
}

/// Binds the listen address, naming it in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("could not listen on {addr}: {e}")))
}

fn unauthorized() -> Response<Body> {
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        "this endpoint needs HTTP basic authentication\n",
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(auth::CHALLENGE));
    response
}

/// Checks credentials where they are needed, then [`route`]s.
async fn answer(
    agent: &Agent,
    auth: Option<&BasicAuth>,
    reload: &tokio::sync::mpsc::Sender<ReloadRequest>,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Some(auth) = auth
        && !OPEN_PATHS.contains(&req.uri().path())
        && !auth.allows(req.headers().get(AUTHORIZATION)).await
    {
        return unauthorized();
    }
    if req.uri().path() == RELOAD_PATH {
        return reload_config(reload, req.method()).await;
    }
    route(agent, &req)
}

/// `/-/reload`: POST only (a GET from a crawler or a browser's prefetch
/// must not reload); 200 with what changed, or 500 with every problem of
/// the new config, which was not applied.
async fn reload_config(
    reload: &tokio::sync::mpsc::Sender<ReloadRequest>,
    method: &Method,
) -> Response<Body> {
    if method != Method::POST {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST to reload the config\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if reload.send(reply).await.is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "pgvigil is stopping\n");
    }
    match outcome.await {
        Ok(Ok(summary)) => text(StatusCode::OK, summary + "\n"),
        Ok(Err(problems)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the config was not reloaded; the previous one stays in force:\n{problems}\n"),
        ),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "pgvigil is stopping\n"),
    }
}

/// What every connection shares.
#[derive(Clone)]
struct Server {
    agent: Arc<Agent>,
    access: tokio::sync::watch::Receiver<Arc<Access>>,
    reload: tokio::sync::mpsc::Sender<ReloadRequest>,
    builder: hyper::server::conn::http1::Builder,
}

impl Server {
    /// Serves one connection until it ends, or until its slot is taken
    /// for a newcomer.
    async fn connection<S>(self, io: S, slot: Slot, watcher: Watcher)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let slot = Arc::new(slot);
        let in_service = slot.clone();
        let Server {
            agent,
            access,
            reload,
            builder,
        } = self;
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let busy = in_service.busy();
            let agent = agent.clone();
            // The users in force now, even on a connection opened before
            // a reload: a removed user is refused at once.
            let auth = access.borrow().auth.clone();
            let reload = reload.clone();
            async move {
                let response = answer(&agent, auth.as_deref(), &reload, req).await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        });
        let connection = watcher.watch(builder.serve_connection(TokioIo::new(io), service));
        tokio::select! {
            result = connection => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "http connection ended with an error");
                }
            }
            _ = slot.evicted() => {}
        }
    }
}

/// Runs [`serve`] on a thread of its own, with a single-threaded runtime,
/// and completes when it has stopped. Scrapes then compete with
/// collection for the CPU like any two threads, not task by task on one
/// runtime: on the shared runtime, 200 scrapers in a loop cut the
/// collectors' pace by a factor of six (each collector wake-up queued
/// behind hundreds of ready connections); on its own thread they cannot.
pub fn spawn(
    listener: TcpListener,
    agent: Arc<Agent>,
    control: Control,
    token: CancellationToken,
    drain: Duration,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let listener = listener.into_std()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("pgvigil-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, agent, control, token, drain).await,
                    Err(e) => tracing::error!(error = %e, "the HTTP server could not start"),
                }
            });
            let _ = done.send(());
        })?;
    Ok(async move {
        let _ = stopped.await;
    })
}

/// Serves until `token` is cancelled, then drains open connections for at
/// most `drain`. `control` says who may connect and whether over TLS.
pub async fn serve(
    listener: TcpListener,
    agent: Arc<Agent>,
    control: Control,
    token: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let slots = Slots::new(MAX_CONNECTIONS);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let server = Server {
        agent,
        access: control.access,
        reload: control.reload,
        builder,
    };
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = slots.room() => {}
        }
        let (stream, _) = tokio::select! {
            _ = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = slots.admit();
        let server = server.clone();
        let watcher = graceful.watcher();
        // The certificate in force when the client connected.
        let acceptor = server.access.borrow().tls.clone();
        let Some(acceptor) = acceptor else {
            tokio::spawn(server.connection(stream, slot, watcher));
            continue;
        };
        tokio::spawn(async move {
            let handshake = tokio::select! {
                _ = slot.evicted() => return,
                done = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)) => done,
            };
            match handshake {
                Ok(Ok(stream)) => server.connection(stream, slot, watcher).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("http connections still open after the drain deadline; closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_finds_the_key() {
        let cases = [
            (Some("target=main"), Some("main")),
            (Some("a=1&target=b%20c"), Some("b%20c")),
            (Some("targets=x"), None),
            (None, None),
        ];
        for (query, want) in cases {
            assert_eq!(query_param(query, "target"), want);
        }
    }
}
