//! The durable sync outbox: what still has to be done at destinations.
//!
//! One entry per association (destination × secret) at [`keys::outbox`]:
//! `sync/outbox/<type>/<name>/<accessor>/<escaped secret>` → [`OutboxEntry`]
//! (`{op, due_at, attempts, enqueued_at}`). Entries carry no data: the worker
//! reads the current KV state when it runs, so a newer change simply replaces
//! an older pending entry (coalescing) and the final value always lands.
//!
//! Entries are written in the same transaction as the change that causes them
//! (a KV write, a purge, a mount disable), so an acknowledged change always
//! carries its pending sync; an entry that is due now records
//! [`Change::SyncDue`] for its destination in that transaction, which the
//! host learns as the request's effects. The entries are counted, in the
//! same transactions, to enforce `queue_capacity`: new sync work beyond it is
//! not queued, its rows show `INTERNAL_VAULT_ERROR` ("sync queue full") and
//! reconciliation queues it once there is room. Unsyncs of a purge or of a
//! disabled mount are cleanup that nothing else would redo: they are always
//! queued (and counted).
//!
//! The count is split into [`keys::OUTBOX_COUNT_SHARDS`] signed parts
//! ([`keys::outbox_count`]); an entry's adds and removes go to the part its
//! key hashes to, so a change of one entry reads (as a condition of its
//! commit) and writes one part only, and the changes and finished syncs of
//! other entries, on this host or another, rarely touch the same part. One
//! counter key would be rewritten by every queued change and every finished
//! sync, and the request that read it would conflict again and again. The
//! total is the sum of the parts, glanced at where an exact value is not needed
//! (the capacity check: a soft limit, as Vault's own queue capacity is);
//! only reconciliation's recount reads every part. A part may go below zero
//! (a recount or an older version's single count, [`keys::OUTBOX_COUNT_UNSPLIT`],
//! folded into another part): only the sum means anything.

use serde::{Deserialize, Serialize};

use crate::effects::Change;
use crate::error::{ApiError, ApiResult};
use crate::storage::{Storage, Tx, in_batches};
use crate::sync::associations::Association;
use crate::sync::config::SyncConfig;
use crate::sync::destinations::Destination;
use crate::sync::jobs::{self, Sweep};
use crate::sync::keys;
use crate::sync::status::SyncStatus;
use crate::sync::worker;
use crate::time::{self, Nanos};

/// The `error` of rows whose sync could not be queued.
pub const QUEUE_FULL: &str = "sync queue full";

/// What the worker does with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxOp {
    /// Converge the destination to the secret's current state (push it, or
    /// delete its objects when it is unreadable; the association stays).
    Sync,
    /// Delete the external objects, then drop the association (a `remove`
    /// that failed, or the secret's mount was disabled).
    UnsyncDrop,
    /// [`OutboxOp::UnsyncDrop`] as part of a destination purge: the last one
    /// deletes the destination.
    Purge,
}

impl OutboxOp {
    /// A pending entry is only replaced by an operation of the same or a
    /// higher rank, unless the change is an explicit request (`reset`).
    fn rank(self) -> u8 {
        match self {
            OutboxOp::Sync => 0,
            OutboxOp::UnsyncDrop => 1,
            OutboxOp::Purge => 2,
        }
    }

    fn counts_against_capacity(self) -> bool {
        self == OutboxOp::Sync
    }
}

/// One outbox entry. Never holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub op: OutboxOp,
    /// When the worker may run it (nanoseconds since the epoch).
    pub due_at: Nanos,
    /// Failed attempts so far (the backoff exponent).
    pub attempts: u32,
    /// When the oldest change it stands for was queued.
    pub enqueued_at: Nanos,
    /// Set while a run works on it (claimed before any provider call, with
    /// `due_at` moved to its retry time): a run that finds it still set once
    /// the entry is due again knows the attempt never finished (see the
    /// worker's module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Nanos>,
}

/// The identity of an entry: that of its association.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryId {
    pub kind: String,
    pub name: String,
    pub accessor: String,
    pub secret_name: String,
}

impl EntryId {
    pub fn of(record: &Association) -> Self {
        EntryId {
            kind: record.kind.clone(),
            name: record.destination.clone(),
            accessor: record.accessor.clone(),
            secret_name: record.secret_name.clone(),
        }
    }

