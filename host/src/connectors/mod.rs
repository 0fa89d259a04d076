//! Destination connectors: the host side of the engine's `connector` import.
//!
//! One folder per destination type (`<type>/mod.rs`: push, push-new, delete,
//! inspect and error classification; `config.rs`: the typed config;
//! `client.rs`: authentication, token and client caches), each implementing
//! [`Connector`], and one registration list, [`registered`]. Adding a
//! destination type means writing one folder here and adding one line to that
//! list; nothing else on the host changes. [`Connectors`] is the registry built
//! from the list: it parses each destination's config once per call into the
//! connector's type ([`Dest`]), routes the call to the connector of the
//! destination's type, bounds it with a timeout and meters it (calls per type,
//! operation and outcome).
//!
//! The provider endpoint overrides of the server's environment are read once into
//! a [`ConnectorEnv`] (see [`env`]) and handed to each connector when the registry
//! builds it. Shared pieces: [`http`] (the egress-bound reqwest client and the
//! mapping of HTTP answers), [`egress`] (the networking rules), [`fields`] (the
//! field types of typed configs).
//!
//! Secrets: a [`Destination`]'s config holds the provider credentials in clear and
//! an [`ExternalSecret`] holds a secret value. Both are zeroized on drop and their
//! `Debug` output masks them; no error message or log line here contains them.

pub mod aws_sm;
pub mod azure_kv;
pub mod env;
pub mod gcp_sm;
pub mod gh;
mod in_mem;
pub mod vercel_project;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use zeroize::{Zeroize, Zeroizing};

pub mod egress;
pub mod fields;
pub mod http;
mod typed;

pub use env::ConnectorEnv;
pub use in_mem::InMemory;
pub use typed::{Connector, Dest, typed};

/// The registration list: every destination type this build can reach, each
/// built with the server's endpoint overrides.
///
/// The one place a new connector is added.
pub fn registered(env: &ConnectorEnv) -> Vec<Arc<dyn DestinationConnector>> {
    vec![
        typed(InMemory::default()),
        typed(aws_sm::AwsSecretsManager::new(env)),
        typed(azure_kv::AzureKeyVault::new(env)),
        typed(gcp_sm::GcpSecretManager::new(env)),
        typed(gh::GitHub::new(env)),
        typed(vercel_project::VercelProject::new(env)),
    ]
}

pub use kvsync_host_core::settings::DEFAULT_PROVIDER_TIMEOUT as DEFAULT_TIMEOUT;

/// A client for one destination type as the registry holds it: the
/// destination's config still JSON. Connectors implement [`Connector`] and are
/// registered through [`typed`], which parses the config; the methods mean
/// what [`Connector`]'s do.
#[async_trait]
pub trait DestinationConnector: Send + Sync {
    /// The destination type served, e.g. `aws-sm`.
    fn kind(&self) -> &'static str;

    /// Creates or overwrites an external secret.
    async fn push(&self, dest: &Destination, secret: &ExternalSecret) -> Result<(), SyncError>;

    /// See [`Connector::push_new`].
    async fn push_new(&self, dest: &Destination, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.push(dest, secret).await
    }

    /// Deletes an external secret; one that does not exist counts as deleted.
    async fn delete(&self, dest: &Destination, name: &str) -> Result<(), SyncError>;

    /// The objects the destination holds, for types that can show them.
    async fn inspect(&self, dest: &Destination) -> Result<Vec<ExternalSecret>, SyncError> {
        let _ = dest;
        Err(cannot_inspect())
    }
}

/// The answer of a type that cannot list its objects.
fn cannot_inspect() -> SyncError {
    SyncError::ClientSide("this destination type cannot list its objects".to_string())
}

/// A destination as a connector needs it to reach the provider.
pub struct Destination {
    /// `aws-sm`, `azure-kv`, `gcp-sm`, `gh`, `vercel-project`, `in-mem`.
    pub kind: String,
    pub name: String,
    /// The tenant whose destination it is (a destination name means something within its
    /// tenant only; `in-mem` keeps each tenant's objects apart by it).
    pub tenant: String,
    /// The destination's connection details (credentials in clear) and
    /// networking fields: always a JSON object.
    pub config: serde_json::Value,
}

