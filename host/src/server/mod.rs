//! The composition root. Every part of a kvsync server is assembled here and
//! nowhere else: the storage under its encryption barrier, the token store
//! (and its sweep) and the policy store, the engine runtime with the
//! destination connectors and the token store, the HTTP front's state, and
//! the sync worker. `kvsync server` (from a config file, or in dev mode),
//! `kvsync sync run`, the benchmarks and the tests all start from a
//! [`Server`] (or, for a runtime alone, from [`engine`]).

mod storage;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

pub use storage::{Access, Initialized, Sealed, in_use_message, init, load_key};

use crate::auth::tokens::sweep::Sweeper;
use crate::auth::{Authority, Caller, Namespace, NewToken, PolicyStore, TokenStore};
use crate::config::{Config, Listener, Storage};
use crate::connectors::{ConnectorEnv, Connectors, DEFAULT_TIMEOUT};
use crate::env::Env;
use crate::ha::{HaView, HostInfo, Leases};
use crate::http::{self, Api, AppState, ListenerLimits, ROOT_TENANT};
use crate::namespaces::{NamespaceStore, Tenancy};
use crate::runtime::{self, DEFAULT_INLINE_BOUND, DEFAULT_MAX_REQUEST_DURATION, Limits, Runtime};
use crate::storage::{SharedBackend, TenantStorage};
use crate::worker::{self, DrainProgress, DrainReport, SyncConfig, Worker};

/// How the engine runtime is built.
#[derive(Clone)]
pub struct EngineOptions {
    /// The component to run: [`runtime::ENGINE_COMPONENT`], or a test's.
    pub component: &'static [u8],
    pub limits: Limits,
    /// Where compiled machine code is cached (`None`: compiled each time).
    pub cache_dir: Option<PathBuf>,
    /// Bound on one provider call.
    pub provider_timeout: Duration,
    /// Bound on provider calls made inline by an API request.
    pub inline_bound: Duration,
    /// Where the connectors reach their providers.
    pub connector_env: ConnectorEnv,
    /// Bound on a whole API request (the listener's `max_request_duration`).
    pub max_request_duration: Duration,
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("component_bytes", &self.component.len())
            .field("limits", &self.limits)
            .field("cache_dir", &self.cache_dir)
            .field("provider_timeout", &self.provider_timeout)
            .field("inline_bound", &self.inline_bound)
            .field("connector_env", &self.connector_env)
            .field("max_request_duration", &self.max_request_duration)
            .finish()
    }
}

impl Default for EngineOptions {
    /// The engine component with the default limits and timeouts, no cache.
    fn default() -> Self {
        EngineOptions {
            component: runtime::ENGINE_COMPONENT,
            limits: Limits::default(),
            cache_dir: None,
            provider_timeout: DEFAULT_TIMEOUT,
            inline_bound: DEFAULT_INLINE_BOUND,
            connector_env: ConnectorEnv::default(),
            max_request_duration: DEFAULT_MAX_REQUEST_DURATION,
        }
    }
}

impl EngineOptions {
    /// The config file's settings; the cache defaults to the environment's.
    fn from_config(config: &Config, env: &Env) -> Self {
        EngineOptions {
            component: runtime::ENGINE_COMPONENT,
            limits: config.limits.clone(),
            cache_dir: config.cache_dir.clone().or_else(|| env.cache_dir.clone()),
            provider_timeout: config.provider_timeout,
            inline_bound: config.sync_inline_timeout,
            connector_env: env.connectors.clone(),
            max_request_duration: config.listener.max_request_duration,
        }
    }
}

/// The engine runtime, with every registered destination connector: the one
/// place where the runtime and the connector registry are built.
pub fn engine(options: &EngineOptions) -> anyhow::Result<Runtime> {
    let connectors = Arc::new(Connectors::with_env(
        options.connector_env.clone(),
        options.provider_timeout,
    ));
    Ok(Runtime::new(
        options.component,
        options.limits.clone(),
        connectors,
        options.cache_dir.as_deref(),
    )?
    .with_inline_bound(options.inline_bound)
    .with_max_request_duration(options.max_request_duration))
}

