//! Every collector pgvigil has, declared once: its name (the `collector`
//! label and its key under `[collectors]`), its metric families, the SQL
//! it sends, and how to build it for a target. Scheduling, the metrics
//! reference, readiness and "is this statement pgvigil's own" all read this
//! one table; adding a collector is one row here plus its file in
//! `collect/`.
//!
//! This is the composition root of collection: it knows every collector
//! and the EXPLAIN worker's SQL, and nothing below it knows the registry.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::collect::redis::RedisCollector;
use crate::collect::{self, Collector};
use crate::config::{Collectors, Config, Redis, RedisIntervals, Target};
use crate::logs::feed::LogFeed;
use crate::metric::Desc;
use crate::schedule::{Job, Scheduled, SessionJob};
use crate::sql::OwnStatements;

/// The log reader a target's logs and statements collectors share.
type Reader = Arc<Mutex<crate::logs::reader::LogReader>>;

/// What a target's collectors may be built with.
pub struct Parts {
    /// The statements collector's settings.
    statements: crate::config::Statements,
    /// The target's log, when `[target.logs]` is configured and the logs
    /// collector is on.
    log: Option<Reader>,
    /// Where the statements collector hands each report to the EXPLAIN
    /// worker, when it runs.
    reports: Option<Arc<collect::statements::ReportSender>>,
    /// The schema collector's floor for unused indexes.
    unused_index_min_bytes: u64,
    /// The active_sessions collector's interval: what one sample stands for.
    active_sessions: Duration,
    /// The amcheck collector's settings.
    amcheck: crate::config::Amcheck,
    /// The target's name (names the amcheck state file).
    target: String,
}

/// How a collector runs.
pub enum Run {
    /// Through the target's monitoring session: its interval in the
    /// config (`None`: off for this target) and its constructor.
    Session {
        /// The interval, from `[collectors]` and the target.
        interval: fn(&Collectors, &Target) -> Option<Duration>,
        /// A collector with no history.
        build: fn(&Parts) -> Box<dyn Collector>,
    },
    /// One per `[target.pgbouncer]`, on its own connection.
    Pgbouncer,
    /// One per `[[target.query]]`, through the target's session, named
    /// `query:<name>`; its families are the user's (not in the catalogue).
    Query,
    /// With `[target.backup]`: runs pgBackRest.
    Backup,
    /// One per `[[redis]]` target, over its one connection: its interval
    /// from `[redis.collectors]` and its constructor.
    Redis {
        /// The interval.
        interval: fn(&RedisIntervals) -> Option<Duration>,
        /// A collector with no history.
        build: fn() -> Box<dyn RedisCollector>,
    },
    /// Not scheduled per target: families the agent publishes itself (its
    /// health, its process) or the EXPLAIN worker.
    Elsewhere,
}

/// One collector, declared once.
pub struct Spec {
    /// The `collector` label value, and its key under `[collectors]`.
    pub name: &'static str,
    /// Every family it may publish.
    pub metrics: &'static [&'static Desc],
    /// The SQL it sends, so pgvigil's own statements are recognised.
    pub own_sql: &'static [&'static [&'static str]],
    /// How it runs.
    pub run: Run,
}

