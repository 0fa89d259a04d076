//! The engine's view of tenant storage (the WIT `storage` import) and [`Tx`], an
//! optimistic transaction on top of it: reads remember the version they saw,
//! writes are buffered, and `commit` sends them as one atomic batch whose
//! conditions are the versions read. A conflicting commit writes nothing and
//! the request is run again (see `router`). A transaction also collects the
//! [`Change`]s its request made (see [`crate::effects`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::effects::Change;
use crate::error::ApiError;

pub struct Entry {
    pub value: Vec<u8>,
    pub version: u64,
}

pub struct Page {
    pub keys: Vec<String>,
    pub next: Option<String>,
}

pub struct Condition {
    pub key: String,
    pub version: Option<u64>,
}

pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    Conflict,
    Invalid(String),
    Unavailable(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Conflict => f.write_str("storage conflict"),
            StorageError::Invalid(m) => write!(f, "invalid storage request: {m}"),
            StorageError::Unavailable(m) => write!(f, "storage unavailable: {m}"),
        }
    }
}

/// Tenant-scoped storage, as the host's `storage` import provides it.
pub trait Storage {
    fn get(&self, key: &str) -> Result<Option<Entry>, StorageError>;
    fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError>;
    fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError>;
}

/// A stored JSON record, decoded.
fn decode<T: DeserializeOwned>(key: &str, bytes: Option<Vec<u8>>) -> Result<Option<T>, ApiError> {
    match bytes {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ApiError::Internal(format!("corrupt record at {key}: {e}"))),
    }
}

/// Page size used when a caller wants every key under a prefix.
const LIST_PAGE: u32 = 1000;

/// An optimistic transaction over [`Storage`].
pub struct Tx<'s> {
    store: &'s dyn Storage,
    /// Version seen for every key read (`None`: absent).
    /// With what it returned: a key read again in the same transaction costs
    /// no second host call and sees the same value.
    reads: BTreeMap<String, Read>,
    /// Keys read by [`Tx::glance`]: not conditions of the commit, unless read
    /// again with [`Tx::get`] (which then expects the version glanced).
    glances: BTreeMap<String, Read>,
    /// Buffered writes (`None`: delete), visible to later reads of this transaction.
    writes: BTreeMap<String, Option<Vec<u8>>>,
    /// The changes made, in order, each once.
    changes: Vec<Change>,
}

impl<'s> Tx<'s> {
    pub fn new(store: &'s dyn Storage) -> Self {
        Tx {
            store,
            reads: BTreeMap::new(),
            glances: BTreeMap::new(),
            writes: BTreeMap::new(),
            changes: Vec::new(),
        }
    }

    /// Records a change this transaction makes (once: recording it again
    /// changes nothing).
    pub fn record(&mut self, change: Change) {
        if !self.changes.contains(&change) {
            self.changes.push(change);
        }
    }

