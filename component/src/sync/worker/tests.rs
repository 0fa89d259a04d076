//! The outbox, the worker and reconciliation through the full router, with
//! in-memory fakes.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::connector::SyncError;
use crate::effects::Effects;
use crate::env::{Env, Fakes};
use crate::storage::{Condition, Entry, MemStorage, Op, Page, Storage, StorageError, Tx};
use crate::sync::associations::Association;
use crate::sync::destinations::{Destination, Granularity, Networking};
use crate::sync::keys;
use crate::sync::outbox::{self, EntryId, OutboxEntry, OutboxOp, QUEUE_FULL};
use crate::sync::reconcile;
use crate::sys::mounts::MountTable;
use crate::time;

use super::*;

/// The router, the worker and reconciliation over one set of fakes.
struct T {
    f: Fakes,
    settings: Settings,
    /// The accessor of `secret/` (kept after the mount is disabled).
    accessor: RefCell<String>,
}

/// A response: status, decoded body, and the request's effects.
struct Resp {
    status: u16,
    body: Value,
    effects: Effects,
}

impl Resp {
    fn sync_due(&self) -> bool {
        !self.effects.sync_due.is_none()
    }
}

fn call_on(env: &Env, method: &str, path: &str, body: Value) -> Resp {
    let out = crate::testing::send_outcome(env, method, path, &body);
    Resp {
        status: out.response.status,
        body: crate::testing::json_body(&out.response),
        effects: out.effects,
    }
}

impl T {
    /// KV-v2 at `secret/`, fast backoff settings.
    fn new() -> T {
        let t = T {
            f: Fakes::default(),
            settings: Settings {
                backoff_base_ms: 10_000,
                backoff_cap_ms: 1_000_000,
                // Off, unless a test turns it on: runs are not kept waiting.
                coalesce_window_ms: 0,
            },
            accessor: RefCell::new(String::new()),
        };
        t.ok("POST", "sys/mounts/secret", json!({"type": "kv-v2"}));
        *t.accessor.borrow_mut() = crate::testing::accessor(&t.f.storage, "secret/");
        t
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Resp {
        call_on(&self.f.env(), method, path, body)
    }

    /// A call that must succeed (200 or 204).
    fn ok(&self, method: &str, path: &str, body: Value) -> Resp {
        let r = self.call(method, path, body);
        assert!(
            r.status == 200 || r.status == 204,
            "{method} {path}: {} {}",
            r.status,
            r.body
        );
        r
    }

    fn accessor(&self) -> String {
        self.accessor.borrow().clone()
    }

    fn dest(&self, name: &str, granularity: Granularity) {
        let d = Destination {
            kind: "in-mem".into(),
            name: name.into(),
            connection_details: Map::new(),
            granularity,
            secret_name_template: None,
            custom_tags: BTreeMap::new(),
            networking: Networking::default(),
            purge_initiated_at: None,
            purge_error: None,
        };
        let mut tx = Tx::new(&self.f.storage);
        d.save(&mut tx).unwrap();
        tx.commit().unwrap();
    }

    fn put(&self, path: &str, data: Value) -> Resp {
        let r = self.call(
            "POST",
            &format!("secret/data/{path}"),
            json!({ "data": data }),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r
    }

    fn set(&self, dest: &str, secret: &str) -> Resp {
        self.ok(
            "POST",
            &format!("sys/sync/destinations/in-mem/{dest}/associations/set"),
            json!({"mount": "secret", "secret_name": secret}),
        )
    }

    fn drain(&self) -> RunReport {
        run(&self.f.env(), 0, 1, 1000, &self.settings)
    }

    fn reconcile(&self) -> u32 {
        reconcile::reconcile(&self.f.env())
    }

    /// Objects of an in-mem destination: name → value.
    fn objects(&self, dest: &str) -> BTreeMap<String, String> {
        self.f
            .connector
            .objects("in-mem", dest)
            .into_iter()
            .map(|(k, v)| (k, v.value))
            .collect()
    }

    fn calls(&self) -> usize {
        *self.f.connector.calls.borrow()
    }

    fn fail(&self, e: Option<SyncError>) {
        *self.f.connector.fail_with.borrow_mut() = e;
    }

    fn id(&self, dest: &str, secret: &str) -> EntryId {
        EntryId {
            kind: "in-mem".into(),
            name: dest.into(),
            accessor: self.accessor(),
            secret_name: secret.into(),
        }
    }

    /// The stored outbox entry of an association.
    fn entry(&self, dest: &str, secret: &str) -> Option<OutboxEntry> {
        let mut tx = Tx::new(&self.f.storage);
        outbox::load(&mut tx, &self.id(dest, secret)).unwrap()
    }

    fn entries(&self) -> usize {
        self.f
            .storage
            .keys()
            .iter()
            .filter(|k| k.starts_with(keys::OUTBOX))
            .count()
    }

    /// The stored entry count.
    fn count(&self) -> u64 {
        outbox::count(&mut Tx::new(&self.f.storage)).unwrap()
    }

    fn record(&self, dest: &str, secret: &str) -> Option<Association> {
        let mut tx = Tx::new(&self.f.storage);
        self.id(dest, secret).load_association(&mut tx).unwrap()
    }

    /// The statuses of an association's rows.
    fn statuses(&self, dest: &str, secret: &str) -> Vec<&'static str> {
        self.record(dest, secret)
            .unwrap()
            .rows
            .values()
            .map(|r| r.sync_status.as_str())
            .collect()
    }

    fn edit_record(&self, dest: &str, secret: &str, edit: impl FnOnce(&mut Association)) {
        let mut tx = Tx::new(&self.f.storage);
        let mut record = self
            .id(dest, secret)
            .load_association(&mut tx)
            .unwrap()
            .unwrap();
        edit(&mut record);
        record.save(&mut tx).unwrap();
        tx.commit().unwrap();
    }

    fn edit_entry(&self, dest: &str, secret: &str, edit: impl FnOnce(&mut OutboxEntry)) {
        let mut tx = Tx::new(&self.f.storage);
        let id = self.id(dest, secret);
        let mut entry = outbox::load(&mut tx, &id).unwrap().unwrap();
        edit(&mut entry);
        tx.put_json(id.key(), &entry).unwrap();
        tx.commit().unwrap();
    }

    /// Drops an outbox entry by hand (as if it had been lost).
    fn lose_entry(&self, dest: &str, secret: &str) {
        let mut tx = Tx::new(&self.f.storage);
        assert!(outbox::dequeue(&mut tx, &self.id(dest, secret)).unwrap());
        tx.commit().unwrap();
    }

    fn config(&self, body: Value) {
        self.ok("PATCH", "sys/sync/config", body);
    }

    fn name(&self, secret: &str) -> String {
        format!("vault/{}/{secret}", self.accessor())
    }
}

fn external(retry_after_ms: Option<u64>) -> SyncError {
    SyncError::ExternalService {
        message: "provider unavailable".into(),
        retry_after_ms,
    }
}

fn now_ms() -> u64 {
    u64::try_from(time::now()).unwrap() / 1_000_000
}

// ---------------------------------------------------------------- scheduling

#[test]
fn next_due_grows_exponentially_up_to_the_cap() {
    let s = Settings {
        backoff_base_ms: 100,
        backoff_cap_ms: 1_000,
        coalesce_window_ms: 0,
    };
    let ms = 1_000_000;
    // Equal jitter: [backoff/2, backoff]; jitter 0 gives the low end, a jitter
    // of backoff/2 the high end.
    assert_eq!(next_due(0, 0, None, &s, 0), 50 * ms);
    assert_eq!(next_due(0, 0, None, &s, 50), 100 * ms);
    assert_eq!(next_due(0, 1, None, &s, 100), 200 * ms);
    assert_eq!(next_due(0, 2, None, &s, 200), 400 * ms);
    assert_eq!(next_due(0, 3, None, &s, 400), 800 * ms);
    // Capped; huge attempt counts do not overflow.
    assert_eq!(next_due(0, 4, None, &s, 500), 1_000 * ms);
    assert_eq!(next_due(0, 200, None, &s, 500), 1_000 * ms);
    assert_eq!(next_due(0, u32::MAX, None, &s, 500), 1_000 * ms);
    // The jitter stays within the window whatever it is.
    for jitter in [0, 1, 7, 99, 12_345, u64::MAX] {
        let due = next_due(0, 1, None, &s, jitter);
        assert!((100 * ms..=200 * ms).contains(&due), "{jitter}: {due}");
    }
    // Relative to now.
    assert_eq!(next_due(5, 0, None, &s, 0), 5 + 50 * ms);
}

#[test]
fn next_due_honours_retry_after() {
    let s = Settings {
        backoff_base_ms: 100,
        backoff_cap_ms: 1_000,
        coalesce_window_ms: 0,
    };
    let ms = 1_000_000;
    // The provider's hint wins when it is longer, even beyond the cap...
    assert_eq!(next_due(0, 0, Some(30_000), &s, 0), 30_000 * ms);
    // ...and the backoff when the hint is shorter.
    assert_eq!(next_due(0, 3, Some(10), &s, 400), 800 * ms);
    // An absurd hint is capped at a day.
    assert_eq!(next_due(0, 0, Some(u64::MAX), &s, 0), 86_400_000 * ms);
    // Zero settings: due now, no division by zero.
    let zero = Settings {
        backoff_base_ms: 0,
        backoff_cap_ms: 0,
        coalesce_window_ms: 0,
    };
    assert_eq!(next_due(7, 5, None, &zero, 3), 7);
    assert_eq!(next_due(i64::MAX - 1, 5, Some(1), &s, 3), i64::MAX);
}

#[test]
fn shards_are_stable_and_cover_every_destination() {
    // FNV-1a of "in-mem/a": a fixed function, not a per-process hash.
    assert_eq!(shard_of("in-mem", "a", 1), 0);
    assert_eq!(shard_of("in-mem", "a", 0), 0);
    let first = shard_of("in-mem", "box", 7);
    for _ in 0..3 {
        assert_eq!(shard_of("in-mem", "box", 7), first);
    }
    let mut seen = [0u32; 4];
    for i in 0..200 {
        seen[shard_of("aws-sm", &format!("d{i}"), 4) as usize] += 1;
    }
    assert!(seen.iter().all(|n| *n > 20), "{seen:?}");
}

// ------------------------------------------------------------------ triggers

#[test]
fn every_kv_change_queues_a_sync_of_every_association() {
    let t = T::new();
    t.put("app", json!({"v": "1"}));
    t.dest("d1", Granularity::SecretPath);
    t.dest("d2", Granularity::SecretPath);
    t.set("d1", "app");
    t.set("d2", "app");
    assert_eq!(t.entries(), 0);
    let name = t.name("app");
    let steps: Vec<(&str, &str, Value, Option<&str>)> = vec![
        (
            "POST",
            "secret/data/app",
            json!({"data": {"v": "2"}}),
            Some(r#"{"v":"2"}"#),
        ),
        (
            "PATCH",
            "secret/data/app",
            json!({"data": {"w": "3"}}),
            Some(r#"{"v":"2","w":"3"}"#),
        ),
        ("DELETE", "secret/data/app", Value::Null, None),
        // The patch made version 3, the current one.
        (
            "POST",
            "secret/undelete/app",
            json!({"versions": [3]}),
            Some(r#"{"v":"2","w":"3"}"#),
        ),
        ("POST", "secret/delete/app", json!({"versions": [3]}), None),
        (
            "POST",
            "secret/undelete/app",
            json!({"versions": [3]}),
            Some(r#"{"v":"2","w":"3"}"#),
        ),
        ("POST", "secret/destroy/app", json!({"versions": [3]}), None),
        (
            "POST",
            "secret/data/app",
            json!({"data": {"v": "4"}}),
            Some(r#"{"v":"4"}"#),
        ),
        ("DELETE", "secret/metadata/app", Value::Null, None),
    ];
    for (method, path, body, expected) in steps {
        let r = t.ok(method, path, body.clone());
        assert!(r.sync_due(), "{method} {path}");
        for dest in ["d1", "d2"] {
            let entry = t
                .entry(dest, "app")
                .unwrap_or_else(|| panic!("{method} {path}"));
            assert_eq!(entry.op, OutboxOp::Sync);
            assert_eq!(entry.attempts, 0);
            assert_eq!(t.statuses(dest, "app"), vec!["PENDING"], "{method} {path}");
        }
        assert_eq!(t.count(), 2);
        let report = t.drain();
        assert_eq!((report.processed, report.failed), (2, 0), "{method} {path}");
        assert_eq!(report.next_due_ms, None);
        assert_eq!((t.entries(), t.count()), (0, 0));
        for dest in ["d1", "d2"] {
            let objects = t.objects(dest);
            match expected {
                Some(value) => {
                    assert_eq!(
                        objects.get(&name).map(String::as_str),
                        Some(value),
                        "{method} {path}"
                    );
                    assert_eq!(t.statuses(dest, "app"), vec!["SYNCED"]);
                }
                None => {
                    assert!(objects.is_empty(), "{method} {path}");
                    // The external object is gone but the association stays,
                    // UNSYNCED: a later write of the secret syncs it again.
                    assert_eq!(t.statuses(dest, "app"), vec!["UNSYNCED"]);
                }
            }
        }
    }
}

#[test]
fn changes_a_destination_cannot_see_queue_nothing() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.put("app", json!({"v": "2"}));
    t.set("d1", "app");
    for (method, path, body) in [
        (
            "POST",
            "secret/metadata/app",
            json!({"custom_metadata": {"a": "b"}}),
        ),
        ("PATCH", "secret/metadata/app", json!({"max_versions": 5})),
        // An older version.
        ("POST", "secret/delete/app", json!({"versions": [1]})),
        ("POST", "secret/undelete/app", json!({"versions": [1]})),
        ("POST", "secret/destroy/app", json!({"versions": [1]})),
    ] {
        let r = t.ok(method, path, body);
        assert_eq!(t.entries(), 0, "{method} {path}");
        assert!(!r.sync_due(), "{method} {path}");
    }
    t.ok("DELETE", "secret/data/app", Value::Null);
    assert_eq!(t.entries(), 1);
    t.drain();
    // The current version is already deleted: destroying it changes nothing.
    t.ok("POST", "secret/destroy/app", json!({"versions": [2]}));
    t.ok("DELETE", "secret/data/app", Value::Null);
    assert_eq!(t.entries(), 0);
}

#[test]
fn secrets_without_associations_queue_nothing() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("linked", json!({"v": "1"}));
    t.set("d1", "linked");
    let r = t.put("alone", json!({"v": "1"}));
    assert!(!r.sync_due());
    assert_eq!(r.body["warnings"], Value::Null);
    t.ok("DELETE", "secret/data/alone", Value::Null);
    t.ok("DELETE", "secret/metadata/alone", Value::Null);
    assert_eq!((t.entries(), t.count()), (0, 0));
    assert!(
        !t.f.storage
            .keys()
            .iter()
            .any(|k| k.contains("alone") && k.starts_with("sync/"))
    );
    // A secret whose name starts like an associated one is another secret.
    t.put("linked2", json!({"v": "1"}));
    t.put("linked/sub", json!({"v": "1"}));
    assert_eq!(t.entries(), 0);
}

#[test]
fn the_wake_up_header_marks_requests_that_queued_work() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    // Reads and writes that queue nothing do not carry it.
    assert!(!t.set("d1", "app").sync_due());
    assert!(!t.call("GET", "secret/data/app", Value::Null).sync_due());
    assert!(t.put("app", json!({"v": "2"})).sync_due());
    // A failed request carries nothing, and queued nothing.
    t.drain();
    let r = t.call(
        "POST",
        "secret/data/app",
        json!({"data": {"v": "3"}, "options": {"cas": 9}}),
    );
    assert_eq!(r.status, 400);
    assert!(!r.sync_due());
    assert_eq!(t.entries(), 0);
    // An inline set that fails in a retryable way queues its retry.
    t.put("app", json!({"v": "3"}));
    t.drain();
    t.put("app", json!({"v": "4"}));
    t.set("d1", "app");
    t.fail(Some(external(None)));
    t.put("app", json!({"v": "5"}));
    t.lose_entry("d1", "app");
    let r = t.set("d1", "app");
    assert!(r.sync_due());
    assert_eq!(t.entry("d1", "app").unwrap().attempts, 1);
}

/// Every commit's keys, in order.
struct Recording {
    inner: MemStorage,
    commits: RefCell<Vec<Vec<String>>>,
}

impl Storage for Recording {
    fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.inner.get(key)
    }
    fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        self.inner.list(prefix, after, delimiter, limit)
    }
    fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        let keys = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, .. } | Op::Delete { key } => key.clone(),
            })
            .collect();
        let version = self.inner.commit(conditions, ops)?;
        self.commits.borrow_mut().push(keys);
        Ok(version)
    }
}

