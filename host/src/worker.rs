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
//! Several hosts may share the storage: a loop runs its shard only while this
//! host holds the shard's lease, and every commit of its runs is fenced by that
//! lease ([`crate::ha`]); a lease task takes and renews them, a feed task wakes
//! the loop of a held shard when another host queued work for it, and the
//! reconciliation runs where shard 0 is held. Stopping releases the leases.
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

use crate::ha::{self, HostInfo, LeaseTable, Leases, Taken};
use crate::runtime::{CallError, Runtime, SyncSettings, panic_message};
use crate::storage::{Change, SharedBackend, TenantStorage, tenant_prefix};

/// Default number of sync loops (shards).
pub const DEFAULT_WORKERS: u32 = 4;
/// Most sync loops allowed: each run holds an engine instance.
pub const MAX_WORKERS: u32 = 64;
/// Default first retry delay after a retryable failure.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Default longest retry delay.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);
/// Default interval between reconciliations.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// Default coalescing window (the engine spaces the syncs of a secret that
/// keeps changing: 50 ms after a write, then this long).
pub const DEFAULT_COALESCE_WINDOW: Duration = Duration::from_secs(1);
/// Longest coalescing window accepted.
pub const MAX_COALESCE_WINDOW: Duration = Duration::from_secs(10);
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

/// The worker's concurrency and timing knobs (`sync_*` settings and flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Concurrent sync loops, one per shard.
    pub workers: u32,
    /// First retry delay after a retryable failure (doubles, with jitter).
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_cap: Duration,
    /// Interval between reconciliations; also the longest an idle loop sleeps.
    pub reconcile_interval: Duration,
    /// The coalescing window, applied per association by the engine: a
    /// secret changed again right after its destination was written waits
    /// 50 ms after that write, then this window after each further one, so
    /// rapid changes of one secret cost about one provider write per window,
    /// not one each. A change after a quiet moment, or of another secret,
    /// runs at once. Zero: no coalescing.
    pub coalesce_window: Duration,
    /// `ha_lease_ttl`: how long a shard's lease lasts unless renewed (every third of it),
    /// so how long the shards of a host that died stay idle before another host takes them.
    pub lease_ttl: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            workers: DEFAULT_WORKERS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            reconcile_interval: DEFAULT_RECONCILE_INTERVAL,
            coalesce_window: DEFAULT_COALESCE_WINDOW,
            lease_ttl: ha::DEFAULT_LEASE_TTL,
        }
    }
}

impl SyncConfig {
    /// Checks the knobs; the messages name the config setting (the flag is
    /// the same name with dashes).
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.workers == 0 || self.workers > MAX_WORKERS {
            anyhow::bail!(
                "sync_workers: {} is out of range (1 to {MAX_WORKERS})",
                self.workers
            );
        }
        if self.backoff_base.is_zero() {
            anyhow::bail!("sync_backoff_base: must be greater than zero");
        }
        if self.backoff_cap < self.backoff_base {
            anyhow::bail!(
                "sync_backoff_cap ({:?}) must not be shorter than sync_backoff_base ({:?})",
                self.backoff_cap,
                self.backoff_base
            );
        }
        if self.reconcile_interval.is_zero() {
            anyhow::bail!("sync_reconcile_interval: must be greater than zero");
        }
        if self.coalesce_window > MAX_COALESCE_WINDOW {
            anyhow::bail!(
                "sync_coalesce_window: {:?} is longer than the maximum ({MAX_COALESCE_WINDOW:?})",
                self.coalesce_window
            );
        }
        if self.lease_ttl < ha::MIN_LEASE_TTL {
            anyhow::bail!(
                "ha_lease_ttl: {:?} is shorter than the minimum ({:?})",
                self.lease_ttl,
                ha::MIN_LEASE_TTL
            );
        }
        Ok(())
    }

    /// What the engine's `run` receives.
    pub fn settings(&self) -> SyncSettings {
        SyncSettings {
            backoff_base_ms: millis(self.backoff_base),
            backoff_cap_ms: millis(self.backoff_cap),
            coalesce_window_ms: millis(self.coalesce_window),
        }
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
    leases: Leases,
    table: LeaseTable,
    /// One per shard: wakes that shard's loop (a permit is kept while it runs).
    shard_wakes: Arc<[Notify]>,
}

