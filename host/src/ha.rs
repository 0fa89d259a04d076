//! Several hosts on one storage: shard leases, fencing, and who holds what.
//!
//! A sync loop runs shard *i* of *N* — of every tenant's work — only while its host holds the
//! shard's **lease**, a pair of host-only records (outside every tenant's keys). A lease is per
//! shard, not per tenant, so renewals cost *N* commits per ttl/3 however many tenants there are:
//!
//! * `core/leases/sync/holder/<i>`: the holding host (id, API address) and the shard count.
//!   It is written only when the lease changes hands, so its version is the lease's **fence**;
//! * `core/leases/sync/expiry/<i>`: until when the holder has it (ms since the Unix epoch),
//!   written at every renewal.
//!
//! Every change is a compare-and-swap commit over the [`Backend`] contract, so leases behave
//! the same on redb (one process: it takes every lease at once, also those a process that
//! died left, since no other process can use the file) and on PostgreSQL (shared by several
//! hosts):
//!
//! * **take**: a free lease (no holder record), an expired one (its expiry passed) or one this
//!   host's records name is taken in one commit conditioned on both records' versions: of two
//!   hosts that try at once, one wins;
//! * **renew** (every ttl/3): the expiry moves to now + ttl, conditioned on the holder record
//!   still having the fence: a host whose lease was taken over learns it here;
//! * **release** (a clean stop): both records deleted, so another host takes the shard at once;
//! * **fencing**: every commit a sync run makes carries the condition "the holder record still
//!   has the fence" ([`Fenced`]). A run that lost its lease meanwhile (the host stalled past the
//!   ttl and another took over) gets its commit refused: its claim of an entry (so it makes no
//!   provider call), or its outcome (which stays for the new holder to redo, as after a crash).
//!   A host also stops committing once its own clock says the lease expired.
//!
//! Expiry compares wall clocks of different hosts: keep them synchronised (NTP); a skew of *s*
//! lengthens or shortens a failover by *s*.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::storage::{self, Backend, Changes, Condition, Entry, Op, SharedBackend, StorageError};

pub use kvsync_host_core::settings::{DEFAULT_LEASE_TTL, MIN_LEASE_TTL};

/// Where the lease records live.
const LEASES: &str = "core/leases/sync";

/// What a commit refused for a lost lease says (as [`StorageError::Unavailable`]: the run stops
/// and the new holder takes over its work).
pub const LEASE_LOST: &str = "this host no longer holds the shard's lease";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A host as its lease records name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Unique per process: `<pid>-<random>`.
    pub id: String,
    /// Where it serves the API (`http://127.0.0.1:8200`); empty for `kvsync sync run`.
    pub address: String,
}

impl HostInfo {
    /// This process, serving at `address` (empty when it serves no API).
    pub fn this_process(address: String) -> Self {
        let mut random = [0u8; 4];
        // Without randomness the id stays unique per pid on one machine; good enough to tell
        // processes apart in a listing.
        let _ = getrandom::fill(&mut random);
        HostInfo {
            id: format!("{}-{}", std::process::id(), hex::encode(random)),
            address,
        }
    }

    /// `id (address)`, or the id alone.
    pub fn describe(&self) -> String {
        if self.address.is_empty() {
            self.id.clone()
        } else {
            format!("{} ({})", self.id, self.address)
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct HolderRecord {
    host: HostInfo,
    shards: u32,
    taken_at_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ExpiryRecord {
    host_id: String,
    expires_at_ms: u64,
}

fn decode<T: for<'de> Deserialize<'de>>(entry: Option<&Entry>) -> Option<T> {
    entry.and_then(|e| serde_json::from_slice(&e.value).ok())
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(record).map_err(|e| StorageError::Invalid(format!("lease record: {e}")))
}

/// A lease this host holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub shard: u32,
    /// The holder record's version: the condition of every fenced commit.
    pub fence: u64,
    /// Until when this host may use it, by its own clock.
    pub expires_at_ms: u64,
}

/// What [`Leases::take`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    Held(Held),
    /// Another host holds it (`None`: it changed hands while we tried); `renewed` is the
    /// version of its expiry record, which moves at every renewal of a live holder.
    Elsewhere {
        host: Option<HostInfo>,
        renewed: Option<u64>,
    },
}

/// Who holds a shard, as [`Leases::holders`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardHolder {
    pub shard: u32,
    pub host_id: String,
    pub address: String,
    /// When the lease runs out unless renewed (ms since the Unix epoch).
    pub expires_at_ms: u64,
}

/// The shard leases of the sync work (of every tenant), taken by one host.
#[derive(Clone)]
pub struct Leases {
    backend: SharedBackend,
    prefix: String,
    me: HostInfo,
    ttl: Duration,
    shards: u32,
    /// The store is this process's alone ([`Backend::is_shared`] false): a lease another
    /// process left is stale, whatever its expiry says (it died; a restart takes over at once).
    exclusive: bool,
}

impl Leases {
    pub fn new(backend: SharedBackend, me: HostInfo, ttl: Duration, shards: u32) -> Self {
        Leases {
            exclusive: !backend.is_shared(),
            backend,
            prefix: LEASES.to_string(),
            me,
            ttl,
            shards: shards.max(1),
        }
    }

