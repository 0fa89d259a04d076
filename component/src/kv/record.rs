//! The engine's stored records, and where they live under the mount's storage
//! prefix (`logical/<uuid>/`):
//!
//! - `config`: the mount's [`KvConfig`];
//! - `metadata/<path>`: one [`KeyMetadata`] per secret. Listing `metadata/<folder>`
//!   with `/` as delimiter yields the secrets and sub-folders of a folder;
//! - `versions/<version>/<path>`: the data of one version. The number comes first,
//!   so no two (path, version) pairs share a key (`app` and `app/1` stay apart).

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::effects::Change;
use crate::error::{ApiError, ApiResult};
use crate::storage::{Tx, each_key};
use crate::sys::mounts::MountEntry;
use crate::time::{self, Nanos};

/// Versions kept per secret when neither the secret nor the mount sets `max_versions`.
pub const DEFAULT_MAX_VERSIONS: u64 = 10;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The mount-wide settings (`<mount>/config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KvConfig {
    /// 0: [`DEFAULT_MAX_VERSIONS`].
    pub max_versions: u32,
    pub cas_required: bool,
    /// Seconds; 0: unset; negative: disabled for every secret.
    pub delete_version_after: i64,
}

/// One version of a secret.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionMeta {
    pub created_time: Nanos,
    /// 0: not deleted. May lie in the future (`delete_version_after`).
    pub deletion_time: Nanos,
    pub destroyed: bool,
}

impl VersionMeta {
    pub fn is_deleted(&self, now: Nanos) -> bool {
        self.deletion_time != 0 && self.deletion_time <= now
    }

    /// Readable: neither deleted (as of `now`) nor destroyed.
    pub fn is_live(&self, now: Nanos) -> bool {
        !self.destroyed && !self.is_deleted(now)
    }
}

/// Everything known about one secret except its data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyMetadata {
    pub created_time: Nanos,
    pub updated_time: Nanos,
    pub current_version: u64,
    /// 0 until versions are first pruned, as in Vault.
    pub oldest_version: u64,
    pub max_versions: u32,
    pub cas_required: bool,
    /// Seconds; 0: unset.
    pub delete_version_after: i64,
    pub custom_metadata: BTreeMap<String, String>,
    pub versions: BTreeMap<u64, VersionMeta>,
}

impl KeyMetadata {
    /// The version a read asks for (`requested` ≤ 0: the current one), if kept.
    pub fn version(&self, requested: i64) -> Option<(u64, VersionMeta)> {
        let number = u64::try_from(requested)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(self.current_version);
        self.versions.get(&number).map(|vm| (number, *vm))
    }

    /// Vault shows an empty map as `null`.
    pub fn custom_metadata_json(&self) -> Value {
        if self.custom_metadata.is_empty() {
            Value::Null
        } else {
            json!(self.custom_metadata)
        }
    }

    /// The `metadata` block of data reads, and the body of data writes.
    pub fn version_json(&self, number: u64, vm: &VersionMeta) -> Value {
        json!({
            "created_time": time::rfc3339(vm.created_time),
            "custom_metadata": self.custom_metadata_json(),
            "deletion_time": time::rfc3339(vm.deletion_time),
            "destroyed": vm.destroyed,
            "version": number,
        })
    }

    /// Vault's `AddVersion`: appends a version and slides the window of kept
    /// versions (the larger of the secret's and the mount's `max_versions`, else 10).
    /// Returns the versions dropped, whose data must be deleted.
    pub fn add_version(&mut self, vm: VersionMeta, config_max_versions: u32) -> Vec<u64> {
        self.current_version = self.current_version.saturating_add(1);
        self.versions.insert(self.current_version, vm);
        self.updated_time = vm.created_time;
        if self.created_time == 0 {
            self.created_time = vm.created_time;
        }
        let max = match u64::from(self.max_versions.max(config_max_versions)) {
            0 => DEFAULT_MAX_VERSIONS,
            m => m,
        };
        if self.current_version.saturating_sub(self.oldest_version) < max {
            return Vec::new();
        }
        let last_dropped = self.current_version - max;
        let dropped: Vec<u64> = self
            .versions
            .range(..=last_dropped)
            .map(|(n, _)| *n)
            .collect();
        for n in &dropped {
            self.versions.remove(n);
        }
        self.oldest_version = last_dropped + 1;
        dropped
    }
}

/// When a version created at `now` is deleted automatically: after the smaller
/// non-zero `delete_version_after` of the mount and the secret; 0 for never.
pub fn expiry(now: Nanos, config: &KvConfig, meta: &KeyMetadata) -> Nanos {
    let (mount, key) = (config.delete_version_after, meta.delete_version_after);
    let secs = match (mount > 0, key > 0) {
        _ if mount < 0 => return 0,
        (true, true) => mount.min(key),
        (true, false) => mount,
        (false, true) => key,
        (false, false) => return 0,
    };
    now.saturating_add(secs.saturating_mul(NANOS_PER_SEC))
}

/// A version found by a read: its metadata block, and its data unless it is
/// deleted or destroyed.
pub struct Found {
    pub metadata: Value,
    /// An object, or `null` for a version written with `"data": null`.
    pub data: Option<Value>,
}

/// Whether the secret at `path` of `mount` exists (has metadata), without
/// decoding it: the existence check of `data/` and `metadata/`, which runs
/// before the handler reads the same key (a second read of a key in a
/// transaction costs no host call).
pub fn secret_exists(tx: &mut Tx, mount: &MountEntry, path: &str) -> ApiResult<bool> {
    let mut key = mount.storage_prefix();
    key.push_str("metadata/");
    key.push_str(path);
    Ok(tx.get(&key)?.is_some())
}

/// The records of one KV-v2 mount, read and written through the request's transaction.
pub struct Kv<'a, 's> {
    tx: &'a mut Tx<'s>,
    prefix: String,
    /// The mount's accessor: the identity of its secrets for secrets sync.
    accessor: String,
}

impl<'a, 's> Kv<'a, 's> {
    pub fn new(tx: &'a mut Tx<'s>, mount: &MountEntry) -> Self {
        Kv {
            tx,
            prefix: mount.storage_prefix(),
            accessor: mount.accessor.clone(),
        }
    }

    /// The secret at `path` changed in a way a destination may see (a new
    /// current version, or the current version became unreadable or readable
    /// again): records it in this transaction, whose commit then carries the
    /// work the change causes (see [`crate::effects`]).
    pub fn secret_changed(&mut self, path: &str) {
        self.tx.record(Change::SecretChanged {
            mount_accessor: self.accessor.clone(),
            path: path.to_string(),
        });
    }

    fn config_key(&self) -> String {
        format!("{}config", self.prefix)
    }

    fn metadata_key(&self, path: &str) -> String {
        format!("{}metadata/{path}", self.prefix)
    }

    fn data_key(&self, path: &str, version: u64) -> String {
        format!("{}versions/{version}/{path}", self.prefix)
    }

    pub fn config(&mut self) -> ApiResult<KvConfig> {
        let key = self.config_key();
        Ok(self.tx.get_json(&key)?.unwrap_or_default())
    }

    pub fn put_config(&mut self, config: &KvConfig) -> ApiResult<()> {
        let key = self.config_key();
        self.tx.put_json(key, config)
    }

    pub fn metadata(&mut self, path: &str) -> ApiResult<Option<KeyMetadata>> {
        let key = self.metadata_key(path);
        self.tx.get_json(&key)
    }

    pub fn put_metadata(&mut self, path: &str, meta: &KeyMetadata) -> ApiResult<()> {
        let key = self.metadata_key(path);
        self.tx.put_json(key, meta)
    }

    /// The data of a version the metadata lists as kept and not destroyed:
    /// an object, or `null` when it was written as `null` (Vault keeps that
    /// and reads it back).
    pub fn data(&mut self, path: &str, version: u64) -> ApiResult<Value> {
        let key = self.data_key(path, version);
        match self.tx.get_json::<Value>(&key)? {
            Some(data @ (Value::Object(_) | Value::Null)) => Ok(data),
            Some(_) => Err(ApiError::Internal(format!(
                "the version data at {key} is not an object"
            ))),
            None => Err(ApiError::Internal(format!(
                "could not find version data at {key}"
            ))),
        }
    }

    /// [`Kv::data`] as a map: a version written as `null` has no keys.
    pub fn data_map(&mut self, path: &str, version: u64) -> ApiResult<Map<String, Value>> {
        Ok(match self.data(path, version)? {
            Value::Object(map) => map,
            _ => Map::new(),
        })
    }

    pub fn delete_data(&mut self, path: &str, version: u64) {
        let key = self.data_key(path, version);
        self.tx.delete(key);
    }

    /// Removes a secret: the data of every version, then its metadata.
    pub fn delete_secret(&mut self, path: &str, meta: &KeyMetadata) {
        for version in meta.versions.keys() {
            self.delete_data(path, *version);
        }
        let key = self.metadata_key(path);
        self.tx.delete(key);
    }

    /// Runs `f` on the secrets (`name`) and sub-folders (`name/`) directly
    /// under `folder` (`""` or ending with `/`), in order, listing a page at a
    /// time. With `live_at`, secrets whose current version is deleted or
    /// destroyed at that time are left out: their metadata is read as
    /// committed and not kept (see [`Tx::peek_json`]), so memory stays flat
    /// however many secrets the folder holds.
    pub fn list_each(
        &self,
        folder: &str,
        live_at: Option<Nanos>,
        mut f: impl FnMut(&str) -> ApiResult<()>,
    ) -> ApiResult<()> {
        let prefix = self.metadata_key(folder);
        let mut previous = String::new();
        each_key(self.tx.storage(), &prefix, Some('/'), |key| {
            if key == previous {
                return Ok(ControlFlow::Continue(()));
            }
            previous.clear();
            previous.push_str(key);
            let gone = match live_at {
                Some(now) if !key.ends_with('/') => self
                    .tx
                    .peek_json::<KeyMetadata>(&format!("{prefix}{key}"))?
                    .and_then(|m| m.version(0))
                    .is_some_and(|(_, vm)| !vm.is_live(now)),
                _ => false,
            };
            if !gone {
                f(key)?;
            }
            Ok(ControlFlow::Continue(()))
        })
    }

    /// Stores `data` (an object, or `null`) as the secret's next version and
    /// updates (and saves) `meta`; returns the body of a data write.
    pub fn write_version(
        &mut self,
        path: &str,
        meta: &mut KeyMetadata,
        config: &KvConfig,
        data: &Value,
        now: Nanos,
    ) -> ApiResult<Value> {
        let vm = VersionMeta {
            created_time: now,
            deletion_time: expiry(now, config, meta),
            destroyed: false,
        };
        let dropped = meta.add_version(vm, config.max_versions);
        let key = self.data_key(path, meta.current_version);
        self.tx.put_json(key, data)?;
        for version in dropped {
            self.delete_data(path, version);
        }
        self.put_metadata(path, meta)?;
        Ok(meta.version_json(meta.current_version, &vm))
    }

    /// Looks up a version for a read (`requested` ≤ 0: the current one).
    /// `None`: no such secret or version.
    pub fn read_version(
        &mut self,
        path: &str,
        requested: i64,
        now: Nanos,
    ) -> ApiResult<Option<Found>> {
        let Some(meta) = self.metadata(path)? else {
            return Ok(None);
        };
        let Some((number, vm)) = meta.version(requested) else {
            return Ok(None);
        };
        let data = if vm.is_live(now) {
            Some(self.data(path, number)?)
        } else {
            None
        };
        Ok(Some(Found {
            metadata: meta.version_json(number, &vm),
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(t: Nanos) -> VersionMeta {
        VersionMeta {
            created_time: t,
            ..VersionMeta::default()
        }
    }

    #[test]
    fn add_version_slides_the_window_like_vault() {
        let mut m = KeyMetadata::default();
        for i in 1..=9 {
            assert!(m.add_version(vm(i), 0).is_empty());
        }
        assert_eq!(m.oldest_version, 0);
        // The tenth write moves oldest_version to 1 without dropping anything.
        assert!(m.add_version(vm(10), 0).is_empty());
        assert_eq!((m.current_version, m.oldest_version), (10, 1));
        assert_eq!(m.add_version(vm(11), 0), vec![1]);
        assert_eq!((m.oldest_version, m.versions.len()), (2, 10));
        assert_eq!(m.created_time, 1);
        assert_eq!(m.updated_time, 11);
        // Lowering max_versions drops several at once.
        m.max_versions = 3;
        assert_eq!(m.add_version(vm(12), 0), (2..=9).collect::<Vec<_>>());
        assert_eq!(
            m.versions.keys().copied().collect::<Vec<_>>(),
            vec![10, 11, 12]
        );
        assert_eq!(m.oldest_version, 10);
        // The larger of the key's and the mount's limit applies.
        assert!(m.add_version(vm(13), 5).is_empty());
        assert_eq!(m.versions.len(), 4);
    }

    #[test]
    fn expiry_takes_the_smaller_non_zero_setting() {
        let mut c = KvConfig::default();
        let mut m = KeyMetadata::default();
        assert_eq!(expiry(100, &c, &m), 0);
        c.delete_version_after = 10;
        assert_eq!(expiry(100, &c, &m), 100 + 10 * NANOS_PER_SEC);
        m.delete_version_after = 5;
        assert_eq!(expiry(100, &c, &m), 100 + 5 * NANOS_PER_SEC);
        c.delete_version_after = 0;
        assert_eq!(expiry(100, &c, &m), 100 + 5 * NANOS_PER_SEC);
        c.delete_version_after = -1;
        assert_eq!(expiry(100, &c, &m), 0);
    }

    #[test]
    fn version_lookup_and_liveness() {
        let mut m = KeyMetadata::default();
        m.add_version(vm(1), 0);
        m.add_version(vm(2), 0);
        assert_eq!(m.version(0).map(|v| v.0), Some(2));
        assert_eq!(m.version(-3).map(|v| v.0), Some(2));
        assert_eq!(m.version(1).map(|v| v.0), Some(1));
        assert!(m.version(3).is_none());
        let deleted = VersionMeta {
            created_time: 1,
            deletion_time: 5,
            destroyed: false,
        };
        assert!(deleted.is_live(4));
        assert!(!deleted.is_live(5));
        assert!(
            !VersionMeta {
                destroyed: true,
                ..vm(1)
            }
            .is_live(0)
        );
        assert_eq!(m.custom_metadata_json(), Value::Null);
    }

    #[test]
    fn records_round_trip_through_json() {
        let mut m = KeyMetadata::default();
        m.add_version(vm(7), 0);
        m.custom_metadata.insert("k".into(), "v".into());
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(serde_json::from_slice::<KeyMetadata>(&bytes).unwrap(), m);
        assert_eq!(
            serde_json::from_slice::<KvConfig>(b"{}").unwrap(),
            KvConfig::default()
        );
    }
}
