//! The sync worker's loops against the real engine component: a loop that
//! dies is restarted, and work queued before keeps flowing.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvsync::connectors::fields::Ignored;
use kvsync::connectors::{Connector, Connectors, Dest, ExternalSecret, SyncError, typed};
use kvsync::runtime::{self, Runtime};
use kvsync::server::EngineOptions;
use kvsync::storage::{
    Backend, Barrier, EncryptionKey, Op, Page, RedbBackend, SharedBackend, StorageError,
    TenantStorage,
};
use kvsync::worker::{self, DrainProgress, SyncConfig, Worker};
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

/// Sends one request as root to tenant `tenant`; returns the status and the decoded body.
async fn call_in(
    rt: &Runtime,
    backend: &SharedBackend,
    tenant: &str,
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
        .handle(TenantStorage::new(backend.clone(), tenant), req)
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
    ok_in(rt, backend, TENANT, method, path, body).await
}

async fn ok_in(
    rt: &Runtime,
    backend: &SharedBackend,
    tenant: &str,
    method: &str,
    path: &str,
    body: Value,
) -> Value {
    let (status, body) = call_in(rt, backend, tenant, method, path, body).await;
    assert!(
        status == 200 || status == 204,
        "{method} {path}: {status} {body}"
    );
    body
}

/// The values an in-mem destination holds, by external name.
async fn objects(rt: &Runtime, backend: &SharedBackend, dest: &str) -> Vec<String> {
    objects_in(rt, backend, TENANT, dest).await
}

