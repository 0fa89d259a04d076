//! The host's storage stack as a guest sees it: a tenant view
//! (`TenantStorage`) over the AES-256-GCM barrier over redb, in memory and
//! file-backed (fsync on every commit), for
//!
//! * `storage get`: a read of an existing key (decrypt included);
//! * `storage commit`: an atomic batch of the shape of a KV-v2 write, one
//!   condition (the metadata's version) and three puts (metadata, the new
//!   version's data, an outbox entry), encryption included.
//!
//! The file-backed database lives in a fresh directory under the system temp
//! directory, removed at the end.
//!
//! Run: `cargo bench -p kvsync-tests --bench storage` (add `-- --quick` for a
//! short run).
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark code: a failed setup ends the run by panicking"
)]

mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use kvsync::storage::{
    Barrier, Condition, EncryptionKey, Op, RedbBackend, SharedBackend, TenantStorage,
};

const META_KEY: &str = "kv/bench/metadata/app/db";
const READ_KEY: &str = "kv/bench/versions/app/db/1";
/// Distinct version-data and outbox keys written in turn by the commit bench,
/// so that the database stops growing once they all exist.
const KEY_SLOTS: u64 = 1024;

/// Removes the file-backed database's directory, even after a panic.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "kvsync-bench-storage-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn barrier(db: RedbBackend) -> TenantStorage {
    let backend: SharedBackend = Arc::new(Barrier::new(db, EncryptionKey::generate().unwrap()));
    TenantStorage::new(backend, "root")
}

fn value(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn put(key: impl Into<String>, len: usize) -> Op {
    Op::Put {
        key: key.into(),
        value: value(len),
    }
}

/// Seeds the metadata and one version; returns the metadata's version.
fn seed(tokio: &tokio::runtime::Runtime, storage: &TenantStorage) -> u64 {
    tokio
        .block_on(storage.commit(vec![], vec![put(META_KEY, 300), put(READ_KEY, 200)]))
        .unwrap()
}

fn bench_backend(
    c: &mut Criterion,
    tokio: &tokio::runtime::Runtime,
    name: &str,
    storage: &TenantStorage,
) {
    let mut meta_version = seed(tokio, storage);

    c.benchmark_group("storage get").bench_function(name, |b| {
        b.iter(|| {
            let entry = tokio.block_on(storage.get(black_box(READ_KEY))).unwrap();
            black_box(entry.expect("the key exists"))
        })
    });

    let mut n: u64 = 0;
    c.benchmark_group("storage commit (1 condition + 3 puts)")
        .bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let slot = n % KEY_SLOTS;
                let conditions = vec![Condition {
                    key: META_KEY.into(),
                    version: Some(meta_version),
                }];
                let ops = vec![
                    put(META_KEY, 300),
                    put(format!("kv/bench/versions/app/db/{}", slot + 2), 200),
                    put(format!("sync/outbox/{slot:020}"), 150),
                ];
                meta_version = tokio.block_on(storage.commit(conditions, ops)).unwrap();
            })
        });
}

fn benches(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let memory = barrier(RedbBackend::in_memory().unwrap());
    bench_backend(c, &tokio, "in-memory", &memory);
    drop(memory);

    let dir = TempDir::new();
    let file = barrier(RedbBackend::open(&dir.0.join("kvsync.redb")).unwrap());
    bench_backend(c, &tokio, "file", &file);
    drop(file); // closes the database before its directory is removed
    drop(dir);
}

criterion_group! {
    name = storage_benches;
    config = common::config();
    targets = benches
}
criterion_main!(storage_benches);
