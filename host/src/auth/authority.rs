//! What the host knows of one request's identity, for the engine's identity
//! imports: the request's namespace, the caller's compiled ACL (the `authz`
//! import decides on it), and the namespace's stores (the `policies` import:
//! policy reads and writes, and the capabilities of a token or accessor).
//!
//! The HTTP front resolves it once per request, before any engine instance
//! is taken (its early check uses the same ACL), so the engine's checks cost
//! no storage read.

use std::sync::Arc;

use super::policies::{Namespace, PolicyStore, PolicyStoreError, StoredPolicy};
use super::policy::Acl;
use super::{Caller, Token, TokenStore, acl};
use crate::storage::StorageError;

/// Whose capabilities [`Authority::capabilities`] reports.
#[derive(Debug)]
pub enum Subject {
    /// The caller of the request.
    Caller,
    /// The token given.
    Token(Token),
    /// The token with this accessor.
    Accessor(String),
}

/// One request's identity, resolved by the host. Cheap to clone.
#[derive(Clone)]
pub struct Authority {
    namespace: Namespace,
    acl: Arc<Acl>,
    policies: PolicyStore,
    tokens: TokenStore,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("namespace", &self.namespace)
            .field("root", &self.acl.is_root())
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// The authority of `caller`, a token of `namespace`, in `namespace`:
    /// its policies compiled (from the cache when nothing changed).
    pub async fn of(
        namespace: Namespace,
        caller: &Caller,
        policies: &PolicyStore,
        tokens: &TokenStore,
    ) -> Result<Authority, StorageError> {
        let home = namespace.clone();
        Self::acting_in(namespace, &home, caller, policies, tokens).await
    }

    /// The authority in `namespace` of `caller`, a token of `home` (the
    /// same namespace or an ancestor for any rule to apply): the policies
    /// of `home`, their rules prefixed with `home`'s path, decide on
    /// `namespace`'s path followed by the request path.
    pub async fn acting_in(
        namespace: Namespace,
        home: &Namespace,
        caller: &Caller,
        policies: &PolicyStore,
        tokens: &TokenStore,
    ) -> Result<Authority, StorageError> {
        let acl = policies.acl(home, &caller.policies).await?;
        Ok(Authority {
            namespace,
            acl,
            policies: policies.clone(),
            tokens: tokens.clone(),
        })
    }

    /// The namespace of the request.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The caller's ACL.
    pub fn acl(&self) -> &Acl {
        &self.acl
    }

    /// The exact check (`authz.authorize`).
    pub fn authorize(&self, operation: super::policy::Operation, path: &str, sudo: bool) -> bool {
        acl::authorize(Some(&self.acl), &self.namespace.path, operation, path, sudo)
    }

    /// A secondary check (`authz.allowed`).
    pub fn allowed(&self, capability: &str, path: &str) -> bool {
        acl::allowed(Some(&self.acl), &self.namespace.path, capability, path)
    }

    /// Access under a mount (`authz.can-reach`).
    pub fn can_reach(&self, prefix: &str) -> bool {
        acl::can_reach(Some(&self.acl), &self.namespace.path, prefix)
    }

    pub async fn read_policy(&self, name: &str) -> Result<Option<StoredPolicy>, StorageError> {
        self.policies.read(&self.namespace, name).await
    }

    pub async fn write_policy(&self, name: &str, text: &str) -> Result<(), PolicyStoreError> {
        self.policies.write(&self.namespace, name, text).await
    }

    pub async fn delete_policy(&self, name: &str) -> Result<(), PolicyStoreError> {
        self.policies.delete(&self.namespace, name).await
    }

    pub async fn list_policies(&self) -> Result<Vec<String>, StorageError> {
        self.policies.list(&self.namespace).await
    }

    /// What `subject` may do on each of `paths` (namespace-relative): the
    /// capability names sorted, `["root"]` for root, `["deny"]` for nothing.
    /// An unknown token or accessor is refused as invalid.
    pub async fn capabilities(
        &self,
        subject: Subject,
        paths: &[String],
    ) -> Result<Vec<Vec<String>>, PolicyStoreError> {
        let other;
        let acl: &Acl = match subject {
            Subject::Caller => &self.acl,
            Subject::Token(token) => {
                let caller = self
                    .tokens
                    .resolve(token)
                    .await?
                    .ok_or_else(|| PolicyStoreError::Invalid("invalid token".to_string()))?;
                other = self.policies.acl(&self.namespace, &caller.policies).await?;
                &other
            }
            Subject::Accessor(accessor) => {
                let caller = self
                    .tokens
                    .lookup_accessor(&accessor)
                    .await?
                    .ok_or_else(|| PolicyStoreError::Invalid("invalid accessor".to_string()))?;
                other = self.policies.acl(&self.namespace, &caller.policies).await?;
                &other
            }
        };
        Ok(paths
            .iter()
            .map(|path| acl.capabilities(&acl::full_path(&self.namespace.path, path)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::Operation;
    use crate::storage::{Barrier, EncryptionKey, RedbBackend, SharedBackend};

    async fn stores() -> (PolicyStore, TokenStore) {
        let backend: SharedBackend = Arc::new(Barrier::new(
            RedbBackend::in_memory().unwrap(),
            EncryptionKey::generate().unwrap(),
        ));
        let policies = PolicyStore::new(backend.clone());
        policies.ensure_builtins(&Namespace::root()).await.unwrap();
        (policies, TokenStore::new(backend))
    }

    #[tokio::test]
    async fn decides_and_reports_on_the_callers_policies() {
        let (policies, tokens) = stores().await;
        let ns = Namespace::root();
        policies
            .write(
                &ns,
                "reader",
                r#"path "secret/data/*" { capabilities = ["read", "list"] }"#,
            )
            .await
            .unwrap();
        let root = tokens.create_root(Some("root-token".into())).await.unwrap();
        let root_caller = tokens.resolve(root.token.clone()).await.unwrap().unwrap();
        let mut reader = root_caller.clone();
        reader.policies = vec!["default".into(), "reader".into()];

        let a = Authority::of(ns.clone(), &reader, &policies, &tokens)
            .await
            .unwrap();
        assert!(a.authorize(Operation::Read, "secret/data/x", false));
        assert!(!a.authorize(Operation::Read, "secret/data/x", true));
        assert!(!a.authorize(Operation::Update, "secret/data/x", false));
        assert!(a.allowed("read", "secret/data/x"));
        assert!(a.can_reach("secret/"));
        assert!(!a.can_reach("other/"));
        let paths = vec!["secret/data/x".to_string(), "/sys/mounts".to_string()];
        assert_eq!(
            a.capabilities(Subject::Caller, &paths).await.unwrap(),
            [vec!["list", "read"], vec!["deny"]]
        );
        assert_eq!(
            a.capabilities(Subject::Token(root.token.clone()), &paths)
                .await
                .unwrap(),
            [vec!["root"], vec!["root"]]
        );
        assert_eq!(
            a.capabilities(Subject::Accessor(root.accessor.clone()), &paths[..1])
                .await
                .unwrap(),
            [vec!["root"]]
        );
        for subject in [
            Subject::Token(Token::new("nope".into())),
            Subject::Accessor("nope".into()),
        ] {
            match a.capabilities(subject, &paths).await {
                Err(PolicyStoreError::Invalid(m)) => assert!(m.starts_with("invalid "), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        // A policy change applies to the next request's authority.
        policies.delete(&ns, "reader").await.unwrap();
        let a = Authority::of(ns, &reader, &policies, &tokens)
            .await
            .unwrap();
        assert!(!a.authorize(Operation::Read, "secret/data/x", false));
    }
}