#[test]
fn a_kv_write_commits_its_outbox_entries_in_the_same_batch() {
    let storage = Recording {
        inner: MemStorage::new(),
        commits: RefCell::new(Vec::new()),
    };
    let f = Fakes::default();
    let env = Env {
        storage: &storage,
        ..f.env()
    };
    assert_eq!(
        call_on(&env, "POST", "sys/mounts/secret", json!({"type": "kv-v2"})).status,
        204
    );
    assert_eq!(
        call_on(&env, "POST", "secret/data/app", json!({"data": {"v": "1"}})).status,
        200
    );
    for d in ["d1", "d2"] {
        assert_eq!(
            call_on(
                &env,
                "POST",
                &format!("sys/sync/destinations/in-mem/{d}"),
                json!({})
            )
            .status,
            200
        );
        let r = call_on(
            &env,
            "POST",
            &format!("sys/sync/destinations/in-mem/{d}/associations/set"),
            json!({"mount": "secret", "secret_name": "app"}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for (method, path, body) in [
        ("POST", "secret/data/app", json!({"data": {"v": "2"}})),
        ("PATCH", "secret/data/app", json!({"data": {"v": "3"}})),
        ("DELETE", "secret/data/app", Value::Null),
        ("POST", "secret/undelete/app", json!({"versions": [3]})),
        ("DELETE", "secret/metadata/app", Value::Null),
    ] {
        storage.commits.borrow_mut().clear();
        assert!(call_on(&env, method, path, body).status < 300);
        // One atomic batch holds the KV change, both entries, the count and the rows.
        let commits = storage.commits.borrow();
        assert_eq!(commits.len(), 1, "{method} {path}: {commits:?}");
        let keys = &commits[0];
        assert!(keys.iter().any(|k| k.contains("/metadata/app")), "{keys:?}");
        for d in ["d1", "d2"] {
            let entry = keys
                .iter()
                .find(|k| k.starts_with(&keys::outbox_of("in-mem", d)))
                .unwrap_or_else(|| panic!("{method} {path}: no entry in {keys:?}"));
            // Before any run, the entry is in storage.
            assert!(storage.get(entry).unwrap().is_some());
            // The first change also turns the rows PENDING; later ones find them so
            // and leave the record alone (a worker pushing meanwhile can commit).
            let rows_written = keys
                .iter()
                .any(|k| k.starts_with(&keys::associations_of("in-mem", d)));
            assert_eq!(
                rows_written,
                path == "secret/data/app" && method == "POST",
                "{method} {path}"
            );
        }
        // The first change added the entries (and counted them); later ones coalesce.
        if path == "secret/data/app" && method == "POST" {
            assert!(keys.iter().any(|k| outbox::is_count_key(k)));
        }
    }
    assert_eq!(outbox::count(&mut Tx::new(&storage)).unwrap(), 2);
}

// ------------------------------------------------------------------- the run

#[test]
fn coalescing_many_writes_costs_one_push_of_the_last_value() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"i": 0}));
    t.set("d1", "app");
    let before = t.calls();
    for i in 1..=100 {
        t.put("app", json!({ "i": i }));
    }
    assert_eq!((t.entries(), t.count()), (1, 1));
    let report = t.drain();
    assert_eq!(report.processed, 1);
    assert_eq!(
        t.calls(),
        before + 1,
        "one provider write for 100 KV writes"
    );
    assert_eq!(t.objects("d1")[&t.name("app")], r#"{"i":100}"#);
    let record = t.record("d1", "app").unwrap();
    assert_eq!(record.rows[""].version, 101);
    // Nothing changed: a re-sync costs no provider call.
    t.put("app", json!({"i": 100}));
    t.drain();
    assert_eq!(t.calls(), before + 1);
    assert_eq!(t.statuses("d1", "app"), vec!["SYNCED"]);
}

