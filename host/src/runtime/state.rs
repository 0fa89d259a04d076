//! The per-call store state, the borrowed view each import sees of it, and
//! the host side of the `storage`, `authz` and `policies` imports (the
//! `connector` import is in [`super::connector`], `tokens` in
//! [`super::tokens`], `keyring` in [`super::keyring`]).
//!
//! Each import is implemented on a small view that borrows only what it
//! needs (wasmtime's `HasData` pattern): `storage` the tenant's storage and
//! the CPU meter, `connector` the registry, the meter and the inline bound,
//! `authz` the request's authority (the caller's compiled ACL), `policies`
//! the authority (its namespace's stores) and the meter, `tokens` the token
//! store, the tenant's namespace, the caller, its ACL and the meter. No
//! import reaches the rest of the state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::kvsync::engine::{
    authz, connector, keyring, namespaces, policies, storage as wit, tokens, types,
};
use super::keyring::KeyringView;
use super::limits::{CpuMeter, Limits, MemoryLimiter};
use super::namespaces::NamespacesView;
use crate::auth::policy::Operation;
use crate::auth::{Authority, Caller, PolicyStoreError, Subject, Token, TokenStore};
use crate::connectors::Connectors;
use crate::storage::{self, SharedKeyring, StorageError, TenantStorage};

pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    storage: TenantStorage,
    connectors: Arc<Connectors>,
    /// The server's token store (`None`: a runtime without one answers the
    /// `tokens` import with an error).
    tokens: Option<TokenStore>,
    /// The storage barrier's keyring (`None`: a runtime without one answers
    /// the `keyring` import with an error).
    keyring: Option<SharedKeyring>,
    /// The namespaces (`None`: a runtime without them answers the
    /// `namespaces` import with an error).
    tenancy: Option<crate::namespaces::Tenancy>,
    /// Who made the request being handled (`None`: an unauthenticated path,
    /// or a sync run).
    caller: Option<Caller>,
    /// What the caller may do, and its namespace's stores (`None` with no
    /// caller: every `authz` question is answered no).
    authority: Option<Authority>,
    pub cpu: CpuMeter,
    pub memory: MemoryLimiter,
    /// Set while answering an API request: the provider calls of the request
    /// share this much time; what does not finish in it (or starts after it)
    /// is left to the sync worker (`deferred`).
    inline_bound: Option<Duration>,
    /// When the request's inline bound runs out (set with it, at the call).
    inline_deadline: Option<Instant>,
    /// An API call's turn among the running calls (`None` outside one): given
    /// back while a provider call waits ([`super::fair`]).
    pub turn: Option<super::fair::Turn>,
}

/// When a bound that starts now runs out (`None`: unbounded).
fn deadline(bound: Option<Duration>) -> Option<Instant> {
    bound.and_then(|b| Instant::now().checked_add(b))
}

