//! A backend: the paths served under one root (Vault's `framework.Backend`),
//! the `mount_type` its replies carry, and what it answers for a path that
//! matches none of them.

use crate::api::{Operation, Reply};
use crate::error::ApiResult;
use crate::storage::Tx;

use super::path::{Params, Path, matches};

/// What a path that matches no pattern answers (with its path relative to
/// the root, and the operation of the HTTP request).
pub type Fallback = fn(&str, Operation) -> ApiResult<Reply>;

/// A check every request to a backend's paths passes before its handler runs
/// (after the authorization step).
pub type Guard = fn(&mut Tx<'_>) -> ApiResult<()>;

pub struct Backend {
    /// The request paths it serves start with this (`sys/`, `auth/token/`);
    /// the path `sys` itself is `sys/`'s root. Empty for a secrets engine,
    /// whose paths are relative to the mount it serves.
    pub root: &'static str,
    /// The `mount_type` of its replies.
    pub mount_type: &'static str,
    /// Tried in order; the first that matches serves.
    pub paths: &'static [Path],
    /// Whether trailing slashes are dropped before matching.
    pub ignore_trailing_slashes: bool,
    pub fallback: Fallback,
    pub guard: Option<Guard>,
}

impl Backend {
    /// A backend at `root` whose unmatched paths answer `unsupported path`.
    pub const fn new(
        root: &'static str,
        mount_type: &'static str,
        paths: &'static [Path],
    ) -> Backend {
        Backend {
            root,
            mount_type,
            paths,
            ignore_trailing_slashes: false,
            fallback: unsupported_path,
            guard: None,
        }
    }

    pub const fn ignore_trailing_slashes(self) -> Backend {
        Backend {
            ignore_trailing_slashes: true,
            ..self
        }
    }

    pub const fn fallback(self, fallback: Fallback) -> Backend {
        Backend { fallback, ..self }
    }

    pub const fn guard(self, guard: Guard) -> Backend {
        Backend {
            guard: Some(guard),
            ..self
        }
    }

    /// `path` relative to the root, when the backend serves it (never for a
    /// secrets engine: the mount table says which mount serves a path).
    pub fn relative<'p>(&self, path: &'p str) -> Option<&'p str> {
        if self.root.is_empty() {
            return None;
        }
        match path.strip_prefix(self.root) {
            Some(rel) => Some(rel),
            None if path.len() + 1 == self.root.len() => {
                (self.root.strip_suffix('/') == Some(path)).then_some("")
            }
            None => None,
        }
    }

    /// The path serving `rel` (relative to the root) and its parameters.
    pub fn find<'r>(
        &self,
        rel: &'r str,
        operation: Operation,
    ) -> Option<(&'static Path, Params<'r>)> {
        let rel = if self.ignore_trailing_slashes {
            rel.trim_end_matches('/')
        } else {
            rel
        };
        let list = operation == Operation::List;
        self.paths
            .iter()
            .find_map(|path| matches(path.pattern, rel, list).map(|params| (path, params)))
    }
}

/// Vault's answer for a path no pattern of the backend matches.
pub fn unsupported_path(_: &str, _: Operation) -> ApiResult<Reply> {
    Err(crate::error::ApiError::UnsupportedPath)
}
