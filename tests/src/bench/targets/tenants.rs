//! Real tenants (Vault's namespaces, `sys/namespaces/:path`): P4 memory per
//! idle tenant, start-up with many namespaces (P10-ns) and P14 noisy
//! neighbour. P4 and P14 are measured on kvsync and, as a peer, on OpenBao
//! (`bao server -dev`, one core, `GOMAXPROCS=1`). OpenBao has no Secrets Sync:
//! its tenants hold a KV-v2 mount and a secret only.
//!
//! A tenant `tNNNNN` is a namespace with KV-v2 at `secret/`, the secret `s`,
//! and on kvsync an `in-mem` destination `d` with `s` associated (its first
//! sync landed). Tenants are set up `SETUP_CONCURRENCY` at a time over
//! keep-alive connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::servers::Vault;
use super::startup::time_to_200;
use super::{Bench, Bound, Row, TOKEN, ratio_text};
use crate::bench::load::{Keys, Load};
use crate::bench::probe::Probe;
use crate::bench::procs::{Proc, SERVER_CORE, Spec, free_port, rss_bytes, socket_of};
use crate::bench::stats::{Summary, percentile};

/// Requests of the set-up in flight at once.
const SETUP_CONCURRENCY: usize = 32;
/// Idle time before memory is read: longer than an idle warm instance is kept
/// (30 s), so an idle tenant holds what it holds for good.
const SETTLE: Duration = Duration::from_secs(35);
/// Tenant B's reads during P14: offered rate (per second) and connections.
/// Each connection asks every 100 ms: less often than one of 72 connections
/// is served by a server that takes ~1,000 writes a second, so a fair server
/// keeps up with B, and B's latency does not grow with a backlog of its own.
const PROBE_RATE: f64 = 80.0;
const PROBE_CONNECTIONS: usize = 8;
/// Tenant A's writes go to this many secrets in turn.
const FLOOD_KEYS: usize = 256;

/// Which server a procedure runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Kvsync,
    Bao,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Kvsync => "kvsync",
            Peer::Bao => "OpenBao",
        }
    }

    /// Whether its tenants get a destination and an association.
    fn syncs(self) -> bool {
        self == Peer::Kvsync
    }
}

/// The namespace of tenant `i`.
fn tenant(i: usize) -> String {
    format!("t{i:05}")
}

/// Writes the first secret of a KV-v2 mount made just before. OpenBao answers
/// 400 "Upgrading from non-versioned to versioned data" for a moment after
/// such a mount; that answer is retried for at most 10 s.
async fn first_write(v: &Vault, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match v.write(path, body.clone()).await {
            Err(e)
                if format!("{e:#}").contains("Upgrading from non-versioned")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other.map(drop),
        }
    }
}

/// Creates tenant `ns` (see the module's documentation).
async fn add_tenant(root: &Vault, ns: &str, sync: bool) -> anyhow::Result<()> {
    root.write(&format!("sys/namespaces/{ns}"), json!({}))
        .await?;
    let v = root.in_namespace(ns);
    v.write(
        "sys/mounts/secret",
        json!({"type": "kv", "options": {"version": "2"}}),
    )
    .await?;
    first_write(
        &v,
        "secret/data/s",
        json!({"data": {"v": format!("{ns}-value")}}),
    )
    .await?;
    if sync {
        v.write("sys/sync/destinations/in-mem/d", json!({})).await?;
        v.associate("in-mem", "d", "s").await?;
    }
    Ok(())
}

/// A set-up stops when the server (process `pid`) holds more than this: the
/// machines these run on are shared.
const MAX_SERVER_RSS: u64 = 6 << 30;

