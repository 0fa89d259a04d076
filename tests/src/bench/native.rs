//! The P1 baseline: the engine's request path compiled natively and called
//! directly — the same `kvsync_component::handle` the wasm component runs —
//! behind the host's own HTTP front ([`kvsync::http::Api`]), with the host's
//! storage (redb under the AES-GCM barrier, tenant prefix) and ACL.
//!
//! It is a measuring instrument, not a server: no sandbox, no limits, no
//! destination connectors (a provider call answers an internal error) and no
//! token store (the token endpoints answer 503), which the KV read path it is
//! measured on never reaches.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use kvsync::auth::Caller;
use kvsync::http::Api;
use kvsync::runtime::{self, CallError};
use kvsync::storage::{self as host, TenantStorage};
use kvsync_component::api;
use kvsync_component::authz::Authz;
use kvsync_component::connector::{Connector, DestinationRef, ExternalSecret, SyncError};
use kvsync_component::effects::SyncDue;
use kvsync_component::env::Env;
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
        let (req, caller) = to_engine(req);
        let authz = NativeAuthz(caller);
        let env = Env {
            storage: &storage,
            connector: &NoConnector,
            authz: &authz,
            tokens: &NoTokens,
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
/// gives the guest one), and the host's caller for the ACL.
fn to_engine(req: runtime::Request) -> (api::Request, Option<Caller>) {
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
    (engine_req, req.caller)
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

struct NativeAuthz(Option<Caller>);

impl Authz for NativeAuthz {
    fn allowed(&self, capability: &str, path: &str) -> bool {
        kvsync::auth::allowed(self.0.as_ref(), capability, path)
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
