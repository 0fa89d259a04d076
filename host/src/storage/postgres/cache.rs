//! The read cache of PostgreSQL storage, correct across hosts.
//!
//! It holds what `get` read — the **sealed** value and its version, or the key's absence — so
//! no plaintext outlives a request (opening a sealed value costs about a microsecond; the
//! round trip the cache saves costs a hundred times more).
//!
//! Correctness rests on two counters and one fact. The fact: commit versions are taken from one
//! counter row that each commit holds locked until it is durable, so version order is commit
//! order, and PostgreSQL delivers notifications in commit order. The counters:
//!
//! * `applied`: every commit up to this version has been notified and its keys dropped from the
//!   cache (the listener's progress);
//! * `seen`: the newest commit this host knows happened — every read returns the counter of its
//!   snapshot, every commit its version.
//!
//! The cache answers only while `applied >= seen` (nothing this host's clients could have seen
//! is missing from it) and while the listener is connected; otherwise `get` reads PostgreSQL.
//! A value read at snapshot `s` is kept only if `applied <= s`: a notification after `s` has not
//! been applied yet, so it will still drop the key if it changed. This host's own commits drop
//! their keys before `commit` returns.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::super::Entry;

/// Most entries kept; past it the cache starts over (simple, and rare: a bound, not a policy).
const MAX_ENTRIES: usize = 50_000;
/// Most value bytes kept.
const MAX_BYTES: usize = 64 << 20;

#[derive(Default)]
struct State {
    entries: HashMap<String, Option<Entry>>,
    bytes: usize,
    applied: u64,
    seen: u64,
    live: bool,
}

impl State {
    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn remove(&mut self, key: &str) {
        if let Some(Some(entry)) = self.entries.remove(key) {
            self.bytes = self.bytes.saturating_sub(entry.value.len());
        }
    }
}

/// See the module documentation.
#[derive(Default)]
pub(super) struct Cache {
    state: Mutex<State>,
}

impl Cache {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every early exit: a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the listener hears commits.
    pub(super) fn is_live(&self) -> bool {
        self.state().live
    }

    /// The cached entry of `key` (`Some(None)`: known absent), when the cache may answer.
    pub(super) fn get(&self, key: &str) -> Option<Option<Entry>> {
        let state = self.state();
        if !state.live || state.applied < state.seen {
            return None;
        }
        state.entries.get(key).cloned()
    }

    /// `entry` was read at snapshot `snapshot`: note the snapshot, keep the entry if safe.
    pub(super) fn fill(&self, key: &str, snapshot: u64, entry: &Option<Entry>) {
        let mut state = self.state();
        state.seen = state.seen.max(snapshot);
        if !state.live || state.applied > snapshot {
            return;
        }
        let size = entry.as_ref().map_or(0, |e| e.value.len());
        if state.entries.len() >= MAX_ENTRIES || state.bytes.saturating_add(size) > MAX_BYTES {
            state.clear();
        }
        state.remove(key);
        state.bytes = state.bytes.saturating_add(size);
        state.entries.insert(key.to_owned(), entry.clone());
    }

    /// A read (a listing) ran at snapshot `snapshot`.
    pub(super) fn observe(&self, snapshot: u64) {
        let mut state = self.state();
        state.seen = state.seen.max(snapshot);
    }

    /// This host committed `version`, writing `keys`.
    pub(super) fn committed<'a>(&self, version: u64, keys: impl IntoIterator<Item = &'a str>) {
        let mut state = self.state();
        state.seen = state.seen.max(version);
        for key in keys {
            state.remove(key);
        }
    }

    /// The notification of commit `version` arrived: `keys` changed (`None`: any key may have).
    pub(super) fn notified(&self, version: u64, keys: Option<&[String]>) {
        let mut state = self.state();
        match keys {
            Some(keys) => keys.iter().for_each(|key| state.remove(key)),
            None => state.clear(),
        }
        state.applied = state.applied.max(version);
    }

    /// The listener (re)connected: it hears every commit after `version`.
    pub(super) fn resumed(&self, version: u64) {
        let mut state = self.state();
        state.clear();
        state.applied = state.applied.max(version);
        state.seen = state.seen.max(version);
        state.live = true;
    }

    /// The listener lost its connection: other hosts' commits go unheard until it resumes.
    pub(super) fn lost(&self) {
        let mut state = self.state();
        state.clear();
        state.live = false;
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.state().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: u64) -> Option<Entry> {
        Some(Entry {
            value: vec![1, 2, 3],
            version: v,
        })
    }

    #[test]
    fn serves_only_while_caught_up_and_live() {
        let cache = Cache::default();
        cache.fill("a", 5, &entry(3));
        assert_eq!(cache.get("a"), None, "not live: nothing kept");
        cache.resumed(5);
        cache.fill("a", 5, &entry(3));
        cache.fill("gone", 5, &None);
        assert_eq!(cache.get("a"), Some(entry(3)));
        assert_eq!(cache.get("gone"), Some(None));
        assert_eq!(cache.get("other"), None);

        // A read saw commit 7 before its notification arrived: no answers until it does.
        cache.observe(7);
        assert_eq!(cache.get("a"), None);
        cache.notified(6, Some(&["x".to_owned()]));
        assert_eq!(cache.get("a"), None);
        cache.notified(7, Some(&["a".to_owned()]));
        assert_eq!(cache.get("a"), None, "dropped by commit 7");
        assert_eq!(cache.get("gone"), Some(None));

        // This host's commit drops its keys at once, and waits for its own notification.
        cache.committed(8, ["gone"]);
        assert_eq!(cache.get("gone"), None);
        cache.notified(8, Some(&[]));
        assert_eq!(cache.len(), 0);

        cache.fill("b", 8, &entry(8));
        assert_eq!(cache.get("b"), Some(entry(8)));
        cache.lost();
        assert_eq!(cache.get("b"), None);
        cache.fill("b", 8, &entry(8));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_read_older_than_applied_notifications_is_not_kept() {
        let cache = Cache::default();
        cache.resumed(10);
        // Commit 11 changed "k" and was applied while a read at snapshot 10 was in flight.
        cache.notified(11, Some(&["k".to_owned()]));
        cache.fill("k", 10, &entry(9));
        assert_eq!(cache.get("k"), None);
        // A read at the newest snapshot is kept.
        cache.fill("k", 11, &entry(11));
        assert_eq!(cache.get("k"), Some(entry(11)));
        // A commit too large to list drops everything.
        cache.notified(12, None);
        assert_eq!(cache.len(), 0);
    }
}