#[test]
fn a_secret_changed_right_after_a_write_waits_a_step_then_the_window() {
    const MS: i64 = 1_000_000;
    let mut t = T::new();
    t.settings.coalesce_window_ms = 60_000;
    t.dest("d1", Granularity::SecretPath);
    t.dest("d2", Granularity::SecretPath);
    t.put("app", json!({"i": 0}));
    t.set("d1", "app");
    let pushed_at = t.record("d1", "app").unwrap().pushed_at;
    assert!(pushed_at > 0, "the inline first sync wrote");
    let before = t.calls();

    // A change right behind the write waits 50 ms after it.
    assert!(t.put("app", json!({"i": 1})).sync_due());
    let report = t.drain();
    assert_eq!((report.processed, t.calls()), (0, before));
    let due = t.entry("d1", "app").unwrap().due_at;
    assert_eq!(due, pushed_at + 50 * MS);
    assert_eq!(report.next_due_ms, Some(nanos_to_ms(due)));
    assert_eq!(t.statuses("d1", "app"), vec!["PENDING"]);
    // Further changes join it, and do not wake the worker for nothing.
    assert!(!t.put("app", json!({"i": 2})).sync_due());
    assert_eq!(t.entry("d1", "app").unwrap().due_at, due);
    // Coalescing is per association: another secret, quiet for a while,
    // is not held back by this burst.
    t.put("other", json!({"x": 1}));
    t.set("d2", "other");
    t.edit_record("d2", "other", |r| r.pushed_at -= 60_000 * MS);
    assert!(t.put("other", json!({"x": 2})).sync_due());
    let before = t.calls();

    // 50 ms later: one write, of the last value.
    t.edit_record("d1", "app", |r| r.pushed_at -= 50 * MS);
    make_all_due(&t.f.storage);
    assert_eq!(t.drain().processed, 2);
    assert_eq!(t.calls(), before + 2);
    assert_eq!(t.objects("d1")[&t.name("app")], r#"{"i":2}"#);
    assert_eq!(t.record("d1", "app").unwrap().burst, 1);

    // The next change within the window waits the whole window.
    t.put("app", json!({"i": 3}));
    assert_eq!(t.drain().processed, 0);
    let pushed_at = t.record("d1", "app").unwrap().pushed_at;
    assert_eq!(
        t.entry("d1", "app").unwrap().due_at,
        pushed_at + 60_000 * MS
    );
    // After a quiet window it runs, and the burst starts over.
    t.edit_record("d1", "app", |r| r.pushed_at -= 60_000 * MS);
    make_all_due(&t.f.storage);
    assert_eq!(t.drain().processed, 1);
    assert_eq!(t.objects("d1")[&t.name("app")], r#"{"i":3}"#);
    assert_eq!(t.record("d1", "app").unwrap().burst, 0);
    assert_eq!(t.statuses("d1", "app"), vec!["SYNCED"]);

    // Retries are not held back by coalescing: their backoff rules.
    assert!(t.put("app", json!({"i": 4})).sync_due());
    t.edit_record("d1", "app", |r| r.pushed_at = time::now());
    t.edit_entry("d1", "app", |e| e.attempts = 1);
    assert_eq!(t.drain().processed, 1);
    assert_eq!(t.objects("d1")[&t.name("app")], r#"{"i":4}"#);
}

#[test]
fn coalescing_step_is_short_once_then_the_window() {
    assert_eq!(coalesce_step(0, 1_000), 50);
    assert_eq!(coalesce_step(1, 1_000), 1_000);
    assert_eq!(coalesce_step(u32::MAX, 1_000), 1_000);
    assert_eq!(coalesce_step(0, 20), 20);
    assert_eq!(coalesce_step(0, 0), 0);
}

#[test]
fn secret_key_objects_follow_the_keys() {
    let t = T::new();
    t.dest("k1", Granularity::SecretKey);
    t.put("app", json!({"a": "1", "b": "2"}));
    t.set("k1", "app");
    let base = t.name("app");
    t.put("app", json!({"b": "3", "c": "4"}));
    let before = t.calls();
    t.drain();
    assert_eq!(
        t.objects("k1"),
        BTreeMap::from([
            (format!("{base}/b"), "3".to_string()),
            (format!("{base}/c"), "4".to_string()),
        ])
    );
    // Push b, push c, delete a.
    assert_eq!(t.calls(), before + 3);
    assert_eq!(
        t.record("k1", "app")
            .unwrap()
            .rows
            .keys()
            .collect::<Vec<_>>(),
        vec!["b", "c"]
    );
    // One changed key costs one push.
    t.put("app", json!({"b": "3", "c": "5"}));
    t.drain();
    assert_eq!(t.calls(), before + 4);
}

#[test]
fn retryable_failures_back_off_and_honour_retry_after() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    t.put("app", json!({"v": "2"}));

    // The provider asks to come back in a minute.
    t.fail(Some(external(Some(60_000))));
    let start = time::now();
    let report = t.drain();
    assert_eq!((report.processed, report.failed), (1, 1));
    let entry = t.entry("d1", "app").unwrap();
    assert_eq!(entry.attempts, 1);
    assert!(entry.due_at >= start + 60_000 * 1_000_000);
    assert_eq!(
        report.next_due_ms,
        Some(u64::try_from(entry.due_at).unwrap().div_ceil(1_000_000))
    );
    let record = t.record("d1", "app").unwrap();
    assert_eq!(
        record.rows[""].sync_status.as_str(),
        "EXTERNAL_SERVICE_ERROR"
    );
    assert!(
        record.rows[""]
            .error
            .as_deref()
            .unwrap()
            .contains("retry after 60s")
    );
    // Not due: a run does nothing, and says when to come back.
    let calls = t.calls();
    let again = t.drain();
    assert_eq!(again.processed, 0);
    assert_eq!(again.next_due_ms, report.next_due_ms);
    assert_eq!(t.calls(), calls);

    // Without a hint, the delay grows: [base/2, base] then [base, 2*base].
    t.fail(Some(external(None)));
    let base = i64::try_from(t.settings.backoff_base_ms).unwrap() * 1_000_000;
    for attempt in 1..=3 {
        make_all_due(&t.f.storage);
        let before = time::now();
        assert_eq!(t.drain().failed, 1);
        let after = time::now();
        let entry = t.entry("d1", "app").unwrap();
        assert_eq!(entry.attempts, attempt + 1);
        let backoff = base << attempt;
        assert!(entry.due_at >= before + backoff / 2, "attempt {attempt}");
        assert!(entry.due_at <= after + backoff, "attempt {attempt}");
    }
    // A new change does not reset a backoff: it waits for the scheduled retry.
    let due = t.entry("d1", "app").unwrap().due_at;
    t.put("app", json!({"v": "3"}));
    let entry = t.entry("d1", "app").unwrap();
    assert_eq!((entry.due_at, entry.attempts), (due, 4));
    assert_eq!(t.count(), 1);

    // The provider is back: the retry pushes the current value.
    t.fail(None);
    make_all_due(&t.f.storage);
    let report = t.drain();
    assert_eq!(
        (report.processed, report.failed, report.next_due_ms),
        (1, 0, None)
    );
    assert_eq!(t.objects("d1")[&t.name("app")], r#"{"v":"3"}"#);
    assert_eq!(t.statuses("d1", "app"), vec!["SYNCED"]);
    assert_eq!((t.entries(), t.count()), (0, 0));
}

#[test]
fn internal_errors_are_retried_too() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    t.put("app", json!({"v": "2"}));
    t.fail(Some(SyncError::Internal("host failed".into())));
    assert_eq!(t.drain().failed, 1);
    assert_eq!(t.entry("d1", "app").unwrap().attempts, 1);
    assert_eq!(t.statuses("d1", "app"), vec!["INTERNAL_VAULT_ERROR"]);
}

#[test]
fn client_side_errors_drop_the_entry_until_something_changes() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    t.put("app", json!({"v": "2"}));
    t.fail(Some(SyncError::ClientSide("access denied".into())));
    let report = t.drain();
    assert_eq!(
        (report.processed, report.failed, report.next_due_ms),
        (1, 1, None)
    );
    assert_eq!((t.entries(), t.count()), (0, 0));
    let record = t.record("d1", "app").unwrap();
    assert_eq!(record.rows[""].sync_status.as_str(), "CLIENT_SIDE_ERROR");
    assert_eq!(record.rows[""].error.as_deref(), Some("access denied"));
    // Reconciliation does not retry it either.
    assert_eq!(t.reconcile(), 0);
    // A change queues it again; once fixed, it lands.
    t.fail(None);
    t.put("app", json!({"v": "3"}));
    t.drain();
    assert_eq!(t.objects("d1")[&t.name("app")], r#"{"v":"3"}"#);
}

#[test]
fn a_bad_template_found_by_the_worker_is_a_client_side_error() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    // The stored template breaks (it cannot through the API).
    t.edit_record("d1", "app", |r| r.template = "{{ .Nope }}".into());
    t.put("app", json!({"v": "2"}));
    let report = t.drain();
    assert_eq!((report.processed, report.failed), (1, 1));
    assert_eq!(t.entries(), 0);
    let record = t.record("d1", "app").unwrap();
    assert_eq!(record.rows[""].sync_status.as_str(), "CLIENT_SIDE_ERROR");
    assert!(
        record.rows[""]
            .error
            .as_deref()
            .unwrap()
            .contains("template")
    );
}

#[test]
fn runs_take_due_entries_in_order_up_to_the_limit() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    for s in ["a", "b", "c"] {
        t.put(s, json!({"v": "1"}));
        t.set("d1", s);
    }
    for s in ["c", "a", "b"] {
        t.put(s, json!({"v": "2"}));
    }
    let report = run(&t.f.env(), 0, 1, 1, &t.settings);
    assert_eq!(report.processed, 1);
    // More is due: come back at once (the due time is rounded up to the ms).
    assert!(report.next_due_ms.unwrap() <= now_ms() + 1);
    // The earliest change went first.
    assert!(t.entry("d1", "c").is_none());
    assert!(t.entry("d1", "a").is_some() && t.entry("d1", "b").is_some());
    assert_eq!(run(&t.f.env(), 0, 1, 0, &t.settings).processed, 0);
    let report = run(&t.f.env(), 0, 1, 10, &t.settings);
    assert_eq!((report.processed, report.next_due_ms), (2, None));
}

