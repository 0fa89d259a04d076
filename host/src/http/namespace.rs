//! The request's namespace, for the HTTP front: resolved from the
//! `X-Vault-Namespace` header and the path prefix ([`resolve_request`]), the
//! root-namespace-only `sys/` paths, and the token paths that always run in
//! the token's own namespace.

use std::sync::Arc;

use super::HostError;
use crate::auth::Caller;
use crate::namespaces::{Addressed, NamespaceStore, Record, resolve_request};

/// `sys/` paths served in the root namespace only (Vault's restricted
/// endpoints): a child namespace gets 400. Each matches itself and what is
/// under it.
const ROOT_ONLY: &[&str] = &[
    "sys/audit",
    "sys/audit-hash",
    "sys/config/auditing",
    "sys/config/cors",
    "sys/config/ui",
    "sys/config/state",
    "sys/config/reload",
    "sys/health",
    "sys/host-info",
    "sys/in-flight-req",
    "sys/init",
    "sys/key-status",
    "sys/loggers",
    "sys/metrics",
    "sys/monitor",
    "sys/pprof",
    "sys/quotas",
    "sys/raw",
    "sys/seal",
    "sys/step-down",
    "sys/storage",
    "sys/unseal",
    "sys/internal/counters",
    "sys/internal/inspect/router",
    "sys/sync/config",
    "sys/activation-flags",
];

/// Root-only prefixes matched as they are (`sys/rekey-recovery-key`,
/// `sys/rotate/config`).
const ROOT_ONLY_PREFIXES: &[&str] = &["sys/rekey", "sys/rotate"];

/// The token paths that run in the caller's token's namespace, whatever the
/// request addresses.
const SELF_PATHS: &[&str] = &[
    "auth/token/lookup-self",
    "auth/token/renew-self",
    "auth/token/revoke-self",
];

/// Where a request runs.
pub async fn address(
    namespaces: &NamespaceStore,
    header: Option<&str>,
    path: &str,
) -> Result<Addressed, HostError> {
    resolve_request(namespaces, header, path)
        .await
        .map_err(|e| HostError::Storage(e.to_string()))
}

/// Whether `path` (decoded, namespace-relative) is served in the root
/// namespace only.
pub fn is_root_only(path: &str) -> bool {
    let path = path.trim_matches('/');
    ROOT_ONLY.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }) || ROOT_ONLY_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// The refusal of a root-only path addressed in a child namespace.
pub fn check_root_only(namespace: &Record, path: &str) -> Result<(), HostError> {
    if !namespace.is_root() && is_root_only(path) {
        return Err(HostError::Refused(
            "operation only available in root namespace".to_string(),
        ));
    }
    Ok(())
}

/// Whether `path` (decoded) is one of the `-self` token paths.
pub fn is_self_path(path: &str) -> bool {
    SELF_PATHS.contains(&path.trim_matches('/'))
}

/// The namespace of `caller`'s token: `None` when it no longer exists (a
/// deleted namespace's tokens stop working at once).
pub async fn home_of(
    namespaces: &NamespaceStore,
    caller: &Caller,
) -> Result<Option<Arc<Record>>, HostError> {
    namespaces
        .by_id(&caller.namespace_id)
        .await
        .map_err(|e| HostError::Storage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_only_paths() {
        for p in [
            "sys/health",
            "sys/rotate",
            "sys/rotate/config",
            "/sys/key-status/",
            "sys/sync/config",
            "sys/quotas/rate-limit/q",
            "sys/rekey-recovery-key/init",
            "sys/activation-flags/secrets-sync/activate",
        ] {
            assert!(is_root_only(p), "{p}");
        }
        for p in [
            "sys/seal-status",
            "sys/leader",
            "sys/mounts",
            "sys/sync/destinations",
            "sys/namespaces/a",
            "sys/healthy",
            "secret/data/sys/health",
        ] {
            assert!(!is_root_only(p), "{p}");
        }
    }

    #[test]
    fn self_paths() {
        assert!(is_self_path("auth/token/lookup-self"));
        assert!(is_self_path("/auth/token/renew-self/"));
        assert!(!is_self_path("auth/token/lookup"));
    }
}
