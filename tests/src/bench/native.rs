//! The P1 baseline: the engine's request path compiled natively and called
//! directly — the same `kvsync_component::handle` the wasm component runs —
//! behind the host's own HTTP front ([`kvsync::http::Api`]), with the host's
//! storage (redb under the AES-GCM barrier, tenant prefix), ACL and policies.
//!
//! It is a measuring instrument, not a server: no sandbox, no limits, no
//! destination connectors (a provider call answers an internal error) and no
//! token store (the token endpoints answer 503), which the KV read path it is
//! measured on never reaches.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use kvsync::auth::policy::Operation as HostOperation;
use kvsync::auth::{Authority, PolicyStoreError, Subject as HostSubject, Token};
use kvsync::http::Api;
use kvsync::runtime::{self, CallError};
use kvsync::storage::{self as host, TenantStorage};
use kvsync_component::api;
use kvsync_component::api::Operation;
use kvsync_component::authz::Authz;
use kvsync_component::connector::{Connector, DestinationRef, ExternalSecret, SyncError};
use kvsync_component::effects::SyncDue;
use kvsync_component::env::Env;
use kvsync_component::policies::{Policies, PolicyError, PolicyText, Subject};
use kvsync_component::storage::{self as guest, Storage};
use kvsync_component::tokens::{CreateRequest, Issued, Target, TokenError, TokenInfo, Tokens};

/// [`Api`] by the natively linked engine.
pub struct NativeApi;

#[async_trait::async_trait]
impl Api for NativeApi {
    async fn handle(
        &self,
        storage: TenantStorage,
        req: runtime::Request,
    ) -> Result<runtime::Outcome, CallError> {
        let storage = NativeStorage(storage);
        let (req, authority) = to_engine(req);
        let authority = NativeAuthority(authority);
        let env = Env {
            storage: &storage,
            connector: &NoConnector,
            authz: &authority,
            policies: &authority,
            tokens: &NoTokens,
            keyring: &kvsync_component::keyring::NoKeyring,
            namespaces: &kvsync_component::namespaces::NoNamespaces,
        };
        let out = kvsync_component::handle(&env, req);
        Ok(runtime::Outcome {
            response: runtime::Response {
                status: out.response.status,
                headers: out.response.headers,
                body: out.response.body,
            },
            effects: runtime::Effects {
                sync_due: match out.effects.sync_due {
                    SyncDue::None => runtime::SyncDue::None,
                    SyncDue::Destinations(d) => runtime::SyncDue::Destinations(d),
                    SyncDue::All => runtime::SyncDue::All,
                },
            },
        })
    }
}

/// The engine's request, with a copy of the caller (as the wasm runtime
/// gives the guest one), and the host's authority for the imports.
fn to_engine(req: runtime::Request) -> (api::Request, Option<Authority>) {
    let engine_caller = req.caller.as_ref().map(|c| api::Caller {
        token: c.token.expose().to_owned(),
        accessor: c.accessor.clone(),
        display_name: c.display_name.clone(),
        policies: c.policies.clone(),
        path: c.path.clone(),
        creation_time: c.creation_time,
    });
    let engine_req = api::Request {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: req.headers,
        body: req.body,
        caller: engine_caller,
    };
    (engine_req, req.authority)
}

/// Runs a storage future to completion from the engine's synchronous code: a
/// redb read is ready at the first poll (no thread hop, the best case for the
/// baseline); a commit, which redb runs on the blocking pool, is waited for
/// with `block_in_place`, as the wasm guest waits in its fiber.
fn wait<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
        return out;
    }
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(fut))
}

struct NativeStorage(TenantStorage);

fn to_guest(e: host::StorageError) -> guest::StorageError {
    match e {
        host::StorageError::Conflict => guest::StorageError::Conflict,
        host::StorageError::Invalid(m) => guest::StorageError::Invalid(m),
        other => guest::StorageError::Unavailable(other.to_string()),
    }
}

impl Storage for NativeStorage {
    fn get(&self, key: &str) -> Result<Option<guest::Entry>, guest::StorageError> {
        wait(self.0.get(key))
            .map(|e| {
                e.map(|e| guest::Entry {
                    value: e.value,
                    version: e.version,
                })
            })
            .map_err(to_guest)
    }

    fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<guest::Page, guest::StorageError> {
        wait(self.0.list(prefix, after, delimiter, limit))
            .map(|p| guest::Page {
                keys: p.keys,
                next: p.next,
            })
            .map_err(to_guest)
    }

