//! Which namespace a request addresses: the `X-Vault-Namespace` header and
//! the request path together. The header is made canonical (leading `/`s
//! dropped, one trailing `/`; empty or `root` is the root) and must name a
//! namespace that exists. Then each leading segment of the path that names
//! an existing child namespace moves the request into it: header `team-a/`
//! with `/v1/ci/secret/x`, header `team-a/ci/` with `/v1/secret/x` and no
//! header with `/v1/team-a/ci/secret/x` all address `secret/x` in
//! `team-a/ci/`. A segment that names no namespace ends the prefix (it is the
//! request path: `/v1/nope/secret/x` in the root namespace is the path
//! `nope/secret/x`).

use std::sync::Arc;

use super::{NamespaceStore, RESERVED, Record, canonical};
use crate::storage::StorageError;

/// A request's namespace and its path within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressed {
    /// `None`: the header names no namespace (answered 404 once the token
    /// has been validated).
    pub namespace: Option<Arc<Record>>,
    /// The request path relative to the namespace, still percent-encoded.
    pub path: String,
}

/// Resolves `header` and `path` (below `/v1/`, percent-encoded).
pub async fn resolve_request(
    store: &NamespaceStore,
    header: Option<&str>,
    path: &str,
) -> Result<Addressed, StorageError> {
    let header = canonical(header.unwrap_or_default());
    let Some(mut namespace) = store.by_path(&header).await? else {
        return Ok(Addressed {
            namespace: None,
            path: path.to_string(),
        });
    };
    let mut rest = path.trim_start_matches('/');
    while let Some((segment, after)) = rest.split_once('/') {
        // Reserved names (`sys`, `auth`, ...) are never namespaces: the
        // common paths cost no lookup.
        if segment.is_empty() || RESERVED.contains(&segment) {
            break;
        }
        match store
            .by_path(&format!("{}{segment}/", namespace.path))
            .await?
        {
            Some(child) => {
                namespace = child;
                rest = after.trim_start_matches('/');
            }
            None => break,
        }
    }
    Ok(Addressed {
        namespace: Some(namespace),
        path: rest.to_string(),
    })
}