/// What a command line adds to the configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Overrides `guest_warm_instances`.
    pub warm_instances: Option<u32>,
    /// Overrides `tenant_max_concurrent_requests`.
    pub tenant_max_concurrent_requests: Option<u32>,
    /// Overrides `max_running_requests`.
    pub max_running_requests: Option<u32>,
    /// Overrides the listener's `max_request_duration`.
    pub max_request_duration: Option<Duration>,
    /// The sync worker's knobs: the configuration's, with the command's
    /// flags applied.
    pub sync: SyncConfig,
}

impl Options {
    /// The engine's options with the command line's overrides applied.
    fn apply(&self, engine: &mut EngineOptions) {
        if let Some(n) = self.warm_instances {
            engine.limits.warm_instances = n;
        }
        if let Some(n) = self.tenant_max_concurrent_requests {
            engine.limits.tenant_max_concurrent_requests = Some(n);
        }
        if let Some(n) = self.max_running_requests {
            engine.limits.max_running_requests = Some(n);
        }
        if let Some(d) = self.max_request_duration {
            engine.max_request_duration = d;
        }
    }
}

/// A bound listener, with the HTTP front's transport settings.
pub struct Listening {
    pub listener: TcpListener,
    pub addr: SocketAddr,
    pub tls: Option<TlsAcceptor>,
    pub limits: ListenerLimits,
}

/// Binds the configured listener (port 0 picks one), with TLS when
/// configured.
pub async fn listen(config: &Listener) -> anyhow::Result<Listening> {
    let tls = match &config.tls {
        Some((cert, key)) => Some(http::tls::acceptor(cert, key)?),
        None => None,
    };
    let (listener, addr) = http::bind(&config.address).await?;
    Ok(Listening {
        listener,
        addr,
        tls,
        limits: config.limits.clone(),
    })
}

/// Dev mode's listener settings: plain HTTP on `address`.
pub fn dev_listener(address: String) -> Listener {
    Listener::plain(address)
}

/// The HTTP front's state: requests answered by `api` against `backend`,
/// callers resolved by `tokens` and authorized by `policies`; `sync_wake` is
/// notified when a request queued sync work; `ha` is what `sys/leader` adds.
pub fn http_state(
    api: Arc<dyn Api>,
    backend: SharedBackend,
    (tokens, policies): (TokenStore, PolicyStore),
    namespaces: NamespaceStore,
    limits: ListenerLimits,
    sync_wake: Arc<Notify>,
    ha: Option<HaView>,
) -> Arc<AppState> {
    Arc::new(AppState {
        api,
        quotas: crate::quotas::Quotas::new(backend.clone()),
        backend,
        tokens,
        policies,
        namespaces,
        limits,
        sync_wake,
        ha,
    })
}

/// The identity stores of `backend`, with the root namespace's built-in
/// policies created unless they exist (the first start of a storage).
pub async fn identity(backend: &SharedBackend) -> anyhow::Result<(TokenStore, PolicyStore)> {
    let policies = PolicyStore::new(backend.clone());
    policies.ensure_builtins(&Namespace::root()).await?;
    Ok((TokenStore::new(backend.clone()), policies))
}

