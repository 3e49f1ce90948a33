//! The guarded EXPLAIN itself, on a connection of its own.
//!
//! Every run is inside `BEGIN READ ONLY` … `ROLLBACK` with `SET LOCAL`
//! statement, lock and idle-in-transaction timeouts. ANALYZE runs only for
//! what the [`guard`](super::guard) allows, after the catalogs confirmed
//! that no function, operator, cast or view it uses is a volatile user
//! function or on the deny-list; if it exceeds the timeout, a plain EXPLAIN
//! replaces it. A statement with `$n` placeholders (no real values) gets a
//! generic plan and never ANALYZE. Whatever happens, the transaction is
//! rolled back, and a prepared statement made for a generic plan is
//! deallocated.

use std::time::Duration;

use serde_json::Value;
use tokio_postgres::{Client, SimpleQueryMessage};
use tokio_util::sync::CancellationToken;

use super::guard::{self, Uses, Verdict};
use super::plan::Mode;
use crate::connection::session::describe;
use crate::sql::OwnStatements;

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `SET LOCAL statement_timeout`.
    pub statement_timeout: Duration,
    /// `SET LOCAL lock_timeout`.
    pub lock_timeout: Duration,
}

/// A plan and how it was obtained.
#[derive(Debug, Clone)]
pub struct Explained {
    /// How.
    pub mode: Mode,
    /// The JSON plan as PostgreSQL printed it.
    pub plan: Value,
    /// Why it is not an ANALYZE, when ANALYZE was wanted.
    pub note: Option<String>,
}

/// Why nothing was explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The guard refused the statement.
    #[error("refused: {0}")]
    Refused(String),
    /// The server refused or failed.
    #[error("{0}")]
    Failed(String),
    /// Shutdown began; the running query was cancelled.
    #[error("cancelled on shutdown")]
    Cancelled,
}

fn failed(e: tokio_postgres::Error) -> ExplainError {
    ExplainError::Failed(describe(&e))
}

/// The server's major version decides which EXPLAIN options exist.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    /// `server_version_num`.
    pub version_num: i32,
}

impl Server {
    fn has_generic_plan(self) -> bool {
        self.version_num >= 160000
    }
}

/// Explains `sql` as the guard allows: ANALYZE when `analyze` is wanted and
/// allowed, else a plain or generic EXPLAIN.
pub async fn explain(
    client: &Client,
    server: Server,
    sql: &str,
    analyze: bool,
    limits: Limits,
    cancel: &CancellationToken,
    own: &OwnStatements,
) -> Result<Explained, ExplainError> {
    let verdict = guard::judge(sql);
    if let Verdict::Refuse { reason } = &verdict {
        return Err(ExplainError::Refused(reason.clone()));
    }
    if guard::param_count(sql) > 0 {
        let plan = cancellable(cancel, generic(client, server, sql, limits, own)).await?;
        return Ok(Explained {
            mode: Mode::Generic,
            plan,
            note: None,
        });
    }
    let mut note = None;
    if analyze {
        match &verdict {
            Verdict::Analyze { uses } => {
                match cancellable(cancel, catalog_check(client, uses)).await? {
                    None => match cancellable(cancel, run(client, sql, true, limits, own)).await {
                        Ok(plan) => {
                            return Ok(Explained {
                                mode: Mode::Analyze,
                                plan,
                                note: None,
                            });
                        }
                        Err(ExplainError::Failed(e)) if e.contains("statement timeout") => {
                            note = Some(format!(
                                "ANALYZE exceeded the {}s statement timeout",
                                limits.statement_timeout.as_secs_f64()
                            ))
                        }
                        Err(e) => return Err(e),
                    },
                    Some(reason) => note = Some(reason),
                }
            }
            Verdict::PlanOnly { reason } => note = Some(reason.clone()),
            Verdict::Refuse { .. } => {}
        }
    }
    let plan = cancellable(cancel, run(client, sql, false, limits, own)).await?;
    Ok(Explained {
        mode: Mode::Plain,
        plan,
        note,
    })
}

