//! What `pgvigil top` shows, as plain data, and what the person chose
//! (sort, filters, selection). Built from the same JSON document whether
//! the collectors run in-process or a running agent serves it
//! (`/api/v1/overview`, `/api/v1/plans`), so both modes read alike. Pure.

use serde_json::Value as Json;

/// One refresh worth of data.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The target's name and where it is.
    pub server: String,
    /// "PostgreSQL 15.4", or "version unknown".
    pub version: String,
    /// primary, replica, role unknown.
    pub role: String,
    /// Whether the last attempt to reach the server succeeded.
    pub up: Option<bool>,
    /// Seconds since the postmaster started.
    pub uptime_seconds: Option<f64>,
    /// Client connections in use.
    pub connections: Option<f64>,
    /// max_connections minus the reserved slots.
    pub usable: Option<f64>,
    /// Average active sessions by wait event type, largest first.
    pub load: Vec<(String, f64)>,
    /// The window the load stands for, seconds.
    pub load_window_seconds: Option<f64>,
    /// The largest replay lag, seconds.
    pub lag_seconds: Option<f64>,
    /// Clients waiting in PgBouncer pools; absent without a PgBouncer.
    pub pgbouncer_waiting: Option<f64>,
    /// The statements interval, seconds.
    pub interval_seconds: Option<f64>,
    /// Statements of the last interval.
    pub statements: Vec<Statement>,
    /// Why there are no statements (pg_stat_statements missing, waiting
    /// for a second sample).
    pub statements_note: Option<String>,
    /// Active and idle-in-transaction sessions; absent when not read
    /// (against an agent).
    pub sessions: Option<Vec<Session>>,
    /// Recent automatic plans.
    pub plans: Vec<Plan>,
}

/// One statement over the last interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statement {
    /// Database.
    pub datname: String,
    /// Role.
    pub usename: String,
    /// pg_stat_statements query id.
    pub queryid: String,
    /// Normalized text.
    pub query: String,
    /// Calls per second.
    pub calls_per_second: f64,
    /// Calls in the interval.
    pub calls: f64,
    /// Mean, seconds.
    pub mean: f64,
    /// 95th percentile, seconds.
    pub p95: f64,
    /// 99th percentile, seconds.
    pub p99: f64,
    /// Execution time in the interval, seconds.
    pub total: f64,
    /// Share of the instance's execution time, 0–1.
    pub share: Option<f64>,
    /// The wait event it was sampled in most, when sampled active.
    pub wait: Option<String>,
}

/// One session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Session {
    /// Backend pid.
    pub pid: i32,
    /// Database.
    pub datname: String,
    /// Role.
    pub usename: String,
    /// active, idle in transaction, …
    pub state: String,
    /// Seconds since its transaction (else its query) started.
    pub age_seconds: f64,
    /// "Lock:transactionid", or empty when not waiting.
    pub wait: String,
    /// The pids it waits for (only asked for sessions waiting on a lock).
    pub blocked_by: Vec<i32>,
    /// Its statement, normalized.
    pub query: String,
}

/// A recent automatic plan.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The statement's query id.
    pub queryid: String,
    /// How it was obtained (analyze, explain, generic, auto_explain).
    pub mode: String,
    /// When, Unix seconds.
    pub explained_at: f64,
    /// The plan as PostgreSQL printed it.
    pub plan: Json,
}

fn f(v: &Json) -> Option<f64> {
    v.as_f64()
}

fn s(v: &Json) -> String {
    v.as_str().unwrap_or_default().to_string()
}

