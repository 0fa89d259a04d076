//! The sync worker against the real engine component: a KV write queues work
//! and its effects name the destination to wake for; the woken worker pushes it to an `in-mem`
//! destination within moments; `drain` does the same without a worker.
#![expect(
    clippy::unwrap_used,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvsync::auth::{Caller, Token};
use kvsync::runtime::{self, SyncDue};
use kvsync::server::{EngineOptions, Server};
use kvsync::worker::{self, DrainProgress, SyncConfig};
use serde_json::Value;

fn root() -> Caller {
    Caller {
        token: Token::new("root".into()),
        accessor: "acc".into(),
        display_name: "root".into(),
        policies: vec!["root".into()],
        path: "auth/token/root".into(),
        creation_time: 0,
    }
}

struct Env {
    server: Server,
}

impl Env {
    async fn new() -> Self {
        let engine = EngineOptions {
            cache_dir: kvsync::env::Env::from_process().cache_dir,
            ..EngineOptions::default()
        };
        let env = Env {
            server: Server::in_memory(&engine, quick()).await.unwrap(),
        };
        env.ok(
            "POST",
            "sys/mounts/secret",
            r#"{"type":"kv","options":{"version":"2"}}"#,
        )
        .await;
        env.ok("POST", "sys/sync/destinations/in-mem/demo", "{}")
            .await;
        env.write("v1").await;
        env.ok(
            "POST",
            "sys/sync/destinations/in-mem/demo/associations/set",
            r#"{"mount":"secret","secret_name":"app/db"}"#,
        )
        .await;
        env
    }

    async fn call(&self, method: &str, path: &str, body: &str) -> runtime::Outcome {
        self.server
            .call(method, path, body.as_bytes(), Some(root()))
            .await
            .unwrap()
    }

    async fn ok(&self, method: &str, path: &str, body: &str) -> runtime::Outcome {
        let out = self.call(method, path, body).await;
        assert!(
            out.response.status < 300,
            "{method} {path}: {} {}",
            out.response.status,
            String::from_utf8_lossy(&out.response.body)
        );
        out
    }

    /// Writes the secret; true when its effects say sync work became due at
    /// the destination.
    async fn write(&self, password: &str) -> bool {
        let body = format!(r#"{{"data":{{"password":"{password}"}}}}"#);
        let out = self.ok("POST", "secret/data/app/db", &body).await;
        match out.effects.sync_due {
            SyncDue::Destinations(d) => d == ["in-mem/demo"],
            SyncDue::None | SyncDue::All => false,
        }
    }

    /// What the destination holds, as text.
    async fn objects(&self) -> String {
        let out = self
            .ok("GET", "sys/sync/destinations/in-mem/demo/objects", "")
            .await;
        assert!(matches!(out.effects.sync_due, SyncDue::None));
        let body: Value = serde_json::from_slice(&out.response.body).unwrap();
        body.pointer("/data/objects")
            .unwrap_or(&Value::Null)
            .to_string()
    }

    async fn wait_for_object(&self, needle: &str, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.objects().await.contains(needle) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "{needle} not synced within {within:?}: {}",
                self.objects().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn quick() -> SyncConfig {
    SyncConfig {
        workers: 2,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(1),
        // Long: the test passes only if the wake-up, not a timer, runs the work.
        reconcile_interval: Duration::from_secs(600),
        coalesce_window: Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_write_wakes_the_worker_and_syncs_within_moments() {
    let env = Env::new().await;
    let worker = env.server.start_worker();
    env.wait_for_object("v1", Duration::from_secs(5)).await;
    // Let the loops finish their first runs and go to sleep.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let due = env.write("v2").await;
    assert!(due, "a KV write of an associated secret asks for a wake-up");
    env.server.sync_wake().notify_waiters();
    let took = env.wait_for_object("v2", Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(2), "synced after {took:?}");
    let started = Instant::now();
    worker.stop(worker::SHUTDOWN_GRACE).await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_runs_due_work_without_a_worker() {
    let env = Env::new().await;
    env.write("v3").await;
    let progress = Arc::new(DrainProgress::default());
    let report = env
        .server
        .drain(Duration::ZERO, progress.clone())
        .await
        .unwrap();
    assert!(report.processed >= 1, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.next_due_ms, None, "{report:?}");
    assert_eq!(progress.totals(), (report.processed, report.failed));
    assert!(env.objects().await.contains("v3"));
    // Nothing left: a second drain processes nothing.
    let again = env
        .server
        .drain(Duration::ZERO, Arc::new(DrainProgress::default()))
        .await
        .unwrap();
    assert_eq!(again.processed, 0, "{again:?}");
}