/// Every collector, in the order a target's collectors first run: the logs
/// collector before statements, so a statements interval is covered by
/// the log from its start.
pub static COLLECTORS: &[Spec] = &[
    Spec {
        name: "agent",
        metrics: crate::snapshot::HEALTH_METRICS,
        own_sql: &[],
        run: Run::Elsewhere,
    },
    Spec {
        name: "process",
        metrics: collect::process::METRICS,
        own_sql: &[],
        run: Run::Elsewhere,
    },
    Spec {
        name: "config",
        metrics: crate::snapshot::CONFIG_METRICS,
        own_sql: &[],
        run: Run::Elsewhere,
    },
    Spec {
        name: "server",
        metrics: collect::server::METRICS,
        own_sql: &[collect::server::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.server,
            build: |_| Box::new(collect::server::Server),
        },
    },
    Spec {
        name: "connections",
        metrics: collect::connections::METRICS,
        own_sql: &[collect::connections::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.connections,
            build: |_| Box::new(collect::connections::Connections),
        },
    },
    Spec {
        name: "databases",
        metrics: collect::databases::METRICS,
        own_sql: &[collect::databases::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.databases,
            build: |_| Box::new(collect::databases::Databases),
        },
    },
    Spec {
        name: "database_size",
        metrics: collect::database_size::METRICS,
        own_sql: &[collect::database_size::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.database_size,
            build: |_| Box::new(collect::database_size::DatabaseSize),
        },
    },
    Spec {
        name: "replication",
        metrics: collect::replication::METRICS,
        own_sql: &[collect::replication::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.replication,
            build: |_| Box::new(collect::replication::Replication::default()),
        },
    },
    Spec {
        name: "slots",
        metrics: collect::slots::METRICS,
        own_sql: &[collect::slots::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.slots,
            build: |_| Box::new(collect::slots::Slots),
        },
    },
    Spec {
        name: "subscriptions",
        metrics: collect::subscriptions::METRICS,
        own_sql: &[collect::subscriptions::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.subscriptions,
            build: |_| Box::new(collect::subscriptions::Subscriptions),
        },
    },
    Spec {
        name: "wal",
        metrics: collect::wal::METRICS,
        own_sql: &[collect::wal::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.wal,
            build: |_| Box::new(collect::wal::Wal),
        },
    },
    Spec {
        name: "checkpoints",
        metrics: collect::checkpoints::METRICS,
        own_sql: &[collect::checkpoints::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.checkpoints,
            build: |_| Box::new(collect::checkpoints::Checkpoints),
        },
    },
    Spec {
        name: "io",
        metrics: collect::io::METRICS,
        own_sql: &[collect::io::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.io,
            build: |_| Box::new(collect::io::Io),
        },
    },
    Spec {
        name: "archiver",
        metrics: collect::archiver::METRICS,
        own_sql: &[collect::archiver::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.archiver,
            build: |_| Box::new(collect::archiver::Archiver),
        },
    },
    Spec {
        name: "filesystem",
        metrics: collect::filesystem::METRICS,
        own_sql: &[collect::filesystem::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.filesystem,
            build: |_| Box::new(collect::filesystem::Filesystem),
        },
    },
    Spec {
        name: "tables",
        metrics: collect::tables::METRICS,
        own_sql: &[collect::tables::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.tables,
            build: |_| Box::new(collect::tables::Tables::default()),
        },
    },
    Spec {
        name: "vacuum",
        metrics: collect::vacuum::METRICS,
        own_sql: &[collect::vacuum::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.vacuum,
            build: |_| Box::new(collect::vacuum::Vacuum),
        },
    },
    Spec {
        name: "schema",
        metrics: collect::schema::METRICS,
        own_sql: &[collect::schema::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.schema.interval,
            build: |parts| Box::new(collect::schema::Schema::new(parts.unused_index_min_bytes)),
        },
    },
    Spec {
        name: "vacuum_tables",
        metrics: collect::vacuum::tables::METRICS,
        own_sql: &[collect::vacuum::tables::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.vacuum_tables,
            build: |_| Box::new(collect::vacuum::tables::VacuumTables::default()),
        },
    },
    Spec {
        name: "active_sessions",
        metrics: collect::active_sessions::METRICS,
        own_sql: &[collect::active_sessions::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.active_sessions,
            build: |parts| {
                Box::new(collect::active_sessions::ActiveSessions::new(
                    parts.active_sessions,
                ))
            },
        },
    },
    Spec {
        name: "amcheck",
        metrics: collect::amcheck::METRICS,
        own_sql: &[collect::amcheck::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.amcheck.interval,
            build: |parts| {
                Box::new(collect::amcheck::Amcheck::new(
                    parts.amcheck.clone(),
                    parts.amcheck.interval.unwrap_or(Duration::from_secs(60)),
                    &parts.target,
                ))
            },
        },
    },
    Spec {
        name: "backup",
        metrics: collect::backup::METRICS,
        own_sql: &[],
        run: Run::Backup,
    },
    Spec {
        name: "pgbouncer",
        metrics: collect::pgbouncer::METRICS,
        own_sql: &[],
        run: Run::Pgbouncer,
    },
    Spec {
        name: "logs",
        metrics: collect::logs::METRICS,
        own_sql: &[collect::logs::OWN_SQL],
        run: Run::Session {
            interval: |c, t| t.logs.as_ref().and(c.logs),
            build: |parts| {
                let reader = parts.log.clone().expect("a log reader wherever logs run");
                Box::new(collect::logs::Logs::new(reader))
            },
        },
    },
    Spec {
        name: "statements",
        metrics: collect::statements::METRICS,
        own_sql: &[collect::statements::OWN_SQL],
        run: Run::Session {
            interval: |c, _| c.statements.interval,
            build: |parts| {
                Box::new(
                    collect::statements::Statements::new(parts.statements.clone())
                        .with_log(parts.log.clone())
                        .with_reports(parts.reports.clone()),
                )
            },
        },
    },
    Spec {
        name: "redis",
        metrics: crate::snapshot::REDIS_HEALTH_METRICS,
        own_sql: &[],
        run: Run::Elsewhere,
    },
    Spec {
        name: "redis_info",
        metrics: collect::redis::info::METRICS,
        own_sql: &[],
        run: Run::Redis {
            interval: |i| i.info,
            build: || Box::new(collect::redis::info::RedisInfo),
        },
    },
    Spec {
        name: "redis_replication",
        metrics: collect::redis::replication::REPLICATION_METRICS,
        own_sql: &[],
        run: Run::Redis {
            interval: |i| i.replication,
            build: || Box::new(collect::redis::replication::RedisReplication),
        },
    },
    Spec {
        name: "redis_persistence",
        metrics: collect::redis::replication::PERSISTENCE_METRICS,
        own_sql: &[],
        run: Run::Redis {
            interval: |i| i.persistence,
            build: || Box::new(collect::redis::replication::RedisPersistence),
        },
    },
    Spec {
        name: "redis_commands",
        metrics: collect::redis::commands::METRICS,
        own_sql: &[],
        run: Run::Redis {
            interval: |i| i.commands,
            build: || Box::new(collect::redis::commands::RedisCommands),
        },
    },
    Spec {
        name: "redis_slowlog",
        metrics: collect::redis::slowlog::SLOWLOG_METRICS,
        own_sql: &[],
        run: Run::Redis {
            interval: |i| i.slowlog,
            build: || Box::new(collect::redis::slowlog::RedisSlowlog::default()),
        },
    },
    Spec {
        name: "redis_cluster",
        metrics: collect::redis::slowlog::CLUSTER_METRICS,
        own_sql: &[],
        run: Run::Redis {
            interval: |i| i.cluster,
            build: || Box::new(collect::redis::slowlog::RedisCluster),
        },
    },
    Spec {
        name: "query",
        metrics: &[],
        own_sql: &[collect::query::OWN_SQL],
        run: Run::Query,
    },
    Spec {
        name: "explain",
        metrics: crate::explain::worker::METRICS,
        own_sql: &[
            crate::explain::runner::OWN_SQL,
            crate::explain::worker::OWN_SQL,
        ],
        run: Run::Elsewhere,
    },
];

