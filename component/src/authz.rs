//! The engine's view of the host's `authz` import: secondary checks such as
//! "may the caller read this secret" (asked by `associations/set`).

pub trait Authz {
    /// Whether the current caller has `capability` on `path`.
    fn allowed(&self, capability: &str, path: &str) -> bool;
}

/// A fixed answer, for native tests.
pub struct StaticAuthz(pub bool);

impl Authz for StaticAuthz {
    fn allowed(&self, _capability: &str, _path: &str) -> bool {
        self.0
    }
}
