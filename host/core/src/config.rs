//! The server configuration file: HCL with Vault's familiar stanzas plus
//! kvsync's own settings. Unknown settings are an error, not a surprise later.
//!
//! ```hcl
//! storage "redb" { path = "/var/lib/kvsync" }
//! # or, shared by several hosts (Vault's names; strings or plain values):
//! # storage "postgresql" {
//! #   connection_url = "postgres://kvsync@db:5432/kvsync?sslmode=verify-full"  # else KVSYNC_PG_CONNECTION_URL / PG*
//! #   table          = "kvsync_store"
//! #   max_parallel   = "32"           # connections in the pool
//! #   ha_enabled     = "true"
//! # }
//! listener "tcp" {
//!   address       = "127.0.0.1:8200"
//!   tls_disable   = true
//!   # tls_cert_file = "/etc/kvsync/tls.crt"
//!   # tls_key_file  = "/etc/kvsync/tls.key"
//!   # max_request_size = 33554432
//!   # http_read_header_timeout = "10s"
//!   # http_read_timeout = "30s"
//!   # http_idle_timeout = "5m"
//!   # max_request_duration = "90s"
//!   # tls_handshake_timeout = "10s"   # kvsync
//!   # max_connections = 4096          # kvsync
//! }
//! # kvsync settings (all optional)
//! encryption_key_file = "/var/lib/kvsync/encryption.key"
//! cache_dir           = "/var/cache/kvsync"
//! log_level           = "info"
//! guest_cpu_limit     = "2s"
//! guest_memory_limit  = "64MiB"
//! max_concurrent_requests = 256
//! tenant_max_concurrent_requests = 128   # per namespace (default: half of max_concurrent_requests)
//! max_running_requests = 4       # engine calls running at once, shared round-robin by namespaces (default: 1 per CPU)
//! guest_warm_instances = 16      # idle engine instances kept for reuse (per tenant only; 0: fresh per call)
//! provider_timeout    = "10s"
//! sync_inline_timeout = "3s"   # associations/set waits this long, then answers PENDING
//! sync_workers        = 4        # concurrent sync loops (shards by destination)
//! sync_backoff_base   = "1s"     # first retry delay after a retryable failure
//! sync_backoff_cap    = "5m"     # longest retry delay
//! sync_reconcile_interval = "60s"
//! sync_coalesce_window = "1s"   # a secret changed again and again: about one provider write per window
//! ha_lease_ttl        = "15s"    # a shard's lease: another host takes over this long after a host dies
//! api_addr            = "https://kvsync-a.internal:8200"   # how clients reach this host (sys/leader, sys/health)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::settings::{
    DEFAULT_INLINE_BOUND, DEFAULT_MAX_REQUEST_DURATION, DEFAULT_MAX_REQUEST_SIZE,
    DEFAULT_PROVIDER_TIMEOUT, Limits, ListenerLimits, SyncConfig, check_table_name,
};

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
    tenant_max_concurrent_requests: Option<u32>,
    max_running_requests: Option<u32>,
    guest_warm_instances: Option<u32>,
    provider_timeout: Option<String>,
    sync_inline_timeout: Option<String>,
    sync_workers: Option<u32>,
    sync_backoff_base: Option<String>,
    sync_backoff_cap: Option<String>,
    sync_reconcile_interval: Option<String>,
    sync_coalesce_window: Option<String>,
    ha_lease_ttl: Option<String>,
    api_addr: Option<String>,
    // Vault settings accepted for familiarity; they have no effect here.
    ui: Option<hcl::Value>,
    disable_mlock: Option<hcl::Value>,
    cluster_addr: Option<hcl::Value>,
}

/// Every setting of every storage stanza; which ones a kind takes is checked after parsing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<PathBuf>,
    connection_url: Option<String>,
    table: Option<String>,
    ha_enabled: Option<hcl::Value>,
    max_parallel: Option<hcl::Value>,
}

/// The storage the `storage` stanza names.
#[derive(Debug, Clone)]
pub enum Storage {
    /// `storage "redb" { path = DIR }`: the embedded database `DIR/kvsync.redb`.
    Redb { dir: PathBuf },
    /// `storage "postgresql" { ... }`: a PostgreSQL database several hosts can share.
    Postgres(PostgresStorage),
}

