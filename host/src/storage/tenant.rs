//! [`TenantStorage`]: the view of the storage handed to one guest (one tenant / namespace).
//!
//! Every key the guest names is placed under `tenants/<tenant>/`, and listed keys come back
//! relative to it, so a guest can never name a key outside its tenant: not another tenant's, and
//! not the host's own records (tokens, key check, ...), which live outside `tenants/` (`core/...`).

use std::fmt;

use super::sync_index::{self, encode_tenant};
use super::{Backend, Condition, Entry, Op, Page, SharedBackend, StorageError};

/// The key prefix of a tenant's records: `tenants/<tenant_id>/`.
///
/// `%`, `/` and NUL in `tenant_id` are percent-encoded (`%25`, `%2F`, `%00`), so the encoded id
/// never contains `/`: no tenant's prefix is a prefix of another's (tenant `a/b` cannot end up
/// inside tenant `a`). Ordinary ids such as `root` are used as they are.
pub fn tenant_prefix(tenant_id: &str) -> String {
    format!("tenants/{}/", encode_tenant(tenant_id))
}

/// One tenant's view of a [`SharedBackend`]. Cheap to clone.
#[derive(Clone)]
pub struct TenantStorage {
    backend: SharedBackend,
    tenant: String,
    prefix: String,
}

