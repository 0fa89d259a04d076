//! P5, P9: syncing through kvsync to moto against the AWS SDK called
//! directly, in bulk (P5) and per write (P9).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::servers::Vault;
use super::{Bench, Bound, Row};
use crate::bench::aws;
use crate::bench::procs::{LOAD_CORE, SERVER_CORE, Spec};
use crate::bench::stats::{Summary, percentile};

pub(super) const AWS_DEST: &str = "bench";

pub(super) async fn aws_destination(vault: &Vault, name: &str) -> anyhow::Result<()> {
    vault
        .write(
            &format!("sys/sync/destinations/aws-sm/{name}"),
            json!({
                "access_key_id": aws::ACCESS_KEY_ID,
                "secret_access_key": aws::SECRET_ACCESS_KEY,
                "region": aws::REGION,
                "disable_strict_networking": true,
                "secret_name_template": "{{ .SecretPath }}",
            }),
        )
        .await?;
    Ok(())
}

/// What kvsync pushes for a secret-path association of `{"v": value}`.
pub(super) fn pushed(value: &str) -> Value {
    json!({ "v": value })
}

fn lands(found: Option<String>, want: &Value) -> bool {
    found
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .is_some_and(|v| &v == want)
}

/// Polls moto until `name` holds `want` (bounded), as fast as moto answers.
pub(super) async fn wait_value(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
    want: &Value,
    within: Duration,
) -> anyhow::Result<()> {
    wait_value_every(client, name, want, within, Duration::from_micros(500)).await
}

/// Polls moto every `every` until `name` holds `want` (bounded).
async fn wait_value_every(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
    want: &Value,
    within: Duration,
    every: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if lands(aws::value(client, name).await?, want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} did not reach its new value within {within:?}");
        }
        tokio::time::sleep(every).await;
    }
}