    /// From a key relative to [`keys::OUTBOX`] or [`keys::ASSOCIATIONS`].
    pub fn parse(rel: &str) -> Option<Self> {
        keys::split_association(rel).map(|(kind, name, accessor, secret_name)| EntryId {
            kind,
            name,
            accessor,
            secret_name,
        })
    }

    pub fn key(&self) -> String {
        keys::outbox(&self.kind, &self.name, &self.accessor, &self.secret_name)
    }

    /// Records in `tx` that work of this entry's destination is due now.
    fn record_due(&self, tx: &mut Tx) {
        tx.record(Change::SyncDue {
            destination: format!("{}/{}", self.kind, self.name),
        });
    }

    /// The due-index key of this entry when due at `due_at`.
    pub fn due_key(&self, due_at: Nanos) -> String {
        keys::due(
            &self.kind,
            &self.name,
            &self.accessor,
            &self.secret_name,
            due_at,
        )
    }

    pub fn load_association(&self, tx: &mut Tx) -> ApiResult<Option<Association>> {
        Association::load(
            tx,
            &self.kind,
            &self.name,
            &self.accessor,
            &self.secret_name,
        )
    }
}

/// A request to queue work for one association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueue {
    pub op: OutboxOp,
    pub due_at: Nanos,
    /// An explicit request (`set`, `remove`, a purge, a mount disable): it
    /// replaces whatever is pending, schedule included. Otherwise (a KV
    /// change) a pending operation of a higher rank stays, and an entry in
    /// backoff keeps its schedule.
    pub reset: bool,
}

impl Enqueue {
    /// Work due now, from a change.
    pub fn now(op: OutboxOp, now: Nanos, reset: bool) -> Self {
        Enqueue {
            op,
            due_at: now,
            reset,
        }
    }
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// A new entry.
    New,
    /// A pending entry was replaced (coalesced); no new work counted.
    Replaced,
    /// A pending entry of a higher rank stays as it is.
    Kept,
    /// The outbox is at `queue_capacity`: nothing was queued.
    Full,
}

impl Queued {
    pub fn is_queued(self) -> bool {
        matches!(self, Queued::New | Queued::Replaced)
    }
}

pub fn load(tx: &mut Tx, id: &EntryId) -> ApiResult<Option<OutboxEntry>> {
    tx.get_json(&id.key())
}

/// Writes `entry` for `id` (`old`: the entry as stored, if any), moving its
/// due-index key when its due time changed. Every entry write goes here.
pub fn store(
    tx: &mut Tx,
    id: &EntryId,
    old: Option<&OutboxEntry>,
    entry: &OutboxEntry,
) -> ApiResult<()> {
    let old_due = old.map(|o| o.due_at);
    if old_due != Some(entry.due_at) {
        if let Some(at) = old_due {
            tx.delete(id.due_key(at));
        }
        tx.put(id.due_key(entry.due_at), Vec::new());
    }
    tx.put_json(id.key(), entry)
}

/// Deletes the entry of `id` (`old`: as stored) and its due-index key; the
/// caller adjusts the count. Every entry delete goes here.
pub fn remove(tx: &mut Tx, id: &EntryId, old: Option<&OutboxEntry>) {
    if let Some(o) = old {
        tx.delete(id.due_key(o.due_at));
    }
    tx.delete(id.key());
}

/// The part of the entry count that the entry `id` changes (its adds and
/// removes always land in the same part).
fn count_key(id: &EntryId) -> String {
    keys::outbox_count(worker::shard_of_bytes(
        id.key().into_bytes(),
        keys::OUTBOX_COUNT_SHARDS,
    ))
}

/// Every key the count may be kept in: its parts, and the single key of an
/// older version.
fn count_keys() -> impl Iterator<Item = String> {
    (0..keys::OUTBOX_COUNT_SHARDS)
        .map(keys::outbox_count)
        .chain(std::iter::once(keys::OUTBOX_COUNT_UNSPLIT.to_string()))
}

/// Whether `key` holds (part of) the entry count.
pub fn is_count_key(key: &str) -> bool {
    key == keys::OUTBOX_COUNT_UNSPLIT || key.starts_with(keys::OUTBOX_COUNT)
}

