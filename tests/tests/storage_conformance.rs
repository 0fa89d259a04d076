//! One conformance suite over the storage contract ([`Backend`]), run against every backend:
//! redb (in memory) and PostgreSQL (a real server: `kvsync_tests::postgres::shared`, one per
//! run of this binary; each test has tables of its own). Then what only shared storage has:
//! two hosts on one database, schema migrations, what PostgreSQL gets to see.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::sync::Arc;
use std::time::Duration;

use kvsync::env::PostgresEnv;
use kvsync::ha::{Held, HostInfo, Leases, Taken};
use kvsync::storage::postgres::{ConnectOptions, Settings};
use kvsync::storage::{
    Backend, Barrier, Change, Changes, Condition, EncryptionKey, Entry, Op, Page, PostgresBackend,
    RedbBackend, SharedBackend, StorageError, TenantStorage,
};

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

fn is_conflict<T: std::fmt::Debug>(result: Result<T, StorageError>) -> bool {
    matches!(result, Err(StorageError::Conflict))
}

async fn put_all(db: &dyn Backend, keys: &[&str]) {
    let ops = keys.iter().map(|k| put(k, b"v")).collect();
    db.commit(vec![], ops).await.unwrap();
}

async fn list_all(
    db: &dyn Backend,
    prefix: &str,
    delimiter: Option<char>,
    limit: u32,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10_000 {
        let Page { keys, next } = db
            .list(prefix, after.as_deref(), delimiter, limit)
            .await
            .unwrap();
        assert!(keys.len() <= limit as usize);
        // `next` is the last key of the page (a folded group included), or none at the end.
        if let Some(n) = &next {
            assert_eq!(Some(n), keys.last());
        }
        pages.push(keys);
        match next {
            Some(n) => after = Some(n),
            None => return pages,
        }
    }
    panic!("listing did not end");
}

// ---- the stores under test ----

/// PostgreSQL settings for table `table` of the shared test server.
fn pg_settings(table: &str) -> Settings {
    let pg = kvsync_tests::postgres::shared().unwrap();
    Settings {
        connect: ConnectOptions::resolve(Some(&pg.url("postgres")), &PostgresEnv::default())
            .unwrap(),
        table: table.to_owned(),
        max_parallel: 8,
    }
}

/// A host of PostgreSQL store `table` (created on first open), listening.
async fn pg_host(table: &str) -> Arc<PostgresBackend> {
    let backend = PostgresBackend::open(&pg_settings(table), true)
        .await
        .unwrap()
        .expect("schema created");
    assert!(backend.wait_listening(Duration::from_secs(30)).await);
    Arc::new(backend)
}

#[derive(Clone, Copy)]
enum Kind {
    Redb,
    Postgres,
}

impl Kind {
    async fn fresh(self, name: &str) -> SharedBackend {
        match self {
            Kind::Redb => Arc::new(RedbBackend::in_memory().unwrap()),
            Kind::Postgres => pg_host(&format!("t_{name}")).await,
        }
    }
}

/// Every scenario, once per backend.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Kind::Redb.fresh(stringify!($scenario)).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Kind::Postgres.fresh(stringify!($scenario)).await).await;
                }
            )*
        }
    };
}

conformance!(
    get_put_delete,
    versions,
    cas_conditions,
    atomic_batches,
    list_paging_and_byte_order,
    list_limit_is_capped,
    list_delimiter_folding,
    list_skips_large_groups,
    tenants_are_isolated,
    concurrent_commits_get_distinct_versions,
    concurrent_conflicting_commits,
    concurrent_creates_of_an_absent_key,
    concurrent_increments_lose_nothing,
    barrier_on_top,
    barrier_keyring_rotates,
    watch_reports_commits,
    leases_take_renew_expire_release,
    leases_fence_commits,
    leases_one_taker_wins,
    leases_of_a_process_that_died,
);

// ---- scenarios ----

fn host(id: &str) -> HostInfo {
    HostInfo {
        id: id.into(),
        address: format!("http://{id}"),
    }
}

const TTL: Duration = Duration::from_secs(15);
const TTL_MS: u64 = 15_000;

fn leases(db: &SharedBackend, id: &str) -> Leases {
    Leases::new(db.clone(), host(id), TTL, 4).shared()
}

fn held(taken: Taken) -> Held {
    match taken {
        Taken::Held(held) => held,
        other => panic!("not taken: {other:?}"),
    }
}

