//! [`RedbBackend`]: the embedded, crash-safe, transactional database behind [`Backend`].
//!
//! Layout: table `kv` maps `&str` keys to `&[u8]` records, each the 8-byte big-endian version of
//! the commit that wrote it followed by the payload; table `meta` holds the global commit counter
//! under `commit_version`. Commits use redb's default immediate durability (fsync before
//! `commit()` returns) and run on tokio's blocking pool so a fsync never stalls the runtime.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::redb::backends::InMemoryBackend;
use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use zeroize::Zeroize;

use super::watch::Feed;
use super::{
    Backend, Changes, Condition, Entry, Op, Page, StorageError, effective_limit, prefix_successor,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const COMMIT_VERSION: &str = "commit_version";
const VERSION_LEN: usize = 8;

/// Why [`RedbBackend::open_exclusive`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file is locked by another open database (another kvsync process).
    #[error("database {} is already open", .0.display())]
    InUse(PathBuf),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The redb-backed storage. Cheap to share: wrap it in an `Arc` (see [`super::SharedBackend`]).
pub struct RedbBackend {
    db: Arc<Database>,
    in_memory: bool,
    /// Every commit's keys, for [`Backend::watch`] (this process is the only writer).
    feed: Feed,
}

impl fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbBackend")
            .field("in_memory", &self.in_memory)
            .finish_non_exhaustive()
    }
}

impl RedbBackend {
    /// Opens the database file at `path`, creating it (and its parent directory) if missing.
    ///
    /// Blocking: call it at startup, or from `spawn_blocking`.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        Self::open_exclusive(path).map_err(|e| match e {
            OpenError::InUse(path) => StorageError::Unavailable(format!(
                "database {} is already open (is another kvsync process using it?)",
                path.display()
            )),
            OpenError::Storage(e) => e,
        })
    }

    /// Like [`RedbBackend::open`], but tells apart a file that another process (or
    /// this one) holds open: redb locks the file for exclusive use.
    pub fn open_exclusive(path: &Path) -> Result<Self, OpenError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StorageError::Unavailable(format!(
                    "cannot create directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let db = Database::create(path).map_err(|e| match e {
            ::redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse(path.to_path_buf()),
            other => OpenError::Storage(StorageError::Unavailable(format!(
                "cannot open database {}: {other}",
                path.display()
            ))),
        })?;
        Ok(Self::init(db, false)?)
    }

    /// A fresh, empty database held in memory (for `server --dev` and tests); lost on drop.
    pub fn in_memory() -> Result<Self, StorageError> {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(|e| unavailable("cannot create in-memory database", e))?;
        Self::init(db, true)
    }

    /// Whether this database lives in memory only.
    pub fn is_in_memory(&self) -> bool {
        self.in_memory
    }

    /// Creates the tables if missing, so that readers never meet a missing table.
    fn init(db: Database, in_memory: bool) -> Result<Self, StorageError> {
        let txn = db.begin_write().map_err(|e| unavailable("begin", e))?;
        {
            txn.open_table(KV)
                .map_err(|e| unavailable("open table", e))?;
            txn.open_table(META)
                .map_err(|e| unavailable("open table", e))?;
        }
        txn.commit().map_err(|e| unavailable("commit", e))?;
        Ok(Self {
            db: Arc::new(db),
            in_memory,
            feed: Feed::default(),
        })
    }
}

/// Maps a redb error to [`StorageError::Unavailable`]. redb errors describe I/O and structure,
/// never stored bytes, so their text is safe to keep.
fn unavailable(context: &str, err: impl Into<::redb::Error>) -> StorageError {
    match err.into() {
        ::redb::Error::ValueTooLarge(len) => {
            StorageError::Invalid(format!("value too large ({len} bytes)"))
        }
        other => StorageError::Unavailable(format!("{context}: {other}")),
    }
}

/// Splits a stored record into (version, payload).
fn decode(record: &[u8]) -> Result<(u64, &[u8]), StorageError> {
    match record.split_first_chunk::<VERSION_LEN>() {
        Some((version, payload)) => Ok((u64::from_be_bytes(*version), payload)),
        None => Err(StorageError::Unavailable(
            "stored record is corrupted (too short)".into(),
        )),
    }
}

