//! Per-call cost of the wasmtime runtime, for the real engine component and for
//! a minimal component built with the same toolchain (the `runaway` test guest,
//! which answers any `handle` with 200 on path `ok`), side by side:
//!
//! * `instantiate`: a fresh `Store` and instantiation from the `InstancePre`,
//!   no export called (the store is dropped, returning its pool slot);
//! * `call round trip (fresh instance)`: fresh `Store` + instantiation + one
//!   `handle` call, with the warm-instance pool off (`warm_instances: 0`):
//!   `GET sys/health` on the engine, `GET ok` on the minimal component, and a
//!   KV-v2 read `GET secret/data/bench` on the engine;
//! * `call round trip (warm instance)`: the same calls with the default
//!   limits, where each call reuses the tenant's warm instance.
//!
//! Storage is the AES-GCM barrier over an in-memory redb.
//!
//! Run: `cargo bench -p kvsync-tests --bench runtime` (add `-- --quick` for a
//! short run).
#![expect(
    clippy::unwrap_used,
    reason = "benchmark code: a failed setup ends the run by panicking"
)]

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use kvsync::runtime::{self, Limits, Runtime};
use kvsync::storage::{Barrier, EncryptionKey, RedbBackend, SharedBackend, TenantStorage};

static MINIMAL: &[u8] = include_bytes!(env!("RUNAWAY_WASM"));

const TENANT: &str = "root";

struct Fixture {
    tokio: tokio::runtime::Runtime,
    backend: SharedBackend,
    /// A fresh instance per call.
    engine: Runtime,
    minimal: Runtime,
    /// Warm instances reused across calls (the default limits).
    engine_warm: Runtime,
    minimal_warm: Runtime,
}

impl Fixture {
    fn new() -> Self {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let backend: SharedBackend = Arc::new(Barrier::new(
            RedbBackend::in_memory().unwrap(),
            EncryptionKey::generate().unwrap(),
        ));
        let load = |component: &'static [u8], limits: Limits| {
            kvsync::server::engine(&kvsync::server::EngineOptions {
                component,
                limits,
                ..Default::default()
            })
            .unwrap()
        };
        let cold = || Limits {
            warm_instances: 0,
            ..Limits::default()
        };
        let fixture = Fixture {
            tokio,
            backend,
            engine: load(runtime::ENGINE_COMPONENT, cold()),
            minimal: load(MINIMAL, cold()),
            engine_warm: load(runtime::ENGINE_COMPONENT, Limits::default()),
            minimal_warm: load(MINIMAL, Limits::default()),
        };
        // The KV-v2 secret read by the `engine GET secret/data/bench` case.
        fixture.call(
            &fixture.engine,
            "POST",
            "sys/mounts/secret",
            br#"{"type":"kv","options":{"version":"2"}}"#,
        );
        fixture.call(
            &fixture.engine,
            "POST",
            "secret/data/bench",
            br#"{"data":{"k":"v"}}"#,
        );
        fixture
    }

    fn storage(&self) -> TenantStorage {
        TenantStorage::new(self.backend.clone(), TENANT)
    }

    /// One request through `Runtime::handle`; panics unless it succeeds.
    fn call(&self, rt: &Runtime, method: &str, path: &str, body: &[u8]) {
        let identity = self
            .tokio
            .block_on(kvsync_tests::root_identity(&self.backend))
            .unwrap();
        let req = runtime::request(method, path, body, Some(identity));
        let resp = self
            .tokio
            .block_on(rt.handle(self.storage(), req))
            .unwrap()
            .response;
        assert!(
            resp.status < 300,
            "{method} {path}: {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        black_box(resp);
    }

    fn instantiate(&self, rt: &Runtime) {
        self.tokio
            .block_on(rt.idle_instance(self.storage()))
            .unwrap();
    }
}

fn benches(c: &mut Criterion) {
    let f = Fixture::new();
    println!(
        "engine component: {} bytes; minimal component: {} bytes",
        runtime::ENGINE_COMPONENT.len(),
        MINIMAL.len()
    );

    let mut g = c.benchmark_group("instantiate");
    g.bench_function("engine", |b| b.iter(|| f.instantiate(&f.engine)));
    g.bench_function("minimal", |b| b.iter(|| f.instantiate(&f.minimal)));
    g.finish();

    for (group, engine, minimal) in [
        ("call round trip (fresh instance)", &f.engine, &f.minimal),
        (
            "call round trip (warm instance)",
            &f.engine_warm,
            &f.minimal_warm,
        ),
    ] {
        let mut g = c.benchmark_group(group);
        g.bench_function("engine GET sys/health", |b| {
            b.iter(|| f.call(engine, "GET", "sys/health", b""))
        });
        g.bench_function("minimal GET ok", |b| {
            b.iter(|| f.call(minimal, "GET", "ok", b""))
        });
        g.bench_function("engine GET secret/data/bench", |b| {
            b.iter(|| f.call(engine, "GET", "secret/data/bench", b""))
        });
        g.finish();
    }
}

criterion_group! {
    name = runtime_benches;
    config = common::config();
    targets = benches
}
criterion_main!(runtime_benches);
