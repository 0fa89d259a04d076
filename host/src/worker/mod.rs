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
//! work ([`sync_index`]) files in its shard; that index is written in the same
//! commit as the work, so idle tenants cost nothing, at start or later. A loop
//! that takes its shard reads the index of that shard; from then on the
//! storage's change feed says which tenant got work in which shard (the index
//! record its commit wrote: a request of this host, or, with shared storage,
//! of another), and the loop of a held shard queues that tenant. A feed that
//! lost track (`Reset`) makes every held shard read its index again.
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

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt as _;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

pub use kvsync_host_core::settings::{
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, DEFAULT_COALESCE_WINDOW, DEFAULT_RECONCILE_INTERVAL,
    DEFAULT_WORKERS, MAX_COALESCE_WINDOW, MAX_WORKERS, SyncConfig,
};

use crate::ha::{self, HostInfo, LeaseTable, Leases, Taken};
use crate::runtime::{CallError, Runtime, SyncSettings, panic_message};
use crate::storage::{Change, SharedBackend, TenantStorage, sync_index};

mod queue;
pub use queue::{Next, TenantQueue};

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

/// What the loop of one shard shares with the feed and lease tasks.
struct ShardState {
    /// Wakes the loop (a permit is kept while it runs).
    wake: Notify,
    /// The tenants with work in the shard, in turn order.
    queue: Mutex<TenantQueue>,
    /// Set when the loop must read the shard's index again (the feed lost track).
    rescan: AtomicBool,
}

impl ShardState {
    fn queue(&self) -> MutexGuard<'_, TenantQueue> {
        // Every update is a few map and queue operations that cannot panic halfway.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
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

/// What one run of `tenant` in shard `shard` came to, for its place in the queue: runs one
/// batch; a tenant with nothing left has its index records dropped (unless work came
/// meanwhile). `failures` counts the loop's failed runs in a row.
async fn run_tenant(
    runtime: &Runtime,
    backend: &SharedBackend,
    storage: TenantStorage,
    (shard, shards): (u32, u32),
    settings: SyncSettings,
    progress: Option<&DrainProgress>,
    failures: &mut u32,
) -> (Next, Result<Option<u64>, CallError>) {
    let tenant = storage.tenant().to_string();
    let report = match runtime
        .run_sync(storage, shard, shards, BATCH, settings)
        .await
    {
        Ok(report) => report,
        Err(e) => {
            *failures = failures.saturating_add(1);
            let pause = error_pause(*failures);
            log_failure("run", Some(shard), &e, Some(pause));
            return (Next::At(now_ms().saturating_add(millis(pause))), Err(e));
        }
    };
    *failures = 0;
    if let Some(progress) = progress {
        progress
            .processed
            .fetch_add(u64::from(report.processed), Ordering::Relaxed);
        progress
            .failed
            .fetch_add(u64::from(report.failed), Ordering::Relaxed);
    }
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
        // More may be due (a full batch, retries): after the other tenants' turns. A secret
        // that keeps changing does not make this spin: the engine holds its entry back
        // (coalescing).
        return (Next::Again, Ok(report.next_due_ms));
    }
    match report.next_due_ms {
        // Due now yet not run (held by a concurrent run, a clock step): a short pause.
        Some(due) => (
            Next::At(due.max(now_ms().saturating_add(millis(MIN_IDLE)))),
            Ok(Some(due)),
        ),
        None => {
            if let Err(e) = sync_index::forget_idle(backend.as_ref(), &tenant, shard, shards).await
            {
                tracing::warn!(shard, error = %e, "cannot drop an idle tenant from the sync index");
            }
            (Next::Idle, Ok(None))
        }
    }
}

/// Queues every tenant the index files in `shard` (the loop just took it, or lost track).
async fn rescan(shared: &Shared, shard: u32, state: &ShardState) {
    let shards = shared.config.workers.max(1);
    match sync_index::tenants_of_shard(shared.backend.as_ref(), shard, shards).await {
        Ok(tenants) => {
            let mut queue = state.queue();
            for tenant in &tenants {
                queue.due_now(tenant);
            }
            if !tenants.is_empty() {
                tracing::debug!(shard, tenants = tenants.len(), "tenants with sync work");
            }
        }
        Err(e) => {
            tracing::warn!(shard, error = %e, "cannot read the sync index; trying again");
            state.rescan.store(true, Ordering::Relaxed);
        }
    }
}

