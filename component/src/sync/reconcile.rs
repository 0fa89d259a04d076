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

use std::collections::BTreeSet;

use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::kv;
use crate::storage::{Storage, Tx};
use crate::sync::associations::Association;
use crate::sync::destinations::Destination;
use crate::sync::keys;
use crate::sync::outbox::{self, EntryId, OutboxOp, QUEUE_FULL, Queued};
use crate::sync::status::SyncStatus;
use crate::sys::mounts::{MountEntry, MountTable};
use crate::time;

/// Associations queued by one call at most (the next call goes on).
pub const MAX_QUEUED: u32 = 1_000;
/// Runs of one transaction after commit conflicts.
const RUNS: usize = 4;

/// `sync.reconcile`: returns how many associations were queued.
pub fn reconcile(env: &Env) -> u32 {
    match try_reconcile(env.storage) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("sync reconcile failed: {e}");
            0
        }
    }
}

fn try_reconcile(storage: &dyn Storage) -> ApiResult<u32> {
    let queued_ids = recount(storage)?;
    let ids: Vec<EntryId> = queued_ids.iter().cloned().collect();
    let restored = outbox::repair_index(storage, &ids)?;
    if restored > 0 {
        eprintln!("sync reconcile: {restored} outbox entries were missing from the due index");
    }
    let associations: Vec<EntryId> = Tx::new(storage)
        .list(keys::ASSOCIATIONS, None)?
        .iter()
        .filter_map(|rel| EntryId::parse(rel))
        .collect();
    let mut queued = 0;
    for id in associations {
        if queued >= MAX_QUEUED {
            break;
        }
        if queued_ids.contains(&id) {
            continue;
        }
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
    Ok(queued)
}

/// Recounts the outbox (and fixes the stored count); returns the ids of the
/// entries. The count is read before the list: any entry added or removed
/// meanwhile changed it too, so the commit conflicts and the count is taken
/// again.
fn recount(storage: &dyn Storage) -> ApiResult<BTreeSet<EntryId>> {
    for _ in 0..RUNS {
        let mut tx = Tx::new(storage);
        outbox::count(&mut tx)?;
        let ids = outbox::all_ids(&mut tx)?;
        outbox::reset_count(&mut tx, u64::try_from(ids.len()).unwrap_or(u64::MAX))?;
        match tx.commit() {
            Ok(()) => return Ok(ids.into_iter().collect()),
            Err(ApiError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    // A busy outbox: recount next time.
    Ok(outbox::all_ids(&mut Tx::new(storage))?
        .into_iter()
        .collect())
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
