//! The real `kvsync` binary on PostgreSQL storage: `operator init` (once: a second is refused),
//! start, KV write and read, `kill -9` and restart, read again; a second host on the same
//! database reads what the first wrote; a database that was never initialized is refused with
//! advice; the connection's password appears in no output.
//!
//! The binary is `$KVSYNC_BIN`, else `target/debug/kvsync` beside this test (`tests/run.sh`
//! builds it first).
#![expect(
    clippy::unwrap_used,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kvsync_tests::bench::procs::{ADDRESS_LINE, Proc, Spec};
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
    let spec = Spec::new(
        kvsync_bin(),
        &["server", "--config", &config.to_string_lossy()],
    )
    .env("KVSYNC_LOG", "info");
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
    let b = server("b", &config, &logs);
    assert_eq!(read(b.url.clone()).await, "s3cr3t-e2e");
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