/// Every statement pgvigil sends on its own behalf: its sessions' set-up
/// and capability checks, then each collector's and the worker's SQL.
pub fn own_statements() -> OwnStatements {
    let setup = [
        crate::connection::caps::OWN_SQL,
        crate::connection::session::OWN_SQL,
    ];
    let specs = COLLECTORS.iter().flat_map(|s| s.own_sql.iter());
    OwnStatements::new(
        setup
            .iter()
            .chain(specs)
            .flat_map(|sql| sql.iter().copied()),
    )
}

/// Every metric family pgvigil can publish, by collector, for the metrics
/// reference.
pub fn catalog() -> impl Iterator<Item = (&'static str, &'static [&'static Desc])> {
    COLLECTORS.iter().map(|s| (s.name, s.metrics))
}

/// Whether one of pgvigil's own families takes `name` (as its family name,
/// exposed name or a histogram's series name): the catalogue that custom
/// query metrics are checked against when a config is loaded.
pub fn publishes(name: &str) -> bool {
    catalog()
        .flat_map(|(_, descs)| descs.iter())
        .any(|d| d.names().iter().any(|n| n == name))
}

/// The metrics reference (`docs/metrics.md`), generated from the
/// descriptors so it cannot drift from the code.
pub fn metrics_reference() -> String {
    let mut out = String::from(
        "# Metrics reference\n\n\
         Generated from the collector registry (`src/registry.rs`) and each collector's metric descriptors; do not edit by hand.\n\
         Regenerate with `PGVIGIL_BLESS=1 cargo test --test it docs::`. One test fails when this file and the\n\
         code disagree; another checks that a real run publishes exactly these names.\n\n\
         Conventions: `pg_` is what PostgreSQL reports, `pgbouncer_` PgBouncer, `redis_` Redis (`[[redis]]`\n\
         targets, with oliver006/redis_exporter's names and labels), `pgvigil_` the agent itself. Units are in the name (`_seconds`, `_bytes`), counters end in `_total` and are the\n\
         server's own cumulative values (a statistics reset shows as a counter reset, which `rate()` and\n\
         `increase()` handle; only the `\"other\"` folds are pgvigil's sums, from 0 at agent start), `_info` gauges carry text\n\
         in labels with the value 1.\n\
         \n\
         Every series carries `target`: the `[[target]]`'s (or `[[redis]]`'s) name, `\"main\"` for a lone unnamed one. Every\n\
         PgBouncer series also carries `pgbouncer`: the console's name, `\"pgbouncer\"` for the first unnamed\n\
         one (`\"pgbouncerN\"` for the one at index N). Both are there however many targets and consoles\n\
         are configured, so adding one renames no existing series. `/probe?target=NAME` keeps `target`\n\
         too. Only the agent's own `process_*`, `pgvigil_build_info` and `pgvigil_config_*` have neither. Each PgBouncer is\n\
         its own collector in `pgvigil_collector_*`: `pgbouncer` for the console named \"pgbouncer\",\n\
         `pgbouncer:NAME` for any other. The labels listed below are each family's own, after these.\n\
         \n\
         A failed collector's families are absent (not zero) until it succeeds again;\n\
         `pgvigil_collector_success` says which.\n\n\
         Custom queries (`[[target.query]]`, README \"Custom queries\") add families named in the config,\n\
         not listed here: gauges as named, counters with `_total` appended, each query a collector of\n\
         its own (`collector=\"query:<name>\"`). Their names may not take any name below.\n",
    );
    for (collector, descs) in catalog().filter(|(_, descs)| !descs.is_empty()) {
        let _ = write!(
            out,
            "\n## {collector}\n\n| metric | type | labels | meaning |\n|---|---|---|---|\n"
        );
        for d in descs {
            let labels = d
                .labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let when = d
                .only_when
                .map(|w| format!(" Present only when {w}."))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {}{} |",
                d.exposed_name(),
                d.kind.as_str(),
                labels,
                d.help,
                when
            );
        }
    }
    out
}