impl State {
    pub fn new(
        storage: TenantStorage,
        connectors: Arc<Connectors>,
        tokens: Option<TokenStore>,
        (caller, authority): (Option<Caller>, Option<Authority>),
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
            keyring: None,
            tenancy: None,
            caller,
            authority,
            cpu: CpuMeter::new(limits.cpu),
            memory: MemoryLimiter::new(limits.memory_bytes),
            inline_bound,
            inline_deadline: deadline(inline_bound),
            turn: None,
        }
    }

    /// Serves the `keyring` import from `keyring`.
    pub fn with_keyring(mut self, keyring: Option<SharedKeyring>) -> Self {
        self.keyring = keyring;
        self
    }

    /// Serves the `keyring` and `namespaces` imports from these (a warm
    /// instance gets its runtime's at each call).
    pub fn serve_stores(
        &mut self,
        keyring: Option<SharedKeyring>,
        tenancy: Option<crate::namespaces::Tenancy>,
    ) {
        self.keyring = keyring;
        self.tenancy = tenancy;
    }

    /// Serves the `namespaces` import from `tenancy`.
    pub fn with_tenancy(mut self, tenancy: Option<crate::namespaces::Tenancy>) -> Self {
        self.tenancy = tenancy;
        self
    }

    /// Readies the state for a call: the tenant's storage, the token store,
    /// the caller and its authority, the bound on inline provider calls (the CPU meter is
    /// re-armed with the store: [`super::limits::rearm`]).
    pub fn ready_for_call(
        &mut self,
        storage: TenantStorage,
        tokens: Option<TokenStore>,
        (caller, authority): (Option<Caller>, Option<Authority>),
        inline_bound: Option<Duration>,
    ) {
        self.storage = storage;
        self.tokens = tokens;
        self.caller = caller;
        self.authority = authority;
        self.inline_bound = inline_bound;
        self.inline_deadline = deadline(inline_bound);
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
            turn: self.turn.as_mut(),
        }
    }

    pub(super) fn connector_view(&mut self) -> ConnectorView<'_> {
        ConnectorView {
            connectors: &self.connectors,
            tenant: self.storage.tenant(),
            cpu: &self.cpu,
            inline_bound: self.inline_bound,
            inline_deadline: self.inline_deadline,
            turn: self.turn.as_mut(),
        }
    }

    pub(super) fn authz_view(&mut self) -> AuthzView<'_> {
        AuthzView {
            authority: self.authority.as_ref(),
        }
    }

    pub(super) fn policies_view(&mut self) -> PoliciesView<'_> {
        PoliciesView {
            authority: self.authority.as_ref(),
            namespaces: self.tenancy.as_ref().map(|t| &t.store),
            cpu: &self.cpu,
        }
    }

    pub(super) fn keyring_view(&mut self) -> KeyringView<'_> {
        KeyringView {
            keyring: self.keyring.as_ref(),
            authority: self.authority.as_ref(),
            cpu: &self.cpu,
        }
    }

    pub(super) fn namespaces_view(&mut self) -> NamespacesView<'_> {
        NamespacesView {
            tenancy: self.tenancy.as_ref(),
            authority: self.authority.as_ref(),
            cpu: &self.cpu,
        }
    }

    pub(super) fn tokens_view(&mut self) -> TokensView<'_> {
        TokensView {
            store: self.tokens.as_ref(),
            namespace: self.storage.tenant(),
            namespace_path: self
                .authority
                .as_ref()
                .map_or("", |a| a.namespace().path.as_str()),
            caller: self.caller.as_ref(),
            acl: self.authority.as_ref().map(Authority::acl),
            cpu: &self.cpu,
        }
    }
}

/// Awaits host work that may wait (storage off the async workers, a provider
/// call): its time is not the guest's ([`CpuMeter::host`]) and, while it
/// waits, another engine call runs in its turn ([`super::fair::off_turn`]).
pub(super) async fn waiting<T>(
    cpu: &CpuMeter,
    turn: Option<&mut super::fair::Turn>,
    work: impl std::future::Future<Output = T>,
) -> T {
    cpu.host(super::fair::off_turn(turn, work)).await
}

/// What the `storage` import sees: the tenant's storage, the meter its time
/// is charged to as host time, and the call's turn among the running calls
/// (given back while storage work waits: [`super::fair::off_turn`]).
pub struct StorageView<'a> {
    storage: &'a TenantStorage,
    cpu: &'a CpuMeter,
    turn: Option<&'a mut super::fair::Turn>,
}

/// What the `connector` import sees: the registry, the tenant, the meter, the
/// bound on provider calls within an API request, and the call's turn among
/// the running calls (given back while a provider call waits).
pub struct ConnectorView<'a> {
    pub(super) connectors: &'a Connectors,
    /// The tenant the instance serves: every destination the guest names is that tenant's.
    pub(super) tenant: &'a str,
    pub(super) cpu: &'a CpuMeter,
    pub(super) inline_bound: Option<Duration>,
    pub(super) inline_deadline: Option<Instant>,
    pub(super) turn: Option<&'a mut super::fair::Turn>,
}

/// What the `authz` import sees: the request's authority.
pub struct AuthzView<'a> {
    authority: Option<&'a Authority>,
}

/// What the `policies` import sees: the request's authority (its
/// namespace's stores), the namespaces (another token's is looked up), and
/// the meter its storage time is charged to as host time.
pub struct PoliciesView<'a> {
    authority: Option<&'a Authority>,
    /// Where another token's namespace is found (`sys/capabilities`).
    namespaces: Option<&'a crate::namespaces::NamespaceStore>,
    cpu: &'a CpuMeter,
}

/// What the `tokens` import sees: the token store, the namespace of the
/// request's tenant, its caller and the caller's ACL (for sudo), and the
/// meter its time is charged to.
pub struct TokensView<'a> {
    pub(super) store: Option<&'a TokenStore>,
    pub(super) namespace: &'a str,
    /// The namespace's path (`""` for the root).
    pub(super) namespace_path: &'a str,
    pub(super) caller: Option<&'a Caller>,
    pub(super) acl: Option<&'a crate::auth::policy::Acl>,
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

struct PoliciesImport;
impl HasData for PoliciesImport {
    type Data<'a> = PoliciesView<'a>;
}

