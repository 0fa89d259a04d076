//! Per-call limits: memory and the guest's own CPU time.
//!
//! CPU: epoch interruption with a process-wide ticker. Whenever the guest passes
//! its epoch deadline, the store's callback computes the guest's running time —
//! wall time since the call began, minus time spent inside host calls and time
//! spent yielded to other tasks — and either interrupts the call (over budget) or
//! yields to the async runtime and continues. So a runaway guest never holds a
//! worker thread for more than one tick, and a slow host call is never charged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};

use super::state::State;

/// How often the epoch advances: the granularity of CPU accounting and of yields.
pub const TICK: Duration = Duration::from_millis(5);

pub use kvsync_host_core::settings::Limits;

/// Advances the engine's epoch every [`TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kvsync-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Measures the guest's own running time during one call.
pub struct CpuMeter {
    started: Instant,
    budget: Duration,
    /// Nanoseconds spent in host calls or yielded (shared with yield futures).
    not_guest: Arc<AtomicU64>,
    exceeded: bool,
}

impl CpuMeter {
    pub fn new(budget: Duration) -> Self {
        CpuMeter {
            started: Instant::now(),
            budget,
            not_guest: Arc::new(AtomicU64::new(0)),
            exceeded: false,
        }
    }

    /// Records time the guest spent waiting on the host.
    pub fn charge_host(&self, spent: Duration) {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.not_guest.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn guest_time(&self) -> Duration {
        self.started
            .elapsed()
            .saturating_sub(Duration::from_nanos(self.not_guest.load(Ordering::Relaxed)))
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded
    }
}

/// Sets the memory limiter and the CPU deadline on a fresh store (a reused
/// store gets a new [`CpuMeter`] and deadline per call: [`rearm`]).
pub fn arm(store: &mut Store<State>, limits: &Limits) {
    store.limiter(|s| &mut s.memory);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let meter = &mut ctx.data_mut().cpu;
        if meter.guest_time() > meter.budget {
            meter.exceeded = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        // Yield so other requests run; time spent yielded is not the guest's.
        let not_guest = meter.not_guest.clone();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                let t = Instant::now();
                tokio::task::yield_now().await;
                let nanos = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                not_guest.fetch_add(nanos, Ordering::Relaxed);
            }),
        ))
    });
    let _ = limits;
}

/// Readies a store that served a call before for the next one: a new CPU
/// budget counted from now, and the next epoch as the deadline.
pub fn rearm(store: &mut Store<State>, limits: &Limits) {
    store.data_mut().cpu = CpuMeter::new(limits.cpu);
    store.set_epoch_deadline(1);
}

/// Wasmtime's [`StoreLimits`] with `trap_on_grow_failure`, remembering whether
/// the cap was hit so the call can be answered as a limit, not a bug.
pub struct MemoryLimiter {
    inner: StoreLimits,
    pub exceeded: bool,
    /// The linear memory's size after its last growth (bytes).
    pub size: usize,
}

impl MemoryLimiter {
    pub fn new(memory_bytes: usize) -> Self {
        MemoryLimiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            exceeded: false,
            size: 0,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let outcome = self.inner.memory_growing(current, desired, maximum);
        if matches!(outcome, Ok(true)) {
            self.size = self.size.max(desired);
        } else {
            self.exceeded = true;
        }
        outcome
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}