/// One part of the count as `tx` sees it; `exact`: read, so the commit
/// depends on it, else glanced at.
fn part(tx: &mut Tx, key: &str, exact: bool) -> ApiResult<i64> {
    let n = if exact {
        tx.get_json::<i64>(key)?
    } else {
        tx.glance_json::<i64>(key)?
    };
    Ok(n.unwrap_or(0))
}

fn put_part(tx: &mut Tx, key: String, n: i64) -> ApiResult<()> {
    if n == 0 {
        tx.delete(key);
        Ok(())
    } else {
        tx.put_json(key, &n)
    }
}

/// The sum of the count's parts.
fn sum(tx: &mut Tx, exact: bool) -> ApiResult<i64> {
    let mut sum: i64 = 0;
    for key in count_keys() {
        sum = sum.saturating_add(part(tx, &key, exact)?);
    }
    Ok(sum)
}

/// The number of entries in the outbox: the sum of the count's parts, glanced
/// at (they do not become conditions of `tx`'s commit, and are read once per
/// transaction), so a concurrent change of another part may be missed.
/// `tx`'s own changes are included.
pub fn count(tx: &mut Tx) -> ApiResult<u64> {
    Ok(u64::try_from(sum(tx, false)?).unwrap_or(0))
}

/// Adds `delta` to the entry count, in the part of the entry `id`. A single
/// count left by an older version moves into that part on the way.
pub fn adjust_count(tx: &mut Tx, id: &EntryId, delta: i64) -> ApiResult<()> {
    if delta == 0 {
        return Ok(());
    }
    let key = count_key(id);
    let mut n = part(tx, &key, true)?.saturating_add(delta);
    if tx.glance_json::<i64>(keys::OUTBOX_COUNT_UNSPLIT)?.is_some() {
        n = n.saturating_add(part(tx, keys::OUTBOX_COUNT_UNSPLIT, true)?);
        tx.delete(keys::OUTBOX_COUNT_UNSPLIT);
    }
    put_part(tx, key, n)
}

/// Drops what `tx` read and wrote of the count's part of `id` (and of an
/// older version's single count), so that [`adjust_count`] can apply its
/// delta again to the count as it is now.
pub fn forget_count(tx: &mut Tx, id: &EntryId) {
    tx.forget(&count_key(id));
    tx.forget(keys::OUTBOX_COUNT_UNSPLIT);
}

/// Rewrites the entry count (reconciliation recounts the outbox): every part
/// is read, so the commit fails when any of them changed meanwhile; the
/// total goes into the first part and the others are dropped.
pub fn reset_count(tx: &mut Tx, n: u64) -> ApiResult<()> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    if sum(tx, true)? == n {
        return Ok(());
    }
    let mut keys = count_keys();
    if let Some(first) = keys.next() {
        put_part(tx, first, n)?;
    }
    for key in keys {
        if tx.get(&key)?.is_some() {
            tx.delete(key);
        }
    }
    Ok(())
}

/// The entry count with every part read (a commit of `tx` fails when any of
/// them changed meanwhile): for a recount.
pub fn count_exact(tx: &mut Tx) -> ApiResult<u64> {
    Ok(u64::try_from(sum(tx, true)?).unwrap_or(0))
}

/// Queues (or coalesces) work for the association `id`, counting new entries.
pub fn enqueue(tx: &mut Tx, id: &EntryId, req: Enqueue) -> ApiResult<Queued> {
    let key = id.key();
    let existing: Option<OutboxEntry> = tx.get_json(&key)?;
    let entry = match &existing {
        Some(e) if !req.reset && e.op.rank() > req.op.rank() => return Ok(Queued::Kept),
        Some(e) if !req.reset && e.op == req.op => {
            // In backoff, or waiting for coalescing: a newer change waits
            // for the scheduled run. One in flight: the change runs next,
            // not at the retry time its claim booked.
            let due_at = if e.started_at.is_some() {
                req.due_at
            } else {
                e.due_at.max(req.due_at)
            };
            OutboxEntry {
                op: req.op,
                due_at,
                attempts: e.attempts,
                enqueued_at: e.enqueued_at,
                started_at: None,
            }
        }
        Some(e) => OutboxEntry {
            op: req.op,
            due_at: req.due_at,
            attempts: 0,
            enqueued_at: e.enqueued_at,
            started_at: None,
        },
        None => {
            if req.op.counts_against_capacity() {
                // A soft limit: the count's other parts are glanced at, so
                // transactions queuing at the same time may each see room,
                // and the outbox may pass `queue_capacity` by what they add.
                let capacity = u64::try_from(SyncConfig::load(tx)?.queue_capacity).unwrap_or(0);
                if count(tx)? >= capacity {
                    return Ok(Queued::Full);
                }
            }
            adjust_count(tx, id, 1)?;
            store(
                tx,
                id,
                None,
                &OutboxEntry {
                    op: req.op,
                    due_at: req.due_at,
                    attempts: 0,
                    enqueued_at: time::now(),
                    started_at: None,
                },
            )?;
            id.record_due(tx);
            return Ok(Queued::New);
        }
    };
    // The worker is woken only for work it can do now.
    if entry.due_at <= req.due_at {
        id.record_due(tx);
    }
    // A change that finds the same work already waiting (a secret written
    // again while its entry waits for coalescing) writes nothing.
    if existing.as_ref() != Some(&entry) {
        store(tx, id, existing.as_ref(), &entry)?;
    }
    Ok(Queued::Replaced)
}