/// Take, renew, a live lease refused to another host, taken over after the ttl, the old
/// holder's renewal refused, release frees it at once.
async fn leases_take_renew_expire_release(db: SharedBackend) {
    let (a, b) = (leases(&db, "a"), leases(&db, "b"));
    let t0 = 1_000_000;
    let first = held(a.take(0, t0).await.unwrap());
    assert_eq!(first.expires_at_ms, t0 + TTL_MS);
    // Shards are independent.
    let other = held(b.take(1, t0).await.unwrap());
    // Live: refused to b, naming a.
    let Taken::Elsewhere { host: who, renewed } = b.take(0, t0 + 1).await.unwrap() else {
        panic!("a live lease was taken");
    };
    assert_eq!(who, Some(host("a")));
    // A renewal keeps the fence and moves the expiry (and the expiry record's version).
    let renewed_lease = a.renew(first, t0 + 5_000).await.unwrap().unwrap();
    assert_eq!(renewed_lease.fence, first.fence);
    assert_eq!(renewed_lease.expires_at_ms, t0 + 5_000 + TTL_MS);
    let Taken::Elsewhere { renewed: later, .. } = b.take(0, t0 + 5_001).await.unwrap() else {
        panic!("a renewed lease was taken");
    };
    assert_ne!(later, renewed, "a renewal is visible to other hosts");
    // Still live just before the renewed expiry; taken over once it passed.
    assert!(matches!(
        b.take(0, t0 + 5_000 + TTL_MS - 1).await.unwrap(),
        Taken::Elsewhere { .. }
    ));
    let stolen = held(b.take(0, t0 + 5_000 + TTL_MS).await.unwrap());
    assert!(stolen.fence > first.fence);
    // The old holder learns it at its next renewal; its release changes nothing.
    assert_eq!(a.renew(renewed_lease, t0 + 25_000).await.unwrap(), None);
    a.release(renewed_lease).await.unwrap();
    let other = b.renew(other, t0 + 20_000).await.unwrap().unwrap();
    let holders = a.holders(t0 + 25_000).await.unwrap();
    let ids: Vec<(u32, &str)> = holders
        .iter()
        .map(|h| (h.shard, h.host_id.as_str()))
        .collect();
    assert_eq!(ids, vec![(0, "b"), (1, "b")]);
    assert_eq!(holders[0].address, "http://b");
    // Release: a takes shard 0 at once, long before the ttl.
    b.release(stolen).await.unwrap();
    let again = held(a.take(0, t0 + 25_001).await.unwrap());
    assert!(again.fence > stolen.fence);
    b.release(other).await.unwrap();
    assert_eq!(
        a.holders(t0 + 25_002).await.unwrap().len(),
        1,
        "released leases are not listed"
    );
}

/// Commits through a lease's fence hold only while the lease does; their own conditions
/// still conflict as usual.
async fn leases_fence_commits(db: SharedBackend) {
    let (a, b) = (leases(&db, "a"), leases(&db, "b"));
    let t0 = 2_000_000;
    let lease = held(a.take(2, t0).await.unwrap());
    let fenced = a.fenced(lease, None);
    let v = fenced
        .commit(vec![], vec![put("tenants/root/x", b"1")])
        .await
        .unwrap();
    assert!(is_conflict(
        fenced
            .commit(
                vec![cond("tenants/root/x", Some(v + 100))],
                vec![put("tenants/root/x", b"2")]
            )
            .await
    ));
    // A renewal does not break the fence.
    a.renew(lease, t0 + 1_000).await.unwrap().unwrap();
    fenced
        .commit(
            vec![cond("tenants/root/x", Some(v))],
            vec![put("tenants/root/x", b"2")],
        )
        .await
        .unwrap();
    // Taken over: every commit through the old fence fails, and writes nothing.
    held(b.take(2, t0 + 1_000 + TTL_MS).await.unwrap());
    let late = fenced
        .commit(vec![], vec![put("tenants/root/x", b"late")])
        .await;
    assert!(
        matches!(&late, Err(StorageError::Unavailable(m)) if m == kvsync::ha::LEASE_LOST),
        "{late:?}"
    );
    assert_eq!(db.get("tenants/root/x").await.unwrap().unwrap().value, b"2");
}

/// A lease left live by a process that died: on a store this process has to itself (redb: the
/// file is locked) it is stale and taken at once; on a shared one it lasts its ttl.
async fn leases_of_a_process_that_died(db: SharedBackend) {
    let t0 = 4_000_000;
    let dead = Leases::new(db.clone(), host("dead"), TTL, 4);
    held(dead.take(1, t0).await.unwrap());
    let next = Leases::new(db.clone(), host("next"), TTL, 4);
    let taken = next.take(1, t0 + 1).await.unwrap();
    if db.is_shared() {
        assert!(matches!(taken, Taken::Elsewhere { .. }), "{taken:?}");
    } else {
        held(taken);
    }
}