fn encode(version: u64, payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(VERSION_LEN + payload.len());
    record.extend_from_slice(&version.to_be_bytes());
    record.extend_from_slice(payload);
    record
}

#[async_trait::async_trait]
impl Backend for RedbBackend {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| unavailable("begin read", e))?;
        let table = txn
            .open_table(KV)
            .map_err(|e| unavailable("open table", e))?;
        let Some(guard) = table.get(key).map_err(|e| unavailable("read", e))? else {
            return Ok(None);
        };
        let (version, payload) = decode(guard.value())?;
        Ok(Some(Entry {
            value: payload.to_vec(),
            version,
        }))
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        let limit = effective_limit(limit);
        let txn = self
            .db
            .begin_read()
            .map_err(|e| unavailable("begin read", e))?;
        let table = txn
            .open_table(KV)
            .map_err(|e| unavailable("open table", e))?;

        // Where the scan (re)starts. `None` = nothing left to scan.
        let mut start: Option<Bound<String>> = match after {
            None => Some(Bound::Included(prefix.to_owned())),
            Some(after) => match delimiter.and_then(|d| group_of(after, d)) {
                // `after` lies inside a folded group (or is one): skip the whole group.
                Some(group) => prefix_successor(&format!("{prefix}{group}")).map(Bound::Included),
                None => Some(Bound::Excluded(format!("{prefix}{after}"))),
            },
        };

        let mut keys: Vec<String> = Vec::new();
        let mut more = false;
        'scan: while let Some(bound) = start.take() {
            let lower = match &bound {
                Bound::Included(s) => Bound::Included(s.as_str()),
                Bound::Excluded(s) => Bound::Excluded(s.as_str()),
                Bound::Unbounded => Bound::Unbounded,
            };
            let range = table
                .range::<&str>((lower, Bound::Unbounded))
                .map_err(|e| unavailable("read", e))?;
            for item in range {
                let (key, _) = item.map_err(|e| unavailable("read", e))?;
                let key = key.value();
                let Some(rel) = key.strip_prefix(prefix) else {
                    // Past the end of the prefix: keys are sorted, nothing else can match.
                    break 'scan;
                };
                if keys.len() == limit {
                    more = true;
                    break 'scan;
                }
                if let Some(group) = delimiter.and_then(|d| group_of(rel, d)) {
                    keys.push(group.to_owned());
                    // Seek to the first key after the group instead of walking its members.
                    start = prefix_successor(key.get(..prefix.len() + group.len()).unwrap_or(key))
                        .map(Bound::Included);
                    continue 'scan;
                }
                keys.push(rel.to_owned());
            }
        }

        let next = if more { keys.last().cloned() } else { None };
        Ok(Page { keys, next })
    }

    /// Runs on tokio's blocking pool. If the returned future is dropped before it completes, the
    /// commit still runs to completion (or conflict) in the background.
    async fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        let db = Arc::clone(&self.db);
        let keys: Vec<String> = if self.feed.is_watched() {
            ops.iter().map(|op| op.key().to_owned()).collect()
        } else {
            Vec::new()
        };
        let version = tokio::task::spawn_blocking(move || commit_blocking(&db, &conditions, ops))
            .await
            .map_err(|_| StorageError::Unavailable("commit task failed".into()))??;
        self.feed.committed(version, keys);
        Ok(version)
    }

    fn watch(&self) -> Option<Changes> {
        Some(self.feed.subscribe())
    }
}

/// The part of `rel` up to and including the first `delimiter`, if it contains one.
fn group_of(rel: &str, delimiter: char) -> Option<&str> {
    rel.find(delimiter)
        .and_then(|i| rel.get(..i + delimiter.len_utf8()))
}