    /// The changes recorded so far, in order.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The storage this transaction runs on, for work committed in separate batches.
    pub fn storage(&self) -> &'s dyn Storage {
        self.store
    }

    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        if let Some(read) = self.reads.get(key) {
            return Ok(read.value.clone());
        }
        if let Some(read) = self.glances.remove(key) {
            let value = read.value.clone();
            self.reads.insert(key.to_string(), read);
            return Ok(value);
        }
        let entry = self.store.get(key)?;
        let (version, value) = match entry {
            Some(e) => (Some(e.version), Some(e.value)),
            None => (None, None),
        };
        self.reads.insert(
            key.to_string(),
            Read {
                version,
                value: value.clone(),
            },
        );
        Ok(value)
    }

    pub fn get_json<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, ApiError> {
        let bytes = self.get(key)?;
        decode(key, bytes)
    }

    /// The record at `key` as this transaction sees it, without recording the
    /// read when the transaction has not touched `key`: for answers that show
    /// every record of a large set, whose reads must neither pile up in the
    /// transaction nor become conditions of its commit.
    pub fn peek_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ApiError> {
        let bytes = match (self.writes.get(key), self.reads.get(key)) {
            (Some(w), _) => w.clone(),
            (None, Some(read)) => read.value.clone(),
            (None, None) => self.store.get(key)?.map(|e| e.value),
        };
        decode(key, bytes)
    }

    /// The record at `key` as this transaction sees it, without making the
    /// read a condition of its commit, remembered so that glancing at it (or
    /// reading it with [`Tx::get`]) again costs no host call: for a few small
    /// records read often whose exact value the commit need not depend on.
    pub fn glance_json<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, ApiError> {
        let bytes = match (
            self.writes.get(key),
            self.reads.get(key),
            self.glances.get(key),
        ) {
            (Some(w), _, _) => w.clone(),
            (None, Some(read), _) | (None, None, Some(read)) => read.value.clone(),
            (None, None, None) => {
                let entry = self.store.get(key)?;
                let read = Read {
                    version: entry.as_ref().map(|e| e.version),
                    value: entry.map(|e| e.value),
                };
                let value = read.value.clone();
                self.glances.insert(key.to_string(), read);
                value
            }
        };
        decode(key, bytes)
    }

    /// What this transaction read at `key` from storage, as it was before
    /// any write of its own: `None` when it did not read `key`, `Some(None)`
    /// when `key` was absent.
    pub fn read_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Option<T>>, ApiError> {
        let Some(read) = self.reads.get(key) else {
            return Ok(None);
        };
        match &read.value {
            None => Ok(Some(None)),
            Some(bytes) => serde_json::from_slice(bytes)
                .map(|v| Some(Some(v)))
                .map_err(|e| ApiError::Internal(format!("corrupt record at {key}: {e}"))),
        }
    }

    pub fn put(&mut self, key: impl Into<String>, value: Vec<u8>) {
        self.writes.insert(key.into(), Some(value));
    }

    pub fn put_json<T: Serialize>(
        &mut self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| ApiError::Internal(format!("cannot encode record: {e}")))?;
        self.put(key, bytes);
        Ok(())
    }

    pub fn delete(&mut self, key: impl Into<String>) {
        self.writes.insert(key.into(), None);
    }

    /// Every key under `prefix` (relative to it), folded at `delimiter` when given.
    /// Lists see committed state only, not this transaction's own writes.
    pub fn list(&mut self, prefix: &str, delimiter: Option<char>) -> Result<Vec<String>, ApiError> {
        let mut keys = Vec::new();
        each_key(self.store, prefix, delimiter, |rel| {
            keys.push(rel.to_string());
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(keys)
    }

    /// The names of the records directly under `prefix` (folders left out), sorted.
    pub fn names(&mut self, prefix: &str) -> Result<Vec<String>, ApiError> {
        let mut names = self.list(prefix, Some('/'))?;
        names.retain(|n| !n.ends_with('/'));
        names.sort();
        Ok(names)
    }

    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Commits the buffered writes on condition that nothing read has changed.
    pub fn commit(self) -> Result<(), ApiError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let conditions = self
            .reads
            .into_iter()
            .map(|(key, read)| condition(key, read.version))
            .collect();
        let ops = self.writes.into_iter().map(op).collect();
        self.store.commit(conditions, ops)?;
        Ok(())
    }

    /// [`Tx::commit`] that keeps the transaction: after a conflict the caller
    /// may find out what changed ([`Tx::changed_reads`]), [`Tx::forget`] it,
    /// read it again and commit once more. After a success the buffered
    /// writes are gone (a second call commits nothing).
    pub fn try_commit(&mut self) -> Result<(), ApiError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let conditions = self
            .reads
            .iter()
            .map(|(key, read)| condition(key.clone(), read.version))
            .collect();
        let ops = self.writes.clone().into_iter().map(op).collect();
        self.store.commit(conditions, ops)?;
        self.writes.clear();
        self.reads.clear();
        self.glances.clear();
        Ok(())
    }

    /// The keys read by this transaction whose stored version changed since.
    pub fn changed_reads(&self) -> Result<Vec<String>, ApiError> {
        let mut changed = Vec::new();
        for (key, Read { version, .. }) in &self.reads {
            if self.store.get(key)?.map(|e| e.version) != *version {
                changed.push(key.clone());
            }
        }
        Ok(changed)
    }

    /// Drops what this transaction read and wrote at `key`, so that it can be
    /// read (and written) again.
    pub fn forget(&mut self, key: &str) {
        self.reads.remove(key);
        self.glances.remove(key);
        self.writes.remove(key);
    }
}

