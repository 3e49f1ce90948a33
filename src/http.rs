//! The HTTP server: `/metrics`, `/probe`, `/healthz`, `/readyz`.
//!
//! Handlers only read the store; nothing here talks to PostgreSQL, so a
//! scrape costs the database nothing however many scrapers there are.
//! Slow or idle clients are bounded by a header read timeout and a cap on
//! concurrent connections, and shutdown drains open requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::exposition::Format;

/// At most this many client connections are served at once; further ones
/// wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 512;
/// A client must send its request headers within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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
        "/api/v1/saturation" => json(&crate::saturation::json(&agent.store.view(None))),
        "/api/v1/plans" => json(&crate::report::plans_json(&agent.store.view(None))),
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

/// Serves until `token` is cancelled, then drains open connections for at
/// most `drain`.
pub async fn serve(
    listener: TcpListener,
    agent: Arc<Agent>,
    token: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let permit = tokio::select! {
            _ = token.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
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
        let agent = agent.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let response = route(&agent, &req);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "http connection ended with an error");
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
