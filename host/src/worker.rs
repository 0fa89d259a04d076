//! The sync worker: runs the engine's `sync` export so queued work reaches the
//! destinations.
//!
//! All sync state lives in the tenant's storage (the outbox, written in the same
//! commit as the KV write or association change that causes it); the worker
//! keeps none. It runs `workers` loops, loop `i` processing shard `i` of `N`:
//! the engine shards entries by destination, so one destination is synced by one
//! loop at a time while `N` destinations sync concurrently. Each loop calls
//! [`Runtime::run_sync`] with a batch limit for as long as runs process
//! something, then sleeps until the next entry is due (at most the
//! reconciliation interval) or until it is woken: the HTTP layer wakes every
//! loop when a request's effects say it made sync work due (the WIT
//! `effects` record returned with the response), so a KV write's sync starts
//! within milliseconds. Every loop is woken, not only those of the named
//! destinations: which shard serves a destination is the engine's to decide. A reconciliation task calls
//! [`Runtime::reconcile`] at startup and then periodically, waking the loops
//! when it queued anything: that is how work a crash or a full queue missed
//! converges.
//!
//! A failed run (trap, limits, a full instance pool) is logged and the loop backs
//! off; the server keeps serving. Every loop, and the reconciliation task, runs
//! under a supervisor: one that dies (a panic anywhere below it) is logged and
//! started again after a pause that grows while it keeps dying, so no bug can
//! silence a shard for good. Stopping lets runs in flight finish, within a
//! grace period; an interrupted run loses nothing, since an outbox entry stays
//! until its outcome is committed.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt as _;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

pub use kvsync_host_core::settings::{
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, DEFAULT_COALESCE_WINDOW, DEFAULT_RECONCILE_INTERVAL,
    DEFAULT_WORKERS, MAX_COALESCE_WINDOW, MAX_WORKERS, SyncConfig,
};

use crate::runtime::{CallError, Runtime, SyncSettings, panic_message};
use crate::storage::{SharedBackend, TenantStorage};

