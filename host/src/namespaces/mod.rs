//! Namespaces: kvsync's tenants. Each namespace is a tenant whose id names
//! its storage prefix (`tenants/<id>/`), its policies and its tokens; the
//! root namespace is implicit (id `root`, path `""`).
//!
//! Records live under host-only keys, outside every tenant's view:
//!
//! - `core/namespaces/path/<path>`: the record ([`Record`]) of the namespace
//!   at `<path>` (`team-a/`, `team-a/ci/`), so resolving a path is one read
//!   and a namespace's direct children are one listing;
//! - `core/namespaces/id/<id>`: the path of namespace `<id>` (a token names
//!   its namespace by id);
//! - `core/namespaces/retired/<id>`: an empty marker left by a deletion, so
//!   an id is never given out twice;
//! - `core/namespaces/deleting/<id>`: a deletion whose contents are still
//!   being removed ([`purge`]); it resumes at the next start;
//! - `core/namespaces/closing/<id>`: a deletion checking that the namespace
//!   holds no sync associations (none can be set meanwhile); dropped at the
//!   next start if the process stopped during the check.
//!
//! Ids are 5 random base62 characters. Lookups are cached in memory, both
//! the namespaces that exist and the paths that name none, at most
//! [`MAX_CACHED`] entries (past that the cache starts over): a namespace
//! nobody addresses costs no memory. Any change of a namespace record, by
//! this process or by another host sharing the storage (reported by the
//! storage's change feed), empties the cache; while that feed is lost,
//! nothing is served from it.

mod purge;
mod resolve;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

pub use self::purge::Purger;
pub use self::resolve::{Addressed, resolve_request};
use crate::auth::policies::ROOT_NAMESPACE;
use crate::auth::{Namespace, PolicyStore, TokenStore, random_id};
use crate::storage::{
    CLOSING, Condition, Follower, Op, SharedBackend, StorageError, TenantStorage, closing_key,
    tenant_prefix,
};

const PREFIX: &str = "core/namespaces/";
const BY_PATH: &str = "core/namespaces/path/";
const BY_ID: &str = "core/namespaces/id/";
const RETIRED: &str = "core/namespaces/retired/";
const DELETING: &str = "core/namespaces/deleting/";

/// How many lookups the cache keeps (each way) before it starts over.
pub const MAX_CACHED: usize = 8192;

/// Names no namespace may take (they are path segments of Vault's API).
const RESERVED: &[&str] = &["root", "sys", "audit", "auth", "cubbyhole", "identity"];

/// One namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// From the root, with a trailing `/` (`team-a/ci/`); `""` for the root.
    pub path: String,
    /// `None` for the root namespace.
    pub parent_id: Option<String>,
    pub uuid: String,
    #[serde(default)]
    pub custom_metadata: BTreeMap<String, String>,
}

