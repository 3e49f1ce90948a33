//! The `pgvigil` binary: parse arguments, set up logging, hand over to the
//! library. Errors end as one line on stderr and a non-zero exit.

use std::process::ExitCode;

use clap::Parser;
use pgvigil::cli::{Cli, Command};
use pgvigil::commands;
use tracing_subscriber::EnvFilter;

/// Caps the log level of the PostgreSQL client library (see [`init_logging`]).
const LIBRARY_STATEMENT_LOG_CAP: &str = "tokio_postgres=info";

fn init_logging(cli: &Cli) {
    // `once` prints its result on stdout; keep its stderr for problems.
    let default = match cli.command {
        Command::Once { .. } | Command::Explain { .. } => "warn",
        // The screen is the output; log only when asked (and then redirect stderr).
        Command::Top { .. } => "off",
        _ => "info",
    };
    let filter = cli
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default))
        // tokio-postgres logs every statement it sends, with parameters, at
        // debug level; the EXPLAIN worker sends real parameter values taken
        // from the workload. No log level may show them.
        .add_directive(
            LIBRARY_STATEMENT_LOG_CAP
                .parse()
                .expect("a valid directive"),
        );
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// glibc keeps freed memory in per-thread arenas and trims the heap only
/// past 128 kB of free space at its top, so an agent that builds a few MB
/// of per-cycle state every 30 s holds on to every peak: 42 MB resident
/// with 10,000 pg_stat_statements entries, against 20 MB with one arena and
/// a 64 kB trim threshold (docs/performance.md). Must run before any thread
/// starts.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 * 1024);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { source, listen } => commands::run(&source, listen).await,
            Command::Once {
                source,
                format,
                interval,
            } => commands::once(commands::load(&source)?, format, interval).await,
            Command::Explain {
                dsn,
                analyze,
                json,
                timeout,
                sql,
            } => commands::explain(dsn.as_deref(), analyze, json, timeout, &sql).await,
            Command::Top {
                source,
                agent,
                refresh,
            } => {
                let origin = match agent {
                    Some(url) => pgvigil::top::Origin::Agent(url),
                    None => pgvigil::top::Origin::Config(Box::new(commands::load(&source)?)),
                };
                pgvigil::top::run(origin, refresh).await
            }
            Command::Demo { listen, no_replica } => pgvigil::demo::run(listen, !no_replica).await,
            Command::RestoreTest { config, target } => {
                commands::restore_test(&config, &target).await
            }
            Command::CheckConfig { file } => {
                if commands::check_config(&file) {
                    Ok(())
                } else {
                    std::process::exit(1)
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