/// Hosts that try to take one free lease at once: exactly one holds it.
async fn leases_one_taker_wins(db: SharedBackend) {
    let t0 = 3_000_000;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let l = leases(&db, &format!("h{i}"));
        tasks.spawn(async move { l.take(3, t0).await.unwrap() });
    }
    let mut winners = 0;
    while let Some(taken) = tasks.join_next().await {
        if matches!(taken.unwrap(), Taken::Held(_)) {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(leases(&db, "x").holders(t0).await.unwrap().len(), 1);
}

async fn get_put_delete(db: SharedBackend) {
    assert_eq!(db.get("a").await.unwrap(), None);
    let v = db.commit(vec![], vec![put("a", b"one")]).await.unwrap();
    assert_eq!(
        db.get("a").await.unwrap(),
        Some(Entry {
            value: b"one".to_vec(),
            version: v
        })
    );
    let v2 = db.commit(vec![], vec![put("a", b"two")]).await.unwrap();
    assert_eq!(db.get("a").await.unwrap().unwrap().value, b"two");
    assert_eq!(db.get("a").await.unwrap().unwrap().version, v2);
    db.commit(vec![], vec![del("a")]).await.unwrap();
    assert_eq!(db.get("a").await.unwrap(), None);
    // Deleting an absent key is fine; empty values are values.
    db.commit(vec![], vec![del("a"), put("e", b"")])
        .await
        .unwrap();
    assert_eq!(db.get("e").await.unwrap().unwrap().value, b"");
    // Binary values, any bytes.
    let bytes: Vec<u8> = (0..=255).collect();
    db.commit(vec![], vec![put("bin", &bytes)]).await.unwrap();
    assert_eq!(db.get("bin").await.unwrap().unwrap().value, bytes);
}

async fn versions(db: SharedBackend) {
    let mut last = 0;
    for i in 0..12u32 {
        // Every commit takes a new version, even one with no ops.
        let ops = if i % 3 == 0 {
            vec![]
        } else {
            vec![put(&format!("k{i}"), b"v")]
        };
        let v = db.commit(vec![], ops).await.unwrap();
        assert!(v > last, "{v} <= {last}");
        last = v;
    }
    // Versions count commits from 1 on a fresh store: none skipped.
    assert_eq!(last, 12);
    // A key's version is the commit that last wrote it; ops apply in order.
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
    assert_eq!(db.get("k1").await.unwrap().unwrap().version, 2);
    let v2 = db
        .commit(vec![], vec![del("b"), put("b", b"3")])
        .await
        .unwrap();
    assert_eq!(db.get("b").await.unwrap().unwrap().version, v2);
}

async fn cas_conditions(db: SharedBackend) {
    let v1 = db
        .commit(vec![cond("a", None)], vec![put("a", b"one")])
        .await
        .unwrap();
    // must be absent, but present
    assert!(is_conflict(
        db.commit(vec![cond("a", None)], vec![put("a", b"x"), put("b", b"x")])
            .await
    ));
    // mismatched version
    assert!(is_conflict(
        db.commit(
            vec![cond("a", Some(v1 + 100))],
            vec![put("a", b"x"), put("b", b"x")]
        )
        .await
    ));
    // a version for an absent key
    assert!(is_conflict(
        db.commit(vec![cond("zz", Some(v1))], vec![put("b", b"x")])
            .await
    ));
    // one failing condition among passing ones
    assert!(is_conflict(
        db.commit(
            vec![cond("a", Some(v1)), cond("b", Some(1))],
            vec![put("b", b"x")]
        )
        .await
    ));
    // Nothing was written, and no version was consumed.
    assert_eq!(db.get("b").await.unwrap(), None);
    assert_eq!(
        db.get("a").await.unwrap(),
        Some(Entry {
            value: b"one".to_vec(),
            version: v1
        })
    );
    // conditions that hold: present with its version, absent; on keys not written too
    let v2 = db
        .commit(
            vec![cond("a", Some(v1)), cond("b", None)],
            vec![put("c", b"two")],
        )
        .await
        .unwrap();
    assert_eq!(v2, v1 + 1);
    assert_eq!(db.get("c").await.unwrap().unwrap().version, v2);
    assert_eq!(db.get("a").await.unwrap().unwrap().version, v1);
    // a deleted key is absent again
    let v3 = db
        .commit(vec![cond("a", Some(v1))], vec![del("a")])
        .await
        .unwrap();
    assert!(is_conflict(
        db.commit(vec![cond("a", Some(v1))], vec![]).await
    ));
    db.commit(vec![cond("a", None)], vec![put("a", b"again")])
        .await
        .unwrap();
    assert!(db.get("a").await.unwrap().unwrap().version > v3);
}

async fn atomic_batches(db: SharedBackend) {
    let keys: Vec<String> = (0..200).map(|i| format!("batch/{i:03}")).collect();
    let ops = keys.iter().map(|k| put(k, k.as_bytes())).collect();
    let v = db.commit(vec![], ops).await.unwrap();
    for k in &keys {
        let e = db.get(k).await.unwrap().unwrap();
        assert_eq!((e.value.as_slice(), e.version), (k.as_bytes(), v));
    }
    // A failing condition writes none of a large batch.
    let ops = keys
        .iter()
        .map(|k| put(k, b"changed"))
        .chain([del("batch/000")])
        .collect();
    assert!(is_conflict(
        db.commit(vec![cond("batch/199", Some(v + 1))], ops).await
    ));
    for k in &keys {
        assert_eq!(db.get(k).await.unwrap().unwrap().version, v);
    }
    let page = db.list("batch/", None, None, 0).await.unwrap();
    assert_eq!(page.keys.len(), 200);
}

async fn list_paging_and_byte_order(db: SharedBackend) {
    put_all(
        &*db,
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
    assert_eq!(
        (page.keys.as_slice(), page.next),
        (&["d".to_owned(), "e".to_owned()][..], None)
    );
    // `after` need not exist; may be past the end
    assert_eq!(
        db.list("p/", Some("bb"), None, 10).await.unwrap().keys,
        ["c", "d", "e"]
    );
    assert_eq!(
        db.list("p/", Some("e"), None, 10).await.unwrap(),
        Page::default()
    );
    assert_eq!(db.list("p/", Some(""), None, 1).await.unwrap().keys, ["a"]);
    // empty prefix: everything; unknown prefix: nothing
    assert_eq!(
        db.list("", None, None, 100).await.unwrap().keys,
        ["o/x", "p", "p/a", "p/b", "p/c", "p/d", "p/e", "pp/x", "q/x"]
    );
    assert_eq!(
        db.list("nope/", None, None, 10).await.unwrap(),
        Page::default()
    );
    assert_eq!(
        list_all(&*db, "p/", None, 1).await.concat(),
        ["a", "b", "c", "d", "e"]
    );

    // Byte order (UTF-8), not a locale's: upper before lower, non-ASCII after ASCII, by code
    // point; a key and its extensions together.
    let keys = [
        "u/Zebra",
        "u/apple",
        "u/\u{7f}",
        "u/é",
        "u/e\u{301}",
        "u/中",
        "u/😀",
        "u/\u{FFFD}",
        "u/a b",
        "u/a-b",
        "u/a/b",
        "u/a0",
        "u/~",
    ];
    put_all(&*db, &keys).await;
    let mut expected: Vec<String> = keys.iter().map(|k| k["u/".len()..].to_owned()).collect();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(db.list("u/", None, None, 0).await.unwrap().keys, expected);
    for limit in [1, 2, 5] {
        assert_eq!(list_all(&*db, "u/", None, limit).await.concat(), expected);
    }
    // A non-ASCII prefix.
    put_all(&*db, &["ü/1", "ü/2", "üx"]).await;
    assert_eq!(db.list("ü/", None, None, 0).await.unwrap().keys, ["1", "2"]);
}

async fn list_limit_is_capped(db: SharedBackend) {
    let keys: Vec<String> = (0..10_005).map(|i| format!("k/{i:05}")).collect();
    for chunk in keys.chunks(2_500) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        put_all(&*db, &refs).await;
    }
    let page = db.list("k/", None, None, 0).await.unwrap();
    assert_eq!(page.keys.len(), 1000);
    assert_eq!(page.next.as_deref(), Some("00999"));
    let page = db.list("k/", None, None, u32::MAX).await.unwrap();
    assert_eq!(page.keys.len(), 10_000);
    assert_eq!(page.next.as_deref(), Some("09999"));
    let page = db
        .list("k/", Some("09999"), Some('/'), u32::MAX)
        .await
        .unwrap();
    assert_eq!(page.keys.len(), 5);
}

async fn list_delimiter_folding(db: SharedBackend) {
    put_all(
        &*db,
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
            "a",
            "b/c",
            "b/d",
            "e",
        ],
    )
    .await;
    assert_eq!(
        db.list("", None, Some('/'), 0).await.unwrap().keys,
        ["a", "b/", "e", "x/", "y/"]
    );
    let all = ["a", "b/", "b0", "c", "d/", "e/", "f"];
    let page = db.list("x/", None, Some('/'), 0).await.unwrap();
    assert_eq!(
        (page.keys.as_slice(), page.next),
        (&all.map(String::from)[..], None)
    );
    for limit in 1..=8 {
        let pages = list_all(&*db, "x/", Some('/'), limit).await;
        assert_eq!(pages.concat(), all, "limit {limit}");
    }
    // a page ending on a folded group continues after the group
    let page = db.list("x/", None, Some('/'), 2).await.unwrap();
    assert_eq!(
        (page.keys.as_slice(), page.next.as_deref()),
        (&["a".to_owned(), "b/".to_owned()][..], Some("b/"))
    );
    let page = db.list("x/", Some("b/"), Some('/'), 2).await.unwrap();
    assert_eq!(
        (page.keys.as_slice(), page.next.as_deref()),
        (&["b0".to_owned(), "c".to_owned()][..], Some("c"))
    );
    // `after` inside a group skips the rest of the group; without a delimiter it is a key
    assert_eq!(
        db.list("x/", Some("b/1"), Some('/'), 10)
            .await
            .unwrap()
            .keys,
        ["b0", "c", "d/", "e/", "f"]
    );
    assert_eq!(
        db.list("x/", Some("b/1"), None, 2).await.unwrap().keys,
        ["b/2", "b/3/deep"]
    );
    // folding is relative to the prefix
    assert_eq!(
        db.list("x/b/", None, Some('/'), 0).await.unwrap().keys,
        ["1", "2", "3/"]
    );

    // Another and a multi-byte delimiter.
    put_all(&*db, &["m/a.b", "m/a.c", "m/aé1", "m/aé2", "m/b"]).await;
    assert_eq!(
        db.list("m/", None, Some('.'), 0).await.unwrap().keys,
        ["a.", "aé1", "aé2", "b"]
    );
    assert_eq!(
        db.list("m/", None, Some('é'), 0).await.unwrap().keys,
        ["a.b", "a.c", "aé", "b"]
    );
    assert_eq!(
        list_all(&*db, "m/", Some('é'), 1).await.concat(),
        ["a.b", "a.c", "aé", "b"]
    );
    // The largest code point as the delimiter.
    put_all(&*db, &["z/a\u{10FFFF}1", "z/a\u{10FFFF}2", "z/b"]).await;
    assert_eq!(
        db.list("z/", None, Some('\u{10FFFF}'), 0)
            .await
            .unwrap()
            .keys,
        ["a\u{10FFFF}", "b"]
    );
}

