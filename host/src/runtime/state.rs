//! The per-call store state and the host side of the `storage` and `authz`
//! imports (the `connector` import is in [`super::connector`]).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::kvsync::engine::storage as wit;
use super::limits::{CpuMeter, Limits, MemoryLimiter};
use crate::auth::Caller;
use crate::connectors::Connectors;
use crate::storage::{self, StorageError, TenantStorage};

pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    storage: TenantStorage,
    pub connectors: Arc<Connectors>,
    /// Who made the request being handled (`None`: an unauthenticated path).
    pub caller: Option<Caller>,
    pub cpu: CpuMeter,
    pub memory: MemoryLimiter,
    /// Set while answering an API request: provider calls that take longer
    /// are left to the sync worker (`deferred`).
    pub inline_bound: Option<std::time::Duration>,
}

impl State {
    pub fn new(
        storage: TenantStorage,
        connectors: Arc<Connectors>,
        caller: Option<Caller>,
        limits: &Limits,
    ) -> Self {
        State {
            // The guest sees no environment, arguments, files or sockets; its
            // stderr (error lines, never request data) goes to the server log.
            wasi: WasiCtx::builder().inherit_stderr().build(),
            table: ResourceTable::new(),
            storage,
            connectors,
            caller,
            cpu: CpuMeter::new(limits.cpu),
            memory: MemoryLimiter::new(limits.memory_bytes),
            inline_bound: None,
        }
    }

    /// Readies the state of a warm instance for its next call (the CPU meter
    /// is re-armed with the store: [`super::limits::rearm`]).
    pub fn ready_for_call(
        &mut self,
        storage: TenantStorage,
        caller: Option<Caller>,
        inline_bound: Option<std::time::Duration>,
    ) {
        self.storage = storage;
        self.caller = caller;
        self.inline_bound = inline_bound;
    }

    /// The tenant this instance serves (its storage prefix): the key of the
    /// warm pool.
    pub fn tenant(&self) -> &str {
        self.storage.prefix()
    }

    pub fn memory_exceeded(&self) -> bool {
        self.memory.exceeded
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl super::bindings::kvsync::engine::types::Host for State {}

impl super::bindings::kvsync::engine::authz::Host for State {
    async fn allowed(&mut self, capability: String, path: String) -> wasmtime::Result<bool> {
        Ok(crate::auth::allowed(
            self.caller.as_ref(),
            &capability,
            &path,
        ))
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

impl wit::Host for State {
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
