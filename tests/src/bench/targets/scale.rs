//! P11: no size cliff. A reconciliation pass over 100,000 unchanged
//! associations (one destination, in-mem connector) against one over
//! 10,000, in the same process, rounds interleaved: wall time of the pass
//! (reconcile, then the worker's runs until the pass is done), the ratio
//! 100k ÷ 10k (linear is 10), and the largest guest memory any call of the
//! pass ended with. The installations are seeded host-side
//! ([`crate::scale`]); the engine runs in this process, as in the server.

use std::time::Instant;

use anyhow::Context as _;

use super::{Bench, Bound, Row};
use crate::bench::stats::Summary;
use crate::scale::Installation;

/// The two sizes compared.
const SMALL: usize = 10_000;
const LARGE: usize = 100_000;
/// Rounds at most (a large pass takes seconds).
const MAX_ROUNDS: usize = 3;

/// One reconciliation pass: its wall time (s) and the largest guest memory
/// of its calls (bytes).
async fn pass(inst: &Installation) -> anyhow::Result<(f64, usize)> {
    inst.rt.take_peak_guest_memory();
    let started = Instant::now();
    let report = inst.drain().await?;
    let secs = started.elapsed().as_secs_f64();
    if report.reconciled != 0 || report.failed != 0 {
        anyhow::bail!("the associations were not unchanged: {report:?}");
    }
    Ok((secs, inst.rt.take_peak_guest_memory()))
}

impl Bench<'_> {
    pub(super) async fn scale(&self) -> anyhow::Result<Vec<Row>> {
        let small = Installation::new()?;
        small.seed(SMALL, &["d"]).await?;
        let large = Installation::new()?;
        let seeding = Instant::now();
        large.seed(LARGE, &["d"]).await?;
        eprintln!(
            "   seeded {LARGE} in {:.1} s",
            seeding.elapsed().as_secs_f64()
        );
        // Warm-up: the compiled code, the stores' caches.
        pass(&small).await?;
        let (mut t_small, mut t_large, mut peak) = (Vec::new(), Vec::new(), 0);
        for round in 0..self.opts.rounds.clamp(1, MAX_ROUNDS) {
            let (s, m_small) = pass(&small).await?;
            let (l, m_large) = pass(&large).await?;
            eprintln!(
                "   round {round}: 10k {s:.2} s, 100k {l:.2} s; largest call memory {:.1} / {:.1} MiB",
                mib(m_small),
                mib(m_large)
            );
            t_small.push(s);
            t_large.push(l);
            peak = peak.max(m_large).max(m_small);
        }
        let ratios: Vec<f64> = t_large.iter().zip(&t_small).map(|(l, s)| l / s).collect();
        let s = Summary::of(&ratios).context("no P11 rounds")?;
        let median = |v: &[f64]| Summary::of(v).map_or(f64::NAN, |s| s.median);
        Ok(vec![Row::ratio(
            "P11",
            "scale: reconciliation of 100,000 unchanged associations, time ÷ 10,000's",
            &s,
            Bound::AtMost(12.0),
            format!(
                "one in-mem destination, in-process engine, redb in memory, slices of 1,000: 100k pass {:.2} s, 10k pass {:.2} s (medians); largest guest memory of any call {:.1} MiB (cap 64 MiB)",
                median(&t_large),
                median(&t_small),
                mib(peak),
            ),
        )])
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}
