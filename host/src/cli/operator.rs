//! `kvsync operator init --config FILE`: creates the storage, its
//! encryption key and the initial root token, and shows the token once.

use std::path::PathBuf;
use std::process::ExitCode;

use super::print;
use crate::config::Config;
use crate::env::{self, Env};
use crate::server;

#[derive(clap::Args)]
pub(crate) struct InitArgs {
    #[arg(long)]
    pub(super) config: PathBuf,
}

pub(crate) async fn exec(args: InitArgs, env: &Env) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let done = server::init(&config, env).await?;
    let key_line = match &done.key_file {
        None => format!(
            "Encryption key: supplied by {} (not written to disk)",
            env::ENCRYPTION_KEY
        ),
        Some(file) => format!("Encryption key written to {} (mode 0600)", file.display()),
    };
    print(&[
        format!("Storage initialized: {}", done.storage),
        key_line,
        format!("Initial Root Token: {}", done.root.token.expose()),
        String::new(),
        "The root token is stored hashed and is shown only this once.".to_string(),
        "Keep the encryption key safe: without it the data cannot be read.".to_string(),
    ]);
    Ok(ExitCode::SUCCESS)
}
