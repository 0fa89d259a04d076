//! The host side of the `keyring` import: the storage barrier's key status and
//! rotation (`sys/key-status`, `sys/rotate`), for a caller in the root
//! namespace only. Which callers may (`sudo` on `sys/rotate`) the engine and
//! the host's early check decide from the path table.

use super::bindings::kvsync::engine::keyring;
use super::limits::CpuMeter;
use crate::auth::Authority;
use crate::storage::{KeyStatus, SharedKeyring, StorageError};

/// What the `keyring` import sees: the keyring (`None`: a runtime without
/// one), the request's authority (its namespace) and the CPU meter.
pub struct KeyringView<'a> {
    pub(super) keyring: Option<&'a SharedKeyring>,
    pub(super) authority: Option<&'a Authority>,
    pub(super) cpu: &'a CpuMeter,
}

impl KeyringView<'_> {
    /// The keyring, when this request may use it.
    fn allowed(&self) -> Result<&SharedKeyring, keyring::KeyringError> {
        let Some(authority) = self.authority else {
            return Err(keyring::KeyringError::Forbidden(
                "permission denied".to_string(),
            ));
        };
        if !authority.namespace().is_root() {
            return Err(keyring::KeyringError::BadRequest(
                "operation only available in root namespace".to_string(),
            ));
        }
        self.keyring.ok_or_else(|| {
            keyring::KeyringError::Unavailable("this server has no keyring".to_string())
        })
    }

    async fn answer<F>(
        &mut self,
        op: impl FnOnce(SharedKeyring) -> F,
    ) -> wasmtime::Result<Result<keyring::KeyStatus, keyring::KeyringError>>
    where
        F: std::future::Future<Output = Result<KeyStatus, StorageError>>,
    {
        let keys = match self.allowed() {
            Ok(keys) => keys.clone(),
            Err(e) => return Ok(Err(e)),
        };
        let out = self.cpu.host(op(keys)).await;
        Ok(out
            .map(|s| keyring::KeyStatus {
                term: s.term,
                install_time: s.install_time,
                encryptions: s.encryptions,
            })
            .map_err(|e| {
                tracing::error!(error = %e, "keyring failure");
                keyring::KeyringError::Unavailable(
                    "storage is unavailable; retry the request".to_string(),
                )
            }))
    }
}

impl keyring::Host for KeyringView<'_> {
    async fn status(
        &mut self,
    ) -> wasmtime::Result<Result<keyring::KeyStatus, keyring::KeyringError>> {
        self.answer(|keys| async move { keys.key_status().await })
            .await
    }

    async fn rotate(
        &mut self,
    ) -> wasmtime::Result<Result<keyring::KeyStatus, keyring::KeyringError>> {
        self.answer(|keys| async move { keys.rotate().await }).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::auth::{Namespace, PolicyStore, TokenStore};
    use crate::runtime::bindings::kvsync::engine::keyring::Host as _;
    use crate::storage::{Barrier, EncryptionKey, RedbBackend, SharedBackend};

    #[tokio::test]
    async fn answers_a_caller_in_the_root_namespace_only() {
        let barrier = Arc::new(Barrier::new(
            RedbBackend::in_memory().unwrap(),
            EncryptionKey::generate().unwrap(),
        ));
        barrier.init_key_check().await.unwrap();
        let backend: SharedBackend = barrier.clone();
        let keyring: SharedKeyring = barrier;
        let policies = PolicyStore::new(backend.clone());
        let tokens = TokenStore::new(backend);
        let root = tokens.create_root(None).await.unwrap();
        let caller = tokens.resolve(root.token).await.unwrap().unwrap();
        let child = Namespace {
            id: "abc12".into(),
            path: "team-a/".into(),
        };
        let in_root = Authority::of(Namespace::root(), &caller, &policies, &tokens)
            .await
            .unwrap();
        let in_child = Authority::of(child, &caller, &policies, &tokens)
            .await
            .unwrap();
        let cpu = CpuMeter::new(Duration::from_secs(1));
        let view = |authority| KeyringView {
            keyring: Some(&keyring),
            authority,
            cpu: &cpu,
        };

        let status = view(Some(&in_root)).status().await.unwrap().unwrap();
        assert_eq!(status.term, 1);
        assert_eq!(
            view(Some(&in_root)).rotate().await.unwrap().unwrap().term,
            2
        );
        match view(Some(&in_child)).rotate().await.unwrap() {
            Err(keyring::KeyringError::BadRequest(m)) => {
                assert_eq!(m, "operation only available in root namespace");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            view(Some(&in_child)).status().await.unwrap(),
            Err(keyring::KeyringError::BadRequest(_))
        ));
        assert!(matches!(
            view(None).rotate().await.unwrap(),
            Err(keyring::KeyringError::Forbidden(_))
        ));
        assert_eq!(keyring.key_status().await.unwrap().term, 2);
    }
}
