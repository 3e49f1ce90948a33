//! Databases: pg_stat_database counters (with I/O times where
//! track_io_timing is on and session statistics on 14+, read through
//! `to_jsonb` so one statement serves every version) and transaction ID
//! age, and on a
//! replica its recovery conflicts (pg_stat_database_conflicts). Sizes are
//! the `database_size` collector's, on a slower schedule.
//!
//! Privilege: pg_monitor.

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, query};
use crate::desc;
use crate::metric::{Desc, Family};

/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static XACT_COMMIT: Desc =
    desc!(Counter "pg_database_xact_commit", ["datname"], "Transactions committed.");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static XACT_ROLLBACK: Desc =
    desc!(Counter "pg_database_xact_rollback", ["datname"], "Transactions rolled back.");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static BLKS_HIT: Desc =
    desc!(Counter "pg_database_blks_hit", ["datname"], "Blocks found in shared buffers.");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static BLKS_READ: Desc =
    desc!(Counter "pg_database_blks_read", ["datname"], "Blocks read from disk or the OS cache.");
static TUP_RETURNED: Desc = desc!(Counter "pg_database_tup_returned", ["datname"], "Rows returned by sequential and bitmap scans.");
static TUP_FETCHED: Desc =
    desc!(Counter "pg_database_tup_fetched", ["datname"], "Rows fetched by index scans.");
static TUP_INSERTED: Desc =
    desc!(Counter "pg_database_tup_inserted", ["datname"], "Rows inserted.");
static TUP_UPDATED: Desc = desc!(Counter "pg_database_tup_updated", ["datname"], "Rows updated.");
static TUP_DELETED: Desc = desc!(Counter "pg_database_tup_deleted", ["datname"], "Rows deleted.");
static TEMP_BYTES: Desc = desc!(Counter "pg_database_temp", unit = Bytes, ["datname"], "Bytes written to temporary files by queries.");
static DEADLOCKS: Desc = desc!(Counter "pg_database_deadlocks", ["datname"], "Deadlocks detected.");
static CHECKSUM_FAILURES: Desc = desc!(Counter "pg_database_checksum_failures", ["datname"], "Data page checksum failures.",
    only_when = "data checksums are on (pg_settings_data_checksums 1): with them off no failure can be detected, and 0 would read as healthy");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static FROZEN_XID_AGE: Desc = desc!(Gauge "pg_database_frozen_xid_age", ["datname"],
    "Transactions since the database's oldest unfrozen XID (age(datfrozenxid)): past autovacuum_freeze_max_age (pg_settings_autovacuum_freeze_max_age, 200 million by default) anti-wraparound autovacuums run on its oldest tables; near 2^31 (2.1 billion) the server stops assigning XIDs.");
/// Public: the outputs look it up by descriptor.
pub static MXID_AGE: Desc = desc!(Gauge "pg_database_mxid_age", ["datname"],
    "Multixacts since the database's oldest unfrozen multixact ID (mxid_age(datminmxid)): past autovacuum_multixact_freeze_max_age anti-wraparound autovacuums run; near 2^31 the server stops assigning multixacts.");

static CONFLICTS: Desc = desc!(Counter "pg_database_conflicts", ["datname", "kind"],
    "Queries cancelled on this replica because they conflicted with WAL replay, by kind (pg_stat_database_conflicts): tablespace, lock, snapshot (vacuum removed rows the query could still see), bufferpin, deadlock, and logicalslot (16+: a logical slot invalidated).",
    only_when = "the server is a replica");

static TEMP_FILES: Desc = desc!(Counter "pg_database_temp_files", ["datname"], "Temporary files created by queries (sorts, hashes that exceeded work_mem).");
static BLK_READ_TIME: Desc = desc!(Counter "pg_database_blk_read_time", unit = Seconds, ["datname"],
    "Time backends spent reading data file blocks.",
    only_when = "track_io_timing is on (with it off nothing is timed, and 0 would read as fast storage)");
