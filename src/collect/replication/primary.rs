//! The sending end: one set of series per walsender in
//! pg_stat_replication, on a primary or a cascading replica.
//!
//! A walsender is named by `application_name`, `client_addr` and
//! `slot_name`. The first two alone collide as soon as two replicas keep
//! the default `application_name` (`walreceiver`, or `cluster_name`)
//! behind one address (a NAT, a proxy, two clusters on one host); the
//! slot tells them apart. It comes from pg_replication_slots joined on
//! `active_pid = pid`: the slot a walsender has acquired is the one whose
//! `active_pid` is that walsender's pid, and a walsender holds at most
//! one. `slot_name` is empty for a walsender without a slot. Walsenders
//! that still share all three labels (slotless twins) cannot be told
//! apart by any label we publish; their series are folded into one that
//! keeps the worst (largest) value of each, so a lagging twin is never
//! hidden behind a healthy one.
//!
//! The lag times are PostgreSQL's own (`write_lag`, `flush_lag`,
//! `replay_lag`). NULL there means "not measured": a replica that has
//! just connected, is catching up, or sent no feedback yet; also one that
//! caught up while the primary went idle, which PostgreSQL reports as
//! NULL after a while. Only that last case is 0, and it is recognisable:
//! the walsender streams and the replica has replayed everything it was
//! sent. Every other NULL is left out (not measured is not 0).
//!
//! `pg_replication_connected_replicas` counts physical replicas only: a
//! walsender streaming or catching up, not on a logical slot, and
//! reporting a replay position. Logical walsenders use a logical slot;
//! base backups are in state `backup`; WAL archivers (pg_receivewal, the
//! WAL stream of `pg_basebackup -X stream`) stream but never replay, so
//! they report no replay position.

use std::collections::BTreeMap;

use crate::collect::Row;

use super::{CONNECTED, LAG_BYTES, LAG_SECONDS, LSN_LAG_BYTES, REPLICA_INFO};
use crate::collect::CollectError;
use crate::metric::Family;

/// What the query is called in errors.
pub(super) const WHAT: &str = "pg_stat_replication";

/// Positions are measured against what this server has: its current WAL
/// position on a primary, what it received on a cascading replica.
pub(super) const SQL: &str = "
WITH here AS (
    SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_receive_lsn()
                ELSE pg_catalog.pg_current_wal_lsn() END AS lsn
)
SELECT coalesce(r.application_name, '') AS application_name,
       coalesce(host(r.client_addr), 'local') AS client_addr,
       coalesce(s.slot_name::text, '') AS slot_name,
       coalesce(s.slot_type, '') AS slot_type,
       coalesce(r.state, '') AS state, coalesce(r.sync_state, '') AS sync_state,
       coalesce(r.replay_lsn = r.sent_lsn, false) AS replayed_all_sent,
       r.replay_lsn IS NOT NULL AS reports_replay,
       extract(epoch FROM r.write_lag)::float8 AS write_lag,
       extract(epoch FROM r.flush_lag)::float8 AS flush_lag,
       extract(epoch FROM r.replay_lag)::float8 AS replay_lag,
       pg_catalog.pg_wal_lsn_diff(here.lsn, r.sent_lsn)::float8 AS sent_bytes,
       pg_catalog.pg_wal_lsn_diff(here.lsn, r.write_lsn)::float8 AS write_bytes,
       pg_catalog.pg_wal_lsn_diff(here.lsn, r.flush_lsn)::float8 AS flush_bytes,
       pg_catalog.pg_wal_lsn_diff(here.lsn, r.replay_lsn)::float8 AS replay_bytes
  FROM pg_catalog.pg_stat_replication r
  LEFT JOIN pg_catalog.pg_replication_slots s ON s.active_pid = r.pid
 CROSS JOIN here
 ORDER BY 1, 2, 3";

/// The lag kinds, in label order, and their columns.
const LAG_KINDS: [(&str, &str); 3] = [
    ("write", "write_lag"),
    ("flush", "flush_lag"),
    ("replay", "replay_lag"),
];

/// The stages of `pg_replication_lsn_lag_bytes` and their columns.
const STAGES: [(&str, &str); 4] = [
    ("sent", "sent_bytes"),
    ("write", "write_bytes"),
    ("flush", "flush_bytes"),
    ("replay", "replay_bytes"),
];

