//! AWS Secrets Manager from the benchmarks' side: an SDK client for moto, the
//! P5 direct-SDK baseline program, and moto itself.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_secretsmanager as sm;
use sm::config::{BehaviorVersion, Credentials, Region};

use super::procs::{Proc, Spec, free_port};

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY_ID: &str = "AKIAKVSYNCBENCH00001";
pub const SECRET_ACCESS_KEY: &str = "kvsync-bench-secret-access-key";

/// A client for the endpoint `url`, configured as kvsync's connector
/// configures its own: static credentials, one region, no SDK retries.
pub fn client(url: &str) -> sm::Client {
    let config = sm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "kvsync-bench",
        ))
        .retry_config(sm::config::retry::RetryConfig::disabled())
        .build();
    sm::Client::from_conf(config)
}

/// The value of secret `name`, if it exists.
pub async fn value(client: &sm::Client, name: &str) -> anyhow::Result<Option<String>> {
    match client.get_secret_value().secret_id(name).send().await {
        Ok(out) => Ok(out.secret_string().map(str::to_string)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!("GetSecretValue {name}: {e:?}")),
    }
}

/// One `PutSecretValue`.
pub async fn put(client: &sm::Client, name: &str, value: &str) -> anyhow::Result<()> {
    client
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("PutSecretValue {name}: {e:?}"))
}

/// One `CreateSecret` with the tag kvsync sets.
pub async fn create(client: &sm::Client, name: &str, value: &str) -> anyhow::Result<()> {
    client
        .create_secret()
        .name(name)
        .secret_string(value)
        .tags(
            sm::types::Tag::builder()
                .key("hashicorp:vault")
                .value("")
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("CreateSecret {name}: {e:?}"))
}

/// The P5 baseline: what a program that syncs by itself does for `count`
/// new secrets then `count` changes, one call at a time (kvsync's
/// per-destination concurrency): `count` CreateSecret, then `count`
/// PutSecretValue. Returns the wall time.
pub async fn direct_sync(url: &str, prefix: &str, count: usize) -> anyhow::Result<Duration> {
    let client = client(url);
    let started = Instant::now();
    for i in 0..count {
        create(
            &client,
            &format!("{prefix}/s{i:05}"),
            &format!("create-{i}"),
        )
        .await?;
    }
    for i in 0..count {
        put(
            &client,
            &format!("{prefix}/s{i:05}"),
            &format!("update-{i}"),
        )
        .await?;
    }
    Ok(started.elapsed())
}

/// Starts moto's server (`moto_server` from the virtualenv) on a free port.
pub fn start_moto(moto_server: &Path, core: usize, log_dir: &Path) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let spec = Spec::new(moto_server, &["-H", "127.0.0.1", "-p", &port.to_string()]).on_core(core);
    Proc::start_polled(
        "moto",
        &spec,
        log_dir,
        &format!("http://127.0.0.1:{port}"),
        "/moto-api/",
        Duration::from_secs(60),
    )
    .context("moto_server")
}
