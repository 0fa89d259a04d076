//! What every request pays to resolve its token, measured two ways: by the
//! criterion bench (`cargo bench -p kvsync-tests --bench tokens`) and by
//! `kvsync-bench token-lookups` (a fixed number of lookups, for instruction
//! counts under callgrind).
//!
//! - `before`: what the server did before the token store had a cache: the
//!   token's record read from storage (redb under the AES-GCM barrier) and
//!   decoded, on every request;
//! - `cached`: [`TokenStore::authenticate`] of a token in the caller cache;
//! - `uncached`: [`TokenStore::resolve`] of a use-limited token, which is
//!   never cached (a storage read and the decode of today's larger record).

use std::hint::black_box;

use kvsync::auth::policy::{Acl, root_policy};
use kvsync::auth::tokens::CreateRequest;
use kvsync::auth::tokens::Scope;
use kvsync::auth::{Caller, Token, TokenStore};
use kvsync::storage::{Backend, Barrier, EncryptionKey, RedbBackend, SharedBackend};
use sha2::{Digest, Sha256};

/// The record the server stored before tokens had leases and trees.
#[derive(serde::Deserialize)]
struct EarlierRecord {
    accessor: String,
    display_name: String,
    policies: Vec<String>,
    path: String,
    creation_time: u64,
}

/// A store with a root token and a use-limited one.
pub struct Lookups {
    backend: SharedBackend,
    store: TokenStore,
    root: Token,
    limited: Token,
}

impl Lookups {
    pub async fn new() -> anyhow::Result<Self> {
        let backend: SharedBackend = std::sync::Arc::new(Barrier::new(
            RedbBackend::in_memory()?,
            EncryptionKey::generate()?,
        ));
        let store = TokenStore::new(backend.clone());
        let root = store.create_root(None).await?.token;
        let caller = store
            .resolve(root.clone())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the root token does not resolve"))?;
        let root_acl = Acl::new("", [&root_policy()]);
        let scope = Scope {
            namespace_id: "root",
            namespace_path: "",
            caller: Some(&caller),
            acl: Some(&root_acl),
        };
        let limited = store
            .create(
                &scope,
                &CreateRequest {
                    policies: Some(vec!["app".into()]),
                    num_uses: 1_000,
                    renewable: true,
                    ..CreateRequest::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .info
            .id
            .ok_or_else(|| anyhow::anyhow!("no token"))?;
        Ok(Lookups {
            backend,
            store,
            root,
            limited,
        })
    }

    /// The lookup every request made before: storage read, decode.
    pub async fn before(&self) -> Option<Caller> {
        let key = format!(
            "core/tokens/{}",
            hex::encode(Sha256::digest(self.root.expose().as_bytes()))
        );
        let entry = self.backend.get(&key).await.ok()??;
        let record: EarlierRecord = serde_json::from_slice(&entry.value).ok()?;
        Some(Caller {
            token: self.root.clone(),
            accessor: record.accessor,
            display_name: record.display_name,
            policies: record.policies,
            path: record.path,
            creation_time: record.creation_time,
            namespace_id: "root".into(),
        })
    }

    /// The lookup every request makes now (a cache hit).
    pub async fn cached(&self) -> Option<Caller> {
        self.store
            .authenticate(self.root.clone())
            .await
            .ok()
            .flatten()
            .map(|a| a.caller)
    }

    /// A lookup that reads storage (a token that is never cached).
    pub async fn uncached(&self) -> Option<Caller> {
        self.store
            .resolve(self.limited.clone())
            .await
            .ok()
            .flatten()
    }

    /// `count` lookups of `mode` (`before`, `cached`, `uncached`).
    pub async fn run(&self, mode: &str, count: u64) -> anyhow::Result<()> {
        for _ in 0..count {
            let found = match mode {
                "before" => self.before().await,
                "cached" => self.cached().await,
                "uncached" => self.uncached().await,
                other => anyhow::bail!("unknown mode {other:?}: before, cached or uncached"),
            };
            anyhow::ensure!(black_box(found).is_some(), "the token did not resolve");
        }
        Ok(())
    }
}
