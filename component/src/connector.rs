//! The engine's view of the host's `connector` import: push and delete external
//! secrets at a destination, each failure already classified as the sync status
//! it causes. [`MemConnector`] behaves like the host's `in-mem` destination and
//! serves native tests.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

/// A destination as the host needs it to reach the provider.
#[derive(Clone, PartialEq, Eq)]
pub struct DestinationRef {
    pub kind: String,
    pub name: String,
    /// `connection_details` (credentials in clear) and networking, as JSON.
    pub config: String,
}

impl fmt::Debug for DestinationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationRef")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("config", &"*****")
            .finish()
    }
}

/// One external object: name, value and tags.
#[derive(Clone, PartialEq, Eq)]
pub struct ExternalSecret {
    pub name: String,
    pub value: String,
    pub tags: Vec<(String, String)>,
}

impl fmt::Debug for ExternalSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalSecret")
            .field("name", &self.name)
            .field("value", &"*****")
            .field("tags", &self.tags)
            .finish()
    }
}

/// A failed provider call (WIT `connector.sync-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncError {
    /// `CLIENT_SIDE_ERROR`: configuration, credentials, permission, rejected name.
    ClientSide(String),
    /// `EXTERNAL_SERVICE_ERROR`: outage, timeout, throttling; retryable.
    ExternalService {
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// `INTERNAL_VAULT_ERROR`: the host failed.
    Internal(String),
    /// Not finished within an API request's bound: `PENDING`, the worker finishes it.
    Deferred(String),
}

impl SyncError {
    /// The message shown in an association's `error` field.
    pub fn message(&self) -> &str {
        match self {
            SyncError::ClientSide(m) | SyncError::Internal(m) | SyncError::Deferred(m) => m,
            SyncError::ExternalService { message, .. } => message,
        }
    }
}

pub trait Connector {
    fn push(&self, dest: &DestinationRef, secret: &ExternalSecret) -> Result<(), SyncError>;
    /// [`Connector::push`] of an object kvsync has not written before (WIT
    /// `push-new`: providers that distinguish create from update try create
    /// first).
    fn push_new(&self, dest: &DestinationRef, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.push(dest, secret)
    }
    /// Deleting an object that does not exist succeeds.
    fn delete(&self, dest: &DestinationRef, name: &str) -> Result<(), SyncError>;
    fn inspect(&self, dest: &DestinationRef) -> Result<Vec<ExternalSecret>, SyncError>;
}

/// In-memory destinations keyed by `(kind, name)`, with optional injected failures.
#[derive(Default)]
pub struct MemConnector {
    objects: RefCell<BTreeMap<(String, String), BTreeMap<String, ExternalSecret>>>,
    /// When set, every push and delete fails with this error.
    pub fail_with: RefCell<Option<SyncError>>,
    /// Number of push and delete calls made (tests count provider calls).
    pub calls: RefCell<usize>,
}

impl MemConnector {
    pub fn objects(&self, kind: &str, name: &str) -> BTreeMap<String, ExternalSecret> {
        self.objects
            .borrow()
            .get(&(kind.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    fn failure(&self) -> Result<(), SyncError> {
        *self.calls.borrow_mut() += 1;
        match self.fail_with.borrow().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Connector for MemConnector {
    fn push(&self, dest: &DestinationRef, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.failure()?;
        self.objects
            .borrow_mut()
            .entry((dest.kind.clone(), dest.name.clone()))
            .or_default()
            .insert(secret.name.clone(), secret.clone());
        Ok(())
    }

    fn delete(&self, dest: &DestinationRef, name: &str) -> Result<(), SyncError> {
        self.failure()?;
        if let Some(objects) = self
            .objects
            .borrow_mut()
            .get_mut(&(dest.kind.clone(), dest.name.clone()))
        {
            objects.remove(name);
        }
        Ok(())
    }

    fn inspect(&self, dest: &DestinationRef) -> Result<Vec<ExternalSecret>, SyncError> {
        Ok(self.objects(&dest.kind, &dest.name).into_values().collect())
    }
}
