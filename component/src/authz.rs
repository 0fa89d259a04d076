//! The engine's view of the host's `authz` import: the ACL decisions (the
//! exact check of every request, secondary checks inside handlers such as
//! "may the caller read this secret", mount reachability). The host holds
//! the caller's policies and decides; the engine only asks.

use std::cell::RefCell;

use crate::api::Operation;

pub trait Authz {
    /// The exact check: whether the caller may do `operation` on `path` (the
    /// request path, namespace-relative), with `sudo` too when `sudo` is set.
    fn authorize(&self, operation: Operation, path: &str, sudo: bool) -> bool;

    /// Whether the caller has `capability` (`read`, `create`, ..., `sudo`) on `path`.
    fn allowed(&self, capability: &str, path: &str) -> bool;

    /// Whether the caller holds any capability but `deny` at or under `prefix`
    /// (a mount path such as `secret/`).
    fn can_reach(&self, prefix: &str) -> bool;
}

/// A fixed answer to every question, for native tests.
pub struct StaticAuthz(pub bool);

impl Authz for StaticAuthz {
    fn authorize(&self, _operation: Operation, _path: &str, _sudo: bool) -> bool {
        self.0
    }

    fn allowed(&self, _capability: &str, _path: &str) -> bool {
        self.0
    }

    fn can_reach(&self, _prefix: &str) -> bool {
        self.0
    }
}

/// Allows everything but what it was told to deny, for native tests. A denial
/// names a capability (an operation's name, `sudo`, or `reach` for
/// [`Authz::can_reach`]) and a path; a path ending in `*` covers every path
/// it starts.
#[derive(Default)]
pub struct FakeAuthz {
    denied: RefCell<Vec<(String, String)>>,
}

impl FakeAuthz {
    pub fn deny(&self, capability: &str, path: &str) {
        self.denied
            .borrow_mut()
            .push((capability.to_string(), path.to_string()));
    }

    fn denies(&self, capability: &str, path: &str) -> bool {
        self.denied.borrow().iter().any(|(c, p)| {
            c == capability
                && match p.strip_suffix('*') {
                    Some(prefix) => path.starts_with(prefix),
                    None => p == path,
                }
        })
    }
}

impl Authz for FakeAuthz {
    fn authorize(&self, operation: Operation, path: &str, sudo: bool) -> bool {
        let refused = self.denies(operation.as_str(), path) || (sudo && self.denies("sudo", path));
        !refused
    }

    fn allowed(&self, capability: &str, path: &str) -> bool {
        !self.denies(capability, path)
    }

    fn can_reach(&self, prefix: &str) -> bool {
        !self.denies("reach", prefix)
    }
}
