//! Storage for kvsync: the contract the engine component sees (`kvsync:engine/storage`) and its
//! host-side implementations.
//!
//! Layering, outermost first:
//!
//! * [`TenantStorage`] — the view handed to one guest: every key it names lives under
//!   `tenants/<tenant>/`, so it can neither read nor write another tenant's records, nor the host's
//!   own records (kept under `core/`). Its commits also keep the host's index of tenants with
//!   sync work ([`sync_index`]) in step with the guest's sync outbox.
//! * [`Barrier`] — encryption at rest: values are sealed with AES-256-GCM, bound to their key.
//! * [`RedbBackend`] — the embedded, crash-safe, transactional database (file or in-memory), or
//!   [`PostgresBackend`] — a PostgreSQL database several hosts share.
//!
//! Every backend passes one conformance suite (`tests/tests/storage_conformance.rs`).
//!
//! **Watching changes.** [`Backend::watch`] reports the keys every commit wrote, this process's
//! commits before `commit` returns and (PostgreSQL) other hosts' commits as their notifications
//! arrive. A host-side cache (token lookups, compiled policies) subscribes and drops what a
//! [`Change`] names; see [`Change`] for what each report means.
//!
//! Secrets never leak through this module: no error message, log line or `Debug` output contains
//! value bytes or key material.

use std::fmt;
use std::sync::Arc;

mod barrier;
mod memory;
pub mod postgres;
mod redb;
pub mod sync_index;
mod tenant;
mod watch;

pub use self::barrier::{
    Barrier, EncryptionKey, KEY_CHECK_KEY, KEY_LEN, KEYRING_KEY, KeyStatus, Keyring, ROTATE_AFTER,
    SharedKeyring,
};
pub use self::postgres::PostgresBackend;
pub use self::redb::{OpenError, RedbBackend};
pub use self::tenant::{CLOSING, TenantStorage, closing_key, tenant_prefix};
pub use self::watch::{Change, Changes, Follower};

/// Default page size of [`Backend::list`] when the caller passes `limit == 0`.
pub const DEFAULT_LIST_LIMIT: u32 = 1000;
/// Largest page size [`Backend::list`] returns, whatever the caller asks for.
pub const MAX_LIST_LIMIT: u32 = 10_000;

/// A stored value and the commit version that last wrote it.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub version: u64,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .field("version", &self.version)
            .finish()
    }
}

/// One page of a [`Backend::list`] result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Keys relative to the listed prefix, in byte order (folded groups end with the delimiter).
    pub keys: Vec<String>,
    /// `Some(last key of this page)` when more keys follow: pass it as `after` to continue.
    pub next: Option<String>,
}

/// A precondition of [`Backend::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub key: String,
    /// `Some(v)`: the key must exist with version `v`; `None`: the key must not exist.
    pub version: Option<u64>,
}

/// A write of [`Backend::commit`].
#[derive(Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

impl Op {
    /// The key this operation writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put { key, value } => f
                .debug_struct("Put")
                .field("key", key)
                .field("value", &format_args!("<{} bytes>", value.len()))
                .finish(),
            Op::Delete { key } => f.debug_struct("Delete").field("key", key).finish(),
        }
    }
}

/// Errors of the storage contract. Messages never contain value bytes.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A condition of [`Backend::commit`] did not hold; nothing was written.
    #[error("conflict")]
    Conflict,
    /// The request itself is invalid (bad key, bad argument).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The storage cannot serve the request (I/O failure, corruption, wrong encryption key, ...).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// The storage contract (mirrors the WIT interface `kvsync:engine/storage`).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The current value and version of `key`, or `None` if it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError>;

    /// Keys under `prefix` (returned RELATIVE to the prefix), strictly after relative key `after`,
    /// in byte order, at most `limit` (limit 0 => [`DEFAULT_LIST_LIMIT`]; capped at
    /// [`MAX_LIST_LIMIT`]).
    ///
    /// With `delimiter = Some(d)`: a key whose relative part contains `d` is folded to the part up
    /// to and including the first `d` and reported once (S3-style common prefixes): keys
    /// `a, b/c, b/d, e` => `"a", "b/", "e"`. A folded group is skipped by seeking past it, not by
    /// scanning its members. If `after` itself contains `d`, the whole group it belongs to is
    /// skipped (every reported key is strictly greater than `after`).
    ///
    /// `next` is `Some(last returned relative key)` when more keys follow, else `None`.
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError>;

    /// Atomically: check every condition (current version of key == version; `None` = must be
    /// absent); if any fails return `Err(Conflict)` and write nothing; else apply `ops` in order (a
    /// put gives the key the new commit version, a delete of an absent key is fine), durably
    /// (fsync) before returning `Ok(commit_version)`.
    ///
    /// Commit versions are a global, strictly increasing counter persisted with the data (the
    /// first commit gets 1). Every successful commit takes a new version, even one with no ops.
    async fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError>;

    /// A feed of the changes committed from now on (see [`Change`]), or `None` when this
    /// backend reports none (a view that is not the whole store). Full storage keys.
    fn watch(&self) -> Option<Changes> {
        None
    }

    /// Whether other processes may commit to this store (PostgreSQL); `false` when this
    /// process has it to itself (redb holds its file locked), so records another process left
    /// — a lease of a process that died — describe no live process.
    fn is_shared(&self) -> bool {
        false
    }
}