async fn shard_loop(shared: Arc<Shared>, shard: u32, mut stop: watch::Receiver<bool>) {
    let shards = shared.config.workers.max(1);
    let settings = engine_settings(&shared.config);
    let Some(mut lease) = shared.table.subscribe(shard) else {
        return;
    };
    let Some(state) = shared.shard(shard) else {
        return;
    };
    let mut failures: u32 = 0;
    // The lease the queue was filled under: a new one (taken, or taken again) reads the index.
    let mut served: Option<u64> = None;
    while !*stop.borrow() {
        let Some(held) = await_lease(&mut lease, &mut stop).await else {
            break;
        };
        if served != Some(held.fence) {
            state.queue().clear();
            served = Some(held.fence);
            rescan(&shared, shard, state).await;
        } else if state.rescan.swap(false, Ordering::Relaxed) {
            rescan(&shared, shard, state).await;
        }
        let now = now_ms();
        let (tenant, next_due) = {
            let mut queue = state.queue();
            let next_due = queue.promote(now);
            (queue.take_turn(), next_due)
        };
        let Some(tenant) = tenant else {
            let pause = if state.rescan.load(Ordering::Relaxed) {
                // The index could not be read: try again soon.
                ERROR_PAUSE_BASE
            } else {
                idle_pause(next_due, now, shared.config.reconcile_interval)
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = state.wake.notified() => {}
                // Lost (or taken) meanwhile: look again.
                _ = lease.changed() => {}
                end = stopping(&mut stop) => if end { break },
            }
            continue;
        };
        let storage = fenced_storage(&shared.leases, &shared.table, held, &tenant);
        let (next, _) = run_tenant(
            &shared.runtime,
            &shared.backend,
            storage,
            (shard, shards),
            settings,
            None,
            &mut failures,
        )
        .await;
        state.queue().finished(&tenant, next);
        tokio::task::yield_now().await;
    }
}

/// The lease as it is now or, while another host holds it, once this host has taken it;
/// `None` when the loop must end.
async fn await_lease(
    lease: &mut watch::Receiver<Option<ha::Held>>,
    stop: &mut watch::Receiver<bool>,
) -> Option<ha::Held> {
    loop {
        if *stop.borrow() {
            return None;
        }
        if let Some(held) = *lease.borrow_and_update() {
            return Some(held);
        }
        tokio::select! {
            changed = lease.changed() => if changed.is_err() { return None },
            end = stopping(stop) => if end { return None },
        }
    }
}

/// Keeps this host's leases: renews what it holds and takes what is free, at once and then
/// every third of the ttl. A shard gained wakes its loop.
async fn lease_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every = shared.config.lease_ttl / 3;
    while !*stop.borrow() {
        let gained = ha::keep_round(&shared.leases, &shared.table).await;
        for shard in gained {
            shared.wake_shard(shard);
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            end = stopping(&mut stop) => if end { break },
        }
    }
}

/// Follows the storage's change feed: an index record of sync work written (by a request or a
/// run of this host, or of another sharing the storage) queues its tenant in the loop of its
/// shard, when this host holds it; a feed that lost track (`Reset`) makes every held shard read
/// its index again. Only index records are looked at, and only held shards are woken, so
/// another host's busy shard costs this host nothing. Without a feed, the worker's wake-up
/// makes every held shard read its index again.
async fn follow_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(mut changes) = shared.backend.watch() else {
        return wake_loop(shared, stop).await;
    };
    let shards = shared.config.workers.max(1);
    loop {
        let change = tokio::select! {
            change = changes.next() => change,
            end = stopping(&mut stop) => if end { return } else { continue },
        };
        let keys = match change {
            None => return,
            Some(Change::Lost) => continue,
            Some(Change::Reset) => {
                shared.rescan_held();
                continue;
            }
            Some(Change::Keys { keys, .. }) => keys,
        };
        for key in keys.iter() {
            let Some((tenant, work)) = sync_index::parse_due_key(key) else {
                continue;
            };
            let shard = work.shard(shards);
            let Some(state) = shared.shard(shard) else {
                continue;
            };
            if shared.table.held(shard).is_none() {
                continue;
            }
            // A record the loop itself dropped (its tenant idle) is reported too: a tenant the
            // queue does not know is queued only when its record exists.
            let known = state.queue().knows(&tenant);
            if !known && let Ok(None) = shared.backend.get(key).await {
                continue;
            }
            state.queue().due_now(&tenant);
            state.wake.notify_one();
        }
    }
}

/// Without a change feed: every wake-up makes every held shard read its index again.
async fn wake_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = shared.wake.notified() => shared.rescan_held(),
            end = stopping(&mut stop) => if end { return },
        }
    }
}

/// Tenants reconciled per step of [`reconcile_loop`].
pub const RECONCILE_PAGE: u32 = 32;
/// Steps per reconciliation interval, at most.
const RECONCILE_STEPS: u32 = 60;

