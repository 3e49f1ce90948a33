//! What the log tailer hands the EXPLAIN worker: the latest slow execution
//! of each statement with its real parameter values (the preferred source
//! of values to explain with), and auto_explain plans to analyse as they
//! are, without running anything.
//!
//! Bounded: at most [`MAX_EXECUTIONS`] statements and [`MAX_PLANS`] plans
//! waiting; the oldest go first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

/// Statements whose latest slow execution is kept.
pub const MAX_EXECUTIONS: usize = 1000;
/// auto_explain plans waiting for the worker.
pub const MAX_PLANS: usize = 100;
/// Longest executable text kept (bigger statements are not worth holding).
const MAX_SQL_BYTES: usize = 100 * 1024;

/// An auto_explain plan from the log.
#[derive(Debug, Clone)]
pub struct LoggedPlan {
    /// The session's database.
    pub datname: String,
    /// The session's role.
    pub usename: String,
    /// The query id, when the log carries it.
    pub query_id: Option<i64>,
    /// The statement as logged (with literals; never published as is).
    pub query: String,
    /// Duration auto_explain measured, seconds.
    pub seconds: f64,
    /// The plan object auto_explain logged.
    pub plan: Value,
}

/// Shared between a target's logs collector and its EXPLAIN worker.
#[derive(Debug, Default)]
pub struct LogFeed {
    executions: Mutex<Executions>,
    plans: Mutex<VecDeque<LoggedPlan>>,
}

#[derive(Debug, Default)]
struct Executions {
    /// (datname, fingerprint) → (executable SQL with values, sequence).
    by_statement: HashMap<(String, String), (String, u64)>,
    next: u64,
}

impl LogFeed {
    /// Remembers a slow execution of the statement with this fingerprint,
    /// as SQL with its values in place.
    pub fn offer_execution(&self, datname: &str, fingerprint: &str, sql: String) {
        if sql.len() > MAX_SQL_BYTES {
            return;
        }
        let mut ex = self.executions.lock().unwrap_or_else(|e| e.into_inner());
        ex.next += 1;
        let seq = ex.next;
        let key = (datname.to_string(), fingerprint.to_string());
        if !ex.by_statement.contains_key(&key) && ex.by_statement.len() >= MAX_EXECUTIONS {
            let oldest = ex
                .by_statement
                .iter()
                .min_by_key(|(_, (_, s))| *s)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                ex.by_statement.remove(&k);
            }
        }
        ex.by_statement.insert(key, (sql, seq));
    }

    /// The latest logged execution of a statement, as executable SQL.
    pub fn execution(&self, datname: &str, fingerprint: &str) -> Option<String> {
        let ex = self.executions.lock().unwrap_or_else(|e| e.into_inner());
        ex.by_statement
            .get(&(datname.to_string(), fingerprint.to_string()))
            .map(|(sql, _)| sql.clone())
    }

    /// Queues an auto_explain plan for the worker.
    pub fn push_plan(&self, plan: LoggedPlan) {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if plans.len() >= MAX_PLANS {
            plans.pop_front();
        }
        plans.push_back(plan);
    }

    /// Takes the queued plans, oldest first.
    pub fn take_plans(&self) -> Vec<LoggedPlan> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        plans.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_execution_and_evicts_the_oldest() {
        let feed = LogFeed::default();
        feed.offer_execution("db", "f1", "SELECT 1".into());
        feed.offer_execution("db", "f1", "SELECT 2".into());
        assert_eq!(feed.execution("db", "f1").as_deref(), Some("SELECT 2"));
        assert_eq!(feed.execution("other", "f1"), None);
        for i in 0..MAX_EXECUTIONS {
            feed.offer_execution("db", &format!("g{i}"), "SELECT 3".into());
        }
        // f1 was the oldest: gone; the newest are all there.
        assert_eq!(feed.execution("db", "f1"), None);
        assert!(
            feed.execution("db", &format!("g{}", MAX_EXECUTIONS - 1))
                .is_some()
        );
        feed.offer_execution("db", "big", "x".repeat(MAX_SQL_BYTES + 1));
        assert_eq!(feed.execution("db", "big"), None);
    }

    #[test]
    fn plans_queue_is_bounded() {
        let feed = LogFeed::default();
        for i in 0..MAX_PLANS + 5 {
            feed.push_plan(LoggedPlan {
                datname: "db".into(),
                usename: "u".into(),
                query_id: Some(i as i64),
                query: "SELECT 1".into(),
                seconds: 0.1,
                plan: Value::Null,
            });
        }
        let plans = feed.take_plans();
        assert_eq!(plans.len(), MAX_PLANS);
        assert_eq!(plans[0].query_id, Some(5));
        assert!(feed.take_plans().is_empty());
    }
}