/// Creates tenants `0..n` on the server of process `pid`, [`SETUP_CONCURRENCY`]
/// requests in flight; the first failure stops the rest, and so does the server
/// growing past [`MAX_SERVER_RSS`]. Returns how long it took.
async fn populate(root: &Vault, pid: u32, n: usize, sync: bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..SETUP_CONCURRENCY.min(n) {
        let (root, next) = (root.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                if i % 100 == 0 {
                    let rss = rss_bytes(&pid.to_string())?;
                    if rss > MAX_SERVER_RSS {
                        bail!(
                            "the server holds {} MiB after {i} tenants: stopped (at most {} MiB)",
                            rss >> 20,
                            MAX_SERVER_RSS >> 20
                        );
                    }
                }
                let ns = tenant(i);
                add_tenant(&root, &ns, sync)
                    .await
                    .with_context(|| format!("setting up tenant {ns}"))?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// Runs `measure` for each peer in turn: one row each, a failure of one
/// leaving the others.
async fn per_peer<F, Fut>(peers: [(Peer, &'static str, &'static str); 2], measure: F) -> Vec<Row>
where
    F: Fn(Peer, &'static str, &'static str) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Row>>,
{
    let mut rows = Vec::new();
    for (peer, id, what) in peers {
        rows.push(match measure(peer, id, what).await {
            Ok(row) => row,
            Err(e) => {
                eprintln!("!! {id}: {e:#}");
                Row::failed(id, what, &e)
            }
        });
    }
    rows
}

fn median(v: &[f64]) -> f64 {
    Summary::of(v).map_or(f64::NAN, |s| s.median)
}

impl Bench<'_> {
    /// `bao server -dev` on the server core, one Go thread.
    fn bao_dev(&self) -> anyhow::Result<(Spec, String)> {
        let bao = self
            .paths
            .bao
            .as_ref()
            .context("no OpenBao binary (--bao PATH)")?;
        let home = self.paths.work.join("bao-home");
        std::fs::create_dir_all(&home)?;
        // bao prints the port it was asked for: ask for a free one.
        let listen = format!("127.0.0.1:{}", free_port()?);
        let spec = Spec::new(
            bao,
            &[
                "server",
                "-dev",
                "-dev-root-token-id",
                TOKEN,
                "-dev-listen-address",
                &listen,
                "-dev-no-store-token",
            ],
        )
        .env("GOMAXPROCS", "1")
        .env("HOME", home.display().to_string())
        .on_core(SERVER_CORE);
        Ok((spec, format!("http://{listen}")))
    }

    /// A dev server of `peer`, started, with its URL.
    fn start_peer(&self, name: &str, peer: Peer) -> anyhow::Result<Proc> {
        match peer {
            Peer::Kvsync => self.start(name, &self.kvsync_dev(&[])),
            Peer::Bao => {
                let (spec, url) = self.bao_dev()?;
                let mut proc = self.start(name, &spec)?;
                proc.url = url;
                Ok(proc)
            }
        }
    }

    /// P4 with real tenants on kvsync and on OpenBao.
    pub(super) async fn memory_per_tenant(&self) -> anyhow::Result<Vec<Row>> {
        Ok(per_peer(
            [
                (
                    Peer::Kvsync,
                    "P4",
                    "memory per idle tenant: namespace, KV mount, secret, in-mem destination, association",
                ),
                (
                    Peer::Bao,
                    "P4-bao",
                    "memory per idle tenant, OpenBao (information): namespace, KV mount, secret",
                ),
            ],
            move |peer, id, what| self.tenant_memory(peer, id, what),
        )
        .await)
    }

    /// One server per round: warmed, settled, RSS read; `n` tenants set up,
    /// settled, RSS read again. The difference ÷ `n`.
    async fn tenant_memory(
        &self,
        peer: Peer,
        id: &'static str,
        what: &'static str,
    ) -> anyhow::Result<Row> {
        let n = match peer {
            Peer::Kvsync => self.opts.namespaces,
            Peer::Bao => self.opts.bao_namespaces.min(self.opts.namespaces),
        }
        .max(1);
        let (mut per, mut setup, mut before, mut after) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..self.opts.rounds.clamp(1, 3) {
            let server = self.start_peer(&format!("{id}-{round}"), peer)?;
            let root = Vault::new(&server.url);
            // The same kinds of requests the tenants will make, in the root
            // namespace: both readings see a server that has served them.
            root.write(
                "sys/mounts/warm",
                json!({"type": "kv", "options": {"version": "2"}}),
            )
            .await?;
            first_write(&root, "warm/data/s", json!({"data": {"v": "warm"}})).await?;
            if peer.syncs() {
                root.write("sys/sync/destinations/in-mem/warm", json!({}))
                    .await?;
                root.write(
                    "sys/sync/destinations/in-mem/warm/associations/set",
                    json!({"mount": "warm", "secret_name": "s"}),
                )
                .await?;
            }
            tokio::time::sleep(SETTLE).await;
            let empty = rss_bytes(&server.pid().to_string())?;
            let took = populate(&root, server.pid(), n, peer.syncs()).await?;
            tokio::time::sleep(SETTLE).await;
            let full = rss_bytes(&server.pid().to_string())?;
            let kib = full.saturating_sub(empty) as f64 / n as f64 / 1024.0;
            eprintln!(
                "   round {round} {}: RSS {:.1} MiB empty, {:.1} MiB with {n} tenants: {kib:.2} KiB per tenant (set-up {:.1} s)",
                peer.name(),
                empty as f64 / 1048576.0,
                full as f64 / 1048576.0,
                took.as_secs_f64()
            );
            per.push(kib);
            setup.push(took.as_secs_f64());
            before.push(empty as f64 / 1048576.0);
            after.push(full as f64 / 1048576.0);
            drop(server);
        }
        let s = Summary::of(&per).context("no rounds")?;
        let target_met = match peer {
            Peer::Kvsync => Some(s.median <= 16.0),
            Peer::Bao => None,
        };
        Ok(Row {
            id,
            what,
            measured: format!("{:.1} KiB ({:.1}–{:.1}, n={})", s.median, s.min, s.max, s.n),
            target: match peer {
                Peer::Kvsync => "≤ 16 KiB".into(),
                Peer::Bao => "information".into(),
            },
            met: target_met,
            note: format!(
                "{} dev server (in-memory storage, so the tenants' data is in the figure), one core: RSS {:.1} MiB with none (after the same kinds of requests in the root namespace), {:.1} MiB with {n} tenants, each read after {} s idle; set-up of {n} tenants {:.1} s ({SETUP_CONCURRENCY} requests in flight; medians)",
                peer.name(),
                median(&before),
                median(&after),
                SETTLE.as_secs(),
                median(&setup),
            ),
        })
    }

    /// Start-up of a persistent kvsync with many namespaces against one with
    /// none: to the first 200 on `sys/health`, and to the first successful
    /// KV read in a namespace (the last tenant created; with none, in the
    /// root namespace).
    pub(super) async fn startup_with_tenants(&self) -> anyhow::Result<Vec<Row>> {
        let n = self.opts.namespaces.max(1);
        let empty = self.persistent_storage("p10ns-none", 0).await?;
        let full = self.persistent_storage("p10ns-full", n).await?;
        let last = tenant(n - 1);
        let (mut ratio_health, mut ratio_read) = (Vec::new(), Vec::new());
        let (mut times_none, mut times_full) = (Vec::new(), Vec::new());
        for round in 0..self.opts.rounds.max(3) {
            let (mut none_t, mut full_t) = ((0.0, 0.0), (0.0, 0.0));
            // Alternate which one goes first.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for which in order {
                let (storage, read_path) = match which {
                    0 => (&empty, "/v1/secret/data/s".to_string()),
                    _ => (&full, format!("/v1/{last}/secret/data/s")),
                };
                let port = free_port()?;
                let config = storage.config(port)?;
                let spec = Spec::new(
                    &self.paths.kvsync,
                    &["server", "--config", &config.display().to_string()],
                )
                .env("TOKIO_WORKER_THREADS", "1")
                .on_core(SERVER_CORE);
                let token = storage.token.clone();
                let times = time_to_200(
                    &format!("p10ns-{which}-{round}"),
                    spec,
                    self.log_dir(),
                    format!("127.0.0.1:{port}").parse()?,
                    vec![
                        ("/v1/sys/health".to_string(), Vec::new()),
                        (read_path, vec![("X-Vault-Token".to_string(), token)]),
                    ],
                )
                .await?;
                let [health, read] = times[..] else {
                    bail!("two times expected");
                };
                let slot = if which == 0 { &mut none_t } else { &mut full_t };
                *slot = (health.as_secs_f64() * 1e3, read.as_secs_f64() * 1e3);
            }
            let ((h0, r0), (h1, r1)) = (none_t, full_t);
            eprintln!(
                "   round {round}: none: health {h0:.0} ms, KV read {r0:.0} ms; {n} namespaces: health {h1:.0} ms, KV read {r1:.0} ms"
            );
            ratio_health.push(h1 / h0);
            ratio_read.push(r1 / r0);
            times_none.push((h0, r0));
            times_full.push((h1, r1));
        }
        let h = Summary::of(&ratio_health).context("no rounds")?;
        let r = Summary::of(&ratio_read).context("no rounds")?;
        let med = |v: &[(f64, f64)], second: bool| {
            median(
                &v.iter()
                    .map(|(a, b)| if second { *b } else { *a })
                    .collect::<Vec<_>>(),
            )
        };
        Ok(vec![Row {
            id: "P10-ns",
            what: "start-up with many namespaces ÷ with none: to the first 200 on sys/health; to the first KV read in a namespace",
            measured: format!("{}; {}", ratio_text(&h, 2), ratio_text(&r, 2)),
            target: "information".into(),
            met: None,
            note: format!(
                "`kvsync server --config` on redb files, {n} tenants (set up as for P4, in {:.0} s, then the server stopped by SIGTERM) against storage with none; from spawn: none {:.0} ms to health, {:.0} ms to the KV read; with {n}: {:.0} ms and {:.0} ms (medians)",
                full.setup.as_secs_f64(),
                med(&times_none, false),
                med(&times_none, true),
                med(&times_full, false),
                med(&times_full, true),
            ),
        }])
    }

    /// A redb storage initialised with `operator init`, KV-v2 at `secret/`
    /// with the secret `s` in the root namespace, and `n` tenants.
    async fn persistent_storage(&self, name: &str, n: usize) -> anyhow::Result<Persistent> {
        let dir = self.paths.work.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut storage = Persistent {
            dir: dir.clone(),
            cache: self.paths.work.join("cache"),
            token: String::new(),
            setup: Duration::ZERO,
        };
        let config = storage.config(free_port()?)?;
        let out = std::process::Command::new(&self.paths.kvsync)
            .args(["operator", "init", "--config"])
            .arg(&config)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "operator init failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        storage.token = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Initial Root Token:"))
            .map(|t| t.trim().to_string())
            .context("operator init printed no root token")?;
        let spec = Spec::new(
            &self.paths.kvsync,
            &["server", "--config", &config.display().to_string()],
        )
        .env("TOKIO_WORKER_THREADS", "1")
        .on_core(SERVER_CORE);
        let server = self.start(&format!("{name}-setup"), &spec)?;
        let root = Vault::with_token(&server.url, &storage.token);
        root.write(
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await?;
        root.write("secret/data/s", json!({"data": {"v": "root-value"}}))
            .await?;
        storage.setup = populate(&root, server.pid(), n, true).await?;
        let stopped =
            tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(60)));
        stopped.await??;
        Ok(storage)
    }

    /// P14 on kvsync and on OpenBao.
    pub(super) async fn noisy_neighbour(&self) -> anyhow::Result<Vec<Row>> {
        Ok(per_peer(
            [
                (
                    Peer::Kvsync,
                    "P14",
                    "noisy neighbour: tenant B's p99 KV read latency while tenant A writes ÷ B's p99 alone",
                ),
                (
                    Peer::Bao,
                    "P14-bao",
                    "noisy neighbour, OpenBao (information): the same",
                ),
            ],
            move |peer, id, what| self.noisy(peer, id, what),
        )
        .await)
    }

    async fn noisy(&self, peer: Peer, id: &'static str, what: &'static str) -> anyhow::Result<Row> {
        let server = self.start_peer(&format!("{id}-server"), peer)?;
        let root = Vault::new(&server.url);
        for ns in ["tenant-a", "tenant-b"] {
            root.write(&format!("sys/namespaces/{ns}"), json!({}))
                .await?;
            root.in_namespace(ns)
                .write(
                    "sys/mounts/secret",
                    json!({"type": "kv", "options": {"version": "2"}}),
                )
                .await?;
        }
        first_write(
            &root.in_namespace("tenant-b"),
            "secret/data/b",
            json!({"data": {"v": "tenant-b-value"}}),
        )
        .await?;
        first_write(
            &root.in_namespace("tenant-a"),
            "secret/data/a0",
            json!({"data": {"v": "tenant-a-value"}}),
        )
        .await?;
        let c = self.opts.connections;
        let mut flood = Load::kv_writes(
            &format!("{}/v1/tenant-a/secret/data/a", server.url),
            TOKEN,
            c,
            self.log_dir(),
            &format!("{id}-flood"),
            Keys::Over(FLOOD_KEYS),
        )?;
        // A tenant past its caps is answered 429 or 503: that is the point.
        flood.refusals_allowed = true;
        let probe = Probe {
            addr: socket_of(&server.url)?,
            path: "/v1/tenant-b/secret/data/b".into(),
            headers: vec![("X-Vault-Token".into(), TOKEN.into())],
            expect: "tenant-b-value".into(),
            connections: PROBE_CONNECTIONS,
            rate: PROBE_RATE,
        };
        let phase = Duration::from_secs(self.opts.seconds);
        // Warm-up: both loads once, untimed.
        self.load(&flood, self.opts.warmup_seconds).await?;
        probe.run(Duration::from_secs(1)).await?;
        let (mut alone, mut noisy, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut flood_rps, mut refused, mut load_cpu) = (Vec::new(), 0, 0.0f64);
        for round in 0..self.opts.rounds {
            let (mut quiet, mut loud) = (0.0, 0.0);
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for with_flood in order {
                let latencies = if with_flood {
                    // The flood runs a second before and after the probe.
                    let flood_run = {
                        let (flood, seconds) = (flood.clone(), self.opts.seconds + 2);
                        tokio::task::spawn_blocking(move || flood.run(Duration::from_secs(seconds)))
                    };
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let latencies = probe.run(phase).await;
                    let run = flood_run.await??;
                    flood_rps.push(run.rps);
                    refused += run.refused;
                    load_cpu = load_cpu.max(run.load_cpu);
                    latencies?
                } else {
                    probe.run(phase).await?
                };
                let p = percentile(&latencies, 99.0).context("no probe answers")?;
                if with_flood {
                    loud = p;
                } else {
                    quiet = p;
                }
            }
            eprintln!(
                "   round {round} {}: B's p99 alone {quiet:.2} ms, while A writes {loud:.2} ms",
                peer.name()
            );
            alone.push(quiet);
            noisy.push(loud);
            ratios.push(loud / quiet);
        }
        drop(server);
        let s = Summary::of(&ratios).context("no P14 rounds")?;
        let note = format!(
            "{} dev server, one core; B: GETs of one secret at {PROBE_RATE:.0}/s over {PROBE_CONNECTIONS} connections (latency from when each was due), every answer checked; A: wrk, {c} connections of KV-v2 writes over {FLOOD_KEYS} secrets, {:.0} req/s (median), {refused} answers refused (429/503) in all; {} rounds of {} s, alone and flooded alternating: B's p99 {:.2} ms alone, {:.2} ms flooded (medians); busiest wrk core {:.0}%",
            peer.name(),
            median(&flood_rps),
            self.opts.rounds,
            self.opts.seconds,
            median(&alone),
            median(&noisy),
            load_cpu * 100.0,
        );
        Ok(match peer {
            Peer::Kvsync => Row::ratio(id, what, &s, Bound::AtMost(2.0), note),
            Peer::Bao => Row {
                id,
                what,
                measured: ratio_text(&s, 2),
                target: "information".into(),
                met: None,
                note,
            },
        })
    }
}

/// A persistent storage made for the start-up measurement.
struct Persistent {
    dir: PathBuf,
    cache: PathBuf,
    /// The root token `operator init` printed.
    token: String,
    /// How long its tenants took to set up.
    setup: Duration,
}

impl Persistent {
    /// Writes the configuration of a server of this storage on `port`.
    fn config(&self, port: u16) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("kvsync.hcl");
        std::fs::write(
            &path,
            format!(
                "storage \"redb\" {{ path = \"{}\" }}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\ncache_dir = \"{}\"\n",
                hcl_path(&self.dir.join("data")),
                hcl_path(&self.cache),
            ),
        )?;
        Ok(path)
    }
}

/// A path as an HCL string's contents.
fn hcl_path(p: &Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}
