//! The one-shot drain without a server (`kvsync sync run --once`): takes the leases it can,
//! reconciles, then runs every held shard's tenants until nothing is due now.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::reconcile::reconcile_tenant;
use super::shard::run_tenant;
use super::{
    MIN_IDLE, Next, RECONCILE_PAGE, SyncConfig, TenantQueue, engine_settings, fenced_storage,
    millis, now_ms,
};
use crate::ha::{self, HostInfo, LeaseTable, Leases, Taken};
use crate::runtime::{Runtime, SyncSettings};
use crate::storage::{SharedBackend, sync_index};

/// Totals of a [`drain`], readable while it runs (for progress display).
#[derive(Debug, Default)]
pub struct DrainProgress {
    pub(super) processed: AtomicU64,
    pub(super) failed: AtomicU64,
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
