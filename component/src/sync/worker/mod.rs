//! The sync worker (WIT `sync.run`): runs the due outbox entries of one shard.
//!
//! Each entry runs in its own transaction: load the entry, the association,
//! its destination and the secret's current KV state, call the provider
//! (through [`sync_association`] / [`unsync_association`]), then commit the
//! outcome with the entry's fate:
//!
//! - success: the entry is deleted;
//! - retryable failure (`EXTERNAL_SERVICE_ERROR`, `INTERNAL_VAULT_ERROR`): the
//!   entry stays, `attempts + 1`, due after [`next_due`] (exponential backoff
//!   with jitter, at least the provider's retry-after);
//! - `CLIENT_SIDE_ERROR` of a sync: the entry is deleted; a change of the
//!   secret or a `set` queues it again. Unsyncs (a purge, a disabled mount, a
//!   failed `remove`) are jobs that must finish: they retry every failure.
//!
//! An entry stays until its outcome is committed, so a crash at any point
//! loses nothing (the provider call may be repeated: pushes are idempotent).
//! **Write-ahead.** The claim below is committed before any provider call,
//! and the outcome after: a provider call is never repeated because a commit
//! conflicted. When the outcome commit conflicts with a concurrent change
//! (other than of the entry count alone, which is merged in place), the
//! run's provider facts are committed onto the state as it is now
//! ([`merge_outcome`]) and whatever the change asks for is left queued. A
//! run that dies between the claim and the outcome (a crash, a trap) leaves
//! the claim: the entry runs again after its backoff and pushes again (a
//! push is idempotent, and a name a renaming push wrote and never recorded is
//! the name the retry writes and records).
//!
//! **An entry fails alone.** Before it touches the secret or a provider, a
//! run *claims* the entry in a commit of its own: `started_at` is set and
//! `due_at` moves to the time the entry would be retried had the attempt
//! failed ([`next_due`]). The outcome commit replaces the claim. So when the
//! run dies on the way (the guest trapped or exceeded its CPU or memory
//! limit, or the server stopped), the entry is not due again before its
//! backoff: the host's next run takes the rest of the batch and the shard
//! goes on. The run that finds a claim still set once the entry is due again
//! knows the attempt never finished: it counts the failed attempt, shows
//! `INTERNAL_VAULT_ERROR` ([`UNFINISHED`]) on the rows in the same commit as
//! its own claim, and tries once more. An entry that keeps killing its run is
//! so retried with the usual exponential backoff, its rows say why, and
//! nothing else waits for it. One loop runs a shard at a time (in a server
//! and in `sync run --once`), so a claim found set is never one in flight.
//!
//! **Inline runs.** `associations/set` and `remove` claim their entry in the
//! request's own commit and then run it with this code ([`inline`]), with a
//! claim that falls due only after any request's provider calls are over.

use crate::api::random_bytes;
use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::kv;
use crate::storage::{Storage, Tx};
use crate::sync::associations::{
    self, Association, SyncOutcome, sync_association, unsync_association,
};
use crate::sync::config::SyncConfig;
use crate::sync::destinations::Destination;
use crate::sync::jobs;
use crate::sync::keys;
use crate::sync::outbox::{self, EntryId, OutboxEntry, OutboxOp};
use crate::sync::status::SyncStatus;
use crate::sys::mounts::MountTable;
use crate::time::{self, Nanos};

pub mod inline;

/// The host's timing knobs (WIT `sync.settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// First retry delay; doubles per attempt.
    pub backoff_base_ms: u64,
    /// Longest retry delay (a provider's retry-after may ask for more).
    pub backoff_cap_ms: u64,
    /// The coalescing window (0: none): see [`coalesce_step`].
    pub coalesce_window_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            backoff_base_ms: 1_000,
            backoff_cap_ms: 300_000,
            coalesce_window_ms: 1_000,
        }
    }
}

/// The first coalescing step: a second change right behind a write waits this
/// long after it, not the whole window.
const COALESCE_FIRST_STEP_MS: u64 = 50;