/// Outbox entries one run processes at most. Each run reads the shard's
/// whole outbox to find the earliest due entries, so a larger batch spreads
/// that scan over more work (32 made the scan the worker's main cost with a
/// few hundred entries queued; P5 in BENCHMARKS.md).
pub const BATCH: u32 = 256;
/// How long [`Worker::stop`] lets runs in flight finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Shortest pause of an idle loop: an entry that is due but was not run (held
/// by a concurrent run, a clock step) must not make a loop spin.
const MIN_IDLE: Duration = Duration::from_millis(50);
/// Pause after a failed run, doubling per consecutive failure up to the cap.
const ERROR_PAUSE_BASE: Duration = Duration::from_millis(500);
const ERROR_PAUSE_CAP: Duration = Duration::from_secs(30);
/// A supervised loop that ran this long before it died starts its restart
/// pauses afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What the engine's `run` receives.
pub fn engine_settings(config: &SyncConfig) -> SyncSettings {
    SyncSettings {
        backoff_base_ms: millis(config.backoff_base),
        backoff_cap_ms: millis(config.backoff_cap),
        coalesce_window_ms: millis(config.coalesce_window),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch (the engine's clock).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// How long an idle loop sleeps: until the next entry is due, at least
/// [`MIN_IDLE`], at most `cap`; `cap` when nothing is queued.
fn idle_pause(next_due_ms: Option<u64>, now_ms: u64, cap: Duration) -> Duration {
    let cap = cap.max(MIN_IDLE);
    match next_due_ms {
        None => cap,
        Some(due) => Duration::from_millis(due.saturating_sub(now_ms))
            .max(MIN_IDLE)
            .min(cap),
    }
}

/// The pause after the `failures`-th consecutive failed run.
fn error_pause(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    ERROR_PAUSE_BASE
        .saturating_mul(1u32 << doublings)
        .min(ERROR_PAUSE_CAP)
}

struct Shared {
    runtime: Runtime,
    backend: SharedBackend,
    tenant: String,
    config: SyncConfig,
    wake: Arc<Notify>,
}

impl Shared {
    fn storage(&self) -> TenantStorage {
        TenantStorage::new(self.backend.clone(), &self.tenant)
    }
}

fn log_failure(what: &str, shard: Option<u32>, e: &CallError, pause: Option<Duration>) {
    match e {
        CallError::Trap(detail) => {
            tracing::error!(shard, retry_in = ?pause, detail = %detail, "sync {what} failed: the engine trapped");
        }
        other => {
            tracing::warn!(shard, retry_in = ?pause, error = %other, "sync {what} failed");
        }
    }
}

/// How [`Worker::stop`] ended the loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every loop ended on the stop signal (idle ones at once, runs in flight
    /// when they finished).
    Drained,
    /// Runs still in flight after the grace period were cancelled; their
    /// entries stay queued.
    Cancelled,
}

/// The running sync loops and the reconciliation task of one tenant.
pub struct Worker {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Worker {
    /// Starts the loops for `tenant`. `wake` is notified (`notify_waiters`) by
    /// whoever queues work; the worker notifies it too after a reconciliation
    /// that queued something. Must be called inside a tokio runtime.
    pub fn start(
        runtime: Runtime,
        backend: SharedBackend,
        tenant: &str,
        config: SyncConfig,
        wake: Arc<Notify>,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            runtime,
            backend,
            tenant: tenant.to_string(),
            config,
            wake,
        });
        let mut tasks = JoinSet::new();
        {
            let (shared, stop) = (shared.clone(), stopped.clone());
            tasks.spawn(supervised(
                "reconciliation",
                None,
                stopped.clone(),
                move || reconcile_loop(shared.clone(), stop.clone()),
            ));
        }
        for shard in 0..shared.config.workers.max(1) {
            let (shared, stop) = (shared.clone(), stopped.clone());
            tasks.spawn(supervised(
                "shard",
                Some(shard),
                stopped.clone(),
                move || shard_loop(shared.clone(), shard, stop.clone()),
            ));
        }
        tracing::info!(
            tenant,
            workers = shared.config.workers,
            backoff_base = ?shared.config.backoff_base,
            backoff_cap = ?shared.config.backoff_cap,
            reconcile_interval = ?shared.config.reconcile_interval,
            coalesce_window = ?shared.config.coalesce_window,
            "sync worker started"
        );
        Worker { stop, tasks }
    }

    /// Stops the loops: idle ones at once, runs in flight within `grace`
    /// (then they are cancelled; their entries stay queued).
    pub async fn stop(mut self, grace: Duration) -> Stopped {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        let stopped = match drained {
            Ok(()) => Stopped::Drained,
            Err(_) => {
                tracing::warn!(
                    ?grace,
                    "sync runs did not finish within the grace period; cancelled (their work stays queued)"
                );
                self.tasks.abort_all();
                while self.tasks.join_next().await.is_some() {}
                Stopped::Cancelled
            }
        };
        tracing::info!("sync worker stopped");
        stopped
    }
}

/// Runs the loop `start` makes until it returns (it was told to stop);
/// whenever it panics instead, logs it and starts a new one after a pause
/// ([`error_pause`] of the deaths in a row; a loop that ran for
/// [`HEALTHY_RUN`] first starts the count afresh), unless stopping.
async fn supervised<F, Fut>(
    what: &'static str,
    shard: Option<u32>,
    mut stop: watch::Receiver<bool>,
    start: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut deaths: u32 = 0;
    loop {
        let began = Instant::now();
        let Err(panic) = AssertUnwindSafe(start()).catch_unwind().await else {
            return;
        };
        if began.elapsed() >= HEALTHY_RUN {
            deaths = 0;
        }
        deaths = deaths.saturating_add(1);
        let pause = error_pause(deaths);
        tracing::error!(
            shard,
            restart_in = ?pause,
            panic = %panic_message(panic.as_ref()),
            "the sync {what} loop died (a panic); it is started again"
        );
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            end = stopping(&mut stop) => if end { return },
        }
    }
}

/// Waits for a change of the stop flag; true when the loop must end.
async fn stopping(stop: &mut watch::Receiver<bool>) -> bool {
    match stop.changed().await {
        Ok(()) => *stop.borrow(),
        Err(_) => true,
    }
}