impl Destination {
    /// Builds a destination from the engine's record; `config` is a JSON object
    /// (an empty string counts as `{}`). The raw text is zeroized either way, and
    /// a parse error never quotes it.
    pub fn parse(kind: String, name: String, config: String) -> Result<Self, SyncError> {
        let config = Zeroizing::new(config);
        let value = if config.trim().is_empty() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_str(&config).map_err(|e| {
                SyncError::Internal(format!(
                    "the config of destination {name:?} is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?
        };
        let dest = Destination {
            kind,
            name,
            tenant: String::new(),
            config: value,
        };
        if !dest.config.is_object() {
            return Err(SyncError::Internal(format!(
                "the config of destination {:?} is not a JSON object",
                dest.name
            )));
        }
        Ok(dest)
    }
}

impl Destination {
    /// This destination as tenant `tenant`'s.
    pub fn in_tenant(mut self, tenant: &str) -> Self {
        self.tenant = tenant.to_string();
        self
    }
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("tenant", &self.tenant)
            .field("config", &"*****")
            .finish()
    }
}

impl Drop for Destination {
    fn drop(&mut self) {
        zeroize_json(&mut self.config);
    }
}

/// Wipes every string in a JSON value (keys are field names, not secrets).
fn zeroize_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(zeroize_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(zeroize_json),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
    }
}

/// One external object: its rendered name, the secret value and its tags.
#[derive(Clone, PartialEq, Eq)]
pub struct ExternalSecret {
    pub name: String,
    /// Zeroized on drop, never printed.
    pub value: Zeroizing<String>,
    /// `hashicorp:vault` and the destination's custom tags (cloud types only).
    pub tags: Vec<(String, String)>,
}

impl fmt::Debug for ExternalSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalSecret")
            .field("name", &self.name)
            .field("value", &"*****")
            .field("tags", &self.tags)
            .finish()
    }
}

/// A failed provider call, classified as the sync status it causes (the WIT
/// `sync-error`). Messages never contain credentials or secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// Bad credentials, missing permission, a name or value the provider
    /// rejects: `CLIENT_SIDE_ERROR`, not retried until something changes.
    #[error("{0}")]
    ClientSide(String),
    /// Outage, timeout, throttling: `EXTERNAL_SERVICE_ERROR`, retryable.
    #[error("{message}")]
    ExternalService {
        message: String,
        /// When the provider said to come back.
        retry_after: Option<Duration>,
    },
    /// The host itself failed: `INTERNAL_VAULT_ERROR`.
    #[error("{0}")]
    Internal(String),
}

impl SyncError {
    pub fn outcome(&self) -> Outcome {
        match self {
            SyncError::ClientSide(_) => Outcome::ClientSide,
            SyncError::ExternalService { .. } => Outcome::ExternalService,
            SyncError::Internal(_) => Outcome::Internal,
        }
    }
}

/// A connector operation, for metering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Push,
    Delete,
    Inspect,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Push, Op::Delete, Op::Inspect];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Push => "push",
            Op::Delete => "delete",
            Op::Inspect => "inspect",
        }
    }
}

/// How a connector call ended, for metering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    ClientSide,
    ExternalService,
    Internal,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::ClientSide,
        Outcome::ExternalService,
        Outcome::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientSide => "client-side",
            Outcome::ExternalService => "external-service",
            Outcome::Internal => "internal",
        }
    }
}

/// The metering key of calls to types without a registered connector. Kept as
/// one bucket so that arbitrary kind strings cannot grow the counters.
pub const UNREGISTERED: &str = "unregistered";

/// Call counters of one destination type, per operation.
#[derive(Default)]
struct Counters {
    push: OutcomeCounters,
    delete: OutcomeCounters,
    inspect: OutcomeCounters,
}

/// Call counters of one operation, per outcome.
#[derive(Default)]
struct OutcomeCounters {
    ok: AtomicU64,
    client_side: AtomicU64,
    external_service: AtomicU64,
    internal: AtomicU64,
}

