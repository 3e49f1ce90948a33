//! The command line, as clap definitions only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// pgvigil watches PostgreSQL servers and publishes what matters as
/// Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "pgvigil", version = crate::cli::VERSION, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG works too.
    #[arg(long, global = true, env = "PGVIGIL_LOG")]
    pub log: Option<String>,
}

/// `--version` text: version and git revision.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PGVIGIL_GIT_REVISION"),
    ")"
);

/// Where the targets come from.
#[derive(Debug, clap::Args)]
pub struct Source {
    /// Config file (TOML); without it, one target from --dsn.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// libpq connection string or URI; else PGVIGIL_DSN, else libpq's PG* variables and defaults.
    #[arg(
        long,
        env = "PGVIGIL_DSN",
        hide_env_values = true,
        value_name = "DSN",
        conflicts_with = "config"
    )]
    pub dsn: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: collect on schedule and serve /metrics.
    Run {
        /// Targets.
        #[command(flatten)]
        source: Source,
        /// HTTP listen address (default 0.0.0.0:9932, or `listen` from the config).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Run every collector once, print the result and exit.
    Once {
        /// Targets.
        #[command(flatten)]
        source: Source,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OnceFormat::Table)]
        format: OnceFormat,
        /// Show statements over this interval (two samples this far apart)
        /// instead of since the last statistics reset. Without it,
        /// collectors that report changes (load, logs) still take their
        /// second sample 2 s after the first.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        interval: Option<Duration>,
    },
    /// EXPLAIN one statement through the same guard as the daemon, and print
    /// the plan with its findings.
    Explain {
        /// libpq connection string or URI; else PGVIGIL_DSN, else libpq's PG* variables and defaults.
        #[arg(long, env = "PGVIGIL_DSN", hide_env_values = true, value_name = "DSN")]
        dsn: Option<String>,
        /// Run EXPLAIN ANALYZE where the guard allows it (one plain SELECT), rolled back.
        #[arg(long)]
        analyze: bool,
        /// Print the plan and findings as JSON.
        #[arg(long)]
        json: bool,
        /// Timeout of the EXPLAIN.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
        timeout: Duration,
        /// The statement.
        sql: String,
    },
    /// Live terminal view: load by wait event, top statements with p95/p99,
    /// sessions and who blocks whom, lag, pools; `q` quits.
    Top {
        /// Targets (the first one is shown); ignored with --agent.
        #[command(flatten)]
        source: Source,
        /// Read a running agent's JSON APIs (http://[user:password@]host:port)
        /// instead of connecting to PostgreSQL.
        #[arg(long, value_name = "URL")]
        agent: Option<String>,
        /// Refresh interval (also the statements interval against a server).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
        refresh: Duration,
    },
    /// A throwaway PostgreSQL (from the local binaries) with a built-in
    /// workload and the agent on it; Ctrl-C removes everything.
    Demo {
        /// HTTP listen address of the demo's agent.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9932")]
        listen: SocketAddr,
        /// Without the streaming replica.
        #[arg(long)]
        no_replica: bool,
    },
    /// Validate a config file and print every problem with its key path.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Restore the newest pgBackRest backup of a target into its
    /// `[target.backup] restore_dir`, start it privately, let it recover to
    /// the end of the archive, check it, stop and delete it; exit 0 only
    /// when all of that succeeded.
    RestoreTest {
        /// The config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The `[[target]]` whose backups to test.
        #[arg(long, value_name = "NAME")]
        target: String,
    },
}

/// Output formats of `pgvigil once`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnceFormat {
    /// Prometheus text exposition 0.0.4.
    Prometheus,
    /// JSON: targets, collector health and every series.
    Json,
    /// A readable summary for humans.
    Table,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
