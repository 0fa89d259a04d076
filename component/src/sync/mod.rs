//! Secrets Sync: `sys/sync/...` and `sys/activation-flags`. Destinations,
//! associations and their statuses, the global config and GitHub Apps, all
//! as storage records of the tenant; provider calls go through the connector.

pub mod activation;
pub mod associations;
pub mod config;
pub mod destinations;
pub mod github_apps;
pub mod names;
pub mod status;

use crate::api::{LogicalRequest, Operation, Reply};
use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::storage::Tx;

/// Whether `path` belongs to this module.
pub fn serves(path: &str) -> bool {
    path.starts_with("sys/sync/")
        || path == "sys/activation-flags"
        || path.starts_with("sys/activation-flags/")
}

pub fn handle(tx: &mut Tx, env: &Env, req: &LogicalRequest) -> ApiResult<Reply> {
    let path = req.path.as_str();
    if let Some(rest) = path.strip_prefix("sys/activation-flags") {
        return activation::handle(tx, req, rest.trim_start_matches('/'));
    }
    activation::require_activated(tx)?;
    let rest = path.strip_prefix("sys/sync/").unwrap_or_default();
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        ["config"] => config::handle(tx, req),
        ["destinations"] => destinations::list_all(tx, req),
        ["destinations", kind] => destinations::list_type(tx, req, kind),
        ["destinations", kind, name] => destinations::handle(tx, env, req, kind, name),
        ["destinations", kind, name, "associations"] => {
            only(req, Operation::Read)?;
            associations::read(tx, kind, name)
        }
        ["destinations", kind, name, "associations", "set"] => {
            write_only(req)?;
            associations::set(tx, env, req, kind, name)
        }
        ["destinations", kind, name, "associations", "remove"] => {
            write_only(req)?;
            associations::remove(tx, env, req, kind, name)
        }
        ["destinations", "in-mem", name, "objects"] => {
            only(req, Operation::Read)?;
            destinations::objects(tx, env, "in-mem", name)
        }
        ["associations"] => {
            only(req, Operation::List)?;
            associations::list_all(tx)
        }
        ["associations", "destinations"] => {
            only(req, Operation::Read)?;
            let field = |k: &str| {
                req.data
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            associations::destinations_of_secret(tx, &field("mount"), &field("secret_name"))
        }
        ["associations", mount, secret @ ..] if !secret.is_empty() => {
            only(req, Operation::Read)?;
            associations::destinations_of_secret(tx, mount, &secret.join("/"))
        }
        ["github-apps"] => {
            only(req, Operation::List)?;
            github_apps::list(tx)
        }
        ["github-apps", name] => github_apps::handle(tx, req, name),
        _ => Err(ApiError::UnsupportedPath),
    }
}

fn only(req: &LogicalRequest, op: Operation) -> ApiResult<()> {
    if req.operation == op {
        Ok(())
    } else {
        Err(ApiError::UnsupportedOperation)
    }
}

fn write_only(req: &LogicalRequest) -> ApiResult<()> {
    only(req, Operation::Write)
}

/// Storage keys of the sync records (tenant-relative). Secret names may hold
/// `/`, so they are escaped where a key continues after them.
pub mod keys {
    pub const CONFIG: &str = "sync/config";
    pub const ACTIVATION: &str = "sync/activation";
    pub const DESTINATIONS: &str = "sync/destinations/";
    pub const GITHUB_APPS: &str = "sync/github-apps/";
    pub const BY_SECRET: &str = "sync/by-secret/";

    /// `a/b%c` → `a%2Fb%25c`.
    pub fn escape(segment: &str) -> String {
        segment.replace('%', "%25").replace('/', "%2F")
    }

    pub fn unescape(segment: &str) -> String {
        segment.replace("%2F", "/").replace("%25", "%")
    }

    pub fn destination(kind: &str, name: &str) -> String {
        format!("{DESTINATIONS}{kind}/{name}")
    }

    /// Every association of one destination lives under this prefix.
    pub fn associations_of(kind: &str, name: &str) -> String {
        format!("sync/associations/{kind}/{name}/")
    }

    pub fn association(kind: &str, name: &str, accessor: &str, secret_name: &str) -> String {
        format!(
            "{}{accessor}/{}",
            associations_of(kind, name),
            escape(secret_name)
        )
    }

    /// The index from a secret to its destinations lives under this prefix.
    pub fn destinations_of(accessor: &str, secret_name: &str) -> String {
        format!("{BY_SECRET}{accessor}/{}/", escape(secret_name))
    }

    pub fn secret_index(accessor: &str, secret_name: &str, kind: &str, name: &str) -> String {
        format!("{}{kind}/{name}", destinations_of(accessor, secret_name))
    }

    pub fn github_app(name: &str) -> String {
        format!("{GITHUB_APPS}{name}")
    }
}