    fn commit(
        &self,
        conditions: Vec<guest::Condition>,
        ops: Vec<guest::Op>,
    ) -> Result<u64, guest::StorageError> {
        let conditions = conditions
            .into_iter()
            .map(|c| host::Condition {
                key: c.key,
                version: c.version,
            })
            .collect();
        let ops = ops
            .into_iter()
            .map(|op| match op {
                guest::Op::Put { key, value } => host::Op::Put { key, value },
                guest::Op::Delete { key } => host::Op::Delete { key },
            })
            .collect();
        wait(self.0.commit(conditions, ops)).map_err(to_guest)
    }
}

/// The `authz` and `policies` imports, answered by the request's authority.
struct NativeAuthority(Option<Authority>);

impl Authz for NativeAuthority {
    fn authorize(&self, operation: Operation, path: &str, sudo: bool) -> bool {
        let operation = match operation {
            Operation::Read | Operation::Header => HostOperation::Read,
            Operation::List => HostOperation::List,
            Operation::Create => HostOperation::Create,
            Operation::Update => HostOperation::Update,
            Operation::Patch => HostOperation::Patch,
            Operation::Delete => HostOperation::Delete,
        };
        self.0
            .as_ref()
            .is_some_and(|a| a.authorize(operation, path, sudo))
    }

    fn allowed(&self, capability: &str, path: &str) -> bool {
        self.0.as_ref().is_some_and(|a| a.allowed(capability, path))
    }

    fn can_reach(&self, prefix: &str) -> bool {
        self.0.as_ref().is_some_and(|a| a.can_reach(prefix))
    }
}

fn auth_error(e: PolicyStoreError) -> PolicyError {
    match e {
        PolicyStoreError::Invalid(m) => PolicyError::BadRequest(m),
        PolicyStoreError::Storage(e) => PolicyError::Unavailable(e.to_string()),
    }
}

impl NativeAuthority {
    fn get(&self) -> Result<&Authority, PolicyError> {
        self.0
            .as_ref()
            .ok_or_else(|| PolicyError::Forbidden("permission denied".into()))
    }
}

impl Policies for NativeAuthority {
    fn read(&self, name: &str) -> Result<Option<PolicyText>, PolicyError> {
        let read = wait(self.get()?.read_policy(name)).map_err(|e| auth_error(e.into()))?;
        Ok(read.map(|p| PolicyText {
            name: p.name,
            text: p.text,
        }))
    }

    fn write(&self, name: &str, text: &str) -> Result<(), PolicyError> {
        wait(self.get()?.write_policy(name, text)).map_err(auth_error)
    }

    fn delete(&self, name: &str) -> Result<(), PolicyError> {
        wait(self.get()?.delete_policy(name)).map_err(auth_error)
    }

    fn list(&self) -> Result<Vec<String>, PolicyError> {
        wait(self.get()?.list_policies()).map_err(|e| auth_error(e.into()))
    }

    fn capabilities(
        &self,
        subject: &Subject,
        paths: &[String],
    ) -> Result<Vec<Vec<String>>, PolicyError> {
        let subject = match subject {
            Subject::Caller => HostSubject::Caller,
            Subject::Token(t) => HostSubject::Token(Token::new(t.clone())),
            Subject::Accessor(a) => HostSubject::Accessor(a.clone()),
        };
        wait(self.get()?.capabilities(subject, paths)).map_err(auth_error)
    }
}

struct NoConnector;

const NO_CONNECTOR: &str = "the native baseline has no destination connectors";

impl Connector for NoConnector {
    fn push(&self, _: &DestinationRef, _: &ExternalSecret) -> Result<(), SyncError> {
        Err(SyncError::Internal(NO_CONNECTOR.into()))
    }

    fn delete(&self, _: &DestinationRef, _: &str) -> Result<(), SyncError> {
        Err(SyncError::Internal(NO_CONNECTOR.into()))
    }

    fn inspect(&self, _: &DestinationRef) -> Result<Vec<ExternalSecret>, SyncError> {
        Err(SyncError::Internal(NO_CONNECTOR.into()))
    }
}

struct NoTokens;

fn no_tokens<T>() -> Result<T, TokenError> {
    Err(TokenError::Unavailable(
        "the native baseline has no token store".into(),
    ))
}

impl Tokens for NoTokens {
    fn create(&self, _: &CreateRequest) -> Result<Issued, TokenError> {
        no_tokens()
    }

    fn lookup(&self, _: &Target) -> Result<Option<TokenInfo>, TokenError> {
        no_tokens()
    }

    fn renew(&self, _: &Target, _: u64) -> Result<Option<Issued>, TokenError> {
        no_tokens()
    }

    fn revoke(&self, _: &Target) -> Result<bool, TokenError> {
        no_tokens()
    }

    fn revoke_orphan(&self, _: &str) -> Result<bool, TokenError> {
        no_tokens()
    }

    fn list_accessors(&self) -> Result<Vec<String>, TokenError> {
        no_tokens()
    }

    fn tidy(&self) -> Result<(), TokenError> {
        no_tokens()
    }
}