/// Removes the entry of `id`, if any, and counts it out.
pub fn dequeue(tx: &mut Tx, id: &EntryId) -> ApiResult<bool> {
    let old = match load(tx, id) {
        Ok(None) => return Ok(false),
        Ok(Some(entry)) => Some(entry),
        // Undecodable: its index key, if any, is left to the worker's repair.
        Err(ApiError::Internal(_)) => None,
        Err(e) => return Err(e),
    };
    remove(tx, id, old.as_ref());
    adjust_count(tx, id, -1)?;
    Ok(true)
}

/// Queues `op` for `record` and shows it on its rows: `PENDING` when queued,
/// `INTERNAL_VAULT_ERROR` ("sync queue full") when the outbox is full. The
/// record is saved in `tx` unless nothing changed.
pub fn queue(
    tx: &mut Tx,
    record: &mut Association,
    op: OutboxOp,
    now: Nanos,
    reset: bool,
) -> ApiResult<Queued> {
    let queued = enqueue(tx, &EntryId::of(record), Enqueue::now(op, now, reset))?;
    match queued {
        Queued::New | Queued::Replaced => {
            // A burst of changes leaves the record alone once it shows PENDING,
            // so a worker pushing meanwhile can still commit what it wrote.
            let already_pending = !record.rows.is_empty()
                && record
                    .rows
                    .values()
                    .all(|r| r.sync_status == SyncStatus::Pending);
            if !already_pending {
                record.mark_rows(SyncStatus::Pending, None, now);
                record.save(tx)?;
            }
        }
        Queued::Full => {
            record.mark_rows(SyncStatus::InternalVaultError, Some(QUEUE_FULL), now);
            record.save(tx)?;
        }
        Queued::Kept => {}
    }
    Ok(queued)
}

/// The warning of a request whose sync work did not fit in the outbox.
pub fn full_warning(not_queued: usize) -> Option<String> {
    (not_queued > 0).then(|| {
        format!(
            "{QUEUE_FULL}: {not_queued} association(s) of this secret were not queued; \
             reconciliation will queue them when there is room"
        )
    })
}

/// A KV change of the secret `secret_name` of the mount `accessor` (write,
/// patch, delete, undelete, destroy, metadata delete): queues a sync of every
/// association of the secret, in the caller's transaction. Returns the
/// warning to show when some could not be queued.
pub fn secret_changed(tx: &mut Tx, accessor: &str, secret_name: &str) -> ApiResult<Option<String>> {
    let destinations = tx.list(&keys::destinations_of(accessor, secret_name), None)?;
    if destinations.is_empty() {
        return Ok(None);
    }
    let now = time::now();
    let mut full = 0;
    for rel in destinations {
        let Some((kind, name)) = rel.split_once('/') else {
            continue;
        };
        let id = EntryId {
            kind: kind.to_string(),
            name: name.to_string(),
            accessor: accessor.to_string(),
            secret_name: secret_name.to_string(),
        };
        if already_waiting(tx, &id, now)? {
            continue;
        }
        let Some(mut record) = Association::load(tx, kind, name, accessor, secret_name)? else {
            continue;
        };
        if queue(tx, &mut record, OutboxOp::Sync, now, false)? == Queued::Full {
            full += 1;
        }
    }
    Ok(full_warning(full))
}