async fn list_skips_large_groups(db: SharedBackend) {
    let keys: Vec<String> = (0..3000).map(|i| format!("big/{i:04}")).collect();
    let mut refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    refs.extend(["a", "z", "big0"]);
    put_all(&*db, &refs).await;
    assert_eq!(
        list_all(&*db, "", Some('/'), 1).await.concat(),
        ["a", "big/", "big0", "z"]
    );
    assert_eq!(
        db.list("", None, Some('/'), 0).await.unwrap().keys,
        ["a", "big/", "big0", "z"]
    );
}

async fn tenants_are_isolated(db: SharedBackend) {
    let backend: SharedBackend = Arc::new(Barrier::new(db, EncryptionKey::generate().unwrap()));
    backend
        .commit(vec![], vec![put("core/token/abc", b"host-secret")])
        .await
        .unwrap();
    // Tenant ids whose naive prefixes collide or sort next to each other.
    let a = TenantStorage::new(Arc::clone(&backend), "a");
    let ab = TenantStorage::new(Arc::clone(&backend), "a/b");
    let a0 = TenantStorage::new(Arc::clone(&backend), "a0");
    let root = TenantStorage::new(Arc::clone(&backend), "root");
    a.commit(vec![], vec![put("x", b"a-x"), put("b/secret", b"a-own")])
        .await
        .unwrap();
    ab.commit(vec![], vec![put("secret", b"ab-secret")])
        .await
        .unwrap();
    a0.commit(vec![], vec![put("y", b"a0-y")]).await.unwrap();

    assert_eq!(a.get("b/secret").await.unwrap().unwrap().value, b"a-own");
    assert_eq!(ab.get("secret").await.unwrap().unwrap().value, b"ab-secret");
    assert_eq!(a.get("secret").await.unwrap(), None);
    assert_eq!(root.get("x").await.unwrap(), None);
    assert_eq!(a0.get("x").await.unwrap(), None);
    assert_eq!(a.get("../a0/y").await.unwrap(), None);
    assert_eq!(a.get("../../core/token/abc").await.unwrap(), None);

    assert_eq!(
        a.list("", None, None, 0).await.unwrap().keys,
        ["b/secret", "x"]
    );
    assert_eq!(ab.list("", None, None, 0).await.unwrap().keys, ["secret"]);
    assert_eq!(a0.list("", None, None, 0).await.unwrap().keys, ["y"]);
    assert_eq!(root.list("", None, None, 0).await.unwrap(), Page::default());
    assert_eq!(
        a.list("", None, Some('/'), 0).await.unwrap().keys,
        ["b/", "x"]
    );
    for after in ["", "x", "y", "z", "\u{10FFFF}", "~", "/", "../", "%"] {
        let page = a.list("", Some(after), None, 0).await.unwrap();
        assert!(
            page.keys
                .iter()
                .all(|k| ["b/secret", "x"].contains(&k.as_str())),
            "after {after:?}: {:?}",
            page.keys
        );
        let page = a.list("", Some(after), Some('/'), 0).await.unwrap();
        assert!(
            page.keys.iter().all(|k| ["b/", "x"].contains(&k.as_str())),
            "after {after:?}: {:?}",
            page.keys
        );
        let page = root.list("", Some(after), Some('/'), 0).await.unwrap();
        assert!(page.keys.is_empty(), "after {after:?}: {:?}", page.keys);
    }
    // Paging to the end stays inside the tenant.
    assert_eq!(
        a.list("", Some("b/secret"), None, 1).await.unwrap(),
        Page {
            keys: vec!["x".to_owned()],
            next: None
        }
    );
    // Conditions and writes stay inside.
    assert!(is_conflict(
        a.commit(vec![cond("secret", Some(1))], vec![]).await
    ));
    a.commit(vec![cond("secret", None)], vec![del("secret")])
        .await
        .unwrap();
    assert_eq!(ab.get("secret").await.unwrap().unwrap().value, b"ab-secret");
    assert_eq!(
        backend.get("core/token/abc").await.unwrap().unwrap().value,
        b"host-secret"
    );
}

