//! Database sizes, on their own slower schedule (default 5 minutes):
//! `pg_database_size()` stats every file of every database, which costs
//! the server more than everything else in a cycle on a database with
//! thousands of relations, while disk usage changes slowly.
//!
//! Privilege: pg_monitor. pg_database_size needs CONNECT on the database or
//! pg_read_all_stats; databases the role may not size get no size series.

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, Context, query};
use crate::desc;
use crate::metric::{Desc, Family};

/// Public: the outputs (report, page, saturation) look it up by descriptor.
pub static SIZE: Desc = desc!(Gauge "pg_database_size", unit = Bytes, ["datname"], "Disk space used by the database.",
    only_when = "the role may size the database (CONNECT or pg_read_all_stats)");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[&SIZE];

/// The `database_size` collector.
#[derive(Debug, Default)]
pub struct DatabaseSize;

const WHAT: &str = "pg_database_size";

#[async_trait]
impl Collector for DatabaseSize {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let rows = query(cx.client, WHAT, SIZE_SQL, &[]).await?;
        let mut size = Family::new(&SIZE);
        for row in &rows {
            let datname: String = row.get("datname")?;
            size.push(&[&datname], row.get("size")?);
        }
        Ok(vec![size].into())
    }
}

const SIZE_SQL: &str =
    "SELECT d.datname::text AS datname, pg_catalog.pg_database_size(d.oid)::float8 AS size
                          FROM pg_catalog.pg_database d
                         WHERE pg_catalog.has_database_privilege(d.oid, 'CONNECT')
                            OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')
                         ORDER BY d.datname";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[SIZE_SQL];
