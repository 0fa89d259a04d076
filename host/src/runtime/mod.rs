//! The wasmtime runtime: one [`Engine`] per process with the pooling allocator,
//! the engine component compiled once (and cached on disk as machine code),
//! pre-instantiated with [`InstancePre`]; each call runs in a warm instance of
//! its tenant kept from an earlier call ([`warm`]: never shared across
//! tenants, discarded after any trap or limit) or in a fresh [`Store`].
//!
//! API calls take turns: at most `max_running_requests` run at once, the
//! others wait in per-tenant queues served round-robin ([`fair`]), so a
//! tenant's single call never waits behind another tenant's backlog (a tenant
//! with nothing running starts its call at once on a reserved slot); a call
//! gives its turn back while a host call of it waits (provider, storage off
//! the async workers).
//!
//! Limits per call: a memory cap (growing past it traps) and a CPU deadline that
//! counts the guest's own running time only: time spent in host calls (storage
//! and provider calls) is measured and not charged (see [`limits`]). An API
//! request is bounded in wall-clock time too: its provider calls share the
//! inline bound (past it they are deferred to the sync worker), and the whole
//! call is stopped at `max_request_duration` and answered 503.
//!
//! Exports called: `api.handle` per HTTP request ([`Runtime::handle`]) and the
//! sync worker's `sync.run` / `sync.reconcile` ([`Runtime::run_sync`],
//! [`Runtime::reconcile`]), each in a fresh instance with the same limits.
//!
//! Imports: `storage` (the tenant's [`TenantStorage`]), `connector` (the shared
//! [`Connectors`] registry), `authz` (decided on the request's
//! [`crate::auth::Authority`]: the caller's compiled ACL), `policies` (the
//! authority's namespace stores), `tokens` (the server's [`TokenStore`],
//! scoped to the tenant's namespace and the caller) and `keyring` (the storage
//! barrier's keys, for a caller in the root namespace: `keyring.rs`), each
//! implemented on its own borrowed view of the call's state (`state.rs`).
//!
//! The generated bindings stay private to this module: callers exchange the
//! host's records ([`Request`], [`Response`], [`SyncSettings`], [`RunReport`],
//! [`crate::auth::Caller`]), converted at the call in `records.rs`.

mod bindings;
mod cache;
mod connector;
pub mod deterministic;
pub mod fair;
mod keyring;
pub mod limits;
mod namespaces;
mod records;
mod state;
pub mod tenants;
mod tokens;
pub mod warm;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::auth::{Authority, Caller, TokenStore};
use crate::connectors::Connectors;
use crate::namespaces::Tenancy;
use crate::storage::{SharedKeyring, TenantStorage};
pub use limits::Limits;
use records::WitRequest;
pub use records::{Effects, Outcome, Request, Response, RunReport, SyncDue, SyncSettings};
use state::State;

/// Why a call did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The guest ran past its CPU deadline or memory cap.
    #[error("the request exceeded its resource limits ({0})")]
    LimitExceeded(&'static str),
    /// Too many calls at once: every instance slot is in use.
    #[error("the server is at capacity")]
    Busy,
    /// Too many calls of the request's tenant at once (`tenant_max_concurrent_requests`).
    #[error("the namespace has too many requests in progress; retry the request")]
    TenantBusy,
    /// The guest trapped: a bug in the component.
    #[error("the engine trapped: {0}")]
    Trap(String),
}

/// The loaded engine component, shared by every request.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    pre: bindings::EnginePre<State>,
    limits: Limits,
    connectors: Arc<Connectors>,
    /// The token store the `tokens` import serves (set by the composition
    /// root once the storage is open).
    tokens: Option<TokenStore>,
    /// The storage barrier's keyring the `keyring` import serves (set with
    /// the token store).
    keyring: Option<SharedKeyring>,
    /// The namespaces the `namespaces` import serves (set with the token
    /// store).
    tenancy: Option<Tenancy>,
    /// How long a provider call made while answering an API request may take
    /// before it is left to the sync worker (the association shows `PENDING`).
    inline_bound: Duration,
    /// How long a whole API request may take (guest and host time): past it,
    /// the call is stopped and answered 503 (Vault's `max_request_duration`).
    max_request_duration: Duration,
    warm: Arc<warm::WarmPool>,
    /// Each tenant's share of the instance slots for API calls.
    tenant_slots: Arc<tenants::TenantSlots>,
    /// The API calls running at once, shared fairly between tenants.
    fair: fair::FairSlots,
    /// The largest linear memory any call of this runtime ended with (bytes).
    peak_memory: Arc<AtomicUsize>,
    _ticker: Arc<limits::EpochTicker>,
    /// Tests only: a fixed clock and random stream instead of the host's.
    deterministic: Option<deterministic::DeterministicWasi>,
}

