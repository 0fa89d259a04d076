//! Per-request cost of the runtime: a fresh `Store`, instantiation from the
//! `InstancePre` and one `handle` call, for the real engine component and for
//! a minimal component built with the same toolchain (the test guest), side by
//! side in one run. Reports medians of several rounds and their ratio (P3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvsync::connectors::Connectors;
use kvsync::runtime::{self, Caller, Limits, Runtime};
use kvsync::storage::{Barrier, EncryptionKey, RedbBackend, SharedBackend, TenantStorage};

static MINIMAL: &[u8] = include_bytes!(env!("RUNAWAY_WASM"));

const ROUNDS: usize = 7;
const CALLS: usize = 2_000;

fn root() -> Caller {
    Caller {
        token: "root".into(),
        accessor: "acc".into(),
        display_name: "root".into(),
        policies: vec!["root".into()],
        path: "auth/token/root".into(),
        creation_time: 0,
    }
}

async fn round(rt: &Runtime, backend: &SharedBackend, path: &str) -> Duration {
    let start = Instant::now();
    for _ in 0..CALLS {
        let req = runtime::request("GET", path, b"", Some(root()));
        let resp = rt
            .handle(TenantStorage::new(backend.clone(), "root"), req)
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
    }
    start.elapsed() / CALLS as u32
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend: SharedBackend = Arc::new(Barrier::new(
            RedbBackend::in_memory().unwrap(),
            EncryptionKey::generate().unwrap(),
        ));
        let t = Instant::now();
        let engine = Runtime::new(
            runtime::ENGINE_COMPONENT,
            Limits::default(),
            Arc::new(Connectors::new()),
            None,
        )
        .unwrap();
        let compile_engine = t.elapsed();
        let minimal = Runtime::new(
            MINIMAL,
            Limits::default(),
            Arc::new(Connectors::new()),
            None,
        )
        .unwrap();
        let (mut real, mut small) = (Vec::new(), Vec::new());
        // Warm-up, then interleaved rounds so both see the same machine state.
        round(&engine, &backend, "sys/health").await;
        round(&minimal, &backend, "ok").await;
        for _ in 0..ROUNDS {
            real.push(round(&engine, &backend, "sys/health").await);
            small.push(round(&minimal, &backend, "ok").await);
        }
        let (real, small) = (median(real), median(small));
        println!(
            "engine component: {} bytes, compiled in {compile_engine:?}",
            runtime::ENGINE_COMPONENT.len()
        );
        println!("minimal component: {} bytes", MINIMAL.len());
        println!("per request (new Store + instantiate + handle), median of {ROUNDS} x {CALLS}:");
        println!("  engine  GET sys/health : {real:?}");
        println!("  minimal GET ok         : {small:?}");
        println!(
            "  ratio engine / minimal : {:.2}",
            real.as_secs_f64() / small.as_secs_f64()
        );
    });
}