/// Whether a change of the secret finds its sync already queued and held
/// back for coalescing (rows already `PENDING`), or a pending unsync that
/// outranks it: then the change adds nothing, and the write path need not
/// read the association.
fn already_waiting(tx: &mut Tx, id: &EntryId, now: Nanos) -> ApiResult<bool> {
    Ok(match load(tx, id)? {
        Some(e) if e.op.rank() > OutboxOp::Sync.rank() => true,
        // A claimed entry is in flight (or its run died): not waiting.
        Some(e) => {
            e.op == OutboxOp::Sync && e.attempts == 0 && e.due_at >= now && e.started_at.is_none()
        }
        None => false,
    })
}

/// How many associations one batch of [`mount_disabled`] queues.
const MOUNT_BATCH: u32 = 250;

/// The mount with `accessor` is being disabled: queues an unsync-and-drop of
/// every association of its secrets. The first slice is queued in batches
/// committed on their own (before `tx`, which removes the mount from the
/// table, so an interrupted disable that is run again queues whatever is
/// missing); when more remain, `tx` also records a job the worker goes on
/// with (see [`jobs`]). The destinations whose work became due are recorded
/// in `tx`.
pub fn mount_disabled(tx: &mut Tx, accessor: &str) -> ApiResult<()> {
    let store = tx.storage();
    let sweep = Sweep::MountDisabled {
        accessor: accessor.to_string(),
    };
    let mut after: Option<String> = None;
    for _ in 0..jobs::SLICE.div_ceil(MOUNT_BATCH) {
        let mut batch = Tx::new(store);
        let next = jobs::queue_page(
            &mut batch,
            &sweep,
            after.as_deref(),
            MOUNT_BATCH,
            OutboxOp::UnsyncDrop,
        )?;
        for change in batch.changes() {
            tx.record(change.clone());
        }
        batch.commit()?;
        after = next;
        if after.is_none() {
            break;
        }
    }
    jobs::save(tx, sweep, after)
}

/// Starts the purge of `dest` (whose `purge_initiated_at` is set): queues an
/// unsync of every association, replacing whatever was pending: the first
/// slice in `tx`, the rest by a job the worker goes on with (see [`jobs`]).
pub fn purge_destination(tx: &mut Tx, dest: &Destination) -> ApiResult<()> {
    let sweep = Sweep::Purge {
        kind: dest.kind.clone(),
        name: dest.name.clone(),
    };
    let after = jobs::queue_page(tx, &sweep, None, jobs::SLICE, OutboxOp::Purge)?;
    jobs::save(tx, sweep, after)
}

/// Entries dropped per commit by [`drop_destination`].
const DROP_BATCH: u32 = 500;

/// Drops every entry of a destination (`force_delete`), each counted out, in
/// batches committed on their own.
pub fn drop_destination(store: &dyn Storage, kind: &str, name: &str) -> ApiResult<()> {
    in_batches(
        store,
        &keys::outbox_of(kind, name),
        DROP_BATCH,
        |tx, rel| {
            if let Some(id) = EntryId::parse(&format!("{kind}/{name}/{rel}")) {
                dequeue(tx, &id)?;
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// Gives every entry of `ids` that has none its due-index key (an index key
/// lost to a bug or written by an older version), so the worker finds it;
/// returns how many it restored. Index keys left over by entries that are
/// gone are dropped by the worker when it meets them.
pub fn repair_index(storage: &dyn Storage, ids: &[EntryId]) -> ApiResult<usize> {
    let mut restored = 0;
    for chunk in ids.chunks(REPAIR_BATCH) {
        let mut tx = Tx::new(storage);
        for id in chunk {
            let Ok(Some(entry)) = load(&mut tx, id) else {
                continue;
            };
            let key = id.due_key(entry.due_at);
            if tx.get(&key)?.is_none() {
                tx.put(key, Vec::new());
                restored += 1;
            }
        }
        match tx.commit() {
            // Changed meanwhile: whoever changed it wrote the index too.
            Ok(()) | Err(ApiError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(restored)
}

/// Entries checked per commit by [`repair_index`].
const REPAIR_BATCH: usize = 256;

/// Every entry id in the outbox (committed state).
pub fn all_ids(tx: &mut Tx) -> ApiResult<Vec<EntryId>> {
    Ok(tx
        .list(keys::OUTBOX, None)?
        .iter()
        .filter_map(|rel| EntryId::parse(rel))
        .collect())
}
