//! One shard's loop: the tenants with work in the shard take turns ([`TenantQueue`]), one
//! batch ([`BATCH`]) a run, while this host holds the shard's lease; the pause of an idle loop;
//! the index of sync work read again when the lease is taken or the feed lost track.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::lease::await_lease;
use super::{
    BATCH, DrainProgress, ERROR_PAUSE_BASE, MIN_IDLE, Next, Shared, TenantQueue, engine_settings,
    error_pause, fenced_storage, log_failure, millis, now_ms, stopping,
};
use crate::runtime::{CallError, Runtime, SyncSettings};
use crate::storage::{SharedBackend, TenantStorage, sync_index};

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

/// What the loop of one shard shares with the feed and lease tasks.
pub(super) struct ShardState {
    /// Wakes the loop (a permit is kept while it runs).
    pub(super) wake: Notify,
    /// The tenants with work in the shard, in turn order.
    pub(super) queue: Mutex<TenantQueue>,
    /// Set when the loop must read the shard's index again (the feed lost track).
    pub(super) rescan: AtomicBool,
}

impl ShardState {
    pub(super) fn queue(&self) -> MutexGuard<'_, TenantQueue> {
        // Every update is a few map and queue operations that cannot panic halfway.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one run of `tenant` in shard `shard` came to, for its place in the queue: runs one
/// batch; a tenant with nothing left has its index records dropped (unless work came
/// meanwhile). `failures` counts the loop's failed runs in a row.
pub(super) async fn run_tenant(
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

pub(super) async fn shard_loop(shared: Arc<Shared>, shard: u32, mut stop: watch::Receiver<bool>) {
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
}
