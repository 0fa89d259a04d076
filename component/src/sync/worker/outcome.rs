//! What a run of one entry comes to, and how it is committed: the provider
//! calls and the entry's fate ([`process`]: done, kept for a retry with backoff,
//! or a configuration or internal error shown on the rows), the outcome commit
//! with a concurrent change of the entry count merged in place
//! ([`commit_with_count`]), and the run's provider facts committed onto a state
//! that changed meanwhile ([`merge_outcome`], [`merge_drop`]).

use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::kv;
use crate::storage::Tx;
use crate::sync::associations::{
    self, Association, SyncOutcome, sync_association, unsync_association,
};
use crate::sync::destinations::Destination;
use crate::sync::keys;
use crate::sync::outbox::{self, EntryId, OutboxEntry, OutboxOp};
use crate::sync::status::SyncStatus;
use crate::sys::mounts::MountTable;
use crate::time::{self, Nanos};

use super::schedule::{coalesce, jitter, next_due};
use super::{Settings, Step};

/// Merges of a concurrent change of the entry count into one outcome.
const COUNT_MERGES: usize = 8;

/// Runs one entry in `tx`. Returns what happened and the change of the entry
/// count (applied by the caller, at commit time).
pub(super) fn process(
    tx: &mut Tx,
    env: &Env,
    id: &EntryId,
    indexed_at: Nanos,
    now: Nanos,
    claimed_at: Nanos,
    settings: &Settings,
) -> ApiResult<(Step, i64)> {
    let Some(mut entry) = outbox::load(tx, id)? else {
        // Gone meanwhile: an index key left behind is dropped.
        tx.delete(id.due_key(indexed_at));
        return Ok((Step::Skipped(None), 0));
    };
    let Some(entry_due) = runnable(tx, id, &mut entry, indexed_at, now, claimed_at) else {
        return Ok((Step::Skipped(Some(entry.due_at)), 0));
    };
    let entry = OutboxEntry {
        due_at: entry_due,
        ..entry
    };
    let finished = |tx: &mut Tx, failed: bool| {
        outbox::remove(tx, id, Some(&entry));
        (Step::Done { failed, next: None }, -1)
    };
    let Some(mut record) = id.load_association(tx)? else {
        // Removed since it was queued.
        return Ok(finished(tx, false));
    };
    let Some(mut dest) = Destination::load(tx, &id.kind, &id.name)? else {
        // The destination is gone: nothing left to reach the objects with.
        record.drop_record(tx)?;
        return Ok(finished(tx, false));
    };
    let mount = MountTable::load(tx)?
        .entries
        .into_iter()
        .find(|m| m.accessor == id.accessor);
    let op = match (&mount, entry.op) {
        _ if dest.purge_initiated_at.is_some() => OutboxOp::Purge,
        // The mount was disabled: its associations go.
        (None, _) => OutboxOp::UnsyncDrop,
        (Some(_), op) => op,
    };
    match (op, mount) {
        (OutboxOp::Sync, Some(mount)) => {
            if entry.attempts == 0
                && let Some(due_at) = coalesce(&mut record, now, settings)
            {
                // Written moments ago: wait, and let further changes join.
                outbox::store(
                    tx,
                    id,
                    Some(&entry),
                    &OutboxEntry {
                        due_at,
                        ..entry.clone()
                    },
                )?;
                return Ok((Step::Skipped(Some(due_at)), 0));
            }
            let secret = kv::read_current(tx, &mount, &id.secret_name)?;
            let secret = secret.as_ref().map(|(v, data)| (*v, data));
            let outcome = match sync_association(tx, env, &dest, &mut record, secret) {
                Ok(outcome) => outcome,
                Err(ApiError::BadRequest(msg)) => configuration_error(tx, &mut record, &msg)?,
                Err(e) => return Err(e),
            };
            if outcome.retryable {
                let next = reschedule(tx, id, &entry, outcome.retry_after_ms, settings)?;
                Ok((
                    Step::Done {
                        failed: true,
                        next: Some(next),
                    },
                    0,
                ))
            } else {
                Ok(finished(tx, outcome.failure.is_some()))
            }
        }
        _ => {
            let (dropped, outcome) = match unsync_association(tx, env, &dest, &mut record) {
                Ok(done) => done,
                Err(ApiError::BadRequest(msg)) => {
                    (false, configuration_error(tx, &mut record, &msg)?)
                }
                Err(e) => return Err(e),
            };
            if dropped {
                associations::finish_purge(tx, &dest)?;
                return Ok(finished(tx, false));
            }
            let next = reschedule(tx, id, &entry, outcome.retry_after_ms, settings)?;
            if op == OutboxOp::Purge {
                dest.purge_error = Some(purge_error(&record));
                dest.save(tx)?;
            }
            Ok((
                Step::Done {
                    failed: true,
                    next: Some(next),
                },
                0,
            ))
        }
    }
}

