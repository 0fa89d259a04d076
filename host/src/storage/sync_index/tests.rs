use std::sync::Arc;

use super::*;
use crate::storage::{RedbBackend, SharedBackend, TenantStorage};

fn put(key: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: Vec::new(),
    }
}

fn shared() -> SharedBackend {
    Arc::new(RedbBackend::in_memory().unwrap())
}

async fn keys(backend: &SharedBackend, prefix: &str) -> Vec<String> {
    backend.list(prefix, None, None, 0).await.unwrap().keys
}

const DUE_KEY: &str = "sync/due/in-mem/d/00000000000000000001/acc/app%2Fdb";

#[test]
fn tenant_ids_round_trip() {
    for id in ["root", "a/b", "a%2Fb", "x\0y", "%", ""] {
        let encoded = encode_tenant(id);
        assert!(!encoded.contains('/'));
        assert_eq!(decode_tenant(&encoded).as_deref(), Some(id), "{id:?}");
    }
    assert_eq!(decode_tenant("a%2"), None);
    assert_eq!(decode_tenant("a%41"), None);
    assert_eq!(decode_tenant("a/b"), None);
}

#[test]
fn guest_writes_map_to_index_records() {
    let (ops, touch) = index_ops(
        "t%2F1",
        &[
            put(DUE_KEY),
            put("sync/due/in-mem/d/00000000000000000002/acc/other"),
            put("sync/jobs/purge/in-mem/d"),
            put("sync/jobs/reconcile"),
            put("sync/jobs/unknown"),
            put("sync/destinations/in-mem/d"),
            put("sync/outbox/in-mem/d/acc/app%2Fdb"),
            Op::Delete {
                key: "sync/due/in-mem/e/00000000000000000001/acc/x".into(),
            },
        ],
    );
    let keys: Vec<&str> = ops.iter().map(Op::key).collect();
    assert_eq!(
        keys,
        [
            "core/sync/due/t%2F1/due/in-mem/d",
            "core/sync/due/t%2F1/job/purge/in-mem/d",
            "core/sync/due/t%2F1/job/reconcile",
            "core/sync/reconcile/t%2F1",
        ]
    );
    assert!(!touch);
    assert!(index_ops("t", &[put("sync/config")]).1);
    assert_eq!(
        parse_due_key("core/sync/due/t%2F1/job/purge/in-mem/d"),
        Some((
            "t/1".to_string(),
            Work::Job {
                rel: "purge/in-mem/d".into()
            }
        ))
    );
    assert_eq!(parse_due_key("core/sync/reconcile/t"), None);
}

#[test]
fn work_is_filed_in_the_engines_shard() {
    for shards in [1, 2, 4, 7] {
        let due = Work::Due {
            kind: "in-mem".into(),
            name: "d".into(),
        };
        assert_eq!(due.shard(shards), shard_of("in-mem", "d", shards));
        let purge = Work::Job {
            rel: "purge/in-mem/d".into(),
        };
        assert_eq!(purge.shard(shards), shard_of("in-mem", "d", shards));
    }
}

