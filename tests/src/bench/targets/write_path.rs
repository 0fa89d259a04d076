//! P8: KV write throughput with five associations against none.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::servers::Vault;
use super::{Bench, Bound, Row, TOKEN};
use crate::bench::load::{Keys, Load};
use crate::bench::stats::Summary;

impl Bench<'_> {
    pub(super) async fn write_path(&self) -> anyhow::Result<Vec<Row>> {
        let kv = self.start("p8-kvsync", &self.kvsync_dev(&[]))?;
        let vault = Vault::new(&kv.url);
        vault
            .write("secret/data/p8/none", json!({"data": {"value": "v"}}))
            .await?;
        vault
            .write("secret/data/p8/with", json!({"data": {"value": "v"}}))
            .await?;
        for d in 0..5 {
            vault
                .write(&format!("sys/sync/destinations/in-mem/d{d}"), json!({}))
                .await?;
            vault
                .associate("in-mem", &format!("d{d}"), "p8/with")
                .await?;
        }
        let dir = self.paths.work.clone();
        let c = self.opts.connections;
        let none = Load::kv_writes(
            &format!("{}/v1/secret/data/p8/none", kv.url),
            TOKEN,
            c,
            &dir,
            "p8-none",
            Keys::One,
        )?;
        let with = Load::kv_writes(
            &format!("{}/v1/secret/data/p8/with", kv.url),
            TOKEN,
            c,
            &dir,
            "p8-with",
            Keys::One,
        )?;
        self.load(&none, self.opts.warmup_seconds).await?;
        self.load(&with, self.opts.warmup_seconds).await?;
        let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let mut busiest: f64 = 0.0;
        for round in 0..self.opts.rounds {
            let (w, n) = if round % 2 == 0 {
                let w = self.load(&with, self.opts.seconds).await?;
                (w, self.load(&none, self.opts.seconds).await?)
            } else {
                let n = self.load(&none, self.opts.seconds).await?;
                (self.load(&with, self.opts.seconds).await?, n)
            };
            eprintln!(
                "   round {round}: with 5 associations {:.0} req/s, none {:.0} req/s",
                w.rps, n.rps
            );
            busiest = busiest.max(w.load_cpu).max(n.load_cpu);
            a.push(w.rps);
            b.push(n.rps);
            ratios.push(w.rps / n.rps);
        }
        // The last write of the loaded secret must reach every destination.
        let last: Value = vault
            .call(reqwest::Method::GET, "secret/data/p8/with", None)
            .await?;
        let want = last
            .pointer("/data/data/value")
            .cloned()
            .unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        for d in 0..5 {
            loop {
                let objects = vault
                    .call(
                        reqwest::Method::GET,
                        &format!("sys/sync/destinations/in-mem/d{d}/objects"),
                        None,
                    )
                    .await?;
                let expected = json!({ "value": want });
                let objects = objects.pointer("/data/objects").and_then(Value::as_object);
                let landed = objects.is_some_and(|m| {
                    m.values().any(|v| {
                        v["value"]
                            .as_str()
                            .and_then(|s| serde_json::from_str::<Value>(s).ok())
                            .is_some_and(|v| v == expected)
                    })
                });
                if landed {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the last write did not reach in-mem/d{d}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let s = Summary::of(&ratios).context("no rounds")?;
        let med = |v: &[f64]| Summary::of(v).map(|s| s.median).unwrap_or(f64::NAN);
        Ok(vec![Row::ratio(
            "P8",
            "sync on the write path: KV write req/s, 5 associations ÷ none",
            &s,
            Bound::AtLeast(0.90),
            format!(
                "every write a new value, {c} connections: {:.0} req/s with 5 in-mem associations, {:.0} without (medians; the sync worker runs on the server's core too, and the last value was checked at all 5 destinations); busiest wrk core {:.0}%",
                med(&a),
                med(&b),
                busiest * 100.0
            ),
        )])
    }
}
