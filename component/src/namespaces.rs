//! The engine's view of the host's `namespaces` import: the namespaces under
//! the request's namespace (`sys/namespaces`). The host keeps the records and
//! decides what a namespace holds; paths are relative to the request's
//! namespace.

use std::cell::RefCell;
use std::collections::BTreeMap;

/// Why an operation failed (WIT `namespaces.namespace-error`): the status
/// class, with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceError {
    /// 400.
    BadRequest(String),
    /// 403.
    Forbidden(String),
    /// 503; the message is for the log.
    Unavailable(String),
}

/// One namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub id: String,
    /// From the root, with a trailing `/`.
    pub path: String,
    pub uuid: String,
    pub custom_metadata: BTreeMap<String, String>,
}

/// The namespaces under the request's namespace (the host's `namespaces`
/// import).
pub trait Namespaces {
    /// The direct children, sorted by path.
    fn list(&self) -> Result<Vec<NamespaceInfo>, NamespaceError>;
    fn read(&self, path: &str) -> Result<Option<NamespaceInfo>, NamespaceError>;
    /// Creates it, or replaces an existing one's metadata when given.
    fn create(
        &self,
        path: &str,
        custom_metadata: Option<BTreeMap<String, String>>,
    ) -> Result<NamespaceInfo, NamespaceError>;
    /// Sets (`Some`) or removes (`None`) metadata keys; `None` when there is
    /// no such namespace.
    fn patch(
        &self,
        path: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> Result<Option<NamespaceInfo>, NamespaceError>;
    /// `false` when there was none.
    fn delete(&self, path: &str) -> Result<bool, NamespaceError>;
}

/// In-memory namespaces for native tests: paths relative to the root, ids
/// counted, no rule but "the parent must exist" and "no children left at a
/// deletion".
#[derive(Default)]
pub struct MemNamespaces {
    all: RefCell<BTreeMap<String, NamespaceInfo>>,
}

fn canonical(path: &str) -> String {
    format!("{}/", path.trim_matches('/'))
}

impl Namespaces for MemNamespaces {
    fn list(&self) -> Result<Vec<NamespaceInfo>, NamespaceError> {
        Ok(self
            .all
            .borrow()
            .values()
            .filter(|n| n.path.trim_end_matches('/').matches('/').count() == 0)
            .cloned()
            .collect())
    }

    fn read(&self, path: &str) -> Result<Option<NamespaceInfo>, NamespaceError> {
        Ok(self.all.borrow().get(&canonical(path)).cloned())
    }

    fn create(
        &self,
        path: &str,
        custom_metadata: Option<BTreeMap<String, String>>,
    ) -> Result<NamespaceInfo, NamespaceError> {
        let path = canonical(path);
        let mut all = self.all.borrow_mut();
        if let Some(parent) = path.trim_end_matches('/').rsplit_once('/').map(|(p, _)| p)
            && !all.contains_key(&canonical(parent))
        {
            return Err(NamespaceError::BadRequest(format!(
                "parent namespace \"{parent}/\" does not exist"
            )));
        }
        let next = all.len() + 1;
        let entry = all.entry(path.clone()).or_insert_with(|| NamespaceInfo {
            id: format!("ns{next:03}"),
            path,
            uuid: format!("00000000-0000-0000-0000-{next:012}"),
            custom_metadata: BTreeMap::new(),
        });
        if let Some(m) = custom_metadata {
            entry.custom_metadata = m;
        }
        Ok(entry.clone())
    }

    fn patch(
        &self,
        path: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> Result<Option<NamespaceInfo>, NamespaceError> {
        let mut all = self.all.borrow_mut();
        let Some(entry) = all.get_mut(&canonical(path)) else {
            return Ok(None);
        };
        for (k, v) in changes {
            match v {
                Some(v) => entry.custom_metadata.insert(k, v),
                None => entry.custom_metadata.remove(&k),
            };
        }
        Ok(Some(entry.clone()))
    }

    fn delete(&self, path: &str) -> Result<bool, NamespaceError> {
        let path = canonical(path);
        let mut all = self.all.borrow_mut();
        if all.keys().any(|k| k != &path && k.starts_with(&path)) {
            return Err(NamespaceError::BadRequest(format!(
                "child namespaces exist under path {path:?}, cannot remove"
            )));
        }
        Ok(all.remove(&path).is_some())
    }
}

/// No namespaces (a host that serves the root namespace only): reads find
/// nothing, changes are refused.
pub struct NoNamespaces;

fn unsupported() -> NamespaceError {
    NamespaceError::BadRequest("namespaces are not supported by this host".to_string())
}

impl Namespaces for NoNamespaces {
    fn list(&self) -> Result<Vec<NamespaceInfo>, NamespaceError> {
        Ok(Vec::new())
    }

    fn read(&self, _: &str) -> Result<Option<NamespaceInfo>, NamespaceError> {
        Ok(None)
    }

    fn create(
        &self,
        _: &str,
        _: Option<BTreeMap<String, String>>,
    ) -> Result<NamespaceInfo, NamespaceError> {
        Err(unsupported())
    }

    fn patch(
        &self,
        _: &str,
        _: Vec<(String, Option<String>)>,
    ) -> Result<Option<NamespaceInfo>, NamespaceError> {
        Ok(None)
    }

    fn delete(&self, _: &str) -> Result<bool, NamespaceError> {
        Ok(false)
    }
}
