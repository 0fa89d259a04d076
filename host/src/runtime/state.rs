//! The per-call store state, the borrowed view each import sees of it, and
//! the host side of the `storage` and `authz` imports (the `connector` import
//! is in [`super::connector`], `tokens` in [`super::tokens`]).
//!
//! Each import is implemented on a small view that borrows only what it
//! needs (wasmtime's `HasData` pattern): `storage` the tenant's storage and
//! the CPU meter, `connector` the registry, the meter and the inline bound,
//! `authz` the caller, `tokens` the token store, the tenant's namespace, the
//! caller and the meter. No import reaches the rest of the state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::kvsync::engine::{authz, connector, storage as wit, tokens, types};
use super::limits::{CpuMeter, Limits, MemoryLimiter};
use crate::auth::{Caller, TokenStore};
use crate::connectors::Connectors;
use crate::storage::{self, StorageError, TenantStorage};

pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    storage: TenantStorage,
    connectors: Arc<Connectors>,
    /// The server's token store (`None`: a runtime without one answers the
    /// `tokens` import with an error).
    tokens: Option<TokenStore>,
    /// Who made the request being handled (`None`: an unauthenticated path,
    /// or a sync run).
    caller: Option<Caller>,
    pub cpu: CpuMeter,
    pub memory: MemoryLimiter,
    /// Set while answering an API request: provider calls that take longer
    /// are left to the sync worker (`deferred`).
    inline_bound: Option<Duration>,
}

impl State {
    pub fn new(
        storage: TenantStorage,
        connectors: Arc<Connectors>,
        tokens: Option<TokenStore>,
        caller: Option<Caller>,
        inline_bound: Option<Duration>,
        limits: &Limits,
    ) -> Self {
        State {
            // The guest sees no environment, arguments, files or sockets; its
            // stderr (error lines, never request data) goes to the server log.
            wasi: WasiCtx::builder().inherit_stderr().build(),
            table: ResourceTable::new(),
            storage,
            connectors,
            tokens,
            caller,
            cpu: CpuMeter::new(limits.cpu),
            memory: MemoryLimiter::new(limits.memory_bytes),
            inline_bound,
        }
    }

    /// Readies the state for a call: the tenant's storage, the token store,
    /// the caller, the bound on inline provider calls (the CPU meter is
    /// re-armed with the store: [`super::limits::rearm`]).
    pub fn ready_for_call(
        &mut self,
        storage: TenantStorage,
        tokens: Option<TokenStore>,
        caller: Option<Caller>,
        inline_bound: Option<Duration>,
    ) {
        self.storage = storage;
        self.tokens = tokens;
        self.caller = caller;
        self.inline_bound = inline_bound;
    }

    /// Replaces the WASI context (tests: [`super::deterministic`]).
    pub(super) fn set_wasi(&mut self, wasi: WasiCtx) {
        self.wasi = wasi;
    }

    /// The tenant this instance serves (its storage prefix): the key of the
    /// warm pool.
    pub fn tenant(&self) -> &str {
        self.storage.prefix()
    }

    pub fn memory_exceeded(&self) -> bool {
        self.memory.exceeded
    }

    fn storage_view(&mut self) -> StorageView<'_> {
        StorageView {
            storage: &self.storage,
            cpu: &self.cpu,
        }
    }

    pub(super) fn connector_view(&mut self) -> ConnectorView<'_> {
        ConnectorView {
            connectors: &self.connectors,
            cpu: &self.cpu,
            inline_bound: self.inline_bound,
        }
    }

    pub(super) fn authz_view(&mut self) -> AuthzView<'_> {
        AuthzView {
            caller: self.caller.as_ref(),
        }
    }

    pub(super) fn tokens_view(&mut self) -> TokensView<'_> {
        TokensView {
            store: self.tokens.as_ref(),
            namespace: self.storage.tenant(),
            caller: self.caller.as_ref(),
            cpu: &self.cpu,
        }
    }
}

/// What the `storage` import sees: the tenant's storage, and the meter its
/// time is charged to as host time.
pub struct StorageView<'a> {
    storage: &'a TenantStorage,
    cpu: &'a CpuMeter,
}

