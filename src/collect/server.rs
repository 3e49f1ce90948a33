//! Server identity and role: version, recovery state, start time, limits,
//! the timeline and the cluster's system identifier (what failover alerts
//! read: a role that changed, a start time that changed, a cluster of
//! targets without a primary).
//!
//! Privilege: none beyond LOGIN; every value here is readable by any role.

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, query_one};
use crate::desc;
use crate::metric::{Desc, Family};

/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static INFO: Desc =
    desc!(Info "pg_server", ["version", "server_version_num"], "The PostgreSQL server's version.");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static IN_RECOVERY: Desc = desc!(Gauge "pg_in_recovery", [], "1 if the server is a standby in recovery, 0 if it is a primary.");
/// Public: the outputs (report, top) look it up by descriptor.
pub static START_TIME: Desc = desc!(Gauge "pg_postmaster_start_time", unit = Seconds, [], "When the server started, as a Unix time.");
/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static MAX_CONNECTIONS: Desc =
    desc!(Gauge "pg_settings_max_connections", [], "The max_connections setting.");

/// Public: the outputs look it up by descriptor.
pub static TIMELINE: Desc = desc!(Gauge "pg_timeline_id", [],
    "The timeline of the server's latest checkpoint (restartpoint on a replica), pg_control_checkpoint().timeline_id: a promotion starts a new timeline, which shows here once the checkpoint that follows it completes (seconds, on a small server).");
static SYSTEM: Desc = desc!(Info "pg_system_identifier", ["system_identifier"],
    "The cluster's system identifier (pg_control_system()): the same on a primary and all its physical replicas, different for any other cluster; the alert rules group targets into clusters by it.");

static DATA_CHECKSUMS: Desc = desc!(Gauge "pg_settings_data_checksums", [],
    "1 if data page checksums are on, 0 if off (then corruption is not detected and pg_database_checksum_failures_total is absent).");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &INFO,
    &IN_RECOVERY,
    &START_TIME,
    &MAX_CONNECTIONS,
    &DATA_CHECKSUMS,
    &TIMELINE,
    &SYSTEM,
];

/// The `server` collector.
#[derive(Debug, Default)]
pub struct Server;

const WHAT: &str = "server settings";

#[async_trait]
impl Collector for Server {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let row = query_one(cx.client, WHAT, SERVER_SQL, &[]).await?;
        let version: String = row.get("version")?;
        let num: String = row.get("num")?;
        let in_recovery: bool = row.get("in_recovery")?;
        // A promotion keeps our connection; keep the detected role current.
        cx.caps.in_recovery = in_recovery;
        // The number alone is what dashboards compare; the text keeps the
        // distribution suffix ("15.4 (Debian 15.4-1)") readable.
        let short = version
            .split_whitespace()
            .next()
            .unwrap_or(&version)
            .to_string();
        let mut info = Family::new(&INFO);
        info.push_info(&[short, num]);
        let mut system = Family::new(&SYSTEM);
        system.push_info(&[row.get::<i64>("system_identifier")?.to_string()]);
        Ok(vec![
            info,
            system,
            Family::single(&TIMELINE, row.get("timeline")?),
            Family::single(&IN_RECOVERY, if in_recovery { 1.0 } else { 0.0 }),
            Family::single(&START_TIME, row.get("start_time")?),
            Family::single(&MAX_CONNECTIONS, row.get("max_connections")?),
            Family::single(&DATA_CHECKSUMS, row.get("data_checksums")?),
        ]
        .into())
    }
}

const SERVER_SQL: &str = "SELECT current_setting('server_version') AS version,
                        current_setting('server_version_num') AS num,
                        pg_catalog.pg_is_in_recovery() AS in_recovery,
                        extract(epoch FROM pg_catalog.pg_postmaster_start_time())::float8 AS start_time,
                        current_setting('max_connections')::float8 AS max_connections,
                        (current_setting('data_checksums') = 'on')::int::float8 AS data_checksums,
                        (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint())::float8 AS timeline,
                        (SELECT system_identifier FROM pg_catalog.pg_control_system()) AS system_identifier";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[SERVER_SQL];
