//! Per-call limits: memory and the guest's own CPU time.
//!
//! CPU: epoch interruption with a process-wide ticker. Whenever the guest passes
//! its epoch deadline, the store's callback computes the guest's running time —
//! the CPU time of the threads while they ran the guest, leaving out host calls
//! and time yielded to other tasks ([`CpuMeter`]) — and either interrupts the
//! call (over budget) or yields to the async runtime and continues. So a runaway
//! guest never holds a worker thread for more than one tick, a slow host call is
//! never charged, and neither is time the OS gives the CPU to other threads.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{JoinHandle, ThreadId};
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

/// The clock a [`CpuMeter`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The CPU time of the thread running the guest: while the OS runs
    /// other threads (a loaded machine, another tenant's work) the guest's
    /// budget is not used up.
    ThreadCpu,
    /// Wall time, where the platform has no thread CPU clock.
    Wall,
}

impl Clock {
    /// The thread CPU clock where the platform has one, else wall time.
    pub fn best() -> Clock {
        static BEST: OnceLock<Clock> = OnceLock::new();
        *BEST.get_or_init(|| {
            if thread_cpu_time().is_some() {
                Clock::ThreadCpu
            } else {
                Clock::Wall
            }
        })
    }
}

/// The CPU time the calling thread has used so far (`None`: no such clock).
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn thread_cpu_time() -> Option<Duration> {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .ok()
        .map(Duration::from)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

/// Where a stretch of guest running began.
struct Mark {
    thread: ThreadId,
    wall: Instant,
    /// The thread's CPU time then (`None`: the meter counts wall time).
    cpu: Option<Duration>,
}

impl Mark {
    fn now(clock: Clock) -> Mark {
        Mark {
            thread: std::thread::current().id(),
            wall: Instant::now(),
            cpu: match clock {
                Clock::ThreadCpu => thread_cpu_time(),
                Clock::Wall => None,
            },
        }
    }

    /// The guest's time from the mark to now. Thread CPU clocks compare only
    /// on one thread: a stretch that ends on another thread than it began
    /// (the guest was moved without passing a host call or a yield) is
    /// counted in wall time, which never undercounts.
    fn elapsed(&self) -> Duration {
        match self.cpu {
            Some(start) if self.thread == std::thread::current().id() => thread_cpu_time()
                .map(|now| now.saturating_sub(start))
                .unwrap_or_else(|| self.wall.elapsed()),
            _ => self.wall.elapsed(),
        }
    }
}

/// The guest's time so far in one call.
struct Run {
    /// The stretches that ended: at a host call, a yield or a check.
    spent: Duration,
    /// When the running stretch began (`None`: in a host call or yielded).
    running: Option<Mark>,
}

/// The part of a meter a yield shares: the guest's stretches.
struct Stretches {
    clock: Clock,
    run: Mutex<Run>,
}

impl Stretches {
    fn run(&self) -> MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The guest stops running (a host call, a yield): its stretch ends.
    fn pause(&self) {
        let mut run = self.run();
        if let Some(mark) = run.running.take() {
            run.spent = run.spent.saturating_add(mark.elapsed());
        }
    }

    /// The guest runs again, on the calling thread.
    fn resume(&self) {
        let mut run = self.run();
        if run.running.is_none() {
            run.running = Some(Mark::now(self.clock));
        }
    }

    fn total(&self) -> Duration {
        let run = self.run();
        let current = run.running.as_ref().map_or(Duration::ZERO, Mark::elapsed);
        run.spent.saturating_add(current)
    }
}

/// Measures the guest's own running time during one call: the sum of the
/// stretches in which it runs, each from the call's start, a host call's
/// return or a yield's resumption to the next host call, yield or check.
/// Each stretch is read on the thread that runs the guest through it
/// (nothing in a stretch awaits, so the guest stays on one thread), in the
/// thread's CPU time where the platform has that clock ([`Clock::best`]).
pub struct CpuMeter {
    budget: Duration,
    stretches: Arc<Stretches>,
    exceeded: bool,
}

impl CpuMeter {
    /// A meter whose guest starts running now, on this thread.
    pub fn new(budget: Duration) -> Self {
        Self::with_clock(budget, Clock::best())
    }

    pub fn with_clock(budget: Duration, clock: Clock) -> Self {
        let stretches = Arc::new(Stretches {
            clock,
            run: Mutex::new(Run {
                spent: Duration::ZERO,
                running: None,
            }),
        });
        stretches.resume();
        CpuMeter {
            budget,
            stretches,
            exceeded: false,
        }
    }

    /// Runs `call`, a host call the guest waits on, off the guest's time.
    pub async fn host<F: Future>(&self, call: F) -> F::Output {
        self.stretches.pause();
        let out = call.await;
        self.stretches.resume();
        out
    }

    pub fn guest_time(&self) -> Duration {
        self.stretches.total()
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
        // The guest's stretch ends here, on its thread; it resumes after
        // the yield, on whichever thread then runs it.
        let stretches = meter.stretches.clone();
        stretches.pause();
        if stretches.total() > meter.budget {
            meter.exceeded = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        // Yield so other requests run; time spent yielded is not the guest's. While
        // other calls wait for a turn, an API call gives its turn to them and queues again.
        let give_way = ctx
            .data_mut()
            .turn
            .as_ref()
            .and_then(super::fair::Turn::give_way);
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                match give_way {
                    Some(give_way) => give_way.run().await,
                    None => tokio::task::yield_now().await,
                }
                stretches.resume();
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

#[cfg(test)]
mod tests {
    use super::*;

    const NAP: Duration = Duration::from_millis(60);

    #[test]
    fn time_the_thread_is_off_the_cpu_is_counted_by_the_wall_clock_only() {
        let wall = CpuMeter::with_clock(Duration::from_secs(1), Clock::Wall);
        let cpu = CpuMeter::with_clock(Duration::from_secs(1), Clock::ThreadCpu);
        // A sleeping thread uses no CPU, as a descheduled one.
        std::thread::sleep(NAP);
        assert!(wall.guest_time() >= NAP, "{:?}", wall.guest_time());
        #[cfg(any(target_os = "linux", target_os = "macos"))]
        assert_eq!(Clock::best(), Clock::ThreadCpu);
        if thread_cpu_time().is_some() {
            assert!(cpu.guest_time() < NAP / 2, "{:?}", cpu.guest_time());
        }
    }

    #[test]
    fn work_on_the_guest_thread_is_counted() {
        let cpu = CpuMeter::new(Duration::from_secs(1));
        let work = Duration::from_millis(20);
        let started = Instant::now();
        let mut x = 0u64;
        while cpu.guest_time() < work {
            x = std::hint::black_box(x.wrapping_add(1));
            assert!(started.elapsed() < Duration::from_secs(60), "never counted");
        }
    }

    #[tokio::test]
    async fn host_calls_are_not_the_guests_even_when_they_use_the_cpu() {
        let cpu = CpuMeter::new(Duration::from_secs(1));
        let host_work = Duration::from_millis(40);
        let used = cpu
            .host(async {
                let start = Mark::now(Clock::best());
                while start.elapsed() < host_work {
                    std::hint::black_box(());
                }
                start.elapsed()
            })
            .await;
        assert!(used >= host_work);
        assert!(cpu.guest_time() < host_work / 2, "{:?}", cpu.guest_time());
    }

    #[test]
    fn a_stretch_that_moves_to_another_thread_is_counted_in_wall_time() {
        let cpu = CpuMeter::with_clock(Duration::from_secs(1), Clock::ThreadCpu);
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(NAP);
                assert!(cpu.guest_time() >= NAP, "{:?}", cpu.guest_time());
            });
        });
    }
}
