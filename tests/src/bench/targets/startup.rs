//! P10: start-up to the first 200, cached against cold component cache and
//! against a bare hyper server.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{Bench, Row, TOKEN, ratio_text};
use crate::bench::procs::{SERVER_CORE, Spec, free_port, http_status_with, terminate};
use crate::bench::stats::Summary;

/// A request [`time_to_200`] waits for: path and extra headers.
pub(super) type Ready = (String, Vec<(String, String)>);

/// Spawns `spec` (which listens on `addr`) and times it to the first 200 on
/// each of `probes`, asked in turn (the second only once the first answered);
/// then stops it with SIGTERM.
pub(super) async fn time_to_200(
    name: &str,
    spec: Spec,
    log_dir: &Path,
    addr: std::net::SocketAddr,
    probes: Vec<Ready>,
) -> anyhow::Result<Vec<Duration>> {
    let log = std::fs::File::create(log_dir.join(format!("{name}.log")))?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Duration>> {
        let started = Instant::now();
        let mut child = spec
            .command()
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let deadline = started + Duration::from_secs(120);
        let mut times = Vec::with_capacity(probes.len());
        let mut out = Ok(());
        for (path, headers) in &probes {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            loop {
                if http_status_with(addr, path, &headers) == Some(200) {
                    times.push(started.elapsed());
                    break;
                }
                if Instant::now() > deadline || !matches!(child.try_wait(), Ok(None)) {
                    out = Err(anyhow::anyhow!(
                        "{} never answered 200 on {path}",
                        spec.program.display()
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            if out.is_err() {
                break;
            }
        }
        // A clean stop: a server killed mid-flight would start its next
        // round with a recovery of its storage file.
        let stopped = terminate(
            &mut child,
            &spec.program.display().to_string(),
            Duration::from_secs(60),
        );
        out.and(stopped).map(|()| times)
    })
    .await?
}

/// The first of `times` (there is one per probe).
fn first(times: Vec<Duration>) -> anyhow::Result<Duration> {
    times.first().copied().context("no time measured")
}

impl Bench<'_> {
    pub(super) async fn startup(&self) -> anyhow::Result<Vec<Row>> {
        let (mut cold, mut warm, mut bare) = (Vec::new(), Vec::new(), Vec::new());
        // This round's figure: each round adds one to every list.
        let latest = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
        for round in 0..self.opts.rounds.max(3) {
            let cache = self.paths.work.join(format!("p10-cache-{round}"));
            let _ = std::fs::remove_dir_all(&cache);
            for (label, out) in [("cold", &mut cold), ("cached", &mut warm)] {
                let port = free_port()?;
                let listen = format!("127.0.0.1:{port}");
                let spec = Spec::new(
                    &self.paths.kvsync,
                    &[
                        "server",
                        "--dev",
                        "--dev-root-token-id",
                        TOKEN,
                        "--dev-listen-address",
                        &listen,
                    ],
                )
                .env("TOKIO_WORKER_THREADS", "1")
                .env("KVSYNC_CACHE_DIR", cache.display().to_string())
                .on_core(SERVER_CORE);
                let t = time_to_200(
                    &format!("p10-{label}-{round}"),
                    spec,
                    self.log_dir(),
                    listen.parse()?,
                    vec![("/v1/sys/health".into(), Vec::new())],
                )
                .await
                .and_then(first)?;
                out.push(t.as_secs_f64() * 1e3);
            }
            let port = free_port()?;
            let listen = format!("127.0.0.1:{port}");
            let spec =
                self.bench_server(&["hyper-server", "--body-bytes", "100", "--listen", &listen]);
            let t = time_to_200(
                &format!("p10-hyper-{round}"),
                spec,
                self.log_dir(),
                listen.parse()?,
                vec![("/v1/sys/health".into(), Vec::new())],
            )
            .await
            .and_then(first)?;
            bare.push(t.as_secs_f64() * 1e3);
            eprintln!(
                "   round {round}: cold {:.1} ms, cached {:.1} ms, bare hyper {:.1} ms",
                latest(&cold),
                latest(&warm),
                latest(&bare)
            );
        }
        let ratios: Vec<f64> = warm.iter().zip(&cold).map(|(w, c)| w / c).collect();
        let vs_bare: Vec<f64> = warm.iter().zip(&bare).map(|(w, b)| w / b).collect();
        let r = Summary::of(&ratios).context("no rounds")?;
        let b = Summary::of(&vs_bare).context("no rounds")?;
        let med = |v: &[f64]| Summary::of(v).map(|s| s.median).unwrap_or(f64::NAN);
        Ok(vec![Row {
            id: "P10",
            what: "start-up to first 200 on sys/health: cached ÷ cold cache; cached ÷ bare hyper",
            measured: format!("{}; {:.1}× bare", ratio_text(&r, 2), b.median),
            target: "≤ 0.2; ≤ 10× bare".into(),
            met: Some(r.median <= 0.2 && b.median <= 10.0),
            note: format!(
                "`kvsync server --dev` (in-memory storage, KV mounted) from spawn to the first 200: cold {:.0} ms, cached {:.0} ms, bare hyper {:.1} ms (medians; spread of cached ÷ bare {:.1}–{:.1})",
                med(&cold),
                med(&warm),
                med(&bare),
                b.min,
                b.max
            ),
        }])
    }
}