impl Bench<'_> {
    pub(super) async fn sync_to_moto(&self) -> anyhow::Result<Vec<Row>> {
        let moto = aws::start_moto(&self.paths.moto_server, LOAD_CORE, self.log_dir())?;
        let kv = self.start("p5-kvsync", &self.kvsync_for_aws(&moto.url, &[])?)?;
        let vault = Vault::new(&kv.url);
        aws_destination(&vault, AWS_DEST).await?;
        let sm = aws::client(&moto.url);
        let n = self.opts.sync_count;
        let (mut ratios, mut ours_s, mut direct_s) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..self.opts.rounds.clamp(1, 3) {
            // Alternate which goes first: moto slows a little as it fills up.
            let (kv_prefix, direct_prefix) = (format!("p5k{round}"), format!("p5d{round}"));
            let (ours, direct) = if round % 2 == 0 {
                let ours = self.sync_round(&vault, &sm, &kv_prefix, n).await?;
                (ours, self.direct_round(&moto.url, &direct_prefix, n).await?)
            } else {
                let direct = self.direct_round(&moto.url, &direct_prefix, n).await?;
                (self.sync_round(&vault, &sm, &kv_prefix, n).await?, direct)
            };
            eprintln!("   round {round}: kvsync {ours:?}, direct SDK {direct:?}");
            ratios.push(ours.as_secs_f64() / direct.as_secs_f64());
            ours_s.push(ours.as_secs_f64());
            direct_s.push(direct.as_secs_f64());
        }
        let p5 = Summary::of(&ratios).context("no P5 rounds")?;
        let med = |v: &[f64]| Summary::of(v).map(|s| s.median).unwrap_or(f64::NAN);
        let mut rows = vec![Row::ratio(
            "P5",
            "sync overhead: wall time of creates + updates to moto, kvsync ÷ direct SDK",
            &p5,
            Bound::AtMost(1.25),
            format!(
                "{n} creates + {n} updates, one call at a time (per-destination concurrency 1) against the same moto: kvsync {:.2} s (secrets associated first, then {n} KV writes — each queues a create — until kvsync shows all synced, then {n} KV updates, until all synced again; every value then checked at moto) vs direct SDK {:.2} s (CreateSecret × {n}, then PutSecretValue × {n}) (medians)",
                med(&ours_s),
                med(&direct_s)
            ),
        )];
        rows.push(self.propagation(&vault, &sm).await?);
        drop((kv, moto));
        Ok(rows)
    }

    /// `n` secrets associated with a fresh destination before they exist,
    /// then written (each write queues the create), then written again (the
    /// updates): timed from the first write until kvsync shows every
    /// association synced after each phase; then every value is checked at
    /// moto (not timed).
    async fn sync_round(
        &self,
        vault: &Vault,
        sm: &aws_sdk_secretsmanager::Client,
        prefix: &str,
        n: usize,
    ) -> anyhow::Result<Duration> {
        aws_destination(vault, prefix).await?;
        for i in 0..n {
            vault
                .associate_expecting("aws-sm", prefix, &format!("{prefix}/s{i:05}"), "UNSYNCED")
                .await?;
        }
        let within = Duration::from_secs(600);
        let started = Instant::now();
        for value in ["create", "update"] {
            for i in 0..n {
                vault
                    .write(
                        &format!("secret/data/{prefix}/s{i:05}"),
                        json!({"data": {"v": format!("{value}-{i}")}}),
                    )
                    .await?;
            }
            let written = started.elapsed();
            // Entries run in the order they were queued: once the last one
            // is at moto (one cheap poll every 20 ms), confirm with kvsync's
            // own view of every association (listing them all is too heavy
            // to repeat while the worker runs).
            let last = n - 1;
            wait_value_every(
                sm,
                &format!("{prefix}/s{last:05}"),
                &pushed(&format!("{value}-{last}")),
                within,
                Duration::from_millis(20),
            )
            .await?;
            vault.wait_all_synced("aws-sm", prefix, n, within).await?;
            eprintln!(
                "   kvsync {value}s: written by {:.2} s, all synced at {:.2} s",
                written.as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
        }
        let took = started.elapsed();
        for i in 0..n {
            let name = format!("{prefix}/s{i:05}");
            if !lands(
                aws::value(sm, &name).await?,
                &pushed(&format!("update-{i}")),
            ) {
                bail!("{name} does not hold its last value at moto");
            }
        }
        Ok(took)
    }

    /// The direct-SDK program, pinned where kvsync runs.
    async fn direct_round(&self, moto: &str, prefix: &str, n: usize) -> anyhow::Result<Duration> {
        let spec = Spec::new(
            &self.paths.bench,
            &[
                "direct-sdk",
                "--endpoint",
                moto,
                "--prefix",
                prefix,
                "--count",
                &n.to_string(),
            ],
        )
        .on_core(SERVER_CORE);
        let out = tokio::task::spawn_blocking(move || spec.command().output()).await??;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "direct-sdk failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ms: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("elapsed_ms: "))
            .context("direct-sdk printed no time")?
            .trim()
            .parse()?;
        Ok(Duration::from_secs_f64(ms / 1000.0))
    }

    /// P9: KV write accepted → value at moto, minus a direct PutSecretValue,
    /// one write at a time (an empty queue), each to a secret not written
    /// in the last round.
    async fn propagation(
        &self,
        vault: &Vault,
        sm: &aws_sdk_secretsmanager::Client,
    ) -> anyhow::Result<Row> {
        let n = self.opts.propagation_samples.max(10);
        let (mut p99s, mut medians, mut put_ms) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..self.opts.rounds.clamp(1, 5) {
            // Secrets of their own per round, synced once and then left
            // quiet: the measured write is the first change in a while
            // (coalescing holds back only a secret written moments ago).
            for i in 0..n {
                let path = format!("p9/r{round}/s{i:04}");
                vault.put_and_associate(AWS_DEST, &path, "initial").await?;
                aws::create(sm, &format!("p9direct/r{round}/s{i:04}"), "initial").await?;
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let (mut total, mut direct) = (Vec::new(), Vec::new());
            for i in 0..n {
                let value = format!("r{round}-{i}");
                let t = Instant::now();
                aws::put(sm, &format!("p9direct/r{round}/s{i:04}"), &value).await?;
                direct.push(t.elapsed().as_secs_f64() * 1e3);
                let path = format!("p9/r{round}/s{i:04}");
                let t = Instant::now();
                vault
                    .write(
                        &format!("secret/data/{path}"),
                        json!({"data": {"v": value}}),
                    )
                    .await?;
                wait_value(sm, &path, &pushed(&value), Duration::from_secs(30)).await?;
                total.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let put = Summary::of(&direct).context("no puts")?.median;
            let excess: Vec<f64> = total.iter().map(|t| t - put).collect();
            let p99 = percentile(&excess, 99.0).context("no samples")?;
            let med = Summary::of(&excess).context("no samples")?.median;
            eprintln!(
                "   P9 round {round}: excess over a direct put ({put:.2} ms): median {med:.2} ms, p99 {p99:.2} ms"
            );
            p99s.push(p99);
            medians.push(med);
            put_ms.push(put);
        }
        let s = Summary::of(&p99s).context("no rounds")?;
        let m = Summary::of(&medians).context("no rounds")?;
        let put = Summary::of(&put_ms).context("no rounds")?;
        Ok(Row {
            id: "P9",
            what: "propagation: KV write → value at moto, minus a direct SDK put (p99, ms)",
            measured: format!("{:.1} ms ({:.1}–{:.1}, n={})", s.median, s.min, s.max, s.n),
            target: "≤ 50 ms at p99".into(),
            met: Some(s.median <= 50.0),
            note: format!(
                "{n} writes per round, one at a time, each to a secret synced once more than a second before (an empty queue), each followed by polling moto until the value is there (the KV write's own round trip and the polling are included); median excess {:.1} ms; direct PutSecretValue {:.2} ms (median)",
                m.median, put.median
            ),
        })
    }
}
