//! Everything the engine reaches outside itself, bundled for one request: the
//! host's imports behind traits, so native tests substitute in-memory fakes.

use crate::authz::{Authz, FakeAuthz};
use crate::connector::{Connector, MemConnector};
use crate::keyring::{Keyring, MemKeyring};
use crate::namespaces::{MemNamespaces, Namespaces};
use crate::policies::{MemPolicies, Policies};
use crate::storage::{MemStorage, Storage};
use crate::tokens::{Minimal, Tokens};

#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub storage: &'a dyn Storage,
    pub connector: &'a dyn Connector,
    pub authz: &'a dyn Authz,
    pub policies: &'a dyn Policies,
    pub tokens: &'a dyn Tokens,
    pub keyring: &'a dyn Keyring,
    pub namespaces: &'a dyn Namespaces,
}

/// Owned in-memory fakes of every import (native tests and baselines).
pub struct Fakes {
    pub storage: MemStorage,
    pub connector: MemConnector,
    pub authz: FakeAuthz,
    pub policies: MemPolicies,
    pub tokens: Minimal,
    pub keyring: MemKeyring,
    pub namespaces: MemNamespaces,
}

impl Default for Fakes {
    fn default() -> Self {
        Fakes {
            storage: MemStorage::new(),
            connector: MemConnector::default(),
            authz: FakeAuthz::default(),
            policies: MemPolicies::default(),
            tokens: Minimal::new(),
            keyring: MemKeyring::default(),
            namespaces: MemNamespaces::default(),
        }
    }
}

impl Fakes {
    pub fn env(&self) -> Env<'_> {
        Env {
            storage: &self.storage,
            connector: &self.connector,
            authz: &self.authz,
            policies: &self.policies,
            tokens: &self.tokens,
            keyring: &self.keyring,
            namespaces: &self.namespaces,
        }
    }
}
