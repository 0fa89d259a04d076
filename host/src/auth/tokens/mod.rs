//! The token store: Vault's token auth method, kept by the host.
//!
//! Tokens are `hvs.` and 24 random base62 characters (about 143 bits);
//! only their SHA-256 is stored ([`record`] has the layout). A token has a
//! parent unless it is an orphan, and the tree decides revocation: revoking
//! a token revokes every token under it, in one atomic commit, so no child
//! works once its parent's revocation has returned. Expired, revoked and
//! used-up tokens are refused on their next request, whatever the state of
//! their records; the records are then removed by the sweep ([`sweep`]),
//! which follows the expiry index in storage and so survives restarts.
//!
//! Every request resolves its token ([`TokenStore::authenticate`]): from a
//! cache of recent callers ([`cache`]) when the token has no use limit; a
//! token with `num_uses` spends one use per request, in storage, and is
//! revoked once the request that made its last use has been answered
//! ([`TokenStore::finish`]).
//!
//! The token auth method's endpoints reach the store through the engine's
//! `tokens` import, scoped to the request's namespace and caller ([`Scope`];
//! the operations on records are in `store.rs`, the walks of the token tree
//! and of a namespace's tokens in `index.rs`, the expiry sweep in [`sweep`]).
//!
//! Concurrent changes are safe without locks: every change is a
//! compare-and-swap commit over the records it read, run again when another
//! commit got there first. Creating a child rewrites its parent's record, so
//! a revocation that collected the tree before the child existed conflicts
//! and collects it again.

mod cache;
mod index;
pub mod lease;
mod record;
mod store;
pub mod sweep;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use self::cache::{Cached, CallerCache};
use self::record::{FORMAT, FORMAT_KEY, LeaseRecord, ROOT_NAMESPACE, TOKENS, TokenRecord};
use super::{Caller, ROOT_POLICY, Token};
use crate::storage::{Condition, Op, SharedBackend, StorageError};

pub use index::NamespaceRevoked;
pub use store::Scope;

/// How often a commit that lost a race is run again.
const CONFLICT_RETRIES: usize = 16;

/// How long a used-up token's record waits for the revocation that follows
/// its last request before the sweep removes it anyway (a crash, a request
/// that never finished).
const SPENT_GRACE_MS: u64 = 60_000;

/// An error that may be a commit's lost race (run the attempt again).
trait MayConflict {
    fn is_conflict(&self) -> bool;
}

impl MayConflict for StorageError {
    fn is_conflict(&self) -> bool {
        matches!(self, StorageError::Conflict)
    }
}

impl MayConflict for TokenError {
    fn is_conflict(&self) -> bool {
        matches!(self, TokenError::Storage(StorageError::Conflict))
    }
}

/// Runs `attempt` again while its commit loses a race to another, at most
/// [`CONFLICT_RETRIES`] times; then the storage is reported unavailable
/// (`what` kept changing).
async fn retrying<T, E, F, Fut>(what: &str, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: MayConflict + From<StorageError>,
{
    for _ in 0..CONFLICT_RETRIES {
        match attempt().await {
            Err(e) if e.is_conflict() => continue,
            other => return other,
        }
    }
    Err(StorageError::Unavailable(format!("{what}; retry the request")).into())
}

/// Why a token operation failed: Vault's answer, or the storage's failure.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// 400 with this message.
    #[error("{0}")]
    BadRequest(String),
    /// 403 with this message.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl TokenError {
    fn bad(message: impl Into<String>) -> Self {
        TokenError::BadRequest(message.into())
    }
}

/// Which token an operation is about.
#[derive(Clone)]
pub enum Target {
    /// The request's own token.
    Caller,
    Token(Token),
    Accessor(String),
}

/// What a create request asks for (0 and empty: unset).
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Served at `create-orphan`.
    pub orphan_endpoint: bool,
    pub policies: Option<Vec<String>>,
    pub meta: Option<Vec<(String, String)>>,
    pub no_parent: bool,
    pub no_default_policy: bool,
    pub renewable: bool,
    pub ttl: u64,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub display_name: String,
    pub num_uses: u64,
    pub id: Option<Token>,
}

/// A token's lease as lookups show it (nanoseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub issue_time: u64,
    pub expire_time: Option<u64>,
    pub last_renewal_time: Option<u64>,
    /// Whether a renewal would be accepted now.
    pub renewable: bool,
    /// Seconds left; 0 for a token that never expires.
    pub ttl: i64,
}

/// A token as lookups show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The token; `None` when it was named by its accessor.
    pub id: Option<Token>,
    pub accessor: String,
    pub policies: Vec<String>,
    pub path: String,
    pub meta: Option<Vec<(String, String)>>,
    pub display_name: String,
    pub num_uses: i64,
    pub orphan: bool,
    pub creation_time: u64,
    pub creation_ttl: u64,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub lease: LeaseInfo,
    /// Empty in the root namespace.
    pub namespace_path: String,
}

/// A token created or renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub info: TokenInfo,
    /// The TTL granted, in seconds.
    pub lease_duration: u64,
    pub renewable: bool,
    pub warnings: Vec<String>,
}

