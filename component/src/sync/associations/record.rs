//! The stored association: one record per (destination, secret) at
//! [`keys::association`], plus an index entry at [`keys::secret_index`] so the
//! destinations of a secret cost one list.
//!
//! Records hold names, statuses and errors only, never a secret value.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::storage::Tx;
use crate::sync::destinations::Granularity;
use crate::sync::keys;
use crate::sync::status::SyncStatus;
use crate::time::Nanos;

/// One association between a destination and a KV-v2 secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Association {
    /// Destination type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Destination name.
    pub destination: String,
    /// The mount's accessor: the association's identity (a mount re-enabled
    /// elsewhere is another source).
    pub accessor: String,
    /// The mount path without its trailing slash (`my-kv`), as shown in reads.
    pub mount: String,
    pub secret_name: String,
    /// The granularity and template in force when the association was last `set`;
    /// later syncs (KV writes) keep using them until the next `set`.
    pub granularity: Granularity,
    pub template: String,
    /// One row per external object: key `""` for `secret-path` (and for an
    /// association that has no object), the KV sub-key for `secret-key`.
    pub rows: BTreeMap<String, Row>,
    /// External objects that are no longer desired but could not be deleted
    /// yet (name → the row key they belonged to); every sync retries them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stale: BTreeMap<String, String>,
    /// When a provider write of this association last succeeded (0: never),
    /// and how many writes in a row came within the coalescing window of the
    /// one before: the worker spaces out the syncs of a secret that keeps
    /// changing (see `worker::coalesce_step`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pushed_at: Nanos,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub burst: u32,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The state of one external object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The rendered, normalised name at the destination; `""` when the row
    /// stands for no object (an association whose secret does not exist).
    pub external_name: String,
    pub sync_status: SyncStatus,
    /// Time of the last sync attempt of this row.
    pub updated_at: Nanos,
    /// The provider's message, for error statuses. Never a secret value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The KV version last written to the object (0: none).
    #[serde(default)]
    pub version: u64,
    /// Digest of what was last pushed successfully (name, value, tags and the
    /// destination's configuration): an identical push is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Row {
    /// Whether an external object may exist under `external_name`: every state
    /// except "unsynced" (a failed push may have left an older copy behind).
    pub fn may_exist(&self) -> bool {
        !self.external_name.is_empty() && self.sync_status != SyncStatus::Unsynced
    }

    pub fn unsynced(now: Nanos) -> Row {
        Row {
            external_name: String::new(),
            sync_status: SyncStatus::Unsynced,
            updated_at: now,
            error: None,
            version: 0,
            digest: None,
        }
    }
}

/// The index entry's value (the key says it all; the value helps debugging).
#[derive(Debug, Serialize, Deserialize)]
struct IndexEntry {
    #[serde(rename = "type")]
    kind: String,
    name: String,
}

impl Association {
    pub fn new(
        kind: &str,
        destination: &str,
        accessor: &str,
        mount: &str,
        secret_name: &str,
        granularity: Granularity,
        template: String,
    ) -> Self {
        Association {
            kind: kind.to_string(),
            destination: destination.to_string(),
            accessor: accessor.to_string(),
            mount: mount.to_string(),
            secret_name: secret_name.to_string(),
            granularity,
            template,
            rows: BTreeMap::new(),
            stale: BTreeMap::new(),
            pushed_at: 0,
            burst: 0,
        }
    }

    pub fn key(&self) -> String {
        keys::association(
            &self.kind,
            &self.destination,
            &self.accessor,
            &self.secret_name,
        )
    }

    fn index_key(&self) -> String {
        keys::secret_index(
            &self.accessor,
            &self.secret_name,
            &self.kind,
            &self.destination,
        )
    }

    pub fn load(
        tx: &mut Tx,
        kind: &str,
        name: &str,
        accessor: &str,
        secret_name: &str,
    ) -> ApiResult<Option<Association>> {
        tx.get_json(&keys::association(kind, name, accessor, secret_name))
    }

    /// The external names this association's objects may occupy: those of
    /// rows that may exist, and stale ones not deleted yet.
    pub fn claimed_names(&self) -> BTreeSet<&str> {
        self.rows
            .values()
            .filter(|r| r.may_exist())
            .map(|r| r.external_name.as_str())
            .chain(self.stale.keys().map(String::as_str))
            .collect()
    }

    /// Writes the record, its index entry and its claims on external names
    /// (names it took are claimed, names it let go are released).
    pub fn save(&self, tx: &mut Tx) -> ApiResult<()> {
        let stored: Option<Association> = tx.get_json(&self.key())?;
        let before = stored
            .as_ref()
            .map(Association::claimed_names)
            .unwrap_or_default();
        let now = self.claimed_names();
        for name in before.difference(&now) {
            tx.delete(keys::claim(&self.kind, &self.destination, name));
        }
        for name in now.difference(&before) {
            tx.put_json(
                keys::claim(&self.kind, &self.destination, name),
                &Claim {
                    accessor: self.accessor.clone(),
                    mount: self.mount.clone(),
                    secret_name: self.secret_name.clone(),
                },
            )?;
        }
        tx.put_json(self.key(), self)?;
        tx.put_json(
            self.index_key(),
            &IndexEntry {
                kind: self.kind.clone(),
                name: self.destination.clone(),
            },
        )
    }

    /// Drops the record, its index entry and its claims.
    pub fn drop_record(&self, tx: &mut Tx) -> ApiResult<()> {
        drop_keys(
            tx,
            &self.kind,
            &self.destination,
            &self.accessor,
            &self.secret_name,
        )
    }

    /// Shows every row in `status` (with `error`, for error statuses) from
    /// `now` on, keeping external names, versions and digests: queued work
    /// (`PENDING`) or work that could not be queued. An association without
    /// rows gets its placeholder row.
    pub fn mark_rows(&mut self, status: SyncStatus, error: Option<&str>, now: Nanos) {
        if self.rows.is_empty() {
            self.rows.insert(String::new(), Row::unsynced(now));
        }
        for row in self.rows.values_mut() {
            row.sync_status = status;
            row.error = error.map(str::to_string);
            row.updated_at = now;
        }
    }

    /// Whether nothing is left at the destination (and nothing is pending).
    pub fn is_clear(&self) -> bool {
        self.stale.is_empty() && !self.rows.values().any(Row::may_exist)
    }
}

/// Who holds an external name of a destination (see [`keys::claim`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub accessor: String,
    pub mount: String,
    pub secret_name: String,
}

/// The claim on `external` at destination `kind/name`, if any.
pub fn claim_of(tx: &mut Tx, kind: &str, name: &str, external: &str) -> ApiResult<Option<Claim>> {
    tx.get_json(&keys::claim(kind, name, external))
}

/// Drops an association's record, index entry and claims.
pub fn drop_keys(
    tx: &mut Tx,
    kind: &str,
    name: &str,
    accessor: &str,
    secret_name: &str,
) -> ApiResult<()> {
    let key = keys::association(kind, name, accessor, secret_name);
    if let Some(stored) = tx.get_json::<Association>(&key)? {
        for external in stored.claimed_names() {
            tx.delete(keys::claim(kind, name, external));
        }
    }
    tx.delete(key);
    tx.delete(keys::secret_index(accessor, secret_name, kind, name));
    Ok(())
}

/// Drops every claim of a destination (it is being deleted).
pub fn drop_claims(tx: &mut Tx, kind: &str, name: &str) -> ApiResult<()> {
    let prefix = keys::claims_of(kind, name);
    for rel in tx.list(&prefix, None)? {
        tx.delete(format!("{prefix}{rel}"));
    }
    Ok(())
}
