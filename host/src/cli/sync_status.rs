//! `kvsync sync status`: asks a running server over its HTTP API, as the
//! Vault CLI would, and prints every association row (or JSON).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::Value;

use super::print;
use super::statuses::{ApiReader, DestinationStatus, cell, read_statuses, render_table};
use crate::env::Env;
use crate::vault_client::{Client, Target, resolve_token};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The server's address [default: $VAULT_ADDR, else http://127.0.0.1:8200]
    #[arg(long, value_name = "URL")]
    address: Option<String>,
    /// The token to use [default: $VAULT_TOKEN, else ~/.vault-token]
    #[arg(long)]
    token: Option<String>,
    /// PEM file of the CA that signed the server's certificate [default: $VAULT_CACERT]
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Do not verify the server's TLS certificate [default: $VAULT_SKIP_VERIFY]
    #[arg(long)]
    tls_skip_verify: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub(crate) async fn exec(args: Args, env: &Env) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(args.address, args.ca_cert, args.tls_skip_verify, &env.vault);
    let token = resolve_token(args.token, &env.vault)
        .context("no token: pass --token, set VAULT_TOKEN or write ~/.vault-token")?;
    let client = Client::new(&target, token)?;
    let destinations = read_statuses(&Http(&client)).await?;
    match args.format {
        Format::Table => print(&status_table(&destinations)),
        Format::Json => {
            let json = serde_json::json!({ "destinations": destinations });
            print(&[serde_json::to_string_pretty(&json)?]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The server's API over HTTP.
struct Http<'a>(&'a Client);

impl ApiReader for Http<'_> {
    async fn list(&self, path: &str) -> anyhow::Result<Option<Value>> {
        self.0.get(&format!("{path}?list=true")).await
    }

    async fn read(&self, path: &str) -> anyhow::Result<Option<Value>> {
        self.0.get(path).await
    }
}

/// The table: one line per association row; a destination without
/// associations gets one line of dashes.
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

#[cfg(test)]
mod tests {
    use super::super::SyncCommand;
    use super::super::statuses::tests::sample;
    use super::super::tests::{parse, sync_command};
    use super::*;

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
}
