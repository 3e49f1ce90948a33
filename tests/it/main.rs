//! pgvigil's integration tests: one binary, one module per area, one
//! harness that starts real servers. Test modules import only the
//! harness, never each other.

// Real servers (PostgreSQL, replicas, PgBouncer, a TCP proxy, Prometheus), the pgvigil binary, shared checks.
mod harness;

// Active sessions by wait event: a lock queue as Lock seconds, per statement, in `once` and the page.
mod active_sessions;
// amcheck: a corrupt index found and named, a healthy cluster clean, the page budget, resuming.
mod amcheck;
// pgBackRest verify and restore tests (the command and the daemon's) against a real repository.
mod backups;
// The alert rules and alerts/compat: promtool unit tests, a case per severity, runbook sections.
mod alerts;
// WAL archiving after a statistics reset; status files that are not segments.
mod archiving;
// The series budget: each statements and tables family reaches its cap and never exceeds it.
mod budget;
// The command line: `once` in each format, `check-config`, `--version`, bad input.
mod cli;
// Server, connections and databases collectors, each metric proven by what the test did.
mod collectors;
// postgres_exporter's names recorded by alerts/compat in a real Prometheus scraping an agent.
mod compat;
// Counters across a reset and an agent restart, a changed server, the "other" fold, restartpoints.
mod counters;
// Every dashboard and rule expression parses and names only documented metrics.
mod dashboards;
// `pgvigil demo`: refuses without binaries; cleans up after a killed demo; findings, histograms, lag and log counters; nothing left after SIGTERM.
mod demo;
// docs/metrics.md against the code and a real run.
mod docs;
// The EXPLAIN guard, runner and worker against a real server.
mod explain;
// Faults injected for real: SIGKILL, a stalled or partitioned network, a full server, a promotion.
mod faults;
// Several targets in one agent: labels a second one never renames, /probe, databases followed, one failing alone.
mod fleet;
// Host metrics only for the server's own data directory, not another cluster's at its path.
mod host;
// Hostile names, texts, bytes, requests and configs.
mod hostile;
// The HTTP endpoints, served from stored snapshots.
mod http;
// Many scrapers at once; clients that try to hold the server.
mod load;
// A table locked ACCESS EXCLUSIVE: its size carried over, the others published, nothing queued.
mod locked_table;
// I/O, WAL and session statistics: temp files, sessions, WAL records, pg_stat_io, SLRU caches, per version.
mod io_stats;
// The log tailer: formats, rotation, truncation, restarts, thresholds, the EXPLAIN feed.
mod logs;
// Desktop notifications over a private D-Bus.
mod notify;
// The systemd unit, container, Kubernetes sidecar, scrape jobs, Debian package and licence.
mod packaging;
// The `/` page as headless Chromium renders it.
mod page;
// Latency percentiles against the client's own timings and pgbench's log.
mod percentiles;
// PgBouncer pools, several PgBouncers, failures.
mod pgbouncer;
// pgbouncer_exporter's names and labels against a real PgBouncer; values from its config, PAUSE, DISABLE.
mod pgbouncer_compat;
// Custom queries: business metrics from the test's rows, writes refused, the series cap, a slow query cancelled.
mod queries;
// Redis targets against a real redis-server as a least-privilege ACL user: hit ratio, evictions, replica link, failed save, slow log, TLS, restarts.
mod redis;
// Reload without restart (SIGHUP, POST /-/reload): targets added, removed, rebuilt; certificates; broken files.
mod reload;
// Replication lag from both ends, slots, WAL and checkpoints, promotion; a switchover and its alerts; logical replication, both ends.
mod replication;
// Schema risks: sequences near their limit, invalid, unused and duplicate indexes, locks never waited for.
mod schema;
// `once` without --interval: statements since the last reset against pg_stat_statements and pgbench.
mod since_reset;
// The statements collector: labels, counts, resets, cardinality, the JSON API.
mod statements;
// The shape of the source: no import cycle or import up the layers, short files, no outside references.
mod structure;
// Filesystems, tables, WAL archiving and pgBackRest backups.
mod storage;
// `pgvigil top` in tmux: the statement and its p99, blockers, sort keys, EXPLAIN, `q` restores; via an agent; without pg_stat_statements.
mod top;
// TLS to PostgreSQL: verify-full with a test CA.
mod tls;
// Vacuum: xmin-horizon holders named (slot, prepared transaction, session, standby), wraparound, running vacuums.
mod vacuum;
// Vacuum per table: the oldest relfrozenxid and relminmxid, manual VACUUM and ANALYZE counts.
mod vacuum_tables;
// `[web]`: basic auth, HTTPS, no secret in any output.
mod web;