#[tokio::test]
async fn a_tenant_commit_files_its_work_in_the_same_commit() {
    let backend = shared();
    let t = TenantStorage::new(backend.clone(), "t1");
    let v = t.commit(vec![], vec![put(DUE_KEY)]).await.unwrap();
    let record = backend
        .get("core/sync/due/t1/due/in-mem/d")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.version, v);
    assert_eq!(
        tenants_of_shard(backend.as_ref(), 0, 1).await.unwrap(),
        ["t1"]
    );
    // Idle tenants and other shards cost nothing and show nothing.
    let other = (shard_of("in-mem", "d", 2) + 1) % 2;
    assert!(
        tenants_of_shard(backend.as_ref(), other, 2)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn records_go_only_when_their_work_is_gone() {
    let backend = shared();
    let t = TenantStorage::new(backend.clone(), "t1");
    t.commit(vec![], vec![put(DUE_KEY), put("sync/jobs/reconcile")])
        .await
        .unwrap();
    // Work left: nothing is dropped.
    assert_eq!(forget_idle(backend.as_ref(), "t1", 0, 1).await.unwrap(), 2);
    t.commit(
        vec![],
        vec![
            Op::Delete {
                key: DUE_KEY.into(),
            },
            Op::Delete {
                key: "sync/jobs/reconcile".into(),
            },
        ],
    )
    .await
    .unwrap();
    assert_eq!(forget_idle(backend.as_ref(), "t1", 0, 1).await.unwrap(), 0);
    assert!(keys(&backend, DUE_INDEX).await.is_empty());
    // A deleted tenant (its prefix gone) is dropped the same way.
    backend
        .commit(vec![], vec![put("core/sync/due/gone/due/in-mem/d")])
        .await
        .unwrap();
    assert_eq!(
        forget_idle(backend.as_ref(), "gone", 0, 1).await.unwrap(),
        0
    );
    assert!(keys(&backend, DUE_INDEX).await.is_empty());
}

#[tokio::test]
async fn a_record_rewritten_meanwhile_stays() {
    let backend = shared();
    let key = "core/sync/due/t1/due/in-mem/d".to_string();
    let v = backend.commit(vec![], vec![put(&key)]).await.unwrap();
    // Work queued after the check and before the delete rewrites the record.
    TenantStorage::new(backend.clone(), "t1")
        .commit(vec![], vec![put(DUE_KEY)])
        .await
        .unwrap();
    assert!(forget(backend.as_ref(), key.clone(), v).await.unwrap());
    assert!(backend.get(&key).await.unwrap().is_some());
}

#[tokio::test]
async fn enabling_sync_again_rewrites_the_tenants_records() {
    let backend = shared();
    let t = TenantStorage::new(backend.clone(), "t1");
    let first = t.commit(vec![], vec![put(DUE_KEY)]).await.unwrap();
    let touched = t.commit(vec![], vec![put("sync/config")]).await.unwrap();
    assert!(touched > first);
    let record = backend
        .get("core/sync/due/t1/due/in-mem/d")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.version, touched);
}

#[tokio::test]
async fn destinations_file_the_tenant_for_reconciliation() {
    let backend = shared();
    for tenant in ["a", "b", "c"] {
        TenantStorage::new(backend.clone(), tenant)
            .commit(vec![], vec![put("sync/destinations/in-mem/d")])
            .await
            .unwrap();
    }
    let (page, next) = reconcile_page(backend.as_ref(), None, 2).await.unwrap();
    assert_eq!(page, ["a", "b"]);
    let (page, next) = reconcile_page(backend.as_ref(), next.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!((page, next), (vec!["c".to_string()], None));
    // A tenant that still has a destination stays; one without is dropped.
    assert!(!forget_unreconciled(backend.as_ref(), "a").await.unwrap());
    TenantStorage::new(backend.clone(), "a")
        .commit(
            vec![],
            vec![Op::Delete {
                key: "sync/destinations/in-mem/d".into(),
            }],
        )
        .await
        .unwrap();
    assert!(forget_unreconciled(backend.as_ref(), "a").await.unwrap());
    assert_eq!(keys(&backend, RECONCILE_INDEX).await, ["b", "c"]);
}

#[tokio::test]
async fn a_store_written_before_the_index_is_indexed_once() {
    let backend = shared();
    // Written as an older version did: the root tenant's keys, no index records.
    backend
        .commit(
            vec![],
            vec![
                put(&format!("tenants/root/{DUE_KEY}")),
                put("tenants/root/sync/due/in-mem/e/00000000000000000003/acc/x"),
                put("tenants/root/sync/jobs/purge/in-mem/d"),
                put("tenants/root/sync/destinations/in-mem/d"),
            ],
        )
        .await
        .unwrap();
    upgrade(backend.as_ref()).await.unwrap();
    assert_eq!(
        keys(&backend, "core/sync/").await,
        [
            "due/root/due/in-mem/d",
            "due/root/due/in-mem/e",
            "due/root/job/purge/in-mem/d",
            "indexed",
            "reconcile/root",
        ]
    );
    // Once: records dropped later are not filed again.
    backend
        .commit(
            vec![],
            vec![Op::Delete {
                key: "core/sync/reconcile/root".into(),
            }],
        )
        .await
        .unwrap();
    upgrade(backend.as_ref()).await.unwrap();
    assert!(
        backend
            .get("core/sync/reconcile/root")
            .await
            .unwrap()
            .is_none()
    );
}
