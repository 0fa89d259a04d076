//! The sync worker's loops against the real engine component: a loop that
//! dies is restarted, and work queued before keeps flowing.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kvsync::runtime::{self, Runtime};
use kvsync::server::EngineOptions;
use kvsync::storage::{
    Backend, Barrier, Condition, EncryptionKey, Entry, Op, Page, RedbBackend, SharedBackend,
    StorageError, TenantStorage,
};
use kvsync::worker::{SyncConfig, Worker};
use serde_json::{Value, json};
use tokio::sync::Notify;

const TENANT: &str = "root";

/// The engine, with the compiled-component cache of the test run when there
/// is one.
fn engine() -> Runtime {
    engine_with(runtime::Limits::default())
}

fn engine_with(limits: runtime::Limits) -> Runtime {
    kvsync::server::engine(&EngineOptions {
        cache_dir: std::env::var_os("KVSYNC_CACHE_DIR").map(Into::into),
        limits,
        ..EngineOptions::default()
    })
    .unwrap()
}

/// The sync worker over `backend`, with [`sync_config`].
fn start_worker(rt: &Runtime, backend: &SharedBackend) -> Worker {
    Worker::start(
        rt.clone(),
        backend.clone(),
        sync_config(),
        Arc::new(Notify::new()),
        kvsync::ha::HostInfo::this_process(String::new()),
    )
}

fn memory_backend() -> SharedBackend {
    let key = EncryptionKey::generate().unwrap();
    Arc::new(Barrier::new(RedbBackend::in_memory().unwrap(), key))
}

/// Fast knobs: one loop, short pauses.
fn sync_config() -> SyncConfig {
    SyncConfig {
        workers: 1,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(1),
        reconcile_interval: Duration::from_secs(1),
        coalesce_window: Duration::ZERO,
        ..SyncConfig::default()
    }
}

/// Sends one request as root; returns the status and the decoded body.
async fn call(
    rt: &Runtime,
    backend: &SharedBackend,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    let req = runtime::request(
        method,
        path,
        &body,
        Some(kvsync_tests::root_identity(backend).await.unwrap()),
    );
    let out = rt
        .handle(TenantStorage::new(backend.clone(), TENANT), req)
        .await
        .unwrap();
    let decoded = if out.response.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.response.body).unwrap()
    };
    (out.response.status, decoded)
}

async fn ok(rt: &Runtime, backend: &SharedBackend, method: &str, path: &str, body: Value) -> Value {
    let (status, body) = call(rt, backend, method, path, body).await;
    assert!(
        status == 200 || status == 204,
        "{method} {path}: {status} {body}"
    );
    body
}

/// The values an in-mem destination holds, by external name.
async fn objects(rt: &Runtime, backend: &SharedBackend, dest: &str) -> Vec<String> {
    let body = ok(
        rt,
        backend,
        "GET",
        &format!("sys/sync/destinations/in-mem/{dest}/objects"),
        Value::Null,
    )
    .await;
    body["data"]["objects"]
        .as_object()
        .unwrap()
        .values()
        .map(|o| o["value"].as_str().unwrap().to_string())
        .collect()
}