/// Writers of different keys at once: each commit gets a version of its own, none skipped.
async fn concurrent_commits_get_distinct_versions(db: SharedBackend) {
    let v0 = db.commit(vec![], vec![]).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let db = Arc::clone(&db);
        tasks.push(tokio::spawn(async move {
            db.commit(vec![], vec![put(&format!("k{i}"), b"v")]).await
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (v0 + 1..=v0 + 16).collect::<Vec<u64>>());
}

/// Many writers race on one key with the same expected version: exactly one wins.
async fn concurrent_conflicting_commits(db: SharedBackend) {
    let v0 = db.commit(vec![], vec![put("race", b"0")]).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let db = Arc::clone(&db);
        tasks.push(tokio::spawn(async move {
            db.commit(
                vec![cond("race", Some(v0))],
                vec![put("race", &[i]), put(&format!("side/{i}"), b"x")],
            )
            .await
        }));
    }
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(v) => winners.push((i, v)),
            Err(StorageError::Conflict) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let (i, v) = winners[0];
    assert_eq!(
        db.get("race").await.unwrap(),
        Some(Entry {
            value: vec![u8::try_from(i).unwrap()],
            version: v
        })
    );
    // The losers wrote nothing (not even their other key).
    assert_eq!(
        db.list("side/", None, None, 0).await.unwrap().keys,
        [i.to_string()]
    );
}

/// Many writers race to create the same absent key (a phantom for row locks): exactly one wins.
async fn concurrent_creates_of_an_absent_key(db: SharedBackend) {
    for round in 0..5 {
        let key = format!("new/{round}");
        let mut tasks = Vec::new();
        for i in 0..12u8 {
            let db = Arc::clone(&db);
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                db.commit(vec![cond(&key, None)], vec![put(&key, &[i])])
                    .await
            }));
        }
        let mut won = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => won += 1,
                Err(StorageError::Conflict) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won, 1, "round {round}");
    }
}

