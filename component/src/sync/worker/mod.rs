//! The sync worker (WIT `sync.run`): runs the due outbox entries of one shard.
//!
//! Each entry runs in its own transaction: load the entry, the association,
//! its destination and the secret's current KV state, call the provider
//! (through [`sync_association`](crate::sync::associations::sync_association)
//! / [`unsync_association`](crate::sync::associations::unsync_association)),
//! then commit the outcome with the entry's fate:
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
//!
//! **Where things live.** `mod.rs`: the entry points ([`run`], and the run of
//! one entry that [`inline`] shares); `schedule.rs`: which entries a run takes
//! and when each is due (shards, the due scan, backoff, coalescing, the claim);
//! `outcome.rs`: what a run of an entry comes to and how it is committed (the
//! entry's fate, the rows' status, the merge after a conflicting change);
//! `inline.rs`: the runs a request makes itself.

use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::storage::Tx;
use crate::sync::config::SyncConfig;
use crate::sync::jobs;
use crate::sync::outbox::EntryId;
use crate::time::{self, Nanos};

pub mod inline;
mod outcome;
mod schedule;

#[cfg(test)]
pub use schedule::make_all_due;
pub use schedule::{UNFINISHED, coalesce_step, next_due, shard_of, shard_of_bytes};

use outcome::{commit_with_count, internal_failure, merge_outcome, process};
use schedule::{Claim, claim, ms_to_nanos, nanos_to_ms, scan};

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

/// Full runs of one entry after commit conflicts.
const ENTRY_RUNS: usize = 4;

/// The earlier of two optional times.
fn earlier(a: Option<Nanos>, b: Option<Nanos>) -> Option<Nanos> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
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

#[cfg(test)]
mod tests;