/// Dev mode's storage: in memory, with its identity stores (the built-in
/// policies), a root token
/// (`root_token_id`, or a random one, returned to be shown) and KV-v2
/// mounted at `secret/` through `api`, as any client would mount it.
pub async fn dev_storage(
    api: &dyn Api,
    root_token_id: Option<String>,
) -> anyhow::Result<(storage::Sealed, (TokenStore, PolicyStore), NewToken)> {
    let sealed = storage::in_memory().await?;
    let backend = sealed.backend.clone();
    let (tokens, policies) = identity(&backend).await?;
    let root = tokens.create_root(root_token_id).await?;
    let caller = tokens
        .resolve(root.token.clone())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the root token just created is not found"))?;
    let authority = Authority::of(Namespace::root(), &caller, &policies, &tokens).await?;
    let req = runtime::request(
        "POST",
        "sys/mounts/secret",
        br#"{"type":"kv","options":{"version":"2"},"description":"key/value secret storage"}"#,
        Some((caller, authority)),
    );
    let resp = api
        .handle(TenantStorage::new(backend.clone(), ROOT_TENANT), req)
        .await?
        .response;
    if resp.status >= 300 {
        anyhow::bail!(
            "cannot mount secret/: {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
    }
    Ok((sealed, (tokens, policies), root))
}

/// The assembled parts of a server.
pub struct Server {
    backend: SharedBackend,
    /// What the storage is, for the start-up banner.
    storage_description: String,
    tokens: TokenStore,
    policies: PolicyStore,
    /// The namespaces, and what removes a deleted one's contents.
    tenancy: Tenancy,
    runtime: Runtime,
    sync: SyncConfig,
    sync_wake: Arc<Notify>,
    /// `ha_enabled` of the PostgreSQL storage.
    ha_enabled: bool,
    /// `api_addr`: where clients reach this host; `None`: the listener's address.
    api_addr: Option<String>,
}

impl Server {
    /// The configured storage (initialized, with a matching key) and the
    /// engine. `config_path` is named in the advice when the storage is not
    /// initialized.
    pub async fn open(
        config: &Config,
        config_path: &Path,
        env: &Env,
        options: Options,
        access: Access,
    ) -> anyhow::Result<Self> {
        let (sealed, description) = storage::open(config, config_path, env, access).await?;
        let mut engine_options = EngineOptions::from_config(config, env);
        options.apply(&mut engine_options);
        let runtime = engine(&engine_options)?;
        let (tokens, policies) = identity(&sealed.backend).await?;
        tokens.upgrade().await?;
        crate::storage::sync_index::upgrade(sealed.backend.as_ref()).await?;
        let mut server = Self::assemble(sealed, (tokens, policies), runtime, options.sync);
        server.storage_description = description;
        server.ha_enabled = matches!(&config.storage, Storage::Postgres(pg) if pg.ha_enabled);
        server.api_addr = config.api_addr.clone();
        Ok(server)
    }

    /// Dev mode: in-memory storage, a root token (`root_token_id`, or a
    /// random one, returned to be shown), KV-v2 mounted at `secret/`.
    pub async fn dev(
        env: &Env,
        root_token_id: Option<String>,
        options: Options,
    ) -> anyhow::Result<(Self, NewToken)> {
        let mut engine_options = EngineOptions {
            cache_dir: env.cache_dir.clone(),
            connector_env: env.connectors.clone(),
            ..EngineOptions::default()
        };
        options.apply(&mut engine_options);
        let runtime = engine(&engine_options)?;
        let (sealed, identity, root) = dev_storage(&runtime, root_token_id).await?;
        Ok((
            Self::assemble(sealed, identity, runtime, options.sync),
            root,
        ))
    }

    /// Empty in-memory storage (no tokens, nothing mounted, the built-in
    /// policies) and an engine built from `engine_options`: for tests.
    pub async fn in_memory(
        engine_options: &EngineOptions,
        sync: SyncConfig,
    ) -> anyhow::Result<Self> {
        let sealed = storage::in_memory().await?;
        let runtime = engine(engine_options)?;
        let identity = identity(&sealed.backend).await?;
        Ok(Self::assemble(sealed, identity, runtime, sync))
    }

    /// The parts of a server; the runtime's `tokens` import serves `tokens`
    /// (the store whose caller cache the HTTP front shares), its `keyring`
    /// import the storage's keyring.
    fn assemble(
        storage::Sealed { backend, keyring }: storage::Sealed,
        (tokens, policies): (TokenStore, PolicyStore),
        runtime: Runtime,
        sync: SyncConfig,
    ) -> Self {
        let tenancy = Tenancy::new(&backend, &tokens, &policies);
        Server {
            runtime: runtime
                .with_tokens(tokens.clone())
                .with_keyring(keyring)
                .with_tenancy(tenancy.clone()),
            tenancy,
            tokens,
            policies,
            backend,
            storage_description: "inmem".to_string(),
            sync,
            sync_wake: Arc::new(Notify::new()),
            ha_enabled: false,
            api_addr: None,
        }
    }

    /// What the storage is: `redb (path: ...)`, `postgresql (...)` or `inmem`.
    pub fn storage_description(&self) -> &str {
        &self.storage_description
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn tokens(&self) -> &TokenStore {
        &self.tokens
    }

    pub fn policies(&self) -> &PolicyStore {
        &self.policies
    }

    /// The root tenant's storage.
    pub fn storage(&self) -> TenantStorage {
        TenantStorage::new(self.backend.clone(), ROOT_TENANT)
    }

    /// What wakes the sync worker's loops (the HTTP front notifies it when a
    /// request queued sync work).
    pub fn sync_wake(&self) -> &Arc<Notify> {
        &self.sync_wake
    }

    /// One API request through the engine, as `caller` (with the authority
    /// its policies give it in the root namespace).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        caller: Option<Caller>,
    ) -> anyhow::Result<runtime::Outcome> {
        self.call_in(ROOT_TENANT, method, path, body, caller).await
    }

    /// [`Server::call`] against the storage of tenant `tenant` (the caller's authority is
    /// still the root namespace's: a test's way to drive several tenants).
    pub async fn call_in(
        &self,
        tenant: &str,
        method: &str,
        path: &str,
        body: &[u8],
        caller: Option<Caller>,
    ) -> anyhow::Result<runtime::Outcome> {
        let caller = match caller {
            Some(caller) => {
                let authority =
                    Authority::of(Namespace::root(), &caller, &self.policies, &self.tokens).await?;
                Some((caller, authority))
            }
            None => None,
        };
        let req = runtime::request(method, path, body, caller);
        let storage = TenantStorage::new(self.backend.clone(), tenant);
        Ok(self.runtime.handle(storage, req).await?)
    }

    /// Starts the sync worker of every tenant, as `host`.
    pub fn start_worker(&self, host: HostInfo) -> Worker {
        Worker::start(
            self.runtime.clone(),
            self.backend.clone(),
            self.sync.clone(),
            self.sync_wake.clone(),
            host,
        )
    }

    /// Processes the sync work due now, without a worker (see
    /// [`worker::drain`]).
    pub async fn drain(
        &self,
        wait: Duration,
        progress: Arc<DrainProgress>,
    ) -> anyhow::Result<DrainReport> {
        worker::drain(&self.runtime, &self.backend, &self.sync, wait, progress).await
    }

    /// Runs the sync worker (as `host`) until `shutdown` resolves, then stops it, letting
    /// runs in flight finish within the grace period and releasing its leases.
    pub async fn sync_until(&self, host: HostInfo, shutdown: impl Future<Output = ()>) {
        let worker = self.start_worker(host);
        shutdown.await;
        worker.stop(worker::SHUTDOWN_GRACE).await;
    }

    /// Serves HTTP on `listening` with the sync worker and the token sweep
    /// beside it, until `shutdown` resolves: then the listener, the worker
    /// and the sweep stop together, each letting work in flight finish
    /// within its grace period.
    pub async fn serve(&self, listening: Listening, shutdown: impl Future<Output = ()>) {
        let sweeper = Sweeper::start(self.tokens.clone());
        if let Err(e) = self.tenancy.resume().await {
            tracing::warn!(error = %e, "cannot resume the deletions of namespaces; they resume at the next start");
        }
        let scheme = if listening.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let address = self
            .api_addr
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", listening.addr));
        let host = HostInfo::this_process(address);
        let ha = HaView {
            leases: Leases::new(
                self.backend.clone(),
                host.clone(),
                self.sync.lease_ttl,
                self.sync.workers,
            ),
            ha_enabled: self.ha_enabled,
            active_time: kvsync_component::time::rfc3339(kvsync_component::time::now()),
        };
        let state = http_state(
            Arc::new(self.runtime.clone()),
            self.backend.clone(),
            (self.tokens.clone(), self.policies.clone()),
            self.tenancy.store.clone(),
            listening.limits.clone(),
            self.sync_wake.clone(),
            Some(ha),
        );
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let worker = self.sync_until(host, async move {
            // An error means the sender is gone: the server is stopping anyway.
            let _ = stopped.wait_for(|s| *s).await;
        });
        tokio::join!(
            http::serve(listening.listener, listening.tls, state, shutdown),
            worker
        );
        sweeper.stop().await;
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    tracing::info!("shutting down");
}
