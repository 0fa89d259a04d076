//! `kvsync sync run` and `kvsync sync status`.
//!
//! `run` opens the configured storage itself (no HTTP server; redb's file lock
//! keeps it from running next to a server) and drives the engine's `sync`
//! export, then reads the statuses back through the engine's API as the
//! operator. `status` asks a running server over HTTP, like the Vault CLI.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;

use super::{load_key, load_runtime, print, shutdown_signal};
use crate::auth::{Caller, ROOT_POLICY, Token};
use crate::config::{Config, parse_duration};
use crate::http::ROOT_TENANT;
use crate::runtime::{self, Runtime};
use crate::storage::{Barrier, OpenError, RedbBackend, SharedBackend, TenantStorage};
use crate::worker::{self, DrainProgress, DrainReport, MAX_WORKERS, SyncConfig, Worker};

/// The Vault CLI's default address, as plain HTTP (kvsync's dev listener).
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:8200";

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
        };
        config.validate()?;
        Ok(config)
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum SyncCommand {
    /// Process queued sync work against the configured storage, without the
    /// HTTP server (stop the server first).
    Run(RunArgs),
    /// Show every destination and the status of its associations, from a
    /// running server.
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Process the work that is due now, print a summary and exit (without
    /// it, keep syncing until interrupted).
    #[arg(long)]
    pub once: bool,
    /// With --once: also wait for queued retries that fall due within this
    /// long (e.g. 10s), instead of leaving them for later.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "once", default_value = "0s")]
    pub wait: Duration,
    /// HCL configuration file (the server's).
    #[arg(long)]
    pub config: PathBuf,
    #[command(flatten)]
    pub sync: SyncFlags,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The server's address [default: $VAULT_ADDR, else http://127.0.0.1:8200]
    #[arg(long, value_name = "URL")]
    pub address: Option<String>,
    /// The token to use [default: $VAULT_TOKEN, else ~/.vault-token]
    #[arg(long)]
    pub token: Option<String>,
    /// PEM file of the CA that signed the server's certificate [default: $VAULT_CACERT]
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify the server's TLS certificate [default: $VAULT_SKIP_VERIFY]
    #[arg(long)]
    pub tls_skip_verify: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub async fn main(command: SyncCommand) -> anyhow::Result<ExitCode> {
    match command {
        SyncCommand::Run(args) => run(args).await,
        SyncCommand::Status(args) => status(args).await,
    }
}

// ---------------------------------------------------------------------------
// Statuses: parsed from the engine's `associations` reads, rendered as tables.

/// One association row (one per sub-key with `secret-key` granularity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// `mount/secret_name`.
    pub secret: String,
    pub mount: String,
    pub secret_name: String,
    pub sub_key: Option<String>,
    pub sync_status: String,
    pub updated_at: String,
    pub error: Option<String>,
}

/// A destination and its association rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestinationStatus {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub associations: Vec<Row>,
}