/// Runs `work`, or gives up when shutdown begins (the caller drops the
/// connection, which makes the server cancel and roll back).
async fn cancellable<T>(
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = Result<T, ExplainError>>,
) -> Result<T, ExplainError> {
    tokio::select! {
        _ = cancel.cancelled() => Err(ExplainError::Cancelled),
        result = work => result,
    }
}

fn millis(d: Duration) -> u128 {
    d.as_millis().max(1)
}

/// `BEGIN READ ONLY` and the limits. Idle-in-transaction is bounded too, in
/// case the agent itself stalls between statements.
fn begin(limits: Limits) -> String {
    format!(
        "BEGIN READ ONLY; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; \
         SET LOCAL idle_in_transaction_session_timeout = {}",
        millis(limits.statement_timeout),
        millis(limits.lock_timeout),
        millis(limits.statement_timeout) * 2
    )
}

/// One EXPLAIN inside a read-only transaction that is always rolled back.
async fn run(
    client: &Client,
    sql: &str,
    analyze: bool,
    limits: Limits,
    own: &OwnStatements,
) -> Result<Value, ExplainError> {
    client.batch_execute(&begin(limits)).await.map_err(failed)?;
    let options = if analyze {
        "ANALYZE, BUFFERS, SETTINGS, WAL, FORMAT JSON"
    } else {
        "SETTINGS, FORMAT JSON"
    };
    let statement = format!("EXPLAIN ({options}) {sql}");
    let result = explain_text(client, own.register(&statement)).await;
    let rollback = client.batch_execute("ROLLBACK").await;
    let plan = result?;
    rollback.map_err(failed)?;
    Ok(plan)
}

/// A generic plan: `EXPLAIN (GENERIC_PLAN)` on 16+, else PREPARE and
/// EXPLAIN EXECUTE with NULLs under `plan_cache_mode = force_generic_plan`.
async fn generic(
    client: &Client,
    server: Server,
    sql: &str,
    limits: Limits,
    own: &OwnStatements,
) -> Result<Value, ExplainError> {
    client.batch_execute(&begin(limits)).await.map_err(failed)?;
    let result = if server.has_generic_plan() {
        let statement = format!("EXPLAIN (GENERIC_PLAN, SETTINGS, FORMAT JSON) {sql}");
        explain_text(client, own.register(&statement)).await
    } else {
        let nulls = vec!["NULL"; guard::param_count(sql)].join(", ");
        let prepared = client
            .batch_execute(own.register(&format!(
                "SET LOCAL plan_cache_mode = force_generic_plan; PREPARE pgvigil_generic AS {sql}"
            )))
            .await
            .map_err(failed);
        let plan = match prepared {
            Ok(()) => {
                let statement =
                    format!("EXPLAIN (SETTINGS, FORMAT JSON) EXECUTE pgvigil_generic({nulls})");
                explain_text(client, own.register(&statement)).await
            }
            Err(e) => Err(e),
        };
        // PREPARE is not transactional: the rollback would not remove it.
        let _ = client.batch_execute("ROLLBACK; DEALLOCATE ALL").await;
        return plan;
    };
    let rollback = client.batch_execute("ROLLBACK").await;
    let plan = result?;
    rollback.map_err(failed)?;
    Ok(plan)
}

/// Runs an EXPLAIN over the simple protocol (the statement is text with its
/// values inline) and parses the one JSON value it prints.
async fn explain_text(client: &Client, statement: &str) -> Result<Value, ExplainError> {
    let messages = client.simple_query(statement).await.map_err(failed)?;
    let text: String = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    serde_json::from_str(&text).map_err(|e| {
        ExplainError::Failed(format!("EXPLAIN printed something that is not JSON: {e}"))
    })
}

