//! The real `kvsync` binary on PostgreSQL storage: `operator init` (once: a second is refused),
//! start, KV write and read, `kill -9` and restart, read again; a second host on the same
//! database reads what the first wrote; a database that was never initialized is refused with
//! advice; the connection's password appears in no output. Two hosts share the sync work
//! through shard leases, exactly once, and fail over.
//!
//! The binary is `$KVSYNC_BIN`, else `target/debug/kvsync` beside this test (`tests/run.sh`
//! builds it first).
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kvsync_tests::bench::aws;
use kvsync_tests::bench::procs::{ADDRESS_LINE, Proc, Spec};
use kvsync_tests::fake::{Backend, FakeServer};
use kvsync_tests::postgres::{self, PASSWORD};
use serde_json::{Value, json};

fn kvsync_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("KVSYNC_BIN") {
        return PathBuf::from(bin);
    }
    // target/debug/deps/<this test> -> target/debug/kvsync
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("kvsync"))
        .unwrap()
}

fn config(dir: &Path, url: Option<&str>, key_file: bool) -> PathBuf {
    config_with(dir, url, key_file, "")
}

/// [`config`] with `extra` settings at the top level.
fn config_with(dir: &Path, url: Option<&str>, key_file: bool, extra: &str) -> PathBuf {
    let url_line = url.map_or(String::new(), |u| format!("connection_url = \"{u}\""));
    let key_line = if key_file {
        format!(
            "encryption_key_file = \"{}\"",
            dir.join("encryption.key").display()
        )
    } else {
        String::new()
    };
    let path = dir.join("kvsync.hcl");
    std::fs::write(
        &path,
        format!(
            r#"storage "postgresql" {{
  {url_line}
  table        = "kvsync_store"
  ha_enabled   = "true"
  max_parallel = "4"
}}
listener "tcp" {{
  address     = "127.0.0.1:0"
  tls_disable = "true"
}}
{key_line}
{extra}
"#
        ),
    )
    .unwrap();
    path
}

fn kvsync(args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let out = Command::new(kvsync_bin())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains(PASSWORD),
        "the password in the output: {text}"
    );
    (out.status.success(), text)
}

fn server(name: &str, config: &Path, log_dir: &Path) -> Proc {
    server_with(name, config, log_dir, &[])
}

/// [`server`] with extra environment variables.
fn server_with(name: &str, config: &Path, log_dir: &Path, env: &[(&str, String)]) -> Proc {
    let mut spec = Spec::new(
        kvsync_bin(),
        &["server", "--config", &config.to_string_lossy()],
    )
    .env("KVSYNC_LOG", "info");
    for (k, v) in env {
        spec = spec.env(k, v.clone());
    }
    Proc::start(name, &spec, log_dir, ADDRESS_LINE, Duration::from_secs(60)).unwrap()
}

