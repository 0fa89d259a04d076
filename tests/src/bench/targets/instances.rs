//! P3, P4: instantiation cost and memory per idle instance, the engine
//! against a minimal component.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{Bench, Bound, Row};
use crate::bench::stats::Summary;

static MINIMAL: &[u8] = include_bytes!(env!("RUNAWAY_WASM"));

fn bench_runtime(component: &'static [u8], slots: u32) -> anyhow::Result<kvsync::runtime::Runtime> {
    let limits = kvsync::runtime::Limits {
        max_concurrent_instances: slots,
        ..kvsync::runtime::Limits::default()
    };
    kvsync::server::engine(&kvsync::server::EngineOptions {
        component,
        limits,
        ..Default::default()
    })
}

fn bench_storage() -> anyhow::Result<kvsync::storage::TenantStorage> {
    use kvsync::storage::{Barrier, EncryptionKey, RedbBackend, SharedBackend, TenantStorage};
    let backend: SharedBackend = Arc::new(Barrier::new(
        RedbBackend::in_memory()?,
        EncryptionKey::generate()?,
    ));
    Ok(TenantStorage::new(backend, "root"))
}

/// Mean time of `n` fresh instantiations (store + instance, dropped at once).
async fn instantiations(
    rt: &kvsync::runtime::Runtime,
    storage: &kvsync::storage::TenantStorage,
    n: u32,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for _ in 0..n {
        let inst = rt
            .idle_instance(storage.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        drop(inst);
    }
    Ok(started.elapsed() / n)
}

/// `n` instantiated, idle engine instances.
async fn idle_instances(
    rt: &kvsync::runtime::Runtime,
    storage: &kvsync::storage::TenantStorage,
    n: usize,
) -> anyhow::Result<Vec<kvsync::runtime::IdleInstance>> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(
            rt.idle_instance(storage.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    Ok(held)
}

impl Bench<'_> {
    pub(super) async fn instantiation(&self) -> anyhow::Result<Vec<Row>> {
        let storage = bench_storage()?;
        let engine = bench_runtime(kvsync::runtime::ENGINE_COMPONENT, 16)?;
        let minimal = bench_runtime(MINIMAL, 16)?;
        const N: u32 = 2000;
        instantiations(&engine, &storage, N).await?;
        instantiations(&minimal, &storage, N).await?;
        let (mut real, mut small, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..self.opts.rounds.max(3) {
            let r = instantiations(&engine, &storage, N).await?;
            let s = instantiations(&minimal, &storage, N).await?;
            real.push(r.as_secs_f64() * 1e6);
            small.push(s.as_secs_f64() * 1e6);
            ratios.push(r.as_secs_f64() / s.as_secs_f64());
        }
        let rs = Summary::of(&ratios).context("no rounds")?;
        let (r, s) = (
            Summary::of(&real).context("no rounds")?,
            Summary::of(&small).context("no rounds")?,
        );
        Ok(vec![Row::ratio(
            "P3",
            "instantiation: fresh Store + instantiate, engine ÷ minimal component",
            &rs,
            Bound::AtMost(3.0),
            format!(
                "engine {:.1} µs ({} KB), minimal {:.1} µs ({} KB) per instantiation (medians of rounds of {N}, in-process on the load core)",
                r.median,
                kvsync::runtime::ENGINE_COMPONENT.len() / 1024,
                s.median,
                MINIMAL.len() / 1024
            ),
        )])
    }

    pub(super) async fn memory(&self) -> anyhow::Result<Vec<Row>> {
        const N: usize = 1000;
        let storage = bench_storage()?;
        let engine = bench_runtime(kvsync::runtime::ENGINE_COMPONENT, (N + 16) as u32)?;
        let mut per = Vec::new();
        for _ in 0..self.opts.rounds.clamp(1, 3) {
            // Warm: every slot touched once is what a long-running server has.
            drop(idle_instances(&engine, &storage, N).await?);
            let before = crate::bench::procs::rss_bytes("self")?;
            let held = idle_instances(&engine, &storage, N).await?;
            let after = crate::bench::procs::rss_bytes("self")?;
            per.push(after.saturating_sub(before) as f64 / N as f64 / 1024.0);
            drop(held);
        }
        let s = Summary::of(&per).context("no rounds")?;
        Ok(vec![Row {
            id: "P4-instance",
            what: "memory per idle engine instance (KiB)",
            measured: format!("{:.1} KiB ({:.1}–{:.1}, n={})", s.median, s.min, s.max, s.n),
            target: "≤ 16 KiB".into(),
            met: Some(s.median <= 16.0),
            note: format!(
                "RSS with {N} instantiated, idle engine instances held − RSS with none held (slots of the pooling allocator warmed first), ÷ {N}. An idle tenant holds no instance once its warm instances expire (30 s idle; at most 16 warm instances in all, whatever the number of tenants), so this is the cost of one that is still warm"
            ),
        }])
    }
}
