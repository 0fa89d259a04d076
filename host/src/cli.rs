//! The `kvsync` command line: `server` (`--dev` or `--config`), `operator init`,
//! and `sync run` / `sync status` (in [`sync`]).

mod sync;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::sync::Notify;

use crate::auth::{Token, TokenStore};
use crate::config::{Config, Listener};
use crate::connectors::{Connectors, DEFAULT_TIMEOUT};
use crate::http::{self, AppState, DEFAULT_MAX_REQUEST_SIZE, ROOT_TENANT};
use crate::runtime::{self, Limits, Runtime};
use crate::storage::{Barrier, EncryptionKey, RedbBackend, SharedBackend, TenantStorage};
use crate::worker::{self, SyncConfig, Worker};
use sync::{SyncCommand, SyncFlags};

/// Environment variable that supplies the encryption key (base64 of 32 bytes).
pub const KEY_ENV: &str = "KVSYNC_ENCRYPTION_KEY";

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
    Server(ServerArgs),
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

#[derive(clap::Args)]
pub(crate) struct ServerArgs {
    /// Development mode: in-memory storage, a root token, KV-v2 mounted at secret/.
    #[arg(long, conflicts_with = "config")]
    dev: bool,
    /// Root token id in dev mode (default: random).
    #[arg(long, requires = "dev")]
    dev_root_token_id: Option<String>,
    /// Address to listen on in dev mode.
    #[arg(long, requires = "dev", default_value = "127.0.0.1:8200")]
    dev_listen_address: String,
    /// HCL configuration file.
    #[arg(long, required_unless_present = "dev")]
    config: Option<PathBuf>,
    /// Idle engine instances kept for reuse by later requests of the same
    /// tenant; 0: a fresh instance for every request [config: guest_warm_instances; default: 16]
    #[arg(long, value_name = "N")]
    guest_warm_instances: Option<u32>,
    #[command(flatten)]
    sync: SyncFlags,
}

