//! The kvsync host: runs the engine component under wasmtime and supplies what
//! the sandbox may not do itself — HTTP, storage, identity and tenancy.

pub mod auth;
pub mod cli;
pub use kvsync_host_core::config;
pub mod connectors;
pub mod env;
pub mod ha;
pub mod http;
pub mod namespaces;
pub(crate) mod private_fs;
pub mod quotas;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod vault_client;
pub mod worker;
