//! Work over a whole data set, in bounded slices: reconciliation, the purge
//! of a destination and the cleanup of a disabled mount each visit every key
//! under one prefix, and there may be any number of them.
//!
//! A sweep visits the keys under its prefix in order, at most [`SLICE`] per
//! step, and records where it is (the last key handled) in a job record at
//! `sync/jobs/<id>`, committed with the step's work or right after it. The
//! call that starts a sweep runs its first step; when more keys remain, the
//! job record stays and the sync worker's runs take one step each ([`run`],
//! from `sync.run` of the job's shard) until the sweep is done. So memory and
//! guest time per call stay flat whatever the size, and a crash loses
//! nothing: the next run goes on from the recorded key (a step done twice is
//! harmless: every step is idempotent).

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::storage::{Storage, Tx};
use crate::sync::keys;
use crate::sync::outbox::{self, EntryId, OutboxOp};
use crate::sync::reconcile;
use crate::sync::worker::shard_of;
use crate::time;

/// Keys one step of a sweep handles at most.
pub const SLICE: u32 = 1_000;
/// Associations queued per commit by a purge or mount-disable step.
const BATCH: u32 = 250;
/// Where job records live: one per sweep in progress.
pub const JOBS: &str = "sync/jobs/";
/// Job records listed per page by a run.
const JOBS_LISTED: u32 = 64;

/// What a sweep does with the keys it visits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "sweep", rename_all = "snake_case")]
pub enum Sweep {
    /// Reconciliation, first part: recount the outbox (`count_at_start`:
    /// the stored count when the recount began; `counted`: entries seen so
    /// far) and restore lost due-index keys.
    Recount { counted: u64, count_at_start: u64 },
    /// Reconciliation, second part: queue the associations that are behind.
    Reconcile,
    /// The purge of a destination: queue the unsync of every association.
    Purge { kind: String, name: String },
    /// A disabled mount: queue the unsync-and-drop of every association of
    /// its secrets.
    MountDisabled { accessor: String },
}

impl Sweep {
    /// The job record's key.
    fn key(&self) -> String {
        match self {
            Sweep::Recount { .. } | Sweep::Reconcile => format!("{JOBS}reconcile"),
            Sweep::Purge { kind, name } => format!("{JOBS}purge/{kind}/{name}"),
            Sweep::MountDisabled { accessor } => format!("{JOBS}mount-disabled/{accessor}"),
        }
    }

    /// The keys it visits.
    fn prefix(&self) -> String {
        match self {
            Sweep::Recount { .. } => keys::OUTBOX.to_string(),
            Sweep::Reconcile => keys::ASSOCIATIONS.to_string(),
            Sweep::Purge { kind, name } => keys::associations_of(kind, name),
            Sweep::MountDisabled { accessor } => keys::secrets_of_accessor(accessor),
        }
    }

    /// The shard whose runs take its steps: a purge goes with its
    /// destination's entries.
    fn shard(&self, shards: u32) -> u32 {
        let key = self.key();
        shard_of_job(key.strip_prefix(JOBS).unwrap_or(&key), shards).unwrap_or(0)
    }