/// Whether the loaded `entry` is to run now: it carries this run's claim
/// (which is then dropped from it), or it is due (a change replaced the
/// claim). Moves a due-index key that is behind the entry. Returns the due
/// time the entry is stored with, so later writes replace the right index key.
fn runnable(
    tx: &mut Tx,
    id: &EntryId,
    entry: &mut OutboxEntry,
    indexed_at: Nanos,
    now: Nanos,
    claimed_at: Nanos,
) -> Option<Nanos> {
    let ours = entry.started_at == Some(claimed_at);
    if !ours && entry.due_at != indexed_at {
        tx.delete(id.due_key(indexed_at));
        tx.put(id.due_key(entry.due_at), Vec::new());
    }
    if !ours && entry.due_at > now {
        return None;
    }
    entry.started_at = None;
    Some(entry.due_at)
}

/// A problem found before any provider call (a name that cannot be
/// rendered, a collision, a missing GitHub App): the rows say so.
fn configuration_error(tx: &mut Tx, record: &mut Association, msg: &str) -> ApiResult<SyncOutcome> {
    record.mark_rows(SyncStatus::ClientSideError, Some(msg), time::now());
    record.save(tx)?;
    Ok(SyncOutcome::client_side())
}

/// Keeps the entry for another attempt; returns when it is due.
fn reschedule(
    tx: &mut Tx,
    id: &EntryId,
    entry: &OutboxEntry,
    retry_after_ms: Option<u64>,
    settings: &Settings,
) -> ApiResult<Nanos> {
    let due_at = next_due(
        time::now(),
        entry.attempts,
        retry_after_ms,
        settings,
        jitter(),
    );
    outbox::store(
        tx,
        id,
        Some(entry),
        &OutboxEntry {
            due_at,
            attempts: entry.attempts.saturating_add(1),
            ..entry.clone()
        },
    )?;
    Ok(due_at)
}

/// After an internal error: the entry is retried later, and the rows show
/// `INTERNAL_VAULT_ERROR` (without details: they go to the log).
pub(super) fn internal_failure(
    tx: &mut Tx,
    id: &EntryId,
    indexed_at: Nanos,
    now: Nanos,
    claimed_at: Nanos,
    settings: &Settings,
) -> ApiResult<(Step, i64)> {
    let mut entry = match outbox::load(tx, id) {
        Ok(Some(entry)) => entry,
        Ok(None) => return Ok((Step::Skipped(None), 0)),
        Err(ApiError::Internal(_)) => repair_entry(indexed_at),
        Err(e) => return Err(e),
    };
    if entry.due_at > now && entry.started_at != Some(claimed_at) {
        return Ok((Step::Skipped(Some(entry.due_at)), 0));
    }
    entry.started_at = None;
    let next = reschedule(tx, id, &entry, None, settings)?;
    if let Ok(Some(mut record)) = id.load_association(tx) {
        record.mark_rows(
            SyncStatus::InternalVaultError,
            Some("internal error while syncing; see the server log"),
            time::now(),
        );
        record.save(tx)?;
    }
    Ok((
        Step::Done {
            failed: true,
            next: Some(next),
        },
        0,
    ))
}

/// An entry that cannot be decoded is replaced by a sync due when its index
/// key said.
fn repair_entry(due_at: Nanos) -> OutboxEntry {
    OutboxEntry {
        op: OutboxOp::Sync,
        due_at,
        attempts: 0,
        enqueued_at: 0,
        started_at: None,
    }
}

/// The `purge_error` of a destination whose association could not be unsynced.
fn purge_error(record: &Association) -> String {
    let reason = record
        .rows
        .values()
        .find_map(|r| r.error.clone())
        .unwrap_or_else(|| "unknown error".to_string());
    format!(
        "could not delete the external objects of secret {} in mount {}: {reason}; retrying",
        record.secret_name, record.mount
    )
}