impl fmt::Debug for TenantStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantStorage")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl TenantStorage {
    /// The view of tenant `tenant_id` (the root namespace is `root`), under [`tenant_prefix`].
    pub fn new(backend: SharedBackend, tenant_id: &str) -> Self {
        Self {
            backend,
            tenant: tenant_id.to_string(),
            prefix: tenant_prefix(tenant_id),
        }
    }

    /// The tenant's id: the namespace it serves (`root` for the root
    /// namespace).
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The storage prefix of this tenant (`tenants/<tenant_id>/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The backend underneath (host use only: it is not confined to the tenant).
    pub fn backend(&self) -> &SharedBackend {
        &self.backend
    }

    /// The full storage key of guest key `key`, after validating it.
    fn full_key(&self, key: &str) -> Result<String, StorageError> {
        if key.is_empty() {
            return Err(StorageError::Invalid("key must not be empty".into()));
        }
        if key.contains('\0') {
            return Err(StorageError::Invalid(
                "key must not contain a NUL byte".into(),
            ));
        }
        Ok(format!("{}{key}", self.prefix))
    }
}

// The operations are inherent methods too, so callers need not import [`Backend`]; the trait
// impl below delegates to them.
impl TenantStorage {
    /// [`Backend::get`] of guest key `key` (empty or NUL-containing keys are `Invalid`).
    pub async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let key = self.full_key(key)?;
        self.backend.get(&key).await
    }

    /// [`Backend::list`] within the tenant; keys come back relative to `prefix`.
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        // The prefix may be empty (list the whole tenant); `after` and the returned keys are
        // relative to the full prefix, which starts with the tenant prefix, so the backend never
        // returns a key outside the tenant.
        if prefix.contains('\0') || after.is_some_and(|a| a.contains('\0')) {
            return Err(StorageError::Invalid(
                "list prefix must not contain a NUL byte".into(),
            ));
        }
        let full_prefix = format!("{}{prefix}", self.prefix);
        self.backend
            .list(&full_prefix, after, delimiter, limit)
            .await
    }

    /// [`Backend::commit`] within the tenant: every condition and op key is a guest key. The
    /// commit also files the tenant in the host's index of tenants with sync work when the
    /// guest queues some (see [`sync_index`]).
    pub async fn commit(
        &self,
        conditions: Vec<Condition>,
        ops: Vec<Op>,
    ) -> Result<u64, StorageError> {
        let conditions = conditions
            .into_iter()
            .map(|c| {
                Ok(Condition {
                    key: self.full_key(&c.key)?,
                    version: c.version,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        let encoded = encode_tenant(&self.tenant);
        let (index, touch) = sync_index::index_ops(&encoded, &ops);
        let mut ops = ops
            .into_iter()
            .map(|op| {
                Ok(match op {
                    Op::Put { key, value } => Op::Put {
                        key: self.full_key(&key)?,
                        value,
                    },
                    Op::Delete { key } => Op::Delete {
                        key: self.full_key(&key)?,
                    },
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        ops.extend(index);
        if touch {
            ops.extend(sync_index::touch_ops(self.backend.as_ref(), &encoded).await?);
        }
        self.backend.commit(conditions, ops).await
    }
}

#[async_trait::async_trait]
impl Backend for TenantStorage {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        TenantStorage::get(self, key).await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        TenantStorage::list(self, prefix, after, delimiter, limit).await
    }

    async fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        TenantStorage::commit(self, conditions, ops).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RedbBackend;
    use std::sync::Arc;

    fn put(key: &str, value: &[u8]) -> Op {
        Op::Put {
            key: key.into(),
            value: value.to_vec(),
        }
    }

    fn shared() -> SharedBackend {
        Arc::new(RedbBackend::in_memory().unwrap())
    }

    fn assert_invalid(result: Result<impl fmt::Debug, StorageError>) {
        match result {
            Err(StorageError::Invalid(_)) => {}
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(tenant_prefix("root"), "tenants/root/");
        assert_eq!(tenant_prefix("a/b"), "tenants/a%2Fb/");
        assert_eq!(tenant_prefix("a%2Fb"), "tenants/a%252Fb/");
        assert_eq!(tenant_prefix("x\0"), "tenants/x%00/");
        let t = TenantStorage::new(shared(), "root");
        assert_eq!(t.prefix(), "tenants/root/");
        assert!(format!("{t:?}").contains("tenants/root/"));
    }

    #[tokio::test]
    async fn keys_are_prefixed_and_stripped() {
        let backend = shared();
        let t = TenantStorage::new(Arc::clone(&backend), "root");
        let v = t
            .commit(
                vec![Condition {
                    key: "kv/data/a".into(),
                    version: None,
                }],
                vec![put("kv/data/a", b"1"), put("kv/data/b/c", b"2")],
            )
            .await
            .unwrap();
        assert_eq!(
            backend
                .get("tenants/root/kv/data/a")
                .await
                .unwrap()
                .unwrap()
                .version,
            v
        );
        assert_eq!(t.get("kv/data/a").await.unwrap().unwrap().value, b"1");
        let page = t.list("kv/data/", None, Some('/'), 0).await.unwrap();
        assert_eq!(page.keys, ["a", "b/"]);
        let page = t.list("", None, None, 0).await.unwrap();
        assert_eq!(page.keys, ["kv/data/a", "kv/data/b/c"]);

        t.commit(
            vec![Condition {
                key: "kv/data/a".into(),
                version: Some(v),
            }],
            vec![Op::Delete {
                key: "kv/data/a".into(),
            }],
        )
        .await
        .unwrap();
        assert_eq!(t.get("kv/data/a").await.unwrap(), None);
        assert_eq!(backend.get("tenants/root/kv/data/a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn usable_as_a_backend() {
        let backend = shared();
        let t: SharedBackend = Arc::new(TenantStorage::new(Arc::clone(&backend), "t1"));
        t.commit(vec![], vec![put("k", b"v")]).await.unwrap();
        assert_eq!(t.get("k").await.unwrap().unwrap().value, b"v");
        assert_eq!(t.list("", None, None, 0).await.unwrap().keys, ["k"]);
        assert_invalid(t.get("").await);
        assert!(backend.get("tenants/t1/k").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn rejects_bad_keys() {
        let backend = shared();
        let t = TenantStorage::new(Arc::clone(&backend), "root");
        assert_invalid(t.get("").await);
        assert_invalid(t.get("a\0b").await);
        assert_invalid(t.commit(vec![], vec![put("", b"x")]).await);
        assert_invalid(
            t.commit(vec![], vec![put("ok", b"x"), put("a\0", b"x")])
                .await,
        );
        assert_invalid(t.commit(vec![], vec![Op::Delete { key: "".into() }]).await);
        assert_invalid(
            t.commit(
                vec![Condition {
                    key: "".into(),
                    version: None,
                }],
                vec![put("ok", b"x")],
            )
            .await,
        );
        assert_invalid(t.list("a\0", None, None, 0).await);
        assert_invalid(t.list("", Some("\0"), None, 0).await);
        // nothing was written by the rejected commits
        assert!(
            backend
                .list("", None, None, 0)
                .await
                .unwrap()
                .keys
                .is_empty()
        );
    }
}