impl DestinationStatus {
    fn label(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
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

/// Per-destination counts of `sync run`'s summary.
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

/// The rows of an `associations` read's `data` (`associated_secrets`), sorted
/// by secret and sub-key.
pub fn parse_associations(kind: &str, name: &str, data: &Value) -> DestinationStatus {
    let text = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).map(str::to_string);
    let mut rows: Vec<Row> = data
        .get("associated_secrets")
        .and_then(Value::as_object)
        .map(|secrets| {
            secrets
                .values()
                .map(|entry| {
                    let mount = text(entry, "mount")
                        .or_else(|| text(entry, "accessor"))
                        .unwrap_or_default();
                    let secret_name = text(entry, "secret_name").unwrap_or_default();
                    Row {
                        secret: format!("{mount}/{secret_name}"),
                        mount,
                        secret_name,
                        sub_key: text(entry, "sub_key").filter(|s| !s.is_empty()),
                        sync_status: text(entry, "sync_status")
                            .unwrap_or_else(|| "UNKNOWN".to_string()),
                        updated_at: text(entry, "updated_at").unwrap_or_default(),
                        error: text(entry, "error").filter(|s| !s.is_empty()),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    rows.sort_by(|a, b| (&a.secret, &a.sub_key).cmp(&(&b.secret, &b.sub_key)));
    DestinationStatus {
        kind: kind.to_string(),
        name: name.to_string(),
        associations: rows,
    }
}

/// `(type, name)` pairs of a `LIST sys/sync/destinations` answer's `data`, sorted.
pub fn parse_destination_list(data: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(by_type) = data.get("key_info").and_then(Value::as_object) {
        for (kind, names) in by_type {
            for name in names.as_array().into_iter().flatten() {
                if let Some(name) = name.as_str() {
                    out.push((kind.clone(), name.to_string()));
                }
            }
        }
    }
    out.sort();
    out
}

/// One line of a table cell: control characters (newlines in provider
/// messages) become spaces; empty cells are `-`.
fn cell(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let s = s.trim();
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// Left-aligned columns separated by two spaces, without trailing blanks.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, value) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(value.chars().count());
            }
        }
    }
    let line = |values: Vec<&str>| {
        let mut out = String::new();
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(value);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(value.chars().count());
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.trim_end().to_string()
    };
    let mut lines = vec![line(header.to_vec())];
    lines.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    lines
}

/// `kvsync sync status`'s table: one line per association row; a
/// destination without associations gets one line of dashes.
pub fn status_table(destinations: &[DestinationStatus]) -> Vec<String> {
    if destinations.is_empty() {
        return vec!["No destinations.".to_string()];
    }
    let mut rows = Vec::new();
    for d in destinations {
        if d.associations.is_empty() {
            rows.push(vec![
                cell(&d.label()),
                cell(""),
                cell(""),
                cell(""),
                cell(""),
                cell(""),
            ]);
        }
        for r in &d.associations {
            rows.push(vec![
                cell(&d.label()),
                cell(&r.secret),
                cell(r.sub_key.as_deref().unwrap_or("")),
                cell(&r.sync_status),
                cell(&r.updated_at),
                cell(r.error.as_deref().unwrap_or("")),
            ]);
        }
    }
    render_table(
        &[
            "DESTINATION",
            "SECRET",
            "SUB_KEY",
            "STATUS",
            "UPDATED_AT",
            "ERROR",
        ],
        &rows,
    )
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

/// `kvsync sync run --once`'s summary: one line per destination, then the totals.
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
    lines
}

// ---------------------------------------------------------------------------
// `kvsync sync run`

/// The operator, for API calls the CLI makes through the engine: it holds the
/// storage and its encryption key, so it may read everything.
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
    }
}

/// Percent-encodes one path segment (everything but RFC 3986's unreserved set).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn associations_path(kind: &str, name: &str) -> String {
    format!(
        "sys/sync/destinations/{}/{}/associations",
        encode_segment(kind),
        encode_segment(name)
    )
}

/// The `errors` of a Vault error body, joined; the status alone otherwise.
fn error_text(status: u16, body: &[u8]) -> String {
    let errors: Vec<String> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("errors").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    if errors.is_empty() {
        format!("status {status}")
    } else {
        format!("status {status}: {}", errors.join("; "))
    }
}

/// One API call through the engine as the operator: the response's `data`,
/// `None` on 404.
async fn engine_call(
    runtime: &Runtime,
    backend: &SharedBackend,
    method: &str,
    path: &str,
) -> anyhow::Result<Option<Value>> {
    let req = runtime::request(method, path, b"", Some(operator()));
    let resp = runtime
        .handle(TenantStorage::new(backend.clone(), ROOT_TENANT), req)
        .await
        .with_context(|| format!("{method} {path}"))?;
    if resp.status == 404 {
        return Ok(None);
    }
    if resp.status >= 300 {
        anyhow::bail!("{method} {path}: {}", error_text(resp.status, &resp.body));
    }
    let body: Value = serde_json::from_slice(&resp.body)
        .with_context(|| format!("{method} {path}: the response is not JSON"))?;
    Ok(Some(body.get("data").cloned().unwrap_or(Value::Null)))
}

/// Every destination's statuses, read through the engine.
async fn engine_statuses(
    runtime: &Runtime,
    backend: &SharedBackend,
) -> anyhow::Result<Vec<DestinationStatus>> {
    let Some(list) = engine_call(runtime, backend, "LIST", "sys/sync/destinations").await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (kind, name) in parse_destination_list(&list) {
        let path = associations_path(&kind, &name);
        if let Some(data) = engine_call(runtime, backend, "GET", &path).await? {
            out.push(parse_associations(&kind, &name, &data));
        }
    }
    Ok(out)
}