/// A newly created token, shown once.
#[derive(Debug)]
pub struct NewToken {
    pub token: Token,
    pub accessor: String,
}

/// A request's resolved caller.
#[derive(Debug)]
pub struct Authenticated {
    pub caller: Caller,
    /// Set when this request made the token's last use: pass it to
    /// [`TokenStore::finish`] once the request has been answered.
    pub spent: Option<Spent>,
}

/// A token whose last use has been made.
#[derive(Debug)]
pub struct Spent(String);

/// Where the store reads the time (tests set it).
pub trait Clock: Send + Sync {
    /// Nanoseconds since the Unix epoch.
    fn now(&self) -> u64;
}

struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

struct Inner {
    backend: SharedBackend,
    cache: CallerCache,
    clock: Arc<dyn Clock>,
    /// Wakes the sweep: a record may be due earlier than it planned.
    sweep_wake: Notify,
}

/// The token store of a server. Cheap to clone; clones share the caller
/// cache, so every part of a server must use clones of one store.
#[derive(Clone)]
pub struct TokenStore {
    inner: Arc<Inner>,
}

/// `n` random characters from [0-9A-Za-z].
pub fn random_id(n: usize) -> Result<String, StorageError> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut buf = [0u8; 64];
        getrandom::fill(&mut buf)
            .map_err(|e| StorageError::Unavailable(format!("no randomness: {e}")))?;
        // Rejection sampling keeps the distribution uniform.
        for b in buf {
            if out.len() < n
                && usize::from(b) < 248
                && let Some(c) = ALPHABET.get(usize::from(b) % 62)
            {
                out.push(char::from(*c));
            }
        }
    }
    Ok(out)
}

impl TokenStore {
    pub fn new(backend: SharedBackend) -> Self {
        Self::with_clock(backend, Arc::new(SystemClock))
    }

    pub fn with_clock(backend: SharedBackend, clock: Arc<dyn Clock>) -> Self {
        TokenStore {
            inner: Arc::new(Inner {
                cache: CallerCache::following(backend.watch()),
                backend,
                clock,
                sweep_wake: Notify::new(),
            }),
        }
    }

    fn backend(&self) -> &SharedBackend {
        &self.inner.backend
    }

