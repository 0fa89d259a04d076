//! Reconciliation: where shard 0 is held, the tenants with sync destinations are reconciled a
//! page at a time, so work a crash or a full queue missed converges without a server with
//! thousands of tenants reconciling them all at once.

use std::sync::Arc;

use tokio::sync::watch;

use super::lease::await_lease;
use super::{MIN_IDLE, Shared, fenced_storage, log_failure, stopping};
use crate::runtime::Runtime;
use crate::storage::{SharedBackend, TenantStorage, sync_index};

/// Tenants reconciled per step of [`reconcile_loop`].
pub const RECONCILE_PAGE: u32 = 32;
/// Steps per reconciliation interval, at most.
const RECONCILE_STEPS: u32 = 60;

/// Reconciles while this host holds shard 0's lease (one host reconciles at a time): the
/// tenants with sync destinations, [`RECONCILE_PAGE`] per step, steps 1/[`RECONCILE_STEPS`]
/// of the interval apart; after a full cycle, a pause of the interval. A tenant left without
/// destinations is dropped from the index.
pub(super) async fn reconcile_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
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
pub(super) async fn reconcile_tenant(
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
