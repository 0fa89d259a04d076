//! Removing what a deleted namespace held: its tokens (with the tokens
//! created under them), its ACL policies and its whole tenant storage
//! (`tenants/<id>/`: mounts, secrets, sync state), then the deletion's own
//! record. The namespace itself is gone before this starts, so nothing can
//! add to what is removed. A small namespace is removed while the DELETE
//! request waits; what is left after [`INLINE_KEYS`] keys is removed in the
//! background, and a deletion interrupted by a restart resumes at the next
//! start ([`Purger::resume`]).

use std::sync::Arc;

use super::{DELETING, NamespaceStore};
use crate::auth::TokenStore;
use crate::storage::{Op, SharedBackend, StorageError, tenant_prefix};

/// How many keys a DELETE request removes before it leaves the rest to the
/// background.
pub const INLINE_KEYS: usize = 2048;

/// Keys removed per commit.
const BATCH: u32 = 256;

/// Removes the contents of deleted namespaces. Cheap to clone.
#[derive(Clone)]
pub struct Purger {
    inner: Arc<Inner>,
}

struct Inner {
    backend: SharedBackend,
    tokens: TokenStore,
}

impl Purger {
    pub fn new(namespaces: &NamespaceStore, tokens: TokenStore) -> Self {
        Purger {
            inner: Arc::new(Inner {
                backend: namespaces.backend().clone(),
                tokens,
            }),
        }
    }

    /// Removes the contents of namespace `id`: up to [`INLINE_KEYS`] keys
    /// now, the rest in the background.
    pub async fn remove(&self, id: String) {
        match self.purge(&id, Some(INLINE_KEYS)).await {
            Ok(true) => {}
            Ok(false) => self.spawn(id),
            Err(e) => {
                tracing::warn!(namespace = %id, error = %e, "removing a deleted namespace's contents failed; retrying in the background");
                self.spawn(id);
            }
        }
    }

    fn spawn(&self, id: String) {
        let purger = self.clone();
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_millis(200);
            loop {
                match purger.purge(&id, None).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(namespace = %id, error = %e, "removing a deleted namespace's contents failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(std::time::Duration::from_secs(60));
                    }
                }
            }
        });
    }

    /// Resumes the deletions a restart interrupted (in the background).
    pub async fn resume(&self, namespaces: &NamespaceStore) -> Result<(), StorageError> {
        for id in namespaces.pending_deletions().await? {
            self.spawn(id);
        }
        Ok(())
    }

    /// Removes the contents of namespace `id`, at most `budget` keys
    /// (`None`: all); whether everything is gone.
    pub async fn purge(&self, id: &str, budget: Option<usize>) -> Result<bool, StorageError> {
        let mut budget = budget.unwrap_or(usize::MAX);
        let revoked = self.inner.tokens.revoke_namespace(id, budget).await?;
        budget = budget.saturating_sub(revoked.removed);
        if !revoked.done {
            return Ok(false);
        }
        for prefix in [
            format!("{}{id}/", crate::auth::policies::PREFIX),
            tenant_prefix(id),
        ] {
            let (removed, done) = self.remove_prefix(&prefix, budget).await?;
            budget = budget.saturating_sub(removed);
            if !done {
                return Ok(false);
            }
        }
        self.inner
            .backend
            .commit(
                Vec::new(),
                vec![Op::Delete {
                    key: format!("{DELETING}{id}"),
                }],
            )
            .await?;
        Ok(true)
    }

    /// Deletes every key under `prefix`, at most `budget`: how many, and
    /// whether none is left.
    async fn remove_prefix(
        &self,
        prefix: &str,
        budget: usize,
    ) -> Result<(usize, bool), StorageError> {
        let mut removed = 0;
        loop {
            let page = self.inner.backend.list(prefix, None, None, BATCH).await?;
            if page.keys.is_empty() {
                return Ok((removed, true));
            }
            if removed >= budget {
                return Ok((removed, false));
            }
            removed += page.keys.len();
            let ops = page
                .keys
                .into_iter()
                .map(|k| Op::Delete {
                    key: format!("{prefix}{k}"),
                })
                .collect();
            self.inner.backend.commit(Vec::new(), ops).await?;
        }
    }
}
