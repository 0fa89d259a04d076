//! The processes a run starts (kvsync in dev mode, the baselines) and a
//! minimal Vault client to set them up.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{Bench, TOKEN};
use crate::bench::load::Load;
use crate::bench::procs::{ADDRESS_LINE, Proc, SERVER_CORE, Spec};

impl Bench<'_> {
    pub(super) fn log_dir(&self) -> &Path {
        &self.paths.work
    }

    /// `kvsync server --dev` on the server core, one tokio worker thread.
    pub(super) fn kvsync_dev(&self, extra: &[&str]) -> Spec {
        let mut args = vec![
            "server",
            "--dev",
            "--dev-root-token-id",
            TOKEN,
            "--dev-listen-address",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Spec::new(&self.paths.kvsync, &args)
            .env("TOKIO_WORKER_THREADS", "1")
            .env(
                "KVSYNC_CACHE_DIR",
                self.paths.work.join("cache").display().to_string(),
            )
            .on_core(SERVER_CORE)
    }

    /// A kvsync whose AWS SDK reaches `endpoint` (moto or a proxy to it).
    pub(super) fn kvsync_for_aws(&self, endpoint: &str, extra: &[&str]) -> anyhow::Result<Spec> {
        let empty = self.paths.work.join("aws-empty-config");
        std::fs::write(&empty, "")?;
        let empty = empty.display().to_string();
        Ok(self
            .kvsync_dev(extra)
            .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", empty.clone())
            .env("AWS_SHARED_CREDENTIALS_FILE", empty))
    }

    pub(super) fn start(&self, name: &str, spec: &Spec) -> anyhow::Result<Proc> {
        Proc::start(
            name,
            spec,
            self.log_dir(),
            ADDRESS_LINE,
            Duration::from_secs(120),
        )
    }

    pub(super) fn bench_server(&self, args: &[&str]) -> Spec {
        Spec::new(&self.paths.bench, args)
            .env("TOKIO_WORKER_THREADS", "1")
            .on_core(SERVER_CORE)
    }

    /// Runs one wrk round (blocking, off the async runtime).
    pub(super) async fn load(
        &self,
        load: &Load,
        seconds: u64,
    ) -> anyhow::Result<crate::bench::load::Run> {
        let load = load.clone();
        tokio::task::spawn_blocking(move || load.run(Duration::from_secs(seconds))).await?
    }
}

/// A minimal Vault client for setting things up.
#[derive(Clone)]
pub(super) struct Vault {
    http: reqwest::Client,
    url: String,
    token: String,
    /// Sent as `X-Vault-Namespace` (none: the root namespace).
    namespace: Option<String>,
}

impl Vault {
    /// A client of `url` with the dev root token.
    pub(super) fn new(url: &str) -> Vault {
        Vault::with_token(url, TOKEN)
    }

    pub(super) fn with_token(url: &str, token: &str) -> Vault {
        Vault {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            namespace: None,
        }
    }

    /// The same client (and connection pool), addressing namespace `ns`.
    pub(super) fn in_namespace(&self, ns: &str) -> Vault {
        Vault {
            namespace: Some(ns.to_string()),
            ..self.clone()
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}/v1/{path}", self.url))
            .header("X-Vault-Token", &self.token);
        match &self.namespace {
            Some(ns) => req.header("X-Vault-Namespace", ns),
            None => req,
        }
    }

    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.request(method.clone(), path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{method} {path}: {status} {text}");
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(&text)?)
    }

    pub(super) async fn write(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub(super) async fn read_raw(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let resp = self.request(reqwest::Method::GET, path).send().await?;
        if !resp.status().is_success() {
            bail!("GET {path}: {}", resp.status());
        }
        Ok(resp.bytes().await?.to_vec())
    }

    /// Writes `secret/<path>` as `{"v": value}` and associates it with
    /// `aws-sm/<dest>`; the first sync (inline) must land.
    pub(super) async fn put_and_associate(
        &self,
        dest: &str,
        path: &str,
        value: &str,
    ) -> anyhow::Result<()> {
        self.write(
            &format!("secret/data/{path}"),
            json!({"data": {"v": value}}),
        )
        .await?;
        self.associate("aws-sm", dest, path).await
    }

    /// Associates `secret` with a destination; its first sync (inline) must land.
    pub(super) async fn associate(
        &self,
        kind: &str,
        dest: &str,
        secret: &str,
    ) -> anyhow::Result<()> {
        self.associate_expecting(kind, dest, secret, "SYNCED").await
    }

    pub(super) async fn associate_expecting(
        &self,
        kind: &str,
        dest: &str,
        secret: &str,
        status: &str,
    ) -> anyhow::Result<()> {
        let out = self
            .write(
                &format!("sys/sync/destinations/{kind}/{dest}/associations/set"),
                json!({"mount": "secret", "secret_name": secret}),
            )
            .await?;
        // The inline first sync must have landed: its status is in the answer.
        let statuses: Vec<&str> = out
            .pointer("/data/associated_secrets")
            .and_then(Value::as_object)
            .map(|m| {
                m.values()
                    .filter(|a| a["secret_name"] == secret)
                    .filter_map(|a| a["sync_status"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        if statuses.is_empty() || statuses.iter().any(|s| *s != status) {
            bail!("association of {secret}: {statuses:?}, expected {status}");
        }
        Ok(())
    }

    /// Waits until the destination's `n` associations all show SYNCED
    /// (bounded): kvsync's own view that every queued change has landed.
    pub(super) async fn wait_all_synced(
        &self,
        kind: &str,
        dest: &str,
        n: usize,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let path = format!("sys/sync/destinations/{kind}/{dest}/associations");
        loop {
            let out = self.call(reqwest::Method::GET, &path, None).await?;
            let rows = out
                .pointer("/data/associated_secrets")
                .and_then(Value::as_object);
            let synced = rows.map_or(0, |m| {
                m.values().filter(|a| a["sync_status"] == "SYNCED").count()
            });
            if synced == n && rows.map_or(0, |m| m.len()) == n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{kind}/{dest}: {synced} of {n} associations synced after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
