//! What the engine targets share: requests as a JSON client sends them, and
//! sync worker runs.

use kvsync_component::sync::worker::{self, Settings};
use kvsync_component::{Env, Request};

/// A request with a JSON body (merge-patch for PATCH); `path` may carry a
/// query string.
pub fn json_request(method: &str, path: &str, body: &str) -> Request {
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
        body: body.as_bytes().to_vec(),
        caller: None,
    }
}

/// One worker run over every shard, taking up to `limit` due entries, with
/// no coalescing (so a change is due at once).
pub fn run_worker(env: &Env, limit: u32) {
    let settings = Settings {
        coalesce_window_ms: 0,
        ..Settings::default()
    };
    worker::run(env, 0, 1, limit, &settings);
}