impl Snapshot {
    /// From `pgvigil once --format json`'s document (`/api/v1/overview`)
    /// and `/api/v1/plans`, for the first target; `now` in Unix seconds.
    pub fn from_json(overview: &Json, plans: &Json, now: f64) -> Snapshot {
        let t = &overview["targets"][0];
        let server = &t["server"];
        let sat = &t["saturation"];
        let pools = sat["pools"].as_array().cloned().unwrap_or_default();
        let load = &t["load"];
        let mut by_type: Vec<(String, f64)> = Vec::new();
        let window = f(&load["window_seconds"]).filter(|w| *w > 0.0);
        for w in load["wait_events"].as_array().into_iter().flatten() {
            let kind = s(&w["wait_event_type"]);
            let sessions = f(&w["seconds"]).unwrap_or(0.0) / window.unwrap_or(1.0);
            match by_type.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, v)) => *v += sessions,
                None => by_type.push((kind, sessions)),
            }
        }
        by_type.sort_by(|a, b| b.1.total_cmp(&a.1));
        let report = &t["statements"];
        let interval = f(&report["interval_seconds"]);
        let instance_total = f(&report["instance"]["total_seconds"]).unwrap_or(0.0);
        let wait_of = |queryid: &str| {
            load["statements"]
                .as_array()?
                .iter()
                .find(|l| l["queryid"] == queryid)
                .and_then(|l| l["wait_events"].get(0))
                .map(|w| {
                    let (kind, event) = (s(&w["wait_event_type"]), s(&w["wait_event"]));
                    if kind == event {
                        event
                    } else {
                        format!("{kind}:{event}")
                    }
                })
        };
        let statements: Vec<Statement> = report["statements"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|st| {
                let calls = f(&st["calls"]).unwrap_or(0.0);
                let total = f(&st["total_seconds"]).unwrap_or(0.0);
                let queryid = s(&st["queryid"]);
                Statement {
                    datname: s(&st["datname"]),
                    usename: s(&st["usename"]),
                    query: st["query"]
                        .as_str()
                        .unwrap_or("(text unavailable)")
                        .to_string(),
                    calls_per_second: interval.map_or(0.0, |i| calls / i.max(1e-9)),
                    calls,
                    mean: f(&st["mean_seconds"]).unwrap_or(0.0),
                    p95: f(&st["quantiles"]["p95"]).unwrap_or(0.0),
                    p99: f(&st["quantiles"]["p99"]).unwrap_or(0.0),
                    total,
                    share: (instance_total > 0.0).then(|| (total / instance_total).min(1.0)),
                    wait: wait_of(&queryid),
                    queryid,
                }
            })
            .collect();
        let statements_error = t["collectors"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == "statements")
            .map(|c| c["error"].as_str().map(str::to_string));
        let statements_note = match (statements_error, report.is_null()) {
            (None, _) => Some("the statements collector is off".to_string()),
            (Some(Some(e)), _) => Some(e),
            (Some(None), true) => {
                Some("waiting for a second sample (percentiles need an interval)".to_string())
            }
            (Some(None), false) => None,
        };
        let plans = plans["plans"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| Plan {
                queryid: s(&p["queryid"]),
                mode: s(&p["mode"]),
                explained_at: f(&p["explained_at"]).unwrap_or(0.0),
                plan: p["plan"].clone(),
            })
            .collect();
        Snapshot {
            server: s(&t["name"]),
            version: server["version"]
                .as_str()
                .unwrap_or("version unknown")
                .to_string(),
            role: server["role"]
                .as_str()
                .unwrap_or("role unknown")
                .to_string(),
            up: t["up"].as_bool(),
            uptime_seconds: f(&server["started_at"]).map(|at| now - at),
            connections: f(&sat["postgres"]["used"]),
            usable: f(&sat["postgres"]["usable"]),
            load: by_type,
            load_window_seconds: window,
            lag_seconds: f(&server["replication_lag_seconds"]),
            pgbouncer_waiting: (!pools.is_empty())
                .then(|| pools.iter().filter_map(|p| f(&p["clients_waiting"])).sum()),
            interval_seconds: interval,
            statements,
            statements_note,
            sessions: None,
            plans,
        }
    }

    /// The newest plan of a statement.
    pub fn plan_of(&self, queryid: &str) -> Option<&Plan> {
        self.plans
            .iter()
            .filter(|p| p.queryid == queryid)
            .max_by(|a, b| a.explained_at.total_cmp(&b.explained_at))
    }
}

/// How statements are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Execution time in the interval.
    Time,
    /// Calls.
    Calls,
    /// 99th percentile.
    P99,
}

impl Sort {
    /// As shown in the title.
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Time => "time",
            Sort::Calls => "calls",
            Sort::P99 => "p99",
        }
    }
}

/// What the person is looking at.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    /// The overview.
    List,
    /// One statement: full text, last plan, findings.
    Detail(Statement),
}

/// The result of an EXPLAIN run on demand.
#[derive(Debug, Clone, PartialEq)]
pub enum Explain {
    /// Running.
    Running(String),
    /// The plan as text with findings, or why there is none.
    Done(String, String),
}