impl Record {
    /// The implicit root namespace.
    pub fn root() -> Record {
        Record {
            id: ROOT_NAMESPACE.to_string(),
            path: String::new(),
            parent_id: None,
            uuid: String::new(),
            custom_metadata: BTreeMap::new(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.id == ROOT_NAMESPACE
    }

    /// The namespace as policies and tokens see it.
    pub fn namespace(&self) -> Namespace {
        Namespace {
            id: self.id.clone(),
            path: self.path.clone(),
        }
    }

    /// Its path relative to `ancestor`'s (`ci/` under `team-a/`).
    pub fn relative_to(&self, ancestor: &str) -> String {
        self.path
            .strip_prefix(ancestor)
            .unwrap_or(&self.path)
            .to_string()
    }
}

/// Why a namespace operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// 400 with this message.
    #[error("{0}")]
    BadRequest(String),
    /// 404 with this message (empty: Vault's bare 404).
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The namespaces of a server with what serves their endpoints: the store,
/// the policy store (a new namespace gets its `default` policy) and the
/// purger of deleted ones. Cheap to clone.
#[derive(Clone)]
pub struct Tenancy {
    pub store: NamespaceStore,
    pub policies: PolicyStore,
    pub purger: Purger,
}

impl Tenancy {
    pub fn new(backend: &SharedBackend, tokens: &TokenStore, policies: &PolicyStore) -> Self {
        let store = NamespaceStore::new(backend.clone());
        Tenancy {
            purger: Purger::new(&store, tokens.clone()),
            policies: policies.clone(),
            store,
        }
    }

    /// Creates (or updates) the namespace `rel` under `base`; a new one gets
    /// its `default` policy.
    pub async fn create(
        &self,
        base: &Namespace,
        rel: &str,
        metadata: Option<BTreeMap<String, String>>,
    ) -> Result<Record, NamespaceError> {
        let record = self.store.create(base, rel, metadata).await?;
        self.policies.ensure_builtins(&record.namespace()).await?;
        Ok(record)
    }

    /// Deletes the namespace `rel` under `base` ([`NamespaceStore::delete`]).
    pub async fn delete(&self, base: &Namespace, rel: &str) -> Result<bool, NamespaceError> {
        self.store.delete(base, rel, &self.purger).await
    }

    /// Resumes the deletions a restart interrupted, and drops the marks of deletions that were
    /// still checking when it came (the request that made them is gone).
    pub async fn resume(&self) -> Result<(), StorageError> {
        let marks = list_all(self.store.backend(), CLOSING, None).await?;
        let ops: Vec<Op> = marks
            .into_iter()
            .map(|id| Op::Delete {
                key: format!("{CLOSING}{id}"),
            })
            .collect();
        if !ops.is_empty() {
            self.store.backend().commit(Vec::new(), ops).await?;
        }
        self.purger.resume(&self.store).await
    }
}

/// What a change of `custom_metadata` does to one key.
pub type MetadataPatch = BTreeMap<String, Option<String>>;

/// The namespace store of a server. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct NamespaceStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: SharedBackend,
    follower: Follower,
    cache: RwLock<Cache>,
}

#[derive(Default)]
struct Cache {
    by_path: HashMap<String, Option<Arc<Record>>>,
    by_id: HashMap<String, Option<Arc<Record>>>,
}

fn path_key(path: &str) -> String {
    format!("{BY_PATH}{path}")
}

fn id_key(id: &str) -> String {
    format!("{BY_ID}{id}")
}

fn decode(bytes: &[u8]) -> Result<Record, StorageError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StorageError::Unavailable(format!("corrupt namespace record: {e}")))
}

fn encode(record: &Record) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(record)
        .map_err(|e| StorageError::Unavailable(format!("cannot encode a namespace record: {e}")))
}

/// `path` canonical: no leading `/`, one trailing `/`, `""` for the root
/// (`root` names the root too).
pub fn canonical(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() || trimmed == ROOT_NAMESPACE {
        return String::new();
    }
    format!("{trimmed}/")
}

/// Refuses a name (one path segment) no namespace may have: reserved
/// names, empty segments, `.` and `..`, spaces, `+` and `*`, and
/// characters that are not printable.
pub fn validate_name(name: &str) -> Result<(), NamespaceError> {
    let bad = |m: String| Err(NamespaceError::BadRequest(m));
    if name.is_empty() || name == "." || name == ".." {
        return bad(format!("{name:?} is not a valid namespace name"));
    }
    if RESERVED.contains(&name) {
        return bad(format!(
            "\"{name}/\" is a reserved path and cannot be used as a namespace name"
        ));
    }
    if name.chars().any(char::is_whitespace) {
        return bad(format!(
            "{name:?} contains space characters that cannot be used in a namespace name"
        ));
    }
    if let Some(w) = name.chars().find(|c| *c == '+' || *c == '*') {
        return bad(format!(
            "{name:?} contains wildcard characters that cannot be used in a namespace name: '{w}'"
        ));
    }
    if name.chars().any(|c| c.is_control()) {
        return bad(format!(
            "{name:?} contains characters that cannot be used in a namespace name"
        ));
    }
    Ok(())
}

impl NamespaceStore {
    pub fn new(backend: SharedBackend) -> Self {
        NamespaceStore {
            inner: Arc::new(Inner {
                follower: Follower::new(backend.watch()),
                backend,
                cache: RwLock::new(Cache::default()),
            }),
        }
    }

    pub(crate) fn backend(&self) -> &SharedBackend {
        &self.inner.backend
    }