/// Reconciles while this host holds shard 0's lease (one host reconciles at a time): the
/// tenants with sync destinations, [`RECONCILE_PAGE`] per step, steps 1/[`RECONCILE_STEPS`]
/// of the interval apart; after a full cycle, a pause of the interval. A tenant left without
/// destinations is dropped from the index.
async fn reconcile_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(mut lease) = shared.table.subscribe(0) else {
        return;
    };
    let interval = shared.config.reconcile_interval;
    let mut after: Option<String> = None;
    while !*stop.borrow() {
        let Some(held) = await_lease(&mut lease, &mut stop).await else {
            break;
        };
        let page =
            sync_index::reconcile_page(shared.backend.as_ref(), after.as_deref(), RECONCILE_PAGE)
                .await;
        let pause = match page {
            Ok((tenants, next)) => {
                for tenant in &tenants {
                    let storage = fenced_storage(&shared.leases, &shared.table, held, tenant);
                    reconcile_tenant(&shared.runtime, &shared.backend, storage).await;
                }
                let cycle_done = next.is_none();
                after = next;
                if cycle_done {
                    interval
                } else {
                    interval / RECONCILE_STEPS
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the reconciliation index");
                interval / RECONCILE_STEPS
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause.max(MIN_IDLE)) => {}
            end = stopping(&mut stop) => if end { break },
        }
    }
}

/// One reconciliation step of a tenant; returns how many associations it queued. A tenant
/// without destinations leaves the index.
async fn reconcile_tenant(
    runtime: &Runtime,
    backend: &SharedBackend,
    storage: TenantStorage,
) -> u32 {
    let tenant = storage.tenant().to_string();
    match runtime.reconcile(storage).await {
        Ok(0) => {
            tracing::debug!("sync reconciliation: nothing missed");
            if let Err(e) = sync_index::forget_unreconciled(backend.as_ref(), &tenant).await {
                tracing::warn!(error = %e, "cannot drop a tenant from the reconciliation index");
            }
            0
        }
        Ok(queued) => {
            tracing::info!(queued, "sync reconciliation queued missed work");
            queued
        }
        Err(e) => {
            log_failure("reconciliation", None, &e, None);
            0
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
    /// The shards another host holds (a running server): its work, not drained here. The
    /// host is `None` when the lease changed hands while it was looked at.
    pub elsewhere: Vec<(u32, Option<HostInfo>)>,
}

/// Processes all work that is due now, without a server (`kvsync sync run
/// --once`), for every tenant: takes the lease of every shard it can (see [`take_leases`]),
/// runs one reconciliation step of every tenant with destinations (when it holds shard 0),
/// then every held shard runs its tenants, in turns, until no run processes anything and
/// nothing is due now. Entries due later (retries waiting for their backoff) are left, unless
/// they fall due within `wait` of the start: those are waited for and run too. `next_due_ms`
/// says when the first entry left is due. The leases are renewed meanwhile and released at the
/// end.
pub async fn drain(
    runtime: &Runtime,
    backend: &SharedBackend,
    config: &SyncConfig,
    wait: Duration,
    progress: Arc<DrainProgress>,
) -> anyhow::Result<DrainReport> {
    let deadline = Instant::now() + wait;
    let shards = config.workers.max(1);
    let leases = Leases::new(
        backend.clone(),
        HostInfo::this_process(String::new()),
        config.lease_ttl,
        shards,
    );
    let table = LeaseTable::new(shards);
    let elsewhere = take_leases(&leases, &table).await?;
    let keeper = {
        let (leases, table) = (leases.clone(), table.clone());
        let every = config.lease_ttl / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                ha::renew_held(&leases, &table).await;
            }
        })
    };
    let drained = drain_held(
        runtime,
        backend,
        (&leases, &table),
        config,
        deadline,
        progress.clone(),
    )
    .await;
    keeper.abort();
    ha::release_all(&leases, &table).await;
    let (reconciled, next_due_ms) = drained?;
    let (processed, failed) = progress.totals();
    Ok(DrainReport {
        reconciled,
        processed,
        failed,
        next_due_ms,
        elsewhere,
    })
}