/// The enabled collectors of one target, per the config. `feed` is where
/// the logs collector hands slow executions and plans to the EXPLAIN
/// worker (present when the target has `[target.logs]`); `reports` where
/// the statements collector hands its reports (present when automatic
/// EXPLAIN runs).
pub fn jobs(
    config: &Config,
    target: &Target,
    feed: Option<Arc<LogFeed>>,
    reports: Option<Arc<collect::statements::ReportSender>>,
    own: &OwnStatements,
) -> Vec<Scheduled> {
    let c = &config.collectors;
    // The log is read by the logs collector and, at the end of each
    // interval, by the statements collector (exact tail quantiles).
    let log = match (&target.logs, feed, c.logs) {
        (Some(logs), Some(feed), Some(_)) => Some(Arc::new(Mutex::new(
            crate::logs::reader::LogReader::new(logs.clone(), feed, own.clone()),
        ))),
        _ => None,
    };
    let parts = Arc::new(Parts {
        statements: c.statements.clone(),
        log,
        reports,
        unused_index_min_bytes: c.schema.unused_index_min_bytes,
        active_sessions: c.active_sessions.unwrap_or(Duration::from_secs(1)),
        amcheck: c.amcheck.clone(),
        target: target.name.to_string(),
    });
    let mut jobs = Vec::new();
    for spec in COLLECTORS {
        match spec.run {
            Run::Session { interval, build } => {
                let Some(interval) = interval(c, target) else {
                    continue;
                };
                let parts = parts.clone();
                let make = Box::new(move || build(&parts));
                jobs.push(Scheduled {
                    job: Job::Session(SessionJob::new(spec.name, make)),
                    interval,
                });
            }
            Run::Pgbouncer => {
                let Some(interval) = c.pgbouncer else {
                    continue;
                };
                for pgbouncer in &target.pgbouncers {
                    // Each is a collector of its own, named after the
                    // console alone (not after how many there are), so that
                    // adding one renames no `collector` label: `pgbouncer`
                    // for the default name, `pgbouncer:NAME` for any other
                    // (bounded by the config: leaked once each).
                    let name: &'static str = if pgbouncer.name == spec.name {
                        spec.name
                    } else {
                        Box::leak(format!("{}:{}", spec.name, pgbouncer.name).into_boxed_str())
                    };
                    let collector = collect::pgbouncer::Pgbouncer::new(pgbouncer.clone());
                    jobs.push(Scheduled {
                        job: Job::Standalone {
                            name,
                            collector: Box::new(collector),
                        },
                        interval,
                    });
                }
            }
            Run::Query => {
                for query in &target.queries {
                    let Some(interval) = query.interval else {
                        continue;
                    };
                    // Each is a collector of its own, named for it
                    // (bounded by the config: leaked once each).
                    let name: &'static str =
                        Box::leak(format!("{}:{}", spec.name, query.name).into_boxed_str());
                    let query = Arc::new(query.clone());
                    let make = Box::new(move || -> Box<dyn Collector> {
                        Box::new(collect::query::Query::new(name, query.clone()))
                    });
                    jobs.push(Scheduled {
                        job: Job::Session(SessionJob::new(name, make)),
                        interval,
                    });
                }
            }
            Run::Backup => {
                if let Some(backup) = &target.backup {
                    jobs.push(Scheduled {
                        job: Job::Standalone {
                            name: spec.name,
                            collector: Box::new(collect::backup::Backup::new(backup.clone())),
                        },
                        interval: backup.interval,
                    });
                }
            }
            Run::Elsewhere | Run::Redis { .. } => {}
        }
    }
    jobs
}

