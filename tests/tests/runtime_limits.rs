//! The runtime's per-call limits, against real components: a test-only guest
//! that spins or allocates forever is cut off while other calls still succeed,
//! a host call that sleeps past the CPU deadline is not charged to the guest, and
//! neither is time the guest's thread spends off the CPU.
#![expect(
    clippy::unwrap_used,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvsync::runtime::deterministic::{DEFAULT_START, DeterministicWasi};
use kvsync::runtime::{self, CallError, Limits, Runtime};
use kvsync::storage::{
    Backend, Barrier, EncryptionKey, Entry, RedbBackend, SharedBackend, StorageError, TenantStorage,
};

static RUNAWAY: &[u8] = include_bytes!(env!("RUNAWAY_WASM"));

fn limits(cpu_ms: u64) -> Limits {
    Limits {
        cpu: Duration::from_millis(cpu_ms),
        memory_bytes: 32 << 20,
        max_concurrent_instances: 16,
        warm_instances: 4,
        tenant_max_concurrent_requests: None,
        max_running_requests: None,
    }
}

/// A runtime of `component` with the build's connectors.
fn load(component: &'static [u8], limits: Limits, cache_dir: Option<&std::path::Path>) -> Runtime {
    kvsync::server::engine(&kvsync::server::EngineOptions {
        component,
        limits,
        cache_dir: cache_dir.map(std::path::Path::to_path_buf),
        ..Default::default()
    })
    .unwrap()
}

fn memory_backend() -> SharedBackend {
    let key = EncryptionKey::generate().unwrap();
    Arc::new(Barrier::new(RedbBackend::in_memory().unwrap(), key))
}

async fn call(
    rt: &Runtime,
    backend: &SharedBackend,
    path: &str,
) -> Result<runtime::Response, CallError> {
    call_as(rt, backend, "root", path).await
}

async fn call_as(
    rt: &Runtime,
    backend: &SharedBackend,
    tenant: &str,
    path: &str,
) -> Result<runtime::Response, CallError> {
    let req = runtime::request(
        "GET",
        path,
        b"",
        Some(kvsync_tests::root_identity(backend).await.unwrap()),
    );
    rt.handle(TenantStorage::new(backend.clone(), tenant), req)
        .await
        .map(|out| out.response)
}