/// The `storage "postgresql"` stanza.
#[derive(Clone)]
pub struct PostgresStorage {
    /// `connection_url` (it may hold a password); `None`: from the environment.
    pub connection_url: Option<Zeroizing<String>>,
    /// `table`: the table of the data; the schema and commit tables are named after it.
    pub table: String,
    /// `ha_enabled`: several hosts share the database.
    pub ha_enabled: bool,
    /// `max_parallel`: the most connections (and so concurrent storage calls) of the pool.
    pub max_parallel: usize,
}

/// The default `table`.
pub const DEFAULT_PG_TABLE: &str = "kvsync_store";
/// The default `max_parallel`.
pub const DEFAULT_PG_MAX_PARALLEL: usize = 32;

// The URL may carry a password: `Debug` says only whether it is set.
impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage")
            .field(
                "connection_url",
                &self.connection_url.as_ref().map(|_| "*****"),
            )
            .field("table", &self.table)
            .field("ha_enabled", &self.ha_enabled)
            .field("max_parallel", &self.max_parallel)
            .finish()
    }
}

impl Storage {
    fn parse(kind: &str, raw: RawStorage) -> anyhow::Result<Self> {
        match kind {
            "redb" => {
                let (None, None, None, None) = (
                    &raw.connection_url,
                    &raw.table,
                    &raw.ha_enabled,
                    &raw.max_parallel,
                ) else {
                    anyhow::bail!("storage \"redb\" takes only `path`");
                };
                let dir = raw.path.ok_or_else(|| {
                    anyhow::anyhow!("storage \"redb\" needs `path` (the data directory)")
                })?;
                Ok(Storage::Redb { dir })
            }
            "postgresql" => {
                if raw.path.is_some() {
                    anyhow::bail!(
                        "storage \"postgresql\" takes no `path`: it connects with `connection_url`"
                    );
                }
                let table = raw.table.unwrap_or_else(|| DEFAULT_PG_TABLE.to_string());
                check_table_name(&table)
                    .map_err(|e| anyhow::anyhow!("storage \"postgresql\" table: {e}"))?;
                let ha_enabled = match &raw.ha_enabled {
                    None => false,
                    Some(v) => flag(v).map_err(|e| anyhow::anyhow!("ha_enabled: {e}"))?,
                };
                let max_parallel = match &raw.max_parallel {
                    None => DEFAULT_PG_MAX_PARALLEL,
                    Some(v) => match count(v) {
                        Ok(0) | Err(_) => anyhow::bail!(
                            "max_parallel: expected a number of connections from 1, got {}",
                            shown(v)
                        ),
                        Ok(n) => n,
                    },
                };
                Ok(Storage::Postgres(PostgresStorage {
                    connection_url: raw.connection_url.map(Zeroizing::new),
                    table,
                    ha_enabled,
                    max_parallel,
                }))
            }
            other => anyhow::bail!(
                "storage backend {other:?} is not supported; use storage \"redb\" or storage \"postgresql\""
            ),
        }
    }
}

/// A boolean written as Vault accepts it: `true`, `1`, `"true"`, `"1"`, ...
/// Deepest nesting of brackets, braces and parentheses a configuration may
/// have (a real one needs 2 or 3). The HCL parser backtracks on unclosed
/// brackets in expressions, exponentially in their number: a file with a few
/// dozen made `kvsync server --config` hang before it said anything.
pub const MAX_CONFIG_NESTING: usize = 16;

/// Refuses, before the HCL parser sees it, a configuration nested deeper than
/// [`MAX_CONFIG_NESTING`]. Brackets in quoted strings and comments do not
/// count; a closer without its opener is left for the parser to report.
fn check_nesting(text: &str) -> anyhow::Result<()> {
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' | '\n' => break,
                        _ => {}
                    }
                }
            }
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '[' | '{' | '(' => {
                depth += 1;
                if depth > MAX_CONFIG_NESTING {
                    anyhow::bail!(
                        "the configuration is nested deeper than {MAX_CONFIG_NESTING} brackets, braces or parentheses"
                    );
                }
            }
            ']' | '}' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn flag(value: &hcl::Value) -> anyhow::Result<bool> {
    match value {
        hcl::Value::Bool(b) => Ok(*b),
        hcl::Value::Number(n) => Ok(n.as_i64() == Some(1)),
        hcl::Value::String(s) => match s.trim() {
            "1" | "true" | "t" | "TRUE" | "True" | "T" => Ok(true),
            "0" | "false" | "f" | "FALSE" | "False" | "F" | "" => Ok(false),
            _ => anyhow::bail!("expected a boolean, got {s:?}"),
        },
        other => anyhow::bail!("expected a boolean, got {}", shown(other)),
    }
}

