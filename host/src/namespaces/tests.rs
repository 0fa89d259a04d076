use std::sync::Arc;

use super::*;
use crate::auth::tokens::{CreateRequest, Scope};
use crate::auth::{PolicyStore, TokenStore};
use crate::storage::{Barrier, EncryptionKey, RedbBackend};

fn backend() -> SharedBackend {
    Arc::new(Barrier::new(
        RedbBackend::in_memory().unwrap(),
        EncryptionKey::generate().unwrap(),
    ))
}

async fn keys_under(backend: &SharedBackend, prefix: &str) -> Vec<String> {
    backend.list(prefix, None, None, 0).await.unwrap().keys
}

#[tokio::test]
async fn create_read_list_patch_nested() {
    let store = NamespaceStore::new(backend());
    let root = Record::root().namespace();
    let a = store.create(&root, "team-a", None).await.unwrap();
    assert_eq!(a.path, "team-a/");
    assert_eq!(a.id.len(), 5);
    assert_eq!(a.parent_id.as_deref(), Some("root"));
    // Nested, by path from the root or from the parent.
    let ci = store.create(&root, "team-a/ci/", None).await.unwrap();
    assert_eq!(ci.path, "team-a/ci/");
    assert_eq!(ci.parent_id.as_deref(), Some(a.id.as_str()));
    let dev = store.create(&a.namespace(), "dev", None).await.unwrap();
    assert_eq!(dev.path, "team-a/dev/");
    // The parent must exist.
    assert!(matches!(
        store.create(&root, "nope/ci", None).await,
        Err(NamespaceError::BadRequest(_))
    ));
    for bad in ["sys", "root", "a b", "a+b", "x*", "..", "a//b"] {
        assert!(
            matches!(
                store.create(&root, bad, None).await,
                Err(NamespaceError::BadRequest(_))
            ),
            "{bad}"
        );
    }
    let children: Vec<String> = store
        .children(&root)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(children, ["team-a/"]);
    let children: Vec<String> = store
        .children(&a.namespace())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(children, ["team-a/ci/", "team-a/dev/"]);
    // POST on an existing one replaces its metadata.
    let meta = BTreeMap::from([("owner".to_string(), "alice".to_string())]);
    let again = store.create(&root, "team-a", Some(meta)).await.unwrap();
    assert_eq!(again.id, a.id);
    assert_eq!(again.custom_metadata["owner"], "alice");
    let patched = store
        .patch(
            &root,
            "team-a",
            &BTreeMap::from([
                ("owner".to_string(), None),
                ("team".to_string(), Some("x".to_string())),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.custom_metadata,
        BTreeMap::from([("team".to_string(), "x".to_string())])
    );
    assert!(matches!(
        store.patch(&root, "zzz", &MetadataPatch::new()).await,
        Err(NamespaceError::NotFound(_))
    ));
    assert_eq!(
        store.by_id(&ci.id).await.unwrap().unwrap().path,
        "team-a/ci/"
    );
    assert_eq!(
        store.by_path("team-a/ci/").await.unwrap().unwrap().id,
        ci.id
    );
}

#[tokio::test]
async fn requests_are_addressed_by_header_and_path_prefix() {
    let store = NamespaceStore::new(backend());
    let root = Record::root().namespace();
    store.create(&root, "team-a", None).await.unwrap();
    let ci = store.create(&root, "team-a/ci", None).await.unwrap();
    for (header, path) in [
        (None, "team-a/ci/secret/data/x"),
        (Some("team-a/ci/"), "secret/data/x"),
        (Some("/team-a/ci"), "/secret/data/x"),
        (Some("team-a"), "ci/secret/data/x"),
        (Some("team-a/"), "/ci/secret/data/x"),
    ] {
        let a = resolve_request(&store, header, path).await.unwrap();
        assert_eq!(a.namespace.unwrap().id, ci.id, "{header:?} {path}");
        assert_eq!(a.path, "secret/data/x");
    }
    for header in [None, Some(""), Some("/"), Some("root"), Some("root/")] {
        let a = resolve_request(&store, header, "secret/data/x")
            .await
            .unwrap();
        assert!(a.namespace.unwrap().is_root());
        assert_eq!(a.path, "secret/data/x");
    }
    // A segment that names no namespace is the request path.
    let a = resolve_request(&store, None, "nope/secret/x")
        .await
        .unwrap();
    assert!(a.namespace.unwrap().is_root());
    assert_eq!(a.path, "nope/secret/x");
    // The header must name a namespace.
    let a = resolve_request(&store, Some("nope"), "secret/x")
        .await
        .unwrap();
    assert!(a.namespace.is_none());
}

#[tokio::test]
async fn another_hosts_change_is_seen() {
    // Two stores over one backend stand for two hosts: the second caches
    // "no such namespace", then sees the first one's creation once the
    // change feed reports it (redb's feed is this process's commits).
    let backend = backend();
    let one = NamespaceStore::new(backend.clone());
    let two = NamespaceStore::new(backend.clone());
    assert!(two.by_path("team-a/").await.unwrap().is_none());
    one.create(&Record::root().namespace(), "team-a", None)
        .await
        .unwrap();
    if backend.watch().is_some() {
        assert!(two.by_path("team-a/").await.unwrap().is_some());
    }
}

#[tokio::test]
async fn deletion_removes_everything_and_retires_the_id() {
    let backend = backend();
    let store = NamespaceStore::new(backend.clone());
    let tokens = TokenStore::new(backend.clone());
    let policies = PolicyStore::new(backend.clone());
    let purger = Purger::new(&store, tokens.clone());
    let root = Record::root().namespace();
    let a = store.create(&root, "team-a", None).await.unwrap();
    let ci = store.create(&a.namespace(), "ci", None).await.unwrap();
    let ns = a.namespace();
    policies.ensure_builtins(&ns).await.unwrap();
    // A token of team-a, created by a root token.
    let root_token = tokens.create_root(None).await.unwrap();
    let caller = tokens
        .resolve(root_token.token.clone())
        .await
        .unwrap()
        .unwrap();
    let acl = policies
        .acl(&crate::auth::Namespace::root(), &caller.policies)
        .await
        .unwrap();
    let scope = Scope {
        namespace_id: &a.id,
        namespace_path: &a.path,
        caller: Some(&caller),
        acl: Some(&acl),
    };
    let issued = tokens
        .create(
            &scope,
            &CreateRequest {
                policies: Some(vec!["team".into()]),
                ..CreateRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(issued.info.namespace_path, "team-a/");
    // Tenant data.
    let tenant = crate::storage::TenantStorage::new(backend.clone(), &a.id);
    tenant
        .commit(
            Vec::new(),
            vec![Op::Put {
                key: "logical/x".into(),
                value: b"v".to_vec(),
            }],
        )
        .await
        .unwrap();
    // Sync work and a destination: the commit files the tenant in the worker's index.
    let due = format!("{}in-mem/d1/0001", kvsync_component::sync::keys::DUE);
    let destination = format!("{}in-mem/d1", kvsync_component::sync::keys::DESTINATIONS);
    tenant
        .commit(
            Vec::new(),
            vec![
                Op::Put {
                    key: due,
                    value: b"{}".to_vec(),
                },
                Op::Put {
                    key: destination,
                    value: b"{}".to_vec(),
                },
            ],
        )
        .await
        .unwrap();
    let index = [
        crate::storage::sync_index::DUE_INDEX,
        crate::storage::sync_index::RECONCILE_INDEX,
    ];
    for prefix in index {
        assert!(
            keys_under(&backend, prefix)
                .await
                .iter()
                .any(|k| k.starts_with(&a.id)),
            "{prefix}"
        );
    }

    // Children first.
    assert!(matches!(
        store.delete(&root, "team-a", &purger).await,
        Err(NamespaceError::BadRequest(m)) if m.contains("child namespaces")
    ));
    assert!(store.delete(&a.namespace(), "ci", &purger).await.unwrap());
    assert!(store.by_id(&ci.id).await.unwrap().is_none());

    // Destinations with associations hold it.
    tenant
        .commit(
            Vec::new(),
            vec![Op::Put {
                key: "sync/associations/in-mem/d1/acc/s".into(),
                value: b"{}".to_vec(),
            }],
        )
        .await
        .unwrap();
    match store.delete(&root, "team-a", &purger).await {
        Err(NamespaceError::BadRequest(m)) => assert!(m.contains("in-mem/d1"), "{m}"),
        other => panic!("{other:?}"),
    }
    tenant
        .commit(
            Vec::new(),
            vec![Op::Delete {
                key: "sync/associations/in-mem/d1/acc/s".into(),
            }],
        )
        .await
        .unwrap();

    assert!(store.delete(&root, "team-a", &purger).await.unwrap());
    assert!(!store.delete(&root, "team-a", &purger).await.unwrap());
    assert!(store.by_path("team-a/").await.unwrap().is_none());
    assert!(store.by_id(&a.id).await.unwrap().is_none());
    // Nothing of it is left: tenant data, policies, tokens and their indexes.
    assert!(keys_under(&backend, &tenant_prefix(&a.id)).await.is_empty());
    assert!(
        keys_under(&backend, &format!("core/policies/acl/{}/", a.id))
            .await
            .is_empty()
    );
    assert!(
        tokens
            .resolve(issued_token(&issued))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        keys_under(&backend, &format!("core/token-namespaces/{}/", a.id))
            .await
            .is_empty()
    );
    assert!(keys_under(&backend, DELETING).await.is_empty());
    // Nor its records in the sync worker's index.
    for prefix in index {
        let left = keys_under(&backend, prefix).await;
        assert!(
            !left.iter().any(|k| k.starts_with(&a.id)),
            "{prefix}: {left:?}"
        );
    }
    // The root token is untouched; the id is retired.
    assert!(tokens.resolve(root_token.token).await.unwrap().is_some());
    assert_eq!(keys_under(&backend, RETIRED).await, {
        let mut ids = vec![a.id.clone(), ci.id.clone()];
        ids.sort();
        ids
    });
}

fn issued_token(issued: &crate::auth::tokens::Issued) -> crate::auth::Token {
    issued.info.id.clone().unwrap()
}

/// A backend that, once, right after a namespace deletion listed tenant `tenant`'s
/// associations, lets a request of that tenant set one: the request was past the namespace
/// lookup before the DELETE began and commits while the DELETE is between its check and its
/// commit.
struct AssociationAfterTheCheck {
    inner: SharedBackend,
    tenant: std::sync::Mutex<Option<String>>,
    set: std::sync::Mutex<Option<Result<u64, StorageError>>>,
}

#[async_trait::async_trait]
impl crate::storage::Backend for AssociationAfterTheCheck {
    async fn get(&self, key: &str) -> Result<Option<crate::storage::Entry>, StorageError> {
        self.inner.get(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<crate::storage::Page, StorageError> {
        let page = self.inner.list(prefix, after, delimiter, limit).await?;
        let checked = |id: &String| {
            prefix
                == format!(
                    "{}{}",
                    tenant_prefix(id),
                    kvsync_component::sync::keys::ASSOCIATIONS
                )
        };
        let racing = {
            let mut tenant = self.tenant.lock().unwrap();
            if tenant.as_ref().is_some_and(checked) {
                tenant.take()
            } else {
                None
            }
        };
        if let Some(id) = racing {
            let set = crate::storage::TenantStorage::new(self.inner.clone(), &id)
                .commit(
                    Vec::new(),
                    vec![Op::Put {
                        key: "sync/associations/in-mem/d1/acc/s".into(),
                        value: b"{}".to_vec(),
                    }],
                )
                .await;
            *self.set.lock().unwrap() = Some(set);
        }
        Ok(page)
    }

    async fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        self.inner.commit(conditions, ops).await
    }
}

/// Without the deletion's mark, the association set between the check and the deletion's
/// commit succeeded and the deletion then wiped it, leaving its external secret in place.
#[tokio::test]
async fn an_association_set_during_the_deletion_check_is_refused_not_lost() {
    let inner = backend();
    let racer = Arc::new(AssociationAfterTheCheck {
        inner: inner.clone(),
        tenant: std::sync::Mutex::new(None),
        set: std::sync::Mutex::new(None),
    });
    let shared: SharedBackend = racer.clone();
    let store = NamespaceStore::new(shared.clone());
    let purger = Purger::new(&store, TokenStore::new(shared.clone()));
    let root = Record::root().namespace();
    let a = store.create(&root, "team-a", None).await.unwrap();
    *racer.tenant.lock().unwrap() = Some(a.id.clone());

    let deleted = store.delete(&root, "team-a", &purger).await;
    let set = racer.set.lock().unwrap().take().expect("the race ran");
    assert!(
        matches!(set, Err(StorageError::Conflict)),
        "the association was set while the deletion checked: {set:?}"
    );
    assert!(deleted.unwrap());
    assert!(keys_under(&inner, &tenant_prefix(&a.id)).await.is_empty());
    assert!(keys_under(&inner, CLOSING).await.is_empty());
}

/// A refused deletion takes its mark away: the namespace sets associations again; a mark left
/// by a process that stopped mid-check goes at the next start.
#[tokio::test]
async fn a_refused_deletion_leaves_no_mark_and_stale_marks_go_at_start() {
    let backend = backend();
    let tokens = TokenStore::new(backend.clone());
    let tenancy = Tenancy::new(&backend, &tokens, &PolicyStore::new(backend.clone()));
    let root = Record::root().namespace();
    let a = tenancy.create(&root, "team-a", None).await.unwrap();
    let tenant = crate::storage::TenantStorage::new(backend.clone(), &a.id);
    let associate = |n: &str| {
        vec![Op::Put {
            key: format!("sync/associations/in-mem/d1/acc/{n}"),
            value: b"{}".to_vec(),
        }]
    };
    tenant.commit(Vec::new(), associate("s1")).await.unwrap();
    assert!(matches!(
        tenancy.delete(&root, "team-a").await,
        Err(NamespaceError::BadRequest(_))
    ));
    tenant.commit(Vec::new(), associate("s2")).await.unwrap();
    assert!(keys_under(&backend, CLOSING).await.is_empty());

    backend
        .commit(
            Vec::new(),
            vec![Op::Put {
                key: closing_key(&a.id),
                value: Vec::new(),
            }],
        )
        .await
        .unwrap();
    assert!(matches!(
        tenant.commit(Vec::new(), associate("s3")).await,
        Err(StorageError::Conflict)
    ));
    tenancy.resume().await.unwrap();
    tenant.commit(Vec::new(), associate("s3")).await.unwrap();
}
