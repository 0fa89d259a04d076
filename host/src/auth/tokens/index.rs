//! The indexes that name a token besides its record: the token tree
//! (`core/token-parents/<parent>/<child>`), walked to revoke a token with
//! every token under it, and the namespace index
//! (`core/token-namespaces/<namespace id>/<hash>`), walked to revoke the
//! tokens of a deleted namespace. `record.rs` has the layout.

use std::collections::VecDeque;

use super::TokenStore;
use super::record;
use super::store::Loaded;
use crate::storage::{Op, StorageError};

/// What [`TokenStore::revoke_namespace`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceRevoked {
    /// Tokens revoked (each with its subtree).
    pub removed: usize,
    /// Whether the namespace has no token left.
    pub done: bool,
}

impl TokenStore {
    /// The records of `root` and every token under it, parents first; and
    /// the tree index entries that name a child without a record.
    pub(super) async fn subtree(
        &self,
        root: Loaded,
    ) -> Result<(Vec<Loaded>, Vec<String>), StorageError> {
        let mut nodes = Vec::new();
        let mut stale = Vec::new();
        let mut queue = VecDeque::from([root]);
        while let Some(node) = queue.pop_front() {
            let prefix = record::children_prefix(&node.hash);
            for child in self.list_all(&prefix).await? {
                match self.load(&child).await? {
                    Some(loaded) => queue.push_back(loaded),
                    None => stale.push(format!("{prefix}{child}")),
                }
            }
            nodes.push(node);
        }
        Ok((nodes, stale))
    }

    /// The index entries that name a token: its accessor, its place under
    /// its parent, its expiry entry.
    pub(super) fn index_entries(&self, node: &Loaded) -> Vec<String> {
        let rec = &node.record;
        let mut keys = vec![record::accessor_key(&rec.accessor)];
        if !rec.parent.is_empty() {
            keys.push(record::child_key(&rec.parent, &node.hash));
        }
        keys.extend(rec.sweep_key(&node.hash));
        keys.extend(record::namespace_key(&rec.namespace_id, &node.hash));
        keys
    }

    /// Revokes the tokens of namespace `id` (a deleted namespace), each with
    /// its subtree, until about `budget` records are removed.
    pub async fn revoke_namespace(
        &self,
        id: &str,
        budget: usize,
    ) -> Result<NamespaceRevoked, StorageError> {
        let prefix = format!("{}{id}/", record::NAMESPACES);
        let mut removed = 0;
        loop {
            let page = self.backend().list(&prefix, None, None, 256).await?;
            if page.keys.is_empty() {
                return Ok(NamespaceRevoked {
                    removed,
                    done: true,
                });
            }
            if removed >= budget {
                return Ok(NamespaceRevoked {
                    removed,
                    done: false,
                });
            }
            for hash in page.keys {
                self.revoke_tree(&hash).await?;
                removed += 1;
                // An index entry left by a record already gone.
                let key = format!("{prefix}{hash}");
                if self.backend().get(&key).await?.is_some() {
                    self.backend()
                        .commit(Vec::new(), vec![Op::Delete { key }])
                        .await?;
                }
            }
        }
    }
}
