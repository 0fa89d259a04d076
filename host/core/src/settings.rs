//! The host's settings as plain data: what the configuration file
//! ([`crate::config`]) and the command-line flags produce, with their
//! defaults and their checks. The `kvsync` crate uses these types where the
//! settings take effect (`http`, `runtime`, `worker`, `connectors`,
//! `storage::postgres`) and re-exports them there.

use std::time::Duration;

// --- the listener (`listener "tcp"`) ---

/// The listener's transport limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLimits {
    /// `max_request_size`: the largest request body (413 beyond).
    pub max_request_size: usize,
    /// `http_read_header_timeout`: from a request's first byte to its last header.
    pub read_header_timeout: Duration,
    /// `http_read_timeout`: from a request's first byte to the end of its body.
    pub read_timeout: Duration,
    /// `http_idle_timeout`: how long a connection may wait for its next request.
    pub idle_timeout: Duration,
    /// `tls_handshake_timeout` (kvsync): from accept to a finished TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// `max_connections` (kvsync): open connections at once.
    pub max_connections: usize,
}

/// Vault's default `max_request_size`: 32 MiB.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 32 << 20;

impl Default for ListenerLimits {
    /// Vault's defaults, and kvsync's for its own settings.
    fn default() -> Self {
        ListenerLimits {
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            read_header_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(5 * 60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

// --- the engine runtime ---

/// The default per-call CPU deadline.
pub const DEFAULT_CPU_LIMIT: Duration = Duration::from_secs(2);
/// Default number of idle instances kept (all tenants together).
pub const DEFAULT_WARM_INSTANCES: u32 = 16;
/// The default bound on provider calls made inline by an API request.
pub const DEFAULT_INLINE_BOUND: Duration = Duration::from_secs(3);
/// The default bound on a whole API request (Vault's default
/// `max_request_duration`).
pub const DEFAULT_MAX_REQUEST_DURATION: Duration = Duration::from_secs(90);
/// How long an API request waits for a slot of its tenant when the tenant is
/// at `tenant_max_concurrent_requests`, before it is answered 503.
pub const TENANT_SLOT_WAIT: Duration = Duration::from_millis(250);

/// The guest's limits per call and the instance pool's size.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Guest running time allowed per call.
    pub cpu: Duration,
    /// Linear memory allowed per instance.
    pub memory_bytes: usize,
    /// Instances that may run at once (pooling allocator slots).
    pub max_concurrent_instances: u32,
    /// Idle instances kept for reuse by later calls of the same tenant (0: a
    /// fresh instance for every call). See the runtime's warm pool.
    pub warm_instances: u32,
    /// API requests of one tenant (namespace) that may run at once, so one
    /// tenant cannot take every instance slot; `None`: half of
    /// `max_concurrent_instances` ([`Limits::tenant_cap`]).
    pub tenant_max_concurrent_requests: Option<u32>,
    /// API requests whose engine call runs at once, all tenants together; more
    /// wait, and are served round-robin across tenants (fewest running first);
    /// `None`: [`RUNNING_PER_CPU`] per CPU ([`Limits::running_cap`]).
    pub max_running_requests: Option<u32>,
}

/// The default `max_running_requests` per CPU this process may run on. A call
/// that waits (on a commit, a provider) gives its turn back, so one per CPU
/// keeps every CPU busy; a second would only wait in the async runtime's run
/// queue holding a turn, where calls are not served fairly (P14 noisy
/// neighbour in BENCHMARKS.md: tenant B's p99 while A floods 1.4–1.6× its p99
/// alone with one per CPU, 1.6–2.2× with two, A's write rate the same).
pub const RUNNING_PER_CPU: u32 = 1;

impl Limits {
    /// The per-tenant cap in effect: as set (at most the instance slots), or
    /// half the slots; at least 1.
    pub fn tenant_cap(&self) -> u32 {
        let slots = self.max_concurrent_instances.max(1);
        self.tenant_max_concurrent_requests
            .unwrap_or(slots / 2)
            .clamp(1, slots)
    }

    /// The running calls in effect: as set, or [`RUNNING_PER_CPU`] per CPU
    /// the process may use; at least 1 and at most the instance slots.
    pub fn running_cap(&self) -> u32 {
        let slots = self.max_concurrent_instances.max(1);
        self.max_running_requests
            .unwrap_or_else(|| {
                let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
                u32::try_from(cpus)
                    .unwrap_or(u32::MAX)
                    .saturating_mul(RUNNING_PER_CPU)
            })
            .clamp(1, slots)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu: DEFAULT_CPU_LIMIT,
            memory_bytes: 64 << 20,
            max_concurrent_instances: 256,
            warm_instances: DEFAULT_WARM_INSTANCES,
            tenant_max_concurrent_requests: None,
            max_running_requests: None,
        }
    }
}

// --- the connectors ---

/// Default bound on one provider call.
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

// --- the sync worker ---

/// Default number of sync loops (shards).
pub const DEFAULT_WORKERS: u32 = 4;
/// Most sync loops allowed: each run holds an engine instance.
pub const MAX_WORKERS: u32 = 64;
/// Default first retry delay after a retryable failure.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Default longest retry delay.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);
/// Default interval between reconciliations.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// Default coalescing window (the engine spaces the syncs of a secret that
/// keeps changing: 50 ms after a write, then this long).
pub const DEFAULT_COALESCE_WINDOW: Duration = Duration::from_secs(1);
/// Longest coalescing window accepted.
pub const MAX_COALESCE_WINDOW: Duration = Duration::from_secs(10);
/// Default `ha_lease_ttl`: a host that dies loses its shards this long after
/// its last renewal.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// Shortest `ha_lease_ttl` accepted: renewals every third of it must fit
/// between storage round trips.
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(600);

/// The worker's concurrency and timing knobs (`sync_*` settings and flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Concurrent sync loops, one per shard.
    pub workers: u32,
    /// First retry delay after a retryable failure (doubles, with jitter).
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_cap: Duration,
    /// Interval between reconciliations; also the longest an idle loop sleeps.
    pub reconcile_interval: Duration,
    /// The coalescing window, applied per association by the engine: a
    /// secret changed again right after its destination was written waits
    /// 50 ms after that write, then this window after each further one, so
    /// rapid changes of one secret cost about one provider write per window,
    /// not one each. A change after a quiet moment, or of another secret,
    /// runs at once. Zero: no coalescing.
    pub coalesce_window: Duration,
    /// `ha_lease_ttl`: how long a shard's lease lasts unless renewed (every third of it),
    /// so how long the shards of a host that died stay idle before another host takes them.
    pub lease_ttl: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            workers: DEFAULT_WORKERS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            reconcile_interval: DEFAULT_RECONCILE_INTERVAL,
            coalesce_window: DEFAULT_COALESCE_WINDOW,
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }
}

