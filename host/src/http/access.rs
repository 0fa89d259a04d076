//! The host's half of authorization (the engine's half is its router's
//! authorization step, the exact check): which paths need a token, and the
//! early check that refuses what the request's method alone rules out,
//! before an engine instance is taken.
//!
//! The early check asks the caller's ACL for the capability the method
//! needs on the request path: GET and HEAD → `read`, LIST (or GET `?list=true`) →
//! `list` on the path ending in `/`, DELETE → `delete`, PATCH → `patch`,
//! POST/PUT → `create` **or** `update` (which one, only the path's existence
//! check in the engine can tell). It never refuses what the exact check
//! would allow: a request whose method or path the engine refuses anyway
//! (an unknown method, a PATCH without the merge-patch content type, an
//! undecodable path) is left to the engine's answer, and root-protected
//! paths are left to the exact check's `sudo` rule.

use super::HostError;
use crate::auth::Authority;
use crate::auth::policy::Operation;
use kvsync_component::api::{self, Operation as EngineOperation};

/// Paths served without a token (the engine's path tables flag the same
/// paths `unauthenticated`; a test of the `tests` crate holds them equal).
pub const UNAUTHENTICATED: &[&str] = &[
    "sys/health",
    "sys/seal-status",
    "sys/leader",
    "sys/init",
    "sys/activation-flags",
];

/// Prefixes of the paths authorized by any access under the mount they name
/// (the engine's `access_by_mount` paths): they need a token, and are left
/// to the engine's check.
pub const ACCESS_BY_MOUNT: &[&str] = &["sys/internal/ui/mounts/"];

/// Whether `path` (below `/v1/`, decoded) is served without a token.
pub fn is_unauthenticated(path: &str) -> bool {
    UNAUTHENTICATED.contains(&path.trim_matches('/'))
}

/// The request as the early check sees it.
pub struct Attempt<'a> {
    pub method: &'a str,
    /// Below `/v1/`, still percent-encoded.
    pub path: &'a str,
    pub query: &'a str,
    pub content_type: &'a str,
}

/// The early check: `Err(PermissionDenied)` when the caller's policies
/// grant nothing the method could need on the path.
pub fn early_check(authority: &Authority, attempt: &Attempt) -> Result<(), HostError> {
    let Ok(operation) = api::request_operation(attempt.method, attempt.query) else {
        return Ok(());
    };
    if operation == EngineOperation::Patch
        && !api::is_merge_patch(&attempt.content_type.to_ascii_lowercase())
    {
        return Ok(());
    }
    let Ok(path) = api::request_path(attempt.path, operation) else {
        return Ok(());
    };
    if ACCESS_BY_MOUNT.iter().any(|p| path.starts_with(p)) || is_unauthenticated(&path) {
        return Ok(());
    }
    let may = |operation| authority.authorize(operation, &path, false);
    let allowed = match operation {
        // HEAD reads nothing more than GET: it needs what GET needs.
        EngineOperation::Read | EngineOperation::Header => may(Operation::Read),
        EngineOperation::List => may(Operation::List),
        EngineOperation::Create | EngineOperation::Update => {
            may(Operation::Update) || may(Operation::Create)
        }
        EngineOperation::Patch => may(Operation::Patch),
        EngineOperation::Delete => may(Operation::Delete),
    };
    if allowed {
        Ok(())
    } else {
        Err(HostError::PermissionDenied)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::{Caller, Namespace, PolicyStore, Token, TokenStore};
    use crate::storage::{Barrier, EncryptionKey, RedbBackend, SharedBackend};

    async fn authority(policy: &str) -> Authority {
        let backend: SharedBackend = Arc::new(Barrier::new(
            RedbBackend::in_memory().unwrap(),
            EncryptionKey::generate().unwrap(),
        ));
        let policies = PolicyStore::new(backend.clone());
        let ns = Namespace::root();
        policies.ensure_builtins(&ns).await.unwrap();
        policies.write(&ns, "p", policy).await.unwrap();
        let caller = Caller {
            token: Token::new("t".into()),
            accessor: "a".into(),
            display_name: "token".into(),
            policies: vec!["default".into(), "p".into()],
            path: "auth/token/create".into(),
            creation_time: 0,
            namespace_id: "root".into(),
        };
        Authority::of(ns, &caller, &policies, &TokenStore::new(backend))
            .await
            .unwrap()
    }

    fn check(a: &Authority, method: &str, path: &str, query: &str, content_type: &str) -> bool {
        let attempt = Attempt {
            method,
            path,
            query,
            content_type,
        };
        early_check(a, &attempt).is_ok()
    }

    #[tokio::test]
    async fn the_method_decides_the_capability() {
        let a = authority(
            r#"
            path "secret/data/*" { capabilities = ["read", "create"] }
            path "secret/metadata/*" { capabilities = ["list"] }
            path "sys/sync/config" { capabilities = ["patch"] }
            path "sys/sync/destinations/*" { capabilities = ["update", "delete"] }
            "#,
        )
        .await;
        let json = "application/json";
        let merge = "application/merge-patch+json";
        assert!(check(&a, "GET", "secret/data/a", "", json));
        assert!(check(&a, "GET", "/secret/data/a%20b", "", json));
        assert!(!check(&a, "DELETE", "secret/data/a", "", json));
        // POST/PUT: create or update, whichever the existence check picks.
        assert!(check(&a, "POST", "secret/data/a", "", json));
        assert!(check(&a, "PUT", "sys/sync/destinations/gh/x", "", json));
        assert!(!check(&a, "POST", "sys/sync/config", "", json));
        // LIST, by method or query, on the path ending in `/`.
        assert!(check(&a, "LIST", "secret/metadata/app", "", json));
        assert!(check(&a, "GET", "secret/metadata/app/", "list=true", json));
        assert!(!check(
            &a,
            "GET",
            "secret/metadata/app/",
            "list=false",
            json
        ));
        assert!(!check(&a, "LIST", "secret/data/app", "", json));
        assert!(check(&a, "PATCH", "sys/sync/config", "", merge));
        assert!(!check(&a, "PATCH", "secret/data/a", "", merge));
        // The default policy is part of the caller's.
        assert!(check(&a, "GET", "auth/token/lookup-self", "", json));
        assert!(!check(&a, "GET", "sys/mounts", "", json));
    }

    #[tokio::test]
    async fn what_the_engine_answers_anyway_is_left_to_it() {
        let a = authority(r#"path "nothing" { capabilities = ["deny"] }"#).await;
        for (method, path, query, content_type) in [
            ("FOO", "secret/data/a", "", ""),
            ("GET", "secret/data/a", "list=maybe", ""),
            ("PATCH", "secret/data/a", "", "application/json"),
            ("GET", "secret/%FF", "", ""),
            ("GET", "sys/health", "", ""),
            ("GET", "sys/seal-status/", "", ""),
            ("GET", "sys/internal/ui/mounts/secret/a", "", ""),
        ] {
            assert!(
                check(&a, method, path, query, content_type),
                "{method} {path}"
            );
        }
        assert!(!check(&a, "GET", "sys/internal/ui/mountsx", "", ""));
    }

    #[test]
    fn unauthenticated_paths_ignore_slashes() {
        assert!(is_unauthenticated("sys/health"));
        assert!(is_unauthenticated("/sys/activation-flags/"));
        assert!(!is_unauthenticated(
            "sys/activation-flags/secrets-sync/activate"
        ));
        assert!(!is_unauthenticated("sys/internal/ui/mounts/secret"));
    }
}