static BLK_WRITE_TIME: Desc = desc!(Counter "pg_database_blk_write_time", unit = Seconds, ["datname"],
    "Time backends spent writing data file blocks.",
    only_when = "track_io_timing is on (with it off nothing is timed, and 0 would read as fast storage)");
static SESSION_TIME: Desc = desc!(Counter "pg_database_session_time", unit = Seconds, ["datname"],
    "Time sessions spent connected to the database; rate() is the average number of connected sessions.",
    only_when = "PostgreSQL 14+, for databases that accept connections and are not templates");
static ACTIVE_TIME: Desc = desc!(Counter "pg_database_active_time", unit = Seconds, ["datname"],
    "Time sessions spent executing statements; rate() is the average number of busy sessions.",
    only_when = "PostgreSQL 14+, for databases that accept connections and are not templates");
static IDLE_IN_XACT_TIME: Desc = desc!(Counter "pg_database_idle_in_transaction_time", unit = Seconds, ["datname"],
    "Time sessions spent idle inside a transaction (holding locks and the xmin horizon).",
    only_when = "PostgreSQL 14+, for databases that accept connections and are not templates");
static SESSIONS: Desc = desc!(Counter "pg_database_sessions", ["datname"], "Sessions established.",
    only_when = "PostgreSQL 14+, for databases that accept connections and are not templates");
static SESSIONS_ABANDONED: Desc = desc!(Counter "pg_database_sessions_abandoned", ["datname"],
    "Sessions that ended because the client went away without closing them.",
    only_when = "PostgreSQL 14+, for databases that accept connections and are not templates");
static SESSIONS_FATAL: Desc = desc!(Counter "pg_database_sessions_fatal", ["datname"], "Sessions ended by a fatal error.",
    only_when = "PostgreSQL 14+, for databases that accept connections and are not templates");
static SESSIONS_KILLED: Desc = desc!(Counter "pg_database_sessions_killed", ["datname"],
    "Sessions terminated by an operator (pg_terminate_backend) or a timeout.",
    only_when = "PostgreSQL 14+, for databases that accept connections and are not templates");

/// Counter columns of pg_stat_database and the family each feeds. A NULL
/// column is left out (checksum failures, when checksums are off; I/O
/// times when track_io_timing is off; session statistics before 14 and
/// for templates and databases that refuse connections, whose sessions
/// are none by design: 7 series each saved from the series budget).
const COUNTERS: [(&str, &Desc); 22] = [
    ("xact_commit", &XACT_COMMIT),
    ("xact_rollback", &XACT_ROLLBACK),
    ("blks_hit", &BLKS_HIT),
    ("blks_read", &BLKS_READ),
    ("tup_returned", &TUP_RETURNED),
    ("tup_fetched", &TUP_FETCHED),
    ("tup_inserted", &TUP_INSERTED),
    ("tup_updated", &TUP_UPDATED),
    ("tup_deleted", &TUP_DELETED),
    ("temp_bytes", &TEMP_BYTES),
    ("deadlocks", &DEADLOCKS),
    ("checksum_failures", &CHECKSUM_FAILURES),
    ("temp_files", &TEMP_FILES),
    ("blk_read_time", &BLK_READ_TIME),
    ("blk_write_time", &BLK_WRITE_TIME),
    ("session_time", &SESSION_TIME),
    ("active_time", &ACTIVE_TIME),
    ("idle_in_transaction_time", &IDLE_IN_XACT_TIME),
    ("sessions", &SESSIONS),
    ("sessions_abandoned", &SESSIONS_ABANDONED),
    ("sessions_fatal", &SESSIONS_FATAL),
    ("sessions_killed", &SESSIONS_KILLED),
];

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &XACT_COMMIT,
    &XACT_ROLLBACK,
    &BLKS_HIT,
    &BLKS_READ,
    &TUP_RETURNED,
    &TUP_FETCHED,
    &TUP_INSERTED,
    &TUP_UPDATED,
    &TUP_DELETED,
    &TEMP_BYTES,
    &DEADLOCKS,
    &CHECKSUM_FAILURES,
    &TEMP_FILES,
    &BLK_READ_TIME,
    &BLK_WRITE_TIME,
    &SESSION_TIME,
    &ACTIVE_TIME,
    &IDLE_IN_XACT_TIME,
    &SESSIONS,
    &SESSIONS_ABANDONED,
    &SESSIONS_FATAL,
    &SESSIONS_KILLED,
    &FROZEN_XID_AGE,
    &MXID_AGE,
    &CONFLICTS,
];