/// Runs `f` on every key under `prefix` (relative to it), in transactions of
/// `batch` keys, each committed before the next page is listed, so memory
/// stays flat however many keys there are. Returns the changes the batches
/// recorded. An interruption leaves the batches done committed: running it
/// again finishes the rest.
pub fn in_batches(
    store: &dyn Storage,
    prefix: &str,
    batch: u32,
    mut f: impl FnMut(&mut Tx, &str) -> Result<(), ApiError>,
) -> Result<Vec<Change>, ApiError> {
    let mut changes = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(prefix, after.as_deref(), None, batch.max(1))?;
        let mut tx = Tx::new(store);
        for rel in &page.keys {
            f(&mut tx, rel)?;
        }
        changes.extend_from_slice(tx.changes());
        tx.commit()?;
        match page.next {
            Some(next) if after.as_deref() != Some(next.as_str()) => after = Some(next),
            _ => return Ok(changes),
        }
    }
}

/// Runs `f` on every key under `prefix` (relative to it, folded at
/// `delimiter` when given), in order, listing a page of [`LIST_PAGE`] keys at
/// a time: memory stays flat however many keys there are. `f` returns
/// [`ControlFlow::Break`] to stop early.
pub fn each_key(
    store: &dyn Storage,
    prefix: &str,
    delimiter: Option<char>,
    mut f: impl FnMut(&str) -> Result<ControlFlow<()>, ApiError>,
) -> Result<(), ApiError> {
    let mut after: Option<String> = None;
    loop {
        let page = store.list(prefix, after.as_deref(), delimiter, LIST_PAGE)?;
        for rel in &page.keys {
            if f(rel)?.is_break() {
                return Ok(());
            }
        }
        match page.next {
            Some(next) if after.as_deref() != Some(next.as_str()) => after = Some(next),
            _ => return Ok(()),
        }
    }
}

/// One read of a transaction: the version seen (`None`: absent) and the value.
struct Read {
    version: Option<u64>,
    value: Option<Vec<u8>>,
}

fn condition(key: String, version: Option<u64>) -> Condition {
    Condition { key, version }
}

fn op((key, value): (String, Option<Vec<u8>>)) -> Op {
    match value {
        Some(value) => Op::Put { key, value },
        None => Op::Delete { key },
    }
}

/// In-memory [`Storage`] with the host's semantics, for native tests and natively
/// linked baselines.
#[derive(Default)]
pub struct MemStorage {
    inner: RefCell<MemInner>,
}

#[derive(Default)]
struct MemInner {
    data: BTreeMap<String, (u64, Vec<u8>)>,
    version: u64,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys stored (tests use it to check that deletes clean up).
    pub fn len(&self) -> usize {
        self.inner.borrow().data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn keys(&self) -> Vec<String> {
        self.inner.borrow().data.keys().cloned().collect()
    }
}

impl Storage for MemStorage {
    fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        Ok(self
            .inner
            .borrow()
            .data
            .get(key)
            .map(|(version, value)| Entry {
                value: value.clone(),
                version: *version,
            }))
    }

    fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        let limit = if limit == 0 { 1000 } else { limit as usize };
        let inner = self.inner.borrow();
        let mut keys: Vec<String> = Vec::new();
        for key in inner.data.keys() {
            let Some(rel) = key.strip_prefix(prefix) else {
                continue;
            };
            let rel = match delimiter.and_then(|d| rel.find(d).map(|i| (i, d))) {
                Some((i, d)) => &rel[..i + d.len_utf8()],
                None => rel,
            };
            if after.is_some_and(|a| rel <= a) || keys.last().is_some_and(|k| k == rel) {
                continue;
            }
            if keys.len() == limit {
                let next = keys.last().cloned();
                return Ok(Page { keys, next });
            }
            keys.push(rel.to_string());
        }
        Ok(Page { keys, next: None })
    }

    fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        let mut inner = self.inner.borrow_mut();
        for c in &conditions {
            if inner.data.get(&c.key).map(|(v, _)| *v) != c.version {
                return Err(StorageError::Conflict);
            }
        }
        inner.version += 1;
        let version = inner.version;
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    inner.data.insert(key, (version, value));
                }
                Op::Delete { key } => {
                    inner.data.remove(&key);
                }
            }
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_reads_own_writes_and_commits() {
        let s = MemStorage::new();
        let mut tx = Tx::new(&s);
        assert_eq!(tx.get("a").unwrap(), None);
        tx.put("a", b"1".to_vec());
        assert_eq!(tx.get("a").unwrap(), Some(b"1".to_vec()));
        tx.commit().unwrap();
        assert_eq!(s.get("a").unwrap().unwrap().value, b"1");
    }

    #[test]
    fn tx_conflicts_when_a_read_key_changed() {
        let s = MemStorage::new();
        let mut tx = Tx::new(&s);
        tx.get("a").unwrap();
        tx.put("b", b"x".to_vec());
        let mut other = Tx::new(&s);
        other.put("a", b"y".to_vec());
        other.commit().unwrap();
        assert!(matches!(tx.commit(), Err(ApiError::Conflict)));
        assert!(s.get("b").unwrap().is_none());
    }

    #[test]
    fn try_commit_rebases_after_a_conflict_on_one_key() {
        let s = MemStorage::new();
        let mut setup = Tx::new(&s);
        setup.put("n", b"1".to_vec());
        setup.put("a", b"x".to_vec());
        setup.commit().unwrap();

        let mut tx = Tx::new(&s);
        tx.get("a").unwrap();
        tx.get("n").unwrap();
        tx.put("n", b"0".to_vec());
        tx.put("b", b"y".to_vec());
        let due = Change::SyncDue {
            destination: "in-mem/d".into(),
        };
        assert!(tx.changes().is_empty());
        tx.record(due.clone());
        tx.record(due.clone());
        // Another writer changes `n` only.
        let mut other = Tx::new(&s);
        other.put("n", b"5".to_vec());
        other.commit().unwrap();
        assert!(matches!(tx.try_commit(), Err(ApiError::Conflict)));
        assert_eq!(tx.changed_reads().unwrap(), vec!["n".to_string()]);
        tx.forget("n");
        assert_eq!(tx.get("n").unwrap(), Some(b"5".to_vec()));
        tx.put("n", b"4".to_vec());
        tx.try_commit().unwrap();
        assert_eq!(s.get("n").unwrap().unwrap().value, b"4");
        assert_eq!(s.get("b").unwrap().unwrap().value, b"y");
        // The changes outlive the commits.
        assert_eq!(tx.changes(), [due]);
        // Nothing left to commit.
        tx.try_commit().unwrap();
        assert!(!tx.has_writes());
    }

    #[test]
    fn a_glance_is_no_condition_until_read() {
        let s = MemStorage::new();
        let mut setup = Tx::new(&s);
        setup.put("n", b"1".to_vec());
        setup.put("m", b"1".to_vec());
        setup.commit().unwrap();

        let mut tx = Tx::new(&s);
        assert_eq!(tx.glance_json::<i64>("n").unwrap(), Some(1));
        assert_eq!(tx.glance_json::<i64>("m").unwrap(), Some(1));
        // Read with `get`: a condition, at the version glanced.
        assert_eq!(tx.get("m").unwrap(), Some(b"1".to_vec()));
        tx.put("x", b"y".to_vec());
        let mut other = Tx::new(&s);
        other.put("n", b"5".to_vec());
        other.commit().unwrap();
        // Glanced at again: what it saw first, without a host call.
        assert_eq!(tx.glance_json::<i64>("n").unwrap(), Some(1));
        tx.try_commit().unwrap();

        let mut tx = Tx::new(&s);
        assert_eq!(tx.glance_json::<i64>("m").unwrap(), Some(1));
        assert_eq!(tx.get("m").unwrap(), Some(b"1".to_vec()));
        tx.put("x", b"z".to_vec());
        let mut other = Tx::new(&s);
        other.put("m", b"2".to_vec());
        other.commit().unwrap();
        assert!(matches!(tx.commit(), Err(ApiError::Conflict)));
    }

    #[test]
    fn list_folds_and_pages() {
        let s = MemStorage::new();
        let mut tx = Tx::new(&s);
        for k in ["p/a", "p/b/c", "p/b/d", "p/e", "q/z"] {
            tx.put(k, vec![]);
        }
        tx.commit().unwrap();
        let page = s.list("p/", None, Some('/'), 2).unwrap();
        assert_eq!(page.keys, vec!["a", "b/"]);
        let page = s.list("p/", page.next.as_deref(), Some('/'), 2).unwrap();
        assert_eq!(page.keys, vec!["e"]);
        assert_eq!(page.next, None);
        let mut tx = Tx::new(&s);
        assert_eq!(tx.list("p/", None).unwrap(), vec!["a", "b/c", "b/d", "e"]);
    }
}