/// Takes the lease of every shard not held by a live host. A shard held elsewhere is looked
/// at again every sixth of the ttl until its holder proves alive (it renewed) or its lease
/// ends (then it is taken): a server that runs keeps its shards, one that died without
/// releasing them gives them up within the ttl. Returns the shards left to other hosts.
pub async fn take_leases(
    leases: &Leases,
    table: &LeaseTable,
) -> anyhow::Result<Vec<(u32, Option<HostInfo>)>> {
    let give_up = Instant::now() + leases.ttl() + leases.ttl() / 3;
    let mut seen: std::collections::BTreeMap<u32, (Option<HostInfo>, Option<u64>)> =
        std::collections::BTreeMap::new();
    let mut live: Vec<(u32, Option<HostInfo>)> = Vec::new();
    loop {
        for shard in 0..leases.shards() {
            if table.held(shard).is_some() || live.iter().any(|(s, _)| *s == shard) {
                continue;
            }
            match leases.take(shard, ha::now_ms()).await? {
                Taken::Held(held) => {
                    table.set(shard, Some(held));
                    seen.remove(&shard);
                }
                Taken::Elsewhere { host, renewed } => {
                    let renewed_since = matches!(
                        (seen.get(&shard), renewed),
                        (Some((_, Some(before))), Some(now)) if *before != now
                    );
                    if renewed_since {
                        seen.remove(&shard);
                        live.push((shard, host));
                    } else {
                        seen.insert(shard, (host, renewed));
                    }
                }
            }
        }
        if seen.is_empty() || Instant::now() >= give_up {
            break;
        }
        tokio::time::sleep(leases.ttl() / 6).await;
    }
    live.extend(seen.into_iter().map(|(shard, (host, _))| (shard, host)));
    live.sort_by_key(|(shard, _)| *shard);
    Ok(live)
}

/// The reconciliation (with shard 0) and the drain of every shard `table` holds; returns what
/// the reconciliation queued and when the next entry left is due.
async fn drain_held(
    runtime: &Runtime,
    backend: &SharedBackend,
    (leases, table): (&Leases, &LeaseTable),
    config: &SyncConfig,
    deadline: Instant,
    progress: Arc<DrainProgress>,
) -> anyhow::Result<(u32, Option<u64>)> {
    let mut reconciled = 0u32;
    if let Some(held) = table.held(0) {
        let mut after: Option<String> = None;
        loop {
            let (tenants, next) =
                sync_index::reconcile_page(backend.as_ref(), after.as_deref(), RECONCILE_PAGE)
                    .await?;
            for tenant in &tenants {
                let storage = fenced_storage(leases, table, held, tenant);
                reconciled =
                    reconciled.saturating_add(reconcile_tenant(runtime, backend, storage).await);
            }
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    // A one-shot drain takes every change as it is now: nothing to coalesce.
    let settings = SyncSettings {
        coalesce_window_ms: 0,
        ..engine_settings(config)
    };
    let mut tasks = JoinSet::new();
    for held in table.all_held() {
        let (runtime, backend, progress) = (runtime.clone(), backend.clone(), progress.clone());
        let (leases, table) = (leases.clone(), table.clone());
        tasks.spawn(async move {
            drain_shard(
                &runtime,
                &backend,
                (&leases, &table, held),
                settings,
                deadline,
                &progress,
            )
            .await
        });
    }
    let mut next_due_ms: Option<u64> = None;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(due)) => next_due_ms = earlier(next_due_ms, due),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow::anyhow!("sync task failed: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok((reconciled, next_due_ms))
}

fn earlier(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Drains the tenants of one shard, in turns; returns when the next entry left is due.
async fn drain_shard(
    runtime: &Runtime,
    backend: &SharedBackend,
    (leases, table, held): (&Leases, &LeaseTable, ha::Held),
    settings: SyncSettings,
    deadline: Instant,
    progress: &DrainProgress,
) -> anyhow::Result<Option<u64>> {
    let shards = leases.shards();
    let mut queue = TenantQueue::default();
    for tenant in sync_index::tenants_of_shard(backend.as_ref(), held.shard, shards).await? {
        queue.due_now(&tenant);
    }
    // Tenants whose entry was due yet not run once already: left rather than spun on.
    let mut retried: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut left: Option<u64> = None;
    let mut failures = 0;
    loop {
        let now = now_ms();
        let waiting = queue.promote(now);
        let Some(tenant) = queue.take_turn() else {
            let Some(at) = waiting else {
                return Ok(left);
            };
            // Falls due within the wait (later ones were left): sleep until then.
            tokio::time::sleep(Duration::from_millis(at.saturating_sub(now)).max(MIN_IDLE)).await;
            continue;
        };
        let storage = fenced_storage(leases, table, held, &tenant);
        let (next, ran) = run_tenant(
            runtime,
            backend,
            storage,
            (held.shard, shards),
            settings,
            Some(progress),
            &mut failures,
        )
        .await;
        let next = match (next, ran) {
            (_, Err(e)) => return Err(e.into()),
            (Next::Again, _) => {
                retried.remove(&tenant);
                Next::Again
            }
            (Next::At(_), Ok(Some(due))) => {
                let until_due = Duration::from_millis(due.saturating_sub(now_ms()));
                let due_now = until_due.is_zero();
                if (due_now && !retried.insert(tenant.clone()))
                    || (!due_now && Instant::now() + until_due > deadline)
                {
                    left = earlier(left, Some(due));
                    Next::Idle
                } else {
                    Next::At(due.max(now_ms().saturating_add(millis(MIN_IDLE))))
                }
            }
            (next, _) => next,
        };
        queue.finished(&tenant, next);
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