impl Shared {
    /// The tenant's storage as a run of `shard` sees it while `held` lasts: every commit fenced
    /// by the lease.
    fn fenced_storage(&self, held: ha::Held) -> TenantStorage {
        let fenced = self.leases.fenced(held, self.table.subscribe(held.shard));
        TenantStorage::new(Arc::new(fenced), &self.tenant)
    }

    fn wake_shard(&self, shard: u32) {
        if let Some(wake) = usize::try_from(shard)
            .ok()
            .and_then(|i| self.shard_wakes.get(i))
        {
            wake.notify_one();
        }
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
    shared: Arc<Shared>,
}

impl Worker {
    /// Starts the loops for `tenant`, as host `host`. `wake` is notified (`notify_waiters`) by
    /// whoever queues work; the worker notifies it too after a reconciliation that queued
    /// something. A loop runs only while this host holds its shard's lease ([`crate::ha`]); a
    /// lease keeper takes and renews them, and the storage's change feed wakes the loop of a
    /// held shard when another host queued work for it. Must be called inside a tokio runtime.
    pub fn start(
        runtime: Runtime,
        backend: SharedBackend,
        tenant: &str,
        config: SyncConfig,
        wake: Arc<Notify>,
        host: HostInfo,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let shards = config.workers.max(1);
        let leases = Leases::new(backend.clone(), tenant, host, config.lease_ttl, shards);
        let shared = Arc::new(Shared {
            runtime,
            backend,
            tenant: tenant.to_string(),
            config,
            wake,
            table: LeaseTable::new(shards),
            leases,
            shard_wakes: (0..shards).map(|_| Notify::new()).collect(),
        });
        let mut tasks = JoinSet::new();
        {
            let (shared, stop) = (shared.clone(), stopped.clone());
            tasks.spawn(supervised("lease", None, stopped.clone(), move || {
                lease_loop(shared.clone(), stop.clone())
            }));
        }
        {
            let (shared, stop) = (shared.clone(), stopped.clone());
            tasks.spawn(supervised(
                "change feed",
                None,
                stopped.clone(),
                move || follow_loop(shared.clone(), stop.clone()),
            ));
        }
        {
            let (shared, stop) = (shared.clone(), stopped.clone());
            tasks.spawn(supervised(
                "reconciliation",
                None,
                stopped.clone(),
                move || reconcile_loop(shared.clone(), stop.clone()),
            ));
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
            tenant,
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
    let settings = shared.config.settings();
    let Some(mut lease) = shared.table.subscribe(shard) else {
        return;
    };
    let Some(shard_wake) = usize::try_from(shard)
        .ok()
        .and_then(|i| shared.shard_wakes.get(i))
    else {
        return;
    };
    let mut failures: u32 = 0;
    while !*stop.borrow() {
        let Some(held) = await_lease(&mut lease, &mut stop).await else {
            break;
        };
        // Registered before the run: a wake-up that arrives while the run is
        // in progress is kept, so work queued meanwhile is never left asleep
        // (the shard's own wake keeps a permit).
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let outcome = shared
            .runtime
            .run_sync(shared.fenced_storage(held), shard, shards, BATCH, settings)
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
            () = shard_wake.notified(), if wakeable => {}
            // Lost (or taken) meanwhile: look again.
            _ = lease.changed() => {}
            end = stopping(&mut stop) => if end { break },
        }
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

/// Follows the storage's change feed: work another host queued (a key of the outbox's due
/// index written) wakes the loop of its shard when this host holds it; a feed that resumed
/// after a loss (`Reset`: anything may have changed) wakes every held shard. Only the due
/// index is looked at, and only held shards are woken, so another host's busy shard costs
/// this host nothing.
async fn follow_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(mut changes) = shared.backend.watch() else {
        return;
    };
    let due = format!(
        "{}{}",
        tenant_prefix(&shared.tenant),
        kvsync_component::sync::keys::DUE
    );
    let shards = shared.config.workers.max(1);
    loop {
        let change = tokio::select! {
            change = changes.next() => change,
            end = stopping(&mut stop) => if end { return } else { continue },
        };
        let woken: Vec<u32> = match change {
            None => return,
            Some(Change::Lost) => continue,
            Some(Change::Reset) => (0..shards).collect(),
            Some(Change::Keys { keys, .. }) => {
                let mut woken: Vec<u32> = keys
                    .iter()
                    .filter_map(|key| due_shard(key.strip_prefix(&due)?, shards))
                    .collect();
                woken.sort_unstable();
                woken.dedup();
                woken
            }
        };
        for shard in woken {
            if shared.table.held(shard).is_some() {
                shared.wake_shard(shard);
            }
        }
    }
}

/// The shard of a due-index key (relative to the index: `<type>/<name>/<due>/...`).
fn due_shard(rel: &str, shards: u32) -> Option<u32> {
    let mut parts = rel.splitn(3, '/');
    let (kind, name) = (parts.next()?, parts.next()?);
    Some(kvsync_component::sync::worker::shard_of(kind, name, shards))
}

/// Reconciles while this host holds shard 0's lease (one host reconciles at a time).
async fn reconcile_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(mut lease) = shared.table.subscribe(0) else {
        return;
    };
    while !*stop.borrow() {
        let Some(held) = await_lease(&mut lease, &mut stop).await else {
            break;
        };
        match shared.runtime.reconcile(shared.fenced_storage(held)).await {
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
    /// The shards another host holds (a running server): its work, not drained here. The
    /// host is `None` when the lease changed hands while it was looked at.
    pub elsewhere: Vec<(u32, Option<HostInfo>)>,
}

/// Processes all work that is due now, without a server (`kvsync sync run
/// --once`): takes the lease of every shard it can (see [`take_leases`]), runs one
/// reconciliation (when it holds shard 0), then every held shard runs batches until a run
/// processes nothing and nothing is due now. Entries due later (retries
/// waiting for their backoff) are left, unless they fall due within `wait`
/// of the start: those are waited for and run too. `next_due_ms` says when
/// the first entry left is due. The leases are renewed meanwhile and released at the end.
pub async fn drain(
    runtime: &Runtime,
    backend: &SharedBackend,
    tenant: &str,
    config: &SyncConfig,
    wait: Duration,
    progress: Arc<DrainProgress>,
) -> anyhow::Result<DrainReport> {
    let deadline = Instant::now() + wait;
    let shards = config.workers.max(1);
    let leases = Leases::new(
        backend.clone(),
        tenant,
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
        &leases,
        &table,
        tenant,
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
    leases: &Leases,
    table: &LeaseTable,
    tenant: &str,
    config: &SyncConfig,
    deadline: Instant,
    progress: Arc<DrainProgress>,
) -> anyhow::Result<(u32, Option<u64>)> {
    let shards = leases.shards();
    let fenced = |held: ha::Held| {
        let fenced = leases.fenced(held, table.subscribe(held.shard));
        TenantStorage::new(Arc::new(fenced), tenant)
    };
    let reconciled = match table.held(0) {
        Some(held) => runtime.reconcile(fenced(held)).await?,
        None => 0,
    };
    // A one-shot drain takes every change as it is now: nothing to coalesce.
    let settings = SyncSettings {
        coalesce_window_ms: 0,
        ..config.settings()
    };
    let mut tasks = JoinSet::new();
    for held in table.all_held() {
        let runtime = runtime.clone();
        let storage = fenced(held);
        let progress = progress.clone();
        tasks.spawn(async move {
            drain_shard(
                &runtime, &storage, held.shard, shards, settings, deadline, &progress,
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
        return Err(e.into());
    }
    Ok((reconciled, next_due_ms))
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
        let settings = SyncConfig::default().settings();
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
