//! The parts of the kvsync host that need no runtime, no storage and no
//! network: the ACL policy language ([`policy`]), the configuration file
//! ([`config`]) and the settings it produces ([`settings`]). The `kvsync`
//! crate re-exports them where they are used (`kvsync::auth::policy`,
//! `kvsync::config`, and each setting beside the code it tunes); they live in
//! their own crate so that tools which must not build wasmtime (the fuzz
//! targets, built on nightly with coverage instrumentation) can link them.

pub mod config;
pub mod policy;
pub mod settings;