/// A backend shared between the host and every tenant view.
pub type SharedBackend = Arc<dyn Backend>;

#[async_trait::async_trait]
impl<T: Backend + ?Sized> Backend for Arc<T> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        (**self).get(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        (**self).list(prefix, after, delimiter, limit).await
    }

    async fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        (**self).commit(conditions, ops).await
    }

    fn watch(&self) -> Option<Changes> {
        (**self).watch()
    }

    fn is_shared(&self) -> bool {
        (**self).is_shared()
    }
}

/// A backend that wraps another and changes only some of its calls (fences commits, injects a
/// failure, stalls reads): it names the backend it wraps in [`Delegate::inner`] and writes only
/// the methods it changes; every other call goes to the inner backend unchanged, `watch` and
/// `is_shared` included. It is a [`Backend`] through the blanket implementation below: a
/// wrapper implements `Delegate`, not `Backend`, and callers use it as any other backend.
#[async_trait::async_trait]
pub trait Delegate: Send + Sync + 'static {
    /// The backend every call this wrapper does not change goes to.
    fn inner(&self) -> &dyn Backend;

    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.inner().get(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        self.inner().list(prefix, after, delimiter, limit).await
    }

    async fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        self.inner().commit(conditions, ops).await
    }

    fn watch(&self) -> Option<Changes> {
        self.inner().watch()
    }

    fn is_shared(&self) -> bool {
        self.inner().is_shared()
    }
}

#[async_trait::async_trait]
impl<D: Delegate> Backend for D {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        Delegate::get(self, key).await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        Delegate::list(self, prefix, after, delimiter, limit).await
    }

    async fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        Delegate::commit(self, conditions, ops).await
    }

    fn watch(&self) -> Option<Changes> {
        Delegate::watch(self)
    }

    fn is_shared(&self) -> bool {
        Delegate::is_shared(self)
    }
}

/// The effective page size for a requested `limit` (0 => default, capped at the maximum).
pub(crate) fn effective_limit(limit: u32) -> usize {
    let limit = match limit {
        0 => DEFAULT_LIST_LIMIT,
        n => n.min(MAX_LIST_LIMIT),
    };
    // u32 always fits in usize on the platforms we build for (32/64-bit).
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// The smallest string that is greater than every string starting with `s`, or `None` if there is
/// no such string (`s` is empty or made only of `char::MAX`).
///
/// Strings are ordered by their UTF-8 bytes, which is the same as ordering by code points, so the
/// successor replaces the last character that can be incremented by its next code point and drops
/// everything after it.
pub(crate) fn prefix_successor(s: &str) -> Option<String> {
    let mut chars: Vec<char> = s.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = next_char(last) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn next_char(c: char) -> Option<char> {
    let mut code = u32::from(c).checked_add(1)?;
    if (0xD800..=0xDFFF).contains(&code) {
        code = 0xE000;
    }
    char::from_u32(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_values() {
        let entry = Entry {
            value: b"top-secret".to_vec(),
            version: 7,
        };
        let shown = format!("{entry:?}");
        assert!(!shown.contains("top-secret"), "{shown}");
        assert!(shown.contains("10 bytes"), "{shown}");
        let op = Op::Put {
            key: "k".into(),
            value: b"top-secret".to_vec(),
        };
        let shown = format!("{op:?}");
        assert!(!shown.contains("top-secret"), "{shown}");
        assert!(!shown.contains("116"), "{shown}"); // no byte values either
    }

    #[test]
    fn limits() {
        assert_eq!(effective_limit(0), 1000);
        assert_eq!(effective_limit(5), 5);
        assert_eq!(effective_limit(u32::MAX), 10_000);
    }

    #[test]
    fn successor() {
        assert_eq!(prefix_successor("b/").as_deref(), Some("b0"));
        assert_eq!(prefix_successor("").as_deref(), None);
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10FFFF}").as_deref(), None);
        assert_eq!(prefix_successor("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        // Greater than every extension, not greater than the next sibling.
        let succ = prefix_successor("tenants/a/").unwrap_or_default();
        assert!(succ.as_str() > "tenants/a/\u{10FFFF}\u{10FFFF}");
        assert!(succ.as_str() <= "tenants/a0");
    }
}
