//! The `kvsync` command line, a file per subcommand (each its `Args` and its
//! `exec`) over the library: the servers' parts are assembled by
//! [`crate::server`]. Here: the argument types, the dispatch, logging, and
//! the process environment, read once ([`Env::from_process`]).
//!
//! - `kvsync server` (`--config FILE` or `--dev`): [`server`]
//! - `kvsync operator init --config FILE`: [`operator`]
//! - `kvsync sync run`: [`sync_run`]; `kvsync sync status`: [`sync_status`]

mod operator;
mod server;
mod statuses;
mod sync_run;
mod sync_status;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, parse_duration};
use crate::env::Env;
use crate::worker::{MAX_WORKERS, SyncConfig};

#[derive(Parser)]
#[command(
    name = "kvsync",
    version,
    about = "Vault-compatible Secrets Sync server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Start the server.
    Server(server::Args),
    /// Operator commands.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Secrets Sync: run queued work without a server, or show statuses.
    Sync {
        #[command(subcommand)]
        command: SyncCommand,
    },
}

#[derive(Subcommand)]
pub(crate) enum OperatorCommand {
    /// Create the encryption key and the initial root token for the configured storage.
    Init(operator::InitArgs),
}

#[derive(Subcommand, Debug)]
pub(crate) enum SyncCommand {
    /// Process queued sync work against the configured storage, without the
    /// HTTP server (stop the server first).
    Run(sync_run::Args),
    /// Show every destination and the status of its associations, from a
    /// running server.
    Status(sync_status::Args),
}

/// The sync worker's knobs as command-line flags; each overrides the config
/// setting of the same name (`--sync-workers` ↔ `sync_workers`).
#[derive(clap::Args, Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncFlags {
    /// Concurrent sync loops, one per shard of destinations [config: sync_workers; default: 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_WORKERS)))]
    pub sync_workers: Option<u32>,
    /// First retry delay after a retryable failure, e.g. 1s or 200ms [config: sync_backoff_base; default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub sync_backoff_base: Option<Duration>,
    /// Longest retry delay [config: sync_backoff_cap; default: 5m]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub sync_backoff_cap: Option<Duration>,
    /// Interval between reconciliations [config: sync_reconcile_interval; default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub sync_reconcile_interval: Option<Duration>,
    /// Coalescing: a secret changed again right after its destination was written waits 50ms, then this window per further write; 0 turns coalescing off [config: sync_coalesce_window; default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub sync_coalesce_window: Option<Duration>,
}

impl SyncFlags {
    /// `base` (the config file's settings, or the defaults) with the flags
    /// given applied, validated.
    pub fn apply(&self, base: SyncConfig) -> anyhow::Result<SyncConfig> {
        let config = SyncConfig {
            workers: self.sync_workers.unwrap_or(base.workers),
            backoff_base: self.sync_backoff_base.unwrap_or(base.backoff_base),
            backoff_cap: self.sync_backoff_cap.unwrap_or(base.backoff_cap),
            reconcile_interval: self
                .sync_reconcile_interval
                .unwrap_or(base.reconcile_interval),
            coalesce_window: self.sync_coalesce_window.unwrap_or(base.coalesce_window),
            lease_ttl: base.lease_ttl,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Task polls between two looks of an async worker at its sockets and timers (tokio's
/// default is 61). While one namespace floods the server, a worker always has a
/// task to run: a quiet namespace's request that arrives meanwhile is noticed only at
/// the next look, and then runs after the tasks woken before it. Looking after every
/// second poll keeps that wait to a few tasks instead of dozens (P14 noisy neighbour in
/// BENCHMARKS.md: tenant B's p99 while A floods went from 3.7× to 1.4–1.8× its p99 alone);
/// a look with nothing new is one `epoll_wait` call.
const EVENT_INTERVAL: u32 = 2;

/// The async runtime kvsync's commands run on (the benchmarks' baselines run on it too).
pub fn async_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(EVENT_INTERVAL)
        .build()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Env::from_process();
    init_logging(&env, log_level(&cli.command).as_deref());
    let rt = match async_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(async {
        match cli.command {
            Command::Server(args) => server::exec(args, &env).await,
            Command::Operator {
                command: OperatorCommand::Init(args),
            } => operator::exec(args, &env).await,
            Command::Sync {
                command: SyncCommand::Run(args),
            } => sync_run::exec(args, &env).await,
            Command::Sync {
                command: SyncCommand::Status(args),
            } => sync_status::exec(args, &env).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The `log_level` of the command's config file, if it has one and it loads
/// (a config that does not load is reported by the command itself).
fn log_level(command: &Command) -> Option<String> {
    let path = match command {
        Command::Server(args) => args.config.as_ref()?,
        Command::Operator {
            command: OperatorCommand::Init(args),
        } => &args.config,
        Command::Sync {
            command: SyncCommand::Run(args),
        } => &args.config,
        Command::Sync {
            command: SyncCommand::Status(_),
        } => return None,
    };
    Config::load(path).ok().and_then(|c| c.log_level)
}

/// Logs to stderr, filtered by `KVSYNC_LOG`, else `level`, else `info`.
fn init_logging(env: &Env, level: Option<&str>) {
    let filter = env.log.as_deref().or(level).unwrap_or("info");
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Prints `lines` to stdout at once.
pub(crate) fn print(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kvsync").chain(args.iter().copied()))
    }

    pub(crate) fn sync_command(args: &[&str]) -> SyncCommand {
        match parse(args).unwrap().command {
            Command::Sync { command } => command,
            _ => panic!("not a sync command"),
        }
    }

    #[test]
    fn sync_flags_override_the_config() {
        let base = SyncConfig {
            workers: 8,
            ..SyncConfig::default()
        };
        let flags = SyncFlags {
            sync_backoff_cap: Some(Duration::from_secs(3)),
            sync_reconcile_interval: Some(Duration::from_secs(2)),
            sync_coalesce_window: Some(Duration::ZERO),
            ..SyncFlags::default()
        };
        let c = flags.apply(base).unwrap();
        assert_eq!(c.workers, 8);
        assert_eq!(c.backoff_base, Duration::from_secs(1));
        assert_eq!(c.backoff_cap, Duration::from_secs(3));
        assert_eq!(c.reconcile_interval, Duration::from_secs(2));
        assert_eq!(c.coalesce_window, Duration::ZERO);
        let bad = SyncFlags {
            sync_backoff_cap: Some(Duration::from_millis(10)),
            ..SyncFlags::default()
        };
        assert!(bad.apply(SyncConfig::default()).is_err());
    }

    #[test]
    fn every_subcommand_parses() {
        assert!(parse(&["server", "--dev"]).is_ok());
        assert!(parse(&["server", "--config", "k.hcl"]).is_ok());
        assert!(parse(&["server"]).is_err(), "--config or --dev");
        assert!(parse(&["server", "--dev", "--config", "k.hcl"]).is_err());
        assert!(parse(&["server", "--dev-root-token-id", "x"]).is_err());
        assert!(matches!(
            parse(&["operator", "init", "--config", "k.hcl"])
                .unwrap()
                .command,
            Command::Operator {
                command: OperatorCommand::Init(_)
            }
        ));
        assert!(parse(&["operator", "init"]).is_err());
        assert!(parse(&["bogus"]).is_err());
    }
}
