//! Connection saturation across layers, read from the store: each
//! PgBouncer pool (clients waiting, server connections used against
//! `pool_size`) and PostgreSQL itself (client connections against
//! `max_connections` minus the reserved slots).
//!
//! Shown by `pgvigil once --format table`, in `once --format json` and at
//! `/api/v1/saturation`. Nothing here queries a server: it is arithmetic
//! on the families the collectors already published.

use serde::Serialize;

use crate::collect::{connections, pgbouncer, server};
use crate::metric::Desc;
use crate::snapshot::TargetView;

/// Used connections at or over this share of the usable ones are pressure.
pub const PRESSURE_CONNECTIONS: f64 = 0.9;
/// Replication lag over this many seconds is pressure.
pub const PRESSURE_LAG_SECONDS: f64 = 30.0;

/// Why the server is under pressure, if it is (the EXPLAIN worker and the
/// amcheck collector leave it alone then): connections near the
/// usable limit, or replication behind (this replica's replay lag, or on a
/// primary the worst replica's).
pub fn pressure(view: &crate::snapshot::TargetView) -> Option<String> {
    if let Some(pg) = Saturation::of(view).postgres
        && let (Some(usable), Some(ratio)) = (pg.usable, pg.ratio)
        && ratio >= PRESSURE_CONNECTIONS
    {
        return Some(format!("{} of {usable} usable connections in use", pg.used));
    }
    let replica = view.value(&crate::collect::replication::REPLAY_LAG, &[]);
    let replicas = view
        .family(&crate::collect::replication::LAG_SECONDS)
        .and_then(|f| {
            f.series
                .iter()
                .filter(|s| s.labels.last().is_some_and(|k| k == "replay"))
                .filter_map(|s| s.value.number())
                .reduce(f64::max)
        });
    replica
        .into_iter()
        .chain(replicas)
        .reduce(f64::max)
        .filter(|l| *l > PRESSURE_LAG_SECONDS)
        .map(|l| format!("replication is {l:.0}s behind"))
}

/// PostgreSQL's own connection slots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Postgres {
    /// Client connections now (`pg_connections` summed).
    pub used: f64,
    /// `max_connections`.
    pub max_connections: Option<f64>,
    /// Slots only superusers (and `pg_use_reserved_connections`) may use.
    pub reserved: Option<f64>,
    /// `max_connections - reserved`: what an application role can get.
    pub usable: Option<f64>,
    /// `used / usable`, 0..1 (above 1 when superusers use reserved slots).
    pub ratio: Option<f64>,
}

/// One PgBouncer pool (database, user).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pool {
    /// The PgBouncer's name (its `pgbouncer` label).
    pub pgbouncer: Option<String>,
    /// Pool database.
    pub database: String,
    /// Pool user.
    pub user: String,
    /// Clients linked to a server connection.
    pub clients_active: f64,
    /// Clients waiting for a server connection.
    pub clients_waiting: f64,
    /// How long the oldest waiting client has waited.
    pub maxwait_seconds: f64,
    /// Server connections open for the pool (active, idle, used, tested,
    /// logging in).
    pub servers_used: f64,
    /// The database's `pool_size`.
    pub pool_size: Option<f64>,
    /// `servers_used / pool_size`.
    pub ratio: Option<f64>,
}

/// Saturation of one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Saturation {
    /// PostgreSQL's connection slots, when the connections collector ran.
    pub postgres: Option<Postgres>,
    /// Every PgBouncer pool, busiest first.
    pub pools: Vec<Pool>,
}

/// Server connection states that occupy a slot of the pool.
const SERVER_STATES: [&Desc; 5] = [
    &pgbouncer::SV_ACTIVE,
    &pgbouncer::SV_IDLE,
    &pgbouncer::SV_USED,
    &pgbouncer::SV_TESTED,
    &pgbouncer::SV_LOGIN,
];

fn ratio(used: f64, limit: Option<f64>) -> Option<f64> {
    limit.filter(|l| *l > 0.0).map(|l| used / l)
}

impl Saturation {
    /// Computes saturation from a target's last collection.
    pub fn of(view: &TargetView) -> Saturation {
        let postgres = view.family(&connections::CONNECTIONS).map(|conns| {
            let used = conns.series.iter().filter_map(|s| s.value.number()).sum();
            let max_connections = view.value(&server::MAX_CONNECTIONS, &[]);
            let reserved = view.value(&connections::RESERVED, &[]);
            let usable = max_connections.map(|m| m - reserved.unwrap_or(0.0));
            Postgres {
                used,
                max_connections,
                reserved,
                usable,
                ratio: ratio(used, usable),
            }
        });
        let mut pools = Vec::new();
        for (name, state) in &view.collectors {
            if !name.starts_with("pgbouncer") {
                continue;
            }
            let get = |desc: &'static Desc, labels: &[&str]| state.family(desc)?.value(labels);
            let Some(waiting) = state.family(&pgbouncer::CL_WAITING) else {
                continue;
            };
            for s in &waiting.series {
                let labels = [s.labels[0].as_str(), s.labels[1].as_str()];
                let servers_used = SERVER_STATES
                    .iter()
                    .filter_map(|desc| get(desc, &labels))
                    .sum();
                // The databases family names PgBouncer's database `name`
                // (its `database` is the server's), as pgbouncer_exporter does.
                let pool_size = state
                    .family(&pgbouncer::POOL_SIZE)
                    .and_then(|f| f.series.iter().find(|p| p.labels[0] == labels[0]))
                    .and_then(|p| p.value.number());
                pools.push(Pool {
                    pgbouncer: state.label.as_ref().map(|(_, v)| v.to_string()),
                    database: labels[0].to_string(),
                    user: labels[1].to_string(),
                    clients_active: get(&pgbouncer::CL_ACTIVE, &labels).unwrap_or(0.0),
                    clients_waiting: s.value.number().unwrap_or(0.0),
                    maxwait_seconds: get(&pgbouncer::MAXWAIT, &labels).unwrap_or(0.0),
                    servers_used,
                    pool_size,
                    ratio: ratio(servers_used, pool_size),
                });
            }
        }
        pools.sort_by(|a, b| {
            b.clients_waiting
                .total_cmp(&a.clients_waiting)
                .then(b.ratio.unwrap_or(0.0).total_cmp(&a.ratio.unwrap_or(0.0)))
                .then_with(|| {
                    (&a.pgbouncer, &a.database, &a.user).cmp(&(&b.pgbouncer, &b.database, &b.user))
                })
        });
        Saturation { postgres, pools }
    }
}

/// `/api/v1/saturation`: every target's saturation.
pub fn json(views: &[TargetView]) -> serde_json::Value {
    let targets: Vec<_> = views
        .iter()
        .filter(|v| !v.redis)
        .map(|v| serde_json::json!({ "target": &*v.name, "saturation": Saturation::of(v) }))
        .collect();
    // Redis: clients against maxclients, per Redis target.
    let mut redis = serde_json::Map::new();
    for v in views.iter().filter(|v| v.redis) {
        let used = v.value(&crate::collect::redis::info::CONNECTED_CLIENTS, &[]);
        let max = v.value(&crate::collect::redis::info::MAX_CLIENTS, &[]);
        let ratio = match (used, max) {
            (Some(u), Some(m)) if m > 0.0 => Some(u / m),
            _ => None,
        };
        redis.insert(
            v.name.to_string(),
            serde_json::json!({ "connected_clients": used, "max_clients": max, "ratio": ratio }),
        );
    }
    serde_json::json!({ "targets": targets, "redis": redis })
}
