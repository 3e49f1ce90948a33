//! Capability detection: what this server and this role can do.
//!
//! Collectors gate on what is detected here (extension versions, views that
//! exist, privileges), not on a version number alone. Detection runs once
//! per connection; `in_recovery` is refreshed by the server collector on
//! every cycle because a promotion does not drop our connection.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio_postgres::Client;

/// Which server a connection reached: its cluster's system identifier
/// (from `pg_control_system()`, the same on a primary and its physical
/// replicas, different for any other cluster) and when its postmaster
/// started. A change between two connections of a target means a
/// failover behind a VIP or DNS name, or a restart: statistics may have
/// been lost or belong to another server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerIdentity {
    /// `pg_control_system().system_identifier`.
    pub system_identifier: i64,
    /// `pg_postmaster_start_time()`, Unix microseconds.
    pub started_at_micros: i64,
}

/// What was detected about a target when the agent connected.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// `server_version_num`, e.g. 150004.
    pub server_version_num: i32,
    /// `server_version`, e.g. "15.4 (Debian 15.4-1)".
    pub server_version: String,
    /// Whether the server is a standby.
    pub in_recovery: bool,
    /// Whether the agent's role is a superuser (not recommended, but seen).
    pub superuser: bool,
    /// Member of pg_monitor (the recommended grant).
    pub pg_monitor: bool,
    /// Member of pg_read_all_stats (sees other roles' query texts and states).
    pub pg_read_all_stats: bool,
    /// The data directory, when the role may read the setting.
    pub data_directory: Option<PathBuf>,
    /// Whether that directory on this host is this server's, i.e. the
    /// agent runs beside the server (host metrics are then reachable); see
    /// [`super::colocation`].
    pub colocated: bool,
    /// The process id of the backend serving this connection.
    pub backend_pid: i32,
    /// Installed extensions of the connected database, name to version.
    pub extensions: BTreeMap<String, String>,
    /// The database the agent is connected to.
    pub database: String,
    /// The role the agent is connected as.
    pub user: String,
    /// That role's OID (pg_stat_statements keys entries by it).
    pub user_oid: u32,
    /// Which server this is.
    pub identity: ServerIdentity,
}

impl Capabilities {
    /// The server's major version, e.g. 15 or 17.
    pub fn major(&self) -> i32 {
        self.server_version_num / 10000
    }

    /// Detects everything in two round trips.
    pub async fn detect(client: &Client) -> Result<Capabilities, tokio_postgres::Error> {
        // data_directory comes from pg_settings, which hides rows the role may
        // not read; current_setting() would raise an error instead.
        let row = client.query_one(CAPS_SQL, &[]).await?;
        let data_directory: Option<String> = row.try_get("data_directory")?;
        let data_directory = data_directory.map(PathBuf::from);
        let identity = ServerIdentity {
            system_identifier: row.try_get("system_identifier")?,
            started_at_micros: row.try_get("started_at_micros")?,
        };
        let backend_pid: i32 = row.try_get("backend_pid")?;
        let extensions = client
            .query(EXTENSIONS_SQL, &[])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?;
        Ok(Capabilities {
            server_version_num: row.try_get("num")?,
            server_version: row.try_get("version")?,
            in_recovery: row.try_get("in_recovery")?,
            superuser: row.try_get("superuser")?,
            pg_monitor: row.try_get("pg_monitor")?,
            pg_read_all_stats: row.try_get("pg_read_all_stats")?,
            data_directory,
            // Decided by the session, which knows the host (colocation).
            colocated: false,
            backend_pid,
            extensions,
            database: row.try_get("database")?,
            user: row.try_get("username")?,
            user_oid: row.try_get("user_oid")?,
            identity,
        })
    }
}

const CAPS_SQL: &str = "SELECT current_setting('server_version_num')::int4 AS num,
                        current_setting('server_version') AS version,
                        pg_catalog.pg_is_in_recovery() AS in_recovery,
                        r.rolsuper AS superuser,
                        pg_catalog.pg_has_role(current_user, 'pg_monitor', 'USAGE') AS pg_monitor,
                        pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS pg_read_all_stats,
                        (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'data_directory') AS data_directory,
                        current_database() AS database,
                        current_user::text AS username,
                        r.oid AS user_oid,
                        (SELECT system_identifier FROM pg_catalog.pg_control_system()) AS system_identifier,
                        (extract(epoch FROM pg_catalog.pg_postmaster_start_time()) * 1000000)::int8 AS started_at_micros,
                        pg_catalog.pg_backend_pid() AS backend_pid
                   FROM pg_catalog.pg_roles r WHERE r.rolname = current_user";

const EXTENSIONS_SQL: &str = "SELECT extname::text, extversion FROM pg_catalog.pg_extension";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[CAPS_SQL, EXTENSIONS_SQL];
