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
/// redb's page cache for a database held in memory: every page it holds is a second copy of a
/// page of the database itself, so it is kept small (the hot pages of a request), and does not
/// grow with the data (redb's default is 1 GiB).
const IN_MEMORY_CACHE: usize = 4 << 20;

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
    /// Opens the database file at `path`, creating it (mode 0600) and its parent directory (mode
    /// 0700) if missing.
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
            crate::private_fs::create_dir(parent).map_err(|e| {
                StorageError::Unavailable(format!(
                    "cannot create directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
        // redb creates a missing file with the process's default mode: create it private first.
        crate::private_fs::create_file(path).map_err(|e| {
            StorageError::Unavailable(format!("cannot create database {}: {e}", path.display()))
        })?;
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
            .set_cache_size(IN_MEMORY_CACHE)
            .create_with_backend(super::memory::PagedMemory::new())
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
    //! What only redb has: the file, its lock, durability across a crash. The contract itself
    //! is proven on every backend by `tests/tests/storage_conformance.rs`.
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

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_a_private_directory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store/kvsync.redb");
        drop(RedbBackend::open(&path).unwrap());
        assert_eq!(mode(&dir.path().join("store")), 0o700);
        assert_eq!(mode(&path), 0o600);
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

    /// redb's file, counting the bytes read from it.
    #[derive(Debug)]
    struct Counting(
        ::redb::backends::FileBackend,
        Arc<std::sync::atomic::AtomicU64>,
    );

    impl ::redb::StorageBackend for Counting {
        fn len(&self) -> std::io::Result<u64> {
            self.0.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.1
                .fetch_add(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.0.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.0.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.0.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.0.write(offset, data)
        }
    }

    /// Bytes read from the file of a database holding `tenants` tenants' worth of records
    /// while it opens (after a clean close).
    async fn read_at_open(tenants: usize) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvsync.redb");
        {
            let db = RedbBackend::open(&path).unwrap();
            let value = vec![7u8; 300];
            for chunk in (0..tenants).collect::<Vec<_>>().chunks(100) {
                let mut ops = Vec::new();
                for t in chunk {
                    for rel in [
                        "core/mounts",
                        "logical/x/metadata/s",
                        "sync/destinations/in-mem/d",
                    ] {
                        ops.push(put(&format!("tenants/t{t:05}/{rel}"), &value));
                    }
                    ops.push(put(&format!("core/namespaces/path/t{t:05}/"), &value));
                }
                db.commit(vec![], ops).await.unwrap();
            }
        }
        let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let backend = Counting(
            ::redb::backends::FileBackend::new(file).unwrap(),
            counted.clone(),
        );
        let db = Database::builder().create_with_backend(backend).unwrap();
        let read = counted.load(std::sync::atomic::Ordering::Relaxed);
        drop(db);
        read
    }

    /// Opening the storage reads what redb needs to resume (its header and allocator state),
    /// not the data: a server with thousands of idle tenants starts as fast as an empty one.
    /// (redb's debug assertions would walk every page at open; the workspace turns them off.)
    #[tokio::test]
    async fn opening_reads_the_same_whatever_the_data() {
        let few = read_at_open(10).await;
        let many = read_at_open(2_000).await;
        assert!(
            many <= few + 64 * 1024,
            "opening read {many} bytes with 2,000 tenants, {few} with 10"
        );
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