/// One walsender, as read.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Walsender {
    /// `application_name`, `client_addr`, `slot_name`: its series' name.
    pub key: [String; 3],
    /// `physical`, `logical`, or empty without a slot.
    pub slot_type: String,
    /// `startup`, `catchup`, `streaming`, `backup`, `stopping`.
    pub state: String,
    /// `async`, `sync`, `potential`, `quorum`.
    pub sync_state: String,
    /// Whether its replay position equals its sent position.
    pub replayed_all_sent: bool,
    /// Whether it reports a replay position at all.
    pub reports_replay: bool,
    /// `write_lag`, `flush_lag`, `replay_lag` in seconds, as measured.
    pub lags: [Option<f64>; 3],
    /// Bytes behind at each of [`STAGES`].
    pub behind: [Option<f64>; 4],
}

impl Walsender {
    fn from_row(row: &Row) -> Result<Walsender, CollectError> {
        let mut lags = [None; 3];
        for (lag, (_, column)) in lags.iter_mut().zip(LAG_KINDS) {
            *lag = row.get(column)?;
        }
        let mut behind = [None; 4];
        for (bytes, (_, column)) in behind.iter_mut().zip(STAGES) {
            *bytes = row.get(column)?;
        }
        Ok(Walsender {
            key: [
                row.get("application_name")?,
                row.get("client_addr")?,
                row.get("slot_name")?,
            ],
            slot_type: row.get("slot_type")?,
            state: row.get("state")?,
            sync_state: row.get("sync_state")?,
            replayed_all_sent: row.get("replayed_all_sent")?,
            reports_replay: row.get("reports_replay")?,
            lags,
            behind,
        })
    }

    /// A lag time to publish: the measured one, else 0 only when the
    /// replica is known to have caught up, else nothing.
    fn lag(&self, measured: Option<f64>) -> Option<f64> {
        match measured {
            Some(seconds) => Some(seconds.max(0.0)),
            None if self.state == "streaming" && self.replayed_all_sent => Some(0.0),
            None => None,
        }
    }

    /// Whether it is a physical replica (see the module header).
    fn is_physical_replica(&self) -> bool {
        matches!(self.state.as_str(), "streaming" | "catchup")
            && self.slot_type != "logical"
            && self.reports_replay
    }
}

/// Keeps the largest value per key.
fn keep_max<K: Ord>(map: &mut BTreeMap<K, f64>, key: K, value: Option<f64>) {
    if let Some(value) = value {
        map.entry(key)
            .and_modify(|v| *v = v.max(value))
            .or_insert(value);
    }
}