const CATALOG_CHECK: &str = "
WITH RECURSIVE rels(oid) AS (
    SELECT c.oid FROM unnest($4::text[]) AS r(name) JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(r.name)
  UNION
    SELECT d.refobjid FROM rels
      JOIN pg_catalog.pg_rewrite w ON w.ev_class = rels.oid
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = w.oid
                                  AND d.refclassid = 'pg_catalog.pg_class'::regclass
), view_functions AS (
    SELECT d.refobjid AS oid FROM rels
      JOIN pg_catalog.pg_rewrite w ON w.ev_class = rels.oid
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = w.oid
                                  AND d.refclassid = 'pg_catalog.pg_proc'::regclass
)
SELECT 'function' AS kind, n.nspname::text AS schema, p.proname::text AS name, p.provolatile = 'v' AS volatile
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname = ANY($1::text[]) OR p.oid IN (SELECT oid FROM view_functions)
UNION ALL
SELECT 'operator', n.nspname::text, o.oprname::text, p.provolatile = 'v'
  FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE o.oprname = ANY($2::text[])
UNION ALL
SELECT 'cast', n.nspname::text, t.typname::text,
       EXISTS (SELECT FROM pg_catalog.pg_cast c JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc
                WHERE c.casttarget = t.oid AND p.provolatile = 'v')
       OR EXISTS (SELECT FROM pg_catalog.pg_proc p WHERE p.oid = t.typinput AND p.provolatile = 'v')
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typname = ANY($3::text[])";

/// Checks in the catalogs that ANALYZE may run what the statement uses;
/// `Some(reason)` when it may not.
async fn catalog_check(client: &Client, uses: &Uses) -> Result<Option<String>, ExplainError> {
    let functions: Vec<&str> = uses.functions.iter().map(|(_, n)| n.as_str()).collect();
    let rows = client
        .query(
            CATALOG_CHECK,
            &[
                &functions,
                &uses.operators,
                &uses.cast_types,
                &uses.relations,
            ],
        )
        .await
        .map_err(failed)?;
    let mut found = std::collections::HashSet::new();
    for row in &rows {
        let kind: &str = row.get("kind");
        let schema: &str = row.get("schema");
        let name: &str = row.get("name");
        let volatile: bool = row.get("volatile");
        if kind == "function" {
            found.insert(name.to_string());
            if guard::denied(name) {
                return Ok(Some(format!(
                    "uses {schema}.{name}(), which is deny-listed"
                )));
            }
            let builtin_harmless =
                schema == "pg_catalog" && guard::HARMLESS_VOLATILE.contains(&name);
            // A qualified call only concerns functions in that schema.
            let relevant = uses
                .functions
                .iter()
                .any(|(s, n)| n == name && s.as_deref().is_none_or(|s| s == schema))
                || !functions.contains(&name);
            if volatile && relevant && !builtin_harmless {
                return Ok(Some(format!(
                    "calls {schema}.{name}(), a VOLATILE function that might write"
                )));
            }
        } else if volatile {
            return Ok(Some(format!("the {kind} {name} runs a VOLATILE function")));
        }
    }
    if let Some(unknown) = functions.iter().find(|f| !found.contains(**f)) {
        return Ok(Some(format!("{unknown}() is not in pg_proc")));
    }
    Ok(None)
}

/// The SQL this module sends on its own behalf: the catalog check and the
/// transaction around every EXPLAIN (its numbers vary; fingerprints ignore
/// them). The EXPLAIN statements themselves, and PREPARE, embed the
/// statement explained and are registered as they are built.
pub const OWN_SQL: &[&str] = &[
    CATALOG_CHECK,
    "BEGIN READ ONLY; SET LOCAL statement_timeout = 1; SET LOCAL lock_timeout = 1; \
     SET LOCAL idle_in_transaction_session_timeout = 1",
    "ROLLBACK; DEALLOCATE ALL",
];