#[derive(Subcommand)]
pub(crate) enum OperatorCommand {
    /// Create the encryption key and the initial root token for the configured storage.
    Init {
        #[arg(long)]
        config: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_level = match &cli.command {
        Command::Server(ServerArgs {
            config: Some(p), ..
        })
        | Command::Operator {
            command: OperatorCommand::Init { config: p },
        }
        | Command::Sync {
            command: SyncCommand::Run(sync::RunArgs { config: p, .. }),
        } => Config::load(p).ok().and_then(|c| c.log_level),
        _ => None,
    };
    init_logging(log_level.as_deref());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(async {
        match cli.command {
            Command::Server(args) => server(args).await.map(|()| ExitCode::SUCCESS),
            Command::Operator {
                command: OperatorCommand::Init { config },
            } => operator_init(&config).await.map(|()| ExitCode::SUCCESS),
            Command::Sync { command } => sync::main(command).await,
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

fn init_logging(level: Option<&str>) {
    let filter = std::env::var("KVSYNC_LOG")
        .ok()
        .or_else(|| level.map(str::to_string))
        .unwrap_or_else(|| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub(crate) fn print(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    if args.dev {
        return dev_server(args).await;
    }
    let path = args.config.context("--config or --dev is required")?;
    let config = Config::load(&path)?;
    let sync = args.sync.apply(config.sync.clone())?;
    let key = load_key(&config)?;
    let redb = RedbBackend::open(&config.storage_file()).map_err(|e| {
        anyhow::anyhow!(
            "cannot open storage {}: {e}",
            config.storage_file().display()
        )
    })?;
    let barrier = Barrier::new(redb, key);
    if !barrier.is_initialized().await? {
        anyhow::bail!(
            "storage at {} is not initialized: run `kvsync operator init --config {}` first",
            config.storage_dir.display(),
            path.display()
        );
    }
    barrier.check_key().await?;
    let backend: SharedBackend = Arc::new(barrier);
    let mut limits = config.limits.clone();
    if let Some(n) = args.guest_warm_instances {
        limits.warm_instances = n;
    }
    let runtime = load_runtime(limits, config.cache_dir.clone(), config.provider_timeout)?
        .with_inline_bound(config.sync_inline_timeout);
    let tls = match &config.listener.tls {
        Some((cert, key)) => Some(http::tls::acceptor(cert, key)?),
        None => None,
    };
    let (listener, addr) = http::bind(&config.listener.address).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    print(&[
        "==> kvsync server started! Log data will stream in below:".to_string(),
        String::new(),
        format!(
            "             Storage: redb (path: {})",
            config.storage_dir.display()
        ),
        format!("         Api Address: {scheme}://{addr}"),
        String::new(),
    ]);
    let state = Arc::new(AppState {
        api: Arc::new(runtime.clone()),
        tokens: TokenStore::new(backend.clone()),
        backend,
        max_request_size: config.listener.max_request_size,
        sync_wake: Arc::new(Notify::new()),
    });
    serve_with_worker(listener, tls, state, runtime, sync).await;
    tracing::info!("kvsync server stopped");
    Ok(())
}

async fn dev_server(args: ServerArgs) -> anyhow::Result<()> {
    let sync = args.sync.apply(SyncConfig::default())?;
    let key = EncryptionKey::generate()?;
    let barrier = Barrier::new(RedbBackend::in_memory()?, key);
    barrier.init_key_check().await?;
    let backend: SharedBackend = Arc::new(barrier);
    let tokens = TokenStore::new(backend.clone());
    let root = tokens.create_root(args.dev_root_token_id.clone()).await?;
    let mut limits = Limits::default();
    if let Some(n) = args.guest_warm_instances {
        limits.warm_instances = n;
    }
    let runtime = load_runtime(limits, None, DEFAULT_TIMEOUT)?;
    mount_dev_kv(&runtime, &backend, &tokens, root.token.clone()).await?;
    let listener = Listener {
        address: args.dev_listen_address,
        tls: None,
        max_request_size: DEFAULT_MAX_REQUEST_SIZE,
    };
    let (tcp, addr) = http::bind(&listener.address).await?;
    print(&[
        "==> kvsync server started! Log data will stream in below:".to_string(),
        String::new(),
        "WARNING! dev mode is enabled! In this mode, kvsync runs entirely in-memory".to_string(),
        "and starts with a single root token; every secret is lost when it stops.".to_string(),
        String::new(),
        "You may need to set the following environment variables:".to_string(),
        String::new(),
        format!("    $ export VAULT_ADDR='http://{addr}'"),
        String::new(),
        format!("Api Address: http://{addr}"),
        format!("Root Token: {}", root.token.expose()),
        String::new(),
        "Development mode should NOT be used in production installations!".to_string(),
        String::new(),
    ]);
    let state = Arc::new(AppState {
        api: Arc::new(runtime.clone()),
        backend,
        tokens,
        max_request_size: listener.max_request_size,
        sync_wake: Arc::new(Notify::new()),
    });
    serve_with_worker(tcp, None, state, runtime, sync).await;
    Ok(())
}

/// Serves HTTP with the root tenant's sync worker beside it, until a shutdown
/// signal: then the listener and the worker stop together, each letting work
/// in flight finish within its grace period.
async fn serve_with_worker(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AppState>,
    runtime: Runtime,
    sync: SyncConfig,
) {
    let worker = Worker::start(
        runtime,
        state.backend.clone(),
        ROOT_TENANT,
        sync,
        state.sync_wake.clone(),
    );
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    };
    let stop_worker = async move {
        // An error means the sender is gone: the server is stopping anyway.
        let _ = stopped.wait_for(|s| *s).await;
        worker.stop(worker::SHUTDOWN_GRACE).await;
    };
    tokio::join!(http::serve(listener, tls, state, shutdown), stop_worker);
}

/// Mounts KV-v2 at `secret/` through the engine itself, as any client would.
async fn mount_dev_kv(
    runtime: &Runtime,
    backend: &SharedBackend,
    tokens: &TokenStore,
    root_token: Token,
) -> anyhow::Result<()> {
    let caller = tokens.lookup(root_token).await?;
    let req = runtime::request(
        "POST",
        "sys/mounts/secret",
        br#"{"type":"kv","options":{"version":"2"},"description":"key/value secret storage"}"#,
        caller,
    );
    let resp = runtime
        .handle(TenantStorage::new(backend.clone(), ROOT_TENANT), req)
        .await?;
    if resp.status >= 300 {
        anyhow::bail!(
            "cannot mount secret/: {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
    }
    Ok(())
}

/// The engine runtime with every registered destination connector.
pub(crate) fn load_runtime(
    limits: Limits,
    cache_dir: Option<PathBuf>,
    provider_timeout: Duration,
) -> anyhow::Result<Runtime> {
    let cache_dir = cache_dir.or_else(runtime::default_cache_dir);
    let connectors = Arc::new(Connectors::new().with_timeout(provider_timeout));
    Runtime::new(
        runtime::ENGINE_COMPONENT,
        limits,
        connectors,
        cache_dir.as_deref(),
    )
}

pub(crate) fn load_key(config: &Config) -> anyhow::Result<EncryptionKey> {
    if let Ok(b64) = std::env::var(KEY_ENV) {
        return EncryptionKey::from_base64(b64.trim())
            .map_err(|e| anyhow::anyhow!("{KEY_ENV}: {e}"));
    }
    let text = std::fs::read_to_string(&config.encryption_key_file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the encryption key file {} ({e}); set {KEY_ENV} or run `kvsync operator init`",
            config.encryption_key_file.display()
        )
    })?;
    EncryptionKey::from_base64(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "encryption key file {}: {e}",
            config.encryption_key_file.display()
        )
    })
}

async fn operator_init(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    std::fs::create_dir_all(&config.storage_dir)
        .with_context(|| format!("cannot create {}", config.storage_dir.display()))?;
    let from_env = std::env::var(KEY_ENV).is_ok();
    let key = if from_env {
        load_key(&config)?
    } else {
        EncryptionKey::generate()?
    };
    let redb = RedbBackend::open(&config.storage_file())?;
    let barrier = Barrier::new(redb, key.clone());
    if barrier.is_initialized().await? {
        anyhow::bail!(
            "storage at {} is already initialized",
            config.storage_dir.display()
        );
    }
    if !from_env {
        write_key_file(&config.encryption_key_file, &key)?;
    }
    barrier.init_key_check().await?;
    let backend: SharedBackend = Arc::new(barrier);
    let root = TokenStore::new(backend).create_root(None).await?;
    let key_line = if from_env {
        format!("Encryption key: supplied by {KEY_ENV} (not written to disk)")
    } else {
        format!(
            "Encryption key written to {} (mode 0600)",
            config.encryption_key_file.display()
        )
    };
    print(&[
        key_line,
        format!("Initial Root Token: {}", root.token.expose()),
        String::new(),
        "The root token is stored hashed and is shown only this once.".to_string(),
        "Keep the encryption key safe: without it the data cannot be read.".to_string(),
    ]);
    Ok(())
}

fn write_key_file(path: &Path, key: &EncryptionKey) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create the key file {}: {e}", path.display()))?;
    file.write_all(key.to_base64().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    tracing::info!("shutting down");
}
