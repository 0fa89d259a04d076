//! The kvsync engine: Vault's HTTP API (routing, envelopes, validation), the mount
//! table and the KV-v2 secrets engine, as plain Rust behind a thin wit-bindgen adapter.
//!
//! Everything here runs natively in unit tests: the WIT imports are reached only
//! through the traits bundled in [`env::Env`] (storage, connector, authz, policies,
//! tokens, keyring), which the wasm adapter implements with the host's imports and
//! tests implement in memory.

pub mod api;
pub mod auth;
pub mod authz;
pub mod connector;
pub mod effects;
pub mod env;
pub mod error;
pub mod framework;
pub mod keyring;
pub mod kv;
pub mod namespaces;
pub mod policies;
pub mod router;
pub mod storage;
pub mod sync;
pub mod sys;
pub mod time;
pub mod tokens;

// wit-bindgen's generated glue uses unsafe code; the engine itself does not.
/// Test support: the native tests' helpers, and (feature `testing`) the fuzz targets'.
#[cfg(any(test, feature = "testing"))]
#[allow(
    clippy::unwrap_used,
    reason = "test support: a helper that cannot do its part fails the test"
)]
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[expect(unsafe_code, reason = "wit-bindgen's generated glue")]
mod bindings;

pub use api::{Caller, Outcome, Request, Response};
pub use env::Env;

/// Handles one API request with one tenant's imports: the response, and what
/// the request caused that the host must act on.
pub fn handle(env: &Env, req: Request) -> Outcome {
    router::handle(env, req)
}