/// Whether `woken` has already fired (polled once, without registering a
/// real waker). Once it returns true, `woken` must not be polled again.
fn fired(woken: Pin<&mut Notified<'_>>) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    woken.poll(&mut cx).is_ready()
}

async fn shard_loop(shared: Arc<Shared>, shard: u32, mut stop: watch::Receiver<bool>) {
    let shards = shared.config.workers.max(1);
    let settings = engine_settings(&shared.config);
    let mut failures: u32 = 0;
    while !*stop.borrow() {
        // Registered before the run: a wake-up that arrives while the run is
        // in progress is kept, so work queued meanwhile is never left asleep.
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let outcome = shared
            .runtime
            .run_sync(shared.storage(), shard, shards, BATCH, settings)
            .await;
        let woken_during_run = fired(woken.as_mut());
        let (pause, wakeable) = match outcome {
            Ok(report) => {
                failures = 0;
                if report.processed > 0 {
                    if report.failed > 0 {
                        tracing::info!(
                            shard,
                            processed = report.processed,
                            failed = report.failed,
                            "sync run"
                        );
                    } else {
                        tracing::debug!(shard, processed = report.processed, "sync run");
                    }
                }
                if report.processed > 0 || woken_during_run {
                    // More may be due (a full batch, retries), or work was
                    // queued while this run went on: go on at once. A secret
                    // that keeps changing does not make this spin: the engine
                    // holds its entry back (coalescing) and wakes no one.
                    (Duration::ZERO, false)
                } else {
                    let pause = idle_pause(
                        report.next_due_ms,
                        now_ms(),
                        shared.config.reconcile_interval,
                    );
                    (pause, true)
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = error_pause(failures);
                log_failure("run", Some(shard), &e, Some(pause));
                (pause, false)
            }
        };
        if pause.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = &mut woken, if wakeable => {}
            end = stopping(&mut stop) => if end { break },
        }
    }
}

async fn reconcile_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match shared.runtime.reconcile(shared.storage()).await {
            Ok(0) => tracing::debug!("sync reconciliation: nothing missed"),
            Ok(queued) => {
                tracing::info!(queued, "sync reconciliation queued missed work");
                shared.wake.notify_waiters();
            }
            Err(e) => log_failure("reconciliation", None, &e, None),
        }
        tokio::select! {
            () = tokio::time::sleep(shared.config.reconcile_interval) => {}
            end = stopping(&mut stop) => if end { break },
        }
    }
}

/// Totals of a [`drain`], readable while it runs (for progress display).
#[derive(Debug, Default)]
pub struct DrainProgress {
    processed: AtomicU64,
    failed: AtomicU64,
}

impl DrainProgress {
    /// Entries processed so far, and how many of them ended in an error status.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.processed.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// The outcome of a [`drain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Associations the opening reconciliation queued.
    pub reconciled: u32,
    /// Outbox entries processed.
    pub processed: u64,
    /// Of those, the ones that ended in an error status.
    pub failed: u64,
    /// When the earliest entry left in the outbox is due (ms since the Unix
    /// epoch); `None` when nothing is left.
    pub next_due_ms: Option<u64>,
}