#[test]
fn shards_split_the_outbox_by_destination() {
    let t = T::new();
    // Two destinations in different shards of 2.
    let names: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
    let zero = names
        .iter()
        .find(|n| shard_of("in-mem", n, 2) == 0)
        .unwrap();
    let one = names
        .iter()
        .find(|n| shard_of("in-mem", n, 2) == 1)
        .unwrap();
    t.put("app", json!({"v": "1"}));
    for d in [zero, one] {
        t.dest(d, Granularity::SecretPath);
        t.set(d, "app");
    }
    t.put("app", json!({"v": "2"}));
    let report = run(&t.f.env(), 1, 2, 10, &t.settings);
    assert_eq!((report.processed, report.next_due_ms), (1, None));
    assert!(t.entry(one, "app").is_none());
    assert!(t.entry(zero, "app").is_some());
    assert_eq!(t.objects(one)[&t.name("app")], r#"{"v":"2"}"#);
    assert_eq!(t.objects(zero)[&t.name("app")], r#"{"v":"1"}"#);
    assert_eq!(run(&t.f.env(), 0, 2, 10, &t.settings).processed, 1);
    assert_eq!(t.entries(), 0);
}

/// Storage where another writer bumps the entry count right before the
/// `n`-th commit (as concurrent KV writes queuing new work would, in the
/// count's part the run changes too).
struct Busy {
    inner: MemStorage,
    commits: RefCell<usize>,
    interfere_at: RefCell<usize>,
    /// When set, the other writer rewrites this key (unchanged value, new
    /// version) instead of bumping the count.
    touch: RefCell<Option<String>>,
}

impl Storage for Busy {
    fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.inner.get(key)
    }
    fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        self.inner.list(prefix, after, delimiter, limit)
    }
    fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        *self.commits.borrow_mut() += 1;
        if *self.commits.borrow() == *self.interfere_at.borrow() {
            let mut other = Tx::new(&self.inner);
            match self.touch.borrow().as_deref() {
                Some(key) => {
                    let value = other.get(key).unwrap().unwrap();
                    other.put(key, value);
                }
                None => {
                    // In the count's part of the entry the run works on
                    // (the only one).
                    let rel = other.list(keys::OUTBOX, None).unwrap();
                    let id = EntryId::parse(rel.first().unwrap()).unwrap();
                    outbox::adjust_count(&mut other, &id, 5).unwrap();
                }
            }
            other.commit().unwrap();
        }
        self.inner.commit(conditions, ops)
    }
}

/// The secret `app` synced to `d1`, then changed; the worker runs it while
/// another writer commits right before the run's outcome commit (bumping the
/// entry count, or rewriting `touch`). `check` gets the storage, the fakes,
/// the run's report and the provider calls the run made.
fn run_interfered(touch: Option<String>, check: impl FnOnce(&Busy, &Fakes, RunReport, usize)) {
    let storage = Busy {
        inner: MemStorage::new(),
        commits: RefCell::new(0),
        interfere_at: RefCell::new(usize::MAX),
        touch: RefCell::new(touch),
    };
    let f = Fakes::default();
    let env = Env {
        storage: &storage,
        ..f.env()
    };
    call_on(&env, "POST", "sys/mounts/secret", json!({"type": "kv-v2"}));
    call_on(&env, "POST", "sys/sync/destinations/in-mem/d1", json!({}));
    call_on(&env, "POST", "secret/data/app", json!({"data": {"v": "1"}}));
    let r = call_on(
        &env,
        "POST",
        "sys/sync/destinations/in-mem/d1/associations/set",
        json!({"mount": "secret", "secret_name": "app"}),
    );
    assert_eq!(r.status, 200);
    call_on(&env, "POST", "secret/data/app", json!({"data": {"v": "2"}}));
    let calls = *f.connector.calls.borrow();
    // The worker claims the entry, then commits its outcome.
    *storage.interfere_at.borrow_mut() = *storage.commits.borrow() + 2;
    let report = run(&env, 0, 1, 10, &no_coalescing());
    let made = *f.connector.calls.borrow() - calls;
    check(&storage, &f, report, made);
}

fn no_coalescing() -> Settings {
    Settings {
        coalesce_window_ms: 0,
        ..Settings::default()
    }
}

#[test]
fn a_concurrent_count_change_does_not_repeat_provider_calls() {
    run_interfered(None, |storage, f, report, made| {
        assert_eq!((report.processed, report.failed), (1, 0));
        assert_eq!(made, 1, "pushed once");
        // 1 entry + 5 from the other writer - 1 done.
        assert_eq!(outbox::count(&mut Tx::new(storage)).unwrap(), 5);
        assert_eq!(f.connector.objects("in-mem", "d1").len(), 1);
    });
}

