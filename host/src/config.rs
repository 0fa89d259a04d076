//! The server configuration file: HCL with Vault's familiar stanzas plus
//! kvsync's own settings. Unknown settings are an error, not a surprise later.
//!
//! ```hcl
//! storage "redb" { path = "/var/lib/kvsync" }
//! listener "tcp" {
//!   address       = "127.0.0.1:8200"
//!   tls_disable   = true
//!   # tls_cert_file = "/etc/kvsync/tls.crt"
//!   # tls_key_file  = "/etc/kvsync/tls.key"
//!   # max_request_size = 33554432
//! }
//! # kvsync settings (all optional)
//! encryption_key_file = "/var/lib/kvsync/encryption.key"
//! cache_dir           = "/var/cache/kvsync"
//! log_level           = "info"
//! guest_cpu_limit     = "2s"
//! guest_memory_limit  = "64MiB"
//! max_concurrent_requests = 256
//! guest_warm_instances = 16      # idle engine instances kept for reuse (per tenant only; 0: fresh per call)
//! provider_timeout    = "10s"
//! sync_inline_timeout = "3s"   # associations/set waits this long, then answers PENDING
//! sync_workers        = 4        # concurrent sync loops (shards by destination)
//! sync_backoff_base   = "1s"     # first retry delay after a retryable failure
//! sync_backoff_cap    = "5m"     # longest retry delay
//! sync_reconcile_interval = "60s"
//! sync_coalesce_window = "1s"   # a secret changed again and again: about one provider write per window
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::http::DEFAULT_MAX_REQUEST_SIZE;
use crate::runtime::Limits;
use crate::worker::SyncConfig;

/// The storage file inside the `storage` stanza's `path` directory.
pub const STORAGE_FILE: &str = "kvsync.redb";
/// The default key file name inside the storage directory.
pub const KEY_FILE: &str = "encryption.key";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    storage: BTreeMap<String, RawStorage>,
    listener: BTreeMap<String, RawListener>,
    encryption_key_file: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    log_level: Option<String>,
    guest_cpu_limit: Option<String>,
    guest_memory_limit: Option<String>,
    max_concurrent_requests: Option<u32>,
    guest_warm_instances: Option<u32>,
    provider_timeout: Option<String>,
    sync_inline_timeout: Option<String>,
    sync_workers: Option<u32>,
    sync_backoff_base: Option<String>,
    sync_backoff_cap: Option<String>,
    sync_reconcile_interval: Option<String>,
    sync_coalesce_window: Option<String>,
    // Vault settings accepted for familiarity; they have no effect here.
    ui: Option<hcl::Value>,
    disable_mlock: Option<hcl::Value>,
    api_addr: Option<hcl::Value>,
    cluster_addr: Option<hcl::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Option<String>,
    tls_disable: Option<hcl::Value>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    max_request_size: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub address: String,
    /// Certificate and key files when TLS is on.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_request_size: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub storage_dir: PathBuf,
    pub listener: Listener,
    pub encryption_key_file: PathBuf,
    pub cache_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    pub limits: Limits,
    /// Bound on one provider call (push or delete at a destination).
    pub provider_timeout: Duration,
    /// Bound on provider calls made inline by `associations/set` and `remove`;
    /// past it the association shows `PENDING` and the worker finishes.
    pub sync_inline_timeout: Duration,
    /// The sync worker's concurrency and timing knobs.
    pub sync: SyncConfig,
}

