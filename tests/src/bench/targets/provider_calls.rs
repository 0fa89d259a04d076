//! P6, P7: provider calls per changed secret and coalescing of rapid writes,
//! counted at a proxy in front of moto.

use std::time::Duration;

use serde_json::{Value, json};

use super::servers::Vault;
use super::sync_to_aws::{AWS_DEST, aws_destination, pushed, wait_value};
use super::{Bench, Row};
use crate::bench::aws;
use crate::bench::procs::LOAD_CORE;
use crate::fake::{Backend, FakeServer};

async fn proxy_calls(http: &reqwest::Client, proxy: &str) -> anyhow::Result<usize> {
    let calls: Value = http
        .get(format!("{proxy}/_admin/calls"))
        .send()
        .await?
        .json()
        .await?;
    Ok(calls.as_array().map(Vec::len).unwrap_or(0))
}

async fn clear_calls(http: &reqwest::Client, proxy: &str) -> anyhow::Result<()> {
    http.delete(format!("{proxy}/_admin/calls")).send().await?;
    Ok(())
}

impl Bench<'_> {
    pub(super) async fn provider_calls(&self) -> anyhow::Result<Vec<Row>> {
        let moto = aws::start_moto(&self.paths.moto_server, LOAD_CORE, self.log_dir())?;
        let proxy = FakeServer::start(Backend::proxy(&moto.url)?, 0)?;
        let proxy_url = proxy.url();
        let kv = self.start(
            "p6-kvsync",
            &self.kvsync_for_aws(&proxy_url, &["--sync-reconcile-interval", "1s"])?,
        )?;
        let vault = Vault::new(&kv.url);
        aws_destination(&vault, AWS_DEST).await?;
        let sm = aws::client(&moto.url);
        let http = reqwest::Client::new();
        const K: usize = 20;

        clear_calls(&http, &proxy_url).await?;
        for i in 0..K {
            let path = format!("p6/s{i:02}");
            vault.put_and_associate(AWS_DEST, &path, "first").await?;
        }
        let per_create = proxy_calls(&http, &proxy_url).await? as f64 / K as f64;

        clear_calls(&http, &proxy_url).await?;
        for i in 0..K {
            vault
                .write(
                    &format!("secret/data/p6/s{i:02}"),
                    json!({"data": {"v": "second"}}),
                )
                .await?;
        }
        for i in 0..K {
            wait_value(
                &sm,
                &format!("p6/s{i:02}"),
                &pushed("second"),
                Duration::from_secs(30),
            )
            .await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let per_change = proxy_calls(&http, &proxy_url).await? as f64 / K as f64;

        // A full resync: every association set again, and reconciliation
        // (every second here) left to run a few times.
        clear_calls(&http, &proxy_url).await?;
        for i in 0..K {
            vault
                .associate("aws-sm", AWS_DEST, &format!("p6/s{i:02}"))
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let resync = proxy_calls(&http, &proxy_url).await?;

        // P7: 100 rapid writes to one secret.
        const WRITES: usize = 100;
        vault
            .write("secret/data/p7/hot", json!({"data": {"v": "start"}}))
            .await?;
        vault.associate("aws-sm", AWS_DEST, "p7/hot").await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        clear_calls(&http, &proxy_url).await?;
        for i in 0..WRITES {
            vault
                .write(
                    "secret/data/p7/hot",
                    json!({"data": {"v": format!("w{i}")}}),
                )
                .await?;
        }
        wait_value(
            &sm,
            "p7/hot",
            &pushed(&format!("w{}", WRITES - 1)),
            Duration::from_secs(30),
        )
        .await?;
        // Anything still queued would show within a coalescing window or two.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let p7_calls = proxy_calls(&http, &proxy_url).await?;
        let p7 = p7_calls as f64 / WRITES as f64;
        drop((kv, proxy, moto));
        Ok(vec![
            Row {
                id: "P6",
                what: "provider calls per changed secret; on a full resync of unchanged ones",
                measured: format!("{per_change:.2} per change; {resync} on resync"),
                target: "exactly 1; 0".into(),
                met: Some((per_change - 1.0).abs() < 1e-9 && resync == 0),
                note: format!(
                    "aws-sm, {K} secrets, every call counted at a proxy in front of moto; a new secret costs {per_create:.2} calls (first sync of an association); resync = `associations/set` again for all {K} + 3 reconciliations"
                ),
            },
            Row {
                id: "P7",
                what: "coalescing: provider writes ÷ KV writes, 100 rapid writes to one path",
                measured: format!("{p7:.2} ({p7_calls} calls)"),
                target: "≤ 0.05".into(),
                met: Some(p7 <= 0.05),
                note: "counted at the proxy; the final value was checked at moto".into(),
            },
        ])
    }
}
