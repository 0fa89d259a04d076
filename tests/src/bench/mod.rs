//! The benchmark command's parts (`kvsync-bench`, run by `tests/bench.sh`):
//! the baselines every target is measured against, the load generator and
//! process plumbing, and the procedure of each target P1–P14 (each target's
//! figure, bound and baseline are listed in `BENCHMARKS.md`).
//!
//! Every figure is a ratio (or a count) measured side by side in one run; the
//! server under test is pinned to one core and the load to the other.

pub mod aws;
pub mod hyper_server;
pub mod load;
pub mod native;
pub mod probe;
pub mod procs;
pub mod stats;
pub mod targets;
pub mod tokens;
