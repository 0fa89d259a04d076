//! The ACL policy store: the named policies of each namespace, the built-in
//! `root` and `default`, and the compiled ACL of a set of policies.
//!
//! Records live at `core/policies/acl/<namespace id>/<name>` (host-only keys,
//! outside every tenant's view) and hold the policy text as written, base64
//! bodies decoded. Names are lower case. `root` is never stored: it cannot be
//! written or deleted, reads with an empty text and is listed last in the
//! root namespace. `default` is stored like any other policy: created with
//! its namespace (first start, dev mode, `operator init`), editable, not
//! deletable, and never overwritten once it exists.
//!
//! ACLs are compiled once per namespace and set of policy names, and cached
//! (at most [`MAX_CACHED_ACLS`] per namespace). Each namespace has a version
//! that every write or delete through the store bumps after its commit; an
//! ACL compiled at an older version is compiled again, so a change applies
//! from the next request on; a change committed by another host sharing the
//! storage (PostgreSQL) bumps it through the storage's change feed, applied
//! before every lookup ([`Follower`]), and while that feed is lost no ACL is
//! served from the cache. A policy that a token names but that does not
//! exist acts as an empty policy.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::ROOT_POLICY;
use super::policy::{Acl, DEFAULT_POLICY, DEFAULT_POLICY_TEXT, Policy, root_policy};
use crate::storage::{Condition, Follower, Op, SharedBackend, StorageError};

pub(crate) const PREFIX: &str = "core/policies/acl/";

/// How many compiled ACLs one namespace keeps; past that the cache starts over.
pub const MAX_CACHED_ACLS: usize = 4096;

/// Policy names the store refuses to write (Vault's immutable policies).
const IMMUTABLE: &[&str] = &[ROOT_POLICY, "response-wrapping", "control-group"];

/// A namespace as policies see it: its id names its records, its path
/// (`""` for the root namespace, `team-a/` otherwise) prefixes its rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Namespace {
    pub id: String,
    pub path: String,
}

/// The id of the root namespace.
pub const ROOT_NAMESPACE: &str = "root";

impl Namespace {
    pub fn root() -> Namespace {
        Namespace {
            id: ROOT_NAMESPACE.to_string(),
            path: String::new(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.id == ROOT_NAMESPACE
    }
}

/// Why the store refused a change, or could not answer.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    /// The request is invalid; the message is Vault's (a 400).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A stored policy, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPolicy {
    pub name: String,
    /// The document as written (base64 decoded); empty for `root`.
    pub text: String,
}

/// A stored policy. A text equal to [`DEFAULT_POLICY_TEXT`] is stored as a reference to it
/// (`builtin`: [`BUILTIN_DEFAULT`]) rather than copied: every namespace gets a `default` policy,
/// and its text would otherwise be most of what an idle namespace stores.
#[derive(Serialize, Deserialize)]
struct Record {
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    builtin: Option<String>,
}

/// The reference to [`DEFAULT_POLICY_TEXT`] in a stored record. The text it names is fixed: a
/// new built-in default text needs a new reference, so stored policies keep the text they had.
const BUILTIN_DEFAULT: &str = "default-1";

impl Record {
    /// The policy's text; `None` for a reference this version does not know.
    fn text(self) -> Option<String> {
        match self.builtin.as_deref() {
            None => Some(self.policy),
            Some(BUILTIN_DEFAULT) => Some(DEFAULT_POLICY_TEXT.to_string()),
            Some(_) => None,
        }
    }
}

/// The policy store of every namespace, with the compiled-ACL cache. Cheap to
/// clone (shared state).
#[derive(Clone)]
pub struct PolicyStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: SharedBackend,
    namespaces: RwLock<HashMap<String, Arc<NamespaceCache>>>,
    follower: Follower,
}

#[derive(Default)]
struct NamespaceCache {
    /// Bumped after every committed change of the namespace's policies.
    version: AtomicU64,
    /// Sorted, deduplicated policy names → their ACL.
    acls: RwLock<HashMap<Box<[String]>, Compiled>>,
}

/// An ACL and the namespace version it was compiled at.
struct Compiled {
    version: u64,
    acl: Arc<Acl>,
}

/// A policy name as stored: trimmed, lower case.
fn sanitize(name: &str) -> String {
    name.trim().to_lowercase()
}

fn key(ns: &Namespace, name: &str) -> String {
    format!("{PREFIX}{}/{name}", ns.id)
}

