//! Graceful stop: SIGTERM or SIGINT cancels one token; everything selects
//! on it, and the caller waits for tasks with an overall deadline. SIGHUP
//! is not a stop: it asks for a config reload ([`hangups`]).

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT.
pub fn on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, stopping"),
            _ = terminate => tracing::info!("SIGTERM received, stopping"),
        }
        token.cancel();
    });
}

/// SIGHUP, as a stream of reload requests. Installed before anything
/// else runs: until then SIGHUP's default action would kill the process.
pub fn hangups() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}
