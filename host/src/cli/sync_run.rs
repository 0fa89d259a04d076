//! `kvsync sync run`: opens the configured storage itself (no HTTP server;
//! redb's file lock keeps it from running next to a server; on PostgreSQL it
//! takes the shard leases running servers do not hold, and names the hosts
//! that hold the others) and drives the engine's `sync` export, then reads the statuses back through the engine's
//! API as the operator. With `--once` it processes what is due and prints a
//! summary (exit 1 when an association is left in an error status);
//! without, it keeps syncing until interrupted.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use super::statuses::{ApiReader, DestinationStatus, Row, cell, read_statuses, render_table};
use super::{SyncFlags, print};
use crate::auth::{Caller, ROOT_POLICY, Token};
use crate::config::{Config, parse_duration};
use crate::env::Env;
use crate::ha::HostInfo;
use crate::server::{self, Access, Options, Server};
use crate::vault_client::response_data;
use crate::worker::{DrainProgress, DrainReport};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Process the work that is due now, print a summary and exit (without
    /// it, keep syncing until interrupted).
    #[arg(long)]
    once: bool,
    /// With --once: also wait for queued retries that fall due within this
    /// long (e.g. 10s), instead of leaving them for later.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "once", default_value = "0s")]
    wait: Duration,
    /// HCL configuration file (the server's).
    #[arg(long)]
    pub(super) config: PathBuf,
    #[command(flatten)]
    sync: SyncFlags,
}

pub(crate) async fn exec(args: Args, env: &Env) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let options = Options {
        warm_instances: None,
        tenant_max_concurrent_requests: None,
        max_running_requests: None,
        max_request_duration: None,
        sync: args.sync.apply(config.sync.clone())?,
    };
    let server = Server::open(&config, &args.config, env, options, Access::Offline).await?;
    if !args.once {
        server
            .sync_until(HostInfo::this_process(String::new()), async {
                eprintln!("Syncing queued work; press Ctrl-C to stop.");
                server::shutdown_signal().await;
            })
            .await;
        return Ok(ExitCode::SUCCESS);
    }

    let progress = Arc::new(DrainProgress::default());
    let drain = server.drain(args.wait, progress.clone());
    let report = if std::io::stdout().is_terminal() {
        with_progress(drain, &progress).await
    } else {
        drain.await
    }
    .context("sync run failed")?;
    let destinations = read_statuses(&Engine(&server)).await?;
    print(&run_summary(&destinations, &report));
    let errors: usize = destinations
        .iter()
        .map(|d| counts(&d.associations).errors)
        .sum();
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The engine's API, called as the operator: it holds the storage and its
/// encryption key, so it may read everything.
struct Engine<'a>(&'a Server);

impl Engine<'_> {
    async fn call(&self, method: &str, path: &str) -> anyhow::Result<Option<Value>> {
        let resp = self
            .0
            .call(method, path, b"", Some(operator()))
            .await
            .with_context(|| format!("{method} {path}"))?
            .response;
        response_data(&format!("{method} {path}"), resp.status, &resp.body)
    }
}

impl ApiReader for Engine<'_> {
    async fn list(&self, path: &str) -> anyhow::Result<Option<Value>> {
        self.call("LIST", path).await
    }

    async fn read(&self, path: &str) -> anyhow::Result<Option<Value>> {
        self.call("GET", path).await
    }
}

/// The operator as a caller of the engine's API.
fn operator() -> Caller {
    Caller {
        token: Token::new(String::new()),
        accessor: String::new(),
        display_name: "kvsync-sync-cli".to_string(),
        policies: vec![ROOT_POLICY.to_string()],
        path: "auth/token/root".to_string(),
        creation_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        namespace_id: crate::auth::policies::ROOT_NAMESPACE.to_string(),
    }
}

/// Runs `drain`, redrawing one progress line on the terminal meanwhile.
async fn with_progress<F: std::future::Future>(drain: F, progress: &DrainProgress) -> F::Output {
    let draw = |done: bool| {
        let (processed, failed) = progress.totals();
        let mut out = std::io::stdout().lock();
        if done {
            let _ = write!(out, "\r\x1b[2K");
        } else {
            let _ = write!(out, "\rsyncing... {processed} processed, {failed} failed");
        }
        let _ = out.flush();
    };
    tokio::pin!(drain);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let output = loop {
        tokio::select! {
            output = &mut drain => break output,
            _ = tick.tick() => draw(false),
        }
    };
    draw(true);
    output
}

const ERROR_STATUSES: &[&str] = &[
    "CLIENT_SIDE_ERROR",
    "EXTERNAL_SERVICE_ERROR",
    "INTERNAL_VAULT_ERROR",
];
const DONE_STATUSES: &[&str] = &["SYNCED", "UNSYNCED"];
/// Statuses of rows whose work is still queued when the outbox is not empty
/// (the engine retries `EXTERNAL_SERVICE_ERROR` and `INTERNAL_VAULT_ERROR`).
const RETRY_STATUSES: &[&str] = &[
    "PENDING",
    "SYNCING",
    "UNSYNCING",
    "EXTERNAL_SERVICE_ERROR",
    "INTERNAL_VAULT_ERROR",
];

/// Per-destination counts of the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// `SYNCED` or `UNSYNCED`: the destination matches the secret.
    pub synced: usize,
    /// An error status.
    pub errors: usize,
    /// Anything else: `PENDING`, `SYNCING`, `UNSYNCING`, `UNKNOWN`.
    pub pending: usize,
}