/// Read-modify-write loops with compare-and-swap: no increment is lost.
async fn concurrent_increments_lose_nothing(db: SharedBackend) {
    const TASKS: u64 = 6;
    const EACH: u64 = 15;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let db = Arc::clone(&db);
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            for _attempt in 0..10_000 {
                if done == EACH {
                    return done;
                }
                let current = db.get("counter").await.unwrap();
                let (n, expected) = match &current {
                    Some(e) => (
                        u64::from_be_bytes(e.value.as_slice().try_into().unwrap()),
                        Some(e.version),
                    ),
                    None => (0, None),
                };
                match db
                    .commit(
                        vec![cond("counter", expected)],
                        vec![put("counter", &(n + 1).to_be_bytes())],
                    )
                    .await
                {
                    Ok(_) => done += 1,
                    Err(StorageError::Conflict) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            done
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), EACH);
    }
    let total = db.get("counter").await.unwrap().unwrap();
    assert_eq!(total.value, (TASKS * EACH).to_be_bytes());
}

async fn barrier_on_top(db: SharedBackend) {
    let key = EncryptionKey::generate().unwrap();
    let barrier = Barrier::new(Arc::clone(&db), key.clone());
    assert!(!barrier.is_initialized().await.unwrap());
    barrier.init_key_check().await.unwrap();
    let v = barrier
        .commit(vec![], vec![put("s", b"plain secret value")])
        .await
        .unwrap();
    assert_eq!(
        barrier.get("s").await.unwrap(),
        Some(Entry {
            value: b"plain secret value".to_vec(),
            version: v
        })
    );
    // The backend holds the sealed form only.
    let raw = db.get("s").await.unwrap().unwrap();
    assert_eq!(raw.version, v);
    assert!(!raw.value.windows(12).any(|w| w == b"plain secret"));
    // Another key cannot open it.
    let wrong = Barrier::new(Arc::clone(&db), EncryptionKey::generate().unwrap());
    assert!(wrong.check_key().await.is_err());
    assert!(matches!(
        wrong.get("s").await,
        Err(StorageError::Unavailable(_))
    ));
    Barrier::new(db, key).check_key().await.unwrap();
}

async fn barrier_keyring_rotates(db: SharedBackend) {
    let key = EncryptionKey::generate().unwrap();
    // Two processes on one store; automatic rotation after 5 encryptions, reserved 2 at a time.
    let a = Barrier::new(Arc::clone(&db), key.clone()).with_rotation(5, 2);
    let b = Barrier::new(Arc::clone(&db), key.clone()).with_rotation(5, 2);
    a.init_key_check().await.unwrap();
    assert_eq!(a.key_status().await.unwrap().term, 1);
    for i in 0..6u8 {
        let writer = if i % 2 == 0 { &a } else { &b };
        writer
            .commit(vec![], vec![put(&format!("k{i}"), &[i])])
            .await
            .unwrap();
    }
    // 6 writes, each process reserving 2 at a time, under a threshold of 5: rotated once.
    assert_eq!(a.key_status().await.unwrap().term, 2);
    assert_eq!(a.rotate().await.unwrap().term, 3);
    a.commit(vec![], vec![put("after", b"rotation")])
        .await
        .unwrap();
    let fresh = Barrier::new(Arc::clone(&db), key);
    fresh.check_key().await.unwrap();
    for i in 0..6u8 {
        let got = b.get(&format!("k{i}")).await.unwrap().unwrap();
        assert_eq!(got.value, [i]);
        assert_eq!(
            fresh.get(&format!("k{i}")).await.unwrap().unwrap().value,
            [i]
        );
    }
    assert_eq!(b.get("after").await.unwrap().unwrap().value, b"rotation");
    assert_eq!(fresh.key_status().await.unwrap().term, 3);
}