/// Commits `tx` with `delta` applied to the entry count. When the count is
/// the only thing that changed meanwhile, reads it again and retries, without
/// running the entry (and its provider calls) again.
pub(super) fn commit_with_count(tx: &mut Tx, id: &EntryId, delta: i64) -> ApiResult<()> {
    for _ in 0..COUNT_MERGES {
        outbox::adjust_count(tx, id, delta)?;
        match tx.try_commit() {
            Ok(()) => return Ok(()),
            Err(ApiError::Conflict) if delta != 0 => {
                let changed = tx.changed_reads()?;
                if changed.is_empty() || changed.iter().any(|k| !outbox::is_count_key(k)) {
                    return Err(ApiError::Conflict);
                }
                outbox::forget_count(tx, id);
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Conflict)
}

/// After the outcome commit of a run conflicted with a concurrent change:
/// commits what the run's provider calls are known to have done onto the
/// state as it is now, without calling the provider again. The record the
/// run wrote (`done`, read from its own writes) holds the provider's facts:
/// its rows (names, digests, statuses) and stale names.
///
/// - The association kept its template and granularity (the concurrent
///   change was a KV write, a queued change, another key): its rows become
///   the run's; when a change re-queued the entry meanwhile, they show
///   `PENDING` and the entry stays for the next run (whose digests make an
///   unchanged push a no-op).
/// - It was `set` again meanwhile with another template or granularity: its
///   rows are the `set`'s facts; the names the run wrote that they do not
///   know become stale names, and a sync is queued to delete them if they are
///   no longer desired.
/// - It is gone (removed meanwhile): nothing is recorded.
///
/// The entry gets the run's outcome only when it still carries this run's
/// claim. A run that dropped the association is merged by [`merge_drop`].
pub(super) fn merge_outcome(
    env: &Env,
    id: &EntryId,
    done: &mut Tx,
    claimed_at: Nanos,
    step: Step,
    count_delta: i64,
) -> ApiResult<Option<Step>> {
    let Some(ours) = id.load_association(done)? else {
        return merge_drop(env, id, done, claimed_at, step, count_delta);
    };
    let our_entry = outbox::load(done, id)?;
    for _ in 0..COUNT_MERGES {
        let mut tx = Tx::new(env.storage);
        let fresh_entry = match outbox::load(&mut tx, id) {
            Ok(entry) => entry,
            // Undecodable: left to the worker's repair.
            Err(ApiError::Internal(_)) => None,
            Err(e) => return Err(e),
        };
        let still_ours = fresh_entry
            .as_ref()
            .is_some_and(|e| e.started_at == Some(claimed_at));
        let mut delta = 0;
        if still_ours {
            match &our_entry {
                Some(entry) => outbox::store(&mut tx, id, fresh_entry.as_ref(), entry)?,
                None => {
                    outbox::remove(&mut tx, id, fresh_entry.as_ref());
                    delta = count_delta;
                }
            }
        }
        let now = time::now();
        if let Some(mut fresh) = id.load_association(&mut tx)? {
            if fresh.template == ours.template && fresh.granularity == ours.granularity {
                fresh.rows = ours.rows.clone();
                fresh.stale = ours.stale.clone();
                fresh.pushed_at = ours.pushed_at;
                fresh.burst = ours.burst;
                if !still_ours && fresh_entry.is_some() {
                    fresh.mark_rows(SyncStatus::Pending, None, now);
                }
                fresh.save(&mut tx)?;
            } else {
                let known: std::collections::BTreeSet<&str> = fresh
                    .rows
                    .values()
                    .map(|r| r.external_name.as_str())
                    .collect();
                let written = ours
                    .rows
                    .iter()
                    .filter(|(_, row)| row.may_exist())
                    .map(|(key, row)| (row.external_name.clone(), key.clone()))
                    .chain(ours.stale.clone())
                    .filter(|(name, _)| !known.contains(name.as_str()))
                    .collect::<Vec<_>>();
                if !written.is_empty() {
                    fresh.stale.extend(written);
                    fresh.save(&mut tx)?;
                    outbox::queue(&mut tx, &mut fresh, OutboxOp::Sync, now, false)?;
                }
            }
        }
        outbox::adjust_count(&mut tx, id, delta)?;
        match tx.try_commit() {
            Ok(()) => {
                return Ok(Some(if still_ours {
                    step
                } else {
                    Step::Done {
                        failed: false,
                        next: None,
                    }
                }));
            }
            Err(ApiError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Conflict)
}

/// [`merge_outcome`] of a run that deleted every object of the association
/// and dropped it: when the entry still carries this run's claim and the
/// association is still the one the run read, the drop is committed onto
/// the state as it is now, without deleting again. Otherwise `Ok(None)`: the
/// caller runs the entry again if it is still to run (deletes are
/// idempotent).
fn merge_drop(
    env: &Env,
    id: &EntryId,
    done: &Tx,
    claimed_at: Nanos,
    step: Step,
    count_delta: i64,
) -> ApiResult<Option<Step>> {
    let key = keys::association(&id.kind, &id.name, &id.accessor, &id.secret_name);
    let Some(Some(before)) = done.read_json::<Association>(&key)? else {
        return Ok(None);
    };
    for _ in 0..COUNT_MERGES {
        let mut tx = Tx::new(env.storage);
        let entry = match outbox::load(&mut tx, id) {
            Ok(Some(entry)) if entry.started_at == Some(claimed_at) => entry,
            Ok(_) | Err(ApiError::Internal(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if id.load_association(&mut tx)?.as_ref() != Some(&before) {
            return Ok(None);
        }
        before.drop_record(&mut tx)?;
        outbox::remove(&mut tx, id, Some(&entry));
        if let Some(dest) = Destination::load(&mut tx, &id.kind, &id.name)? {
            associations::finish_purge(&mut tx, &dest)?;
        }
        outbox::adjust_count(&mut tx, id, count_delta)?;
        match tx.try_commit() {
            Ok(()) => return Ok(Some(step)),
            Err(ApiError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Conflict)
}