/// Polls `probe` until it holds, for at most `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !probe().await {
        assert!(
            started.elapsed() < limit,
            "{what}: not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// KV-v2 at `secret/`, the in-mem destination `d`, the secret `app` synced
/// to it, then changed: its sync is queued.
async fn queued_change(rt: &Runtime, backend: &SharedBackend) {
    ok(
        rt,
        backend,
        "POST",
        "sys/mounts/secret",
        json!({"type": "kv-v2"}),
    )
    .await;
    ok(
        rt,
        backend,
        "POST",
        "sys/sync/destinations/in-mem/d",
        json!({}),
    )
    .await;
    ok(
        rt,
        backend,
        "POST",
        "secret/data/app",
        json!({"data": {"v": "1"}}),
    )
    .await;
    ok(
        rt,
        backend,
        "POST",
        "sys/sync/destinations/in-mem/d/associations/set",
        json!({"mount": "secret", "secret_name": "app"}),
    )
    .await;
    ok(
        rt,
        backend,
        "POST",
        "secret/data/app",
        json!({"data": {"v": "2"}}),
    )
    .await;
}

/// A backend whose first list of the outbox's due index panics (a bug deep
/// in a storage call): the shard loop that made the call dies with it.
struct PanicsOnce {
    inner: SharedBackend,
    armed: AtomicBool,
}

#[async_trait::async_trait]
impl Backend for PanicsOnce {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.inner.get(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        if prefix.contains("sync/due") && self.armed.swap(false, Ordering::SeqCst) {
            panic!("a bug in a storage call");
        }
        self.inner.list(prefix, after, delimiter, limit).await
    }
    async fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        self.inner.commit(conditions, ops).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_loop_that_panics_is_restarted_and_syncs_what_was_queued() {
    let rt = engine();
    let plain = memory_backend();
    queued_change(&rt, &plain).await;
    assert_eq!(objects(&rt, &plain, "d").await, vec![r#"{"v":"1"}"#]);
    let panicking = Arc::new(PanicsOnce {
        inner: plain.clone(),
        armed: AtomicBool::new(true),
    });
    let backend: SharedBackend = panicking.clone();
    let worker = start_worker(&rt, &backend);
    eventually(
        "the queued change reaches the destination",
        Duration::from_secs(30),
        || {
            let (rt, backend) = (rt.clone(), backend.clone());
            async move { objects(&rt, &backend, "d").await == vec![r#"{"v":"2"}"#] }
        },
    )
    .await;
    assert!(
        !panicking.armed.load(Ordering::SeqCst),
        "the loop met the panic"
    );
    worker.stop(Duration::from_secs(10)).await;
}

/// The sync status and error of the association of `secret` with `dest`.
async fn association(
    rt: &Runtime,
    backend: &SharedBackend,
    dest: &str,
    secret: &str,
) -> (String, String) {
    let body = ok(
        rt,
        backend,
        "GET",
        &format!("sys/sync/destinations/in-mem/{dest}/associations"),
        Value::Null,
    )
    .await;
    let found = body["data"]["associated_secrets"]
        .as_object()
        .unwrap()
        .values()
        .find(|a| a["secret_name"] == secret)
        .unwrap()
        .clone();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (text(&found["sync_status"]), text(&found["error"]))
}

/// A secret too large for the sync run's memory cap makes every run that
/// takes it exceed its limits. Its entry fails alone: the runs after it sync
/// the rest of the shard, and its association shows why once it is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_exceeds_the_run_limits_fails_alone() {
    // Requests get room for an 8 MiB secret; sync runs get 16 MiB of memory.
    let roomy = engine_with(runtime::Limits {
        memory_bytes: 256 << 20,
        max_concurrent_instances: 16,
        ..runtime::Limits::default()
    });
    let tight = roomy.with_call_limits(runtime::DEFAULT_CPU_LIMIT, 16 << 20);
    let backend = memory_backend();
    let rt = &roomy;
    ok(
        rt,
        &backend,
        "POST",
        "sys/mounts/secret",
        json!({"type": "kv-v2"}),
    )
    .await;
    ok(
        rt,
        &backend,
        "POST",
        "sys/sync/destinations/in-mem/d",
        json!({}),
    )
    .await;
    for s in ["big", "small"] {
        ok(
            rt,
            &backend,
            "POST",
            &format!("secret/data/{s}"),
            json!({"data": {"v": "1"}}),
        )
        .await;
        ok(
            rt,
            &backend,
            "POST",
            "sys/sync/destinations/in-mem/d/associations/set",
            json!({"mount": "secret", "secret_name": s}),
        )
        .await;
    }
    // The large change is first in line.
    let large = "x".repeat(8 << 20);
    ok(
        rt,
        &backend,
        "POST",
        "secret/data/big",
        json!({"data": {"v": large}}),
    )
    .await;
    ok(
        rt,
        &backend,
        "POST",
        "secret/data/small",
        json!({"data": {"v": "2"}}),
    )
    .await;

    let worker = start_worker(&tight, &backend);
    eventually(
        "the change behind the large one reaches the destination",
        Duration::from_secs(30),
        || {
            let (rt, backend) = (roomy.clone(), backend.clone());
            async move {
                objects(&rt, &backend, "d")
                    .await
                    .contains(&r#"{"v":"2"}"#.to_string())
            }
        },
    )
    .await;
    eventually(
        "the large one shows why it is not synced",
        Duration::from_secs(30),
        || {
            let (rt, backend) = (roomy.clone(), backend.clone());
            async move {
                let (status, error) = association(&rt, &backend, "d", "big").await;
                status == "INTERNAL_VAULT_ERROR" && error.contains("resource limits")
            }
        },
    )
    .await;
    worker.stop(Duration::from_secs(10)).await;
}
