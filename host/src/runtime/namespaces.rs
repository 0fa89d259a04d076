//! The host side of the `namespaces` import (`sys/namespaces`): the
//! namespaces under the request's namespace, from the server's
//! [`Tenancy`]. Paths are relative to the request's namespace; time spent
//! here is storage time, charged to the CPU meter as host time.

use std::collections::BTreeMap;

use super::bindings::kvsync::engine::namespaces as wit;
use super::limits::CpuMeter;
use crate::auth::{Authority, Namespace};
use crate::namespaces::{NamespaceError, Record, Tenancy};

/// What the `namespaces` import sees: the tenancy (`None`: a runtime
/// without namespaces), the request's authority (its namespace) and the
/// CPU meter.
pub struct NamespacesView<'a> {
    pub(super) tenancy: Option<&'a Tenancy>,
    pub(super) authority: Option<&'a Authority>,
    pub(super) cpu: &'a CpuMeter,
}

fn to_wit(r: Record) -> wit::Namespace {
    wit::Namespace {
        id: r.id,
        path: r.path,
        uuid: r.uuid,
        custom_metadata: r.custom_metadata.into_iter().collect(),
    }
}

fn error_to_wit(e: NamespaceError) -> wit::NamespaceError {
    match e {
        NamespaceError::BadRequest(m) => wit::NamespaceError::BadRequest(m),
        // The component answers a missing namespace itself.
        NamespaceError::NotFound(m) => wit::NamespaceError::BadRequest(m),
        NamespaceError::Storage(e) => {
            tracing::error!(error = %e, "namespace store failure");
            wit::NamespaceError::Unavailable(
                "storage is unavailable; retry the request".to_string(),
            )
        }
    }
}

type Answer<T> = wasmtime::Result<Result<T, wit::NamespaceError>>;

impl NamespacesView<'_> {
    /// Runs `op` for the request's namespace, its time charged as host time.
    async fn run<'s, T, F, Fut>(&'s self, op: F) -> Answer<T>
    where
        F: FnOnce(&'s Tenancy, Namespace) -> Fut,
        Fut: std::future::Future<Output = Result<T, NamespaceError>>,
    {
        let Some(authority) = self.authority else {
            return Ok(Err(wit::NamespaceError::Forbidden(
                "permission denied".to_string(),
            )));
        };
        let Some(tenancy) = self.tenancy else {
            return Ok(Err(wit::NamespaceError::BadRequest(
                "namespaces are not supported by this host".to_string(),
            )));
        };
        let out = self
            .cpu
            .host(op(tenancy, authority.namespace().clone()))
            .await;
        Ok(out.map_err(error_to_wit))
    }
}

impl wit::Host for NamespacesView<'_> {
    async fn list(&mut self) -> Answer<Vec<wit::Namespace>> {
        self.run(|t, base| async move {
            let children = t.store.children(&base).await?;
            Ok(children.into_iter().map(to_wit).collect())
        })
        .await
    }

    async fn read(&mut self, path: String) -> Answer<Option<wit::Namespace>> {
        self.run(|t, base| async move {
            let found = t.store.lookup(&base, &path).await?;
            Ok(found.map(|r| to_wit((*r).clone())))
        })
        .await
    }

    async fn create(
        &mut self,
        path: String,
        custom_metadata: Option<Vec<(String, String)>>,
    ) -> Answer<wit::Namespace> {
        self.run(|t, base| async move {
            let metadata = custom_metadata.map(|m| m.into_iter().collect::<BTreeMap<_, _>>());
            Ok(to_wit(t.create(&base, &path, metadata).await?))
        })
        .await
    }

    async fn patch(
        &mut self,
        path: String,
        changes: Vec<(String, Option<String>)>,
    ) -> Answer<Option<wit::Namespace>> {
        self.run(|t, base| async move {
            let changes = changes.into_iter().collect();
            match t.store.patch(&base, &path, &changes).await {
                Ok(r) => Ok(Some(to_wit(r))),
                Err(NamespaceError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn delete(&mut self, path: String) -> Answer<bool> {
        self.run(|t, base| async move { t.delete(&base, &path).await })
            .await
    }

    async fn mounts(&mut self, path: String) -> Answer<Option<Vec<String>>> {
        self.run(|t, base| async move {
            let id = if path.trim_matches('/').is_empty() {
                base.id
            } else {
                match t.store.lookup(&base, &path).await? {
                    Some(r) => r.id.clone(),
                    None => return Ok(None),
                }
            };
            Ok(Some(t.store.mount_paths(&id).await?))
        })
        .await
    }
}
