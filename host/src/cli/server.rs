//! `kvsync server --config FILE`, or `--dev`: serves the API with the sync
//! worker beside it until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::{SyncFlags, print};
use crate::config::Config;
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
    #[command(flatten)]
    sync: SyncFlags,
}

pub(crate) async fn exec(args: Args, env: &Env) -> anyhow::Result<ExitCode> {
    if args.dev {
        return dev(args, env).await;
    }
    let path = args.config.context("--config or --dev is required")?;
    let config = Config::load(&path)?;
    let options = Options {
        warm_instances: args.guest_warm_instances,
        sync: args.sync.apply(config.sync.clone())?,
    };
    let server = Server::open(&config, &path, env, options, Access::Serve).await?;
    let listening = server::listen(&config.listener).await?;
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
    let options = Options {
        warm_instances: args.guest_warm_instances,
        sync: args.sync.apply(SyncConfig::default())?,
    };
    let (server, root) = Server::dev(env, args.dev_root_token_id, options).await?;
    let listening = server::listen(&server::dev_listener(args.dev_listen_address)).await?;
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
