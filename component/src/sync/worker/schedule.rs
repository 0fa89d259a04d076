//! Which entries a run takes, and when an entry is due: the shard of a
//! destination ([`shard_of`]), the scan of a shard's due index ([`scan`]), the
//! retry time with backoff and jitter ([`next_due`]), the wait of a secret that
//! keeps changing ([`coalesce`]), and the claim an entry gets in a commit of its
//! own before any provider call ([`claim`]; the rules are in the worker's module
//! docs).

use crate::api::random_bytes;
use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::storage::{Storage, Tx};
use crate::sync::associations::Association;
use crate::sync::keys;
use crate::sync::outbox::{self, EntryId, OutboxEntry};
use crate::sync::status::SyncStatus;
use crate::time::{self, Nanos};

use super::{ENTRY_RUNS, Settings, Step};

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

/// What [`scan`] found: entries with the time each is indexed at, and when
/// the next one falls due.
type Found = (Vec<(EntryId, Nanos)>, Option<Nanos>);

/// Up to `limit` entries of shard `shard` due by `now`, earliest first, with
/// the time each is indexed at, and when the shard's next entry after those
/// falls due — from the due index: the shard's destinations, then the first
/// keys of each (no entry is read, no other shard's work is looked at).
pub(super) fn scan(
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

/// The longest provider retry-after honoured (a day).
const MAX_RETRY_AFTER_MS: u64 = 86_400_000;

const NANOS_PER_MS: i64 = 1_000_000;

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

pub(super) fn ms_to_nanos(ms: u64) -> Nanos {
    i64::try_from(ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(NANOS_PER_MS)
}

/// Nanoseconds to milliseconds, rounded up (a host never wakes too early).
pub(super) fn nanos_to_ms(n: Nanos) -> u64 {
    u64::try_from(n.max(0)).unwrap_or(0).div_ceil(1_000_000)
}

pub(super) fn jitter() -> u64 {
    u64::from_le_bytes(random_bytes::<8>())
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
pub(super) fn coalesce(record: &mut Association, now: Nanos, settings: &Settings) -> Option<Nanos> {
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

/// The error rows show when an attempt never finished (see the module docs).
pub const UNFINISHED: &str = "the previous sync attempt did not finish: the sync run exceeded its \
                              resource limits or was interrupted; retrying";

/// What claiming an entry came to.
pub(super) enum Claim {
    /// Not to run: gone, not due, or not decodable.
    Skip(Step),
    /// Claimed at this time; `unfinished` when an earlier attempt died.
    Claimed { at: Nanos, unfinished: bool },
}

/// Claims the entry `id` in a commit of its own (module docs).
pub(super) fn claim(
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