impl SyncConfig {
    /// Checks the knobs; the messages name the config setting (the flag is
    /// the same name with dashes).
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.workers == 0 || self.workers > MAX_WORKERS {
            anyhow::bail!(
                "sync_workers: {} is out of range (1 to {MAX_WORKERS})",
                self.workers
            );
        }
        if self.backoff_base.is_zero() {
            anyhow::bail!("sync_backoff_base: must be greater than zero");
        }
        if self.backoff_cap < self.backoff_base {
            anyhow::bail!(
                "sync_backoff_cap ({:?}) must not be shorter than sync_backoff_base ({:?})",
                self.backoff_cap,
                self.backoff_base
            );
        }
        if self.reconcile_interval.is_zero() {
            anyhow::bail!("sync_reconcile_interval: must be greater than zero");
        }
        if self.coalesce_window > MAX_COALESCE_WINDOW {
            anyhow::bail!(
                "sync_coalesce_window: {:?} is longer than the maximum ({MAX_COALESCE_WINDOW:?})",
                self.coalesce_window
            );
        }
        if self.lease_ttl < MIN_LEASE_TTL {
            anyhow::bail!(
                "ha_lease_ttl: {:?} is shorter than the minimum ({MIN_LEASE_TTL:?})",
                self.lease_ttl
            );
        }
        Ok(())
    }
}

// --- PostgreSQL storage ---

/// Longest `table` name: PostgreSQL's identifiers stop at 63 bytes, and the longest derived
/// name adds `_changes`... `_schema` suffixes.
pub const MAX_TABLE_NAME: usize = 48;

/// A table name: lowercase ASCII letters, digits and `_`, not starting with a digit.
pub fn check_table_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !valid_start
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        || name.len() > MAX_TABLE_NAME
    {
        return Err(format!(
            "{name:?} is not a table name kvsync accepts: 1 to {MAX_TABLE_NAME} lowercase letters, digits and _, not starting with a digit"
        ));
    }
    Ok(())
}
