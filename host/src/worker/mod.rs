//! The sync worker: runs the engine's `sync` export so queued work reaches the
//! destinations, for every tenant of the server.
//!
//! All sync state lives in the tenants' storage (the outbox, written in the same
//! commit as the KV write or association change that causes it); the worker
//! keeps none. It runs `workers` loops, loop `i` processing shard `i` of `N` of
//! every tenant's work: the engine shards entries by destination, so one
//! destination is synced by one loop at a time while `N` destinations sync
//! concurrently.
//!
//! **Which tenants.** A loop serves the tenants that the host's index of sync
//! work ([`sync_index`](crate::storage::sync_index)) files in its shard; that
//! index is written in the same commit as the work, so idle tenants cost
//! nothing, at start or later. A loop that takes its shard reads the index of
//! that shard; from then on the storage's change feed says which tenant got
//! work in which shard (the index record its commit wrote: a request of this
//! host, or, with shared storage, of another), and the loop of a held shard
//! queues that tenant. A feed that lost track (`Reset`) makes every held shard
//! read its index again.
//!
//! **Fairness.** Tenants take turns ([`queue::TenantQueue`]): each run does at
//! most [`BATCH`] entries of one tenant; a tenant with more goes to the back
//! of the queue, so one tenant's flood delays another's change by at most one
//! batch. A tenant with nothing due waits, in memory, until its next entry is;
//! one with nothing left is dropped from the index once its work is provably
//! gone (also when the tenant itself is gone).
//!
//! **Reconciliation** runs where shard 0 is held, over the tenants that have
//! sync destinations (an index too), a few at a time ([`RECONCILE_PAGE`] per
//! step, steps 1/60 of the reconciliation interval apart, then a pause of the
//! interval after each full cycle): work a crash or a full queue missed
//! converges, and a server with thousands of tenants never reconciles them all
//! at once.
//!
//! Several hosts may share the storage: a loop runs its shard only while this
//! host holds the shard's lease — one lease per shard for all tenants — and
//! every commit of its runs is fenced by that lease ([`crate::ha`]); a lease
//! task takes and renews them. Stopping releases the leases.
//!
//! A failed run (trap, limits, a full instance pool) is logged and the tenant
//! waits a growing pause; other tenants go on. Every loop, and the
//! reconciliation task, runs under a supervisor: one that dies (a panic
//! anywhere below it) is logged and started again after a pause that grows
//! while it keeps dying, so no bug can silence a shard for good. Stopping lets
//! runs in flight finish, within a grace period; an interrupted run loses
//! nothing, since an outbox entry stays until its outcome is committed.
//!
//! **Where things live.** `mod.rs`: [`Worker`] (start, stop), the state its
//! tasks share and their supervisor; `shard.rs`: a shard's loop and one run of
//! a tenant; `queue.rs`: the tenants' turns; `lease.rs`: the lease keeper and
//! the change-feed follower; `reconcile.rs`: paced reconciliation; `drain.rs`:
//! the one-shot drain of `sync run --once`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt as _;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

pub use kvsync_host_core::settings::{
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, DEFAULT_COALESCE_WINDOW, DEFAULT_RECONCILE_INTERVAL,
    DEFAULT_WORKERS, MAX_COALESCE_WINDOW, MAX_WORKERS, SyncConfig,
};

use crate::ha::{self, HostInfo, LeaseTable, Leases};
use crate::runtime::{CallError, Runtime, SyncSettings, panic_message};
use crate::storage::{SharedBackend, TenantStorage};

mod drain;
mod lease;
mod queue;
mod reconcile;
mod shard;

pub use drain::{DrainProgress, DrainReport, drain, take_leases};
pub use queue::{Next, TenantQueue};
pub use reconcile::RECONCILE_PAGE;

use lease::{follow_loop, lease_loop};
use reconcile::reconcile_loop;
use shard::{ShardState, shard_loop};

/// Outbox entries one run processes at most: a tenant's batch, after which
/// the other tenants of the shard take their turns. Each run reads the first
/// keys of the tenant's due index in the shard, so a larger batch spreads
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
    config: SyncConfig,
    wake: Arc<Notify>,
    leases: Leases,
    table: LeaseTable,
    shards: Arc<[ShardState]>,
}

