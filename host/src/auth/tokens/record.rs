//! How tokens are stored. Every key is host-only (under `core/`, outside any
//! tenant's view):
//!
//! - `core/tokens/<hash>`: the token's record, JSON ([`TokenRecord`]);
//!   `<hash>` is the hex SHA-256 of the token, which is never stored;
//! - `core/token-accessors/<accessor>`: the hash of the accessor's token;
//! - `core/token-parents/<parent hash>/<child hash>`: the token tree (empty
//!   values);
//! - `core/token-expiry/<20-digit unix ms>/<hash>`: when a record is due for
//!   the sweep (empty values; the record names its own entry);
//! - `core/token-namespaces/<namespace id>/<hash>`: the tokens of each
//!   namespace but the root one (empty values), so deleting a namespace
//!   finds its tokens without reading every record.
//!
//! Records written before the token store knew leases and trees (the root
//! tokens of `operator init` and dev mode: accessor, display name,
//! policies, path, creation time) read as orphan, non-expiring root tokens.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::storage::{Condition, Op, StorageError};

pub const TOKENS: &str = "core/tokens/";
pub const ACCESSORS: &str = "core/token-accessors/";
pub const PARENTS: &str = "core/token-parents/";
pub const EXPIRY: &str = "core/token-expiry/";
pub const NAMESPACES: &str = "core/token-namespaces/";
/// Set once the accessor index covers every record (see `upgrade`).
pub const FORMAT_KEY: &str = "core/token-store/format";
pub const FORMAT: &[u8] = b"2";

/// The namespace every token belonged to before namespaces existed.
pub const ROOT_NAMESPACE: &str = "root";

/// The hex SHA-256 of a token: its record's name.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn token_key(hash: &str) -> String {
    format!("{TOKENS}{hash}")
}

pub fn accessor_key(accessor: &str) -> String {
    format!("{ACCESSORS}{accessor}")
}

pub fn children_prefix(parent: &str) -> String {
    format!("{PARENTS}{parent}/")
}

pub fn child_key(parent: &str, child: &str) -> String {
    format!("{PARENTS}{parent}/{child}")
}

/// The namespace index entry of a token (`None` in the root namespace,
/// which is never deleted).
pub fn namespace_key(namespace_id: &str, hash: &str) -> Option<String> {
    (namespace_id != ROOT_NAMESPACE).then(|| format!("{NAMESPACES}{namespace_id}/{hash}"))
}

pub fn expiry_key(millis: u64, hash: &str) -> String {
    format!("{EXPIRY}{millis:020}/{hash}")
}

/// `<ms>/<hash>` of an expiry index key (relative to [`EXPIRY`]).
pub fn parse_expiry(rel: &str) -> Option<(u64, &str)> {
    let (millis, hash) = rel.split_once('/')?;
    Some((millis.parse().ok()?, hash))
}

fn root_namespace() -> String {
    ROOT_NAMESPACE.to_string()
}

/// A token's lease (times in nanoseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub issue_time: u64,
    /// `None`: it never expires (root tokens only).
    #[serde(default)]
    pub expire_time: Option<u64>,
    #[serde(default)]
    pub last_renewal_time: Option<u64>,
    /// The TTL granted last (at creation or the latest renewal), in
    /// seconds: what a renewal without an increment grants again.
    #[serde(default)]
    pub ttl: u64,
    #[serde(default)]
    pub renewable: bool,
}

/// A token's record (Vault's token entry, plus its namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub accessor: String,
    pub display_name: String,
    pub policies: Vec<String>,
    /// Where it was created: `auth/token/create`, `auth/token/root`, ...
    pub path: String,
    /// Seconds since the Unix epoch.
    pub creation_time: u64,
    /// The parent's hash; empty for an orphan.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
    /// Uses left; 0: unlimited; -1: used up, waiting to be revoked.
    #[serde(default)]
    pub num_uses: i64,
    /// The TTL it was created with, in seconds.
    #[serde(default)]
    pub ttl: u64,
    #[serde(default)]
    pub explicit_max_ttl: u64,
    #[serde(default)]
    pub period: u64,
    #[serde(default = "root_namespace")]
    pub namespace_id: String,
    #[serde(default)]
    pub lease: Option<LeaseRecord>,
    /// The expiry index entry of the record (ms), if it has one.
    #[serde(default)]
    pub sweep_at: Option<u64>,
}

impl TokenRecord {
    pub fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StorageError::Unavailable(format!("corrupt token record: {e}")))
    }

    pub fn encode(&self) -> Result<Vec<u8>, StorageError> {
        serde_json::to_vec(self).map_err(|e| StorageError::Invalid(e.to_string()))
    }

    /// The lease; a record written without one (an early root token) has a
    /// lease that never expires, issued when the token was created.
    pub fn lease(&self) -> LeaseRecord {
        self.lease.clone().unwrap_or(LeaseRecord {
            issue_time: self.creation_time.saturating_mul(1_000_000_000),
            expire_time: None,
            last_renewal_time: None,
            ttl: 0,
            renewable: false,
        })
    }

    /// Whether the lease has run out at `now` (nanoseconds).
    pub fn expired(&self, now: u64) -> bool {
        self.lease
            .as_ref()
            .and_then(|l| l.expire_time)
            .is_some_and(|e| e <= now)
    }

    /// Whether the token may make a request at `now`: not used up, not
    /// expired.
    pub fn usable(&self, now: u64) -> bool {
        self.num_uses >= 0 && !self.expired(now)
    }

    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == crate::auth::ROOT_POLICY)
    }

    /// The expiry index key of the record, if it has one.
    pub fn sweep_key(&self, hash: &str) -> Option<String> {
        self.sweep_at.map(|ms| expiry_key(ms, hash))
    }
}

/// The conditions and writes that store a new token: its record and its
/// accessor index entry, neither of which may exist yet, and its namespace
/// index entry.
pub fn new_token(hash: &str, rec: &TokenRecord) -> Result<(Vec<Condition>, Vec<Op>), StorageError> {
    let key = token_key(hash);
    let index = accessor_key(&rec.accessor);
    let conditions = vec![
        Condition {
            key: key.clone(),
            version: None,
        },
        Condition {
            key: index.clone(),
            version: None,
        },
    ];
    let mut ops = vec![
        Op::Put {
            key,
            value: rec.encode()?,
        },
        Op::Put {
            key: index,
            value: hash.as_bytes().to_vec(),
        },
    ];
    if let Some(key) = namespace_key(&rec.namespace_id, hash) {
        ops.push(Op::Put {
            key,
            value: Vec::new(),
        });
    }
    Ok((conditions, ops))
}

/// The accessor index's value: the token's hash.
pub fn decode_hash(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
}
