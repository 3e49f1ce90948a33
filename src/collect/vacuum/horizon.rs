//! The xmin horizon's holders: every session, prepared transaction,
//! replication slot and standby that keeps vacuum from removing rows,
//! with its age in transactions.
//!
//! Privilege: pg_monitor (through pg_read_all_stats) to see other roles'
//! `backend_xid`/`backend_xmin` in pg_stat_activity and `backend_xmin` in
//! pg_stat_replication; pg_prepared_xacts and pg_replication_slots are
//! readable by every role.

use tokio_postgres::Client;

use super::report::Holder;
use crate::collect::{CollectError, query};

const WHAT: &str = "xmin horizon holders";

/// Every holder, oldest first.
pub async fn read(client: &Client) -> Result<Vec<Holder>, CollectError> {
    let rows = query(client, WHAT, HOLDERS_SQL, &[]).await?;
    let mut holders = Vec::with_capacity(rows.len());
    for row in &rows {
        holders.push(Holder {
            holder: row.get("holder")?,
            age: row.get("age")?,
            pid: row.get("pid")?,
            datname: row.get("datname")?,
            usename: row.get("usename")?,
            application_name: row.get("application_name")?,
            state: row.get("state")?,
            since: row.get("since")?,
            gid: row.get("gid")?,
            slot_name: row.get("slot_name")?,
            slot_type: row.get("slot_type")?,
            active: row.get("active")?,
        });
    }
    Ok(holders)
}

/// Backends: client sessions and background workers, but not walsenders
/// (their xmin is a standby's, below) nor autovacuum workers (vacuums
/// ignore each other's xmin), nor pgvigil's own sessions (the agent must
/// not report itself). A slot holds both its `xmin` and, for logical
/// slots, its `catalog_xmin` (which holds back the system catalogs only;
/// the report counts the older of the two). `greatest()` skips NULLs.
const HOLDERS_SQL: &str = "SELECT 'backend' AS holder, a.pid, a.datname::text AS datname, a.usename::text AS usename,
                        a.application_name, a.state,
                        extract(epoch FROM coalesce(a.xact_start, a.backend_start))::float8 AS since,
                        greatest(pg_catalog.age(a.backend_xid), pg_catalog.age(a.backend_xmin))::float8 AS age,
                        NULL::text AS gid, NULL::text AS slot_name, NULL::text AS slot_type, NULL::bool AS active
                   FROM pg_catalog.pg_stat_activity a
                  WHERE (a.backend_xid IS NOT NULL OR a.backend_xmin IS NOT NULL)
                    AND a.backend_type NOT IN ('walsender', 'autovacuum worker')
                    AND a.pid <> pg_catalog.pg_backend_pid()
                    AND a.application_name IS DISTINCT FROM 'pgvigil'
                 UNION ALL
                 SELECT 'prepared_transaction', NULL, p.database::text, p.owner::text, NULL, NULL,
                        extract(epoch FROM p.prepared)::float8, pg_catalog.age(p.transaction)::float8,
                        p.gid, NULL, NULL, NULL
                   FROM pg_catalog.pg_prepared_xacts p
                 UNION ALL
                 SELECT 'replication_slot', s.active_pid, s.database::text, NULL, NULL, NULL, NULL,
                        greatest(pg_catalog.age(s.xmin), pg_catalog.age(s.catalog_xmin))::float8,
                        NULL, s.slot_name::text, s.slot_type, s.active
                   FROM pg_catalog.pg_replication_slots s
                  WHERE s.xmin IS NOT NULL OR s.catalog_xmin IS NOT NULL
                 UNION ALL
                 SELECT 'standby', r.pid, NULL, r.usename::text, r.application_name, r.state,
                        extract(epoch FROM r.backend_start)::float8, pg_catalog.age(r.backend_xmin)::float8,
                        NULL, NULL, NULL, NULL
                   FROM pg_catalog.pg_stat_replication r
                  WHERE r.backend_xmin IS NOT NULL
                  ORDER BY age DESC";

/// The SQL this module sends.
pub const OWN_SQL: &[&str] = &[HOLDERS_SQL];
