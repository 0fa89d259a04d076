//! Provider writes made at most once per request.
//!
//! A request runs as one storage transaction, run again when its commit
//! conflicts with a concurrent one (`router`); `associations/set`, `remove`
//! and purges call providers inline, before that commit. [`OncePerRequest`]
//! wraps the request's connector for all its runs: a push of the same object
//! to the same destination, or a delete of the same name, that already
//! succeeded in this request is not made again, so a conflict never repeats
//! a provider write. A later write of the same name (a push after a delete,
//! or the reverse) is made. Failed and deferred calls are not remembered.

use std::cell::RefCell;

use crate::connector::{Connector, DestinationRef, ExternalSecret, SyncError};

/// The connector of one request (module docs). Holds the objects it pushed
/// (values included) for the request's lifetime only; it has no `Debug`.
pub struct OncePerRequest<'a> {
    inner: &'a dyn Connector,
    pushed: RefCell<Vec<(DestinationRef, ExternalSecret)>>,
    deleted: RefCell<Vec<(DestinationRef, String)>>,
}

impl<'a> OncePerRequest<'a> {
    pub fn new(inner: &'a dyn Connector) -> Self {
        OncePerRequest {
            inner,
            pushed: RefCell::new(Vec::new()),
            deleted: RefCell::new(Vec::new()),
        }
    }

    /// A push through `call` unless the same one succeeded before.
    fn push_once(
        &self,
        dest: &DestinationRef,
        secret: &ExternalSecret,
        call: impl FnOnce() -> Result<(), SyncError>,
    ) -> Result<(), SyncError> {
        if self
            .pushed
            .borrow()
            .iter()
            .any(|(d, s)| d == dest && s == secret)
        {
            return Ok(());
        }
        call()?;
        self.deleted
            .borrow_mut()
            .retain(|(d, name)| !(d == dest && *name == secret.name));
        let mut pushed = self.pushed.borrow_mut();
        pushed.retain(|(d, s)| !(d == dest && s.name == secret.name));
        pushed.push((dest.clone(), secret.clone()));
        Ok(())
    }
}

impl Connector for OncePerRequest<'_> {
    fn push(&self, dest: &DestinationRef, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.push_once(dest, secret, || self.inner.push(dest, secret))
    }

    fn push_new(&self, dest: &DestinationRef, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.push_once(dest, secret, || self.inner.push_new(dest, secret))
    }

    fn delete(&self, dest: &DestinationRef, name: &str) -> Result<(), SyncError> {
        if self
            .deleted
            .borrow()
            .iter()
            .any(|(d, n)| d == dest && n == name)
        {
            return Ok(());
        }
        self.inner.delete(dest, name)?;
        self.pushed
            .borrow_mut()
            .retain(|(d, s)| !(d == dest && s.name == name));
        self.deleted
            .borrow_mut()
            .push((dest.clone(), name.to_string()));
        Ok(())
    }

    fn inspect(&self, dest: &DestinationRef) -> Result<Vec<ExternalSecret>, SyncError> {
        self.inner.inspect(dest)
    }
}