/// The message when the storage file is locked by another process.
pub fn in_use_message(storage_dir: &Path) -> String {
    format!(
        "the storage at {} is in use by a running kvsync server; stop it or use `kvsync sync status`",
        storage_dir.display()
    )
}

async fn open_storage(config: &Config, config_path: &Path) -> anyhow::Result<SharedBackend> {
    let key = load_key(config)?;
    let redb = match RedbBackend::open_exclusive(&config.storage_file()) {
        Ok(redb) => redb,
        Err(OpenError::InUse(_)) => anyhow::bail!("{}", in_use_message(&config.storage_dir)),
        Err(OpenError::Storage(e)) => anyhow::bail!(
            "cannot open storage {}: {e}",
            config.storage_file().display()
        ),
    };
    let barrier = Barrier::new(redb, key);
    if !barrier.is_initialized().await? {
        anyhow::bail!(
            "storage at {} is not initialized: run `kvsync operator init --config {}` first",
            config.storage_dir.display(),
            config_path.display()
        );
    }
    barrier.check_key().await?;
    Ok(Arc::new(barrier))
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let sync = args.sync.apply(config.sync.clone())?;
    let backend = open_storage(&config, &args.config).await?;
    let runtime = load_runtime(
        config.limits.clone(),
        config.cache_dir.clone(),
        config.provider_timeout,
    )?;
    if !args.once {
        let worker = Worker::start(
            runtime,
            backend,
            ROOT_TENANT,
            sync,
            Arc::new(tokio::sync::Notify::new()),
        );
        eprintln!("Syncing queued work; press Ctrl-C to stop.");
        shutdown_signal().await;
        worker.stop(worker::SHUTDOWN_GRACE).await;
        return Ok(ExitCode::SUCCESS);
    }

    let progress = Arc::new(DrainProgress::default());
    let drain = worker::drain(
        &runtime,
        &backend,
        ROOT_TENANT,
        &sync,
        args.wait,
        progress.clone(),
    );
    let report = if std::io::stdout().is_terminal() {
        with_progress(drain, &progress).await
    } else {
        drain.await
    }
    .context("sync run failed")?;
    let destinations = engine_statuses(&runtime, &backend).await?;
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

// ---------------------------------------------------------------------------
// `kvsync sync status`

/// Where and how `status` connects, after flags and environment.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub address: String,
    pub ca_cert: Option<PathBuf>,
    pub tls_skip_verify: bool,
}

