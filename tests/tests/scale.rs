//! No size cliff: work over a whole data set runs in bounded slices, so it
//! completes at any size with a flat guest memory per call. Each test seeds
//! a large installation host-side (`kvsync_tests::scale`) and runs the real
//! engine component over it.
//!
//! CI runs 5,000 (five slices of 1,000 per destination; a debug build on
//! two cores needs about a minute); the 100,000 variants are `#[ignore]`d
//! for time: `cargo test --release -p kvsync-tests --test scale -- --ignored`.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::time::Instant;

use kvsync_tests::scale::Installation;
use serde_json::Value;

/// The largest linear memory a background call (reconciliation, purge,
/// mount disable, force delete) may end with, whatever the size.
const BACKGROUND_BOUND: usize = 8 << 20;
/// The largest linear memory a LIST (or the read of a destination's
/// associations) may end with: its answer holds every key (Vault's shape),
/// written as text a page at a time: about 100 bytes per key at 100,000 for
/// the LIST of associations, twice the ~170 bytes of each association's
/// entry for the destination's (the text, and the envelope around it).
const LIST_BOUND: usize = 48 << 20;

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Reconciliation of `n` unchanged associations, the LISTs (KV's with and
/// without `exclude_deleted`) and the read of a destination's associations,
/// a force delete and a purge of destinations of `n` associations each.
async fn destinations_at(n: usize) {
    let inst = Installation::new().unwrap();
    let started = Instant::now();
    inst.seed(n, &["d", "f"]).await.unwrap();
    eprintln!("seeded in {:?}", started.elapsed());
    let started = Instant::now();
    assert_eq!(inst.count("sync/associations/").await.unwrap(), 2 * n);
    inst.rt.take_peak_guest_memory();

    // Reconciliation of unchanged associations: nothing queued, the pass done.
    let report = inst.drain().await.unwrap();
    assert_eq!((report.reconciled, report.failed), (0, 0));
    assert_eq!(inst.count("sync/jobs/").await.unwrap(), 0);
    assert_eq!(inst.count("sync/outbox/").await.unwrap(), 0);
    let reconcile = inst.rt.take_peak_guest_memory();
    eprintln!("reconciled in {:?}", started.elapsed());
    let started = Instant::now();

    // The LISTs and the destination's associations answer with every key.
    let mut list = 0;
    let mut peak = |what: &str| {
        let m = inst.rt.take_peak_guest_memory();
        eprintln!("{what}: largest guest memory {}", mib(m));
        list = list.max(m);
    };
    let body = inst
        .ok("LIST", "sys/sync/associations", Value::Null)
        .await
        .unwrap();
    assert_eq!(body["data"]["total_associations"], 2 * n);
    assert_eq!(body["data"]["keys"].as_array().unwrap().len(), n);
    peak("LIST sys/sync/associations");
    for query in ["", "?exclude_deleted=true"] {
        let body = inst
            .ok("LIST", &format!("secret/metadata/{query}"), Value::Null)
            .await
            .unwrap();
        assert_eq!(body["data"]["keys"].as_array().unwrap().len(), n, "{query}");
        peak(&format!("LIST secret/metadata/{query}"));
    }
    let body = inst
        .ok(
            "GET",
            "sys/sync/destinations/in-mem/d/associations",
            Value::Null,
        )
        .await
        .unwrap();
    let secrets = body["data"]["associated_secrets"].as_object().unwrap();
    assert_eq!(secrets.len(), n);
    assert!(secrets.values().all(|s| s["sync_status"] == "SYNCED"));
    peak("GET sys/sync/destinations/in-mem/d/associations");
    drop(body);
    eprintln!("listed in {:?}", started.elapsed());
    let started = Instant::now();

    // Force delete: everything of `f` is gone when the request returns.
    inst.ok(
        "DELETE",
        "sys/sync/destinations/in-mem/f?force_delete=true",
        Value::Null,
    )
    .await
    .unwrap();
    assert_eq!(inst.count("sync/associations/in-mem/f/").await.unwrap(), 0);
    assert_eq!(inst.count("sync/claims/in-mem/f/").await.unwrap(), 0);
    eprintln!("force-deleted in {:?}", started.elapsed());
    let started = Instant::now();
    // Purge: the request queues a slice, the worker the rest, and the
    // destination goes with its last association.
    inst.ok(
        "DELETE",
        "sys/sync/destinations/in-mem/d?purge=true",
        Value::Null,
    )
    .await
    .unwrap();
    let report = inst.drain().await.unwrap();
    assert_eq!(report.failed, 0);
    assert_eq!(inst.count("sync/associations/").await.unwrap(), 0);
    assert_eq!(inst.count("sync/jobs/").await.unwrap(), 0);
    assert_eq!(inst.count("sync/outbox/").await.unwrap(), 0);
    let (status, _) = inst
        .call("GET", "sys/sync/destinations/in-mem/d", Value::Null)
        .await
        .unwrap();
    assert_eq!(status, 404);
    let deletes = inst.rt.take_peak_guest_memory();
    eprintln!("purged in {:?}", started.elapsed());

    // A secret's current version deleted: the KV LIST leaves it out when asked to.
    inst.ok("DELETE", "secret/data/s000001", Value::Null)
        .await
        .unwrap();
    let body = inst
        .ok("LIST", "secret/metadata/?exclude_deleted=true", Value::Null)
        .await
        .unwrap();
    let keys = body["data"]["keys"].as_array().unwrap();
    assert_eq!(keys.len(), n - 1);
    assert!(!keys.iter().any(|k| k == "s000001"));
    let list = list.max(inst.rt.take_peak_guest_memory());

    eprintln!(
        "{n} associations per destination: largest guest memory of a call: reconcile {}, LISTs {}, force delete and purge {}",
        mib(reconcile),
        mib(list),
        mib(deletes)
    );
    assert!(
        reconcile <= BACKGROUND_BOUND,
        "reconcile: {}",
        mib(reconcile)
    );
    assert!(deletes <= BACKGROUND_BOUND, "deletes: {}", mib(deletes));
    assert!(list <= LIST_BOUND, "LISTs: {}", mib(list));
}

/// Disabling a mount of `n` secrets, each associated: its data is deleted
/// and every association unsynced and dropped.
async fn mount_at(n: usize) {
    let inst = Installation::new().unwrap();
    inst.seed(n, &["d"]).await.unwrap();
    inst.rt.take_peak_guest_memory();
    let started = Instant::now();
    inst.ok("DELETE", "sys/mounts/secret", Value::Null)
        .await
        .unwrap();
    assert_eq!(inst.count("logical/").await.unwrap(), 0);
    let report = inst.drain().await.unwrap();
    assert_eq!(report.failed, 0);
    assert_eq!(inst.count("sync/associations/").await.unwrap(), 0);
    assert_eq!(inst.count("sync/by-secret/").await.unwrap(), 0);
    assert_eq!(inst.count("sync/jobs/").await.unwrap(), 0);
    let peak = inst.rt.take_peak_guest_memory();
    eprintln!(
        "a mount of {n} secrets: disabled and unsynced in {:?}; largest guest memory of a call: {}",
        started.elapsed(),
        mib(peak)
    );
    assert!(peak <= BACKGROUND_BOUND, "mount disable: {}", mib(peak));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_of_5k_associations() {
    destinations_at(5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_of_5k_secrets() {
    mount_at(5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes (about 15 in a debug build): run with --release -- --ignored"]
async fn destinations_of_100k_associations() {
    destinations_at(100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes (about 15 in a debug build): run with --release -- --ignored"]
async fn a_mount_of_100k_secrets() {
    mount_at(100_000).await;
}
