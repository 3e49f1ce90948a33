//! The demo's built-in workload: everything pgvigil is for, happening on
//! a schedule. Each part is a task on its own connection as the
//! application role `demo_app`, stopped by the token:
//!
//! - a bimodal statement: 90% of calls take 2 ms, 10% take 150 ms, so the
//!   mean hides what p99 shows;
//! - a lookup on a column without an index: a sequential scan over 600,000
//!   rows, slow enough to be explained, with a finding;
//! - a lock queue: a transaction holds a row for 3 s every 10 s while two
//!   others wait for it;
//! - orders inserted steadily, so the replica (10 s behind) lags;
//! - failed logins: a wrong password every 5 s.

use std::time::Duration;

use anyhow::Context as _;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

/// The application role's password (the demo is throwaway and local).
pub const APP_PASSWORD: &str = "demo-app";

/// Creates the schema, the application role and the monitoring role.
pub async fn prepare(admin: &Client, monitor_password: &str) -> anyhow::Result<()> {
    admin
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
             CREATE ROLE pgvigil LOGIN PASSWORD '{monitor_password}' IN ROLE pg_monitor;
             CREATE ROLE demo_app LOGIN PASSWORD '{APP_PASSWORD}';
             CREATE TABLE demo_orders (id bigserial PRIMARY KEY, customer_id int NOT NULL,
                                       total numeric NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO demo_orders (customer_id, total)
                  SELECT (random() * 50000)::int, round((random() * 500)::numeric, 2)
                    FROM generate_series(1, 600000);
             CREATE TABLE demo_accounts (id int PRIMARY KEY, balance numeric NOT NULL);
             INSERT INTO demo_accounts SELECT g, 100 FROM generate_series(1, 10) g;
             GRANT SELECT, INSERT, UPDATE ON demo_orders, demo_accounts TO demo_app;
             GRANT USAGE ON SEQUENCE demo_orders_id_seq TO demo_app;
             ANALYZE;"
        ))
        .await
        .context("preparing the demo schema")
}

/// A connection as the application, over TCP like an application.
async fn app(port: u16, password: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("demo_app")
        .password(password)
        .dbname("postgres")
        .application_name("demo-app")
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Runs a loop body until cancelled, reconnecting after errors.
fn spawn<F, Fut>(
    tasks: &tokio_util::task::TaskTracker,
    token: &CancellationToken,
    port: u16,
    body: F,
) where
    F: Fn(Client) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send,
{
    let token = token.clone();
    tasks.spawn(async move {
        while !token.is_cancelled() {
            let outcome = async {
                let client = app(port, APP_PASSWORD).await?;
                body(client).await
            };
            tokio::select! {
                _ = token.cancelled() => return,
                result = outcome => if let Err(e) = result {
                    tracing::debug!(error = %e, "demo workload: retrying");
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
}

/// Starts every part of the workload against the primary on `port`.
pub fn start(tasks: &tokio_util::task::TaskTracker, token: &CancellationToken, port: u16) {
    for _ in 0..2 {
        spawn(tasks, token, port, |c| async move {
            let stmt = c
                .prepare("SELECT pg_sleep(CASE WHEN random() < 0.1 THEN 0.15 ELSE 0.002 END)")
                .await?;
            loop {
                c.execute(&stmt, &[]).await?;
            }
        });
    }
    spawn(tasks, token, port, |c| async move {
        let stmt = c
            .prepare("SELECT id, total FROM demo_orders WHERE customer_id = $1")
            .await?;
        let mut customer = 1i32;
        loop {
            customer = customer
                .wrapping_mul(7919)
                .wrapping_add(13)
                .rem_euclid(50_000);
            c.query(&stmt, &[&customer]).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    spawn(tasks, token, port, |c| async move {
        let stmt = c
            .prepare("INSERT INTO demo_orders (customer_id, total) VALUES ($1, 9.99)")
            .await?;
        let mut n = 0i32;
        loop {
            n = (n + 1) % 50_000;
            c.execute(&stmt, &[&n]).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // The lock queue: the holder, then two waiters a moment later.
    spawn(tasks, token, port, |c| async move {
        loop {
            c.batch_execute("BEGIN; UPDATE demo_accounts SET balance = balance + 1 WHERE id = 1")
                .await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            c.batch_execute("COMMIT").await?;
            tokio::time::sleep(Duration::from_secs(7)).await;
        }
    });
    for _ in 0..2 {
        spawn(tasks, token, port, |c| async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                c.execute(
                    "UPDATE demo_accounts SET balance = balance - 1 WHERE id = 1",
                    &[],
                )
                .await?;
                tokio::time::sleep(Duration::from_millis(2500)).await;
            }
        });
    }
    let token = token.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            // Expected to fail: that is the point.
            let _ = app(port, "wrong-password").await;
        }
    });
}
