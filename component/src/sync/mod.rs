//! Secrets Sync: `sys/sync/...` and `sys/activation-flags`. Destinations,
//! associations and their statuses, the global config and GitHub Apps, all
//! as storage records of the tenant; provider calls go through the connector.

pub mod activation;
pub mod associations;
pub mod config;
pub mod destinations;
pub mod github_apps;
pub mod names;
pub mod outbox;
pub mod reconcile;
pub mod status;
pub mod worker;

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
        ["destinations", kind, name] => destinations::handle(tx, req, kind, name),
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
    if req.operation.is_write() {
        Ok(())
    } else {
        Err(ApiError::UnsupportedOperation)
    }
}

/// Storage keys of the sync records (tenant-relative). Secret names may hold
/// `/`, so they are escaped where a key continues after them.
pub mod keys {
    pub const CONFIG: &str = "sync/config";
    pub const ACTIVATION: &str = "sync/activation";
    pub const DESTINATIONS: &str = "sync/destinations/";
    pub const GITHUB_APPS: &str = "sync/github-apps/";
    pub const BY_SECRET: &str = "sync/by-secret/";
    /// Every association record lives under this prefix.
    pub const ASSOCIATIONS: &str = "sync/associations/";
    /// Which association holds each external name of a destination: one
    /// entry per name an association's objects may occupy (collision checks
    /// cost one read per new name, not a scan of the destination).
    pub const CLAIMS: &str = "sync/claims/";
    /// The durable sync outbox: one entry per (destination, secret) with work to do.
    pub const OUTBOX: &str = "sync/outbox/";
    /// The outbox in due order, per destination:
    /// `sync/due/<type>/<name>/<due_at, 20 digits>/<accessor>/<escaped secret>`,
    /// empty values. A worker run lists the destinations of its shard and the
    /// first keys of each, so finding the earliest due entries costs a few
    /// keys, not a read of every entry (nor a look at other shards' work).
    pub const DUE: &str = "sync/due/";
    /// The number of entries in the outbox (for `queue_capacity`); outside
    /// [`OUTBOX`], so that listing the entries does not see it.
    pub const OUTBOX_COUNT: &str = "sync/outbox-count";

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
        format!("{ASSOCIATIONS}{kind}/{name}/")
    }

    pub fn association(kind: &str, name: &str, accessor: &str, secret_name: &str) -> String {
        format!(
            "{}{accessor}/{}",
            associations_of(kind, name),
            escape(secret_name)
        )
    }

    /// The claims of one destination's external names live under this prefix.
    pub fn claims_of(kind: &str, name: &str) -> String {
        format!("{CLAIMS}{kind}/{name}/")
    }

    /// The claim on external name `external` at destination `kind/name`.
    pub fn claim(kind: &str, name: &str, external: &str) -> String {
        format!("{}{}", claims_of(kind, name), escape(external))
    }

    /// The index from a secret to its destinations lives under this prefix.
    pub fn destinations_of(accessor: &str, secret_name: &str) -> String {
        format!("{BY_SECRET}{accessor}/{}/", escape(secret_name))
    }

    pub fn secret_index(accessor: &str, secret_name: &str, kind: &str, name: &str) -> String {
        format!("{}{kind}/{name}", destinations_of(accessor, secret_name))
    }

    /// The index entries of every secret of one mount (by its accessor).
    pub fn secrets_of_accessor(accessor: &str) -> String {
        format!("{BY_SECRET}{accessor}/")
    }

    /// The outbox entries of one destination live under this prefix.
    pub fn outbox_of(kind: &str, name: &str) -> String {
        format!("{OUTBOX}{kind}/{name}/")
    }

    /// The outbox entry of one association: the same identity as the association.
    pub fn outbox(kind: &str, name: &str, accessor: &str, secret_name: &str) -> String {
        format!(
            "{}{accessor}/{}",
            outbox_of(kind, name),
            escape(secret_name)
        )
    }

    /// The due index of one destination lives under this prefix.
    pub fn due_of(kind: &str, name: &str) -> String {
        format!("{DUE}{kind}/{name}/")
    }

    /// The due-index key of an outbox entry due at `due_at`.
    pub fn due(kind: &str, name: &str, accessor: &str, secret_name: &str, due_at: i64) -> String {
        format!(
            "{}{:020}/{accessor}/{}",
            due_of(kind, name),
            due_at.max(0),
            escape(secret_name)
        )
    }

    /// Splits a key relative to [`due_of`] into the due time, the accessor
    /// and the secret (unescaped).
    pub fn split_due(rel: &str) -> Option<(i64, String, String)> {
        let mut parts = rel.splitn(3, '/');
        let (at, accessor, escaped) = (parts.next()?, parts.next()?, parts.next()?);
        if accessor.is_empty() || escaped.is_empty() || escaped.contains('/') {
            return None;
        }
        Some((at.parse().ok()?, accessor.to_string(), unescape(escaped)))
    }

    /// Splits `<kind>/<name>/<accessor>/<escaped secret>` (a key relative to
    /// [`ASSOCIATIONS`] or [`OUTBOX`]) into its parts, the secret unescaped.
    pub fn split_association(rel: &str) -> Option<(String, String, String, String)> {
        let mut parts = rel.splitn(4, '/');
        let (kind, name, accessor, escaped) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if [kind, name, accessor, escaped].iter().any(|p| p.is_empty()) || escaped.contains('/') {
            return None;
        }
        Some((
            kind.to_string(),
            name.to_string(),
            accessor.to_string(),
            unescape(escaped),
        ))
    }

    pub fn github_app(name: &str) -> String {
        format!("{GITHUB_APPS}{name}")
    }
}