impl Shared {
    fn shard(&self, shard: u32) -> Option<&ShardState> {
        self.shards.get(usize::try_from(shard).ok()?)
    }

    fn wake_shard(&self, shard: u32) {
        if let Some(state) = self.shard(shard) {
            state.wake.notify_one();
        }
    }

    /// Makes every held shard read its index again.
    fn rescan_held(&self) {
        for held in self.table.all_held() {
            if let Some(state) = self.shard(held.shard) {
                state.rescan.store(true, Ordering::Relaxed);
                state.wake.notify_one();
            }
        }
    }
}

/// `tenant`'s storage as a run sees it while `held` lasts: every commit fenced by the lease.
fn fenced_storage(
    leases: &Leases,
    table: &LeaseTable,
    held: ha::Held,
    tenant: &str,
) -> TenantStorage {
    let fenced = leases.fenced(held, table.subscribe(held.shard));
    TenantStorage::new(Arc::new(fenced), tenant)
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

/// The running sync loops, the lease keeper, the feed follower and the reconciliation task,
/// for every tenant.
pub struct Worker {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    shared: Arc<Shared>,
}

impl Worker {
    /// Starts the loops for every tenant with work, as host `host`. `wake` is notified
    /// (`notify_waiters`) by whoever queues work; the loops learn which tenant from the
    /// storage's change feed, so the notification matters only with a backend that reports no
    /// changes: then it makes every held shard read its index again. A loop runs only while
    /// this host holds its shard's lease ([`crate::ha`]). Must be called inside a tokio runtime.
    pub fn start(
        runtime: Runtime,
        backend: SharedBackend,
        config: SyncConfig,
        wake: Arc<Notify>,
        host: HostInfo,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let shards = config.workers.max(1);
        let leases = Leases::new(backend.clone(), host, config.lease_ttl, shards);
        let shared = Arc::new(Shared {
            runtime,
            backend,
            config,
            wake,
            table: LeaseTable::new(shards),
            leases,
            shards: (0..shards)
                .map(|_| ShardState {
                    wake: Notify::new(),
                    queue: Mutex::new(TenantQueue::default()),
                    rescan: AtomicBool::new(false),
                })
                .collect(),
        });
        let mut tasks = JoinSet::new();
        let background: [(&'static str, Task); 3] = [
            ("lease", |s, stop| Box::pin(lease_loop(s, stop))),
            ("change feed", |s, stop| Box::pin(follow_loop(s, stop))),
            ("reconciliation", |s, stop| {
                Box::pin(reconcile_loop(s, stop))
            }),
        ];
        for (what, task) in background {
            let (shared, stop) = (shared.clone(), stopped.clone());
            tasks.spawn(supervised(what, None, stopped.clone(), move || {
                task(shared.clone(), stop.clone())
            }));
        }
        for shard in 0..shards {
            let (shared, stop) = (shared.clone(), stopped.clone());
            tasks.spawn(supervised(
                "shard",
                Some(shard),
                stopped.clone(),
                move || shard_loop(shared.clone(), shard, stop.clone()),
            ));
        }
        tracing::info!(
            host = %shared.leases.me().describe(),
            workers = shared.config.workers,
            backoff_base = ?shared.config.backoff_base,
            backoff_cap = ?shared.config.backoff_cap,
            reconcile_interval = ?shared.config.reconcile_interval,
            coalesce_window = ?shared.config.coalesce_window,
            lease_ttl = ?shared.config.lease_ttl,
            "sync worker started"
        );
        Worker {
            stop,
            tasks,
            shared,
        }
    }

    /// The leases of this worker (who holds which shard: [`Leases::holders`]).
    pub fn leases(&self) -> &Leases {
        &self.shared.leases
    }

    /// Stops the loops: idle ones at once, runs in flight within `grace`
    /// (then they are cancelled; their entries stay queued); then releases the leases.
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
        // No run of this host is left: another host may take the shards at once.
        ha::release_all(&self.shared.leases, &self.shared.table).await;
        tracing::info!("sync worker stopped");
        stopped
    }
}

/// A background task of the worker, started (and restarted) by its supervisor.
type Task = fn(Arc<Shared>, watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

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

#[cfg(test)]
mod tests {
    use super::*;

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
