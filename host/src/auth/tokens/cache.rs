//! The resolved callers of recent requests, by token hash, so that the
//! token lookup every request makes is a map read, not a storage read.
//!
//! Only tokens without a use limit are kept (each use of a limited token is
//! a storage write). An entry carries the token's expiry, checked on every
//! hit. Everything that changes a token in this process removes its entry
//! (revocation, renewal); a change committed by another host sharing the
//! storage (PostgreSQL) removes it through the storage's change feed, applied
//! before every lookup ([`Follower`]); while that feed is lost nothing is
//! served from the cache. A lookup that read the storage before a
//! removal must not put back what it read: removals bump a generation, and
//! an entry is only stored under the generation its read started in. The
//! map is bounded: when full, it is emptied.

use std::collections::HashMap;
use std::sync::RwLock;

use super::record::TOKENS;
use crate::storage::{Changes, Follower};

/// Most callers kept.
pub const CAPACITY: usize = 8192;

/// What a request's caller is, less its token (which the request carries).
#[derive(Debug, Clone)]
pub struct Cached {
    pub accessor: String,
    pub display_name: String,
    pub policies: Vec<String>,
    pub path: String,
    pub creation_time: u64,
    /// The id of the token's namespace.
    pub namespace_id: String,
    /// Nanoseconds since the epoch; `None`: never expires.
    pub expire_time: Option<u64>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Cached>,
    generation: u64,
}

#[derive(Default)]
pub struct CallerCache {
    inner: RwLock<Inner>,
    follower: Follower,
}

impl CallerCache {
    /// A cache that forgets the tokens `changes` reports changed (the storage's feed).
    pub fn following(changes: Option<Changes>) -> Self {
        CallerCache {
            inner: RwLock::default(),
            follower: Follower::new(changes),
        }
    }

    /// The entry of `hash`, if any, after applying the changes the storage reported.
    pub fn get(&self, hash: &str) -> Option<Cached> {
        let serve = self.follower.catch_up(
            |keys| self.remove(keys.iter().filter_map(|k| k.strip_prefix(TOKENS))),
            || self.clear(),
        );
        if !serve {
            return None;
        }
        match self.inner.read() {
            Ok(inner) => inner.map.get(hash).cloned(),
            Err(poisoned) => poisoned.into_inner().map.get(hash).cloned(),
        }
    }

    /// The generation to pass to [`CallerCache::put`] for a read that
    /// starts now.
    pub fn generation(&self) -> u64 {
        match self.inner.read() {
            Ok(inner) => inner.generation,
            Err(poisoned) => poisoned.into_inner().generation,
        }
    }

    /// Stores what a read that started in `generation` found, unless an
    /// entry was removed since.
    pub fn put(&self, hash: String, entry: Cached, generation: u64) {
        let mut inner = match self.inner.write() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        if inner.generation != generation || self.follower.is_lost() {
            return;
        }
        if inner.map.len() >= CAPACITY {
            inner.map.clear();
        }
        inner.map.insert(hash, entry);
    }

    /// Forgets these tokens.
    pub fn remove<'a>(&self, hashes: impl IntoIterator<Item = &'a str>) {
        let mut inner = match self.inner.write() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        inner.generation = inner.generation.wrapping_add(1);
        for hash in hashes {
            inner.map.remove(hash);
        }
    }

    /// Forgets every token.
    fn clear(&self) {
        let mut inner = match self.inner.write() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        inner.generation = inner.generation.wrapping_add(1);
        inner.map.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.map.len()).unwrap_or(0)
    }
}
