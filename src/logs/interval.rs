//! What the log reader hands the statements collector at the end of each
//! of its intervals: the slow executions logged in it, by statement and for
//! the instance, with the thresholds that say which of them are complete
//! (every execution at or over the threshold, each once), for exact tail
//! quantiles ([`crate::stats::tail`]).
//!
//! Plain data: the reader ([`super::reader`]) fills it, the statements
//! collector reads it. Not for: judging lines ([`super::duration`]).

use std::collections::{HashMap, HashSet};

use super::StatementKey;
use super::duration::{Threshold, Thresholds};

/// A logged execution that may belong to an exact tail, or a later fetch
/// from a portal, kept until the statements collector takes the interval
/// it belongs to.
#[derive(Debug, Clone)]
pub struct LoggedDuration {
    /// When it was logged, Unix seconds.
    pub at: f64,
    /// How long it took, seconds.
    pub seconds: f64,
    /// Its statement.
    pub key: StatementKey,
    /// At or over the threshold of its database and role.
    pub slow: bool,
    /// At or over the instance-wide threshold ([`Thresholds::instance`]).
    pub in_instance: bool,
    /// An `execute fetch from` line: its statement is read in batches.
    pub fetch: bool,
}

/// One interval's slow executions, complete: for each statement whose
/// [`LoggedInterval::threshold_for`] is known, every execution at or over
/// it that finished in the interval, once.
#[derive(Debug, Default)]
pub struct LoggedInterval {
    /// The threshold, seconds, at or over which `all` holds every
    /// execution of every role (the highest in force); infinite, with
    /// `all` empty, when there is none (a role with logging off or an
    /// unknown threshold, or a statement read in batches).
    pub threshold: f64,
    /// Durations by statement, at or over its own threshold.
    pub by_statement: HashMap<StatementKey, Vec<f64>>,
    /// All executions at or over `threshold` (pgvigil's own excluded).
    pub all: Vec<f64>,
    /// The thresholds in force during the interval.
    thresholds: Thresholds,
    /// Statements seen fetched in batches: their logged times are the
    /// first batch's only.
    batched: HashSet<StatementKey>,
}

impl LoggedInterval {
    /// An interval's logged executions, complete, judged by `thresholds`,
    /// whose instance-wide value is `instance_ms`.
    pub(super) fn gather(
        taken: impl Iterator<Item = LoggedDuration>,
        thresholds: &Thresholds,
        instance_ms: Option<u32>,
    ) -> LoggedInterval {
        let mut interval = LoggedInterval {
            thresholds: thresholds.clone(),
            ..Default::default()
        };
        for d in taken {
            if d.fetch {
                interval.batched.insert(d.key);
                continue;
            }
            if d.in_instance {
                interval.all.push(d.seconds);
            }
            if d.slow {
                interval
                    .by_statement
                    .entry(d.key)
                    .or_default()
                    .push(d.seconds);
            }
        }
        match instance_ms.filter(|_| interval.batched.is_empty()) {
            Some(ms) => interval.threshold = f64::from(ms) / 1000.0,
            None => {
                interval.threshold = f64::INFINITY;
                interval.all.clear();
            }
        }
        interval
    }

    /// The threshold, seconds, at or over which `by_statement` holds every
    /// execution of this statement in the interval: its database's and
    /// role's. `None` when the log does not: logging is off for them, the
    /// threshold is unknown, or the statement was read in batches.
    pub fn threshold_for(&self, key: &StatementKey) -> Option<f64> {
        if self.batched.contains(key) {
            return None;
        }
        self.thresholds
            .of(Some(&key.0), Some(&key.1))
            .and_then(Threshold::seconds)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::logs::duration::Override;
    use crate::logs::duration::Threshold::{Ms, Off};

    /// 20 ms for the server, 50 for alice, logging off for batch and for
    /// the agent's own role.
    pub(in crate::logs) fn thresholds() -> Thresholds {
        let role = |name: &str, value| Override {
            database: None,
            role: Some(name.into()),
            value: Some(value),
        };
        Thresholds {
            server: Some(Ms(20)),
            overrides: vec![
                role("alice", Ms(50)),
                role("batch", Off),
                role("pgvigil", Off),
            ],
            own_role: Some("pgvigil".into()),
        }
    }

    #[test]
    fn an_interval_is_exact_where_the_log_holds_every_slow_execution() {
        let key = |user: &str, fp: &str| ("shop".to_string(), user.to_string(), fp.to_string());
        let at = |user: &str, fp: &str, seconds: f64, slow: bool, fetch: bool| LoggedDuration {
            at: 1.0,
            seconds,
            key: key(user, fp),
            slow,
            in_instance: !fetch && seconds >= 0.05,
            fetch,
        };
        let logged = vec![
            at("app", "a", 0.03, true, false),
            at("app", "a", 0.07, true, false),
            at("alice", "a", 0.06, true, false),
        ];
        let t = thresholds();
        let interval = LoggedInterval::gather(logged.clone().into_iter(), &t, t.instance());
        assert_eq!(interval.by_statement[&key("app", "a")], [0.03, 0.07]);
        assert_eq!(interval.threshold_for(&key("app", "a")), Some(0.02));
        assert_eq!(interval.threshold_for(&key("alice", "a")), Some(0.05));
        assert_eq!(interval.threshold_for(&key("bob", "z")), Some(0.02));
        // Logging off for batch: nothing about it is known.
        assert_eq!(interval.threshold_for(&key("batch", "a")), None);
        // The agent's own role is left out: batch's is not.
        assert_eq!((interval.threshold, interval.all.len()), (f64::INFINITY, 0));
        let mut without_batch = thresholds();
        without_batch
            .overrides
            .retain(|o| o.role.as_deref() != Some("batch"));
        let interval = LoggedInterval::gather(
            logged.clone().into_iter(),
            &without_batch,
            without_batch.instance(),
        );
        assert_eq!(interval.threshold, 0.05);
        assert_eq!(interval.all, [0.07, 0.06]);
        // A statement read in batches: its times are first batches only.
        let mut batched = logged;
        batched.push(at("app", "b", 0.04, false, true));
        let interval = LoggedInterval::gather(
            batched.into_iter(),
            &without_batch,
            without_batch.instance(),
        );
        assert_eq!(interval.threshold_for(&key("app", "b")), None);
        assert_eq!(interval.threshold_for(&key("app", "a")), Some(0.02));
        assert_eq!((interval.threshold, interval.all.len()), (f64::INFINITY, 0));
    }
}