    /// Every key under `prefix` (relative to it), page after page.
    async fn list_all(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .backend()
                .list(prefix, after.as_deref(), None, 0)
                .await?;
            keys.extend(page.keys);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(keys),
            }
        }
    }

    fn now(&self) -> u64 {
        self.inner.clock.now()
    }

    /// Creates a root token that never expires, as an orphan: the bootstrap
    /// root token, which looks itself up as Vault's initial root token does
    /// (`auth/token/root`, display name `root`; README "Where kvsync differs
    /// from Vault"). `id` chooses its value (dev mode's `--dev-root-token-id`).
    pub async fn create_root(&self, id: Option<String>) -> Result<NewToken, StorageError> {
        let token = match id {
            Some(id) if !id.is_empty() => Token::new(id),
            _ => Token::new(format!("hvs.{}", random_id(24)?)),
        };
        let (path, display_name) = ("auth/token/root", "root");
        let accessor = random_id(24)?;
        let now = self.now();
        let record = TokenRecord {
            accessor: accessor.clone(),
            display_name: display_name.to_string(),
            policies: vec![ROOT_POLICY.to_string()],
            path: path.to_string(),
            creation_time: now / 1_000_000_000,
            parent: String::new(),
            meta: None,
            num_uses: 0,
            ttl: 0,
            explicit_max_ttl: 0,
            period: 0,
            namespace_id: ROOT_NAMESPACE.to_string(),
            lease: Some(LeaseRecord {
                issue_time: now,
                expire_time: None,
                last_renewal_time: None,
                ttl: 0,
                renewable: false,
            }),
            sweep_at: None,
        };
        let hash = record::hash(token.expose());
        let (conditions, ops) = record::new_token(&hash, &record)?;
        self.backend().commit(conditions, ops).await?;
        Ok(NewToken { token, accessor })
    }

    /// Brings records written by earlier versions into the accessor index
    /// (once per storage: a marker records that it was done).
    pub async fn upgrade(&self) -> Result<(), StorageError> {
        let backend = self.backend();
        if backend.get(FORMAT_KEY).await?.is_some() {
            return Ok(());
        }
        let mut ops = Vec::new();
        for hash in self.list_all(TOKENS).await? {
            let Some(entry) = backend.get(&record::token_key(&hash)).await? else {
                continue;
            };
            let rec = TokenRecord::decode(&entry.value)?;
            let index = record::accessor_key(&rec.accessor);
            if backend.get(&index).await?.is_none() {
                ops.push(Op::Put {
                    key: index,
                    value: hash.into_bytes(),
                });
            }
        }
        ops.push(Op::Put {
            key: FORMAT_KEY.to_string(),
            value: FORMAT.to_vec(),
        });
        backend.commit(Vec::new(), ops).await?;
        Ok(())
    }

    /// The caller a request's token resolves to, spending one of its uses
    /// if it has a limit; `None` for a token that is unknown, revoked,
    /// expired or used up.
    pub async fn authenticate(&self, token: Token) -> Result<Option<Authenticated>, StorageError> {
        self.resolve_token(token, true).await
    }

    /// The caller `token` resolves to, without spending a use (paths
    /// served without a token, and the server's own setup).
    pub async fn resolve(&self, token: Token) -> Result<Option<Caller>, StorageError> {
        Ok(self.resolve_token(token, false).await?.map(|a| a.caller))
    }

    /// The caller whose token has `accessor`, without spending a use (the
    /// token itself stays unknown: the caller's is empty); `None` for an
    /// unknown accessor or a token that is not valid.
    pub async fn lookup_accessor(&self, accessor: &str) -> Result<Option<Caller>, StorageError> {
        if accessor.is_empty() {
            return Ok(None);
        }
        let backend = self.backend();
        let Some(hash) = backend
            .get(&record::accessor_key(accessor))
            .await?
            .and_then(|e| record::decode_hash(&e.value))
        else {
            return Ok(None);
        };
        let Some(entry) = backend.get(&record::token_key(&hash)).await? else {
            return Ok(None);
        };
        let rec = TokenRecord::decode(&entry.value)?;
        Ok(rec.usable(self.now()).then(|| Caller {
            token: Token::new(String::new()),
            accessor: rec.accessor,
            display_name: rec.display_name,
            policies: rec.policies,
            path: rec.path,
            creation_time: rec.creation_time,
            namespace_id: rec.namespace_id,
        }))
    }

    async fn resolve_token(
        &self,
        token: Token,
        spend: bool,
    ) -> Result<Option<Authenticated>, StorageError> {
        if token.is_empty() || token.len() > 512 {
            return Ok(None);
        }
        let hash = record::hash(token.expose());
        let now = self.now();
        if let Some(hit) = self.inner.cache.get(&hash) {
            if hit.expire_time.is_some_and(|e| e <= now) {
                return Ok(None);
            }
            return Ok(Some(Authenticated {
                caller: caller_of(token, hit),
                spent: None,
            }));
        }
        let generation = self.inner.cache.generation();
        retrying("the token's uses kept changing", || {
            self.try_resolve(&token, &hash, generation, now, spend)
        })
        .await
    }

    /// One attempt of [`TokenStore::resolve_token`] after a cache miss.
    async fn try_resolve(
        &self,
        token: &Token,
        hash: &str,
        generation: u64,
        now: u64,
        spend: bool,
    ) -> Result<Option<Authenticated>, StorageError> {
        let Some(entry) = self.backend().get(&record::token_key(hash)).await? else {
            return Ok(None);
        };
        let mut rec = TokenRecord::decode(&entry.value)?;
        if !rec.usable(now) {
            return Ok(None);
        }
        let cached = Cached {
            accessor: rec.accessor.clone(),
            display_name: rec.display_name.clone(),
            policies: rec.policies.clone(),
            path: rec.path.clone(),
            creation_time: rec.creation_time,
            namespace_id: rec.namespace_id.clone(),
            expire_time: rec.lease.as_ref().and_then(|l| l.expire_time),
        };
        if rec.num_uses == 0 {
            self.inner
                .cache
                .put(hash.to_string(), cached.clone(), generation);
        }
        if rec.num_uses == 0 || !spend {
            return Ok(Some(Authenticated {
                caller: caller_of(token.clone(), cached),
                spent: None,
            }));
        }
        // One use spent; the last one leaves the record unusable, due for
        // the sweep should the revocation after the request not happen.
        let last = rec.num_uses == 1;
        let mut ops = Vec::new();
        if last {
            rec.num_uses = -1;
            let due = lease::millis(now).saturating_add(SPENT_GRACE_MS);
            if let Some(old) = rec.sweep_key(hash) {
                ops.push(Op::Delete { key: old });
            }
            rec.sweep_at = Some(due);
            ops.push(Op::Put {
                key: record::expiry_key(due, hash),
                value: Vec::new(),
            });
        } else {
            rec.num_uses -= 1;
        }
        let key = record::token_key(hash);
        ops.push(Op::Put {
            key: key.clone(),
            value: rec.encode()?,
        });
        let condition = Condition {
            key,
            version: Some(entry.version),
        };
        self.backend().commit(vec![condition], ops).await?;
        Ok(Some(Authenticated {
            caller: caller_of(token.clone(), cached),
            spent: last.then(|| Spent(hash.to_string())),
        }))
    }

    /// Revokes a token after the request that made its last use has been
    /// answered. A failure is logged: the sweep removes the record later,
    /// and the token is refused meanwhile.
    pub async fn finish(&self, spent: Spent) {
        if let Err(e) = self.revoke_tree(&spent.0).await {
            tracing::warn!(error = %e, "a used-up token is left to the sweep");
        }
    }
}

fn caller_of(token: Token, c: Cached) -> Caller {
    Caller {
        token,
        accessor: c.accessor,
        display_name: c.display_name,
        policies: c.policies,
        path: c.path,
        creation_time: c.creation_time,
        namespace_id: c.namespace_id,
    }
}
