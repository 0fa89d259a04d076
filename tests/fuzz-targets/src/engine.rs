//! What the engine targets share: requests as a JSON client sends them (the
//! engine's own test helper), and sync worker runs.

use kvsync_component::sync::worker::{self, Settings};
use kvsync_component::{Env, Request};

/// A request with a JSON body (merge-patch for PATCH); `path` may carry a
/// query string.
pub fn json_request(method: &str, path: &str, body: &str) -> Request {
    kvsync_component::testing::raw_request(method, path, body.as_bytes().to_vec())
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
