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