/// Sequential KV writes of secrets with associations while another host's
/// requests queue changes and its workers finish syncs between every read
/// and commit of theirs (with a backlog in the outbox): every write answers
/// 200. With one shared counter, every run of every write conflicted with
/// the other host's commits, and the write failed with 503 after its runs.
#[test]
fn writes_succeed_while_another_host_finishes_syncs_before_every_commit() {
    const SECRETS: usize = 200;
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.dest("d2", Granularity::SecretPath);
    let secrets: Vec<String> = (0..SECRETS).map(|i| format!("s{i:03}")).collect();
    for s in &secrets {
        t.put(s, json!({"v": "0"}));
        t.set("d1", s);
    }
    let churn: Vec<String> = (0..8).map(|i| format!("other{i}")).collect();
    for s in &churn {
        t.put(s, json!({"v": "0"}));
        t.set("d2", s);
    }
    // A backlog, so the outbox is never empty: changes for a third
    // destination, in backoff for an hour.
    let backlog = ["late0", "late1", "late2"];
    t.dest("d3", Granularity::SecretPath);
    for s in backlog {
        t.put(s, json!({"v": "0"}));
        t.set("d3", s);
        t.put(s, json!({"v": "1"}));
        let id = t.id("d3", s);
        let mut tx = Tx::new(&t.f.storage);
        let old = outbox::load(&mut tx, &id).unwrap().unwrap();
        let later = OutboxEntry {
            attempts: 1,
            due_at: time::now() + 3_600_000_000_000,
            ..old.clone()
        };
        outbox::store(&mut tx, &id, Some(&old), &later).unwrap();
        tx.commit().unwrap();
    }
    // Right before every commit of the writes, the other host writes one of
    // its own synced secrets (a queued change, counted) and runs each of two
    // shard loops (every due sync finished, counted out).
    let other = t.f.env();
    let settings = no_coalescing();
    let raced = std::cell::Cell::new(0);
    let mut racing = crate::testing::Counting::new(&t.f.storage);
    racing.before_commit = Some(Box::new(|| {
        let i = raced.get();
        raced.set(i + 1);
        let secret = &churn[i % churn.len()];
        let r = call_on(
            &other,
            "POST",
            &format!("secret/data/{secret}"),
            json!({"data": {"v": i}}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        for shard in 0..2 {
            run(&other, shard, 2, 1000, &settings);
        }
    }));
    let env = Env {
        storage: &racing,
        ..t.f.env()
    };
    for s in &secrets {
        let r = call_on(
            &env,
            "POST",
            &format!("secret/data/{s}"),
            json!({"data": {"v": "1"}}),
        );
        assert_eq!(r.status, 200, "{s}: {}", r.body);
    }
    assert!(racing.commits.get() >= SECRETS);
    while t.drain().processed > 0 {}
    let objects = t.objects("d1");
    for s in &secrets {
        assert_eq!(objects[&t.name(s)], r#"{"v":"1"}"#, "{s}");
    }
    assert_eq!(
        (t.entries(), t.count()),
        (backlog.len(), backlog.len() as u64)
    );
}

/// A store written by a version that kept the count in one key: the count is
/// read with it, and the first change of the count folds it into a part.
#[test]
fn an_older_single_count_is_kept_and_folded_into_a_part() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    for s in ["a", "b"] {
        t.put(s, json!({"v": "1"}));
        t.set("d1", s);
        t.put(s, json!({"v": "2"}));
    }
    assert_eq!((t.entries(), t.count()), (2, 2));
    // As the older version stores it: the whole count, unsigned, in one key.
    let mut tx = Tx::new(&t.f.storage);
    for key in t.f.storage.keys() {
        if outbox::is_count_key(&key) {
            tx.delete(key);
        }
    }
    tx.put_json(keys::OUTBOX_COUNT_UNSPLIT, &2u64).unwrap();
    tx.commit().unwrap();
    assert_eq!(t.count(), 2);
    // One entry done: the single key moves into that entry's part (2 - 1).
    let report = run(&t.f.env(), 0, 1, 1, &t.settings);
    assert_eq!(report.processed, 1);
    assert_eq!((t.entries(), t.count()), (1, 1));
    assert!(
        t.f.storage
            .get(keys::OUTBOX_COUNT_UNSPLIT)
            .unwrap()
            .is_none()
    );
    t.put("c", json!({"v": "1"}));
    t.set("d1", "c");
    t.put("c", json!({"v": "2"}));
    assert_eq!((t.entries(), t.count()), (2, 2));
    t.drain();
    assert_eq!((t.entries(), t.count()), (0, 0));
    // Every part is back at zero, or the parts cancel out.
    let mut tx = Tx::new(&t.f.storage);
    assert_eq!(outbox::count_exact(&mut tx).unwrap(), 0);
}

// ------------------------------------------------------------------- config

#[test]
fn disabled_sync_keeps_work_pending_until_enabled() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    t.config(json!({"disabled": true}));
    let calls = t.calls();
    t.put("app", json!({"v": "2"}));
    // A set makes no provider call either: the association waits, PENDING.
    t.put("new", json!({"v": "1"}));
    let r = t.set("d1", "new");
    let acc = t.accessor();
    assert_eq!(
        r.body["data"]["associated_secrets"][format!("{acc}/new")]["sync_status"],
        "PENDING"
    );
    let report = t.drain();
    assert_eq!(report, RunReport::default());
    assert_eq!(t.calls(), calls);
    assert_eq!(t.statuses("d1", "app"), vec!["PENDING"]);
    assert_eq!(t.statuses("d1", "new"), vec!["PENDING"]);
    assert_eq!(t.entries(), 2);
    // Removing while disabled is queued too.
    t.put("gone", json!({"v": "1"}));
    t.config(json!({"disabled": false}));
    t.set("d1", "gone");
    t.config(json!({"disabled": true}));
    let r = t.ok(
        "POST",
        "sys/sync/destinations/in-mem/d1/associations/remove",
        json!({"mount": "secret", "secret_name": "gone"}),
    );
    assert!(r.sync_due());
    assert_eq!(t.statuses("d1", "gone"), vec!["PENDING"]);
    assert!(t.objects("d1").contains_key(&t.name("gone")));

    t.config(json!({"disabled": false}));
    let report = t.drain();
    assert_eq!((report.processed, report.failed), (3, 0));
    assert_eq!(
        t.objects("d1"),
        BTreeMap::from([
            (t.name("app"), r#"{"v":"2"}"#.to_string()),
            (t.name("new"), r#"{"v":"1"}"#.to_string()),
        ])
    );
    assert!(t.record("d1", "gone").is_none());
    assert_eq!(t.statuses("d1", "app"), vec!["SYNCED"]);
}

#[test]
fn a_full_queue_refuses_new_work_but_not_the_write() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    for s in ["a", "b"] {
        t.put(s, json!({"v": "1"}));
        t.set("d1", s);
    }
    t.config(json!({"queue_capacity": 1}));
    assert!(t.put("a", json!({"v": "2"})).sync_due());
    // The queue is full: the write succeeds, with a warning, and b's row says so.
    let r = t.put("b", json!({"v": "2"}));
    assert_eq!(r.body["data"]["version"], 2);
    let warning = r.body["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with("sync queue full: 1 association(s)"),
        "{warning}"
    );
    assert!(!r.sync_due());
    assert!(t.entry("d1", "b").is_none());
    let record = t.record("d1", "b").unwrap();
    assert_eq!(record.rows[""].sync_status.as_str(), "INTERNAL_VAULT_ERROR");
    assert_eq!(record.rows[""].error.as_deref(), Some(QUEUE_FULL));
    let (_, body) = {
        let r = t.call(
            "GET",
            "sys/sync/destinations/in-mem/d1/associations",
            Value::Null,
        );
        (r.status, r.body)
    };
    let acc = t.accessor();
    assert_eq!(
        body["data"]["associated_secrets"][format!("{acc}/b")]["error"],
        QUEUE_FULL
    );
    // Coalescing into a pending entry is no new work.
    let r = t.put("a", json!({"v": "3"}));
    assert_eq!(r.body["warnings"], Value::Null);
    assert_eq!(t.count(), 1);
    // Reconciliation finds no room yet.
    assert_eq!(t.reconcile(), 0);
    // Once drained, reconciliation queues b, and the worker lands it.
    t.drain();
    assert_eq!(t.reconcile(), 1);
    assert_eq!(t.statuses("d1", "b"), vec!["PENDING"]);
    t.drain();
    assert_eq!(t.objects("d1")[&t.name("b")], r#"{"v":"2"}"#);
    assert_eq!(t.objects("d1")[&t.name("a")], r#"{"v":"3"}"#);
    assert_eq!(t.reconcile(), 0);
}

// ----------------------------------------------------- set, remove, delete

#[test]
fn set_with_a_retryable_failure_queues_a_retry() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.fail(Some(external(Some(5_000))));
    let start = time::now();
    let r = t.set("d1", "app");
    let acc = t.accessor();
    // The answer shows the inline attempt's status; the worker retries later.
    assert_eq!(
        r.body["data"]["associated_secrets"][format!("{acc}/app")]["sync_status"],
        "EXTERNAL_SERVICE_ERROR"
    );
    let entry = t.entry("d1", "app").unwrap();
    assert_eq!((entry.op, entry.attempts), (OutboxOp::Sync, 1));
    assert!(entry.due_at >= start + 5_000 * 1_000_000);
    assert_eq!(t.statuses("d1", "app"), vec!["EXTERNAL_SERVICE_ERROR"]);
    t.fail(None);
    make_all_due(&t.f.storage);
    t.drain();
    assert_eq!(t.statuses("d1", "app"), vec!["SYNCED"]);
    assert_eq!((t.entries(), t.count()), (0, 0));
}

#[test]
fn set_and_remove_settle_pending_work() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    t.put("app", json!({"v": "2"}));
    assert_eq!(t.entries(), 1);
    // A set converges now: the pending entry is done.
    t.set("d1", "app");
    assert_eq!((t.entries(), t.count()), (0, 0));
    t.put("app", json!({"v": "3"}));
    // A remove drops the association and its entry.
    t.ok(
        "POST",
        "sys/sync/destinations/in-mem/d1/associations/remove",
        json!({"mount": "secret", "secret_name": "app"}),
    );
    assert_eq!((t.entries(), t.count()), (0, 0));
    assert!(t.objects("d1").is_empty());
    // A remove that fails keeps the association and the worker finishes it.
    t.set("d1", "app");
    t.fail(Some(SyncError::ClientSide("denied".into())));
    t.ok(
        "POST",
        "sys/sync/destinations/in-mem/d1/associations/remove",
        json!({"mount": "secret", "secret_name": "app"}),
    );
    let entry = t.entry("d1", "app").unwrap();
    assert_eq!(entry.op, OutboxOp::UnsyncDrop);
    assert_eq!(t.statuses("d1", "app"), vec!["CLIENT_SIDE_ERROR"]);
    // A KV change does not turn it back into a sync.
    t.put("app", json!({"v": "4"}));
    assert_eq!(t.entry("d1", "app").unwrap().op, OutboxOp::UnsyncDrop);
    t.fail(None);
    make_all_due(&t.f.storage);
    t.drain();
    assert!(t.record("d1", "app").is_none());
    assert!(t.objects("d1").is_empty());
}

#[test]
fn force_delete_drops_the_pending_work() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    t.put("app", json!({"v": "2"}));
    assert_eq!(t.entries(), 1);
    t.ok(
        "DELETE",
        "sys/sync/destinations/in-mem/d1?force_delete=true",
        Value::Null,
    );
    assert_eq!((t.entries(), t.count()), (0, 0));
    assert_eq!(t.drain(), RunReport::default());
    // Orphaned, as it was.
    assert_eq!(t.objects("d1")[&t.name("app")], r#"{"v":"1"}"#);
}

#[test]
fn a_purge_outranks_later_changes() {
    let t = T::new();
    t.dest("d1", Granularity::SecretKey);
    t.put("app", json!({"a": "1", "b": "2"}));
    t.put("db", json!({"a": "1"}));
    t.set("d1", "app");
    t.set("d1", "db");
    let r = t.ok(
        "DELETE",
        "sys/sync/destinations/in-mem/d1?purge=true",
        Value::Null,
    );
    assert_eq!(r.status, 204);
    assert!(r.sync_due());
    assert_eq!(t.entry("d1", "app").unwrap().op, OutboxOp::Purge);
    // A KV write during the purge leaves the purge as it is.
    t.put("app", json!({"a": "9"}));
    assert_eq!(t.entry("d1", "app").unwrap().op, OutboxOp::Purge);
    // The first association fails: purge_error, retried with backoff.
    t.fail(Some(external(None)));
    let report = run(&t.f.env(), 0, 1, 1, &t.settings);
    assert_eq!(report.failed, 1);
    t.fail(None);
    let (_, body) = {
        let r = t.call("GET", "sys/sync/destinations/in-mem/d1", Value::Null);
        (r.status, r.body)
    };
    assert!(
        body["data"]["purge_error"]
            .as_str()
            .unwrap()
            .contains("provider unavailable")
    );
    assert_eq!(t.drain().processed, 1);
    assert_eq!(
        t.call("GET", "sys/sync/destinations/in-mem/d1", Value::Null)
            .status,
        200
    );
    make_all_due(&t.f.storage);
    assert_eq!(t.drain().processed, 1);
    assert_eq!(
        t.call("GET", "sys/sync/destinations/in-mem/d1", Value::Null)
            .status,
        404
    );
    assert!(t.objects("d1").is_empty());
    assert!(!t.f.storage.keys().iter().any(|k| k.starts_with("sync/")));
}

// ------------------------------------------------------------ mount disable

#[test]
fn disabling_a_mount_unsyncs_and_drops_its_associations() {
    let t = T::new();
    t.ok("POST", "sys/mounts/other", json!({"type": "kv-v2"}));
    t.dest("d1", Granularity::SecretPath);
    t.dest("k1", Granularity::SecretKey);
    t.put("app", json!({"a": "1", "b": "2"}));
    t.put("db", json!({"a": "1"}));
    t.ok("POST", "other/data/keep", json!({"data": {"a": "1"}}));
    for d in ["d1", "k1"] {
        t.set(d, "app");
        t.set(d, "db");
        t.ok(
            "POST",
            &format!("sys/sync/destinations/in-mem/{d}/associations/set"),
            json!({"mount": "other", "secret_name": "keep"}),
        );
    }
    assert_eq!(t.objects("d1").len(), 3);
    assert_eq!(t.objects("k1").len(), 4);
    // A pending change is replaced by the unsync.
    t.put("app", json!({"a": "9"}));
    let accessor = t.accessor();
    let r = t.ok("DELETE", "sys/mounts/secret", Value::Null);
    assert!(r.sync_due());
    assert_eq!(t.entries(), 4);
    let entry = t.entry("d1", "app").unwrap();
    assert_eq!(entry.op, OutboxOp::UnsyncDrop);
    // The associations still show, PENDING, with their mount path.
    let body = t
        .call(
            "GET",
            "sys/sync/destinations/in-mem/k1/associations",
            Value::Null,
        )
        .body;
    let secrets = body["data"]["associated_secrets"].as_object().unwrap();
    assert_eq!(
        secrets[&format!("{accessor}/app/a")]["sync_status"],
        "PENDING"
    );
    assert_eq!(secrets[&format!("{accessor}/app/a")]["mount"], "secret");

    let report = t.drain();
    assert_eq!((report.processed, report.failed), (4, 0));
    assert_eq!(t.objects("d1").len(), 1);
    assert_eq!(t.objects("k1").len(), 1);
    let leftover: Vec<String> =
        t.f.storage
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("sync/") && k.contains(&accessor))
            .collect();
    assert!(leftover.is_empty(), "{leftover:?}");
    assert_eq!(t.count(), 0);
}

// ------------------------------------------------------------ reconciliation

#[test]
fn reconcile_queues_what_is_behind() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    for s in ["fine", "old", "gone", "lost"] {
        t.put(s, json!({"v": "1"}));
    }
    for s in ["fine", "old", "gone", "lost"] {
        t.set("d1", s);
    }
    assert_eq!(t.reconcile(), 0);

    // A change whose entry was lost: SYNCED rows for an older version.
    t.put("old", json!({"v": "2"}));
    t.lose_entry("d1", "old");
    t.edit_record("d1", "old", |r| {
        r.mark_rows(crate::sync::status::SyncStatus::Synced, None, 1)
    });
    // A version that expired by itself (delete_version_after): unreadable, still SYNCED.
    let mount = {
        let mut tx = Tx::new(&t.f.storage);
        MountTable::load(&mut tx)
            .unwrap()
            .get("secret/")
            .unwrap()
            .clone()
    };
    {
        let mut tx = Tx::new(&t.f.storage);
        let mut kv = crate::kv::record::Kv::new(&mut tx, &mount);
        let mut meta = kv.metadata("gone").unwrap().unwrap();
        meta.versions.get_mut(&1).unwrap().deletion_time = 1;
        kv.put_metadata("gone", &meta).unwrap();
        tx.commit().unwrap();
    }
    // PENDING without an entry.
    t.put("lost", json!({"v": "2"}));
    t.lose_entry("d1", "lost");
    assert_eq!(t.statuses("d1", "lost"), vec!["PENDING"]);
    // A count that drifted.
    {
        let mut tx = Tx::new(&t.f.storage);
        outbox::reset_count(&mut tx, 42).unwrap();
        tx.commit().unwrap();
    }

    assert_eq!(t.reconcile(), 3);
    assert_eq!(t.count(), 3);
    for s in ["old", "gone", "lost"] {
        assert_eq!(t.entry("d1", s).unwrap().op, OutboxOp::Sync, "{s}");
    }
    // Queued entries are not queued twice.
    assert_eq!(t.reconcile(), 0);
    let report = t.drain();
    assert_eq!((report.processed, report.failed), (3, 0));
    assert_eq!(t.objects("d1")[&t.name("old")], r#"{"v":"2"}"#);
    assert_eq!(t.objects("d1")[&t.name("lost")], r#"{"v":"2"}"#);
    assert!(!t.objects("d1").contains_key(&t.name("gone")));
    assert_eq!(t.statuses("d1", "gone"), vec!["UNSYNCED"]);
    // Converged: nothing more to do, and an empty secret-key secret stays put.
    t.dest("k1", Granularity::SecretKey);
    t.put("empty", json!({}));
    t.set("k1", "empty");
    assert_eq!(t.statuses("k1", "empty"), vec!["UNSYNCED"]);
    assert_eq!(t.reconcile(), 0);
    // An association set before its secret existed, whose first write was missed.
    t.set("d1", "never2");
    t.put("never2", json!({"v": "1"}));
    t.lose_entry("d1", "never2");
    t.edit_record("d1", "never2", |r| {
        r.mark_rows(crate::sync::status::SyncStatus::Unsynced, None, 1)
    });
    assert_eq!(t.reconcile(), 1);
    t.drain();
    assert_eq!(t.statuses("d1", "never2"), vec!["SYNCED"]);
}

#[test]
fn reconcile_finishes_disabled_mounts_and_purges() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.dest("d2", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    t.set("d2", "app");
    // d2's purge started, but its entries were lost.
    {
        let mut tx = Tx::new(&t.f.storage);
        let mut d2 = Destination::load(&mut tx, "in-mem", "d2").unwrap().unwrap();
        d2.purge_initiated_at = Some(1);
        d2.save(&mut tx).unwrap();
        tx.commit().unwrap();
    }
    assert_eq!(t.reconcile(), 1);
    assert_eq!(t.entry("d2", "app").unwrap().op, OutboxOp::Purge);
    t.drain();
    assert_eq!(
        t.call("GET", "sys/sync/destinations/in-mem/d2", Value::Null)
            .status,
        404
    );
    assert!(t.objects("d2").is_empty());
    // The mount vanishes from the table without its associations being queued.
    {
        let mut tx = Tx::new(&t.f.storage);
        let mut table = MountTable::load(&mut tx).unwrap();
        table.entries.clear();
        table.save(&mut tx).unwrap();
        tx.commit().unwrap();
    }
    assert_eq!(t.reconcile(), 1);
    let report = t.drain();
    assert_eq!((report.processed, report.failed), (1, 0));
    assert!(t.objects("d1").is_empty());
    assert!(
        !t.f.storage
            .keys()
            .iter()
            .any(|k| k.starts_with(keys::ASSOCIATIONS))
    );
    assert_eq!(t.reconcile(), 0);
}

#[test]
fn secret_names_with_slashes_and_percents_round_trip() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    // The literal name `team/a%2Fb/db`, percent-encoded in the URL.
    let secret = "team/a%2Fb/db";
    let in_url = "team/a%252Fb/db";
    t.put(in_url, json!({"v": "1"}));
    t.set("d1", secret);
    t.put(in_url, json!({"v": "2"}));
    let entry_key = t.id("d1", secret).key();
    assert!(entry_key.ends_with("team%2Fa%252Fb%2Fdb"), "{entry_key}");
    assert!(t.f.storage.get(&entry_key).unwrap().is_some());
    assert_eq!(t.drain().processed, 1);
    let objects = t.objects("d1");
    assert_eq!(
        objects.values().collect::<Vec<_>>(),
        vec![r#"{"v":"2"}"#],
        "{objects:?}"
    );
    assert_eq!(t.statuses("d1", secret), vec!["SYNCED"]);
    assert_eq!(t.reconcile(), 0);
}

impl T {
    /// The due index as `(due_at, entry key)`, checked against the entries:
    /// one index key per entry, at its due time.
    fn check_due_index(&self) {
        let mut tx = Tx::new(&self.f.storage);
        let mut indexed: Vec<(i64, String)> = tx
            .list(keys::DUE, None)
            .unwrap()
            .iter()
            .map(|rel| {
                let mut parts = rel.splitn(3, '/');
                let (kind, name, rest) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                let (at, accessor, secret) = keys::split_due(rest).unwrap();
                (at, keys::outbox(kind, name, &accessor, &secret))
            })
            .collect();
        let mut entries: Vec<(i64, String)> = outbox::all_ids(&mut tx)
            .unwrap()
            .iter()
            .map(|id| (outbox::load(&mut tx, id).unwrap().unwrap().due_at, id.key()))
            .collect();
        indexed.sort();
        entries.sort();
        assert_eq!(indexed, entries);
    }
}

#[test]
fn the_due_index_follows_every_entry() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.dest("d2", Granularity::SecretPath);
    for s in ["a", "b", "c"] {
        t.put(s, json!({"v": "1"}));
        t.set("d1", s);
        t.set("d2", s);
    }
    t.check_due_index();
    // Queued, replaced, failed into backoff, retried, done.
    t.put("a", json!({"v": "2"}));
    t.put("a", json!({"v": "3"}));
    t.put("b", json!({"v": "2"}));
    t.check_due_index();
    t.fail(Some(external(Some(60_000))));
    t.drain();
    t.check_due_index();
    assert_eq!(t.entries(), 4);
    t.fail(None);
    make_all_due(&t.f.storage);
    t.check_due_index();
    t.drain();
    t.check_due_index();
    assert_eq!(t.entries(), 0);
    // Removed associations and deleted destinations take theirs along.
    t.put("c", json!({"v": "2"}));
    t.ok(
        "POST",
        "sys/sync/destinations/in-mem/d1/associations/remove",
        json!({"mount": "secret", "secret_name": "c"}),
    );
    t.check_due_index();
    t.ok(
        "DELETE",
        "sys/sync/destinations/in-mem/d2?force_delete=true",
        Value::Null,
    );
    t.check_due_index();
    t.drain();
    t.check_due_index();
}

#[test]
fn a_lost_index_key_is_restored_by_reconciliation() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    t.put("app", json!({"v": "2"}));
    let entry = t.entry("d1", "app").unwrap();
    let mut tx = Tx::new(&t.f.storage);
    tx.delete(t.id("d1", "app").due_key(entry.due_at));
    tx.commit().unwrap();
    // The worker cannot see it...
    assert_eq!(t.drain().processed, 0);
    assert_eq!(t.entries(), 1);
    // ...until reconciliation puts it back.
    t.reconcile();
    t.check_due_index();
    assert_eq!(t.drain().processed, 1);
    assert_eq!(t.objects("d1")[&t.name("app")], r#"{"v":"2"}"#);
    // An index key whose entry is gone is dropped when met.
    let mut tx = Tx::new(&t.f.storage);
    tx.put(t.id("d1", "ghost").due_key(5), Vec::new());
    tx.commit().unwrap();
    assert_eq!(t.drain().processed, 0);
    t.check_due_index();
}

#[test]
fn a_corrupt_entry_is_repaired_not_retried_at_once() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    t.put("app", json!({"v": "2"}));
    let key = t.id("d1", "app").key();
    let mut tx = Tx::new(&t.f.storage);
    tx.put(key.clone(), b"not json".to_vec());
    tx.commit().unwrap();
    let report = t.drain();
    assert_eq!((report.processed, report.failed), (1, 1));
    // Rescheduled with backoff, the rows say why (without details).
    let entry = t.entry("d1", "app").unwrap();
    assert_eq!(entry.attempts, 1);
    assert!(report.next_due_ms.unwrap() > now_ms());
    let record = t.record("d1", "app").unwrap();
    assert_eq!(record.rows[""].sync_status.as_str(), "INTERNAL_VAULT_ERROR");
    make_all_due(&t.f.storage);
    assert_eq!(t.drain().failed, 0);
    assert_eq!(t.objects("d1")[&t.name("app")], r#"{"v":"2"}"#);
    assert_eq!((t.entries(), t.count()), (0, 0));
}

#[test]
fn entries_of_removed_associations_and_destinations_are_dropped() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    t.put("app", json!({"v": "2"}));
    // The destination record vanished behind the API's back.
    let mut tx = Tx::new(&t.f.storage);
    tx.delete(keys::destination("in-mem", "d1"));
    tx.commit().unwrap();
    let calls = t.calls();
    let report = t.drain();
    assert_eq!((report.processed, report.failed), (1, 0));
    assert_eq!(t.calls(), calls);
    assert!(t.record("d1", "app").is_none());
    assert_eq!((t.entries(), t.count()), (0, 0));
}