/// The `databases` collector. Counters are published as the server
/// reports them: a `pg_stat_reset()` shows as a counter reset.
#[derive(Debug, Default)]
pub struct Databases;

const WHAT: &str = "pg_stat_database";

#[async_trait]
impl Collector for Databases {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        // Every database, templates included: template0's frozen XID age
        // matters for wraparound even though nobody connects to it.
        let rows = query(cx.client, WHAT, DATABASES_SQL, &[]).await?;

        let mut counters: Vec<Family> =
            COUNTERS.iter().map(|(_, desc)| Family::new(desc)).collect();
        let mut age = Family::new(&FROZEN_XID_AGE);
        let mut mxid_age = Family::new(&MXID_AGE);
        for row in &rows {
            let datname: String = row.get("datname")?;
            for ((column, _), family) in COUNTERS.iter().zip(counters.iter_mut()) {
                if let Some(value) = row.get::<Option<f64>>(column)? {
                    family.push(&[&datname], value);
                }
            }
            age.push(&[&datname], row.get("frozen_xid_age")?);
            mxid_age.push(&[&datname], row.get("mxid_age")?);
        }
        counters.push(age);
        counters.push(mxid_age);
        counters.push(conflicts(cx).await?);
        Ok(counters.into())
    }
}

/// Recovery conflicts by kind, on a replica only (a primary has none to
/// report, and leaving them out keeps its series budget).
async fn conflicts(cx: &Context<'_>) -> Result<Family, CollectError> {
    let sql = if cx.caps.server_version_num >= 160000 {
        CONFLICTS_16_SQL
    } else {
        CONFLICTS_SQL
    };
    let rows = query(cx.client, "pg_stat_database_conflicts", sql, &[]).await?;
    let mut family = Family::new(&CONFLICTS);
    for row in &rows {
        let datname: String = row.get("datname")?;
        for (kind, column) in CONFLICT_KINDS {
            if let Some(value) = row.get::<Option<f64>>(column)? {
                family.push(&[datname.as_str(), kind], value);
            }
        }
    }
    Ok(family)
}

/// The kinds of `pg_database_conflicts_total` and their columns; the last
/// is NULL before 16.
const CONFLICT_KINDS: [(&str, &str); 6] = [
    ("tablespace", "confl_tablespace"),
    ("lock", "confl_lock"),
    ("snapshot", "confl_snapshot"),
    ("bufferpin", "confl_bufferpin"),
    ("deadlock", "confl_deadlock"),
    ("logicalslot", "confl_logicalslot"),
];

const CONFLICTS_SQL: &str = "SELECT datname::text AS datname,
                        confl_tablespace::float8 AS confl_tablespace, confl_lock::float8 AS confl_lock,
                        confl_snapshot::float8 AS confl_snapshot, confl_bufferpin::float8 AS confl_bufferpin,
                        confl_deadlock::float8 AS confl_deadlock, NULL::float8 AS confl_logicalslot
                   FROM pg_catalog.pg_stat_database_conflicts
                  WHERE pg_catalog.pg_is_in_recovery() AND datname IS NOT NULL
                  ORDER BY 1";