fn commit_blocking(
    db: &Database,
    conditions: &[Condition],
    ops: Vec<Op>,
) -> Result<u64, StorageError> {
    let txn = db
        .begin_write()
        .map_err(|e| unavailable("begin write", e))?;
    let version = {
        let mut kv = txn
            .open_table(KV)
            .map_err(|e| unavailable("open table", e))?;
        let mut meta = txn
            .open_table(META)
            .map_err(|e| unavailable("open table", e))?;

        for condition in conditions {
            let current = match kv.get(condition.key.as_str()) {
                Ok(Some(guard)) => Some(decode(guard.value())?.0),
                Ok(None) => None,
                Err(e) => return Err(unavailable("read", e)),
            };
            if current != condition.version {
                // Dropping `txn` unwritten aborts it: nothing is written.
                return Err(StorageError::Conflict);
            }
        }

        let last = meta
            .get(COMMIT_VERSION)
            .map_err(|e| unavailable("read", e))?
            .map(|guard| guard.value())
            .unwrap_or(0);
        let version = last
            .checked_add(1)
            .ok_or_else(|| StorageError::Unavailable("commit version exhausted".into()))?;

        for op in ops {
            match op {
                Op::Put { key, mut value } => {
                    let mut record = encode(version, &value);
                    value.zeroize();
                    let result = kv.insert(key.as_str(), record.as_slice()).map(|_| ());
                    record.zeroize();
                    result.map_err(|e| unavailable("write", e))?;
                }
                Op::Delete { key } => {
                    kv.remove(key.as_str())
                        .map_err(|e| unavailable("write", e))?;
                }
            }
        }
        meta.insert(COMMIT_VERSION, version)
            .map_err(|e| unavailable("write", e))?;
        version
    };
    // Default durability is `Immediate`: the data is fsynced before this returns.
    txn.commit().map_err(|e| unavailable("commit", e))?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &[u8]) -> Op {
        Op::Put {
            key: key.into(),
            value: value.to_vec(),
        }
    }

    fn del(key: &str) -> Op {
        Op::Delete { key: key.into() }
    }

    fn cond(key: &str, version: Option<u64>) -> Condition {
        Condition {
            key: key.into(),
            version,
        }
    }

    async fn put_all(db: &impl Backend, keys: &[&str]) {
        let ops = keys.iter().map(|k| put(k, b"v")).collect();
        db.commit(vec![], ops).await.unwrap();
    }

    async fn list_all(
        db: &impl Backend,
        prefix: &str,
        delimiter: Option<char>,
        limit: u32,
    ) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = db
                .list(prefix, after.as_deref(), delimiter, limit)
                .await
                .unwrap();
            assert!(page.keys.len() <= limit as usize);
            pages.push(page.keys.clone());
            match page.next {
                Some(next) => {
                    assert_eq!(Some(&next), page.keys.last());
                    after = Some(next);
                }
                None => break,
            }
        }
        pages
    }

    #[tokio::test]
    async fn get_put_delete() {
        let db = RedbBackend::in_memory().unwrap();
        assert_eq!(db.get("a").await.unwrap(), None);

        let v1 = db.commit(vec![], vec![put("a", b"one")]).await.unwrap();
        assert_eq!(v1, 1);
        assert_eq!(
            db.get("a").await.unwrap(),
            Some(Entry {
                value: b"one".to_vec(),
                version: 1
            })
        );

        let v2 = db.commit(vec![], vec![put("a", b"two")]).await.unwrap();
        assert_eq!(db.get("a").await.unwrap().unwrap().value, b"two");
        assert_eq!(db.get("a").await.unwrap().unwrap().version, v2);

        db.commit(vec![], vec![del("a")]).await.unwrap();
        assert_eq!(db.get("a").await.unwrap(), None);
        // Deleting an absent key is fine.
        db.commit(vec![], vec![del("a")]).await.unwrap();

        // Empty values are values.
        db.commit(vec![], vec![put("e", b"")]).await.unwrap();
        assert_eq!(db.get("e").await.unwrap().unwrap().value, b"");
    }

    #[tokio::test]
    async fn ops_apply_in_order() {
        let db = RedbBackend::in_memory().unwrap();
        let v = db
            .commit(
                vec![],
                vec![put("a", b"1"), del("a"), put("b", b"1"), put("b", b"2")],
            )
            .await
            .unwrap();
        assert_eq!(db.get("a").await.unwrap(), None);
        assert_eq!(
            db.get("b").await.unwrap(),
            Some(Entry {
                value: b"2".to_vec(),
                version: v
            })
        );
    }

    #[tokio::test]
    async fn cas_conflicts_write_nothing() {
        let db = RedbBackend::in_memory().unwrap();
        let v1 = db
            .commit(vec![cond("a", None)], vec![put("a", b"one")])
            .await
            .unwrap();

        // must-not-exist when present
        let err = db
            .commit(vec![cond("a", None)], vec![put("a", b"x"), put("b", b"x")])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Conflict), "{err:?}");

        // wrong version
        let err = db
            .commit(
                vec![cond("a", Some(v1 + 100))],
                vec![put("a", b"x"), put("b", b"x")],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Conflict), "{err:?}");

        // a version on an absent key
        let err = db
            .commit(vec![cond("zz", Some(v1))], vec![put("b", b"x")])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Conflict), "{err:?}");

        // one failing condition among passing ones
        let err = db
            .commit(
                vec![cond("a", Some(v1)), cond("b", Some(1))],
                vec![put("b", b"x")],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Conflict), "{err:?}");

        // Nothing was written, and no version was consumed.
        assert_eq!(db.get("b").await.unwrap(), None);
        assert_eq!(db.get("a").await.unwrap().unwrap().value, b"one");
        assert_eq!(db.get("a").await.unwrap().unwrap().version, v1);

        // correct version succeeds
        let v2 = db
            .commit(
                vec![cond("a", Some(v1)), cond("b", None)],
                vec![put("a", b"two")],
            )
            .await
            .unwrap();
        assert_eq!(v2, v1 + 1);
        assert_eq!(db.get("a").await.unwrap().unwrap().version, v2);
    }

    #[tokio::test]
    async fn commit_versions_strictly_increase() {
        let db = RedbBackend::in_memory().unwrap();
        let mut last = 0;
        for i in 0..20u32 {
            let ops = if i % 3 == 0 {
                vec![]
            } else {
                vec![put(&format!("k{i}"), b"v")]
            };
            let v = db.commit(vec![], ops).await.unwrap();
            assert!(v > last, "{v} <= {last}");
            last = v;
        }
        assert_eq!(last, 20);
    }

    #[tokio::test]
    async fn concurrent_commits_get_distinct_versions() {
        let db = Arc::new(RedbBackend::in_memory().unwrap());
        let mut tasks = Vec::new();
        for i in 0..16 {
            let db = Arc::clone(&db);
            tasks.push(tokio::spawn(async move {
                db.commit(vec![], vec![put(&format!("k{i}"), b"v")])
                    .await
                    .unwrap()
            }));
        }
        let mut versions = Vec::new();
        for task in tasks {
            versions.push(task.await.unwrap());
        }
        versions.sort_unstable();
        assert_eq!(versions, (1..=16).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn list_paging() {
        let db = RedbBackend::in_memory().unwrap();
        put_all(
            &db,
            &["p/a", "p/b", "p/c", "p/d", "p/e", "o/x", "q/x", "p", "pp/x"],
        )
        .await;

        let page = db.list("p/", None, None, 0).await.unwrap();
        assert_eq!(page.keys, ["a", "b", "c", "d", "e"]);
        assert_eq!(page.next, None);

        let page = db.list("p/", None, None, 2).await.unwrap();
        assert_eq!(page.keys, ["a", "b"]);
        assert_eq!(page.next.as_deref(), Some("b"));
        let page = db.list("p/", Some("b"), None, 2).await.unwrap();
        assert_eq!(page.keys, ["c", "d"]);
        assert_eq!(page.next.as_deref(), Some("d"));
        let page = db.list("p/", Some("d"), None, 2).await.unwrap();
        assert_eq!(page.keys, ["e"]);
        assert_eq!(page.next, None);

        // exactly `limit` keys left: no `next`
        let page = db.list("p/", Some("c"), None, 2).await.unwrap();
        assert_eq!(page.keys, ["d", "e"]);
        assert_eq!(page.next, None);

        // `after` need not be an existing key
        let page = db.list("p/", Some("bb"), None, 10).await.unwrap();
        assert_eq!(page.keys, ["c", "d", "e"]);
        let page = db.list("p/", Some("e"), None, 10).await.unwrap();
        assert!(page.keys.is_empty());
        assert_eq!(page.next, None);

        // empty prefix lists everything, in byte order
        let page = db.list("", None, None, 100).await.unwrap();
        assert_eq!(
            page.keys,
            ["o/x", "p", "p/a", "p/b", "p/c", "p/d", "p/e", "pp/x", "q/x"]
        );

        // nothing under an unknown prefix
        let page = db.list("nope/", None, None, 10).await.unwrap();
        assert_eq!(page, Page::default());

        assert_eq!(
            list_all(&db, "p/", None, 1).await.concat(),
            ["a", "b", "c", "d", "e"]
        );
    }

    #[tokio::test]
    async fn list_limit_is_capped() {
        let db = RedbBackend::in_memory().unwrap();
        let keys: Vec<String> = (0..10_005).map(|i| format!("k/{i:05}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        put_all(&db, &refs).await;
        let page = db.list("k/", None, None, 0).await.unwrap();
        assert_eq!(page.keys.len(), 1000);
        let page = db.list("k/", None, None, u32::MAX).await.unwrap();
        assert_eq!(page.keys.len(), 10_000);
        assert_eq!(page.next.as_deref(), Some("09999"));
    }

    #[tokio::test]
    async fn list_delimiter_folding() {
        let db = RedbBackend::in_memory().unwrap();
        put_all(&db, &["a", "b/c", "b/d", "e"]).await;
        let page = db.list("", None, Some('/'), 0).await.unwrap();
        assert_eq!(page.keys, ["a", "b/", "e"]);
        assert_eq!(page.next, None);

        let db = RedbBackend::in_memory().unwrap();
        put_all(
            &db,
            &[
                "x/a",
                "x/b/1",
                "x/b/2",
                "x/b/3/deep",
                "x/b0",
                "x/c",
                "x/d/1",
                "x/d/2",
                "x/e/",
                "x/f",
                "y/z",
            ],
        )
        .await;

        let all = ["a", "b/", "b0", "c", "d/", "e/", "f"];
        let page = db.list("x/", None, Some('/'), 0).await.unwrap();
        assert_eq!(page.keys, all);
        assert_eq!(page.next, None);

        // paging across folded groups, every page size
        for limit in 1..=8 {
            let pages = list_all(&db, "x/", Some('/'), limit).await;
            assert_eq!(pages.concat(), all, "limit {limit}");
        }

        // a page ending on a folded group continues after the group
        let page = db.list("x/", None, Some('/'), 2).await.unwrap();
        assert_eq!(page.keys, ["a", "b/"]);
        assert_eq!(page.next.as_deref(), Some("b/"));
        let page = db.list("x/", Some("b/"), Some('/'), 2).await.unwrap();
        assert_eq!(page.keys, ["b0", "c"]);
        assert_eq!(page.next.as_deref(), Some("c"));

        // `after` inside a group skips the rest of the group
        let page = db.list("x/", Some("b/1"), Some('/'), 10).await.unwrap();
        assert_eq!(page.keys, ["b0", "c", "d/", "e/", "f"]);
        // ...but without a delimiter it is a plain key
        let page = db.list("x/", Some("b/1"), None, 2).await.unwrap();
        assert_eq!(page.keys, ["b/2", "b/3/deep"]);

        // folding is relative to the prefix
        let page = db.list("x/b/", None, Some('/'), 0).await.unwrap();
        assert_eq!(page.keys, ["1", "2", "3/"]);

        // a non-'/' and multi-byte delimiter
        let db = RedbBackend::in_memory().unwrap();
        put_all(&db, &["a.b", "a.c", "aé1", "aé2", "b"]).await;
        let page = db.list("", None, Some('.'), 0).await.unwrap();
        assert_eq!(page.keys, ["a.", "aé1", "aé2", "b"]);
        let page = db.list("", None, Some('é'), 0).await.unwrap();
        assert_eq!(page.keys, ["a.b", "a.c", "aé", "b"]);
        assert_eq!(
            list_all(&db, "", Some('é'), 1).await.concat(),
            ["a.b", "a.c", "aé", "b"]
        );

        // delimiter char::MAX has no successor code point: the group still ends the listing
        // correctly (seeks to the successor of the prefix part)
        let db = RedbBackend::in_memory().unwrap();
        put_all(&db, &["a\u{10FFFF}1", "a\u{10FFFF}2", "b"]).await;
        let page = db.list("", None, Some('\u{10FFFF}'), 0).await.unwrap();
        assert_eq!(page.keys, ["a\u{10FFFF}", "b"]);
    }

    #[tokio::test]
    async fn list_skips_large_groups_quickly() {
        // A folded group of many members costs one seek, not a scan: list pages stay small
        // whatever the group size. (Checks behaviour; the seek is visible in the implementation.)
        let db = RedbBackend::in_memory().unwrap();
        let keys: Vec<String> = (0..5000).map(|i| format!("big/{i:04}")).collect();
        let mut refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        refs.extend(["a", "z"]);
        put_all(&db, &refs).await;
        let pages = list_all(&db, "", Some('/'), 1).await;
        assert_eq!(pages.concat(), ["a", "big/", "z"]);
    }

    #[tokio::test]
    async fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/kvsync.redb");
        {
            let db = RedbBackend::open(&path).unwrap();
            assert!(!db.is_in_memory());
            db.commit(vec![], vec![put("a", b"one"), put("b", b"two")])
                .await
                .unwrap();
            db.commit(vec![], vec![del("b")]).await.unwrap();
        }
        let db = RedbBackend::open(&path).unwrap();
        assert_eq!(
            db.get("a").await.unwrap(),
            Some(Entry {
                value: b"one".to_vec(),
                version: 1
            })
        );
        assert_eq!(db.get("b").await.unwrap(), None);
        // The counter was persisted too.
        assert_eq!(db.commit(vec![], vec![]).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn second_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvsync.redb");
        let _db = RedbBackend::open(&path).unwrap();
        let err = RedbBackend::open(&path).unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
        let err = RedbBackend::open_exclusive(&path).unwrap_err();
        assert!(
            matches!(err, OpenError::InUse(ref p) if *p == path),
            "{err:?}"
        );
    }

    /// The on-disk state right after `commit` returned, taken without any close (what a SIGKILL
    /// leaves behind), opens with the data in it.
    #[tokio::test]
    async fn committed_data_survives_crash_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.redb");
        let crashed = dir.path().join("crashed.redb");
        let db = RedbBackend::open(&path).unwrap();
        let v = db.commit(vec![], vec![put("k", b"durable")]).await.unwrap();
        // Snapshot the file while the database is still open (no graceful close has run).
        std::fs::copy(&path, &crashed).unwrap();
        // Writes after the snapshot must not be needed for recovery.
        drop(db);

        let db = RedbBackend::open(&crashed).unwrap();
        assert_eq!(
            db.get("k").await.unwrap(),
            Some(Entry {
                value: b"durable".to_vec(),
                version: v
            })
        );
        assert_eq!(db.commit(vec![], vec![]).await.unwrap(), v + 1);
    }

    const CRASH_CHILD_ENV: &str = "KVSYNC_STORAGE_CRASH_CHILD_DB";

    /// Child half of [`committed_data_survives_sigkill`]: only acts when spawned by it.
    #[tokio::test]
    async fn crash_child() {
        let Some(path) = std::env::var_os(CRASH_CHILD_ENV) else {
            return;
        };
        let db = RedbBackend::open(Path::new(&path)).unwrap();
        let v = db.commit(vec![], vec![put("k", b"durable")]).await.unwrap();
        println!("COMMITTED {v}");
        use std::io::Write as _;
        std::io::stdout().flush().unwrap();
        // Wait to be killed; never close the database.
        std::thread::sleep(std::time::Duration::from_secs(120));
    }

    /// A process killed with SIGKILL right after `commit` returned leaves the data on disk.
    #[cfg(unix)]
    #[tokio::test]
    async fn committed_data_survives_sigkill() {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvsync.redb");
        let test_name = module_path!()
            .split_once("::")
            .map(|(_, rest)| format!("{rest}::crash_child"))
            .unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                test_name.as_str(),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut committed = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // libtest prints "test <name> ... " on the same line before the child's output.
            if let Some((_, v)) = line.split_once("COMMITTED ") {
                committed = Some(v.trim().parse::<u64>().unwrap());
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let version = committed.expect("child did not commit");

        let db = RedbBackend::open(&path).unwrap();
        assert_eq!(
            db.get("k").await.unwrap(),
            Some(Entry {
                value: b"durable".to_vec(),
                version
            })
        );
    }
}
