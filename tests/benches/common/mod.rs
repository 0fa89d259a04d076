//! What every criterion bench of this crate shares.

use std::time::Duration;

use criterion::Criterion;

/// Modest samples, so that all benches together run in a few minutes on two cores.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}