/// How long after its last provider write an association changed again must
/// wait, when `burst` writes in a row already came within the window of the
/// one before: 50 ms after a lone write, the whole window after that. So a
/// secret written again and again costs about one provider write per window
/// however long the burst lasts, the final value always lands, and a change
/// after a quiet moment (or to another secret) runs at once.
pub fn coalesce_step(burst: u32, window_ms: u64) -> u64 {
    if burst == 0 {
        COALESCE_FIRST_STEP_MS.min(window_ms)
    } else {
        window_ms
    }
}

/// Whether the sync of `record` waits for coalescing, and until when; when it
/// runs now, updates the record's burst count for the write it may make.
fn coalesce(record: &mut Association, now: Nanos, settings: &Settings) -> Option<Nanos> {
    let window = ms_to_nanos(settings.coalesce_window_ms);
    if window == 0 || record.pushed_at == 0 {
        return None;
    }
    let since = now.saturating_sub(record.pushed_at);
    if since >= window {
        record.burst = 0;
        return None;
    }
    let step = ms_to_nanos(coalesce_step(record.burst, settings.coalesce_window_ms));
    if since < step {
        return Some(record.pushed_at.saturating_add(step));
    }
    record.burst = record.burst.saturating_add(1);
    None
}

/// What a run did (WIT `sync.run-report`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Entries processed.
    pub processed: u32,
    /// Of those, the ones that ended in an error status.
    pub failed: u32,
    /// When the next entry of the shard is due (ms since the epoch); `None`
    /// when the shard has nothing the worker could run (or sync is disabled).
    pub next_due_ms: Option<u64>,
}

/// The error rows show when an attempt never finished (see the module docs).
pub const UNFINISHED: &str = "the previous sync attempt did not finish: the sync run exceeded its \
                              resource limits or was interrupted; retrying";

/// Full runs of one entry after commit conflicts.
const ENTRY_RUNS: usize = 4;
/// Merges of a concurrent change of the entry count into one outcome.
const COUNT_MERGES: usize = 8;
/// The longest provider retry-after honoured (a day).
const MAX_RETRY_AFTER_MS: u64 = 86_400_000;
const NANOS_PER_MS: i64 = 1_000_000;

/// The shard of a destination: FNV-1a (64-bit) of `<type>/<name>`, modulo
/// `shards`. Stable across versions and hosts.
pub fn shard_of(kind: &str, name: &str, shards: u32) -> u32 {
    shard_of_bytes(
        kind.bytes()
            .chain(std::iter::once(b'/'))
            .chain(name.bytes()),
        shards,
    )
}

/// FNV-1a (64-bit) of `bytes`, modulo `shards`. Stable across versions and hosts.
pub fn shard_of_bytes(bytes: impl IntoIterator<Item = u8>, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    u32::try_from(h % u64::from(shards.max(1))).unwrap_or(0)
}

/// When an entry that failed for the `attempts + 1`-th time is due again:
/// `backoff = min(cap, base * 2^attempts)` with equal jitter (half of it
/// fixed, half drawn from `jitter`), and never before the provider's
/// `retry_after_ms` (capped at a day).
pub fn next_due(
    now: Nanos,
    attempts: u32,
    retry_after_ms: Option<u64>,
    settings: &Settings,
    jitter: u64,
) -> Nanos {
    let growth = 1u64.checked_shl(attempts).unwrap_or(u64::MAX);
    let backoff = settings
        .backoff_base_ms
        .saturating_mul(growth)
        .min(settings.backoff_cap_ms);
    let delay = time::equal_jitter(backoff, jitter);
    let delay = delay.max(retry_after_ms.unwrap_or(0).min(MAX_RETRY_AFTER_MS));
    now.saturating_add(ms_to_nanos(delay))
}

