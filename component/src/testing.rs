//! What the engine's native tests share: sending a request through the full
//! router with in-memory fakes, the way a client would.

use std::cell::Cell;

use serde_json::Value;

use crate::api::{Outcome, Request, Response};
use crate::env::Env;
use crate::storage::{Condition, Entry, Op, Page, Storage, StorageError};

/// A request as a JSON client sends it; `path` may carry a query string, and
/// PATCH uses the merge-patch content type.
pub fn request(method: &str, path: &str, body: &Value) -> Request {
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    raw_request(method, path, body)
}

/// [`request`] with the body as given, whether it is JSON or not.
pub fn raw_request(method: &str, path: &str, body: Vec<u8>) -> Request {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let content_type = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: vec![("content-type".into(), content_type.into())],
        body,
        caller: None,
    }
}

/// The response body decoded as JSON (`Null` when empty).
pub fn json_body(resp: &Response) -> Value {
    if resp.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&resp.body).unwrap()
    }
}

/// Sends a request through the router; returns the raw response and the
/// request's effects.
pub fn send_outcome(env: &Env, method: &str, path: &str, body: &Value) -> Outcome {
    crate::handle(env, request(method, path, body))
}

/// Sends a request through the router; returns the raw response.
pub fn send(env: &Env, method: &str, path: &str, body: &Value) -> Response {
    send_outcome(env, method, path, body).response
}

/// Sends a request; returns the status and the decoded body.
pub fn call(env: &Env, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let resp = send(env, method, path, body);
    let decoded = json_body(&resp);
    (resp.status, decoded)
}

/// The accessor of the mount at `mount` (`secret/`), which must exist.
pub fn accessor(storage: &dyn Storage, mount: &str) -> String {
    let mut tx = crate::storage::Tx::new(storage);
    crate::sys::mounts::MountTable::load(&mut tx)
        .unwrap()
        .get(mount)
        .unwrap()
        .accessor
        .clone()
}

/// [`Storage`] that counts the calls made to the storage it wraps (what a
/// request path costs in host calls), and can make commits conflict.
pub struct Counting<'s> {
    inner: &'s dyn Storage,
    pub gets: Cell<usize>,
    pub lists: Cell<usize>,
    pub commits: Cell<usize>,
    /// The next this many commits fail with a conflict (as if a concurrent
    /// writer had won), writing nothing.
    pub conflicts: Cell<usize>,
    /// While set, every commit fails (storage gone, or the process died
    /// before it could commit), writing nothing.
    pub down: Cell<bool>,
    /// Runs right before every commit that reaches the wrapped storage (a
    /// concurrent writer that commits first).
    pub before_commit: Option<Box<dyn Fn() + 's>>,
}

impl<'s> Counting<'s> {
    pub fn new(inner: &'s dyn Storage) -> Self {
        Counting {
            inner,
            gets: Cell::new(0),
            lists: Cell::new(0),
            commits: Cell::new(0),
            conflicts: Cell::new(0),
            down: Cell::new(false),
            before_commit: None,
        }
    }
}

fn bump(n: &Cell<usize>) {
    n.set(n.get() + 1);
}

impl Storage for Counting<'_> {
    fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        bump(&self.gets);
        self.inner.get(key)
    }

    fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        bump(&self.lists);
        self.inner.list(prefix, after, delimiter, limit)
    }

    fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        bump(&self.commits);
        if self.down.get() {
            return Err(StorageError::Unavailable("storage is down".into()));
        }
        if self.conflicts.get() > 0 {
            self.conflicts.set(self.conflicts.get() - 1);
            return Err(StorageError::Conflict);
        }
        if let Some(hook) = &self.before_commit {
            hook();
        }
        self.inner.commit(conditions, ops)
    }
}
