//! The receiving end: a replica's own lag behind its primary, paused
//! replay, and its WAL receiver.
//!
//! What the replica knows, at the moment of the query:
//! - `latest_end_lsn` (pg_stat_wal_receiver): the primary's WAL end as of
//!   its last message (data or keepalive);
//! - `pg_last_wal_receive_lsn()`: what arrived and was flushed;
//! - `pg_last_wal_replay_lsn()`: what was replayed, and
//!   `pg_last_xact_replay_timestamp()`: when the last replayed transaction
//!   committed on the primary.
//!
//! Lag bytes are max(latest_end_lsn, receive LSN) − replay LSN. Reading
//! only receive − replay would show 0 for a replica behind a slow link,
//! which replays as fast as WAL trickles in while it is far behind.
//!
//! Lag seconds are 0 when the replica can show it is caught up: its WAL
//! receiver streams and replay has reached both positions. An idle primary
//! therefore reads 0 however old its last commit. Otherwise they are now −
//! `pg_last_xact_replay_timestamp()`: the standard definition (pgmonitor's
//! too), exact while WAL keeps coming, and an upper bound in two cases:
//! - after a long idle spell, the first new WAL makes it the age of the
//!   last commit before that spell, until replay reaches the new commit
//!   (usually milliseconds; the alert rules' `for:` rides over it);
//! - without a streaming WAL receiver (archive recovery, or the link or
//!   primary down), nothing says how far the primary is, so the replica
//!   cannot show it is caught up: the age is all that is known.
//!
//! What is not known is not published: lag bytes without any upstream
//! position (a replica fed only from an archive has no receive LSN, and
//! the end of the archive is not visible from SQL), lag seconds while
//! behind before any transaction was replayed, the last message age
//! without a WAL receiver (pg_stat_wal_receiver has no row then).
//!
//! A link that goes silent without closing (a black-holed network) keeps
//! the receiver "streaming" with a frozen `latest_end_lsn`, so the lag can
//! read 0 while the primary writes on; the last message age shows it,
//! until `wal_receiver_timeout` ends the connection.

use crate::collect::Row;

use super::{LAST_MESSAGE_AGE, PAUSED, RECEIVER, REPLAY_BYTES, REPLAY_LAG};
use crate::collect::CollectError;
use crate::metric::Family;

/// What the query is called in errors.
pub(super) const WHAT: &str = "replica status";

/// One row whatever the role; the replica columns are NULL on a primary.
/// pg_stat_wal_receiver has at most one row, none without a receiver.
pub(super) const SQL: &str = "
SELECT pg_catalog.pg_is_in_recovery() AS in_recovery,
       coalesce(w.status = 'streaming', false) AS streaming,
       w.pid IS NOT NULL AS has_receiver,
       pg_catalog.pg_wal_lsn_diff(
           GREATEST(w.latest_end_lsn, pg_catalog.pg_last_wal_receive_lsn()),
           pg_catalog.pg_last_wal_replay_lsn())::float8 AS behind_bytes,
       extract(epoch FROM now() - pg_catalog.pg_last_xact_replay_timestamp())::float8 AS replay_age,
       extract(epoch FROM now() - w.last_msg_receipt_time)::float8 AS last_message_age,
       CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused() ELSE false END AS paused
  FROM (SELECT) AS one
  LEFT JOIN pg_catalog.pg_stat_wal_receiver w ON true";

/// A replica's state, as read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Reading {
    /// The WAL receiver runs and streams.
    pub streaming: bool,
    /// A WAL receiver runs, in any state.
    pub has_receiver: bool,
    /// max(latest_end_lsn, receive LSN) − replay LSN; `None` with neither.
    pub behind_bytes: Option<f64>,
    /// now − the last replayed transaction's commit time.
    pub replay_age: Option<f64>,
    /// now − the receiver's last message.
    pub last_message_age: Option<f64>,
    /// Replay is paused.
    pub paused: bool,
}

impl Reading {
    /// Reads the row of [`SQL`].
    pub(super) fn from_row(row: &Row) -> Result<Reading, CollectError> {
        Ok(Reading {
            streaming: row.get("streaming")?,
            has_receiver: row.get("has_receiver")?,
            behind_bytes: row.get("behind_bytes")?,
            replay_age: row.get("replay_age")?,
            last_message_age: row.get("last_message_age")?,
            paused: row.get("paused")?,
        })
    }

    /// Caught up, as far as the replica can show (see the module header).
    fn caught_up(&self) -> bool {
        self.streaming && self.behind_bytes.is_some_and(|b| b <= 0.0)
    }