/// Flags first, then `VAULT_ADDR`, `VAULT_CACERT`, `VAULT_SKIP_VERIFY`.
pub fn target(args: &StatusArgs, env: &dyn Fn(&str) -> Option<String>) -> Target {
    let address = args
        .address
        .clone()
        .or_else(|| env("VAULT_ADDR"))
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
    let skip_env = env("VAULT_SKIP_VERIFY")
        .is_some_and(|v| matches!(v.trim(), "1" | "true" | "t" | "TRUE" | "True"));
    Target {
        address: address.trim().trim_end_matches('/').to_string(),
        ca_cert: args.ca_cert.clone().or_else(|| {
            env("VAULT_CACERT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        }),
        tls_skip_verify: args.tls_skip_verify || skip_env,
    }
}

/// `--token`, then `VAULT_TOKEN`, then `~/.vault-token` (as the Vault CLI).
pub fn token(args: &StatusArgs, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    args.token
        .clone()
        .or_else(|| env("VAULT_TOKEN"))
        .or_else(|| {
            let home = env("HOME")?;
            std::fs::read_to_string(Path::new(&home).join(".vault-token")).ok()
        })
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

struct Client {
    http: reqwest::Client,
    address: String,
    token: String,
}

impl Client {
    fn new(target: &Target, token: String) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .danger_accept_invalid_certs(target.tls_skip_verify);
        if let Some(file) = &target.ca_cert {
            let pem = std::fs::read(file)
                .with_context(|| format!("cannot read the CA certificate {}", file.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("invalid CA certificate {}", file.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Client {
            http: builder.build().context("cannot build the HTTP client")?,
            address: target.address.clone(),
            token,
        })
    }

    /// GET `/v1/<path>`: the response's `data`, `None` on 404.
    async fn get(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let url = format!("{}/v1/{path}", self.address);
        let resp = self
            .http
            .get(&url)
            .header("X-Vault-Token", &self.token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {}: {}", self.address, chain(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("GET /v1/{path}: cannot read the response: {e}"))?;
        if status == 404 {
            return Ok(None);
        }
        if status >= 300 {
            anyhow::bail!("GET /v1/{path}: {}", error_text(status, &body));
        }
        let body: Value = serde_json::from_slice(&body)
            .with_context(|| format!("GET /v1/{path}: the response is not JSON"))?;
        Ok(Some(body.get("data").cloned().unwrap_or(Value::Null)))
    }
}

/// An error and its sources, `: `-separated (reqwest's own text is terse).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let env = |name: &str| std::env::var(name).ok();
    let target = target(&args, &env);
    let token = token(&args, &env)
        .context("no token: pass --token, set VAULT_TOKEN or write ~/.vault-token")?;
    let client = Client::new(&target, token)?;
    let mut destinations = Vec::new();
    if let Some(list) = client.get("sys/sync/destinations?list=true").await? {
        for (kind, name) in parse_destination_list(&list) {
            if let Some(data) = client.get(&associations_path(&kind, &name)).await? {
                destinations.push(parse_associations(&kind, &name, &data));
            }
        }
    }
    match args.format {
        Format::Table => print(&status_table(&destinations)),
        Format::Json => {
            let json = serde_json::json!({ "destinations": destinations });
            print(&[serde_json::to_string_pretty(&json)?]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use serde_json::json;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kvsync").chain(args.iter().copied()))
    }

    fn sync_command(args: &[&str]) -> SyncCommand {
        match parse(args).unwrap().command {
            Command::Sync { command } => command,
            _ => panic!("not a sync command"),
        }
    }

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
    fn parses_sync_status() {
        match sync_command(&["sync", "status"]) {
            SyncCommand::Status(a) => {
                assert_eq!(a.address, None);
                assert_eq!(a.token, None);
                assert_eq!(a.format, Format::Table);
                assert!(!a.tls_skip_verify);
            }
            other => panic!("{other:?}"),
        }
        match sync_command(&[
            "sync",
            "status",
            "--address",
            "http://127.0.0.1:9999/",
            "--token",
            "t0k",
            "--format",
            "json",
            "--tls-skip-verify",
        ]) {
            SyncCommand::Status(a) => {
                assert_eq!(a.address.as_deref(), Some("http://127.0.0.1:9999/"));
                assert_eq!(a.token.as_deref(), Some("t0k"));
                assert_eq!(a.format, Format::Json);
                assert!(a.tls_skip_verify);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["sync", "status", "--format", "yaml"]).is_err());
    }

    #[test]
    fn status_target_prefers_flags_then_vault_env() {
        let args = |address: Option<&str>, token: Option<&str>| StatusArgs {
            address: address.map(str::to_string),
            token: token.map(str::to_string),
            ca_cert: None,
            tls_skip_verify: false,
            format: Format::Table,
        };
        let env = |name: &str| match name {
            "VAULT_ADDR" => Some("https://vault.example:8200/".to_string()),
            "VAULT_TOKEN" => Some(" env-token\n".to_string()),
            "VAULT_CACERT" => Some("/etc/ca.pem".to_string()),
            "VAULT_SKIP_VERIFY" => Some("true".to_string()),
            _ => None,
        };
        let none = |_: &str| None;
        let t = target(&args(None, None), &env);
        assert_eq!(t.address, "https://vault.example:8200");
        assert_eq!(t.ca_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert!(t.tls_skip_verify);
        assert_eq!(
            target(&args(Some("http://10.0.0.1:8200"), None), &env).address,
            "http://10.0.0.1:8200"
        );
        let t = target(&args(None, None), &none);
        assert_eq!(t.address, DEFAULT_ADDRESS);
        assert!(!t.tls_skip_verify);
        assert_eq!(token(&args(None, None), &env).as_deref(), Some("env-token"));
        assert_eq!(
            token(&args(None, Some("flag")), &env).as_deref(),
            Some("flag")
        );
        assert_eq!(token(&args(None, None), &none), None);
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

    fn sample() -> Vec<DestinationStatus> {
        let demo = parse_associations(
            "in-mem",
            "demo",
            &json!({
                "store_name": "demo",
                "store_type": "in-mem",
                "associated_secrets": {
                    "kv_1/app/db/password": {
                        "accessor": "kv_1", "mount": "secret", "secret_name": "app/db",
                        "sub_key": "password", "sync_status": "SYNCED",
                        "updated_at": "2025-01-02T03:04:05Z"
                    },
                    "kv_1/app/api": {
                        "accessor": "kv_1", "mount": "secret", "secret_name": "app/api",
                        "sync_status": "EXTERNAL_SERVICE_ERROR",
                        "updated_at": "2025-01-02T03:04:06Z",
                        "error": "provider unavailable:\nretry later"
                    },
                    "kv_1/app/db/user": {
                        "accessor": "kv_1", "mount": "secret", "secret_name": "app/db",
                        "sub_key": "user", "sync_status": "PENDING",
                        "updated_at": "2025-01-02T03:04:05Z"
                    }
                }
            }),
        );
        let empty = parse_associations("gh", "repo", &json!({"associated_secrets": {}}));
        vec![demo, empty]
    }

    #[test]
    fn parses_destination_lists_and_associations() {
        let list = parse_destination_list(&json!({
            "keys": ["in-mem", "gh"],
            "key_info": {"in-mem": ["b", "a"], "gh": ["repo"]},
            "total_destinations": 3
        }));
        assert_eq!(
            list,
            vec![
                ("gh".to_string(), "repo".to_string()),
                ("in-mem".to_string(), "a".to_string()),
                ("in-mem".to_string(), "b".to_string()),
            ]
        );
        assert!(parse_destination_list(&Value::Null).is_empty());
        let d = &sample()[0];
        let secrets: Vec<_> = d
            .associations
            .iter()
            .map(|r| (r.secret.as_str(), r.sub_key.as_deref()))
            .collect();
        assert_eq!(
            secrets,
            vec![
                ("secret/app/api", None),
                ("secret/app/db", Some("password")),
                ("secret/app/db", Some("user")),
            ]
        );
        assert_eq!(
            counts(&d.associations),
            Counts {
                synced: 1,
                errors: 1,
                pending: 1
            }
        );
    }

    #[test]
    fn renders_the_status_table() {
        let lines = status_table(&sample());
        assert_eq!(
            lines,
            vec![
                "DESTINATION  SECRET          SUB_KEY   STATUS                  UPDATED_AT            ERROR",
                "in-mem/demo  secret/app/api  -         EXTERNAL_SERVICE_ERROR  2025-01-02T03:04:06Z  provider unavailable: retry later",
                "in-mem/demo  secret/app/db   password  SYNCED                  2025-01-02T03:04:05Z  -",
                "in-mem/demo  secret/app/db   user      PENDING                 2025-01-02T03:04:05Z  -",
                "gh/repo      -               -         -                       -                     -",
            ]
        );
        assert_eq!(status_table(&[]), vec!["No destinations."]);
        let json = serde_json::to_value(&sample()[0]).unwrap();
        assert_eq!(json["type"], "in-mem");
        assert_eq!(json["associations"][1]["sub_key"], "password");
        assert_eq!(json["associations"][0]["sub_key"], Value::Null);
    }

    #[test]
    fn renders_the_run_summary() {
        let report = DrainReport {
            reconciled: 0,
            processed: 5,
            failed: 1,
            next_due_ms: Some(1),
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
        };
        // Three rows, two secrets (one with two sub-keys).
        assert_eq!(waiting_for_retry(std::slice::from_ref(&d), &due), 2);
        let idle = DrainReport {
            next_due_ms: None,
            ..due
        };
        assert_eq!(waiting_for_retry(&[d], &idle), 0);
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode_segment("my-dest_1.x~"), "my-dest_1.x~");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(
            associations_path("in-mem", "d"),
            "sys/sync/destinations/in-mem/d/associations"
        );
    }

    #[test]
    fn error_bodies_are_summarised() {
        assert_eq!(
            error_text(403, br#"{"errors":["permission denied"]}"#),
            "status 403: permission denied"
        );
        assert_eq!(error_text(502, b"bad gateway"), "status 502");
        assert!(in_use_message(Path::new("/var/lib/kvsync")).contains("/var/lib/kvsync is in use"));
    }
}
