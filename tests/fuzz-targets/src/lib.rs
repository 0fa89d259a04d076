//! The bodies of kvsync's fuzz targets. Each `run(data)` decodes the fuzzer's
//! bytes into a structured input ([`arbitrary::Unstructured`]: the same bytes
//! always decode to the same input) and checks the target's invariants: no
//! panic anywhere, plus the target's own rules. The cargo-fuzz binaries in
//! `fuzz/fuzz_targets/` are one-line calls of these functions, and the replay
//! test (`tests/replay.rs`) feeds every committed corpus file through them on
//! stable Rust, so what the fuzzer found once stays checked.
//!
//! The `policy` and `config_hcl` targets reach the host's code through
//! `kvsync-host-core`, which builds without wasmtime.

pub mod config_hcl;
mod engine;
pub mod engine_request;
mod input;
pub mod name_template;
pub mod policy;
pub mod storage_record;

/// A target's body: the fuzzer's bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by name: the names of `fuzz/fuzz_targets/*.rs` and of the
/// corpus directories `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("engine_request", engine_request::run),
    ("name_template", name_template::run),
    ("policy", policy::run),
    ("config_hcl", config_hcl::run),
    ("storage_record", storage_record::run),
];