// ------------------------------------------------------- entries fail alone

/// A connector whose pushes of one secret kill the run, as a guest that
/// traps or exceeds its limits while syncing it does (the host sees the run
/// fail and nothing of it after that point is committed).
struct Dies<'a> {
    inner: &'a crate::connector::MemConnector,
    secret: &'a str,
}

impl crate::connector::Connector for Dies<'_> {
    fn push(
        &self,
        dest: &crate::connector::DestinationRef,
        secret: &crate::connector::ExternalSecret,
    ) -> Result<(), SyncError> {
        assert!(!secret.name.ends_with(self.secret), "the run dies here");
        self.inner.push(dest, secret)
    }
    fn delete(&self, dest: &crate::connector::DestinationRef, name: &str) -> Result<(), SyncError> {
        self.inner.delete(dest, name)
    }
    fn inspect(
        &self,
        dest: &crate::connector::DestinationRef,
    ) -> Result<Vec<crate::connector::ExternalSecret>, SyncError> {
        self.inner.inspect(dest)
    }
}

/// A run over `connector` that dies (panics) is caught: it returns `None`.
fn run_dying(t: &T, connector: &Dies<'_>) -> Option<RunReport> {
    let env = Env {
        storage: &t.f.storage,
        connector,
        authz: &t.f.authz,
        policies: &t.f.policies,
        tokens: &t.f.tokens,
        keyring: &t.f.keyring,
        namespaces: &crate::namespaces::NoNamespaces,
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&env, 0, 1, 1000, &t.settings)
    }))
    .ok()
}

