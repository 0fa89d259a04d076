//! `kvsync server --config FILE`, or `--dev`: serves the API with the sync
//! worker beside it until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::{SyncFlags, print};
use crate::config::{Config, Listener, parse_duration};
use crate::env::Env;
use crate::server::{self, Access, Options, Server};
use crate::worker::SyncConfig;

#[derive(clap::Args)]
pub(crate) struct Args {
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
    pub(super) config: Option<PathBuf>,
    /// Idle engine instances kept for reuse by later requests of the same
    /// tenant; 0: a fresh instance for every request [config: guest_warm_instances; default: 16]
    #[arg(long, value_name = "N")]
    guest_warm_instances: Option<u32>,
    /// API requests of one namespace that may run at once; more wait briefly, then get 503 [config: tenant_max_concurrent_requests; default: half of max_concurrent_requests]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    tenant_max_concurrent_requests: Option<u32>,
    /// API requests whose engine call runs at once; more wait, served round-robin across namespaces [config: max_running_requests; default: 1 per CPU]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_running_requests: Option<u32>,
    #[command(flatten)]
    sync: SyncFlags,
    #[command(flatten)]
    listener: ListenerFlags,
}

/// The listener's timeouts and cap; a flag overrides the config file.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct ListenerFlags {
    /// Time from a request's first byte to its last header [config: listener http_read_header_timeout; default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    http_read_header_timeout: Option<Duration>,
    /// Time from a request's first byte to the end of its body [config: listener http_read_timeout; default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    http_read_timeout: Option<Duration>,
    /// How long a connection may wait for its next request [config: listener http_idle_timeout; default: 5m]
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    http_idle_timeout: Option<Duration>,
    /// Bound on a whole request; past it the request is answered 503 [config: listener max_request_duration; default: 90s]
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    max_request_duration: Option<Duration>,
    /// Time from accept to a finished TLS handshake [config: listener tls_handshake_timeout; default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    tls_handshake_timeout: Option<Duration>,
    /// Open connections at once; more wait in the accept backlog [config: listener max_connections; default: 4096]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be longer than zero".to_string()),
        d => Ok(d),
    }
}

impl ListenerFlags {
    /// `listener` with the flags given applied.
    fn apply(&self, mut listener: Listener) -> Listener {
        let limits = &mut listener.limits;
        for (flag, into) in [
            (
                self.http_read_header_timeout,
                &mut limits.read_header_timeout,
            ),
            (self.http_read_timeout, &mut limits.read_timeout),
            (self.http_idle_timeout, &mut limits.idle_timeout),
            (
                self.tls_handshake_timeout,
                &mut limits.tls_handshake_timeout,
            ),
            (
                self.max_request_duration,
                &mut listener.max_request_duration,
            ),
        ] {
            if let Some(d) = flag {
                *into = d;
            }
        }
        if let Some(n) = self.max_connections {
            limits.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
        }
        listener
    }
}

pub(crate) async fn exec(args: Args, env: &Env) -> anyhow::Result<ExitCode> {
    if args.dev {
        return dev(args, env).await;
    }
    let path = args.config.context("--config or --dev is required")?;
    let config = Config::load(&path)?;
    let listener = args.listener.apply(config.listener.clone());
    let options = Options {
        warm_instances: args.guest_warm_instances,
        tenant_max_concurrent_requests: args.tenant_max_concurrent_requests,
        max_running_requests: args.max_running_requests,
        max_request_duration: Some(listener.max_request_duration),
        sync: args.sync.apply(config.sync.clone())?,
    };
    let server = Server::open(&config, &path, env, options, Access::Serve).await?;
    let listening = server::listen(&listener).await?;
    let scheme = if listening.tls.is_some() {
        "https"
    } else {
        "http"
    };
    print(&[
        "==> kvsync server started! Log data will stream in below:".to_string(),
        String::new(),
        format!("             Storage: {}", server.storage_description()),
        format!("         Api Address: {scheme}://{}", listening.addr),
        String::new(),
    ]);
    server.serve(listening, server::shutdown_signal()).await;
    tracing::info!("kvsync server stopped");
    Ok(ExitCode::SUCCESS)
}

async fn dev(args: Args, env: &Env) -> anyhow::Result<ExitCode> {
    let listener = args
        .listener
        .apply(server::dev_listener(args.dev_listen_address));
    let options = Options {
        warm_instances: args.guest_warm_instances,
        tenant_max_concurrent_requests: args.tenant_max_concurrent_requests,
        max_running_requests: args.max_running_requests,
        max_request_duration: Some(listener.max_request_duration),
        sync: args.sync.apply(SyncConfig::default())?,
    };
    let (server, root) = Server::dev(env, args.dev_root_token_id, options).await?;
    let listening = server::listen(&listener).await?;
    let addr = listening.addr;
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
    drop(root);
    server.serve(listening, server::shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}