impl Counters {
    fn slot(&self, op: Op, outcome: Outcome) -> &AtomicU64 {
        let of_op = match op {
            Op::Push => &self.push,
            Op::Delete => &self.delete,
            Op::Inspect => &self.inspect,
        };
        match outcome {
            Outcome::Ok => &of_op.ok,
            Outcome::ClientSide => &of_op.client_side,
            Outcome::ExternalService => &of_op.external_service,
            Outcome::Internal => &of_op.internal,
        }
    }
}

/// One row of [`Connectors::metrics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallCount {
    pub kind: &'static str,
    pub op: Op,
    pub outcome: Outcome,
    pub count: u64,
}

struct Registered {
    connector: Arc<dyn DestinationConnector>,
    counters: Counters,
}

/// The registry: routes, bounds and meters every connector call.
pub struct Connectors {
    by_kind: HashMap<&'static str, Registered>,
    unregistered: Counters,
    /// Bound on each provider call; past it the call fails as
    /// `ExternalService` ("timed out after ...") and is retried later.
    pub timeout: Duration,
}

impl Default for Connectors {
    fn default() -> Self {
        Connectors::new()
    }
}

impl fmt::Debug for Connectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<_> = self.by_kind.keys().collect();
        kinds.sort();
        f.debug_struct("Connectors")
            .field("kinds", &kinds)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Connectors {
    /// Every connector of [`registered`], built with `env`, each call bounded
    /// by `timeout`.
    pub fn with_env(env: ConnectorEnv, timeout: Duration) -> Self {
        Connectors::from_list(registered(&env)).with_timeout(timeout)
    }

    /// Every connector of [`registered`], at the providers' public endpoints,
    /// with the [`DEFAULT_TIMEOUT`].
    pub fn new() -> Self {
        Connectors::with_env(ConnectorEnv::default(), DEFAULT_TIMEOUT)
    }

    /// A registry of the given connectors (tests, embedders). When two share a
    /// kind, the later one wins.
    pub fn from_list(list: Vec<Arc<dyn DestinationConnector>>) -> Self {
        let by_kind = list
            .into_iter()
            .map(|connector| {
                (
                    connector.kind(),
                    Registered {
                        connector,
                        counters: Counters::default(),
                    },
                )
            })
            .collect();
        Connectors {
            by_kind,
            unregistered: Counters::default(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The destination types with a connector, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.by_kind.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }

    pub async fn push(&self, dest: &Destination, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.call(dest, Op::Push, Some(secret), |c| c.push(dest, secret))
            .await
    }

    /// [`DestinationConnector::push_new`] (metered as a push).
    pub async fn push_new(
        &self,
        dest: &Destination,
        secret: &ExternalSecret,
    ) -> Result<(), SyncError> {
        self.call(dest, Op::Push, Some(secret), |c| c.push_new(dest, secret))
            .await
    }

    pub async fn delete(&self, dest: &Destination, name: &str) -> Result<(), SyncError> {
        self.call(dest, Op::Delete, None, |c| c.delete(dest, name))
            .await
    }

    pub async fn inspect(&self, dest: &Destination) -> Result<Vec<ExternalSecret>, SyncError> {
        self.call(dest, Op::Inspect, None, |c| c.inspect(dest))
            .await
    }

    /// Calls of `kind` (a registered type, or [`UNREGISTERED`]) for `op` that
    /// ended with `outcome`.
    pub fn calls(&self, kind: &str, op: Op, outcome: Outcome) -> u64 {
        self.counters(kind)
            .map_or(0, |c| c.slot(op, outcome).load(Ordering::Relaxed))
    }

    /// Every non-zero counter, sorted by kind, operation and outcome.
    pub fn metrics(&self) -> Vec<CallCount> {
        let mut kinds = self.kinds();
        kinds.push(UNREGISTERED);
        let mut out = Vec::new();
        for kind in kinds {
            for op in Op::ALL {
                for outcome in Outcome::ALL {
                    let count = self.calls(kind, op, outcome);
                    if count > 0 {
                        out.push(CallCount {
                            kind,
                            op,
                            outcome,
                            count,
                        });
                    }
                }
            }
        }
        out
    }

    fn counters(&self, kind: &str) -> Option<&Counters> {
        match self.by_kind.get(kind) {
            Some(r) => Some(&r.counters),
            None if kind == UNREGISTERED => Some(&self.unregistered),
            None => None,
        }
    }

    /// Runs one provider call, bounded in time and metered; its error comes
    /// back scrubbed of the secret value pushed and the destination's
    /// credentials ([`http::scrubbed`]), whatever the provider echoed.
    async fn call<'f, T>(
        &'f self,
        dest: &'f Destination,
        op: Op,
        secret: Option<&ExternalSecret>,
        f: impl FnOnce(&'f dyn DestinationConnector) -> BoxFuture<'f, T>,
    ) -> Result<T, SyncError> {
        let Some(registered) = self.by_kind.get(dest.kind.as_str()) else {
            self.unregistered
                .slot(op, Outcome::ClientSide)
                .fetch_add(1, Ordering::Relaxed);
            return Err(SyncError::ClientSide(format!(
                "destination type {} has no connector in this build yet",
                printable(&dest.kind)
            )));
        };
        let started = Instant::now();
        let out = match tokio::time::timeout(self.timeout, f(registered.connector.as_ref())).await {
            Ok(out) => out,
            Err(_) => Err(SyncError::ExternalService {
                message: format!("timed out after {}", human(self.timeout)),
                retry_after: None,
            }),
        };
        let out = out.map_err(|e| {
            let credentials = credentials(&dest.config);
            let mut values: Vec<&str> = credentials.iter().map(|c| c.as_str()).collect();
            values.extend(secret.map(|s| s.value.as_str()));
            http::scrubbed(e, &values)
        });
        let outcome = match &out {
            Ok(_) => Outcome::Ok,
            Err(e) => e.outcome(),
        };
        registered
            .counters
            .slot(op, outcome)
            .fetch_add(1, Ordering::Relaxed);
        let elapsed = started.elapsed();
        match &out {
            Err(SyncError::Internal(message)) => tracing::error!(
                kind = registered.connector.kind(),
                destination = %dest.name,
                op = op.as_str(),
                ?elapsed,
                error = %message,
                "connector call failed inside the host"
            ),
            _ => tracing::debug!(
                kind = registered.connector.kind(),
                destination = %dest.name,
                op = op.as_str(),
                outcome = outcome.as_str(),
                ?elapsed,
                "connector call"
            ),
        }
        out
    }
}

/// The boxed future an `async_trait` method returns.
type BoxFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, SyncError>> + Send + 'a>>;

/// The fields of a destination's config that hold credentials, whatever the
/// type (a GCP key file's `private_key` included).
const CREDENTIAL_FIELDS: [&str; 5] = [
    "access_token",
    "client_secret",
    "secret_access_key",
    "session_token",
    "private_key",
];

/// The credentials in a destination's config, to mask in messages.
fn credentials(config: &serde_json::Value) -> Vec<Zeroizing<String>> {
    let mut out = Vec::new();
    let mut add = |object: &serde_json::Value| {
        for field in CREDENTIAL_FIELDS {
            if let Some(value) = object.get(field).and_then(serde_json::Value::as_str) {
                out.push(Zeroizing::new(value.trim().to_string()));
            }
        }
    };
    add(config);
    let key_file = config
        .get("credentials")
        .and_then(serde_json::Value::as_str)
        .map(|text| Zeroizing::new(text.to_string()));
    if let Some(Ok(mut key)) = key_file
        .as_deref()
        .map(|text| serde_json::from_str::<serde_json::Value>(text))
    {
        add(&key);
        zeroize_json(&mut key);
    }
    out
}

/// A kind string as it may appear in a message: bounded and printable.
fn printable(kind: &str) -> String {
    kind.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// `10s`, `1500ms`: a timeout as people write it.
fn human(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests;