/// Names in the order the cache keys them: sorted, each once.
fn canonical(policies: &[String]) -> Cow<'_, [String]> {
    if policies.windows(2).all(|w| matches!(w, [a, b] if a < b)) {
        Cow::Borrowed(policies)
    } else {
        let mut sorted = policies.to_vec();
        sorted.sort();
        sorted.dedup();
        Cow::Owned(sorted)
    }
}

impl PolicyStore {
    pub fn new(backend: SharedBackend) -> Self {
        PolicyStore {
            inner: Arc::new(Inner {
                follower: Follower::new(backend.watch()),
                backend,
                namespaces: RwLock::new(HashMap::new()),
            }),
        }
    }

    fn namespace(&self, ns: &Namespace) -> Arc<NamespaceCache> {
        let known = self
            .inner
            .namespaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ns.id)
            .cloned();
        match known {
            Some(cache) => cache,
            None => self
                .inner
                .namespaces
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(ns.id.clone())
                .or_default()
                .clone(),
        }
    }

    /// The namespace's policies changed: ACLs compiled before are stale.
    fn changed(&self, ns: &Namespace) {
        self.namespace(ns).version.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies the policy changes the storage reported (another host's
    /// writes); whether cached ACLs may be served.
    fn catch_up(&self) -> bool {
        let bump = |id: &str| {
            let known = self
                .inner
                .namespaces
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .cloned();
            if let Some(cache) = known {
                cache.version.fetch_add(1, Ordering::AcqRel);
            }
        };
        self.inner.follower.catch_up(
            |keys| {
                for key in keys {
                    if let Some((id, _)) = key.strip_prefix(PREFIX).and_then(|k| k.split_once('/'))
                    {
                        bump(id);
                    }
                }
            },
            || {
                for cache in self
                    .inner
                    .namespaces
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                {
                    cache.version.fetch_add(1, Ordering::AcqRel);
                }
            },
        )
    }

    /// Creates the namespace's `default` policy unless it exists (an edited
    /// `default` is kept).
    pub async fn ensure_builtins(&self, ns: &Namespace) -> Result<(), StorageError> {
        let key = key(ns, DEFAULT_POLICY);
        let value = record(DEFAULT_POLICY, DEFAULT_POLICY_TEXT)?;
        match self
            .inner
            .backend
            .commit(
                vec![Condition {
                    key: key.clone(),
                    version: None,
                }],
                vec![Op::Put { key, value }],
            )
            .await
        {
            Ok(_) => {
                self.changed(ns);
                Ok(())
            }
            Err(StorageError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The policy `name` (any case); `None` when it does not exist.
    pub async fn read(
        &self,
        ns: &Namespace,
        name: &str,
    ) -> Result<Option<StoredPolicy>, StorageError> {
        let name = sanitize(name);
        if name == ROOT_POLICY {
            return Ok(ns.is_root().then(|| StoredPolicy {
                name,
                text: String::new(),
            }));
        }
        if name.is_empty() || name.contains('/') {
            return Ok(None);
        }
        let Some(entry) = self.inner.backend.get(&key(ns, &name)).await? else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(&entry.value)
            .map_err(|e| StorageError::Unavailable(format!("corrupt policy record: {e}")))?;
        let text = record.text().ok_or_else(|| {
            StorageError::Unavailable(format!(
                "the policy {name:?} refers to a built-in text this version does not know"
            ))
        })?;
        Ok(Some(StoredPolicy { name, text }))
    }

    /// Creates or replaces the policy `name` (lower-cased) with `text` (HCL
    /// or JSON, possibly base64): refused for `root`, or when it does not parse.
    pub async fn write(
        &self,
        ns: &Namespace,
        name: &str,
        text: &str,
    ) -> Result<(), PolicyStoreError> {
        let name = sanitize(name);
        if name.is_empty() {
            return Err(PolicyStoreError::Invalid(
                "policy name must be provided in the URL".to_string(),
            ));
        }
        if IMMUTABLE.contains(&name.as_str()) {
            return Err(PolicyStoreError::Invalid(format!(
                "cannot update {name:?} policy"
            )));
        }
        if name.contains('/') {
            return Err(PolicyStoreError::Invalid(format!(
                "invalid policy name {name:?}: a name cannot contain \"/\""
            )));
        }
        if text.trim().is_empty() {
            return Err(PolicyStoreError::Invalid(
                "'policy' parameter not supplied or empty".to_string(),
            ));
        }
        let policy = Policy::parse(&name, text)
            .map_err(|e| PolicyStoreError::Invalid(format!("failed to parse policy: {e}")))?;
        let value = record(&name, policy.text())?;
        self.inner
            .backend
            .commit(
                Vec::new(),
                vec![Op::Put {
                    key: key(ns, &name),
                    value,
                }],
            )
            .await?;
        self.changed(ns);
        Ok(())
    }

    /// Deletes the policy `name`; deleting one that does not exist is fine.
    /// `root` and `default` cannot be deleted.
    pub async fn delete(&self, ns: &Namespace, name: &str) -> Result<(), PolicyStoreError> {
        let name = sanitize(name);
        if IMMUTABLE.contains(&name.as_str()) {
            return Err(PolicyStoreError::Invalid(format!(
                "cannot delete {name:?} policy"
            )));
        }
        if name == DEFAULT_POLICY {
            return Err(PolicyStoreError::Invalid(
                "cannot delete default policy".to_string(),
            ));
        }
        if name.is_empty() || name.contains('/') {
            return Ok(());
        }
        self.inner
            .backend
            .commit(
                Vec::new(),
                vec![Op::Delete {
                    key: key(ns, &name),
                }],
            )
            .await?;
        self.changed(ns);
        Ok(())
    }

    /// The names of the namespace's policies, sorted; `root` last in the root
    /// namespace.
    pub async fn list(&self, ns: &Namespace) -> Result<Vec<String>, StorageError> {
        let prefix = format!("{PREFIX}{}/", ns.id);
        let mut names = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .inner
                .backend
                .list(&prefix, after.as_deref(), Some('/'), 0)
                .await?;
            names.extend(page.keys.into_iter().filter(|k| !k.ends_with('/')));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if ns.is_root() {
            names.push(ROOT_POLICY.to_string());
        }
        Ok(names)
    }

    /// The ACL of `policies` (names as a token holds them) in `ns`: from the
    /// cache when nothing changed since it was compiled.
    pub async fn acl(&self, ns: &Namespace, policies: &[String]) -> Result<Arc<Acl>, StorageError> {
        let serve = self.catch_up();
        let cache = self.namespace(ns);
        let version = cache.version.load(Ordering::Acquire);
        let names = canonical(policies);
        if serve
            && let Some(hit) = cache
                .acls
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&*names)
            && hit.version == version
        {
            return Ok(hit.acl.clone());
        }
        let mut loaded = Vec::with_capacity(names.len());
        for name in names.iter() {
            loaded.push(self.load(ns, name).await?);
        }
        let acl = Arc::new(Acl::new(&ns.path, loaded.iter()));
        let mut acls = cache.acls.write().unwrap_or_else(|e| e.into_inner());
        if acls.len() >= MAX_CACHED_ACLS {
            acls.clear();
        }
        acls.insert(
            names.into_owned().into_boxed_slice(),
            Compiled {
                version,
                acl: acl.clone(),
            },
        );
        Ok(acl)
    }

    /// The policy `name` for an ACL: `root`, the stored one, or an empty
    /// policy when there is none (or its record no longer parses).
    async fn load(&self, ns: &Namespace, name: &str) -> Result<Policy, StorageError> {
        if name == ROOT_POLICY && ns.is_root() {
            return Ok(root_policy());
        }
        let Some(stored) = self.read(ns, name).await? else {
            return Ok(Policy::empty(name));
        };
        Ok(Policy::parse(&stored.name, &stored.text).unwrap_or_else(|e| {
            tracing::warn!(policy = %stored.name, error = %e, "a stored policy no longer parses; it grants nothing");
            Policy::empty(name)
        }))
    }
}

fn record(name: &str, text: &str) -> Result<Vec<u8>, StorageError> {
    let builtin = text == DEFAULT_POLICY_TEXT;
    serde_json::to_vec(&Record {
        name: name.to_string(),
        policy: if builtin {
            String::new()
        } else {
            text.to_string()
        },
        builtin: builtin.then(|| BUILTIN_DEFAULT.to_string()),
    })
    .map_err(|e| StorageError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::Operation;
    use crate::storage::{Barrier, EncryptionKey, RedbBackend};

    fn store() -> PolicyStore {
        let backend: SharedBackend = Arc::new(Barrier::new(
            RedbBackend::in_memory().unwrap(),
            EncryptionKey::generate().unwrap(),
        ));
        PolicyStore::new(backend)
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const READ_SECRET: &str = r#"path "secret/data/*" { capabilities = ["read"] }"#;

    /// Two hosts sharing one storage: a policy another host rewrites or
    /// deletes applies on this host's next request, though this host had the
    /// old ACL compiled and cached (the storage's change feed).
    #[tokio::test]
    async fn another_hosts_policy_change_applies_on_the_next_request() {
        let backend: SharedBackend = Arc::new(Barrier::new(
            RedbBackend::in_memory().unwrap(),
            EncryptionKey::generate().unwrap(),
        ));
        let (a, b) = (PolicyStore::new(backend.clone()), PolicyStore::new(backend));
        let ns = Namespace::root();
        let reads = |acl: &Acl| acl.allows(Operation::Read, "secret/data/x").allowed();
        a.write(&ns, "app", READ_SECRET).await.unwrap();
        assert!(reads(&b.acl(&ns, &names(&["app"])).await.unwrap()));
        a.write(
            &ns,
            "app",
            r#"path "secret/data/*" { capabilities = ["deny"] }"#,
        )
        .await
        .unwrap();
        assert!(!reads(&b.acl(&ns, &names(&["app"])).await.unwrap()));
        a.write(&ns, "app", READ_SECRET).await.unwrap();
        assert!(reads(&b.acl(&ns, &names(&["app"])).await.unwrap()));
        a.delete(&ns, "app").await.unwrap();
        assert!(!reads(&b.acl(&ns, &names(&["app"])).await.unwrap()));
    }

    #[tokio::test]
    async fn crud_with_the_builtins() {
        let s = store();
        let ns = Namespace::root();
        assert_eq!(s.list(&ns).await.unwrap(), ["root"]);
        s.ensure_builtins(&ns).await.unwrap();
        assert_eq!(s.list(&ns).await.unwrap(), ["default", "root"]);
        let default = s.read(&ns, "default").await.unwrap().unwrap();
        assert_eq!(default.text, DEFAULT_POLICY_TEXT);

        // Names are folded to lower case; reads find them in any case.
        s.write(&ns, " Reader ", READ_SECRET).await.unwrap();
        let read = s.read(&ns, "READER").await.unwrap().unwrap();
        assert_eq!(
            (read.name.as_str(), read.text.as_str()),
            ("reader", READ_SECRET)
        );
        s.write(&ns, "zeta", READ_SECRET).await.unwrap();
        assert_eq!(
            s.list(&ns).await.unwrap(),
            ["default", "reader", "zeta", "root"]
        );

        // Base64 bodies are stored decoded.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(READ_SECRET);
        s.write(&ns, "b64", &b64).await.unwrap();
        assert_eq!(s.read(&ns, "b64").await.unwrap().unwrap().text, READ_SECRET);

        // root reads empty and cannot change; default cannot be deleted.
        let root = s.read(&ns, "root").await.unwrap().unwrap();
        assert_eq!(root.text, "");
        let refused = |r: Result<(), PolicyStoreError>| match r {
            Err(PolicyStoreError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused(s.write(&ns, "root", READ_SECRET).await),
            "cannot update \"root\" policy"
        );
        assert_eq!(
            refused(s.delete(&ns, "Root").await),
            "cannot delete \"root\" policy"
        );
        assert_eq!(
            refused(s.delete(&ns, "default").await),
            "cannot delete default policy"
        );
        assert!(
            refused(
                s.write(&ns, "bad", r#"path "x" { capabilities = ["banana"] }"#)
                    .await
            )
            .starts_with("failed to parse policy: ")
        );
        assert_eq!(
            refused(s.write(&ns, "empty", " ").await),
            "'policy' parameter not supplied or empty"
        );
        assert!(s.read(&ns, "bad").await.unwrap().is_none());

        // default is editable, and an edited default survives a restart.
        s.write(&ns, "default", READ_SECRET).await.unwrap();
        s.ensure_builtins(&ns).await.unwrap();
        assert_eq!(
            s.read(&ns, "default").await.unwrap().unwrap().text,
            READ_SECRET
        );

        s.delete(&ns, "reader").await.unwrap();
        s.delete(&ns, "never-existed").await.unwrap();
        assert!(s.read(&ns, "reader").await.unwrap().is_none());
        assert_eq!(
            s.list(&ns).await.unwrap(),
            ["b64", "default", "zeta", "root"]
        );
    }

    #[tokio::test]
    async fn a_change_applies_to_the_next_acl() {
        let s = store();
        let ns = Namespace::root();
        let policies = names(&["default", "reader"]);
        // A policy that does not exist acts as an empty one.
        let before = s.acl(&ns, &policies).await.unwrap();
        assert!(!before.allows(Operation::Read, "secret/data/a").allowed());
        // Unchanged: the same compiled ACL, whatever order the names come in.
        let again = s
            .acl(&ns, &names(&["reader", "default", "reader"]))
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&before, &again));

        s.write(&ns, "reader", READ_SECRET).await.unwrap();
        let after = s.acl(&ns, &policies).await.unwrap();
        assert!(!Arc::ptr_eq(&before, &after));
        assert!(after.allows(Operation::Read, "secret/data/a").allowed());
        assert!(!after.allows(Operation::Update, "secret/data/a").allowed());

        s.delete(&ns, "reader").await.unwrap();
        let deleted = s.acl(&ns, &policies).await.unwrap();
        assert!(!deleted.allows(Operation::Read, "secret/data/a").allowed());
    }

    #[tokio::test]
    async fn root_is_root_and_unknown_names_grant_nothing() {
        let s = store();
        let ns = Namespace::root();
        let root = s.acl(&ns, &names(&["root"])).await.unwrap();
        assert!(root.is_root());
        assert!(root.allows(Operation::Delete, "sys/anything").permits(true));
        let none = s.acl(&ns, &[]).await.unwrap();
        assert!(
            !none
                .allows(Operation::Read, "auth/token/lookup-self")
                .allowed()
        );
        let ghost = s.acl(&ns, &names(&["ghost"])).await.unwrap();
        assert!(!ghost.allows(Operation::Read, "secret/data/a").allowed());
    }

    /// Stores `value` as the namespace's `default` record, bypassing the store.
    async fn put_raw(s: &PolicyStore, ns: &Namespace, value: Vec<u8>) {
        let op = Op::Put {
            key: key(ns, DEFAULT_POLICY),
            value,
        };
        s.inner.backend.commit(Vec::new(), vec![op]).await.unwrap();
    }

    #[tokio::test]
    async fn the_default_text_is_stored_as_a_reference() {
        let s = store();
        let ns = Namespace {
            id: "abcde".into(),
            path: "team-a/".into(),
        };
        s.ensure_builtins(&ns).await.unwrap();
        let stored = s
            .inner
            .backend
            .get(&key(&ns, DEFAULT_POLICY))
            .await
            .unwrap()
            .unwrap();
        assert!(stored.value.len() < 100, "{}", stored.value.len());
        let read = s.read(&ns, DEFAULT_POLICY).await.unwrap().unwrap();
        assert_eq!(read.text, DEFAULT_POLICY_TEXT);
        // A record written in full (by an earlier version) reads the same.
        let full = serde_json::to_vec(
            &serde_json::json!({"name": "default", "policy": DEFAULT_POLICY_TEXT}),
        )
        .unwrap();
        put_raw(&s, &ns, full).await;
        assert_eq!(
            s.read(&ns, DEFAULT_POLICY).await.unwrap().unwrap().text,
            DEFAULT_POLICY_TEXT
        );
        // An edited default is stored as written; a reference this version does not know is
        // an error, not an empty policy.
        let edited = "path \"x\" { capabilities = [\"read\"] }";
        s.write(&ns, DEFAULT_POLICY, edited).await.unwrap();
        assert_eq!(
            s.read(&ns, DEFAULT_POLICY).await.unwrap().unwrap().text,
            edited
        );
        let unknown = br#"{"name":"default","builtin":"default-99"}"#.to_vec();
        put_raw(&s, &ns, unknown).await;
        assert!(s.read(&ns, DEFAULT_POLICY).await.is_err());
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let s = store();
        let ns = Namespace::root();
        for i in 0..=MAX_CACHED_ACLS {
            s.acl(&ns, &names(&[&format!("p{i}")])).await.unwrap();
        }
        let cached = s.namespace(&ns).acls.read().unwrap().len();
        assert!(cached <= MAX_CACHED_ACLS, "{cached}");
    }
}
