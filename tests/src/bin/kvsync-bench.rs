//! The benchmark command's driver and its baselines (run it through
//! `tests/bench.sh`, which builds in release mode and installs wrk and moto).
//!
//! - `kvsync-bench all [--rounds N] [--seconds S] [--connections C] [--sync-count N]
//!   [--samples N] [--namespaces N] [--bao-namespaces N] [--only P1,P5] [--moto PATH]
//!   [--bao PATH] [--out FILE]`: measures P1–P14 and prints the table (also written to
//!   `--out`). `--namespaces` (default 10,000) sizes P4 and P10-ns, `--bao-namespaces`
//!   (default 1,000, at most `--namespaces`) OpenBao's P4; `--bao` is OpenBao's binary,
//!   the peer of P4 and P14 (without it their OpenBao rows fail). A smoke run:
//!   `--only P4,P10-ns,P14 --namespaces 50 --rounds 1 --seconds 2 --warmup 1`.
//! - `kvsync-bench native-server [--listen ADDR]`: the P1 baseline (the engine linked
//!   natively behind kvsync's HTTP front; dev-mode setup, root token `root`).
//! - `kvsync-bench hyper-server --body-bytes N [--listen ADDR]`: the P2 baseline.
//! - `kvsync-bench direct-sdk --endpoint URL --prefix P --count N`: the P5 baseline.
//! - `kvsync-bench token-lookups --mode before|cached|uncached --count N`: N
//!   resolutions of a request's token (for instruction counts under callgrind;
//!   see `bench::tokens`).
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program: results go to stdout, progress to stderr"
)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use kvsync_tests::bench::{aws, hyper_server, native, targets, tokens};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        eprintln!(
            "usage: kvsync-bench <all|native-server|hyper-server|direct-sdk|token-lookups> [options]"
        );
        return ExitCode::from(2);
    };
    // kvsync's own runtime settings, so the baselines (native-server, hyper-server)
    // differ from kvsync only in what they measure.
    let rt = match kvsync::cli::async_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let flags = Flags(args.collect());
    let out = rt.block_on(async {
        match cmd.as_str() {
            "all" => all(&flags).await,
            "native-server" => native_server(&flags).await,
            "hyper-server" => hyper(&flags).await,
            "direct-sdk" => direct_sdk(&flags).await,
            "token-lookups" => token_lookups(&flags).await,
            other => Err(anyhow::anyhow!("unknown command {other:?}")),
        }
    });
    match out {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Flags(Vec<String>);

impl Flags {
    fn get(&self, flag: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == flag)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    fn parse<T: std::str::FromStr>(&self, flag: &str, default: T) -> anyhow::Result<T> {
        match self.get(flag) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag}: cannot read {v:?}")),
        }
    }
}

async fn all(flags: &Flags) -> anyhow::Result<ExitCode> {
    let d = targets::Options::default();
    let opts = targets::Options {
        rounds: flags.parse("--rounds", d.rounds)?.max(1),
        seconds: flags.parse("--seconds", d.seconds)?.max(1),
        warmup_seconds: flags.parse("--warmup", d.warmup_seconds)?,
        connections: flags.parse("--connections", d.connections)?.max(1),
        sync_count: flags.parse("--sync-count", d.sync_count)?.max(1),
        propagation_samples: flags.parse("--samples", d.propagation_samples)?,
        only: flags
            .get("--only")
            .map(|s| s.split(',').map(|p| p.trim().to_string()).collect())
            .unwrap_or_default(),
        namespaces: flags.parse("--namespaces", d.namespaces)?.max(1),
        bao_namespaces: flags.parse("--bao-namespaces", d.bao_namespaces)?.max(1),
    };
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the binary's folder")?.to_path_buf();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let work = dir.join("bench-runs").join(stamp.to_string());
    std::fs::create_dir_all(&work)?;
    let paths = targets::Paths {
        kvsync: dir.join("kvsync"),
        bench: exe.clone(),
        moto_server: PathBuf::from(flags.get("--moto").unwrap_or("moto_server")),
        bao: flags.get("--bao").map(PathBuf::from),
        work: work.clone(),
    };
    eprintln!(
        "kvsync-bench: {} rounds of {} s, {} connections; logs in {}",
        opts.rounds,
        opts.seconds,
        opts.connections,
        work.display()
    );
    let rows = targets::run(&opts, &paths).await;
    let table = targets::table(&rows);
    println!("{table}");
    if let Some(out) = flags.get("--out") {
        std::fs::write(out, &table).with_context(|| format!("cannot write {out}"))?;
    }
    std::fs::write(work.join("results.md"), &table)?;
    let failed = rows.iter().any(|r| r.is_failure());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Dev mode's setup (in-memory storage, root token `root`, KV-v2 at
/// `secret/`) behind kvsync's HTTP front, answered by the natively linked
/// engine; no runtime, no sync worker.
async fn native_server(flags: &Flags) -> anyhow::Result<ExitCode> {
    use kvsync::http::{self, ListenerLimits};
    use kvsync::server;

    let (sealed, identity, _root) =
        server::dev_storage(&native::NativeApi, Some("root".into())).await?;
    let backend = sealed.backend;
    let (listener, addr) = http::bind(flags.get("--listen").unwrap_or("127.0.0.1:0")).await?;
    let namespaces = kvsync::namespaces::NamespaceStore::new(backend.clone());
    let state = server::http_state(
        Arc::new(native::NativeApi),
        backend,
        identity,
        namespaces,
        ListenerLimits::default(),
        Arc::new(tokio::sync::Notify::new()),
        None,
    );
    println!("Api Address: http://{addr}");
    http::serve(listener, None, state, std::future::pending()).await;
    Ok(ExitCode::SUCCESS)
}

async fn hyper(flags: &Flags) -> anyhow::Result<ExitCode> {
    let size: usize = flags.parse("--body-bytes", 256)?;
    let listener =
        tokio::net::TcpListener::bind(flags.get("--listen").unwrap_or("127.0.0.1:0")).await?;
    println!("Api Address: http://{}", listener.local_addr()?);
    hyper_server::serve(listener, hyper_server::body_of_size(size)).await;
    Ok(ExitCode::SUCCESS)
}

async fn token_lookups(flags: &Flags) -> anyhow::Result<ExitCode> {
    let mode = flags.get("--mode").unwrap_or("cached");
    let count: u64 = flags.parse("--count", 10_000)?;
    let lookups = tokens::Lookups::new().await?;
    let started = std::time::Instant::now();
    lookups.run(mode, count).await?;
    let took = started.elapsed();
    println!(
        "{mode}: {count} lookups, {:.0} ns each",
        took.as_nanos() as f64 / count.max(1) as f64
    );
    Ok(ExitCode::SUCCESS)
}

async fn direct_sdk(flags: &Flags) -> anyhow::Result<ExitCode> {
    let endpoint = flags.get("--endpoint").context("--endpoint URL")?;
    let prefix = flags.get("--prefix").context("--prefix P")?;
    let count: usize = flags.parse("--count", 1000)?;
    let took = aws::direct_sync(endpoint, prefix, count).await?;
    println!("elapsed_ms: {:.3}", took.as_secs_f64() * 1e3);
    Ok(ExitCode::SUCCESS)
}