async fn call(
    url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client
        .request(method.parse().unwrap(), format!("{url}/v1/{path}"))
        .header("X-Vault-Token", token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_on_postgres_init_serve_restart() {
    let pg = postgres::shared().unwrap();
    let url = pg.create_database("e2e").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), Some(&url), true);
    let config_arg = config.to_string_lossy().into_owned();

    // init: the schema, the key file (0600), the root token shown once.
    let (ok, out) = kvsync(&["operator", "init", "--config", &config_arg], &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Storage initialized: postgresql (postgres://kvsync@127.0.0.1:"),
        "{out}"
    );
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("Initial Root Token: "))
        .expect("root token")
        .trim()
        .to_owned();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path().join("encryption.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        pg.psql("e2e", "SELECT max(version) FROM kvsync_store_schema")
            .unwrap()
            .trim(),
        "1"
    );
    // A second init is refused.
    let (ok, out) = kvsync(&["operator", "init", "--config", &config_arg], &[]);
    assert!(!ok);
    assert!(out.contains("is already initialized"), "{out}");

    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let a = server("a", &config, &logs);
    let (status, _) = call(
        &a.url,
        &token,
        "POST",
        "sys/mounts/secret",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = call(
        &a.url,
        &token,
        "POST",
        "secret/data/app/db",
        Some(json!({"data": {"password": "s3cr3t-e2e"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let read = |url: String| {
        let token = token.clone();
        async move {
            let (status, body) = call(&url, &token, "GET", "secret/data/app/db", None).await;
            assert_eq!(status, 200, "{body}");
            body["data"]["data"]["password"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    assert_eq!(read(a.url.clone()).await, "s3cr3t-e2e");

    // A second host on the same database serves what the first wrote, and the other way round.
    // It names itself by its api_addr, not by its listener's address.
    let config_b = dir.path().join("kvsync-b.hcl");
    std::fs::write(
        &config_b,
        format!(
            "{}\napi_addr = \"https://kvsync-b.example:8200/\"\n",
            std::fs::read_to_string(&config).unwrap()
        ),
    )
    .unwrap();
    let b = server("b", &config_b, &logs);
    assert_eq!(read(b.url.clone()).await, "s3cr3t-e2e");
    let (_, leader) = call(&b.url, "", "GET", "sys/leader", None).await;
    assert_eq!(
        leader["leader_address"], "https://kvsync-b.example:8200",
        "{leader}"
    );
    let (status, _) = call(
        &b.url,
        &token,
        "POST",
        "secret/data/app/other",
        Some(json!({"data": {"k": "from-b"}})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(&a.url, &token, "GET", "secret/data/app/other", None).await;
    assert_eq!(
        (status, body["data"]["data"]["k"].as_str()),
        (200, Some("from-b"))
    );
    drop(b);

    // kill -9, restart: the acknowledged write is there.
    a.stop();
    let a = server("a2", &config, &logs);
    assert_eq!(read(a.url.clone()).await, "s3cr3t-e2e");
    let (status, body) = call(&a.url, &token, "LIST", "secret/metadata/app", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["keys"], json!(["db", "other"]));
    drop(a);

    // PostgreSQL holds no plaintext.
    let dump = pg
        .psql("e2e", "SELECT encode(value, 'escape') FROM kvsync_store")
        .unwrap();
    assert!(!dump.contains("s3cr3t-e2e"));
    for log in std::fs::read_dir(&logs).unwrap() {
        let text = std::fs::read_to_string(log.unwrap().path()).unwrap();
        assert!(!text.contains(PASSWORD), "the password in a log");
        assert!(!text.contains("s3cr3t-e2e"), "a secret in a log");
    }
}

/// Connection settings from libpq's variables; a database never initialized is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninitialized_database_is_refused_with_advice() {
    let pg = postgres::shared().unwrap();
    pg.create_database("e2e_empty").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), None, false);
    let config_arg = config.to_string_lossy().into_owned();
    let env = [
        ("PGHOST", "127.0.0.1".to_owned()),
        ("PGPORT", pg.port.to_string()),
        ("PGUSER", postgres::SUPERUSER.to_owned()),
        ("PGPASSWORD", PASSWORD.to_owned()),
        ("PGDATABASE", "e2e_empty".to_owned()),
        ("PGSSLMODE", "disable".to_owned()),
        (
            "KVSYNC_ENCRYPTION_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
        ),
    ];
    let (ok, out) = kvsync(&["server", "--config", &config_arg], &env);
    assert!(!ok);
    assert!(
        out.contains("is not initialized: run `kvsync operator init --config"),
        "{out}"
    );
    assert!(out.contains("127.0.0.1"), "{out}");
    // No key file and no key in the environment: said before anything is created.
    let (ok, out) = kvsync(&["operator", "init", "--config", &config_arg], &env[..6]);
    assert!(!ok);
    assert!(
        out.contains("encryption_key_file") || out.contains("encryption key"),
        "{out}"
    );
}

// ---- several hosts: shard leases, cross-host wake-ups, failover ----

/// `moto_server` of the test virtualenv (`tests/run.sh` creates it), or `$KVSYNC_MOTO_SERVER`.
fn moto_server() -> PathBuf {
    std::env::var_os("KVSYNC_MOTO_SERVER").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server"),
        PathBuf::from,
    )
}

/// The proxy's count of provider calls since it was last cleared.
async fn provider_calls(proxy: &str) -> usize {
    let calls: Value = reqwest::get(format!("{proxy}/_admin/calls"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    calls.as_array().map_or(0, Vec::len)
}

async fn clear_provider_calls(proxy: &str) {
    reqwest::Client::new()
        .delete(format!("{proxy}/_admin/calls"))
        .send()
        .await
        .unwrap();
}

/// Polls `check` every 100 ms until it holds, for at most `within` (a generous bound:
/// "eventually", not a timing assertion).
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    for _ in 0..100_000 {
        if check().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether moto holds `{"v": value}` under `name`.
async fn at_moto(sm: &aws_sdk_secretsmanager::Client, name: &str, value: &str) -> bool {
    aws::value(sm, name)
        .await
        .unwrap()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .is_some_and(|v| v == json!({ "v": value }))
}

/// Whether moto holds `{"v": value}` under each of `s0` .. `s<n-1>`.
async fn all_at_moto(sm: aws_sdk_secretsmanager::Client, n: usize, value: &str) -> bool {
    for i in 0..n {
        if !at_moto(&sm, &format!("s{i}"), value).await {
            return false;
        }
    }
    true
}

/// The API addresses of the hosts `sys/leader` of `url` lists, by shard.
async fn shard_holders(url: &str) -> Vec<(u64, String)> {
    shard_holders_in(url, "sys/leader").await
}

/// The API addresses of the hosts `path` (`sys/leader`, `sys/health`) of `url` lists, by
/// shard.
async fn shard_holders_in(url: &str, path: &str) -> Vec<(u64, String)> {
    let (status, body) = call(url, "", "GET", path, None).await;
    assert_eq!(status, 200, "{body}");
    body["shard_holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["shard"].as_u64().unwrap(),
                h["address"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Two `kvsync server` processes on one PostgreSQL database, syncing to moto (every provider
/// call counted at a proxy): any host answers; associations and changes made through both
/// cost exactly one provider write each, whichever host holds the shard (a change through
/// the other host wakes the holder: the idle loops would otherwise sleep 5 minutes); `kill -9`
/// of the holder while changes are in flight: the other host takes the leases over and
/// finishes every sync; the killed host restarts and rejoins; a clean stop hands the leases
/// over at once; `sync run --once` next to a running host leaves it its shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_sync_exactly_once_and_fail_over() {
    const N: usize = 8;
    let pg = postgres::shared().unwrap();
    let url = pg.create_database("e2e_ha").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = config_with(
        dir.path(),
        Some(&url),
        true,
        "ha_lease_ttl = \"2s\"\nsync_workers = 2\nsync_reconcile_interval = \"5m\"\nsync_backoff_base = \"200ms\"\nsync_backoff_cap = \"1s\"\nsync_coalesce_window = \"0s\"",
    );
    let config_arg = config.to_string_lossy().into_owned();
    let (ok, out) = kvsync(&["operator", "init", "--config", &config_arg], &[]);
    assert!(ok, "{out}");
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("Initial Root Token: "))
        .expect("root token")
        .trim()
        .to_owned();

    let moto = aws::start_moto(&moto_server(), 0, &logs).unwrap();
    let proxy = FakeServer::start(Backend::proxy(&moto.url).unwrap(), 0).unwrap();
    let empty = dir.path().join("aws-empty");
    std::fs::write(&empty, "").unwrap();
    let aws_env: Vec<(&str, String)> = vec![
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", proxy.url()),
        ("AWS_ENDPOINT_URL", proxy.url()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", empty.display().to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", empty.display().to_string()),
    ];
    let sm = aws::client(&moto.url);

    let a = server_with("ha-a", &config, &logs, &aws_env);
    let b = server_with("ha-b", &config, &logs, &aws_env);
    let hosts = [a.url.clone(), b.url.clone()];
    let ok = |(status, body): (u16, Value)| {
        assert!(status < 300, "{status} {body}");
        body
    };
    ok(call(
        &a.url,
        &token,
        "POST",
        "sys/activation-flags/secrets-sync/activate",
        None,
    )
    .await);
    ok(call(
        &a.url,
        &token,
        "POST",
        "sys/mounts/secret",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await);
    ok(call(
        &b.url,
        &token,
        "POST",
        "sys/sync/destinations/aws-sm/ha",
        Some(json!({
            "access_key_id": aws::ACCESS_KEY_ID,
            "secret_access_key": aws::SECRET_ACCESS_KEY,
            "region": aws::REGION,
            "disable_strict_networking": true,
            "secret_name_template": "{{ .SecretPath }}",
        })),
    )
    .await);

    // The first host took every lease; both hosts say so, each naming itself as active.
    eventually("host a holds both shards", Duration::from_secs(30), || {
        let a_url = a.url.clone();
        async move { shard_holders(&a_url).await.len() == 2 }
    })
    .await;
    for url in &hosts {
        let (_, leader) = call(url, "", "GET", "sys/leader", None).await;
        assert_eq!(leader["ha_enabled"], true, "{leader}");
        assert_eq!(leader["is_self"], true, "{leader}");
        assert_eq!(
            leader["leader_address"].as_str(),
            Some(url.as_str()),
            "{leader}"
        );
        let holders = shard_holders(url).await;
        assert_eq!(holders, vec![(0, a.url.clone()), (1, a.url.clone())]);
        // sys/health: an active host whose connection to the shared storage is healthy,
        // with the same shard holders.
        let (status, health) = call(url, "", "GET", "sys/health", None).await;
        assert_eq!(status, 200, "{health}");
        assert_eq!(health["standby"], false, "{health}");
        assert_eq!(health["ha_connection_healthy"], true, "{health}");
        assert_eq!(shard_holders_in(url, "sys/health").await, holders);
    }

    // Secrets written through one host, associated through the other: one provider write
    // each (the inline first sync).
    clear_provider_calls(&proxy.url()).await;
    for i in 0..N {
        let (writer, other) = (&hosts[i % 2], &hosts[(i + 1) % 2]);
        ok(call(
            writer,
            &token,
            "POST",
            &format!("secret/data/s{i}"),
            Some(json!({"data": {"v": "one"}})),
        )
        .await);
        // Written on one host, read on the other at once.
        let body = ok(call(other, &token, "GET", &format!("secret/data/s{i}"), None).await);
        assert_eq!(body["data"]["data"]["v"], "one");
        ok(call(
            other,
            &token,
            "POST",
            "sys/sync/destinations/aws-sm/ha/associations/set",
            Some(json!({"mount": "secret", "secret_name": format!("s{i}")})),
        )
        .await);
    }
    for i in 0..N {
        assert!(at_moto(&sm, &format!("s{i}"), "one").await, "s{i}");
    }
    assert_eq!(
        provider_calls(&proxy.url()).await,
        N,
        "one write per association"
    );

    // Changes through both hosts: host a's loops push them (those made through b wake them
    // across hosts), one write per change.
    clear_provider_calls(&proxy.url()).await;
    for i in 0..N {
        ok(call(
            &hosts[i % 2],
            &token,
            "POST",
            &format!("secret/data/s{i}"),
            Some(json!({"data": {"v": "two"}})),
        )
        .await);
    }
    eventually("every change reaches moto", Duration::from_secs(60), || {
        all_at_moto(sm.clone(), N, "two")
    })
    .await;
    eventually(
        "every association shows SYNCED on both hosts",
        Duration::from_secs(30),
        || {
            let (hosts, token) = (hosts.clone(), token.clone());
            async move {
                for url in &hosts {
                    let (_, body) = call(
                        url,
                        &token,
                        "GET",
                        "sys/sync/destinations/aws-sm/ha/associations",
                        None,
                    )
                    .await;
                    let statuses: Vec<String> = body["data"]["associated_secrets"]
                        .as_object()
                        .map(|m| {
                            m.values()
                                .filter_map(|a| a["sync_status"].as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    if statuses.len() != N || statuses.iter().any(|s| s != "SYNCED") {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;
    assert_eq!(
        provider_calls(&proxy.url()).await,
        N,
        "one write per change"
    );

    // kill -9 of the lease holder while changes made through the other host are in flight:
    // host b takes the leases over after the ttl and finishes every sync.
    for i in 0..N {
        ok(call(
            &b.url,
            &token,
            "POST",
            &format!("secret/data/s{i}"),
            Some(json!({"data": {"v": "three"}})),
        )
        .await);
    }
    let a_url = a.url.clone();
    a.stop();
    let killed = std::time::Instant::now();
    eventually(
        "host b finishes every sync",
        Duration::from_secs(60),
        || all_at_moto(sm.clone(), N, "three"),
    )
    .await;
    // A figure for the record (ttl 2 s), not an assertion.
    eprintln!(
        "failover: every sync finished {:?} after kill -9 of the lease holder",
        killed.elapsed()
    );
    assert_eq!(
        shard_holders(&b.url).await,
        vec![(0, b.url.clone()), (1, b.url.clone())]
    );

    // The killed host restarts and rejoins: it serves, and leaves b its leases.
    let a2 = server_with("ha-a2", &config, &logs, &aws_env);
    let body = ok(call(&a2.url, &token, "GET", "secret/data/s0", None).await);
    assert_eq!(body["data"]["data"]["v"], "three");
    assert_eq!(
        shard_holders(&a2.url).await,
        vec![(0, b.url.clone()), (1, b.url.clone())]
    );
    assert!(
        shard_holders(&a2.url)
            .await
            .iter()
            .all(|(_, h)| *h != a_url)
    );

    // `sync run --once` next to a running host: the shards are that host's; it says so.
    let (ok_run, out) = kvsync(
        &["sync", "run", "--once", "--config", &config_arg],
        &aws_env,
    );
    assert!(ok_run, "{out}");
    assert!(out.contains("Shard 0: handled by host"), "{out}");
    assert!(out.contains(&b.url), "{out}");

    // A clean stop (SIGTERM) releases the leases: a2 takes them well before a ttl would
    // pass, and a change through b's old peer syncs.
    let status = Command::new("kill")
        .args(["-TERM", &b.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually("host a2 holds both shards", Duration::from_secs(30), || {
        let url = a2.url.clone();
        async move {
            shard_holders(&url)
                .await
                .iter()
                .filter(|(_, h)| *h == url)
                .count()
                == 2
        }
    })
    .await;
    ok(call(
        &a2.url,
        &token,
        "POST",
        "secret/data/s1",
        Some(json!({"data": {"v": "four"}})),
    )
    .await);
    eventually(
        "a change through the rejoined host syncs",
        Duration::from_secs(30),
        || {
            let sm = sm.clone();
            async move { at_moto(&sm, "s1", "four").await }
        },
    )
    .await;
    drop((a2, b, proxy, moto));
    for log in std::fs::read_dir(&logs).unwrap() {
        let text = std::fs::read_to_string(log.unwrap().path()).unwrap();
        assert!(!text.contains(PASSWORD), "the password in a log");
    }
}