    /// Lag seconds, if known.
    pub(super) fn replay_lag_seconds(&self) -> Option<f64> {
        if self.caught_up() {
            Some(0.0)
        } else {
            // A commit replayed while the query ran is younger than its
            // now(): no lag, not a negative one.
            self.replay_age.map(|age| age.max(0.0))
        }
    }

    /// The replica-side families.
    pub(super) fn families(&self) -> Vec<Family> {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let mut families = vec![
            Family::single(&PAUSED, flag(self.paused)),
            Family::single(&RECEIVER, flag(self.streaming)),
        ];
        let known = [
            (&REPLAY_LAG, self.replay_lag_seconds()),
            (&REPLAY_BYTES, self.behind_bytes.map(|b| b.max(0.0))),
            (
                &LAST_MESSAGE_AGE,
                self.last_message_age
                    .filter(|_| self.has_receiver)
                    .map(|age| age.max(0.0)),
            ),
        ];
        for (desc, value) in known {
            if let Some(value) = value {
                families.push(Family::single(desc, value));
            }
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Value;

    const STREAMING: Reading = Reading {
        streaming: true,
        has_receiver: true,
        behind_bytes: Some(0.0),
        replay_age: Some(3600.0),
        last_message_age: Some(2.0),
        paused: false,
    };

    fn value(families: &[Family], name: &str) -> Option<f64> {
        let family = families.iter().find(|f| f.desc.exposed_name() == name)?;
        match family.series[0].value {
            Value::Number(v) => Some(v),
            _ => None,
        }
    }

    #[test]
    fn lag_follows_what_the_replica_knows() {
        let no_receiver = Reading {
            streaming: false,
            has_receiver: false,
            last_message_age: None,
            ..STREAMING
        };
        // (case, reading, lag seconds, lag bytes)
        let cases = [
            (
                "idle primary, all replayed",
                STREAMING,
                Some(0.0),
                Some(0.0),
            ),
            (
                "replay behind (paused, slow replay, slow link)",
                Reading {
                    behind_bytes: Some(3e7),
                    replay_age: Some(25.0),
                    ..STREAMING
                },
                Some(25.0),
                Some(3e7),
            ),
            (
                "behind, nothing replayed since start",
                Reading {
                    behind_bytes: Some(3e7),
                    replay_age: None,
                    ..STREAMING
                },
                None,
                Some(3e7),
            ),
            (
                "caught up, nothing replayed since start",
                Reading {
                    replay_age: None,
                    ..STREAMING
                },
                Some(0.0),
                Some(0.0),
            ),
            (
                "replayed past what the receiver reports",
                Reading {
                    behind_bytes: Some(-8192.0),
                    ..STREAMING
                },
                Some(0.0),
                Some(0.0),
            ),
            (
                "receiver down, all received replayed",
                Reading {
                    behind_bytes: Some(0.0),
                    ..no_receiver
                },
                Some(3600.0),
                Some(0.0),
            ),
            (
                "archive only: no receive position",
                Reading {
                    behind_bytes: None,
                    ..no_receiver
                },
                Some(3600.0),
                None,
            ),
            (
                "a commit replayed during the query",
                Reading {
                    behind_bytes: Some(100.0),
                    replay_age: Some(-0.002),
                    ..STREAMING
                },
                Some(0.0),
                Some(100.0),
            ),
        ];
        for (case, reading, seconds, bytes) in cases {
            let families = reading.families();
            assert_eq!(
                value(&families, "pg_replica_replay_lag_seconds"),
                seconds,
                "{case}"
            );
            assert_eq!(
                value(&families, "pg_replica_replay_lag_bytes"),
                bytes,
                "{case}"
            );
        }
    }

    #[test]
    fn receiver_metrics_need_a_receiver() {
        let families = STREAMING.families();
        assert_eq!(
            value(&families, "pg_replica_wal_receiver_connected"),
            Some(1.0)
        );
        assert_eq!(
            value(
                &families,
                "pg_replica_wal_receiver_last_message_age_seconds"
            ),
            Some(2.0)
        );
        let waiting = Reading {
            streaming: false,
            ..STREAMING
        };
        let families = waiting.families();
        assert_eq!(
            value(&families, "pg_replica_wal_receiver_connected"),
            Some(0.0)
        );
        assert_eq!(
            value(
                &families,
                "pg_replica_wal_receiver_last_message_age_seconds"
            ),
            Some(2.0)
        );
        let gone = Reading {
            streaming: false,
            has_receiver: false,
            last_message_age: None,
            ..STREAMING
        };
        let families = gone.families();
        assert_eq!(
            value(
                &families,
                "pg_replica_wal_receiver_last_message_age_seconds"
            ),
            None
        );
        assert_eq!(value(&families, "pg_replica_replay_paused"), Some(0.0));
    }
}