impl Config {
    pub fn storage_file(&self) -> PathBuf {
        self.storage_dir.join(STORAGE_FILE)
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the config file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let raw: RawConfig = hcl::from_str(text)?;
        let _ = (
            &raw.ui,
            &raw.disable_mlock,
            &raw.api_addr,
            &raw.cluster_addr,
        );
        let mut storage = raw.storage.into_iter();
        let (kind, stanza) = storage.next().ok_or_else(|| {
            anyhow::anyhow!("a storage stanza is required: storage \"redb\" {{ path = \"...\" }}")
        })?;
        if storage.next().is_some() {
            anyhow::bail!("exactly one storage stanza is allowed");
        }
        if kind != "redb" {
            anyhow::bail!("storage backend {kind:?} is not supported; use storage \"redb\"");
        }
        let mut listeners = raw.listener.into_iter();
        let (kind, l) = listeners.next().ok_or_else(|| {
            anyhow::anyhow!(
                "a listener stanza is required: listener \"tcp\" {{ address = \"127.0.0.1:8200\" }}"
            )
        })?;
        if listeners.next().is_some() || kind != "tcp" {
            anyhow::bail!("exactly one listener \"tcp\" stanza is supported");
        }
        let tls_disabled = match &l.tls_disable {
            None => false,
            Some(hcl::Value::Bool(b)) => *b,
            Some(hcl::Value::Number(n)) => n.as_i64() == Some(1),
            Some(hcl::Value::String(s)) => {
                matches!(s.as_str(), "1" | "true" | "t" | "TRUE" | "True")
            }
            Some(other) => anyhow::bail!("tls_disable: expected a boolean, got {other:?}"),
        };
        let tls = if tls_disabled {
            None
        } else {
            match (l.tls_cert_file, l.tls_key_file) {
                (Some(c), Some(k)) => Some((c, k)),
                _ => anyhow::bail!(
                    "the listener needs tls_cert_file and tls_key_file, or tls_disable = true"
                ),
            }
        };
        let max_request_size = match l.max_request_size {
            None | Some(0) => DEFAULT_MAX_REQUEST_SIZE,
            Some(n) if n < 0 => usize::MAX,
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let mut limits = Limits::default();
        if let Some(cpu) = raw.guest_cpu_limit {
            limits.cpu =
                parse_duration(&cpu).map_err(|e| anyhow::anyhow!("guest_cpu_limit: {e}"))?;
        }
        if let Some(mem) = raw.guest_memory_limit {
            limits.memory_bytes =
                parse_size(&mem).map_err(|e| anyhow::anyhow!("guest_memory_limit: {e}"))?;
        }
        if let Some(n) = raw.max_concurrent_requests {
            limits.max_concurrent_instances = n.max(1);
        }
        if let Some(n) = raw.guest_warm_instances {
            limits.warm_instances = n;
        }
        let sync_inline_timeout = match raw.sync_inline_timeout {
            Some(t) => {
                parse_duration(&t).map_err(|e| anyhow::anyhow!("sync_inline_timeout: {e}"))?
            }
            None => crate::runtime::DEFAULT_INLINE_BOUND,
        };
        let provider_timeout = match raw.provider_timeout {
            Some(t) => parse_duration(&t).map_err(|e| anyhow::anyhow!("provider_timeout: {e}"))?,
            None => crate::connectors::DEFAULT_TIMEOUT,
        };
        let mut sync = SyncConfig::default();
        if let Some(n) = raw.sync_workers {
            sync.workers = n;
        }
        if let Some(d) = raw.sync_backoff_base {
            sync.backoff_base =
                parse_duration(&d).map_err(|e| anyhow::anyhow!("sync_backoff_base: {e}"))?;
        }
        if let Some(d) = raw.sync_backoff_cap {
            sync.backoff_cap =
                parse_duration(&d).map_err(|e| anyhow::anyhow!("sync_backoff_cap: {e}"))?;
        }
        if let Some(d) = raw.sync_reconcile_interval {
            sync.reconcile_interval =
                parse_duration(&d).map_err(|e| anyhow::anyhow!("sync_reconcile_interval: {e}"))?;
        }
        if let Some(d) = raw.sync_coalesce_window {
            sync.coalesce_window =
                parse_duration(&d).map_err(|e| anyhow::anyhow!("sync_coalesce_window: {e}"))?;
        }
        sync.validate()?;
        let storage_dir = stanza.path;
        Ok(Config {
            encryption_key_file: raw
                .encryption_key_file
                .unwrap_or_else(|| storage_dir.join(KEY_FILE)),
            storage_dir,
            listener: Listener {
                address: l.address.unwrap_or_else(|| "127.0.0.1:8200".to_string()),
                tls,
                max_request_size,
            },
            cache_dir: raw.cache_dir,
            log_level: raw.log_level,
            limits,
            provider_timeout,
            sync_inline_timeout,
            sync,
        })
    }
}

/// `"2s"`, `"500ms"`, `"1m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(format!("invalid duration {s:?}: use ms, s, m or h")),
    }
}

/// `"64MiB"`, `"1GiB"`, `"512KiB"`, or bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        _ => return Err(format!("invalid size {s:?}: use KiB, MiB or GiB")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vault_style_config() {
        let c = Config::parse(
            r#"
            storage "redb" { path = "/tmp/x" }
            listener "tcp" {
              address = "127.0.0.1:0"
              tls_disable = "true"
            }
            guest_cpu_limit = "500ms"
            guest_memory_limit = "32MiB"
            ui = true
            "#,
        )
        .unwrap();
        assert_eq!(c.storage_file(), PathBuf::from("/tmp/x/kvsync.redb"));
        assert_eq!(
            c.encryption_key_file,
            PathBuf::from("/tmp/x/encryption.key")
        );
        assert!(c.listener.tls.is_none());
        assert_eq!(c.listener.max_request_size, DEFAULT_MAX_REQUEST_SIZE);
        assert_eq!(c.limits.cpu, Duration::from_millis(500));
        assert_eq!(c.limits.memory_bytes, 32 << 20);
        assert_eq!(c.sync, SyncConfig::default());
    }

    #[test]
    fn parses_sync_settings() {
        let c = Config::parse(
            r#"
            storage "redb" { path = "/tmp/x" }
            listener "tcp" { tls_disable = 1 }
            sync_workers = 2
            sync_backoff_base = "200ms"
            sync_backoff_cap = "2s"
            sync_reconcile_interval = "1h"
            sync_coalesce_window = "0ms"
            "#,
        )
        .unwrap();
        assert_eq!(
            c.sync,
            SyncConfig {
                workers: 2,
                backoff_base: Duration::from_millis(200),
                backoff_cap: Duration::from_secs(2),
                reconcile_interval: Duration::from_secs(3600),
                coalesce_window: Duration::ZERO,
            }
        );
        let settings = c.sync.settings();
        assert_eq!(
            (settings.backoff_base_ms, settings.backoff_cap_ms),
            (200, 2000)
        );
        let base = r#"storage "redb" { path = "/x" } listener "tcp" { tls_disable = 1 }"#;
        for bad in [
            "sync_workers = 0",
            "sync_workers = 1000",
            r#"sync_backoff_base = "0s""#,
            r#"sync_backoff_base = "10s"
               sync_backoff_cap = "1s""#,
            r#"sync_reconcile_interval = "0ms""#,
            r#"sync_backoff_cap = "soon""#,
        ] {
            assert!(Config::parse(&format!("{base}\n{bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_unknown_and_incomplete_config() {
        for bad in [
            r#"storage "redb" { path = "/x" } listener "tcp" { address = "a" tls_disable = 1 } bogus = 1"#,
            r#"storage "postgres" { path = "/x" } listener "tcp" { tls_disable = 1 }"#,
            r#"listener "tcp" { tls_disable = 1 }"#,
            r#"storage "redb" { path = "/x" } listener "tcp" { address = "a" }"#,
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }
}