fn ms_to_nanos(ms: u64) -> Nanos {
    i64::try_from(ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(NANOS_PER_MS)
}

/// The earlier of two optional times.
fn earlier(a: Option<Nanos>, b: Option<Nanos>) -> Option<Nanos> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Nanoseconds to milliseconds, rounded up (a host never wakes too early).
fn nanos_to_ms(n: Nanos) -> u64 {
    u64::try_from(n.max(0)).unwrap_or(0).div_ceil(1_000_000)
}

fn jitter() -> u64 {
    u64::from_le_bytes(random_bytes::<8>())
}

/// What running one entry came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing to do: the entry is gone or not due (another worker ran it).
    /// Its due time, when it is still there.
    Skipped(Option<Nanos>),
    /// Processed; `failed` when it ended in an error status; `next` when the
    /// entry stays (a retry) and is due then.
    Done { failed: bool, next: Option<Nanos> },
}

/// How long one run takes new entries: after that (provider calls are
/// slow, or many), it stops taking them and reports the rest due now, so the
/// host's next run (and its instance's limits) take over. The entry in
/// flight finishes.
pub const RUN_BUDGET_MS: u64 = 30_000;

/// `sync.run`: processes up to `limit` due entries of shard `shard` of
/// `shards`, earliest first, for at most [`RUN_BUDGET_MS`]. Does nothing
/// while sync is disabled.
pub fn run(env: &Env, shard: u32, shards: u32, limit: u32, settings: &Settings) -> RunReport {
    run_within(env, shard, shards, limit, settings, RUN_BUDGET_MS)
}

/// [`run`] with a budget of `budget_ms`: no entry is taken once it is spent
/// (the first always is).
fn run_within(
    env: &Env,
    shard: u32,
    shards: u32,
    limit: u32,
    settings: &Settings,
    budget_ms: u64,
) -> RunReport {
    let now = time::now();
    let stop_taking = now.saturating_add(ms_to_nanos(budget_ms));
    let mut report = RunReport::default();
    // Sweeps over whole data sets (reconciliation, purges, disabled mounts)
    // take one step per run of their shard, whether sync is enabled or not;
    // a step counts as processed, so the host runs again at once while one
    // goes on.
    let (steps, sweeping) = jobs::run(env.storage, shard, shards);
    report.processed = steps;
    let sweep_due = sweeping.then_some(now);
    report.next_due_ms = sweep_due.map(nanos_to_ms);
    // When storage fails, the host comes back after a backoff, not at once.
    let retry_later = || Some(nanos_to_ms(next_due(now, 0, None, settings, 0)));
    let disabled = SyncConfig::load(&mut Tx::new(env.storage)).map(|c| c.disabled);
    match disabled {
        Ok(true) => return report,
        Ok(false) => {}
        Err(e) => {
            eprintln!("sync run: cannot read the sync config: {e}");
            report.next_due_ms = retry_later();
            return report;
        }
    }
    let (due, mut next) = match scan(env.storage, shard, shards, now, limit) {
        Ok((due, next)) => (due, earlier(next, sweep_due)),
        Err(e) => {
            eprintln!("sync run: cannot list the outbox: {e}");
            report.next_due_ms = retry_later();
            return report;
        }
    };
    let mut earliest = |t: Nanos| next = Some(next.map_or(t, |n| n.min(t)));
    for (n, (id, indexed_at)) in due.iter().enumerate() {
        if n > 0 && time::now() >= stop_taking {
            // The budget is spent: the rest is due now, for the next run.
            earliest(*indexed_at);
            break;
        }
        match run_entry(env, id, *indexed_at, now, settings) {
            Ok(Step::Skipped(due_at)) => {
                if let Some(t) = due_at {
                    earliest(t);
                }
            }
            Ok(Step::Done { failed, next }) => {
                report.processed += 1;
                if failed {
                    report.failed += 1;
                }
                if let Some(t) = next {
                    earliest(t);
                }
            }
            Err(e) => {
                eprintln!(
                    "sync run: entry of destination {}/{} not processed: {e}",
                    id.kind, id.name
                );
                earliest(next_due(now, 0, None, settings, 0));
                if matches!(e, ApiError::Unavailable(_)) {
                    break;
                }
            }
        }
    }
    report.next_due_ms = next.map(nanos_to_ms);
    report
}