/// Which call of its instance answered (the test guest's `count`).
async fn served(rt: &Runtime, backend: &SharedBackend, tenant: &str) -> u32 {
    let resp = call_as(rt, backend, tenant, "count").await.unwrap();
    String::from_utf8(resp.body).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_instances_serve_one_tenant_and_are_dropped_after_a_trap_or_limit() {
    // The CPU deadline counts wall time less host calls and yields, so time the
    // thread is preempted by other processes is charged to the guest: on a loaded
    // machine, allocating up to the memory cap could outlast a short deadline and
    // the call end as a CPU limit. With this budget the memory cap comes first.
    let rt = load(RUNAWAY, limits(2_000), None);
    let backend = memory_backend();
    // One instance serves the tenant's calls one after another.
    assert_eq!(served(&rt, &backend, "a").await, 1);
    assert_eq!(served(&rt, &backend, "a").await, 2);
    assert_eq!(rt.warm_instances(), 1);
    // Another tenant never gets it.
    assert_eq!(served(&rt, &backend, "b").await, 1);
    assert_eq!(served(&rt, &backend, "b").await, 2);
    assert_eq!(served(&rt, &backend, "a").await, 3);
    assert_eq!(rt.warm_instances(), 2);
    // A trap discards the instance: the next call starts afresh.
    assert!(matches!(
        call_as(&rt, &backend, "a", "trap").await,
        Err(CallError::Trap(_))
    ));
    assert_eq!(served(&rt, &backend, "a").await, 1);
    // So does a limit.
    assert!(matches!(
        call_as(&rt, &backend, "a", "loop").await,
        Err(CallError::LimitExceeded("cpu time"))
    ));
    assert_eq!(served(&rt, &backend, "a").await, 1);
    assert!(matches!(
        call_as(&rt, &backend, "a", "alloc").await,
        Err(CallError::LimitExceeded("memory"))
    ));
    assert_eq!(served(&rt, &backend, "a").await, 1);
    // Tenant b's instance was never touched by any of it.
    assert_eq!(served(&rt, &backend, "b").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_warm_instances_every_call_is_fresh() {
    let rt = load(
        RUNAWAY,
        Limits {
            warm_instances: 0,
            ..limits(200)
        },
        None,
    );
    let backend = memory_backend();
    for _ in 0..3 {
        assert_eq!(served(&rt, &backend, "a").await, 1);
    }
    assert_eq!(rt.warm_instances(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_loop_is_interrupted_while_other_calls_succeed() {
    let rt = load(RUNAWAY, limits(2_000), None);
    let backend = memory_backend();
    let started = Instant::now();
    let spinning = {
        let (rt, backend) = (rt.clone(), backend.clone());
        tokio::spawn(async move { call(&rt, &backend, "loop").await })
    };
    // While the loop spins, other calls are served, on both worker threads.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..20 {
        let resp = call(&rt, &backend, "ok").await.unwrap();
        assert_eq!(resp.status, 200);
    }
    assert!(!spinning.is_finished(), "the loop should still be running");
    let outcome = spinning.await.unwrap();
    assert!(
        matches!(outcome, Err(CallError::LimitExceeded("cpu time"))),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the loop was not cut off"
    );
    // The runtime keeps serving after the interrupt.
    assert_eq!(call(&rt, &backend, "ok").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runaway_loops_do_not_block_a_single_worker() {
    let rt = load(RUNAWAY, limits(2_000), None);
    let backend = memory_backend();
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let (rt, backend) = (rt.clone(), backend.clone());
            tokio::spawn(async move { call(&rt, &backend, "loop").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    // Both workers run a loop, yet a call still gets through because loops
    // yield: it is answered while both loops are still running (an order, not
    // a timing, so a slow machine cannot fail it).
    assert_eq!(call(&rt, &backend, "ok").await.unwrap().status, 200);
    assert!(
        loops.iter().all(|l| !l.is_finished()),
        "the call was only answered after a runaway loop ended"
    );
    for l in loops {
        assert!(matches!(
            l.await.unwrap(),
            Err(CallError::LimitExceeded("cpu time"))
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_hits_the_memory_cap() {
    let rt = load(RUNAWAY, limits(5_000), None);
    let backend = memory_backend();
    let outcome = call(&rt, &backend, "alloc").await;
    assert!(
        matches!(outcome, Err(CallError::LimitExceeded("memory"))),
        "{outcome:?}"
    );
    assert_eq!(call(&rt, &backend, "ok").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_trap_is_reported_and_the_runtime_keeps_serving() {
    let rt = load(RUNAWAY, limits(5_000), None);
    let backend = memory_backend();
    let outcome = call(&rt, &backend, "trap").await;
    assert!(matches!(outcome, Err(CallError::Trap(_))), "{outcome:?}");
    assert_eq!(call(&rt, &backend, "ok").await.unwrap().status, 200);
}

/// A backend whose reads stall: each for a while, or, while its gate is closed, until the
/// test opens it (a call that reads then holds its instance and its tenant's slot).
struct StallingBackend {
    inner: SharedBackend,
    stall: Stall,
}

enum Stall {
    /// Each read takes this long.
    For(Duration),
    /// While `closed`, each read waits for a permit of `gate`, after adding one to `arrived`.
    Gate {
        closed: std::sync::atomic::AtomicBool,
        gate: tokio::sync::Semaphore,
        arrived: tokio::sync::Semaphore,
    },
}

impl StallingBackend {
    fn slow(delay: Duration) -> Self {
        StallingBackend {
            inner: memory_backend(),
            stall: Stall::For(delay),
        }
    }

    /// Its gate open until [`StallingBackend::close`].
    fn gated() -> Self {
        StallingBackend {
            inner: memory_backend(),
            stall: Stall::Gate {
                closed: std::sync::atomic::AtomicBool::new(false),
                gate: tokio::sync::Semaphore::new(0),
                arrived: tokio::sync::Semaphore::new(0),
            },
        }
    }

    fn gate(
        &self,
    ) -> (
        &std::sync::atomic::AtomicBool,
        &tokio::sync::Semaphore,
        &tokio::sync::Semaphore,
    ) {
        let Stall::Gate {
            closed,
            gate,
            arrived,
        } = &self.stall
        else {
            unreachable!("a gated backend")
        };
        (closed, gate, arrived)
    }

    fn close(&self) {
        self.gate()
            .0
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Opens the gate, letting `waiting` stalled reads through.
    fn open(&self, waiting: usize) {
        let (closed, gate, _) = self.gate();
        closed.store(false, std::sync::atomic::Ordering::Release);
        gate.add_permits(waiting);
    }

    /// Waits (bounded) until `n` reads stall at the closed gate.
    async fn stalled(&self, n: u32) {
        let arrived = tokio::time::timeout(Duration::from_secs(30), self.gate().2.acquire_many(n));
        arrived.await.unwrap().unwrap().forget();
    }
}

#[async_trait::async_trait]
impl kvsync::storage::Delegate for StallingBackend {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        match &self.stall {
            Stall::For(delay) => tokio::time::sleep(*delay).await,
            Stall::Gate {
                closed,
                gate,
                arrived,
            } => {
                if closed.load(std::sync::atomic::Ordering::Acquire) {
                    arrived.add_permits(1);
                    gate.acquire().await.unwrap().forget();
                }
            }
        }
        self.inner.get(key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_in_host_calls_is_not_charged_to_the_guest() {
    let slow: SharedBackend = Arc::new(StallingBackend::slow(Duration::from_millis(250)));
    // The real engine: `sys/mounts` reads the mount table through the host.
    let rt = load(runtime::ENGINE_COMPONENT, limits(100), None);
    let t = Instant::now();
    let resp = call(&rt, &slow, "sys/mounts").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    // And the test guest's single storage read, slower than its budget.
    let rt = load(RUNAWAY, limits(100), None);
    assert_eq!(call(&rt, &slow, "storage").await.unwrap().status, 200);
}

/// The CPU limit counts the guest's CPU time, not the time its thread is off
/// the CPU: here every clock read blocks the guest's thread (sleeping, as a
/// descheduled thread on a loaded machine) for several times the budget, and
/// the call still answers. `sys/health` reads the clock once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_the_guest_thread_is_off_the_cpu_is_not_charged() {
    let budget = Duration::from_millis(20);
    let wasi = DeterministicWasi::new(DEFAULT_START);
    wasi.stall_clock_reads(budget * 5);
    let cache = std::env::var_os("KVSYNC_CACHE_DIR").map(std::path::PathBuf::from);
    let rt =
        load(runtime::ENGINE_COMPONENT, limits(20), cache.as_deref()).with_deterministic_wasi(wasi);
    let t = Instant::now();
    let resp = call(&rt, &memory_backend(), "sys/health").await;
    assert!(t.elapsed() >= budget * 5, "the clock was read");
    let resp = resp.unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}

/// A request is stopped at `max_request_duration`, whatever it waits for
/// (host time the CPU limit does not see), and answered as a limit (503 with
/// Vault's envelope), not left hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_stopped_at_its_max_duration() {
    let stalled: SharedBackend = Arc::new(StallingBackend::slow(Duration::from_secs(3600)));
    let cache = std::env::var_os("KVSYNC_CACHE_DIR").map(std::path::PathBuf::from);
    let rt = load(runtime::ENGINE_COMPONENT, limits(100), cache.as_deref())
        .with_max_request_duration(Duration::from_millis(300));
    let out = tokio::time::timeout(Duration::from_secs(60), call(&rt, &stalled, "sys/mounts"))
        .await
        .expect("the request answers (bounded by the test at 60 s)");
    match out {
        Err(e @ CallError::LimitExceeded(_)) => {
            assert!(e.to_string().contains("request duration"), "{e}");
        }
        other => panic!("{:?}", other.map(|r| r.status)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_component_is_cached_on_disk() {
    let dir = std::env::temp_dir().join(format!("kvsync-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = Instant::now();
    load(RUNAWAY, limits(100), Some(&dir));
    let cold = first.elapsed();
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1, "one cached artifact");
    let second = Instant::now();
    let rt = load(RUNAWAY, limits(100), Some(&dir));
    let warm = second.elapsed();
    assert_eq!(
        call(&rt, &memory_backend(), "ok").await.unwrap().status,
        200
    );
    eprintln!("cold load {cold:?}, warm load {warm:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every instance slot is held by a call that waits in a storage read (so
/// it runs no longer, and another call gets its turn to run): that call is
/// refused as busy, not trapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_instance_pool_answers_busy_not_a_trap() {
    let mut one_slot = limits(300);
    one_slot.max_concurrent_instances = 1;
    let rt = load(RUNAWAY, one_slot, None);
    let gated = Arc::new(StallingBackend::gated());
    let backend: SharedBackend = gated.clone();
    kvsync_tests::root_identity(&backend).await.unwrap();
    gated.close();
    let stalled = {
        let (rt, backend) = (rt.clone(), backend.clone());
        tokio::spawn(async move { call(&rt, &backend, "storage").await })
    };
    gated.stalled(1).await;
    // Another tenant's call: the pool, not the first tenant's cap, refuses it.
    let outcome = call_as(&rt, &memory_backend(), "other", "ok").await;
    assert!(matches!(outcome, Err(CallError::Busy)), "{outcome:?}");
    gated.open(1);
    assert_eq!(stalled.await.unwrap().unwrap().status, 200);
    assert_eq!(call(&rt, &backend, "ok").await.unwrap().status, 200);
}

/// The noisy neighbour at the runtime: tenant `a` holds every slot of its
/// cap (its calls wait in a storage read), so its next call is refused as
/// busy after a short wait, while tenant `b`'s calls, on the same runtime and
/// instance pool, are served — with one call running at a time: `a`'s calls
/// gave their turn back while their storage reads wait. Once `a`'s calls
/// finish, `a` is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_concurrency_cap_does_not_hold_up_other_tenants() {
    let rt = load(
        RUNAWAY,
        Limits {
            tenant_max_concurrent_requests: Some(2),
            max_running_requests: Some(1),
            ..limits(5_000)
        },
        None,
    );
    let gated = Arc::new(StallingBackend::gated());
    let a_backend: SharedBackend = gated.clone();
    // The caller's identity is created before the gate closes.
    kvsync_tests::root_identity(&a_backend).await.unwrap();
    gated.close();
    let flood: Vec<_> = (0..2)
        .map(|_| {
            let (rt, backend) = (rt.clone(), a_backend.clone());
            tokio::spawn(async move { call_as(&rt, &backend, "a", "storage").await })
        })
        .collect();
    // Both of a's calls hold their slots: each reached the gate.
    gated.stalled(2).await;
    let b_backend = memory_backend();
    for _ in 0..3 {
        assert_eq!(
            call_as(&rt, &b_backend, "b", "ok").await.unwrap().status,
            200
        );
    }
    let refused = call_as(&rt, &a_backend, "a", "ok").await;
    assert!(matches!(refused, Err(CallError::TenantBusy)), "{refused:?}");
    gated.open(2);
    for call in flood {
        assert_eq!(call.await.unwrap().unwrap().status, 200);
    }
    assert_eq!(
        call_as(&rt, &a_backend, "a", "ok").await.unwrap().status,
        200
    );
    assert_eq!(rt.active_tenants(), 0);
}