#[test]
fn an_entry_whose_run_dies_fails_alone_and_backs_off() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    for s in ["big", "small"] {
        t.put(s, json!({"v": "1"}));
        t.set("d1", s);
    }
    // The poisonous entry is first in line.
    t.put("big", json!({"v": "2"}));
    t.put("small", json!({"v": "2"}));
    let dies = Dies {
        inner: &t.f.connector,
        secret: "big",
    };
    assert!(run_dying(&t, &dies).is_none(), "the run dies on big");
    // The next run is not stopped by it: the rest of the shard goes on.
    let report = run_dying(&t, &dies).expect("the next run finishes");
    assert_eq!((report.processed, report.failed), (1, 0));
    assert_eq!(t.objects("d1")[&t.name("small")], r#"{"v":"2"}"#);
    // big waits for its backoff, claimed by the attempt that died.
    let entry = t.entry("d1", "big").unwrap();
    assert!(entry.started_at.is_some());
    assert!(entry.due_at > time::now());
    assert_eq!(
        report.next_due_ms,
        Some(u64::try_from(entry.due_at).unwrap().div_ceil(1_000_000))
    );

    // Due again and dying again: the rows say why, the backoff grows.
    make_all_due(&t.f.storage);
    assert!(run_dying(&t, &dies).is_none());
    let record = t.record("d1", "big").unwrap();
    assert_eq!(record.rows[""].sync_status.as_str(), "INTERNAL_VAULT_ERROR");
    assert_eq!(record.rows[""].error.as_deref(), Some(UNFINISHED));
    assert_eq!(t.entry("d1", "big").unwrap().attempts, 1);

    // Once it can be synced, it is; the run counts the attempt that died.
    make_all_due(&t.f.storage);
    let report = t.drain();
    assert_eq!(
        (report.processed, report.failed, report.next_due_ms),
        (1, 1, None)
    );
    assert_eq!(t.objects("d1")[&t.name("big")], r#"{"v":"2"}"#);
    assert_eq!(t.statuses("d1", "big"), vec!["SYNCED"]);
    assert_eq!((t.entries(), t.count()), (0, 0));
}

#[test]
fn a_change_while_an_entry_is_claimed_runs_next_not_at_the_claimed_retry() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    t.put("app", json!({"v": "2"}));
    let dies = Dies {
        inner: &t.f.connector,
        secret: "app",
    };
    assert!(run_dying(&t, &dies).is_none());
    assert!(t.entry("d1", "app").unwrap().started_at.is_some());
    // A new change replaces the claim: due now, and not taken for an
    // attempt that died.
    t.put("app", json!({"v": "3"}));
    let entry = t.entry("d1", "app").unwrap();
    assert!(
        entry.started_at.is_none() && entry.due_at <= time::now(),
        "{entry:?} {}",
        time::now()
    );
    let report = t.drain();
    assert_eq!((report.processed, report.failed), (1, 0));
    assert_eq!(t.statuses("d1", "app"), vec!["SYNCED"]);
    assert_eq!(t.objects("d1")[&t.name("app")], r#"{"v":"3"}"#);
}

// --------------------------------------------------------------- write-ahead

/// A commit conflict between the provider call and the outcome commit (the
/// destination was written meanwhile): the outcome is merged onto the state
/// as it is now, and the provider is not called again.
#[test]
fn a_conflict_after_the_provider_call_does_not_repeat_it() {
    let touch = keys::destination("in-mem", "d1");
    run_interfered(Some(touch), |storage, f, report, made| {
        assert_eq!((report.processed, report.failed), (1, 0));
        assert_eq!(made, 1, "pushed once");
        // Storage converged: the object, its row, no work left.
        let objects = f.connector.objects("in-mem", "d1");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects.values().next().unwrap().value, r#"{"v":"2"}"#);
        let mut tx = Tx::new(storage);
        assert_eq!(outbox::count(&mut tx).unwrap(), 0);
        assert!(outbox::all_ids(&mut tx).unwrap().is_empty());
        let table = MountTable::load(&mut tx).unwrap();
        let accessor = &table.get("secret/").unwrap().accessor;
        let record = Association::load(&mut tx, "in-mem", "d1", accessor, "app")
            .unwrap()
            .unwrap();
        assert_eq!(record.rows[""].sync_status.as_str(), "SYNCED");
        assert_eq!(record.rows[""].version, 2);
        // Nothing left to push: another run calls nothing.
        let env = Env {
            storage,
            connector: &f.connector,
            authz: &f.authz,
            policies: &f.policies,
            tokens: &f.tokens,
            keyring: &f.keyring,
            namespaces: &crate::namespaces::NoNamespaces,
        };
        let before = *f.connector.calls.borrow();
        assert_eq!(run(&env, 0, 1, 10, &no_coalescing()).processed, 0);
        assert_eq!(*f.connector.calls.borrow(), before);
    });
}

/// The association is `set` again with another template while the worker's
/// push is in flight: the name the worker wrote is not lost, a sync deletes it.
#[test]
fn a_name_written_under_an_old_template_is_cleaned_up_after_a_conflict() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    t.put("app", json!({"v": "1"}));
    t.set("d1", "app");
    t.put("app", json!({"v": "2"}));
    // The run pushes under the old template; before its outcome commits, the
    // destination's template changes and the association is set again
    // (pushing under the new name): simulated by editing the record and
    // conflicting the outcome commit.
    let id = t.id("d1", "app");
    let mut tx = Tx::new(&t.f.storage);
    let mut ours = id.load_association(&mut tx).unwrap().unwrap();
    ours.rows.get_mut("").unwrap().external_name = "old-name".into();
    let claimed_at = 7;
    t.edit_entry("d1", "app", |e| e.started_at = Some(claimed_at));
    ours.save(&mut tx).unwrap();
    outbox::remove(&mut tx, &id, t.entry("d1", "app").as_ref());
    t.edit_record("d1", "app", |r| r.template = "new/{{ .SecretPath }}".into());
    let step = merge_outcome(
        &t.f.env(),
        &id,
        &mut tx,
        claimed_at,
        Step::Done {
            failed: false,
            next: None,
        },
        -1,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        step,
        Step::Done {
            failed: false,
            next: None
        }
    );
    let record = t.record("d1", "app").unwrap();
    assert_eq!(record.stale.get("old-name").map(String::as_str), Some(""));
    // The entry finished (it was ours); the queued sync deletes the old name.
    assert!(t.entry("d1", "app").is_some());
    assert_eq!(t.count(), 1);
}