/// What the `connector` import sees: the registry, the meter, and the bound
/// on provider calls within an API request.
pub struct ConnectorView<'a> {
    pub(super) connectors: &'a Connectors,
    pub(super) cpu: &'a CpuMeter,
    pub(super) inline_bound: Option<Duration>,
}

/// What the `authz` import sees: the caller of the request.
pub struct AuthzView<'a> {
    caller: Option<&'a Caller>,
}

/// What the `tokens` import sees: the token store, the namespace of the
/// request's tenant, its caller, and the meter its time is charged to.
pub struct TokensView<'a> {
    pub(super) store: Option<&'a TokenStore>,
    pub(super) namespace: &'a str,
    pub(super) caller: Option<&'a Caller>,
    pub(super) cpu: &'a CpuMeter,
}

struct StorageImport;
impl HasData for StorageImport {
    type Data<'a> = StorageView<'a>;
}

struct ConnectorImport;
impl HasData for ConnectorImport {
    type Data<'a> = ConnectorView<'a>;
}

struct AuthzImport;
impl HasData for AuthzImport {
    type Data<'a> = AuthzView<'a>;
}

struct TokensImport;
impl HasData for TokensImport {
    type Data<'a> = TokensView<'a>;
}

/// `types` declares records only: its instance is linked with nothing in it.
struct RecordsOnly;
impl HasData for RecordsOnly {
    type Data<'a> = RecordsOnly;
}
impl types::Host for RecordsOnly {}

/// Links the engine's imports, each to its view of the state.
pub fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    types::add_to_linker::<State, RecordsOnly>(linker, |_| RecordsOnly)?;
    wit::add_to_linker::<State, StorageImport>(linker, State::storage_view)?;
    connector::add_to_linker::<State, ConnectorImport>(linker, State::connector_view)?;
    authz::add_to_linker::<State, AuthzImport>(linker, State::authz_view)?;
    tokens::add_to_linker::<State, TokensImport>(linker, State::tokens_view)?;
    Ok(())
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl authz::Host for AuthzView<'_> {
    async fn allowed(&mut self, capability: String, path: String) -> wasmtime::Result<bool> {
        Ok(crate::auth::allowed(self.caller, &capability, &path))
    }
}

fn to_wit(e: StorageError) -> wit::StorageError {
    match e {
        StorageError::Conflict => wit::StorageError::Conflict,
        StorageError::Invalid(m) => wit::StorageError::Invalid(m),
        StorageError::Unavailable(m) => {
            tracing::error!(error = %m, "storage failure");
            wit::StorageError::Unavailable(m)
        }
    }
}

impl wit::Host for StorageView<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<wit::Entry>, wit::StorageError>> {
        let started = Instant::now();
        let out = self.storage.get(&key).await;
        self.cpu.charge_host(started.elapsed());
        Ok(out
            .map(|e| {
                e.map(|e| wit::Entry {
                    value: e.value,
                    version: e.version,
                })
            })
            .map_err(to_wit))
    }

    async fn list(
        &mut self,
        prefix: String,
        after: Option<String>,
        delimiter: Option<char>,
        limit: u32,
    ) -> wasmtime::Result<Result<wit::Page, wit::StorageError>> {
        let started = Instant::now();
        let out = self
            .storage
            .list(&prefix, after.as_deref(), delimiter, limit)
            .await;
        self.cpu.charge_host(started.elapsed());
        Ok(out
            .map(|p| wit::Page {
                keys: p.keys,
                next: p.next,
            })
            .map_err(to_wit))
    }

    async fn commit(
        &mut self,
        conditions: Vec<wit::Condition>,
        ops: Vec<wit::Op>,
    ) -> wasmtime::Result<Result<u64, wit::StorageError>> {
        let started = Instant::now();
        let conditions = conditions
            .into_iter()
            .map(|c| storage::Condition {
                key: c.key,
                version: c.version,
            })
            .collect();
        let ops = ops
            .into_iter()
            .map(|op| match op {
                wit::Op::Put(p) => storage::Op::Put {
                    key: p.key,
                    value: p.value,
                },
                wit::Op::Delete(key) => storage::Op::Delete { key },
            })
            .collect();
        let out = self.storage.commit(conditions, ops).await;
        self.cpu.charge_host(started.elapsed());
        Ok(out.map_err(to_wit))
    }
}