pub use kvsync_host_core::settings::{
    DEFAULT_CPU_LIMIT, DEFAULT_INLINE_BOUND, DEFAULT_MAX_REQUEST_DURATION, TENANT_SLOT_WAIT,
};

/// The engine component built by `build.rs` for this binary.
pub static ENGINE_COMPONENT: &[u8] = include_bytes!(env!("COMPONENT_WASM"));

impl Runtime {
    /// Loads `wasm` (normally [`ENGINE_COMPONENT`]), using the machine-code cache
    /// in `cache_dir` when given. Every call reaches destinations through
    /// `connectors`.
    pub fn new(
        wasm: &[u8],
        limits: Limits,
        connectors: Arc<Connectors>,
        cache_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(&limits))
            .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;
        let component = cache::load_component(&engine, wasm, cache_dir)?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI: {e}"))?;
        state::add_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link the engine's imports: {e}"))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow::anyhow!("the component does not match the host: {e}"))?;
        let pre = bindings::EnginePre::new(pre).map_err(|e| anyhow::anyhow!("{e}"))?;
        let ticker = Arc::new(limits::EpochTicker::start(engine.clone()).context("epoch ticker")?);
        let warm = Arc::new(warm::WarmPool::new(
            limits
                .warm_instances
                .min(limits.max_concurrent_instances / 4),
        ));
        Ok(Runtime {
            engine,
            pre,
            warm,
            tenant_slots: Arc::new(tenants::TenantSlots::new(
                limits.tenant_cap(),
                TENANT_SLOT_WAIT,
            )),
            fair: fair::FairSlots::new(limits.running_cap(), limits.running_cap()),
            peak_memory: Arc::new(AtomicUsize::new(0)),
            limits,
            connectors,
            tokens: None,
            keyring: None,
            tenancy: None,
            inline_bound: DEFAULT_INLINE_BOUND,
            max_request_duration: DEFAULT_MAX_REQUEST_DURATION,
            _ticker: ticker,
            deterministic: None,
        })
    }

    /// Tests only: every instance sees `wasi`'s clock and random stream
    /// (see [`deterministic`]), so answers depend on the requests alone.
    pub fn with_deterministic_wasi(mut self, wasi: deterministic::DeterministicWasi) -> Self {
        self.deterministic = Some(wasi);
        self
    }

    /// Sets the bound on provider calls made inline by API requests.
    pub fn with_inline_bound(mut self, bound: Duration) -> Self {
        self.inline_bound = bound;
        self
    }

    /// The same engine and connectors with smaller per-call limits (the
    /// memory cap is at most the engine's), and a pool of warm instances of
    /// its own (none): how a test makes a sync run exceed its limits.
    pub fn with_call_limits(&self, cpu: Duration, memory_bytes: usize) -> Runtime {
        Runtime {
            limits: Limits {
                cpu,
                memory_bytes: memory_bytes.min(self.limits.memory_bytes),
                ..self.limits.clone()
            },
            warm: Arc::new(warm::WarmPool::new(0)),
            ..self.clone()
        }
    }

    /// Sets the bound on a whole API request (`max_request_duration`).
    pub fn with_max_request_duration(mut self, bound: Duration) -> Self {
        self.max_request_duration = bound;
        self
    }

    /// Serves the `tokens` import from `tokens`.
    pub fn with_tokens(mut self, tokens: TokenStore) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Serves the `keyring` import (`sys/key-status`, `sys/rotate`) from `keyring`.
    pub fn with_keyring(mut self, keyring: SharedKeyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Serves the `namespaces` import (`sys/namespaces`) from `tenancy`.
    pub fn with_tenancy(mut self, tenancy: Tenancy) -> Self {
        self.tenancy = Some(tenancy);
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The destination connectors shared by every call (and their metrics).
    pub fn connectors(&self) -> &Arc<Connectors> {
        &self.connectors
    }

    /// Runs one API request in an instance of `storage`'s tenant, on behalf of
    /// `req.caller` (the `authz` import answers with `req.authority`): the
    /// response, and what the request caused that the host must act on. The
    /// tenant's calls at once are capped ([`tenants`]), and the calls that run
    /// at once are bounded and shared round-robin between tenants ([`fair`]);
    /// the wait for a turn counts in the request's duration.
    pub async fn handle(&self, storage: TenantStorage, req: Request) -> Result<Outcome, CallError> {
        let (req, caller, authority) = WitRequest::split(req);
        let started = std::time::Instant::now();
        let _slot = self.tenant_slots.acquire(storage.tenant()).await?;
        let deadline = tokio::time::Instant::from_std(started) + self.max_request_duration;
        let too_long = |_| CallError::LimitExceeded("request duration");
        let turn = tokio::time::timeout_at(deadline, self.fair.turn(storage.tenant()))
            .await
            .map_err(too_long)?;
        let mut w = self
            .checkout(storage, (caller, authority), Some(self.inline_bound))
            .await?;
        // The instance holds the turn while it runs: its provider calls pause it.
        w.store.data_mut().turn = Some(turn);
        let call = w
            .instance
            .kvsync_engine_api()
            .call_handle(&mut w.store, req.record());
        // Past the deadline the call is dropped where it stood, its instance
        // (and turn) with it; a commit is atomic, so storage holds all of one
        // or none of it.
        let out = tokio::time::timeout_at(deadline, call)
            .await
            .map_err(too_long)?;
        w.store.data_mut().turn = None;
        self.finish(w, out).map(records::outcome_from_wit)
    }

    /// Runs the sync worker's `run` export in a fresh instance against
    /// `storage`: processes up to `limit` due outbox entries of shard `shard` of
    /// `shards`. There is no caller (the `authz` import answers false). The
    /// limits are the same as a request's; provider calls are host time and are
    /// not charged to the CPU deadline, however long they take.
    pub async fn run_sync(
        &self,
        storage: TenantStorage,
        shard: u32,
        shards: u32,
        limit: u32,
        settings: SyncSettings,
    ) -> Result<RunReport, CallError> {
        let mut w = self.checkout(storage, (None, None), None).await?;
        let out = w
            .instance
            .kvsync_engine_sync()
            .call_run(
                &mut w.store,
                shard,
                shards,
                limit,
                records::settings_to_wit(settings),
            )
            .await;
        self.finish(w, out).map(records::report_from_wit)
    }

    /// Runs the sync worker's `reconcile` export in a fresh instance against
    /// `storage` (no caller): queues associations whose destination copy is
    /// behind the secret and returns how many it queued.
    pub async fn reconcile(&self, storage: TenantStorage) -> Result<u32, CallError> {
        let mut w = self.checkout(storage, (None, None), None).await?;
        let out = w
            .instance
            .kvsync_engine_sync()
            .call_reconcile(&mut w.store)
            .await;
        self.finish(w, out)
    }

    /// The largest guest linear memory any finished call of this runtime
    /// (or of those made from it) has had, in bytes: a warm instance's
    /// memory never shrinks, so it counts the largest of its calls.
    pub fn peak_guest_memory(&self) -> usize {
        self.peak_memory.load(Ordering::Relaxed)
    }

    /// [`Runtime::peak_guest_memory`], starting the count again from zero.
    pub fn take_peak_guest_memory(&self) -> usize {
        self.peak_memory.swap(0, Ordering::Relaxed)
    }

    /// Tenants with an API call running or waiting for a slot now (of their
    /// cap, or of the running calls).
    pub fn active_tenants(&self) -> usize {
        self.tenant_slots
            .active_tenants()
            .max(self.fair.active_tenants())
    }

    /// API calls running now, and waiting for a turn to run
    /// (`max_running_requests`).
    pub fn running_calls(&self) -> (usize, usize) {
        (self.fair.running(), self.fair.waiting())
    }

    /// Idle instances kept for reuse now (all tenants).
    pub fn warm_instances(&self) -> usize {
        self.warm.idle_count()
    }

    /// An instance for one call on behalf of a caller (and its authority)
    /// against `storage`: a warm one of the same tenant, readied for this
    /// call, or a fresh one.
    async fn checkout(
        &self,
        storage: TenantStorage,
        caller: (Option<Caller>, Option<Authority>),
        inline_bound: Option<Duration>,
    ) -> Result<warm::Warm, CallError> {
        if let Some(mut w) = self.warm.take(storage.prefix()) {
            // The instance may come from a clone of this runtime made before
            // its stores were set (dev mode's setup): it gets this one's.
            let state = w.store.data_mut();
            state.ready_for_call(storage, self.tokens.clone(), caller, inline_bound);
            state.serve_stores(self.keyring.clone(), self.tenancy.clone());
            limits::rearm(&mut w.store, &self.limits);
            return Ok(w);
        }
        let (store, instance) = self.instantiate(storage, caller, inline_bound).await?;
        Ok(warm::Warm::new(store, instance))
    }

    /// The outcome of a call; the instance goes back to the warm pool only
    /// when the call returned cleanly (the pool checks the limits too).
    fn finish<T>(&self, w: warm::Warm, out: wasmtime::Result<T>) -> Result<T, CallError> {
        self.peak_memory
            .fetch_max(w.store.data().memory.size, Ordering::Relaxed);
        match out {
            Ok(v) => {
                self.warm.give_back(w, true);
                Ok(v)
            }
            Err(e) => Err(classify(&w.store, e, false)),
        }
    }

    /// A fresh instance that runs nothing and is kept until dropped: what an
    /// idle instance costs in memory (the benchmarks' P4 measure).
    pub async fn idle_instance(&self, storage: TenantStorage) -> Result<IdleInstance, CallError> {
        let (store, instance) = self.instantiate(storage, (None, None), None).await?;
        Ok(IdleInstance {
            _held: warm::Warm::new(store, instance),
        })
    }

    /// A fresh store with the per-call limits armed, and the component
    /// instantiated in it.
    async fn instantiate(
        &self,
        storage: TenantStorage,
        caller: (Option<Caller>, Option<Authority>),
        inline_bound: Option<Duration>,
    ) -> Result<(Store<State>, bindings::Engine), CallError> {
        let mut state = State::new(
            storage,
            self.connectors.clone(),
            self.tokens.clone(),
            caller,
            inline_bound,
            &self.limits,
        )
        .with_keyring(self.keyring.clone())
        .with_tenancy(self.tenancy.clone());
        if let Some(d) = &self.deterministic {
            state.set_wasi(d.ctx());
        }
        let mut store = Store::new(&self.engine, state);
        limits::arm(&mut store, &self.limits);
        match self.pre.instantiate_async(&mut store).await {
            Ok(instance) => Ok((store, instance)),
            Err(e) => Err(classify(&store, e, true)),
        }
    }
}

/// An instantiated engine that is not running (see [`Runtime::idle_instance`]).
pub struct IdleInstance {
    _held: warm::Warm,
}

fn engine_config(limits: &Limits) -> Config {
    let mut cfg = Config::new();
    cfg.epoch_interruption(true);
    let mut pool = PoolingAllocationConfig::default();
    let slots = limits.max_concurrent_instances.max(1);
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(8))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(4))
        .total_stacks(slots)
        .max_memory_size(limits.memory_bytes);
    cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    cfg
}

/// Maps a failed instantiation or call to what the client is told.
fn classify(store: &Store<State>, err: wasmtime::Error, instantiating: bool) -> CallError {
    if store.data().cpu.exceeded() {
        return CallError::LimitExceeded("cpu time");
    }
    if store.data().memory_exceeded() {
        return CallError::LimitExceeded("memory");
    }
    if err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return CallError::LimitExceeded("cpu time");
    }
    if instantiating && err.is::<wasmtime::PoolConcurrencyLimitError>() {
        return CallError::Busy;
    }
    CallError::Trap(format!("{err:?}"))
}

/// The message of a caught panic (`""` when it carries none), for the log.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// A request record for engine-internal calls (dev-mode setup), on behalf of
/// `caller` with its `authority`.
pub fn request(
    method: &str,
    path: &str,
    body: &[u8],
    caller: Option<(Caller, Authority)>,
) -> Request {
    let (caller, authority) = caller.unzip();
    Request {
        method: method.to_string(),
        path: path.to_string(),
        query: String::new(),
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: body.to_vec(),
        caller,
        authority,
    }
}