/// What [`scan`] found: entries with the time each is indexed at, and when
/// the next one falls due.
type Found = (Vec<(EntryId, Nanos)>, Option<Nanos>);

/// Up to `limit` entries of shard `shard` due by `now`, earliest first, with
/// the time each is indexed at, and when the shard's next entry after those
/// falls due — from the due index: the shard's destinations, then the first
/// keys of each (no entry is read, no other shard's work is looked at).
fn scan(
    storage: &dyn Storage,
    shard: u32,
    shards: u32,
    now: Nanos,
    limit: u32,
) -> ApiResult<Found> {
    let limit = limit as usize;
    let mut due: Vec<(EntryId, Nanos)> = Vec::new();
    let mut next: Option<Nanos> = None;
    let mut later = |t: Nanos| next = Some(next.map_or(t, |n| n.min(t)));
    for kind in list_all(storage, keys::DUE, Some('/'))? {
        let kind = kind.trim_end_matches('/');
        for name in list_all(storage, &format!("{}{kind}/", keys::DUE), Some('/'))? {
            let name = name.trim_end_matches('/');
            if shard_of(kind, name, shards) != shard {
                continue;
            }
            // This destination's earliest keys: at most `limit` can run.
            let page = storage.list(&keys::due_of(kind, name), None, None, SCAN_PAGE)?;
            for rel in &page.keys {
                let Some((at, accessor, secret_name)) = keys::split_due(rel) else {
                    continue;
                };
                if at > now {
                    later(at);
                    break;
                }
                due.push((
                    EntryId {
                        kind: kind.to_string(),
                        name: name.to_string(),
                        accessor,
                        secret_name,
                    },
                    at,
                ));
            }
            if page.next.is_some() && page.keys.len() >= SCAN_PAGE as usize {
                // More behind this page: due now or later, looked at next run.
                later(now);
            }
        }
    }
    due.sort_by(|(a_id, a), (b_id, b)| (a, a_id).cmp(&(b, b_id)));
    for (_, at) in due.iter().skip(limit) {
        later(*at);
    }
    due.truncate(limit);
    Ok((due, next))
}

/// Keys read at most per destination by one [`scan`].
const SCAN_PAGE: u32 = 512;

/// Every key under `prefix` (folded at `delimiter`), page by page.
fn list_all(
    storage: &dyn Storage,
    prefix: &str,
    delimiter: Option<char>,
) -> ApiResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = storage.list(prefix, after.as_deref(), delimiter, 1000)?;
        keys.extend(page.keys);
        match page.next {
            Some(n) if after.as_deref() != Some(n.as_str()) => after = Some(n),
            _ => return Ok(keys),
        }
    }
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

/// What claiming an entry came to.
enum Claim {
    /// Not to run: gone, not due, or not decodable.
    Skip(Step),
    /// Claimed at this time; `unfinished` when an earlier attempt died.
    Claimed { at: Nanos, unfinished: bool },
}

