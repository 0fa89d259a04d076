//! The host side of the `tokens` import: converts the WIT records to the
//! token store's types, runs the operation for the request's namespace and
//! caller, and converts back. Time spent here is storage time, charged to
//! the CPU meter as host time. A storage failure is logged here and reaches
//! the guest as `unavailable`.

use std::future::Future;

use super::bindings::kvsync::engine::tokens as wit;
use super::state::TokensView;
use crate::auth::Token;
use crate::auth::tokens::{
    CreateRequest, Issued, Scope, Target, TokenError, TokenInfo, TokenStore,
};

fn error_to_wit(e: TokenError) -> wit::TokenError {
    match e {
        TokenError::BadRequest(m) => wit::TokenError::BadRequest(m),
        TokenError::Forbidden(m) => wit::TokenError::Forbidden(m),
        TokenError::Storage(e) => {
            tracing::error!(error = %e, "token store failure");
            wit::TokenError::Unavailable(e.to_string())
        }
    }
}

fn target(t: wit::Target) -> Target {
    match t {
        wit::Target::Caller => Target::Caller,
        wit::Target::Token(token) => Target::Token(Token::new(token)),
        wit::Target::Accessor(accessor) => Target::Accessor(accessor),
    }
}

fn info_to_wit(i: TokenInfo) -> wit::TokenInfo {
    wit::TokenInfo {
        id: i.id.map(|t| t.expose().to_owned()).unwrap_or_default(),
        accessor: i.accessor,
        policies: i.policies,
        path: i.path,
        meta: i.meta,
        display_name: i.display_name,
        num_uses: i.num_uses,
        orphan: i.orphan,
        creation_time: i.creation_time,
        creation_ttl: i.creation_ttl,
        explicit_max_ttl: i.explicit_max_ttl,
        period: i.period,
        lease: wit::Lease {
            issue_time: i.lease.issue_time,
            expire_time: i.lease.expire_time,
            last_renewal_time: i.lease.last_renewal_time,
            renewable: i.lease.renewable,
            ttl: i.lease.ttl,
        },
        namespace_path: i.namespace_path,
    }
}

fn issued_to_wit(i: Issued) -> wit::Issued {
    wit::Issued {
        info: info_to_wit(i.info),
        lease_duration: i.lease_duration,
        renewable: i.renewable,
        warnings: i.warnings,
    }
}

fn create_request(r: wit::CreateRequest) -> CreateRequest {
    CreateRequest {
        orphan_endpoint: r.orphan_endpoint,
        policies: r.policies,
        meta: r.meta,
        no_parent: r.no_parent,
        no_default_policy: r.no_default_policy,
        renewable: r.renewable,
        ttl: r.ttl,
        explicit_max_ttl: r.explicit_max_ttl,
        period: r.period,
        display_name: r.display_name,
        num_uses: r.num_uses,
        id: r.id.map(Token::new),
    }
}

impl TokensView<'_> {
    /// Runs `op` on the store for this request, its time charged as host
    /// time; without a store, the import fails.
    async fn run<'s, T, F, Fut>(&'s self, op: F) -> wasmtime::Result<Result<T, wit::TokenError>>
    where
        F: FnOnce(&'s TokenStore, Scope<'s>) -> Fut,
        Fut: Future<Output = Result<T, TokenError>>,
    {
        let Some(store) = self.store else {
            return Ok(Err(wit::TokenError::Unavailable(
                "this runtime has no token store".to_string(),
            )));
        };
        let scope = Scope {
            namespace_id: self.namespace,
            namespace_path: self.namespace_path,
            caller: self.caller,
            acl: self.acl,
        };
        let out = self.cpu.host(op(store, scope)).await;
        Ok(out.map_err(error_to_wit))
    }
}

impl wit::Host for TokensView<'_> {
    async fn create(
        &mut self,
        req: wit::CreateRequest,
    ) -> wasmtime::Result<Result<wit::Issued, wit::TokenError>> {
        let req = create_request(req);
        self.run(|store, scope| async move { store.create(&scope, &req).await.map(issued_to_wit) })
            .await
    }

    async fn lookup(
        &mut self,
        which: wit::Target,
    ) -> wasmtime::Result<Result<Option<wit::TokenInfo>, wit::TokenError>> {
        let which = target(which);
        self.run(
            |store, scope| async move { Ok(store.lookup(&scope, &which).await?.map(info_to_wit)) },
        )
        .await
    }

    async fn renew(
        &mut self,
        which: wit::Target,
        increment: u64,
    ) -> wasmtime::Result<Result<Option<wit::Issued>, wit::TokenError>> {
        let which = target(which);
        self.run(|store, scope| async move {
            Ok(store
                .renew(&scope, &which, increment)
                .await?
                .map(issued_to_wit))
        })
        .await
    }

    async fn revoke(
        &mut self,
        which: wit::Target,
    ) -> wasmtime::Result<Result<bool, wit::TokenError>> {
        let which = target(which);
        self.run(|store, scope| async move { store.revoke(&scope, &which).await })
            .await
    }

    async fn revoke_orphan(
        &mut self,
        token: String,
    ) -> wasmtime::Result<Result<bool, wit::TokenError>> {
        let token = Token::new(token);
        self.run(|store, scope| async move { store.revoke_orphan(&scope, &token).await })
            .await
    }

    async fn list_accessors(&mut self) -> wasmtime::Result<Result<Vec<String>, wit::TokenError>> {
        self.run(|store, scope| async move { store.list_accessors(&scope).await })
            .await
    }

    async fn tidy(&mut self) -> wasmtime::Result<Result<(), wit::TokenError>> {
        self.run(|store, scope| async move {
            scope
                .caller
                .ok_or_else(|| TokenError::Forbidden("permission denied".to_string()))?;
            store.tidy();
            Ok(())
        })
        .await
    }
}