struct KeyringImport;
impl HasData for KeyringImport {
    type Data<'a> = KeyringView<'a>;
}

struct NamespacesImport;
impl HasData for NamespacesImport {
    type Data<'a> = NamespacesView<'a>;
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
    policies::add_to_linker::<State, PoliciesImport>(linker, State::policies_view)?;
    tokens::add_to_linker::<State, TokensImport>(linker, State::tokens_view)?;
    keyring::add_to_linker::<State, KeyringImport>(linker, State::keyring_view)?;
    namespaces::add_to_linker::<State, NamespacesImport>(linker, State::namespaces_view)?;
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
    async fn authorize(
        &mut self,
        operation: authz::Operation,
        path: String,
        sudo: bool,
    ) -> wasmtime::Result<bool> {
        let operation = match operation {
            authz::Operation::Read => Operation::Read,
            authz::Operation::List => Operation::List,
            authz::Operation::Create => Operation::Create,
            authz::Operation::Update => Operation::Update,
            authz::Operation::Patch => Operation::Patch,
            authz::Operation::Delete => Operation::Delete,
        };
        Ok(self
            .authority
            .is_some_and(|a| a.authorize(operation, &path, sudo)))
    }

    async fn allowed(&mut self, capability: String, path: String) -> wasmtime::Result<bool> {
        Ok(self
            .authority
            .is_some_and(|a| a.allowed(&capability, &path)))
    }

    async fn can_reach(&mut self, prefix: String) -> wasmtime::Result<bool> {
        Ok(self.authority.is_some_and(|a| a.can_reach(&prefix)))
    }
}

fn policy_error(e: PolicyStoreError) -> policies::PolicyError {
    match e {
        PolicyStoreError::Invalid(m) => policies::PolicyError::BadRequest(m),
        PolicyStoreError::Storage(e) => storage_policy_error(e),
    }
}

fn storage_policy_error(e: StorageError) -> policies::PolicyError {
    tracing::error!(error = %e, "policy storage failure");
    policies::PolicyError::Unavailable("storage is unavailable; retry the request".to_string())
}

impl PoliciesView<'_> {
    /// The authority, or the error every call gets without one (a request
    /// without a caller, or a sync run).
    fn authority(&self) -> Result<&Authority, policies::PolicyError> {
        self.authority
            .ok_or_else(|| policies::PolicyError::Forbidden("permission denied".to_string()))
    }
}

impl policies::Host for PoliciesView<'_> {
    async fn read(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Option<policies::Policy>, policies::PolicyError>> {
        let authority = match self.authority() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let out = self.cpu.host(authority.read_policy(&name)).await;
        Ok(out
            .map(|p| {
                p.map(|p| policies::Policy {
                    name: p.name,
                    text: p.text,
                })
            })
            .map_err(storage_policy_error))
    }

    async fn write(
        &mut self,
        name: String,
        text: String,
    ) -> wasmtime::Result<Result<(), policies::PolicyError>> {
        let authority = match self.authority() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let out = self.cpu.host(authority.write_policy(&name, &text)).await;
        Ok(out.map_err(policy_error))
    }

    async fn delete(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<(), policies::PolicyError>> {
        let authority = match self.authority() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let out = self.cpu.host(authority.delete_policy(&name)).await;
        Ok(out.map_err(policy_error))
    }

    async fn list(&mut self) -> wasmtime::Result<Result<Vec<String>, policies::PolicyError>> {
        let authority = match self.authority() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let out = self.cpu.host(authority.list_policies()).await;
        Ok(out.map_err(storage_policy_error))
    }

    async fn capabilities(
        &mut self,
        subject: policies::Subject,
        paths: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Vec<String>>, policies::PolicyError>> {
        let authority = match self.authority() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let subject = match subject {
            policies::Subject::Caller => Subject::Caller,
            policies::Subject::Token(t) => Subject::Token(Token::new(t)),
            policies::Subject::Accessor(a) => Subject::Accessor(a),
        };
        let out = self
            .cpu
            .host(authority.capabilities_in(subject, &paths, self.namespaces))
            .await;
        Ok(out.map_err(policy_error))
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
        let out = waiting(self.cpu, self.turn.as_deref_mut(), self.storage.get(&key)).await;
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
        let list = self
            .storage
            .list(&prefix, after.as_deref(), delimiter, limit);
        let out = waiting(self.cpu, self.turn.as_deref_mut(), list).await;
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
        let commit = self.storage.commit(conditions, ops);
        let out = waiting(self.cpu, self.turn.as_deref_mut(), commit).await;
        Ok(out.map_err(to_wit))
    }
}
