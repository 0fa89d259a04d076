//! P1, P2: KV reads through the component, against the same engine linked
//! natively and against a bare hyper server.

use anyhow::Context as _;
use serde_json::json;

use super::servers::Vault;
use super::{Bench, Bound, Row, TOKEN, ratio_text};
use crate::bench::load::{Load, SATURATED};
use crate::bench::stats::Summary;

impl Bench<'_> {
    pub(super) async fn api_path(&self) -> anyhow::Result<Vec<Row>> {
        let wasm = self.start("p1-kvsync", &self.kvsync_dev(&[]))?;
        let fresh = self.start(
            "p1-kvsync-fresh",
            &self.kvsync_dev(&["--guest-warm-instances", "0"]),
        )?;
        let native = self.start("p1-native", &self.bench_server(&["native-server"]))?;
        let secret =
            json!({"data": {"username": "svc-app", "password": "correct-horse-battery-staple-42"}});
        for url in [&wasm.url, &fresh.url, &native.url] {
            Vault::new(url)
                .write("secret/data/bench", secret.clone())
                .await?;
        }
        let body = Vault::new(&wasm.url).read_raw("secret/data/bench").await?;
        let size = body.len().to_string();
        let hyper = self.start(
            "p2-hyper",
            &self.bench_server(&["hyper-server", "--body-bytes", &size]),
        )?;
        let path = "/v1/secret/data/bench";
        let load_of = |url: &str, token: Option<&str>| {
            Load::get(&format!("{url}{path}"), token, self.opts.connections)
        };
        let mut servers = [
            Measured::new("component", load_of(&wasm.url, Some(TOKEN))),
            Measured::new("native", load_of(&native.url, Some(TOKEN))),
            Measured::new("hyper", load_of(&hyper.url, None)),
            Measured::new("fresh", load_of(&fresh.url, Some(TOKEN))),
        ];
        for server in &servers {
            self.load(&server.load, self.opts.warmup_seconds).await?;
        }
        let mut busiest: f64 = 0.0;
        for round in 0..self.opts.rounds {
            // Each round starts with the next server, so that none is always
            // measured first.
            let first = round % servers.len();
            let mut order: Vec<&mut Measured> = servers.iter_mut().collect();
            order.rotate_left(first);
            for server in order {
                let run = self.load(&server.load, self.opts.seconds).await?;
                eprintln!(
                    "   round {round} {:<9} {:>9.0} req/s (wrk core {:.0}% busy)",
                    server.name,
                    run.rps,
                    run.load_cpu * 100.0
                );
                server.rps.push(run.rps);
                busiest = busiest.max(run.load_cpu);
                server.busiest = server.busiest.max(run.load_cpu);
            }
        }
        let [on_wasm, on_native, on_hyper, on_fresh] = &servers;
        let ratios = |a: &Measured, b: &Measured| -> Vec<f64> {
            a.rps.iter().zip(&b.rps).map(|(a, b)| a / b).collect()
        };
        let fresh_s = Summary::of(&ratios(on_fresh, on_native)).context("no P1 rounds")?;
        let p1s = Summary::of(&ratios(on_wasm, on_native)).context("no P1 rounds")?;
        let p2s = Summary::of(&ratios(on_wasm, on_hyper)).context("no P2 rounds")?;
        drop((wasm, fresh, native, hyper));
        Ok(vec![
            Row::ratio(
                "P1",
                "wasm tax: KV read req/s, component ÷ same engine linked natively",
                &p1s,
                Bound::AtLeast(0.85),
                format!(
                    "`GET /v1/secret/data/bench`, {} connections, {} rounds of {} s: component {:.0} req/s, native {:.0} req/s (medians). Instance strategy: warm instances kept per tenant, discarded after any trap or limit (the default); with a fresh instance per request (`--guest-warm-instances 0`) {:.0} req/s, ratio {}{}{}",
                    self.opts.connections,
                    self.opts.rounds,
                    self.opts.seconds,
                    on_wasm.median(),
                    on_native.median(),
                    on_fresh.median(),
                    ratio_text(&fresh_s, 2),
                    on_wasm.capped(),
                    on_native.capped()
                ),
            ),
            Row::ratio(
                "P2",
                "framework overhead: KV read req/s ÷ bare hyper, same-size body",
                &p2s,
                Bound::AtLeast(0.50),
                format!(
                    "bare hyper {:.0} req/s with a {size}-byte body (median); busiest wrk core {:.0}%{}",
                    on_hyper.median(),
                    busiest * 100.0,
                    on_hyper.capped()
                ),
            ),
        ])
    }
}

/// One server measured in P1/P2: its load and what each round measured.
struct Measured {
    name: &'static str,
    load: Load,
    /// Requests per second, one figure per round.
    rps: Vec<f64>,
    /// The busiest the load generator's core was while loading this server.
    busiest: f64,
}

impl Measured {
    fn new(name: &'static str, load: Load) -> Self {
        Measured {
            name,
            load,
            rps: Vec::new(),
            busiest: 0.0,
        }
    }

    fn median(&self) -> f64 {
        Summary::of(&self.rps).map_or(f64::NAN, |s| s.median)
    }

    /// A caveat when the load generator's core was saturated: the load
    /// itself may then cap this server's figure.
    fn capped(&self) -> String {
        if self.busiest >= SATURATED {
            format!(
                " — wrk's core was {:.0}% busy: the load may cap this figure",
                self.busiest * 100.0
            )
        } else {
            String::new()
        }
    }
}
