//! Redis collectors: the cache tier's families, with oliver006/redis_exporter's
//! metric names and labels so existing Redis dashboards keep working.
//!
//! Each collector sends its own command (`INFO`, `INFO replication`,
//! `INFO persistence`, `INFO commandstats` + `INFO latencystats`,
//! `SLOWLOG`, `CLUSTER INFO`) over the target's one connection, so one
//! refused or failing command fails only its collector. Parsing is pure
//! (`parse.rs`) and unit-tested; nothing here knows the schedule or HTTP.
//!
//! - `info.rs`: `redis_info` (INFO: hits, misses, memory, clients, keys).
//! - `replication.rs`: `redis_replication` and `redis_persistence`.
//! - `commands.rs`: `redis_commands` (commandstats, latencystats) and the
//!   report behind `/api/v1/redis`.
//! - `report.rs`: the plain data behind `/api/v1/redis`.
//! - `slowlog.rs`: `redis_slowlog` and `redis_cluster`.

use async_trait::async_trait;

use super::{CollectError, Collected};
use crate::connection::redis::Link;

pub mod commands;
pub(crate) mod info;
pub(crate) mod parse;
pub(crate) mod replication;
pub mod report;
pub mod slowlog;

/// One family of a Redis target, collected on its own schedule over the
/// target's connection.
#[async_trait]
pub trait RedisCollector: Send + Sync {
    /// Reads the server and returns this cycle's families.
    async fn collect(&mut self, link: &mut Link) -> Result<Collected, CollectError>;
}

/// `INFO <section>` (or plain `INFO` for the default sections).
pub(crate) async fn info(
    link: &mut Link,
    what: &'static str,
    section: Option<&str>,
) -> Result<parse::Info, CollectError> {
    let mut cmd = redis::cmd("INFO");
    if let Some(section) = section {
        cmd.arg(section);
    }
    let text: String = link.query(what, &cmd).await?;
    Ok(parse::Info::parse(&text))
}
