//! Reconciliation (WIT `sync.reconcile`): finds associations whose
//! destination copy is behind the secret and queues them. It catches what
//! the write path could not queue (a full outbox), work lost to a race
//! (an association set while its secret was being written), changes no
//! request made (a version reaching its `delete_version_after`), and
//! associations left by a disabled mount or an interrupted purge. It also
//! recounts the outbox, so the entry count heals from any drift.
//!
//! An association that already has an outbox entry is left alone. One that
//! has none is queued when:
//! - its destination is being purged (a purge entry), or its mount is gone
//!   (an unsync-and-drop entry);
//! - a row is `PENDING`, or in a retryable error (`EXTERNAL_SERVICE_ERROR`,
//!   `INTERNAL_VAULT_ERROR`, which includes "sync queue full");
//! - a `SYNCED` or `UNSYNCED` row stands for another KV version than the
//!   current readable one;
//! - the secret is unreadable while a row is `SYNCED`.
//!
//! `CLIENT_SIDE_ERROR` rows wait for a change or a `set`, as in the worker.

use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::kv;
use crate::storage::{Storage, Tx};
use crate::sync::associations::Association;
use crate::sync::destinations::Destination;
use crate::sync::jobs::{self, SLICE};
use crate::sync::keys;
use crate::sync::outbox::{self, EntryId, OutboxOp, QUEUE_FULL, Queued};
use crate::sync::status::SyncStatus;
use crate::sys::mounts::{MountEntry, MountTable};
use crate::time;

/// Runs of one transaction after commit conflicts.
const RUNS: usize = 4;

/// `sync.reconcile`: one step of the reconciliation pass in progress, or of
/// a new one (see [`jobs`]: a pass over more than one slice is continued by
/// the worker's runs); returns how many associations were queued.
pub fn reconcile(env: &Env) -> u32 {
    let stepped =
        jobs::reconcile_job(env.storage).and_then(|job| jobs::reconcile_step(env.storage, job));
    match stepped {
        Ok((_, queued)) => queued,
        Err(e) => {
            eprintln!("sync reconcile failed: {e}");
            0
        }
    }
}

/// Recounts one page of the outbox after `after` and restores the due-index
/// keys its entries lack; returns where the next page starts (`None`: the
/// recount is done), the entries counted so far and the stored count when
/// the recount began. The count is read before the list: when the outbox fits
/// one page, any entry added or removed meanwhile changed it too, so the
/// commit conflicts and the count is taken again. A recount over several
/// pages fixes the count only when it did not move while it went on (else the
/// next pass tries again).
pub fn recount_page(
    storage: &dyn Storage,
    after: Option<&str>,
    counted: u64,
    count_at_start: u64,
) -> ApiResult<(Option<String>, u64, u64)> {
    let mut last = (None, counted, count_at_start);
    for _ in 0..RUNS {
        let mut tx = Tx::new(storage);
        let current = outbox::count_exact(&mut tx)?;
        let page = storage.list(keys::OUTBOX, after, None, SLICE)?;
        let ids: Vec<EntryId> = page.keys.iter().filter_map(|r| EntryId::parse(r)).collect();
        let restored = outbox::repair_index(storage, &ids)?;
        if restored > 0 {
            eprintln!("sync reconcile: {restored} outbox entries were missing from the due index");
        }
        let counted = counted.saturating_add(u64::try_from(ids.len()).unwrap_or(u64::MAX));
        let at_start = if after.is_none() {
            current
        } else {
            count_at_start
        };
        last = (page.next.clone(), counted, at_start);
        if page.next.is_some() || current != at_start {
            return Ok(last);
        }
        outbox::reset_count(&mut tx, counted)?;
        match tx.commit() {
            Ok(()) => return Ok(last),
            Err(ApiError::Conflict) if after.is_none() => continue,
            Err(ApiError::Conflict) => return Ok(last),
            Err(e) => return Err(e),
        }
    }
    // A busy outbox: recount next time.
    Ok(last)
}

/// Queues the associations of one page after `after` that are behind;
/// returns where the next page starts (`None`: the pass is done) and how many
/// were queued.
pub fn reconcile_page(
    storage: &dyn Storage,
    after: Option<&str>,
) -> ApiResult<(Option<String>, u32)> {
    let page = storage.list(keys::ASSOCIATIONS, after, None, SLICE)?;
    let mut queued = 0;
    for rel in &page.keys {
        let Some(id) = EntryId::parse(rel) else {
            continue;
        };
        match reconcile_one(storage, &id) {
            Ok(true) => queued += 1,
            Ok(false) => {}
            Err(e @ ApiError::Unavailable(_)) => return Err(e),
            // One broken association does not stop the others.
            Err(e) => eprintln!(
                "sync reconcile: association of destination {}/{} skipped: {e}",
                id.kind, id.name
            ),
        }
    }
    Ok((page.next, queued))
}

/// Queues one association if it is behind; `true` when queued.
fn reconcile_one(storage: &dyn Storage, id: &EntryId) -> ApiResult<bool> {
    for _ in 0..RUNS {
        let mut tx = Tx::new(storage);
        if outbox::load(&mut tx, id)?.is_some() {
            return Ok(false);
        }
        let Some(mut record) = id.load_association(&mut tx)? else {
            return Ok(false);
        };
        let Some(dest) = Destination::load(&mut tx, &id.kind, &id.name)? else {
            return Ok(false);
        };
        let mount = MountTable::load(&mut tx)?
            .entries
            .into_iter()
            .find(|m| m.accessor == id.accessor);
        let op = match mount {
            _ if dest.purge_initiated_at.is_some() => OutboxOp::Purge,
            None => OutboxOp::UnsyncDrop,
            Some(mount) if behind(&mut tx, &mount, &record)? => OutboxOp::Sync,
            Some(_) => return Ok(false),
        };
        let already_full = record
            .rows
            .values()
            .all(|r| r.error.as_deref() == Some(QUEUE_FULL));
        let queued = outbox::queue(&mut tx, &mut record, op, time::now(), false)?;
        if queued == Queued::Full && already_full {
            // Still no room; the rows already say so.
            return Ok(false);
        }
        match tx.commit() {
            Ok(()) => return Ok(queued.is_queued()),
            Err(ApiError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Whether the destination copy of `record` is behind its secret (the
/// association has no outbox entry).
fn behind(tx: &mut Tx, mount: &MountEntry, record: &Association) -> ApiResult<bool> {
    let rows = || record.rows.values();
    if rows().any(|r| {
        matches!(
            r.sync_status,
            SyncStatus::Pending | SyncStatus::ExternalServiceError | SyncStatus::InternalVaultError
        )
    }) {
        return Ok(true);
    }
    Ok(match kv::current_version(tx, mount, &record.secret_name)? {
        Some(version) => rows().any(|r| {
            matches!(r.sync_status, SyncStatus::Synced | SyncStatus::Unsynced)
                && r.version != version
        }),
        None => rows().any(|r| r.sync_status == SyncStatus::Synced && r.may_exist()),
    })
}