/// The enabled collectors of one `[[redis]]` target, each a collector of
/// its own over the target's one connection.
pub fn redis_jobs(redis: &Redis) -> Vec<Scheduled> {
    COLLECTORS
        .iter()
        .filter_map(|spec| match spec.run {
            Run::Redis { interval, build } => Some(Scheduled {
                job: Job::Redis {
                    name: spec.name,
                    collector: build(),
                },
                interval: interval(&redis.intervals)?,
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_each_session_collector_is_a_config_key() {
        let mut names: Vec<&str> = COLLECTORS.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COLLECTORS.len(), "a name is declared twice");
        // Turning each one off by its name is accepted and takes effect.
        for spec in COLLECTORS {
            let Run::Session { interval, .. } = spec.run else {
                continue;
            };
            let key = if spec.name == "statements" {
                "statements = { interval = \"off\" }".to_string()
            } else {
                format!("{} = \"off\"", spec.name)
            };
            let toml = format!(
                "[[target]]\ndsn = \"postgresql://u@h/db\"\n[target.logs]\ndirectory = \"/tmp\"\n[collectors]\n{key}\n"
            );
            let env = crate::config::Environment { var: &|_| None };
            let config =
                Config::parse(&toml, "test", &env).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
            assert_eq!(
                interval(&config.collectors, &config.targets[0]),
                None,
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn each_redis_collector_is_a_key_of_redis_collectors_and_can_be_turned_off() {
        let env = crate::config::Environment { var: &|_| None };
        let mut redis_specs = 0;
        for spec in COLLECTORS {
            let Run::Redis { interval, .. } = spec.run else {
                continue;
            };
            redis_specs += 1;
            let toml = format!(
                "[[redis]]\nname = \"c\"\nurl = \"redis://h\"\n[redis.collectors]\n{} = \"off\"\n",
                spec.name
            );
            let config =
                Config::parse(&toml, "test", &env).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
            assert_eq!(interval(&config.redis[0].intervals), None, "{}", spec.name);
            let jobs = redis_jobs(&config.redis[0]);
            assert!(
                !jobs.iter().any(|j| j.job.name() == spec.name),
                "{}",
                spec.name
            );
            assert_eq!(jobs.len(), 5, "the other Redis collectors still run");
        }
        assert_eq!(redis_specs, 6);
    }

    #[test]
    fn the_catalogue_holds_every_name_of_pgvigils_families() {
        for name in [
            "pg_up",
            "pg_database_xact_commit",
            "pg_database_xact_commit_total",
            "pg_statement_latency_seconds_bucket",
            "pg_server_info",
            "pgvigil_collector_success",
        ] {
            assert!(publishes(name), "{name}");
        }
        for name in [
            "app_pending_orders",
            "pg_database_xact",
            "pg_statement_latency",
        ] {
            assert!(!publishes(name), "{name}");
        }
    }

    #[test]
    fn each_custom_query_is_a_collector_of_its_own() {
        let toml = "[[target]]\ndsn = \"postgresql://u@h/db\"\n\
            [[target.query]]\nname = \"a\"\nsql = \"SELECT 1 AS n\"\nmetrics = [{ column = \"n\", name = \"app_a\" }]\n\
            [[target.query]]\nname = \"b\"\ninterval = \"5s\"\nsql = \"SELECT 1 AS n\"\nmetrics = [{ column = \"n\", name = \"app_b\" }]\n\
            [[target.query]]\nname = \"c\"\ninterval = \"off\"\nsql = \"SELECT 1 AS n\"\nmetrics = [{ column = \"n\", name = \"app_c\" }]\n";
        let env = crate::config::Environment { var: &|_| None };
        let config = Config::parse_with(toml, "test", &env, &publishes).unwrap();
        let jobs = jobs(&config, &config.targets[0], None, None, &own_statements());
        let queries: Vec<(&str, Duration)> = jobs
            .iter()
            .filter(|j| j.job.name().starts_with("query:"))
            .map(|j| (j.job.name(), j.interval))
            .collect();
        assert_eq!(
            queries,
            [
                ("query:a", Duration::from_secs(60)),
                ("query:b", Duration::from_secs(5))
            ]
        );
    }

    #[test]
    fn every_collectors_sql_is_recognised_as_own() {
        let own = own_statements();
        for spec in COLLECTORS {
            for sql in spec.own_sql.iter().flat_map(|s| s.iter()) {
                for part in pg_query::split_with_parser(sql).unwrap() {
                    let fp = crate::sql::fingerprint(part).unwrap();
                    assert!(own.contains(&fp), "{}: {part}", spec.name);
                }
            }
        }
    }
}