    /// The association a visited key (relative to [`Sweep::prefix`]) stands for.
    fn association(&self, rel: &str) -> Option<EntryId> {
        match self {
            Sweep::Recount { .. } | Sweep::Reconcile => EntryId::parse(rel),
            Sweep::Purge { kind, name } => EntryId::parse(&format!("{kind}/{name}/{rel}")),
            Sweep::MountDisabled { accessor } => {
                let mut parts = rel.splitn(3, '/');
                let (escaped, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
                EntryId::parse(&format!("{kind}/{name}/{accessor}/{escaped}"))
            }
        }
    }
}

/// The shard whose runs take the steps of the job stored at [`JOBS`] + `rel`
/// (`reconcile`, `purge/<type>/<name>`, `mount-disabled/<accessor>`): a purge
/// goes with its destination's entries. `None` for a key no job has. The host
/// files a tenant's jobs by it in its index of tenants with sync work.
pub fn shard_of_job(rel: &str, shards: u32) -> Option<u32> {
    let (a, b) = match rel.split_once('/') {
        None if rel == "reconcile" => ("sync", "reconcile"),
        Some(("purge", destination)) => destination.split_once('/')?,
        Some(("mount-disabled", accessor)) => ("mount", accessor),
        _ => return None,
    };
    Some(shard_of(a, b, shards))
}

/// A sweep in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    #[serde(flatten)]
    pub sweep: Sweep,
    /// The last key handled, relative to the sweep's prefix; `None`: none yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Queues `op` for one page of the sweep's associations after `after` (at
/// most `limit`), in `tx`; returns the last key handled when more follow.
/// The op is an explicit request: it replaces whatever is pending.
pub fn queue_page(
    tx: &mut Tx,
    sweep: &Sweep,
    after: Option<&str>,
    limit: u32,
    op: OutboxOp,
) -> ApiResult<Option<String>> {
    let page = tx
        .storage()
        .list(&sweep.prefix(), after, None, limit.max(1))?;
    let now = time::now();
    for rel in &page.keys {
        let Some(id) = sweep.association(rel) else {
            continue;
        };
        if let Some(mut record) = id.load_association(tx)? {
            outbox::queue(tx, &mut record, op, now, true)?;
        }
    }
    Ok(page.next)
}

/// Records in `tx` that `sweep` goes on after `after` (`None`: it is done).
pub fn save(tx: &mut Tx, sweep: Sweep, after: Option<String>) -> ApiResult<()> {
    let key = sweep.key();
    match after {
        Some(after) => tx.put_json(
            key,
            &Job {
                sweep,
                after: Some(after),
            },
        ),
        None => {
            tx.delete(key);
            Ok(())
        }
    }
}

/// One step of the job stored at `key`; `true` when the job goes on.
fn step(storage: &dyn Storage, key: &str) -> ApiResult<bool> {
    let mut tx = Tx::new(storage);
    let Some(job) = tx.get_json::<Job>(key)? else {
        return Ok(false);
    };
    match job.sweep {
        Sweep::Purge { .. } => queue_step(storage, key, OutboxOp::Purge),
        Sweep::MountDisabled { .. } => queue_step(storage, key, OutboxOp::UnsyncDrop),
        Sweep::Recount { .. } | Sweep::Reconcile => {
            reconcile_step(storage, job).map(|(goes_on, _)| goes_on)
        }
    }
}

/// A purge or mount-disable step: batches of [`BATCH`] associations, each
/// committed with the job's new position.
fn queue_step(storage: &dyn Storage, key: &str, op: OutboxOp) -> ApiResult<bool> {
    for _ in 0..SLICE.div_ceil(BATCH) {
        let mut tx = Tx::new(storage);
        let Some(job) = tx.get_json::<Job>(key)? else {
            return Ok(false);
        };
        let next = queue_page(&mut tx, &job.sweep, job.after.as_deref(), BATCH, op)?;
        let goes_on = next.is_some();
        save(&mut tx, job.sweep, next)?;
        match tx.commit() {
            Ok(()) if goes_on => {}
            Ok(()) => return Ok(false),
            // Someone else moved the job (or a queued record) meanwhile:
            // the next run goes on from where it is now.
            Err(ApiError::Conflict) => return Ok(true),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// One step of reconciliation from `job` (as stored, or a new pass): a
/// page of the outbox while it recounts, a page of associations after that
/// (both when the recount ends in this step). Returns whether the pass goes
/// on and how many associations were queued. The job's new position is
/// committed on condition that nobody moved it meanwhile (otherwise whoever
/// did goes on from theirs).
pub fn reconcile_step(storage: &dyn Storage, job: Job) -> ApiResult<(bool, u32)> {
    let mut progress = Tx::new(storage);
    progress.get(&job.sweep.key())?;
    let Job {
        mut sweep,
        mut after,
    } = job;
    if let Sweep::Recount {
        counted,
        count_at_start,
    } = sweep
    {
        let (next, counted, count_at_start) =
            reconcile::recount_page(storage, after.as_deref(), counted, count_at_start)?;
        (sweep, after) = match next {
            Some(next) => (
                Sweep::Recount {
                    counted,
                    count_at_start,
                },
                Some(next),
            ),
            None => (Sweep::Reconcile, None),
        };
        if after.is_some() {
            save(&mut progress, sweep, after)?;
            return finish(progress, true, 0);
        }
    }
    let (next, queued) = reconcile::reconcile_page(storage, after.as_deref())?;
    let goes_on = next.is_some();
    save(&mut progress, sweep, next)?;
    finish(progress, goes_on, queued)
}

fn finish(progress: Tx, goes_on: bool, queued: u32) -> ApiResult<(bool, u32)> {
    match progress.commit() {
        Ok(()) => Ok((goes_on, queued)),
        Err(ApiError::Conflict) => Ok((true, queued)),
        Err(e) => Err(e),
    }
}

/// The reconciliation pass in progress, or a new one.
pub fn reconcile_job(storage: &dyn Storage) -> ApiResult<Job> {
    let key = Sweep::Reconcile.key();
    Ok(Tx::new(storage).get_json::<Job>(&key)?.unwrap_or(Job {
        sweep: Sweep::Recount {
            counted: 0,
            count_at_start: 0,
        },
        after: None,
    }))
}

/// `sync.run`'s part: one step of every job of shard `shard` of `shards`.
/// Returns how many steps were taken and whether a job goes on.
pub fn run(storage: &dyn Storage, shard: u32, shards: u32) -> (u32, bool) {
    let (mut steps, mut more) = (0, false);
    let mut after: Option<String> = None;
    loop {
        let page = match storage.list(JOBS, after.as_deref(), None, JOBS_LISTED) {
            Ok(page) => page,
            Err(e) => {
                eprintln!("sync jobs: cannot list the jobs: {e}");
                return (steps, more);
            }
        };
        for rel in &page.keys {
            let key = format!("{JOBS}{rel}");
            let job = match Tx::new(storage).get_json::<Job>(&key) {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                Err(e) => {
                    eprintln!("sync jobs: job {rel} skipped: {e}");
                    continue;
                }
            };
            if job.sweep.shard(shards) != shard {
                continue;
            }
            match step(storage, &key) {
                Ok(goes_on) => {
                    steps += 1;
                    more |= goes_on;
                }
                // Not counted, and not due at once: a step that keeps failing
                // (storage unavailable) must not make the host's loop spin;
                // the job is taken again by a later run of its shard.
                Err(e) => eprintln!("sync jobs: a step of job {rel} failed: {e}"),
            }
        }
        match page.next {
            Some(next) if after.as_deref() != Some(next.as_str()) => after = Some(next),
            _ => return (steps, more),
        }
    }
}