/// A count written as a number or as a string of digits.
fn count(value: &hcl::Value) -> anyhow::Result<usize> {
    let n = match value {
        hcl::Value::Number(n) => n.as_u64(),
        hcl::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| anyhow::anyhow!("expected a whole number, got {}", shown(value)))
}

fn shown(value: &hcl::Value) -> String {
    match value {
        hcl::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Option<String>,
    tls_disable: Option<hcl::Value>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    max_request_size: Option<i64>,
    http_read_header_timeout: Option<hcl::Value>,
    http_read_timeout: Option<hcl::Value>,
    http_idle_timeout: Option<hcl::Value>,
    max_request_duration: Option<hcl::Value>,
    tls_handshake_timeout: Option<hcl::Value>,
    max_connections: Option<hcl::Value>,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub address: String,
    /// Certificate and key files when TLS is on.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Body size, timeouts and the connection cap.
    pub limits: ListenerLimits,
    /// `max_request_duration`: the bound on a whole request's engine call.
    pub max_request_duration: Duration,
}

impl Listener {
    /// Plain HTTP on `address` with the default limits.
    pub fn plain(address: String) -> Self {
        Listener {
            address,
            tls: None,
            limits: ListenerLimits::default(),
            max_request_duration: DEFAULT_MAX_REQUEST_DURATION,
        }
    }

    /// The timeouts and caps of the stanza over the defaults.
    fn parse_limits(&mut self, raw: &RawListener) -> anyhow::Result<()> {
        let limits = &mut self.limits;
        limits.max_request_size = match raw.max_request_size {
            None | Some(0) => DEFAULT_MAX_REQUEST_SIZE,
            Some(n) if n < 0 => usize::MAX,
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        for (name, value, into) in [
            (
                "http_read_header_timeout",
                &raw.http_read_header_timeout,
                &mut limits.read_header_timeout,
            ),
            (
                "http_read_timeout",
                &raw.http_read_timeout,
                &mut limits.read_timeout,
            ),
            (
                "http_idle_timeout",
                &raw.http_idle_timeout,
                &mut limits.idle_timeout,
            ),
            (
                "max_request_duration",
                &raw.max_request_duration,
                &mut self.max_request_duration,
            ),
            (
                "tls_handshake_timeout",
                &raw.tls_handshake_timeout,
                &mut limits.tls_handshake_timeout,
            ),
        ] {
            if let Some(value) = value {
                *into = timeout(value).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            }
        }
        if let Some(v) = &raw.max_connections {
            limits.max_connections = match count(v) {
                Ok(0) | Err(_) => anyhow::bail!(
                    "max_connections: expected a number of connections from 1, got {}",
                    shown(v)
                ),
                Ok(n) => n,
            };
        }
        Ok(())
    }
}

/// A listener timeout: a duration (`"10s"`, `"5m"`) or a number of seconds,
/// more than zero.
fn timeout(value: &hcl::Value) -> anyhow::Result<Duration> {
    let d = match value {
        hcl::Value::String(s) => parse_duration(s).map_err(|e| anyhow::anyhow!(e))?,
        hcl::Value::Number(n) => match n.as_u64() {
            Some(secs) => Duration::from_secs(secs),
            None => anyhow::bail!("expected a duration, got {n}"),
        },
        other => anyhow::bail!("expected a duration, got {}", shown(other)),
    };
    if d.is_zero() {
        anyhow::bail!("must be longer than zero");
    }
    Ok(d)
}

#[derive(Debug, Clone)]
pub struct Config {
    pub storage: Storage,
    pub listener: Listener,
    /// The key file: `encryption_key_file`, else (redb) `<path>/encryption.key`. PostgreSQL
    /// storage has no default: the key is never kept next to a shared database's settings.
    pub encryption_key_file: Option<PathBuf>,
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
    /// `api_addr`: the URL clients reach this host at, as `sys/leader` and
    /// the shard leases name it; `None`: the listener's own address.
    pub api_addr: Option<String>,
}

impl Config {
    /// The redb database file, with redb storage.
    pub fn storage_file(&self) -> Option<PathBuf> {
        match &self.storage {
            Storage::Redb { dir } => Some(dir.join(STORAGE_FILE)),
            Storage::Postgres(_) => None,
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the config file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        check_nesting(text)?;
        let raw: RawConfig = hcl::from_str(text)?;
        let _ = (&raw.ui, &raw.disable_mlock, &raw.cluster_addr);
        let api_addr = raw
            .api_addr
            .map(|a| check_api_addr(&a))
            .transpose()
            .map_err(|e| anyhow::anyhow!("api_addr: {e}"))?;
        let mut storage = raw.storage.into_iter();
        let (kind, stanza) = storage.next().ok_or_else(|| {
            anyhow::anyhow!("a storage stanza is required: storage \"redb\" {{ path = \"...\" }}")
        })?;
        if storage.next().is_some() {
            anyhow::bail!("exactly one storage stanza is allowed");
        }
        let storage = Storage::parse(&kind, stanza)?;
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
            Some(v) => flag(v).map_err(|e| anyhow::anyhow!("tls_disable: {e}"))?,
        };
        let tls = if tls_disabled {
            None
        } else {
            match (&l.tls_cert_file, &l.tls_key_file) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                _ => anyhow::bail!(
                    "the listener needs tls_cert_file and tls_key_file, or tls_disable = true"
                ),
            }
        };
        let mut listener = Listener::plain(
            l.address
                .clone()
                .unwrap_or_else(|| "127.0.0.1:8200".to_string()),
        );
        listener.tls = tls;
        listener.parse_limits(&l)?;
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
        if let Some(n) = raw.tenant_max_concurrent_requests {
            if n == 0 {
                anyhow::bail!("tenant_max_concurrent_requests: must be at least 1");
            }
            limits.tenant_max_concurrent_requests = Some(n);
        }
        if let Some(n) = raw.max_running_requests {
            if n == 0 {
                anyhow::bail!("max_running_requests: must be at least 1");
            }
            limits.max_running_requests = Some(n);
        }
        let sync_inline_timeout = match raw.sync_inline_timeout {
            Some(t) => {
                parse_duration(&t).map_err(|e| anyhow::anyhow!("sync_inline_timeout: {e}"))?
            }
            None => DEFAULT_INLINE_BOUND,
        };
        let provider_timeout = match raw.provider_timeout {
            Some(t) => parse_duration(&t).map_err(|e| anyhow::anyhow!("provider_timeout: {e}"))?,
            None => DEFAULT_PROVIDER_TIMEOUT,
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
        if let Some(d) = raw.ha_lease_ttl {
            sync.lease_ttl =
                parse_duration(&d).map_err(|e| anyhow::anyhow!("ha_lease_ttl: {e}"))?;
        }
        sync.validate()?;
        let encryption_key_file = match &storage {
            Storage::Redb { dir } => Some(
                raw.encryption_key_file
                    .unwrap_or_else(|| dir.join(KEY_FILE)),
            ),
            Storage::Postgres(_) => raw.encryption_key_file,
        };
        Ok(Config {
            encryption_key_file,
            storage,
            listener,
            cache_dir: raw.cache_dir,
            log_level: raw.log_level,
            limits,
            provider_timeout,
            sync_inline_timeout,
            sync,
            api_addr,
        })
    }
}

/// `api_addr` as Vault takes it: an `http://` or `https://` URL with a host,
/// kept without a trailing slash.
pub fn check_api_addr(addr: &str) -> Result<String, String> {
    let addr = addr.trim().trim_end_matches('/');
    let host = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .ok_or_else(|| format!("{addr:?} is not an http:// or https:// URL"))?;
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/') {
        return Err(format!(
            "{addr:?} must be a scheme and a host (with a port), such as https://kvsync-a.internal:8200"
        ));
    }
    Ok(addr.to_string())
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

    /// The HCL parser backtracks exponentially on unclosed brackets in an
    /// expression: this input (found by the `config_hcl` fuzz target, 25
    /// unclosed `[`) kept it busy for minutes. Refused before parsing.
    #[test]
    fn a_configuration_nested_too_deep_is_refused_before_parsing() {
        let chain = "7777[7*0>5555".repeat(MAX_CONFIG_NESTING + 9);
        let text = format!("storage \"redb\" {{ path = \"/x\" }}\nsync_backoff_base = {chain}\n");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("nested deeper than 16"), "{err}");
        // At the limit the parser still answers (with its own error).
        let chain = "7777[7*0>5555".repeat(MAX_CONFIG_NESTING - 1);
        let text = format!("storage \"redb\" {{ path = \"/x\" }}\nsync_backoff_base = {chain}\n");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(!err.contains("nested deeper"), "{err}");
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let deep = "[".repeat(40);
        let text = format!(
            "# {deep}\n// {deep}\n/* {deep} */\nstorage \"redb\" {{ path = \"/x{deep}\\\"{deep}\" }}\nlistener \"tcp\" {{ tls_disable = true }}\n"
        );
        let c = Config::parse(&text).unwrap();
        assert_eq!(
            c.storage_file(),
            Some(PathBuf::from(format!("/x{deep}\"{deep}")).join(STORAGE_FILE))
        );
    }

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
        assert_eq!(c.storage_file(), Some(PathBuf::from("/tmp/x/kvsync.redb")));
        assert_eq!(
            c.encryption_key_file,
            Some(PathBuf::from("/tmp/x/encryption.key"))
        );
        assert!(c.listener.tls.is_none());
        assert_eq!(c.listener.limits, ListenerLimits::default());
        assert_eq!(
            c.listener.max_request_duration,
            DEFAULT_MAX_REQUEST_DURATION
        );
        assert_eq!(c.limits.cpu, Duration::from_millis(500));
        assert_eq!(c.limits.memory_bytes, 32 << 20);
        assert_eq!(c.sync, SyncConfig::default());
        // The per-tenant cap: half the instance slots unless set.
        assert_eq!(c.limits.tenant_cap(), 128);
    }

    #[test]
    fn parses_the_tenant_concurrency_cap() {
        let base = r#"
            storage "redb" { path = "/tmp/x" }
            listener "tcp" { tls_disable = true }
            max_concurrent_requests = 10
        "#;
        let c = Config::parse(&format!("{base}\ntenant_max_concurrent_requests = 4")).unwrap();
        assert_eq!(c.limits.tenant_max_concurrent_requests, Some(4));
        assert_eq!(c.limits.tenant_cap(), 4);
        let c = Config::parse(&format!("{base}\ntenant_max_concurrent_requests = 99")).unwrap();
        assert_eq!(c.limits.tenant_cap(), 10);
        assert_eq!(Config::parse(base).unwrap().limits.tenant_cap(), 5);
        assert!(Config::parse(&format!("{base}\ntenant_max_concurrent_requests = 0")).is_err());
    }

    #[test]
    fn parses_the_running_calls_cap() {
        let base = r#"
            storage "redb" { path = "/tmp/x" }
            listener "tcp" { tls_disable = true }
            max_concurrent_requests = 10
        "#;
        let c = Config::parse(&format!("{base}\nmax_running_requests = 3")).unwrap();
        assert_eq!(c.limits.max_running_requests, Some(3));
        assert_eq!(c.limits.running_cap(), 3);
        let c = Config::parse(&format!("{base}\nmax_running_requests = 99")).unwrap();
        assert_eq!(c.limits.running_cap(), 10);
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let default = Config::parse(base).unwrap().limits.running_cap();
        let per_cpu = crate::settings::RUNNING_PER_CPU as usize;
        assert_eq!(default as usize, (cpus * per_cpu).min(10));
        assert!(Config::parse(&format!("{base}\nmax_running_requests = 0")).is_err());
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
            ha_lease_ttl = "2s"
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
                lease_ttl: Duration::from_secs(2),
            }
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
            r#"ha_lease_ttl = "100ms""#,
        ] {
            assert!(Config::parse(&format!("{base}\n{bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_addr_is_a_url_clients_reach() {
        let base = "storage \"redb\" { path = \"/x\" }\nlistener \"tcp\" { tls_disable = 1 }";
        assert_eq!(Config::parse(base).unwrap().api_addr, None);
        let c = Config::parse(&format!(
            "{base}\napi_addr = \"https://kvsync-a.internal:8200/\""
        ))
        .unwrap();
        assert_eq!(
            c.api_addr.as_deref(),
            Some("https://kvsync-a.internal:8200")
        );
        for bad in [
            r#"api_addr = "kvsync-a:8200""#,
            r#"api_addr = "https://""#,
            r#"api_addr = "http://a b""#,
            r#"api_addr = "http://a/v1""#,
            "api_addr = 8200",
        ] {
            assert!(Config::parse(&format!("{base}\n{bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_postgresql_storage_with_vaults_names() {
        let c = Config::parse(
            r#"
            storage "postgresql" {
              connection_url = "postgres://kv:s3cret-pw@db:5432/kvsync?sslmode=require"
              table          = "my_store"
              ha_enabled     = "true"
              max_parallel   = "8"
            }
            listener "tcp" { tls_disable = 1 }
            encryption_key_file = "/etc/kvsync/key"
            "#,
        )
        .unwrap();
        let Storage::Postgres(pg) = &c.storage else {
            panic!("{:?}", c.storage)
        };
        assert_eq!(
            pg.connection_url.as_deref().map(String::as_str),
            Some("postgres://kv:s3cret-pw@db:5432/kvsync?sslmode=require")
        );
        assert_eq!(pg.table, "my_store");
        assert!(pg.ha_enabled);
        assert_eq!(pg.max_parallel, 8);
        assert_eq!(
            c.encryption_key_file,
            Some(PathBuf::from("/etc/kvsync/key"))
        );
        assert_eq!(c.storage_file(), None);
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");

        // Plain values, defaults, no key file (then the environment must supply the key).
        let c = Config::parse(
            r#"
            storage "postgresql" {
              ha_enabled   = false
              max_parallel = 4
            }
            listener "tcp" { tls_disable = 1 }
            "#,
        )
        .unwrap();
        let Storage::Postgres(pg) = &c.storage else {
            panic!("{:?}", c.storage)
        };
        assert!(pg.connection_url.is_none());
        assert_eq!(pg.table, DEFAULT_PG_TABLE);
        assert!(!pg.ha_enabled);
        assert_eq!(pg.max_parallel, 4);
        assert_eq!(c.encryption_key_file, None);

        let listener = r#"listener "tcp" { tls_disable = 1 }"#;
        for bad in [
            r#"storage "postgresql" { max_parallel = 0 }"#,
            r#"storage "postgresql" { max_parallel = "many" }"#,
            r#"storage "postgresql" { ha_enabled = "perhaps" }"#,
            r#"storage "postgresql" { table = "bad-name" }"#,
            r#"storage "postgresql" { table = "" }"#,
            r#"storage "postgresql" { bogus = 1 }"#,
        ] {
            assert!(
                Config::parse(&format!("{bad}\n{listener}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_listener_timeouts_with_vaults_names() {
        let c = Config::parse(
            r#"
            storage "redb" { path = "/x" }
            listener "tcp" {
              tls_disable = 1
              max_request_size = 1024
              http_read_header_timeout = "2s"
              http_read_timeout = 3
              http_idle_timeout = "1m"
              max_request_duration = "500ms"
              tls_handshake_timeout = "4s"
              max_connections = "16"
            }
            "#,
        )
        .unwrap();
        assert_eq!(
            c.listener.limits,
            ListenerLimits {
                max_request_size: 1024,
                read_header_timeout: Duration::from_secs(2),
                read_timeout: Duration::from_secs(3),
                idle_timeout: Duration::from_secs(60),
                tls_handshake_timeout: Duration::from_secs(4),
                max_connections: 16,
            }
        );
        assert_eq!(c.listener.max_request_duration, Duration::from_millis(500));
        let storage = r#"storage "redb" { path = "/x" }"#;
        for bad in [
            r#"http_read_timeout = "0s""#,
            r#"http_idle_timeout = "soon""#,
            r#"max_connections = 0"#,
            r#"max_request_duration = true"#,
            r#"bogus_timeout = "1s""#,
        ] {
            let text = format!("{storage}\nlistener \"tcp\" {{\n tls_disable = 1\n {bad}\n}}");
            assert!(Config::parse(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_unknown_and_incomplete_config() {
        for bad in [
            r#"storage "redb" { path = "/x" } listener "tcp" { address = "a" tls_disable = 1 } bogus = 1"#,
            r#"storage "postgres" { path = "/x" } listener "tcp" { tls_disable = 1 }"#,
            r#"storage "postgresql" { path = "/x" } listener "tcp" { tls_disable = 1 }"#,
            r#"storage "redb" { path = "/x" table = "t" } listener "tcp" { tls_disable = 1 }"#,
            r#"storage "redb" { } listener "tcp" { tls_disable = 1 }"#,
            r#"listener "tcp" { tls_disable = 1 }"#,
            r#"storage "redb" { path = "/x" } listener "tcp" { address = "a" }"#,
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }
}