/// [`objects`] of tenant `tenant`'s destination.
async fn objects_in(
    rt: &Runtime,
    backend: &SharedBackend,
    tenant: &str,
    dest: &str,
) -> Vec<String> {
    let body = ok_in(
        rt,
        backend,
        tenant,
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
    queued_change_in(rt, backend, TENANT, "1", "2").await;
}

/// [`queued_change`] in tenant `tenant`: `app` is synced as `{"v": first}`, then changed to
/// `{"v": then}`.
async fn queued_change_in(
    rt: &Runtime,
    backend: &SharedBackend,
    tenant: &str,
    first: &str,
    then: &str,
) {
    synced_secrets(rt, backend, tenant, &["app"], first).await;
    ok_in(
        rt,
        backend,
        tenant,
        "POST",
        "secret/data/app",
        json!({"data": {"v": then}}),
    )
    .await;
}

/// KV-v2 at `secret/` and the in-mem destination `d` in tenant `tenant`, each of `secrets`
/// written as `{"v": value}` and associated with `d`.
async fn synced_secrets(
    rt: &Runtime,
    backend: &SharedBackend,
    tenant: &str,
    secrets: &[&str],
    value: &str,
) {
    ok_in(
        rt,
        backend,
        tenant,
        "POST",
        "sys/mounts/secret",
        json!({"type": "kv-v2"}),
    )
    .await;
    ok_in(
        rt,
        backend,
        tenant,
        "POST",
        "sys/sync/destinations/in-mem/d",
        json!({}),
    )
    .await;
    for secret in secrets {
        ok_in(
            rt,
            backend,
            tenant,
            "POST",
            &format!("secret/data/{secret}"),
            json!({"data": {"v": value}}),
        )
        .await;
        ok_in(
            rt,
            backend,
            tenant,
            "POST",
            "sys/sync/destinations/in-mem/d/associations/set",
            json!({"mount": "secret", "secret_name": secret}),
        )
        .await;
    }
}

/// A backend whose first list of the outbox's due index panics (a bug deep
/// in a storage call): the shard loop that made the call dies with it.
struct PanicsOnce {
    inner: SharedBackend,
    armed: AtomicBool,
}

#[async_trait::async_trait]
impl kvsync::storage::Delegate for PanicsOnce {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
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

/// One worker serves every tenant: a change queued in each of two tenants that use the same
/// mount, secret and destination names reaches that tenant's destination, and the two
/// destinations are unrelated stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_syncs_every_tenant_and_keeps_their_destinations_apart() {
    let rt = engine();
    let backend = memory_backend();
    for tenant in ["t1", "t2"] {
        queued_change_in(
            &rt,
            &backend,
            tenant,
            &format!("{tenant}-1"),
            &format!("{tenant}-2"),
        )
        .await;
    }
    let worker = start_worker(&rt, &backend);
    for tenant in ["t1", "t2"] {
        let want = vec![format!(r#"{{"v":"{tenant}-2"}}"#)];
        eventually(
            "each tenant's change reaches its own destination",
            Duration::from_secs(30),
            || {
                let (rt, backend, want) = (rt.clone(), backend.clone(), want.clone());
                async move { objects_in(&rt, &backend, tenant, "d").await == want }
            },
        )
        .await;
    }
    // A destination of the same name in a third tenant holds nothing.
    ok(
        &rt,
        &backend,
        "POST",
        "sys/sync/destinations/in-mem/d",
        json!({}),
    )
    .await;
    assert!(objects_in(&rt, &backend, TENANT, "d").await.is_empty());
    worker.stop(Duration::from_secs(10)).await;
    // Nothing left to do: the index of tenants with work is empty again.
    let index = backend
        .list(kvsync::storage::sync_index::DUE_INDEX, None, None, 0)
        .await
        .unwrap();
    assert!(index.keys.is_empty(), "{:?}", index.keys);
}

/// An `in-mem` connector that records who pushed what, in order.
#[derive(Clone, Default)]
struct Recorder {
    pushes: Arc<Mutex<Vec<(String, String)>>>,
}

#[async_trait::async_trait]
impl Connector for Recorder {
    const KIND: &'static str = "in-mem";
    type Config = Ignored;

    async fn push(&self, dest: &Dest<Ignored>, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.pushes
            .lock()
            .unwrap()
            .push((dest.tenant.clone(), secret.name.clone()));
        Ok(())
    }

    async fn delete(&self, _dest: &Dest<Ignored>, _name: &str) -> Result<(), SyncError> {
        Ok(())
    }
}

/// Fairness, counted: tenant `a` has more entries queued than one batch, tenant `b` one. The
/// worker's turns push `b`'s change after at most one batch of `a`'s, not after all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_flood_delays_anothers_change_by_one_batch_at_most() {
    let recorder = Recorder::default();
    let connectors = Connectors::from_list(vec![typed(recorder.clone())]);
    let rt = Runtime::new(
        runtime::ENGINE_COMPONENT,
        runtime::Limits::default(),
        Arc::new(connectors),
        std::env::var_os("KVSYNC_CACHE_DIR")
            .map(std::path::PathBuf::from)
            .as_deref(),
    )
    .unwrap();
    let backend = memory_backend();
    let flood = usize::try_from(worker::BATCH).unwrap() + 40;
    // Tenant a: `flood` associations set while its sync is off, so each is queued, not pushed.
    ok_in(
        &rt,
        &backend,
        "a",
        "POST",
        "sys/sync/config",
        json!({"disabled": true}),
    )
    .await;
    let names: Vec<String> = (0..flood).map(|i| format!("s{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    synced_secrets(&rt, &backend, "a", &names, "1").await;
    ok_in(
        &rt,
        &backend,
        "a",
        "POST",
        "sys/sync/config",
        json!({"disabled": false}),
    )
    .await;
    // Tenant b: one change queued.
    queued_change_in(&rt, &backend, "b", "1", "2").await;
    recorder.pushes.lock().unwrap().clear();

    let config = SyncConfig {
        workers: 1,
        ..sync_config()
    };
    let report = worker::drain(
        &rt,
        &backend,
        &config,
        Duration::ZERO,
        Arc::new(DrainProgress::default()),
    )
    .await
    .unwrap();
    let pushes = recorder.pushes.lock().unwrap().clone();
    let a_pushes = pushes.iter().filter(|(t, _)| t == "a").count();
    let b_at = pushes.iter().position(|(t, _)| t == "b").unwrap();
    assert_eq!((a_pushes, pushes.len()), (flood, flood + 1), "{report:?}");
    assert!(
        b_at <= usize::try_from(worker::BATCH).unwrap(),
        "b's change waited for {b_at} of a's pushes, more than one batch"
    );
    println!(
        "fairness: b's change pushed after {b_at} of a's {flood} queued entries (batch {})",
        worker::BATCH
    );
}

/// From [`Worker::start`] to `busy`'s queued change at its destination, with `idle` other
/// tenants that have a destination and nothing queued.
async fn first_sync_after_start(idle: usize) -> Duration {
    let rt = engine();
    let backend = memory_backend();
    for i in 0..idle {
        TenantStorage::new(backend.clone(), &format!("idle-{i:05}"))
            .commit(
                vec![],
                vec![
                    Op::Put {
                        key: "sync/destinations/in-mem/d".into(),
                        value: b"{}".to_vec(),
                    },
                    Op::Put {
                        key: "kv/data/app".into(),
                        value: b"{}".to_vec(),
                    },
                ],
            )
            .await
            .unwrap();
    }
    queued_change_in(&rt, &backend, "busy", "1", "2").await;
    let started = Instant::now();
    let worker = start_worker(&rt, &backend);
    let want = vec![r#"{"v":"2"}"#.to_string()];
    while objects_in(&rt, &backend, "busy", "d").await != want {
        assert!(started.elapsed() < Duration::from_secs(60), "never synced");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    worker.stop(Duration::from_secs(10)).await;
    took
}

/// Start-up does not grow with idle tenants: prints the time from start to the first sync
/// with none and with 10,000 idle tenants (a figure, not a test of speed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a figure for the README; run with --ignored --nocapture"]
async fn start_up_with_ten_thousand_idle_tenants() {
    let none = first_sync_after_start(0).await;
    let many = first_sync_after_start(10_000).await;
    println!("first sync after start: {none:?} with no idle tenant, {many:?} with 10,000");
}
