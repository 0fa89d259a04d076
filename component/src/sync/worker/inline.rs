//! Provider calls made by an API request (`associations/set`, `remove`),
//! write-ahead, through the worker's own run.
//!
//! A request that has to call a provider first commits its intent: the
//! association as the request leaves it (rows `PENDING`) and its outbox
//! entry, already claimed for the request — the state a worker's claim
//! commit produces ([`claim`], in the request's transaction). Once the
//! request has committed, it runs the claimed entry with the worker's code
//! ([`run`]): the provider calls, then the outcome commit with the worker's
//! conflict-merge rules. A conflict of the intent commit runs the request
//! again before any provider call; nothing after the intent commit runs the
//! request again, and a conflict of the outcome commit never repeats a
//! provider call. The request then answers with the rows as they are:
//! `SYNCED`, an error status, or `PENDING` when the inline bound passed (the
//! worker finishes).
//!
//! An inline claim is due again [`INLINE_CLAIM_MS`] after it was made:
//! longer than the provider calls of a request may take (the host's inline
//! bound, `sync_inline_timeout`), so no worker takes an entry a request is
//! still running. After a crash, or a request stopped on the way, the worker
//! finds the claim once it is due, counts the attempt that did not finish and
//! runs the entry: a sync converges (a push is idempotent, and a name written
//! and never recorded is the name the retry writes and records), an unsync
//! deletes until it is done.
//!
//! An inline run does not coalesce (the first sync of a `set` is always made
//! by the request) and backs off with the default timing ([`Settings`]): the
//! host's sync settings reach the engine only with `sync.run`.

use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::storage::Tx;
use crate::sync::associations::Association;
use crate::sync::outbox::{self, EntryId, OutboxEntry, OutboxOp};
use crate::sync::status::SyncStatus;
use crate::time::{self, Nanos};

use super::schedule::ms_to_nanos;
use super::{Settings, Step, run_claimed};

/// How long after it was made an inline claim falls due for the worker.
pub const INLINE_CLAIM_MS: u64 = 30_000;

/// An outbox entry a request claimed, to run once the request has committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineRun {
    pub id: EntryId,
    /// The claim's `started_at`.
    claimed_at: Nanos,
    /// The claim's `due_at` (its due-index key).
    due_at: Nanos,
}

/// Writes the intent of a provider call into the request's `tx`: `record`
/// with its rows `PENDING`, and its entry for `op` claimed for this request.
/// The claim replaces whatever was pending (a `set` or `remove` is an
/// explicit request), and is not held to `queue_capacity`: it is the
/// request's own attempt, gone once that attempt succeeds.
pub fn claim(tx: &mut Tx, record: &mut Association, op: OutboxOp) -> ApiResult<InlineRun> {
    let at = time::now();
    record.mark_rows(SyncStatus::Pending, None, at);
    record.save(tx)?;
    let id = EntryId::of(record);
    let existing = match outbox::load(tx, &id) {
        Ok(None) => {
            outbox::adjust_count(tx, &id, 1)?;
            None
        }
        Ok(Some(entry)) => Some(entry),
        // Undecodable, and counted: replaced.
        Err(ApiError::Internal(_)) => None,
        Err(e) => return Err(e),
    };
    let due_at = at.saturating_add(ms_to_nanos(INLINE_CLAIM_MS));
    let entry = OutboxEntry {
        op,
        due_at,
        attempts: 0,
        enqueued_at: existing.as_ref().map_or(at, |e| e.enqueued_at),
        started_at: Some(at),
    };
    outbox::store(tx, &id, existing.as_ref(), &entry)?;
    Ok(InlineRun {
        id,
        claimed_at: at,
        due_at,
    })
}

/// Runs the entry `inline` claimed, after the request's intent commit.
/// Returns whether work remains queued for the destination (a retry; the
/// worker is to learn when it is due).
pub fn run(env: &Env, inline: &InlineRun) -> ApiResult<bool> {
    let settings = Settings {
        coalesce_window_ms: 0,
        ..Settings::default()
    };
    let step = run_claimed(
        env,
        &inline.id,
        inline.due_at,
        time::now(),
        inline.claimed_at,
        &settings,
    )?;
    Ok(match step {
        Step::Done { next, .. } => next.is_some(),
        Step::Skipped(due) => due.is_some(),
    })
}

#[cfg(test)]
mod tests;