const CONFLICTS_16_SQL: &str = "SELECT datname::text AS datname,
                        confl_tablespace::float8 AS confl_tablespace, confl_lock::float8 AS confl_lock,
                        confl_snapshot::float8 AS confl_snapshot, confl_bufferpin::float8 AS confl_bufferpin,
                        confl_deadlock::float8 AS confl_deadlock, confl_active_logicalslot::float8 AS confl_logicalslot
                   FROM pg_catalog.pg_stat_database_conflicts
                  WHERE pg_catalog.pg_is_in_recovery() AND datname IS NOT NULL
                  ORDER BY 1";

const DATABASES_SQL: &str = "SELECT d.datname::text AS datname,
                        coalesce(s.xact_commit, 0)::float8 AS xact_commit,
                        coalesce(s.xact_rollback, 0)::float8 AS xact_rollback,
                        coalesce(s.blks_hit, 0)::float8 AS blks_hit,
                        coalesce(s.blks_read, 0)::float8 AS blks_read,
                        coalesce(s.tup_returned, 0)::float8 AS tup_returned,
                        coalesce(s.tup_fetched, 0)::float8 AS tup_fetched,
                        coalesce(s.tup_inserted, 0)::float8 AS tup_inserted,
                        coalesce(s.tup_updated, 0)::float8 AS tup_updated,
                        coalesce(s.tup_deleted, 0)::float8 AS tup_deleted,
                        coalesce(s.temp_bytes, 0)::float8 AS temp_bytes,
                        coalesce(s.deadlocks, 0)::float8 AS deadlocks,
                        CASE WHEN current_setting('data_checksums') = 'on'
                             THEN coalesce(s.checksum_failures, 0)::float8 END AS checksum_failures,
                        coalesce(s.temp_files, 0)::float8 AS temp_files,
                        CASE WHEN current_setting('track_io_timing') = 'on'
                             THEN (coalesce(s.blk_read_time, 0) / 1000)::float8 END AS blk_read_time,
                        CASE WHEN current_setting('track_io_timing') = 'on'
                             THEN (coalesce(s.blk_write_time, 0) / 1000)::float8 END AS blk_write_time,
                        CASE WHEN d.datallowconn AND NOT d.datistemplate THEN (pg_catalog.to_jsonb(s) ->> 'session_time')::float8 / 1000 END AS session_time,
                        CASE WHEN d.datallowconn AND NOT d.datistemplate THEN (pg_catalog.to_jsonb(s) ->> 'active_time')::float8 / 1000 END AS active_time,
                        CASE WHEN d.datallowconn AND NOT d.datistemplate THEN (pg_catalog.to_jsonb(s) ->> 'idle_in_transaction_time')::float8 / 1000 END AS idle_in_transaction_time,
                        CASE WHEN d.datallowconn AND NOT d.datistemplate THEN (pg_catalog.to_jsonb(s) ->> 'sessions')::float8 END AS sessions,
                        CASE WHEN d.datallowconn AND NOT d.datistemplate THEN (pg_catalog.to_jsonb(s) ->> 'sessions_abandoned')::float8 END AS sessions_abandoned,
                        CASE WHEN d.datallowconn AND NOT d.datistemplate THEN (pg_catalog.to_jsonb(s) ->> 'sessions_fatal')::float8 END AS sessions_fatal,
                        CASE WHEN d.datallowconn AND NOT d.datistemplate THEN (pg_catalog.to_jsonb(s) ->> 'sessions_killed')::float8 END AS sessions_killed,
                        pg_catalog.age(d.datfrozenxid)::float8 AS frozen_xid_age,
                        pg_catalog.mxid_age(d.datminmxid)::float8 AS mxid_age
                   FROM pg_catalog.pg_database d
                   LEFT JOIN pg_catalog.pg_stat_database s ON s.datid = d.oid
                  ORDER BY d.datname";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[DATABASES_SQL, CONFLICTS_SQL, CONFLICTS_16_SQL];