pub fn counts(rows: &[Row]) -> Counts {
    let mut c = Counts::default();
    for row in rows {
        let s = row.sync_status.as_str();
        if DONE_STATUSES.contains(&s) {
            c.synced += 1;
        } else if ERROR_STATUSES.contains(&s) {
            c.errors += 1;
        } else {
            c.pending += 1;
        }
    }
    c
}

/// Associations (outbox entries: one per destination and secret) whose work
/// is still queued, when the outbox is not empty.
pub fn waiting_for_retry(destinations: &[DestinationStatus], report: &DrainReport) -> usize {
    if report.next_due_ms.is_none() {
        return 0;
    }
    destinations
        .iter()
        .map(|d| {
            let mut secrets: Vec<&str> = d
                .associations
                .iter()
                .filter(|r| RETRY_STATUSES.contains(&r.sync_status.as_str()))
                .map(|r| r.secret.as_str())
                .collect();
            secrets.dedup();
            secrets.len()
        })
        .sum()
}

/// The summary: one line per destination, then the totals.
pub fn run_summary(destinations: &[DestinationStatus], report: &DrainReport) -> Vec<String> {
    let mut lines = Vec::new();
    if destinations.is_empty() {
        lines.push("No destinations.".to_string());
    } else {
        let rows: Vec<Vec<String>> = destinations
            .iter()
            .map(|d| {
                let c = counts(&d.associations);
                vec![
                    cell(&d.label()),
                    c.synced.to_string(),
                    c.errors.to_string(),
                    c.pending.to_string(),
                ]
            })
            .collect();
        lines.extend(render_table(
            &["DESTINATION", "SYNCED", "ERRORS", "PENDING"],
            &rows,
        ));
    }
    lines.push(String::new());
    lines.push(format!(
        "Done: {} processed, {} failed, {} waiting for retry",
        report.processed,
        report.failed,
        waiting_for_retry(destinations, report)
    ));
    for (shard, host) in &report.elsewhere {
        let host = host.as_ref().map_or_else(
            || "another host".to_string(),
            |h| format!("host {}", h.describe()),
        );
        lines.push(format!("Shard {shard}: handled by {host}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::super::SyncCommand;
    use super::super::statuses::tests::sample;
    use super::super::tests::{parse, sync_command};
    use super::*;

    #[test]
    fn parses_sync_run() {
        match sync_command(&[
            "sync",
            "run",
            "--once",
            "--config",
            "k.hcl",
            "--sync-workers",
            "2",
            "--sync-backoff-base",
            "200ms",
        ]) {
            SyncCommand::Run(a) => {
                assert!(a.once);
                assert_eq!(a.config, PathBuf::from("k.hcl"));
                assert_eq!(a.sync.sync_workers, Some(2));
                assert_eq!(a.sync.sync_backoff_base, Some(Duration::from_millis(200)));
                assert_eq!(a.sync.sync_backoff_cap, None);
                assert_eq!(a.wait, Duration::ZERO);
            }
            other => panic!("{other:?}"),
        }
        match sync_command(&["sync", "run", "--config", "k.hcl"]) {
            SyncCommand::Run(a) => assert!(!a.once),
            other => panic!("{other:?}"),
        }
        match sync_command(&["sync", "run", "--once", "--wait", "5s", "--config", "k"]) {
            SyncCommand::Run(a) => assert_eq!(a.wait, Duration::from_secs(5)),
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&["sync", "run", "--wait", "5s", "--config", "k"]).is_err(),
            "--wait needs --once"
        );
        assert!(
            parse(&["sync", "run", "--once"]).is_err(),
            "--config is required"
        );
        assert!(parse(&["sync", "run", "--config", "k", "--sync-workers", "0"]).is_err());
        assert!(parse(&["sync", "run", "--config", "k", "--sync-workers", "65"]).is_err());
        assert!(parse(&["sync", "run", "--config", "k", "--sync-backoff-cap", "soon"]).is_err());
        assert!(parse(&["sync", "frobnicate"]).is_err());
    }

    #[test]
    fn counts_rows_by_status() {
        assert_eq!(
            counts(&sample()[0].associations),
            Counts {
                synced: 1,
                errors: 1,
                pending: 1
            }
        );
    }

    #[test]
    fn renders_the_run_summary() {
        let report = DrainReport {
            reconciled: 0,
            processed: 5,
            failed: 1,
            next_due_ms: Some(1),
            elsewhere: Vec::new(),
        };
        assert_eq!(
            run_summary(&sample(), &report),
            vec![
                "DESTINATION  SYNCED  ERRORS  PENDING",
                "in-mem/demo  1       1       1",
                "gh/repo      0       0       0",
                "",
                "Done: 5 processed, 1 failed, 2 waiting for retry",
            ]
        );
        let idle = DrainReport {
            next_due_ms: None,
            ..report
        };
        assert_eq!(
            run_summary(&[], &idle),
            vec![
                "No destinations.",
                "",
                "Done: 5 processed, 1 failed, 0 waiting for retry"
            ]
        );
    }

    #[test]
    fn waiting_counts_associations_not_rows() {
        let mut d = sample().remove(0);
        for row in &mut d.associations {
            row.sync_status = "EXTERNAL_SERVICE_ERROR".to_string();
        }
        let due = DrainReport {
            reconciled: 0,
            processed: 0,
            failed: 0,
            next_due_ms: Some(1),
            elsewhere: Vec::new(),
        };
        // Three rows, two secrets (one with two sub-keys).
        assert_eq!(waiting_for_retry(std::slice::from_ref(&d), &due), 2);
        let idle = DrainReport {
            next_due_ms: None,
            ..due
        };
        assert_eq!(waiting_for_retry(&[d], &idle), 0);
    }
}