/// Everything the screen depends on.
#[derive(Debug, Clone)]
pub struct App {
    /// Where the data comes from, for the header.
    pub source: String,
    /// The latest data.
    pub snapshot: Snapshot,
    /// The last error fetching data, shown until the next success.
    pub error: Option<String>,
    /// Ordering of statements.
    pub sort: Sort,
    /// Only this database, when set.
    pub database: Option<String>,
    /// Only this role, when set.
    pub role: Option<String>,
    /// Selected statement row.
    pub selected: usize,
    /// The view.
    pub view: View,
    /// The last on-demand EXPLAIN (queryid, result).
    pub explain: Option<Explain>,
    /// Whether EXPLAIN can be run (a DSN, not an agent).
    pub can_explain: bool,
    /// Set when the person asked to quit.
    pub quit: bool,
}

impl App {
    /// An app with no data yet.
    pub fn new(source: String, can_explain: bool) -> App {
        App {
            source,
            snapshot: Snapshot::default(),
            error: None,
            sort: Sort::Time,
            database: None,
            role: None,
            selected: 0,
            view: View::List,
            explain: None,
            can_explain,
            quit: false,
        }
    }

    /// The statements to show: filtered, then sorted.
    pub fn statements(&self) -> Vec<&Statement> {
        let mut out: Vec<&Statement> = self
            .snapshot
            .statements
            .iter()
            .filter(|s| self.database.as_ref().is_none_or(|d| &s.datname == d))
            .filter(|s| self.role.as_ref().is_none_or(|r| &s.usename == r))
            .collect();
        let key = |s: &Statement| match self.sort {
            Sort::Time => s.total,
            Sort::Calls => s.calls,
            Sort::P99 => s.p99,
        };
        out.sort_by(|a, b| key(b).total_cmp(&key(a)));
        out
    }

    /// The sessions to show, filtered like the statements.
    pub fn sessions(&self) -> Option<Vec<&Session>> {
        self.snapshot.sessions.as_ref().map(|all| {
            all.iter()
                .filter(|s| self.database.as_ref().is_none_or(|d| &s.datname == d))
                .filter(|s| self.role.as_ref().is_none_or(|r| &s.usename == r))
                .collect()
        })
    }

    /// The next value of a filter: through every value seen, then none.
    pub fn cycle(current: &Option<String>, seen: Vec<String>) -> Option<String> {
        let mut seen = seen;
        seen.sort();
        seen.dedup();
        match current {
            None => seen.into_iter().next(),
            Some(c) => seen.into_iter().skip_while(|v| v != c).nth(1),
        }
    }

    /// Databases seen in statements and sessions.
    pub fn databases(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .snapshot
            .statements
            .iter()
            .map(|s| s.datname.clone())
            .collect();
        out.extend(
            self.snapshot
                .sessions
                .iter()
                .flatten()
                .map(|s| s.datname.clone()),
        );
        out
    }

    /// Roles seen in statements and sessions.
    pub fn roles(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .snapshot
            .statements
            .iter()
            .map(|s| s.usename.clone())
            .collect();
        out.extend(
            self.snapshot
                .sessions
                .iter()
                .flatten()
                .map(|s| s.usename.clone()),
        );
        out
    }
}

/// Sessions as a blocking forest: each root (blocking others, not blocked
/// itself, or waiting on nothing) followed by those it blocks, indented.
/// Returns (depth, session) in display order. A cycle (a deadlock being
/// resolved) is shown once, from its first member.
pub fn blocking_tree<'a>(sessions: &[&'a Session]) -> Vec<(usize, &'a Session)> {
    let mut out = Vec::new();
    let mut shown = std::collections::HashSet::new();
    let known: std::collections::HashSet<i32> = sessions.iter().map(|s| s.pid).collect();
    fn walk<'a>(
        s: &'a Session,
        depth: usize,
        sessions: &[&'a Session],
        shown: &mut std::collections::HashSet<i32>,
        out: &mut Vec<(usize, &'a Session)>,
    ) {
        if !shown.insert(s.pid) {
            return;
        }
        out.push((depth, s));
        for w in sessions.iter().filter(|w| w.blocked_by.contains(&s.pid)) {
            walk(w, depth + 1, sessions, shown, out);
        }
    }
    // Roots: not blocked by anyone we can show.
    for s in sessions
        .iter()
        .filter(|s| !s.blocked_by.iter().any(|b| known.contains(b)))
    {
        walk(s, 0, sessions, &mut shown, &mut out);
    }
    for s in sessions {
        walk(s, 0, sessions, &mut shown, &mut out);
    }
    out
}

#[cfg(test)]
mod tests;
