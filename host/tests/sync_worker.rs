//! The sync worker against the real engine component: a KV write queues work
//! and its effects name the destination to wake for; the woken worker pushes it to an `in-mem`
//! destination, and stopping ends its idle loops without cancelling anything; `drain` does the
//! same work without a worker.
//!
//! No assertion here measures time. The worker's reconciliation interval is ten minutes
//! ([`quick`]), so an idle loop left alone sleeps that long: a change that lands at all, within
//! the bounded polling below, was pushed by a woken loop, and a stop that reports
//! [`Stopped::Drained`] ended the loops by their stop signal, not by cancellation.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::sync::Arc;
use std::time::Duration;

use kvsync::auth::{Caller, Token};
use kvsync::runtime::{self, SyncDue};
use kvsync::server::{EngineOptions, Server};
use kvsync::worker::{self, DrainProgress, Stopped, SyncConfig};
use serde_json::Value;

fn root() -> Caller {
    Caller {
        token: Token::new("root".into()),
        accessor: "acc".into(),
        display_name: "root".into(),
        policies: vec!["root".into()],
        path: "auth/token/root".into(),
        creation_time: 0,
        namespace_id: "root".into(),
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

    /// Polls the destination until it holds `needle`. The bound (count and,
    /// through the pause, time) only turns a lost wake-up into a clear failure
    /// instead of a hang; it is far below the reconciliation interval, so it
    /// decides nothing about speed.
    async fn wait_for_object(&self, needle: &str) {
        for _ in 0..POLLS {
            if self.objects().await.contains(needle) {
                return;
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
        panic!(
            "{needle} never reached the destination in {POLLS} polls {POLL_PAUSE:?} apart, \
             though nothing but a wake-up could have synced it before the reconciliation, \
             {RECONCILE_INTERVAL:?} away: {}",
            self.objects().await
        );
    }
}

/// The reconciliation interval, which is also the longest an idle loop
/// sleeps: long, so that only a wake-up can run work within the test.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(600);
/// Bounds of [`Env::wait_for_object`]: 1,500 polls 20 ms apart, at least 30 s
/// in all, well inside [`RECONCILE_INTERVAL`].
const POLLS: u32 = 1_500;
const POLL_PAUSE: Duration = Duration::from_millis(20);

fn quick() -> SyncConfig {
    SyncConfig {
        workers: 2,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(1),
        reconcile_interval: RECONCILE_INTERVAL,
        coalesce_window: Duration::from_secs(1),
        ..SyncConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_write_wakes_the_sleeping_worker_which_syncs_it() {
    let env = Env::new().await;
    let worker = env
        .server
        .start_worker(kvsync::ha::HostInfo::this_process(String::new()));
    env.wait_for_object("v1").await;
    // Let the loops finish their first runs and go to sleep (were one still
    // running, the wake-up would rerun it: the outcome is the same).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let due = env.write("v2").await;
    assert!(due, "a KV write of an associated secret asks for a wake-up");
    // What the HTTP front does with the write's effects.
    env.server.sync_wake().notify_waiters();
    env.wait_for_object("v2").await;
    // Idle loops end on the stop signal; were they deaf to it, they would sleep
    // on (RECONCILE_INTERVAL) and be cancelled when the grace period ran out.
    assert_eq!(
        worker.stop(worker::SHUTDOWN_GRACE).await,
        Stopped::Drained,
        "idle sync loops must end when told to stop, not be cancelled"
    );
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