    /// Applies the changes the storage reported; whether the cache may serve.
    fn catch_up(&self) -> bool {
        let stale = std::cell::Cell::new(false);
        let serve = self.inner.follower.catch_up(
            |keys| {
                if keys.iter().any(|k| k.starts_with(PREFIX)) {
                    stale.set(true);
                }
            },
            || stale.set(true),
        );
        if stale.get() {
            self.forget();
        }
        serve
    }

    /// Empties the cache (a namespace changed).
    fn forget(&self) {
        let mut cache = self.inner.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.by_path.clear();
        cache.by_id.clear();
    }

    /// What the cache says (`None`: it does not know, or may not serve).
    fn cached(
        &self,
        find: impl FnOnce(&Cache) -> Option<Option<Arc<Record>>>,
    ) -> Option<Option<Arc<Record>>> {
        if !self.catch_up() {
            return None;
        }
        find(&self.inner.cache.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn remember(&self, path: Option<&str>, id: Option<&str>, record: Option<Arc<Record>>) {
        if self.inner.follower.is_lost() {
            return;
        }
        let mut cache = self.inner.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.by_path.len() >= MAX_CACHED || cache.by_id.len() >= MAX_CACHED {
            cache.by_path.clear();
            cache.by_id.clear();
        }
        if let Some(path) = path {
            cache.by_path.insert(path.to_string(), record.clone());
        }
        if let Some(id) = id {
            cache.by_id.insert(id.to_string(), record);
        }
    }

    /// The namespace at `path` (canonical: `team-a/`; `""` is the root).
    pub async fn by_path(&self, path: &str) -> Result<Option<Arc<Record>>, StorageError> {
        if path.is_empty() {
            return Ok(Some(Arc::new(Record::root())));
        }
        if let Some(hit) = self.cached(|c| c.by_path.get(path).cloned()) {
            return Ok(hit);
        }
        let found = match self.backend().get(&path_key(path)).await? {
            Some(entry) => Some(Arc::new(decode(&entry.value)?)),
            None => None,
        };
        let id = found.as_ref().map(|r| r.id.clone());
        self.remember(Some(path), id.as_deref(), found.clone());
        Ok(found)
    }

    /// The namespace with id `id` (`root` is the root).
    pub async fn by_id(&self, id: &str) -> Result<Option<Arc<Record>>, StorageError> {
        if id == ROOT_NAMESPACE {
            return Ok(Some(Arc::new(Record::root())));
        }
        if let Some(hit) = self.cached(|c| c.by_id.get(id).cloned()) {
            return Ok(hit);
        }
        let path = match self.backend().get(&id_key(id)).await? {
            Some(entry) => String::from_utf8(entry.value).ok(),
            None => None,
        };
        let found = match path {
            Some(path) => match self.backend().get(&path_key(&path)).await? {
                Some(entry) => Some(Arc::new(decode(&entry.value)?)).filter(|r| r.id == id),
                None => None,
            },
            None => None,
        };
        let path = found.as_ref().map(|r| r.path.clone());
        self.remember(path.as_deref(), Some(id), found.clone());
        Ok(found)
    }

    /// The direct children of `parent`, sorted by path.
    pub async fn children(&self, parent: &Namespace) -> Result<Vec<Record>, StorageError> {
        // A child's own key ends in `/`, as does the folder of its
        // children: one entry per child.
        let mut out = Vec::new();
        for name in list_folders(self.backend(), &path_key(&parent.path)).await? {
            let path = format!("{}{name}", parent.path);
            if let Some(entry) = self.backend().get(&path_key(&path)).await? {
                out.push(decode(&entry.value)?);
            }
        }
        Ok(out)
    }

    /// The parent of the namespace `rel` (relative to `base`, canonical)
    /// names, and its own path; the parent must exist.
    async fn parent_of(
        &self,
        base: &Namespace,
        rel: &str,
    ) -> Result<(Arc<Record>, String, String), NamespaceError> {
        let rel = rel.trim_matches('/');
        let mut segments: Vec<&str> = rel.split('/').collect();
        let Some(name) = segments.pop() else {
            return Err(NamespaceError::BadRequest(
                "a namespace path is required".to_string(),
            ));
        };
        for segment in segments.iter().chain(std::iter::once(&name)) {
            validate_name(segment)?;
        }
        let parent_path = match segments.is_empty() {
            true => base.path.clone(),
            false => format!("{}{}/", base.path, segments.join("/")),
        };
        let Some(parent) = self.by_path(&parent_path).await? else {
            return Err(NamespaceError::BadRequest(format!(
                "parent namespace {parent_path:?} does not exist"
            )));
        };
        let path = format!("{parent_path}{name}/");
        Ok((parent, path, name.to_string()))
    }

    /// The namespace `rel` names under `base` (`None` when there is none).
    pub async fn lookup(
        &self,
        base: &Namespace,
        rel: &str,
    ) -> Result<Option<Arc<Record>>, NamespaceError> {
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            return Err(NamespaceError::BadRequest(
                "a namespace path is required".to_string(),
            ));
        }
        Ok(self.by_path(&format!("{}{rel}/", base.path)).await?)
    }

    /// The mount paths of the secrets engines of namespace `id`, sorted,
    /// from its mount table.
    pub async fn mount_paths(&self, id: &str) -> Result<Vec<String>, StorageError> {
        use kvsync_component::sys::mounts::{MOUNT_TABLE_KEY, MountTable};
        let tenant = TenantStorage::new(self.backend().clone(), id);
        let Some(entry) = tenant.get(MOUNT_TABLE_KEY).await? else {
            return Ok(Vec::new());
        };
        let table: MountTable = serde_json::from_slice(&entry.value)
            .map_err(|e| StorageError::Unavailable(format!("corrupt mount table: {e}")))?;
        let mut paths: Vec<String> = table.entries.into_iter().map(|m| m.path).collect();
        paths.sort();
        Ok(paths)
    }

    /// Creates the namespace `rel` under `base` (nested paths need their
    /// parent to exist); on an existing one, replaces its metadata when
    /// `metadata` is given.
    pub async fn create(
        &self,
        base: &Namespace,
        rel: &str,
        metadata: Option<BTreeMap<String, String>>,
    ) -> Result<Record, NamespaceError> {
        let (parent, path, _) = self.parent_of(base, rel).await?;
        for _ in 0..8 {
            let existing = self.backend().get(&path_key(&path)).await?;
            let (record, conditions, extra) = match existing {
                Some(entry) => {
                    let mut record = decode(&entry.value)?;
                    match metadata.clone() {
                        Some(m) => record.custom_metadata = m,
                        None => return Ok(record),
                    }
                    let condition = Condition {
                        key: path_key(&path),
                        version: Some(entry.version),
                    };
                    (record, vec![condition], Vec::new())
                }
                None => {
                    let id = self.fresh_id().await?;
                    let record = Record {
                        id: id.clone(),
                        path: path.clone(),
                        parent_id: Some(parent.id.clone()),
                        uuid: uuid(),
                        custom_metadata: metadata.clone().unwrap_or_default(),
                    };
                    let conditions = vec![
                        Condition {
                            key: path_key(&path),
                            version: None,
                        },
                        Condition {
                            key: id_key(&id),
                            version: None,
                        },
                    ];
                    let mut extra = vec![Op::Put {
                        key: id_key(&id),
                        value: path.clone().into_bytes(),
                    }];
                    // Rewriting the parent makes a deletion of it that
                    // raced this creation (it saw no children) conflict.
                    if !parent.is_root() {
                        extra.push(Op::Put {
                            key: path_key(&parent.path),
                            value: encode(&parent)?,
                        });
                    }
                    (record, conditions, extra)
                }
            };
            let conditions = self.parent_condition(conditions, &parent).await?;
            let mut ops = vec![Op::Put {
                key: path_key(&path),
                value: encode(&record)?,
            }];
            ops.extend(extra);
            if self.try_commit(conditions, ops).await? {
                return Ok(record);
            }
        }
        Err(kept_changing())
    }

    /// Commits a change to the namespaces: `false` when another commit got
    /// there first (read again and retry); a commit made drops what the
    /// cache holds.
    async fn try_commit(
        &self,
        conditions: Vec<Condition>,
        ops: Vec<Op>,
    ) -> Result<bool, NamespaceError> {
        match self.backend().commit(conditions, ops).await {
            Ok(_) => {
                self.forget();
                Ok(true)
            }
            Err(StorageError::Conflict) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds the condition that the parent still exists, unchanged (none for
    /// the root, which has no record).
    async fn parent_condition(
        &self,
        mut conditions: Vec<Condition>,
        parent: &Record,
    ) -> Result<Vec<Condition>, NamespaceError> {
        let key = path_key(&parent.path);
        if !parent.is_root() {
            let Some(entry) = self.backend().get(&key).await? else {
                return Err(NamespaceError::BadRequest(format!(
                    "parent namespace {:?} does not exist",
                    parent.path
                )));
            };
            conditions.push(Condition {
                key,
                version: Some(entry.version),
            });
        }
        Ok(conditions)
    }

    /// An id no namespace has had.
    async fn fresh_id(&self) -> Result<String, StorageError> {
        for _ in 0..16 {
            let id = random_id(5)?;
            if id == ROOT_NAMESPACE {
                continue;
            }
            if self.backend().get(&id_key(&id)).await?.is_none()
                && self
                    .backend()
                    .get(&format!("{RETIRED}{id}"))
                    .await?
                    .is_none()
            {
                return Ok(id);
            }
        }
        Err(StorageError::Unavailable(
            "no free namespace id found".to_string(),
        ))
    }

    /// Applies `patch` to the metadata of the namespace `rel` under `base`
    /// (a `None` value removes the key); `NotFound` when there is none.
    pub async fn patch(
        &self,
        base: &Namespace,
        rel: &str,
        patch: &MetadataPatch,
    ) -> Result<Record, NamespaceError> {
        for _ in 0..8 {
            let path = format!("{}{}/", base.path, rel.trim_matches('/'));
            let Some(entry) = self.backend().get(&path_key(&path)).await? else {
                return Err(NamespaceError::NotFound("namespace not found".to_string()));
            };
            let mut record = decode(&entry.value)?;
            for (k, v) in patch {
                match v {
                    Some(v) => record.custom_metadata.insert(k.clone(), v.clone()),
                    None => record.custom_metadata.remove(k),
                };
            }
            let condition = Condition {
                key: path_key(&path),
                version: Some(entry.version),
            };
            let op = Op::Put {
                key: path_key(&path),
                value: encode(&record)?,
            };
            if self.try_commit(vec![condition], vec![op]).await? {
                return Ok(record);
            }
        }
        Err(kept_changing())
    }

    /// Deletes the namespace `rel` under `base`: refused while it has child
    /// namespaces, or sync destinations with associations; otherwise it is
    /// gone at once (its tokens stop working, requests to it answer 404)
    /// and its contents are removed by `purger`. `false`: there was no
    /// such namespace.
    pub async fn delete(
        &self,
        base: &Namespace,
        rel: &str,
        purger: &Purger,
    ) -> Result<bool, NamespaceError> {
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            return Err(NamespaceError::BadRequest(
                "a namespace path is required".to_string(),
            ));
        }
        let path = format!("{}{rel}/", base.path);
        let Some(entry) = self.backend().get(&path_key(&path)).await? else {
            return Ok(false);
        };
        let record = decode(&entry.value)?;
        if !self.children(&record.namespace()).await?.is_empty() {
            return Err(NamespaceError::BadRequest(format!(
                "child namespaces exist under path {path:?}, cannot remove"
            )));
        }
        // Mark the tenant first: from the mark's commit on, no request of it can set an
        // association (its commit is conditioned on the mark's absence), so what the check below
        // sees is all there will be. The deletion is conditioned on the record it read, and the
        // mark goes with it, or when the deletion is refused.
        let closing = closing_key(&record.id);
        let record_unchanged = Condition {
            key: path_key(&path),
            version: Some(entry.version),
        };
        let marked = self
            .backend()
            .commit(
                vec![
                    record_unchanged.clone(),
                    Condition {
                        key: closing.clone(),
                        version: None,
                    },
                ],
                vec![Op::Put {
                    key: closing.clone(),
                    value: Vec::new(),
                }],
            )
            .await;
        match marked {
            Ok(_) => {}
            Err(StorageError::Conflict) => return Err(changed_meanwhile().into()),
            Err(e) => return Err(e.into()),
        }
        let deleted = self
            .close(record, path, record_unchanged, &closing, purger)
            .await;
        if !matches!(deleted, Ok(true)) {
            let unmark = vec![Op::Delete { key: closing }];
            if let Err(e) = self.backend().commit(Vec::new(), unmark).await {
                tracing::warn!(error = %e, "a refused namespace deletion left its mark; it goes at the next start");
            }
        }
        deleted
    }

    /// The part of [`NamespaceStore::delete`] run while the tenant is marked: the check for
    /// associations, then the deletion itself, which removes the mark.
    async fn close(
        &self,
        record: Record,
        path: String,
        record_unchanged: Condition,
        closing: &str,
        purger: &Purger,
    ) -> Result<bool, NamespaceError> {
        let held = associated_destinations(self.backend(), &record.id).await?;
        if !held.is_empty() {
            return Err(NamespaceError::BadRequest(format!(
                "namespace {path:?} still holds sync destinations with associations: {}; \
                 remove their associations (or purge the destinations) first: kvsync never \
                 deletes external secrets implicitly",
                held.join(", ")
            )));
        }
        let conditions = vec![record_unchanged];
        let ops = vec![
            Op::Delete {
                key: closing.to_string(),
            },
            Op::Delete {
                key: path_key(&path),
            },
            Op::Delete {
                key: id_key(&record.id),
            },
            Op::Put {
                key: format!("{RETIRED}{}", record.id),
                value: Vec::new(),
            },
            Op::Put {
                key: format!("{DELETING}{}", record.id),
                value: encode(&record)?,
            },
        ];
        match self.backend().commit(conditions, ops).await {
            Ok(_) => {}
            Err(StorageError::Conflict) => return Err(changed_meanwhile().into()),
            Err(e) => return Err(e.into()),
        }
        self.forget();
        purger.remove(record.id).await;
        Ok(true)
    }

    /// The ids of the deletions whose contents are still being removed.
    pub async fn pending_deletions(&self) -> Result<Vec<String>, StorageError> {
        list_all(self.backend(), DELETING, None).await
    }
}

/// A create's or a patch's refusal when every attempt lost its commit to another.
fn kept_changing() -> NamespaceError {
    StorageError::Unavailable("the namespace kept changing; retry the request".into()).into()
}

/// A deletion's refusal when the namespace changed (or another deletion of it ran) meanwhile.
fn changed_meanwhile() -> StorageError {
    StorageError::Unavailable("the namespace changed during its deletion; retry the request".into())
}

/// The sync destinations (`<type>/<name>`) of tenant `id` that hold
/// associations.
pub async fn associated_destinations(
    backend: &SharedBackend,
    id: &str,
) -> Result<Vec<String>, StorageError> {
    let root = format!(
        "{}{}",
        tenant_prefix(id),
        kvsync_component::sync::keys::ASSOCIATIONS
    );
    let mut out = Vec::new();
    for kind in list_folders(backend, &root).await? {
        for name in list_folders(backend, &format!("{root}{kind}")).await? {
            out.push(format!("{kind}{}", name.trim_end_matches('/')));
        }
    }
    Ok(out)
}

/// The folders (`x/`) directly under `prefix`.
async fn list_folders(backend: &SharedBackend, prefix: &str) -> Result<Vec<String>, StorageError> {
    let mut keys = list_all(backend, prefix, Some('/')).await?;
    keys.retain(|k| k.ends_with('/'));
    Ok(keys)
}

/// Every key under `prefix` (relative to it; with `delimiter`, folders
/// once each), page after page.
async fn list_all(
    backend: &SharedBackend,
    prefix: &str,
    delimiter: Option<char>,
) -> Result<Vec<String>, StorageError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = backend.list(prefix, after.as_deref(), delimiter, 0).await?;
        out.extend(page.keys);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}

/// A random UUID (version 4 layout), as Vault shows namespaces' `uuid`.
fn uuid() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        return String::new();
    }
    let h = hex::encode(b);
    let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or_default().to_string();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

#[cfg(test)]
mod tests;
