//! The token lookup every request makes (`kvsync::auth::tokens`): as it was
//! before the caller cache (a storage read and decode), as it is now (a
//! cache hit), and a lookup that still reads storage (a use-limited token).
//! See `kvsync_tests::bench::tokens`.
//!
//! Run: `cargo bench -p kvsync-tests --bench tokens` (add `-- --quick` for a
//! short run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code

mod common;

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use kvsync_tests::bench::tokens::Lookups;

fn lookups(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lookups = rt.block_on(Lookups::new()).unwrap();
    let mut g = c.benchmark_group("token lookup per request");
    for mode in ["before", "cached", "uncached"] {
        g.bench_function(mode, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    lookups.run(black_box(mode), iters).await.unwrap();
                    started.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = token_benches;
    config = common::config();
    targets = lookups
}
criterion_main!(token_benches);