    /// These leases as if other processes shared the store (tests of several hosts on one
    /// in-process store).
    pub fn shared(mut self) -> Self {
        self.exclusive = false;
        self
    }

    pub fn me(&self) -> &HostInfo {
        &self.me
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    fn holder_key(&self, shard: u32) -> String {
        format!("{}/holder/{shard}", self.prefix)
    }

    fn expiry_key(&self, shard: u32) -> String {
        format!("{}/expiry/{shard}", self.prefix)
    }

    /// Takes the lease of `shard` unless another host holds it unexpired at `now`.
    pub async fn take(&self, shard: u32, now: u64) -> Result<Taken, StorageError> {
        let (hk, ek) = (self.holder_key(shard), self.expiry_key(shard));
        let holder = self.backend.get(&hk).await?;
        let expiry = self.backend.get(&ek).await?;
        let record: Option<HolderRecord> = decode(holder.as_ref());
        let until: Option<ExpiryRecord> = decode(expiry.as_ref());
        if let Some(record) = &record {
            let live = until
                .as_ref()
                .is_some_and(|u| u.host_id == record.host.id && u.expires_at_ms > now);
            if live && record.host.id != self.me.id && !self.exclusive {
                return Ok(Taken::Elsewhere {
                    host: Some(record.host.clone()),
                    renewed: expiry.as_ref().map(|e| e.version),
                });
            }
            if record.shards != self.shards {
                tracing::warn!(
                    shard,
                    theirs = record.shards,
                    ours = self.shards,
                    "a host used another sync_workers: every host must shard alike"
                );
            }
        }
        let expires_at_ms = now.saturating_add(ms(self.ttl));
        let conditions = vec![
            Condition {
                key: hk.clone(),
                version: holder.as_ref().map(|e| e.version),
            },
            Condition {
                key: ek.clone(),
                version: expiry.as_ref().map(|e| e.version),
            },
        ];
        let ops = vec![
            Op::Put {
                key: hk,
                value: encode(&HolderRecord {
                    host: self.me.clone(),
                    shards: self.shards,
                    taken_at_ms: now,
                })?,
            },
            Op::Put {
                key: ek,
                value: encode(&ExpiryRecord {
                    host_id: self.me.id.clone(),
                    expires_at_ms,
                })?,
            },
        ];
        match self.backend.commit(conditions, ops).await {
            Ok(version) => Ok(Taken::Held(Held {
                shard,
                fence: version,
                expires_at_ms,
            })),
            Err(StorageError::Conflict) => Ok(Taken::Elsewhere {
                host: None,
                renewed: None,
            }),
            Err(e) => Err(e),
        }
    }

    /// Extends `held` to `now` + ttl; `None` when another host has taken it.
    pub async fn renew(&self, held: Held, now: u64) -> Result<Option<Held>, StorageError> {
        let expires_at_ms = now.saturating_add(ms(self.ttl));
        let conditions = vec![Condition {
            key: self.holder_key(held.shard),
            version: Some(held.fence),
        }];
        let ops = vec![Op::Put {
            key: self.expiry_key(held.shard),
            value: encode(&ExpiryRecord {
                host_id: self.me.id.clone(),
                expires_at_ms,
            })?,
        }];
        match self.backend.commit(conditions, ops).await {
            Ok(_) => Ok(Some(Held {
                expires_at_ms,
                ..held
            })),
            Err(StorageError::Conflict) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Gives `held` up (nothing happens when it already changed hands).
    pub async fn release(&self, held: Held) -> Result<(), StorageError> {
        let conditions = vec![Condition {
            key: self.holder_key(held.shard),
            version: Some(held.fence),
        }];
        let ops = vec![
            Op::Delete {
                key: self.holder_key(held.shard),
            },
            Op::Delete {
                key: self.expiry_key(held.shard),
            },
        ];
        match self.backend.commit(conditions, ops).await {
            Ok(_) | Err(StorageError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every shard lease not expired at `now`, by shard.
    pub async fn holders(&self, now: u64) -> Result<Vec<ShardHolder>, StorageError> {
        let mut holders = Vec::new();
        for shard in 0..self.shards {
            let record: Option<HolderRecord> =
                decode(self.backend.get(&self.holder_key(shard)).await?.as_ref());
            let until: Option<ExpiryRecord> =
                decode(self.backend.get(&self.expiry_key(shard)).await?.as_ref());
            if let (Some(record), Some(until)) = (record, until)
                && until.host_id == record.host.id
                && until.expires_at_ms > now
            {
                holders.push(ShardHolder {
                    shard,
                    host_id: record.host.id,
                    address: record.host.address,
                    expires_at_ms: until.expires_at_ms,
                });
            }
        }
        Ok(holders)
    }

    /// `backend` with every commit fenced by `held` (see [`Fenced`]).
    pub fn fenced(&self, held: Held, state: Option<watch::Receiver<Option<Held>>>) -> Fenced {
        Fenced {
            inner: self.backend.clone(),
            key: self.holder_key(held.shard),
            fence: held.fence,
            state,
        }
    }
}

/// A backend whose commits hold only while a lease does: each carries the condition that the
/// lease's holder record still has the fence. A commit refused because the lease moved (or,
/// with the holder's live state, because it was lost or expired by this host's clock) fails
/// with [`StorageError::Unavailable`]([`LEASE_LOST`]), not `Conflict`: retrying cannot help.
pub struct Fenced {
    inner: SharedBackend,
    key: String,
    fence: u64,
    state: Option<watch::Receiver<Option<Held>>>,
}

impl Fenced {
    fn still_held(&self) -> bool {
        let Some(state) = &self.state else {
            return true;
        };
        let now = now_ms();
        state
            .borrow()
            .is_some_and(|h| h.fence == self.fence && h.expires_at_ms > now)
    }

    fn lost() -> StorageError {
        StorageError::Unavailable(LEASE_LOST.to_string())
    }
}

#[async_trait::async_trait]
impl storage::Delegate for Fenced {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn commit(
        &self,
        mut conditions: Vec<Condition>,
        ops: Vec<Op>,
    ) -> Result<u64, StorageError> {
        if !self.still_held() {
            return Err(Self::lost());
        }
        conditions.push(Condition {
            key: self.key.clone(),
            version: Some(self.fence),
        });
        match self.inner.commit(conditions, ops).await {
            Err(StorageError::Conflict) => {
                let now = self.inner.get(&self.key).await?;
                if now.map(|e| e.version) == Some(self.fence) {
                    Err(StorageError::Conflict)
                } else {
                    Err(Self::lost())
                }
            }
            other => other,
        }
    }

    fn watch(&self) -> Option<Changes> {
        None
    }
}

/// The live state of every shard lease of one host: `Some` while held. The lease keeper writes
/// it; sync loops, the reconciliation and [`Fenced`] commits read it.
#[derive(Clone)]
pub struct LeaseTable {
    shards: Arc<[watch::Sender<Option<Held>>]>,
}

impl LeaseTable {
    pub fn new(shards: u32) -> Self {
        LeaseTable {
            shards: (0..shards.max(1))
                .map(|_| watch::Sender::new(None))
                .collect(),
        }
    }

    pub fn held(&self, shard: u32) -> Option<Held> {
        self.sender(shard).and_then(|s| *s.borrow())
    }

    pub fn subscribe(&self, shard: u32) -> Option<watch::Receiver<Option<Held>>> {
        self.sender(shard).map(watch::Sender::subscribe)
    }

    /// Records the lease of `shard`; its subscribers hear of it only when it changed hands
    /// (a renewal updates the expiry silently).
    pub(crate) fn set(&self, shard: u32, held: Option<Held>) {
        if let Some(s) = self.sender(shard) {
            s.send_if_modified(|current| {
                let moved = current.map(|h| h.fence) != held.map(|h| h.fence);
                *current = held;
                moved
            });
        }
    }

    fn sender(&self, shard: u32) -> Option<&watch::Sender<Option<Held>>> {
        self.shards.get(usize::try_from(shard).ok()?)
    }

    /// Every lease held now.
    pub fn all_held(&self) -> Vec<Held> {
        self.shards.iter().filter_map(|s| *s.borrow()).collect()
    }
}

/// One round of the lease keeper: renews what this host holds, takes what is free. Returns
/// the shards newly taken.
pub async fn keep_round(leases: &Leases, table: &LeaseTable) -> Vec<u32> {
    renew_held(leases, table).await;
    let mut gained = Vec::new();
    for shard in 0..leases.shards() {
        if table.held(shard).is_some() {
            continue;
        }
        match leases.take(shard, now_ms()).await {
            Ok(Taken::Held(held)) => {
                tracing::info!(shard, fence = held.fence, "took the shard's lease");
                table.set(shard, Some(held));
                gained.push(shard);
            }
            Ok(Taken::Elsewhere { .. }) => {}
            Err(e) => tracing::warn!(shard, error = %e, "cannot take the shard's lease"),
        }
    }
    gained
}

/// Renews every lease `table` holds; one another host took over, or that expired while
/// storage could not be reached, is dropped from it.
pub async fn renew_held(leases: &Leases, table: &LeaseTable) {
    for held in table.all_held() {
        let now = now_ms();
        match leases.renew(held, now).await {
            Ok(Some(renewed)) => table.set(held.shard, Some(renewed)),
            Ok(None) => {
                tracing::warn!(
                    shard = held.shard,
                    "the shard's lease was taken over by another host"
                );
                table.set(held.shard, None);
            }
            Err(e) => {
                tracing::warn!(shard = held.shard, error = %e, "cannot renew the shard's lease");
                if now >= held.expires_at_ms {
                    table.set(held.shard, None);
                }
            }
        }
    }
}

/// Releases every lease of `table` (a clean stop: another host takes the shards at once).
pub async fn release_all(leases: &Leases, table: &LeaseTable) {
    for held in table.all_held() {
        table.set(held.shard, None);
        if let Err(e) = leases.release(held).await {
            tracing::warn!(shard = held.shard, error = %e, "cannot release the shard's lease");
        }
    }
}

/// What `sys/leader` reports about this host: the engine answers with Vault's fields for a
/// single server; the host fills in the HA view. Every host is active for requests, so each
/// reports itself as the leader (`is_self`, its own `leader_address`), with `ha_enabled` as
/// configured; kvsync adds `shard_holders`: which host holds which sync shard.
#[derive(Clone)]
pub struct HaView {
    pub leases: Leases,
    /// `ha_enabled` of the PostgreSQL storage (false on redb).
    pub ha_enabled: bool,
    /// When this host started serving (RFC 3339).
    pub active_time: String,
}

impl HaView {
    /// The engine's `sys/leader` body with the HA view filled in; the engine's body when it is
    /// not a JSON object.
    pub async fn leader(&self, body: Vec<u8>) -> Vec<u8> {
        let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice(&body) else {
            return body;
        };
        let me = self.leases.me();
        fields.insert("ha_enabled".into(), self.ha_enabled.into());
        if self.ha_enabled {
            fields.insert("is_self".into(), true.into());
            fields.insert("leader_address".into(), me.address.clone().into());
            fields.insert("active_time".into(), self.active_time.clone().into());
        }
        let holders = match self.leases.holders(now_ms()).await {
            Ok(holders) => serde_json::to_value(holders).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "sys/leader: cannot read the shard leases");
                serde_json::Value::Null
            }
        };
        fields.insert("shard_holders".into(), holders);
        serde_json::to_vec(&fields).unwrap_or(body)
    }
}