/// The next change on `feed` that names `key` (bounded in count and time).
async fn change_naming(feed: &mut Changes, key: &str) -> Change {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for _ in 0..10_000 {
        let next = tokio::time::timeout_at(deadline, feed.next()).await;
        match next
            .expect("no change before the deadline")
            .expect("feed closed")
        {
            Change::Keys { version, keys } if keys.iter().any(|k| k == key) => {
                return Change::Keys { version, keys };
            }
            _ => {}
        }
    }
    panic!("no change named {key}");
}

async fn watch_reports_commits(db: SharedBackend) {
    let mut feed = db.watch().expect("the whole store reports changes");
    let v = db
        .commit(vec![], vec![put("w/a", b"1"), del("w/b")])
        .await
        .unwrap();
    // This process's commit is reported before `commit` returned.
    let mut seen = None;
    while let Some(change) = feed.try_next() {
        if let Change::Keys { version, keys } = change
            && version == v
        {
            seen = Some(keys);
        }
    }
    let mut keys = seen.expect("reported at once").to_vec();
    keys.sort();
    assert_eq!(keys, ["w/a", "w/b"]);
    // Views above the store pass it through.
    let barrier = Barrier::new(Arc::clone(&db), EncryptionKey::generate().unwrap());
    let mut feed = barrier.watch().unwrap();
    barrier
        .commit(vec![], vec![put("w/c", b"1")])
        .await
        .unwrap();
    change_naming(&mut feed, "w/c").await;
}

// ---- shared storage only ----

/// Two hosts on one database: each sees the other's commits, and a host's cache never answers
/// with a value older than a commit it has seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hosts_see_each_others_commits() {
    let a = pg_host("two_hosts").await;
    let b = pg_host("two_hosts").await;
    let v1 = a
        .commit(vec![], vec![put("x", b"1"), put("y", b"1")])
        .await
        .unwrap();
    // B reads (and caches) both.
    for _ in 0..3 {
        assert_eq!(b.get("x").await.unwrap().unwrap().version, v1);
        assert_eq!(b.get("y").await.unwrap().unwrap().version, v1);
        assert_eq!(b.get("none").await.unwrap(), None);
    }
    let mut feed = b.watch().unwrap();
    let v2 = a
        .commit(
            vec![],
            vec![put("x", b"2"), put("y", b"2"), put("none", b"2")],
        )
        .await
        .unwrap();
    // B reads y fresh (whatever its cache holds, a read from the database may come first):
    // once B has seen commit v2 anywhere, x must not come from before it.
    loop {
        let y = b.get("y").await.unwrap().unwrap();
        if y.version == v2 {
            assert_eq!(b.get("x").await.unwrap().unwrap().version, v2);
            assert_eq!(b.get("none").await.unwrap().unwrap().value, b"2");
            break;
        }
        // Not seen yet: the notification will tell (bounded by the deadline below).
        change_naming(&mut feed, "y").await;
    }
    // B's writes reach A, and conditions are checked against the database, not a cache.
    let v3 = b
        .commit(vec![cond("x", Some(v2))], vec![put("x", b"3")])
        .await
        .unwrap();
    assert!(is_conflict(
        a.commit(vec![cond("x", Some(v2))], vec![put("x", b"4")])
            .await
    ));
    let mut feed = a.watch().unwrap();
    if a.get("x").await.unwrap().unwrap().version != v3 {
        change_naming(&mut feed, "x").await;
        assert_eq!(a.get("x").await.unwrap().unwrap().version, v3);
    }
    // Concurrent writers on both hosts: exactly one wins.
    let mut tasks = Vec::new();
    for (i, host) in [&a, &b, &a, &b].into_iter().enumerate() {
        let host = Arc::clone(host);
        tasks.push(tokio::spawn(async move {
            host.commit(
                vec![cond("x", Some(v3))],
                vec![put("x", &[u8::try_from(i).unwrap()])],
            )
            .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        if task.await.unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

/// The listener survives its connection being killed (with every other connection of the store:
/// the last query of each names its tables): the feed says `Lost`, then `Reset`, and other
/// hosts' commits are heard again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listener_reconnects() {
    let pg = kvsync_tests::postgres::shared().unwrap();
    let a = pg_host("reconnect").await;
    let b = pg_host("reconnect").await;
    let mut feed = b.watch().unwrap();
    pg.psql(
        "postgres",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE query LIKE '%\"reconnect%' AND pid <> pg_backend_pid()",
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut lost = false;
    loop {
        let change = tokio::time::timeout_at(deadline, feed.next())
            .await
            .expect("the listener came back")
            .unwrap();
        match change {
            Change::Lost => lost = true,
            Change::Reset if lost => break,
            _ => {}
        }
    }
    assert!(b.wait_listening(Duration::from_secs(30)).await);
    // The pools drop connections the server closed.
    let mut v = None;
    for _ in 0..3 {
        if let Ok(version) = a.commit(vec![], vec![put("after", b"1")]).await {
            v = Some(version);
            break;
        }
    }
    let v = v.expect("a commit after the reconnection");
    change_naming(&mut feed, "after").await;
    assert_eq!(b.get("after").await.unwrap().unwrap().version, v);
}

/// Migrations: created once, found by later opens, a missing or newer schema refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schema_is_versioned() {
    let pg = kvsync_tests::postgres::shared().unwrap();
    // Not created unless asked.
    assert!(
        PostgresBackend::open(&pg_settings("schema_t"), false)
            .await
            .unwrap()
            .is_none()
    );
    let created = PostgresBackend::open(&pg_settings("schema_t"), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created.applied_migrations(), [1]);
    let again = PostgresBackend::open(&pg_settings("schema_t"), false)
        .await
        .unwrap()
        .unwrap();
    assert!(again.applied_migrations().is_empty());
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT version, description <> '' FROM schema_t_schema"
        )
        .unwrap(),
        "1|t\n"
    );
    // Hosts opening together apply each migration once.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(tokio::spawn(async {
            let opened = PostgresBackend::open(&pg_settings("schema_u"), true).await;
            opened.unwrap().unwrap().applied_migrations().to_vec()
        }));
    }
    let mut applied = Vec::new();
    for task in tasks {
        applied.push(task.await.unwrap());
    }
    assert_eq!(
        applied.iter().filter(|a| !a.is_empty()).count(),
        1,
        "{applied:?}"
    );
    // A newer schema than this kvsync knows is refused.
    pg.psql(
        "postgres",
        "INSERT INTO schema_t_schema (version, description) VALUES (999, 'from the future')",
    )
    .unwrap();
    let err = PostgresBackend::open(&pg_settings("schema_t"), false)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("newer than this kvsync knows"),
        "{err}"
    );
}