// ------------------------------------------------------------------- bounds

/// A run whose budget is spent takes no further entry: the rest is reported
/// due now, for the next run.
#[test]
fn a_run_stops_taking_entries_once_its_budget_is_spent() {
    let t = T::new();
    t.dest("d1", Granularity::SecretPath);
    for s in ["a", "b", "c"] {
        t.put(s, json!({"v": "1"}));
        t.set("d1", s);
    }
    for s in ["a", "b", "c"] {
        t.put(s, json!({"v": "2"}));
    }
    let report = run_within(&t.f.env(), 0, 1, 10, &t.settings, 0);
    assert_eq!(report.processed, 1, "the first entry is always taken");
    assert!(report.next_due_ms.unwrap() <= now_ms() + 1);
    assert_eq!(t.entries(), 2);
    let report = run(&t.f.env(), 0, 1, 10, &t.settings);
    assert_eq!((report.processed, report.next_due_ms), (2, None));
}

// ------------------------------------------------------------ sweeps in slices

/// More associations than one slice of a sweep handles.
const MANY: usize = 2_300;

impl T {
    /// `MANY` secrets `s000000`…, each synced to the in-mem destination
    /// `dest`: one made through the API, the others copies of its records.
    fn many(&self, dest: &str) {
        self.dest(dest, Granularity::SecretPath);
        self.put("s000000", json!({"v": "1"}));
        self.set(dest, "s000000");
        let template: Vec<(String, Vec<u8>)> = self
            .f
            .storage
            .keys()
            .into_iter()
            .filter(|k| k.contains("s000000"))
            .map(|k| {
                let value = self.f.storage.get(&k).unwrap().unwrap().value;
                (k, value)
            })
            .collect();
        let mut ops = Vec::new();
        for i in 1..MANY {
            let name = format!("s{i:06}");
            for (key, value) in &template {
                let value = String::from_utf8(value.clone()).unwrap();
                ops.push(Op::Put {
                    key: key.replace("s000000", &name),
                    value: value.replace("s000000", &name).into_bytes(),
                });
            }
        }
        self.f.storage.commit(Vec::new(), ops).unwrap();
    }

    /// The job records of sweeps in progress.
    fn jobs(&self) -> Vec<String> {
        self.f
            .storage
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(crate::sync::jobs::JOBS))
            .collect()
    }

    /// Runs until a run processes nothing; returns how many runs did something.
    fn drain_all(&self) -> usize {
        for runs in 0..100 {
            if self.drain().processed == 0 {
                return runs;
            }
        }
        panic!("the worker did not settle in 100 runs");
    }

    fn associations_of(&self, dest: &str) -> usize {
        let prefix = keys::associations_of("in-mem", dest);
        self.f
            .storage
            .keys()
            .iter()
            .filter(|k| k.starts_with(&prefix))
            .count()
    }
}

#[test]
fn reconciliation_of_many_goes_on_in_the_worker_slice_by_slice() {
    let t = T::new();
    t.many("d1");
    assert_eq!(t.associations_of("d1"), MANY);
    // Nothing is behind: the first step looks at one slice and leaves a job.
    assert_eq!(t.reconcile(), 0);
    assert_eq!(t.jobs(), vec!["sync/jobs/reconcile".to_string()]);
    let runs = t.drain_all();
    assert_eq!(runs, MANY.div_ceil(1_000) - 1, "one step per run");
    assert!(t.jobs().is_empty());
    assert_eq!(t.count(), 0);

    // Rows behind beyond the first slice are queued by later steps and synced.
    for i in [5, 1_500, MANY - 1] {
        let name = format!("s{i:06}");
        t.put(&name, json!({"v": "2"}));
        t.lose_entry("d1", &name);
        t.edit_record("d1", &name, |r| {
            r.mark_rows(crate::sync::status::SyncStatus::Synced, None, 1)
        });
    }
    assert_eq!(t.count(), 0);
    assert_eq!(t.reconcile(), 1);
    t.drain_all();
    for i in [5, 1_500, MANY - 1] {
        let name = format!("s{i:06}");
        assert_eq!(t.objects("d1")[&t.name(&name)], r#"{"v":"2"}"#, "{name}");
        assert_eq!(t.statuses("d1", &name), vec!["SYNCED"]);
    }
    assert!(t.jobs().is_empty());
    assert_eq!(t.count(), 0);
}

#[test]
fn a_recount_over_several_slices_heals_a_drifted_count() {
    let t = T::new();
    t.many("d1");
    // Every association behind: queued over several steps, the count follows.
    t.ok("POST", "sys/sync/config", json!({"disabled": true}));
    for i in 0..MANY {
        t.edit_record("d1", &format!("s{i:06}"), |r| {
            r.mark_rows(crate::sync::status::SyncStatus::Pending, None, 1)
        });
    }
    t.reconcile();
    while !t.jobs().is_empty() {
        t.drain();
    }
    assert_eq!(t.count(), MANY as u64);
    {
        let mut tx = Tx::new(&t.f.storage);
        outbox::reset_count(&mut tx, 7).unwrap();
        tx.commit().unwrap();
    }
    // A pass over an outbox of several slices recounts it.
    t.reconcile();
    while !t.jobs().is_empty() {
        t.drain();
    }
    assert_eq!(t.count(), MANY as u64);
}

#[test]
fn a_purge_of_many_is_queued_slice_by_slice_and_finishes() {
    let t = T::new();
    t.many("d1");
    t.ok(
        "DELETE",
        "sys/sync/destinations/in-mem/d1?purge=true",
        Value::Null,
    );
    // The first slice is queued by the request, the rest by the worker.
    assert_eq!(t.count(), 1_000);
    assert_eq!(t.jobs(), vec!["sync/jobs/purge/in-mem/d1".to_string()]);
    t.drain_all();
    assert!(t.jobs().is_empty());
    assert_eq!(t.associations_of("d1"), 0);
    assert_eq!(
        t.call("GET", "sys/sync/destinations/in-mem/d1", Value::Null)
            .status,
        404
    );
    assert!(t.objects("d1").is_empty());
    assert_eq!(t.count(), 0);
}

#[test]
fn disabling_a_mount_of_many_unsyncs_them_slice_by_slice() {
    let t = T::new();
    t.many("d1");
    t.ok("DELETE", "sys/mounts/secret", Value::Null);
    assert_eq!(t.count(), 1_000);
    assert_eq!(t.jobs().len(), 1);
    t.drain_all();
    assert!(t.jobs().is_empty());
    assert_eq!(t.associations_of("d1"), 0);
    assert_eq!(t.count(), 0);
    assert!(!t.f.storage.keys().iter().any(|k| k.starts_with("logical/")));
}

#[test]
fn a_force_delete_of_many_drops_everything_at_once() {
    let t = T::new();
    t.many("d1");
    // Some pending work, to be dropped with the rest.
    t.put("s000007", json!({"v": "2"}));
    assert_eq!(t.count(), 1);
    t.ok(
        "DELETE",
        "sys/sync/destinations/in-mem/d1?force_delete=true",
        Value::Null,
    );
    let left: Vec<String> =
        t.f.storage
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("sync/") && k.contains("d1"))
            .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!t.f.storage.keys().iter().any(|k| outbox::is_count_key(k)));
    assert!(t.jobs().is_empty());
    // A destination of the same name starts empty.
    t.dest("d1", Granularity::SecretPath);
    assert_eq!(t.associations_of("d1"), 0);
}