/// The primary-side families from pg_stat_replication's rows.
pub(super) fn families(rows: &[Row]) -> Result<Vec<Family>, CollectError> {
    let walsenders = rows
        .iter()
        .map(Walsender::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(families_of(&walsenders))
}

/// The families for these walsenders; slotless twins folded (see the
/// module header).
pub(super) fn families_of(walsenders: &[Walsender]) -> Vec<Family> {
    let mut lags = BTreeMap::new();
    let mut replay_bytes = BTreeMap::new();
    let mut stages = BTreeMap::new();
    let mut infos = std::collections::BTreeSet::new();
    for w in walsenders {
        for ((kind, _), measured) in LAG_KINDS.iter().zip(w.lags) {
            keep_max(&mut lags, (w.key.clone(), *kind), w.lag(measured));
        }
        for ((stage, _), bytes) in STAGES.iter().zip(w.behind) {
            let bytes = bytes.map(|b| b.max(0.0));
            keep_max(&mut stages, (w.key.clone(), *stage), bytes);
            if *stage == "replay" {
                keep_max(&mut replay_bytes, w.key.clone(), bytes);
            }
        }
        infos.insert((w.key.clone(), w.state.clone(), w.sync_state.clone()));
    }
    let mut seconds = Family::new(&LAG_SECONDS);
    for ((key, kind), value) in lags {
        seconds.push(&[&key[0], &key[1], &key[2], kind], value);
    }
    let mut bytes = Family::new(&LAG_BYTES);
    for (key, value) in replay_bytes {
        bytes.push(&key, value);
    }
    let mut lsn = Family::new(&LSN_LAG_BYTES);
    for ((key, stage), value) in stages {
        lsn.push(&[&key[0], &key[1], &key[2], stage], value);
    }
    let mut info = Family::new(&REPLICA_INFO);
    for (key, state, sync_state) in infos {
        info.push_info(&[&key[0], &key[1], &key[2], &state, &sync_state]);
    }
    let replicas = walsenders
        .iter()
        .filter(|w| w.is_physical_replica())
        .count();
    let connected = Family::single(&CONNECTED, replicas as f64);
    vec![seconds, bytes, lsn, info, connected]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Value;

    fn walsender(app: &str, slot: &str, state: &str) -> Walsender {
        Walsender {
            key: [app.into(), "10.0.0.2".into(), slot.into()],
            slot_type: if slot.is_empty() { "" } else { "physical" }.into(),
            state: state.into(),
            sync_state: "async".into(),
            replayed_all_sent: false,
            reports_replay: true,
            lags: [None; 3],
            behind: [None; 4],
        }
    }

    /// `(labels, value)` of every series of the family named `name`.
    fn series(families: &[Family], name: &str) -> Vec<(Vec<String>, f64)> {
        families
            .iter()
            .filter(|f| f.desc.exposed_name() == name)
            .flat_map(|f| &f.series)
            .map(|s| {
                let value = match s.value {
                    Value::Number(v) => v,
                    Value::Info => 1.0,
                    Value::Histogram(_) => f64::NAN,
                };
                (s.labels.clone(), value)
            })
            .collect()
    }

    fn replay_lag(families: &[Family]) -> Vec<(Vec<String>, f64)> {
        series(families, "pg_replication_lag_seconds")
            .into_iter()
            .filter(|(labels, _)| labels[3] == "replay")
            .collect()
    }

    #[test]
    fn a_null_lag_is_0_only_for_a_streaming_replica_that_replayed_all_it_was_sent() {
        // (state, replayed all sent, measured replay_lag, published)
        let cases = [
            ("streaming", true, None, Some(0.0)),
            ("streaming", false, None, None),
            ("catchup", true, None, None),
            ("startup", false, None, None),
            ("backup", false, None, None),
            ("streaming", false, Some(2.5), Some(2.5)),
            ("catchup", false, Some(40.0), Some(40.0)),
            // Clock skew between the hosts can make a measurement negative.
            ("streaming", true, Some(-0.001), Some(0.0)),
        ];
        for (state, replayed_all_sent, measured, want) in cases {
            let mut w = walsender("replica1", "", state);
            w.replayed_all_sent = replayed_all_sent;
            w.lags[2] = measured;
            let got = replay_lag(&families_of(&[w])).first().map(|s| s.1);
            assert_eq!(got, want, "{state} {replayed_all_sent} {measured:?}");
        }
    }

    #[test]
    fn twins_are_told_apart_by_their_slots() {
        let mut a = walsender("walreceiver", "standby_a", "streaming");
        a.lags[2] = Some(1.0);
        let mut b = walsender("walreceiver", "standby_b", "streaming");
        b.lags[2] = Some(90.0);
        let families = families_of(&[a, b]);
        let lag = replay_lag(&families);
        assert_eq!(lag.len(), 2);
        assert_eq!(lag[0].0[2], "standby_a");
        assert_eq!(lag[1], (lag[1].0.clone(), 90.0));
        assert_eq!(lag[1].0[2], "standby_b");
        assert_eq!(series(&families, "pg_replication_replica_info").len(), 2);
    }

    #[test]
    fn slotless_twins_fold_into_the_worst_of_them() {
        let mut healthy = walsender("walreceiver", "", "streaming");
        healthy.replayed_all_sent = true;
        healthy.behind[3] = Some(0.0);
        let mut lagging = walsender("walreceiver", "", "streaming");
        lagging.lags = [Some(1.0), Some(2.0), Some(300.0)];
        lagging.behind[3] = Some(5e9);
        for order in [[&healthy, &lagging], [&lagging, &healthy]] {
            let families = families_of(&[order[0].clone(), order[1].clone()]);
            assert_eq!(replay_lag(&families).len(), 1);
            assert_eq!(replay_lag(&families)[0].1, 300.0);
            assert_eq!(series(&families, "pg_replication_lag_bytes")[0].1, 5e9);
            // One info series: same labels, same states.
            assert_eq!(series(&families, "pg_replication_replica_info").len(), 1);
            assert_eq!(
                series(&families, "pg_replication_connected_replicas")[0].1,
                2.0
            );
        }
    }

    #[test]
    fn only_physical_replicas_count_as_connected() {
        let replica = walsender("replica1", "replica1", "streaming");
        let catching_up = walsender("replica2", "", "catchup");
        let mut logical = walsender("subscription", "sub", "streaming");
        logical.slot_type = "logical".into();
        let mut base_backup = walsender("pg_basebackup", "", "backup");
        base_backup.reports_replay = false;
        let mut wal_stream = walsender("pg_receivewal", "", "streaming");
        wal_stream.reports_replay = false;
        let starting = walsender("replica3", "", "startup");
        let families = families_of(&[
            replica,
            catching_up,
            logical,
            base_backup,
            wal_stream,
            starting,
        ]);
        assert_eq!(
            series(&families, "pg_replication_connected_replicas"),
            [(vec![], 2.0)]
        );
        // Every walsender still has its info series.
        assert_eq!(series(&families, "pg_replication_replica_info").len(), 6);
    }
}