/// PostgreSQL holds key names and sealed values only: no plaintext anywhere in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sees_only_ciphertext() {
    const MARKER: &str = "PLAINTEXT-MARKER-5b1e99";
    let pg = kvsync_tests::postgres::shared().unwrap();
    let host = pg_host("sealed").await;
    let barrier = Barrier::new(host, EncryptionKey::generate().unwrap());
    barrier.init_key_check().await.unwrap();
    let value = format!("{{\"password\":\"{MARKER}\"}}");
    barrier
        .commit(vec![], vec![put("tenants/root/secret", value.as_bytes())])
        .await
        .unwrap();
    let dump = pg
        .psql(
            "postgres",
            "SELECT convert_from(key, 'UTF8'), encode(value, 'hex') FROM sealed",
        )
        .unwrap();
    assert!(dump.contains("tenants/root/secret"), "{dump}");
    let marker_hex: String = MARKER.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(!dump.contains(&marker_hex), "plaintext in PostgreSQL");
    assert!(!dump.contains(MARKER));
}

/// Errors name the server, never the connection's password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_errors_hide_the_password() {
    let pg = kvsync_tests::postgres::shared().unwrap();
    let wrong = format!(
        "postgres://kvsync:wrong-pw-31337@127.0.0.1:{}/postgres?sslmode=disable&connect_timeout=5",
        pg.port
    );
    let unreachable = "postgres://kvsync:wrong-pw-31337@127.0.0.1:1/postgres?connect_timeout=5";
    for url in [wrong.as_str(), unreachable] {
        let settings = Settings {
            connect: ConnectOptions::resolve(Some(url), &PostgresEnv::default()).unwrap(),
            table: "never".into(),
            max_parallel: 2,
        };
        let err = PostgresBackend::open(&settings, true).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("wrong-pw-31337"), "{text}");
        assert!(text.contains("127.0.0.1"), "{text}");
    }
}

/// TLS with libpq's `sslmode` meanings against a server whose certificate names `localhost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_modes() {
    let pg = kvsync_tests::postgres::shared().unwrap();
    let ca = pg.ca_file().display().to_string();
    let other = pg.other_ca_file().display().to_string();
    let url = |host: &str, query: &str| {
        format!(
            "postgres://{}:{}@{host}:{}/postgres?connect_timeout=5&{query}",
            kvsync_tests::postgres::SUPERUSER,
            kvsync_tests::postgres::PASSWORD,
            pg.port
        )
    };
    let open = |url: String| async move {
        let settings = Settings {
            connect: ConnectOptions::resolve(Some(&url), &PostgresEnv::default())?,
            table: "tls_t".into(),
            max_parallel: 2,
        };
        let backend = PostgresBackend::open(&settings, true)
            .await?
            .expect("created");
        backend.commit(vec![], vec![put("k", b"v")]).await?;
        Ok::<_, StorageError>(())
    };
    // Encrypted, not verified (libpq's `require`), or verified by chain and name.
    open(url("127.0.0.1", "sslmode=require")).await.unwrap();
    open(url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    // The chain without the name: 127.0.0.1 is not in the certificate.
    open(url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    let err = open(url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // A root that did not sign the server's certificate.
    for mode in ["verify-ca", "verify-full", "require"] {
        let err = open(url(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={other}"),
        ))
        .await
        .unwrap_err();
        assert!(err.to_string().contains("certificate"), "{mode}: {err}");
    }
}