/// Processes all work that is due now, without a server (`kvsync sync run
/// --once`): one reconciliation, then every shard runs batches until a run
/// processes nothing and nothing is due now. Entries due later (retries
/// waiting for their backoff) are left, unless they fall due within `wait`
/// of the start: those are waited for and run too. `next_due_ms` says when
/// the first entry left is due.
pub async fn drain(
    runtime: &Runtime,
    backend: &SharedBackend,
    tenant: &str,
    config: &SyncConfig,
    wait: Duration,
    progress: Arc<DrainProgress>,
) -> Result<DrainReport, CallError> {
    let deadline = Instant::now() + wait;
    let reconciled = runtime
        .reconcile(TenantStorage::new(backend.clone(), tenant))
        .await?;
    let shards = config.workers.max(1);
    // A one-shot drain takes every change as it is now: nothing to coalesce.
    let settings = SyncSettings {
        coalesce_window_ms: 0,
        ..engine_settings(config)
    };
    let mut tasks = JoinSet::new();
    for shard in 0..shards {
        let runtime = runtime.clone();
        let storage = TenantStorage::new(backend.clone(), tenant);
        let progress = progress.clone();
        tasks.spawn(async move {
            drain_shard(
                &runtime, &storage, shard, shards, settings, deadline, &progress,
            )
            .await
        });
    }
    let mut next_due_ms: Option<u64> = None;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(due)) => {
                next_due_ms = match (next_due_ms, due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(CallError::Trap(format!("sync task failed: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let (processed, failed) = progress.totals();
    Ok(DrainReport {
        reconciled,
        processed,
        failed,
        next_due_ms,
    })
}

/// Drains one shard; returns when its next entry is due.
async fn drain_shard(
    runtime: &Runtime,
    storage: &TenantStorage,
    shard: u32,
    shards: u32,
    settings: SyncSettings,
    deadline: Instant,
    progress: &DrainProgress,
) -> Result<Option<u64>, CallError> {
    let mut idle_retried = false;
    loop {
        let report = runtime
            .run_sync(storage.clone(), shard, shards, BATCH, settings)
            .await?;
        progress
            .processed
            .fetch_add(u64::from(report.processed), Ordering::Relaxed);
        progress
            .failed
            .fetch_add(u64::from(report.failed), Ordering::Relaxed);
        if report.processed > 0 {
            idle_retried = false;
            continue;
        }
        let Some(due) = report.next_due_ms else {
            return Ok(None);
        };
        let until_due = Duration::from_millis(due.saturating_sub(now_ms()));
        if until_due.is_zero() {
            // Nothing ran although something is due now: try once more after
            // a short pause, then leave it rather than spin.
            if idle_retried {
                return Ok(Some(due));
            }
            idle_retried = true;
            tokio::time::sleep(MIN_IDLE).await;
            continue;
        }
        if Instant::now() + until_due > deadline {
            return Ok(Some(due));
        }
        // Falls due within the wait: sleep until then and run it.
        idle_retried = false;
        tokio::time::sleep(until_due.max(MIN_IDLE)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_loops_sleep_until_due_within_bounds() {
        let cap = Duration::from_secs(60);
        assert_eq!(idle_pause(None, 1_000, cap), cap);
        assert_eq!(
            idle_pause(Some(3_500), 1_000, cap),
            Duration::from_millis(2_500)
        );
        // Overdue: a short pause, never zero (no spinning).
        assert_eq!(idle_pause(Some(10), 1_000, cap), MIN_IDLE);
        // Far away: capped by the reconciliation interval.
        assert_eq!(idle_pause(Some(u64::MAX), 0, cap), cap);
        // A cap below the floor is raised to it rather than panicking.
        assert_eq!(idle_pause(None, 0, Duration::ZERO), MIN_IDLE);
    }

    #[test]
    fn failed_runs_back_off_exponentially_to_a_cap() {
        assert_eq!(error_pause(1), Duration::from_millis(500));
        assert_eq!(error_pause(2), Duration::from_secs(1));
        assert_eq!(error_pause(3), Duration::from_secs(2));
        assert_eq!(error_pause(8), ERROR_PAUSE_CAP);
        assert_eq!(error_pause(u32::MAX), ERROR_PAUSE_CAP);
    }

    #[test]
    fn config_validation() {
        assert!(SyncConfig::default().validate().is_ok());
        let settings = engine_settings(&SyncConfig::default());
        assert_eq!(settings.backoff_base_ms, 1_000);
        assert_eq!(settings.backoff_cap_ms, 300_000);
        assert_eq!(settings.coalesce_window_ms, 1_000);
        for bad in [
            SyncConfig {
                workers: 0,
                ..SyncConfig::default()
            },
            SyncConfig {
                workers: MAX_WORKERS + 1,
                ..SyncConfig::default()
            },
            SyncConfig {
                backoff_base: Duration::ZERO,
                ..SyncConfig::default()
            },
            SyncConfig {
                backoff_base: Duration::from_secs(10),
                backoff_cap: Duration::from_secs(1),
                ..SyncConfig::default()
            },
            SyncConfig {
                reconcile_interval: Duration::ZERO,
                ..SyncConfig::default()
            },
            SyncConfig {
                coalesce_window: Duration::from_secs(11),
                ..SyncConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
