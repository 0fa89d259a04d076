//! A large installation, for the scale tests (`tests/tests/scale.rs`) and
//! the benchmark P11: a KV-v2 mount `secret/` with `n` secrets, each
//! associated with one or more in-mem destinations and synced. One secret
//! and its associations are made through the API; the others are copies of
//! their storage records (the secret's name replaced), committed host-side
//! in large batches, so seeding 100,000 takes seconds, not an hour of
//! requests. The in-mem destinations hold the first secret's objects only,
//! which is all reconciliation of unchanged associations, purges and
//! deletes need.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use kvsync::runtime::{self, Runtime};
use kvsync::storage::{
    Barrier, EncryptionKey, Op, RedbBackend, SharedBackend, StorageError, TenantStorage,
};
use kvsync::worker::{DrainProgress, DrainReport, SyncConfig};
use serde_json::{Value, json};

/// The namespace everything runs in.
pub const TENANT: &str = "root";
/// The name of the first secret; the others replace it with their number.
const FIRST: &str = "s000000";
/// Ops per seeding commit.
const SEED_BATCH: usize = 5_000;
/// Keys per page when listing a whole prefix.
const PAGE: u32 = 1_000;

/// A runtime and an in-memory encrypted store to seed.
pub struct Installation {
    pub rt: Runtime,
    pub backend: SharedBackend,
}

impl Installation {
    /// The engine (compiled-code cache in `KVSYNC_CACHE_DIR` when set) over a
    /// fresh in-memory store. No warm instances: every call starts with a
    /// fresh linear memory, so the largest one measured is one call's.
    pub fn new() -> anyhow::Result<Self> {
        let rt = kvsync::server::engine(&kvsync::server::EngineOptions {
            cache_dir: std::env::var_os("KVSYNC_CACHE_DIR").map(Into::into),
            limits: runtime::Limits {
                warm_instances: 0,
                ..runtime::Limits::default()
            },
            ..kvsync::server::EngineOptions::default()
        })?;
        let key = EncryptionKey::generate()?;
        let backend: SharedBackend = Arc::new(Barrier::new(RedbBackend::in_memory()?, key));
        Ok(Installation { rt, backend })
    }

    fn storage(&self) -> TenantStorage {
        TenantStorage::new(self.backend.clone(), TENANT)
    }

    /// Sends one request as root; returns the status and the decoded body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let body = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body)?
        };
        let identity = crate::root_identity(&self.backend).await?;
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut req = runtime::request(method, path, &body, Some(identity));
        req.query = query.to_string();
        let out = self.rt.handle(self.storage(), req).await?;
        let decoded = if out.response.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&out.response.body)?
        };
        Ok((out.response.status, decoded))
    }

    /// [`Installation::call`] that must succeed (200 or 204).
    pub async fn ok(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, body) = self.call(method, path, body).await?;
        if status != 200 && status != 204 {
            bail!("{method} {path}: {status} {body}");
        }
        Ok(body)
    }

    /// `secret/` with `n` secrets, each associated with every destination
    /// of `destinations` (in-mem, created here) and synced.
    pub async fn seed(&self, n: usize, destinations: &[&str]) -> anyhow::Result<()> {
        self.ok("POST", "sys/mounts/secret", json!({"type": "kv-v2"}))
            .await?;
        self.ok(
            "POST",
            &format!("secret/data/{FIRST}"),
            json!({"data": {"v": "1"}}),
        )
        .await?;
        for dest in destinations {
            self.ok(
                "POST",
                &format!("sys/sync/destinations/in-mem/{dest}"),
                json!({}),
            )
            .await?;
            self.ok(
                "POST",
                &format!("sys/sync/destinations/in-mem/{dest}/associations/set"),
                json!({"mount": "secret", "secret_name": FIRST}),
            )
            .await?;
        }
        let storage = self.storage();
        let mut template = Vec::new();
        for key in self.keys("").await? {
            if key.contains(FIRST) {
                let entry = storage
                    .get(&key)
                    .await?
                    .with_context(|| format!("{key} vanished"))?;
                template.push((key, String::from_utf8(entry.value)?));
            }
        }
        let mut ops = Vec::new();
        for i in 1..n {
            let name = format!("s{i:06}");
            for (key, value) in &template {
                ops.push(Op::Put {
                    key: key.replace(FIRST, &name),
                    value: value.replace(FIRST, &name).into_bytes(),
                });
            }
            if ops.len() >= SEED_BATCH {
                storage.commit(Vec::new(), std::mem::take(&mut ops)).await?;
            }
        }
        if !ops.is_empty() {
            storage.commit(Vec::new(), ops).await?;
        }
        Ok(())
    }

    /// Every key under `prefix`, page by page.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let storage = self.storage();
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = storage.list(prefix, after.as_deref(), None, PAGE).await?;
            keys.extend(page.keys.iter().map(|k| format!("{prefix}{k}")));
            match page.next {
                Some(next) if after.as_deref() != Some(next.as_str()) => after = Some(next),
                _ => return Ok(keys),
            }
        }
    }

    /// How many keys there are under `prefix`.
    pub async fn count(&self, prefix: &str) -> Result<usize, StorageError> {
        Ok(self.keys(prefix).await?.len())
    }

    /// What `kvsync sync run --once` does: a reconciliation of every tenant, then every run
    /// until nothing is left to do now (sweeps in progress included).
    pub async fn drain(&self) -> anyhow::Result<DrainReport> {
        let config = SyncConfig {
            workers: 1,
            ..SyncConfig::default()
        };
        kvsync::worker::drain(
            &self.rt,
            &self.backend,
            &config,
            Duration::ZERO,
            Arc::new(DrainProgress::default()),
        )
        .await
    }
}