/// Claims the entry `id` in a commit of its own (module docs).
fn claim(
    env: &Env,
    id: &EntryId,
    indexed_at: Nanos,
    now: Nanos,
    settings: &Settings,
) -> ApiResult<Claim> {
    for _ in 0..ENTRY_RUNS {
        let mut tx = Tx::new(env.storage);
        let entry = match outbox::load(&mut tx, id) {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                // Gone meanwhile: an index key left behind is dropped.
                tx.delete(id.due_key(indexed_at));
                tx.try_commit()?;
                return Ok(Claim::Skip(Step::Skipped(None)));
            }
            // Undecodable: the processing step repairs it.
            Err(ApiError::Internal(_)) => {
                return Ok(Claim::Claimed {
                    at: now,
                    unfinished: false,
                });
            }
            Err(e) => return Err(e),
        };
        if entry.due_at != indexed_at {
            // The index is behind the entry: move its key.
            tx.delete(id.due_key(indexed_at));
            tx.put(id.due_key(entry.due_at), Vec::new());
        }
        if entry.due_at > now {
            tx.try_commit()?;
            return Ok(Claim::Skip(Step::Skipped(Some(entry.due_at))));
        }
        let unfinished = entry.started_at.is_some();
        let attempts = if unfinished {
            if let Some(mut record) = id.load_association(&mut tx)? {
                record.mark_rows(SyncStatus::InternalVaultError, Some(UNFINISHED), now);
                record.save(&mut tx)?;
            }
            entry.attempts.saturating_add(1)
        } else {
            entry.attempts
        };
        let at = time::now();
        let claimed = OutboxEntry {
            due_at: next_due(at, attempts, None, settings, jitter()),
            attempts,
            started_at: Some(at),
            ..entry.clone()
        };
        outbox::store(&mut tx, id, Some(&entry), &claimed)?;
        match tx.try_commit() {
            Ok(()) => return Ok(Claim::Claimed { at, unfinished }),
            Err(ApiError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Conflict)
}

/// Runs one entry in its own transaction, again after a conflict.
fn run_entry(
    env: &Env,
    id: &EntryId,
    indexed_at: Nanos,
    now: Nanos,
    settings: &Settings,
) -> ApiResult<Step> {
    let (claimed_at, unfinished) = match claim(env, id, indexed_at, now, settings)? {
        Claim::Skip(step) => return Ok(step),
        Claim::Claimed { at, unfinished } => (at, unfinished),
    };
    let step = run_claimed(env, id, indexed_at, now, claimed_at, settings)?;
    Ok(match step {
        // The attempt that died counts as a failure of this run.
        Step::Done { next, .. } if unfinished => Step::Done { failed: true, next },
        step => step,
    })
}

/// Runs a claimed entry in its own transaction, again after a conflict.
fn run_claimed(
    env: &Env,
    id: &EntryId,
    indexed_at: Nanos,
    now: Nanos,
    claimed_at: Nanos,
    settings: &Settings,
) -> ApiResult<Step> {
    for _ in 0..ENTRY_RUNS {
        let mut tx = Tx::new(env.storage);
        let ran = process(&mut tx, env, id, indexed_at, now, claimed_at, settings);
        let (step, count_delta) = match ran {
            Ok(outcome) => outcome,
            Err(e @ (ApiError::Conflict | ApiError::Unavailable(_))) => return Err(e),
            Err(e) => {
                // A bug or corrupt state: never a reason to retry at once.
                eprintln!(
                    "sync run: internal error on an entry of destination {}/{}: {e}",
                    id.kind, id.name
                );
                tx = Tx::new(env.storage);
                internal_failure(&mut tx, id, indexed_at, now, claimed_at, settings)?
            }
        };
        match commit_with_count(&mut tx, id, count_delta) {
            Ok(()) => return Ok(step),
            Err(ApiError::Conflict) => {
                if let Some(step) = merge_outcome(env, id, &mut tx, claimed_at, step, count_delta)?
                {
                    return Ok(step);
                }
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
fn merge_outcome(
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

/// Commits `tx` with `delta` applied to the entry count. When the count is
/// the only thing that changed meanwhile, reads it again and retries, without
/// running the entry (and its provider calls) again.
fn commit_with_count(tx: &mut Tx, id: &EntryId, delta: i64) -> ApiResult<()> {
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

/// Runs one entry in `tx`. Returns what happened and the change of the entry
/// count (applied by the caller, at commit time).
fn process(
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
fn internal_failure(
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

/// Makes every outbox entry due now (tests skip the backoff with it).
#[cfg(test)]
pub fn make_all_due(storage: &dyn Storage) {
    let mut tx = Tx::new(storage);
    for id in outbox::all_ids(&mut tx).unwrap() {
        let old = outbox::load(&mut tx, &id).unwrap().unwrap();
        let entry = OutboxEntry {
            due_at: 0,
            ..old.clone()
        };
        outbox::store(&mut tx, &id, Some(&old), &entry).unwrap();
    }
    tx.commit().unwrap();
}

#[cfg(test)]
mod tests;
