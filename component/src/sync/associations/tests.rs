//! Associations through the full router, with in-memory fakes.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::connector::SyncError;
use crate::env::Fakes;
use crate::storage::{Storage, Tx};
use crate::sync::destinations::{Destination, Granularity, Networking};
use crate::sys::mounts::MountTable;

use super::*;

struct T {
    f: Fakes,
}

impl T {
    /// Fakes with KV-v2 mounted at `secret/`.
    fn new() -> T {
        let t = T {
            f: Fakes::default(),
        };
        let (s, b) = t.call("POST", "sys/mounts/secret", json!({"type": "kv-v2"}));
        assert_eq!(s, 204, "{b}");
        t
    }

    /// `path` may carry a query string.
    fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        crate::testing::call(&self.f.env(), method, path, &body)
    }

    fn accessor(&self, mount: &str) -> String {
        crate::testing::accessor(&self.f.storage, mount)
    }

    /// Saves an `in-mem` destination record directly.
    fn dest(&self, name: &str, granularity: Granularity, template: Option<&str>) -> Destination {
        let d = Destination {
            kind: "in-mem".into(),
            name: name.into(),
            connection_details: Map::new(),
            granularity,
            secret_name_template: template.map(str::to_string),
            custom_tags: BTreeMap::new(),
            networking: Networking::default(),
            purge_initiated_at: None,
            purge_error: None,
        };
        self.save(&d);
        d
    }

    fn save(&self, d: &Destination) {
        let mut tx = Tx::new(&self.f.storage);
        d.save(&mut tx).unwrap();
        tx.commit().unwrap();
    }

    fn put(&self, path: &str, data: Value) {
        let (s, b) = self.call(
            "POST",
            &format!("secret/data/{path}"),
            json!({ "data": data }),
        );
        assert_eq!(s, 200, "{b}");
    }

    fn set(&self, dest: &str, mount: &str, secret: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("sys/sync/destinations/in-mem/{dest}/associations/set"),
            json!({"mount": mount, "secret_name": secret}),
        )
    }

    fn set_ok(&self, dest: &str, secret: &str) -> Value {
        let (s, b) = self.set(dest, "secret", secret);
        assert_eq!(s, 200, "{b}");
        b["data"].clone()
    }

    fn remove(&self, dest: &str, mount: &str, secret: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("sys/sync/destinations/in-mem/{dest}/associations/remove"),
            json!({"mount": mount, "secret_name": secret}),
        )
    }

    fn read(&self, dest: &str) -> Value {
        let (s, b) = self.call(
            "GET",
            &format!("sys/sync/destinations/in-mem/{dest}/associations"),
            Value::Null,
        );
        assert_eq!(s, 200, "{b}");
        b["data"].clone()
    }

    /// External objects of an in-mem destination: name → value.
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

    /// Keys of the outbox entries.
    fn outbox_keys(&self) -> Vec<String> {
        self.f
            .storage
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(keys::OUTBOX))
            .collect()
    }

    /// Runs the sync worker over everything due.
    fn drain(&self) -> crate::sync::worker::RunReport {
        crate::sync::worker::run(
            &self.f.env(),
            0,
            1,
            1000,
            &crate::sync::worker::Settings {
                coalesce_window_ms: 0,
                ..crate::sync::worker::Settings::default()
            },
        )
    }

    fn sync_keys(&self) -> Vec<String> {
        self.f
            .storage
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("sync/associations/") || k.starts_with(keys::BY_SECRET))
            .collect()
    }
}

fn client_error() -> SyncError {
    SyncError::ClientSide("access denied by the provider".into())
}

#[test]
fn set_syncs_a_secret_path_association() {
    let t = T::new();
    let acc = t.accessor("secret/");
    t.put("app/db", json!({"user": "app", "password": "s3cr3t"}));
    t.dest("t1", Granularity::SecretPath, None);
    let data = t.set_ok("t1", "app/db");
    assert_eq!(data["store_name"], "t1");
    assert_eq!(data["store_type"], "in-mem");
    let secrets = data["associated_secrets"].as_object().unwrap();
    assert_eq!(secrets.len(), 1);
    let entry = &secrets[&format!("{acc}/app/db")];
    assert_eq!(entry["accessor"], acc);
    assert_eq!(entry["mount"], "secret");
    assert_eq!(entry["secret_name"], "app/db");
    assert_eq!(entry["sync_status"], "SYNCED");
    assert!(entry["updated_at"].as_str().unwrap().ends_with('Z'));
    assert!(entry.get("sub_key").is_none());
    assert!(entry.get("error").is_none());

    let name = format!("vault/{acc}/app/db");
    let objects = t.f.connector.objects("in-mem", "t1");
    assert_eq!(objects.len(), 1);
    let object = &objects[&name];
    assert_eq!(object.value, r#"{"password":"s3cr3t","user":"app"}"#);
    assert_eq!(
        object.tags,
        vec![("hashicorp:vault".to_string(), String::new())]
    );
    // The read endpoint answers the same body.
    assert_eq!(t.read("t1"), data);
    // The stored record holds no secret value.
    for key in t.sync_keys() {
        let stored = t.f.storage.get(&key).unwrap().unwrap().value;
        assert!(!String::from_utf8(stored).unwrap().contains("s3cr3t"));
    }
}

#[test]
fn set_again_refreshes_with_the_latest_version() {
    let t = T::new();
    let acc = t.accessor("secret/");
    t.put("app/db", json!({"a": "1"}));
    t.dest("t1", Granularity::SecretPath, None);
    t.set_ok("t1", "app/db");
    t.put("app/db", json!({"a": "2"}));
    let before = t.calls();
    let data = t.set_ok("t1", "app/db");
    assert_eq!(t.calls(), before + 1);
    assert_eq!(
        data["associated_secrets"][format!("{acc}/app/db")]["sync_status"],
        "SYNCED"
    );
    assert_eq!(
        t.objects("t1"),
        BTreeMap::from([(format!("vault/{acc}/app/db"), r#"{"a":"2"}"#.to_string())])
    );
    let mut tx = Tx::new(&t.f.storage);
    let record = Association::load(&mut tx, "in-mem", "t1", &acc, "app/db")
        .unwrap()
        .unwrap();
    assert_eq!(record.rows[""].version, 2);
}

#[test]
fn a_changed_template_applies_on_the_next_set() {
    let t = T::new();
    let acc = t.accessor("secret/");
    t.put("app/db", json!({"a": "1"}));
    let mut d = t.dest("t1", Granularity::SecretPath, None);
    t.set_ok("t1", "app/db");
    d.secret_name_template = Some("copy/{{ .SecretBaseName | uppercase }}".into());
    t.save(&d);
    // The stored association keeps its template until it is set again.
    assert!(t.objects("t1").contains_key(&format!("vault/{acc}/app/db")));
    let data = t.set_ok("t1", "app/db");
    assert_eq!(t.objects("t1").keys().collect::<Vec<_>>(), vec!["copy/DB"]);
    assert_eq!(data["associated_secrets"].as_object().unwrap().len(), 1);
}

#[test]
fn secret_key_granularity_writes_one_object_per_key() {
    let t = T::new();
    let acc = t.accessor("secret/");
    t.put(
        "app/db",
        json!({"user": "app", "port": 5432, "opts": {"z": 1, "a": [true]}}),
    );
    t.dest("k1", Granularity::SecretKey, None);
    let data = t.set_ok("k1", "app/db");
    let base = format!("vault/{acc}/app/db");
    assert_eq!(
        t.objects("k1"),
        BTreeMap::from([
            (format!("{base}/opts"), r#"{"a":[true],"z":1}"#.to_string()),
            (format!("{base}/port"), "5432".to_string()),
            (format!("{base}/user"), "app".to_string()),
        ])
    );
    let secrets = data["associated_secrets"].as_object().unwrap();
    assert_eq!(secrets.len(), 3);
    let entry = &secrets[&format!("{acc}/app/db/user")];
    assert_eq!(entry["sub_key"], "user");
    assert_eq!(entry["sync_status"], "SYNCED");
    assert_eq!(entry["secret_name"], "app/db");

    // A key that disappears loses its object and its row.
    t.put("app/db", json!({"user": "app2"}));
    let data = t.set_ok("k1", "app/db");
    assert_eq!(
        t.objects("k1"),
        BTreeMap::from([(format!("{base}/user"), "app2".to_string())])
    );
    let keys: Vec<&String> = data["associated_secrets"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, vec![&format!("{acc}/app/db/user")]);
}

#[test]
fn a_granularity_change_replaces_the_objects() {
    let t = T::new();
    let acc = t.accessor("secret/");
    t.put("app", json!({"a": "1", "b": "2"}));
    let mut d = t.dest("t1", Granularity::SecretPath, None);
    t.set_ok("t1", "app");
    d.granularity = Granularity::SecretKey;
    t.save(&d);
    t.set_ok("t1", "app");
    assert_eq!(
        t.objects("t1").keys().cloned().collect::<Vec<_>>(),
        vec![format!("vault/{acc}/app/a"), format!("vault/{acc}/app/b")]
    );
    d.granularity = Granularity::SecretPath;
    t.save(&d);
    let data = t.set_ok("t1", "app");
    assert_eq!(
        t.objects("t1").keys().cloned().collect::<Vec<_>>(),
        vec![format!("vault/{acc}/app")]
    );
    let keys: Vec<&String> = data["associated_secrets"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, vec![&format!("{acc}/app")]);
}

#[test]
fn a_missing_secret_is_associated_unsynced_without_provider_calls() {
    let t = T::new();
    let acc = t.accessor("secret/");
    t.dest("t1", Granularity::SecretPath, None);
    let data = t.set_ok("t1", "later");
    let entry = &data["associated_secrets"][format!("{acc}/later")];
    assert_eq!(entry["sync_status"], "UNSYNCED");
    assert!(entry.get("error").is_none());
    assert_eq!(t.calls(), 0);
    assert!(t.objects("t1").is_empty());

    t.put("later", json!({"k": "v"}));
    let data = t.set_ok("t1", "later");
    assert_eq!(
        data["associated_secrets"][format!("{acc}/later")]["sync_status"],
        "SYNCED"
    );
    assert_eq!(t.objects("t1").len(), 1);

    // The current version deleted: the object goes, the association stays.
    assert_eq!(t.call("DELETE", "secret/data/later", Value::Null).0, 204);
    let data = t.set_ok("t1", "later");
    assert_eq!(
        data["associated_secrets"][format!("{acc}/later")]["sync_status"],
        "UNSYNCED"
    );
    assert!(t.objects("t1").is_empty());
}

#[test]
fn provider_failures_become_error_statuses() {
    let t = T::new();
    let acc = t.accessor("secret/");
    t.put("app", json!({"a": "1"}));
    t.dest("t1", Granularity::SecretPath, None);
    let key = format!("{acc}/app");

    t.fail(Some(client_error()));
    let data = t.set_ok("t1", "app");
    let entry = &data["associated_secrets"][&key];
    assert_eq!(entry["sync_status"], "CLIENT_SIDE_ERROR");
    assert_eq!(entry["error"], "access denied by the provider");

    t.fail(Some(SyncError::ExternalService {
        message: "throttled".into(),
        retry_after_ms: Some(100),
    }));
    let data = t.set_ok("t1", "app");
    let entry = &data["associated_secrets"][&key];
    assert_eq!(entry["sync_status"], "EXTERNAL_SERVICE_ERROR");
    assert_eq!(
        entry["error"],
        "throttled (the provider asked to retry after 1s)"
    );
    assert_eq!(t.read("t1"), data);
    // A retryable failure also queues a retry for the worker, not before the
    // provider's retry-after; the client-side one queued nothing.
    assert_eq!(t.outbox_keys().len(), 1);
    let mut tx = Tx::new(&t.f.storage);
    let queued = crate::sync::outbox::load(&mut tx, &outbox::EntryId::of(&record(&t, &acc)))
        .unwrap()
        .unwrap();
    assert_eq!(queued.attempts, 1);
    assert!(queued.due_at >= record(&t, &acc).rows[""].updated_at + 100_000_000);

    // A refresh retries, and settles the queued retry.
    t.fail(None);
    let data = t.set_ok("t1", "app");
    let entry = &data["associated_secrets"][&key];
    assert_eq!(entry["sync_status"], "SYNCED");
    assert!(entry.get("error").is_none());
    assert_eq!(t.objects("t1").len(), 1);
    assert!(t.outbox_keys().is_empty());
}

fn record(t: &T, accessor: &str) -> Association {
    let mut tx = Tx::new(&t.f.storage);
    Association::load(&mut tx, "in-mem", "t1", accessor, "app")
        .unwrap()
        .unwrap()
}

#[test]
fn a_failed_delete_of_a_renamed_object_is_retried() {
    let t = T::new();
    let acc = t.accessor("secret/");
    t.put("app", json!({"a": "1"}));
    let mut d = t.dest("t1", Granularity::SecretPath, None);
    t.set_ok("t1", "app");
    d.secret_name_template = Some("new/{{ .SecretPath }}".into());
    t.save(&d);
    // Every call fails: the old object stays and is remembered.
    t.fail(Some(client_error()));
    let data = t.set_ok("t1", "app");
    assert_eq!(
        data["associated_secrets"][format!("{acc}/app")]["sync_status"],
        "CLIENT_SIDE_ERROR"
    );
    t.fail(None);
    t.set_ok("t1", "app");
    assert_eq!(
        t.objects("t1").keys().cloned().collect::<Vec<_>>(),
        vec!["new/app".to_string()]
    );
    let mut tx = Tx::new(&t.f.storage);
    let record = Association::load(&mut tx, "in-mem", "t1", &acc, "app")
        .unwrap()
        .unwrap();
    assert!(record.stale.is_empty());
}

#[test]
fn set_needs_read_permission_on_the_secret() {
    let t = T::new();
    t.put("app/db", json!({"a": "1"}));
    t.dest("t1", Granularity::SecretPath, None);
    t.f.authz.deny("read", "secret/data/app/db");
    let (s, b) = t.set("t1", "secret", "app/db");
    assert_eq!(s, 403);
    assert_eq!(
        b,
        json!({"errors": ["permission denied to read the content of the secret app/db in mount secret"]})
    );
    assert!(t.sync_keys().is_empty());
    assert_eq!(t.calls(), 0);
}

#[test]
fn bad_set_requests_are_400() {
    let t = T::new();
    t.put("app", json!({"a": "1"}));
    t.dest("t1", Granularity::SecretPath, None);
    // A mount that is not KV-v2 (kvsync cannot enable one; write the table).
    let mut tx = Tx::new(&t.f.storage);
    let mut table = MountTable::load(&mut tx).unwrap();
    let mut other = table.get("secret/").unwrap().clone();
    other.path = "old/".into();
    other.accessor = "kv_0000".into();
    other.options.clear();
    table.entries.push(other);
    table.save(&mut tx).unwrap();
    tx.commit().unwrap();

    let path = "sys/sync/destinations/in-mem/t1/associations/set";
    for (body, phrase) in [
        (json!({"secret_name": "app"}), "\"mount\" is required"),
        (
            json!({"mount": "", "secret_name": "app"}),
            "\"mount\" is required",
        ),
        (json!({"mount": "secret"}), "\"secret_name\" is required"),
        (
            json!({"mount": "secret", "secret_name": "app/"}),
            "Secret not found. Please provide full path to existing secret",
        ),
        (
            json!({"mount": "nope", "secret_name": "app"}),
            "mount \"nope/\" does not exist",
        ),
        (
            json!({"mount": "old", "secret_name": "app"}),
            "is not a KV version 2 mount",
        ),
        (
            json!({"mount": ["secret"], "secret_name": "app"}),
            "expected a string",
        ),
    ] {
        let (s, b) = t.call("POST", path, body.clone());
        assert_eq!(s, 400, "{body}: {b}");
        let msg = b["errors"][0].as_str().unwrap();
        assert!(msg.contains(phrase), "{body}: {msg}");
    }
    let (s, b) = t.set("missing", "secret", "app");
    assert_eq!(s, 400);
    assert!(
        b["errors"][0]
            .as_str()
            .unwrap()
            .contains("in-mem/missing does not exist")
    );
    let (s, _) = t.call(
        "POST",
        "sys/sync/destinations/nope/t1/associations/set",
        json!({"mount": "secret", "secret_name": "app"}),
    );
    assert_eq!(s, 400);
    let (s, _) = t.call("GET", path, Value::Null);
    assert_eq!(s, 405);
    assert!(t.sync_keys().is_empty());
    assert_eq!(t.calls(), 0);

    // A destination being purged takes no new association.
    let mut d = t.dest("t1", Granularity::SecretPath, None);
    d.purge_initiated_at = Some(1);
    t.save(&d);
    let (s, b) = t.set("t1", "secret", "app");
    assert_eq!(s, 400);
    assert!(b["errors"][0].as_str().unwrap().contains("purged"));

    // Unknown fields are reported, not refused.
    t.dest("t2", Granularity::SecretPath, None);
    let (s, b) = t.call(
        "POST",
        "sys/sync/destinations/in-mem/t2/associations/set",
        json!({"mount": "/secret/", "secret_name": "app", "extra": 1}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["warnings"][0],
        "Endpoint ignored these unrecognized parameters: [extra]"
    );
}

#[test]
fn bad_templates_are_400_without_provider_calls() {
    let t = T::new();
    t.put("app", json!({"a": "1"}));
    t.dest("t1", Granularity::SecretPath, Some("{{ .Nope }}"));
    let (s, b) = t.set("t1", "secret", "app");
    assert_eq!(s, 400, "{b}");
    assert!(t.sync_keys().is_empty());
    assert_eq!(t.calls(), 0);
}

#[test]
fn colliding_external_names_are_refused() {
    let t = T::new();
    t.put("app/db", json!({"a": "1"}));
    t.put("app/other", json!({"a": "2"}));
    t.dest("t1", Granularity::SecretPath, Some("fixed"));
    t.set_ok("t1", "app/db");
    let calls = t.calls();
    let (s, b) = t.set("t1", "secret", "app/other");
    assert_eq!(s, 400, "{b}");
    let msg = b["errors"][0].as_str().unwrap();
    assert!(msg.contains("app/db") && msg.contains("\"fixed\""), "{msg}");
    assert_eq!(t.calls(), calls);
    assert_eq!(t.objects("t1")["fixed"], r#"{"a":"1"}"#);
    // Re-setting the owner is no collision.
    t.set_ok("t1", "app/db");
    // Another destination is another namespace of names.
    t.dest("t2", Granularity::SecretPath, Some("fixed"));
    t.set_ok("t2", "app/other");

    // Two keys of one secret landing on one name.
    t.put("mixed", json!({"A": "1", "a": "2"}));
    t.dest(
        "k1",
        Granularity::SecretKey,
        Some("{{ .SecretKey | lowercase }}"),
    );
    let (s, b) = t.set("k1", "secret", "mixed");
    assert_eq!(s, 400, "{b}");
    assert!(b["errors"][0].as_str().unwrap().contains("\"a\""));
}

/// The claims on external names of destination `dest` (in-mem), by name.
fn claims(t: &T, dest: &str) -> Vec<String> {
    let prefix = keys::claims_of("in-mem", dest);
    t.f.storage
        .keys()
        .into_iter()
        .filter_map(|k| k.strip_prefix(&prefix).map(keys::unescape))
        .collect()
}

#[test]
fn names_are_claimed_while_held_and_released_when_let_go() {
    let t = T::new();
    let acc = t.accessor("secret/");
    t.put("app", json!({"a": "1", "b": "2"}));
    t.put("other", json!({"a": "1"}));
    t.dest("k1", Granularity::SecretKey, None);
    t.set_ok("k1", "app");
    assert_eq!(
        claims(&t, "k1"),
        vec![format!("vault/{acc}/app/a"), format!("vault/{acc}/app/b")]
    );
    // A key removed from the secret lets its name go once synced.
    t.put("app", json!({"a": "1"}));
    t.drain();
    assert_eq!(claims(&t, "k1"), vec![format!("vault/{acc}/app/a")]);
    // Removing the association releases everything: another secret may
    // now take the name.
    t.remove("k1", "secret", "app");
    assert!(claims(&t, "k1").is_empty());
    t.dest("fixed", Granularity::SecretPath, Some("one"));
    t.set_ok("fixed", "app");
    let (s, _) = t.set("fixed", "secret", "other");
    assert_eq!(s, 400);
    t.remove("fixed", "secret", "app");
    t.set_ok("fixed", "other");
    assert_eq!(claims(&t, "fixed"), vec!["one".to_string()]);
    // A destination deleted with force leaves no claim behind for a new
    // destination of the same name.
    let (s, b) = t.call(
        "DELETE",
        "sys/sync/destinations/in-mem/fixed?force_delete=true",
        Value::Null,
    );
    assert!(s == 200 || s == 204, "{s} {b}");
    assert!(claims(&t, "fixed").is_empty());
    t.dest("fixed", Granularity::SecretPath, Some("one"));
    t.set_ok("fixed", "app");
}

#[test]
fn remove_deletes_the_objects_and_is_idempotent() {
    let t = T::new();
    let acc = t.accessor("secret/");
    t.put("app", json!({"a": "1", "b": "2"}));
    t.put("keep", json!({"a": "1"}));
    t.dest("k1", Granularity::SecretKey, None);
    t.set_ok("k1", "app");
    t.set_ok("k1", "keep");
    assert_eq!(t.objects("k1").len(), 3);

    let (s, b) = t.remove("k1", "secret", "app");
    assert_eq!(s, 200, "{b}");
    let keys: Vec<&String> = b["data"]["associated_secrets"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, vec![&format!("{acc}/keep/a")]);
    assert_eq!(
        t.objects("k1").keys().cloned().collect::<Vec<_>>(),
        vec![format!("vault/{acc}/keep/a")]
    );
    let (s, b) = t.remove("k1", "secret", "app");
    assert_eq!(s, 200);
    assert_eq!(
        b["data"]["associated_secrets"].as_object().unwrap().len(),
        1
    );
    let (s, b) = t.remove("k1", "secret", "never");
    assert_eq!(s, 200, "{b}");

    // Failed deletes keep the association, with the error, for a retry.
    t.fail(Some(client_error()));
    let (s, b) = t.remove("k1", "secret", "keep");
    assert_eq!(s, 200);
    let entry = &b["data"]["associated_secrets"][format!("{acc}/keep/a")];
    assert_eq!(entry["sync_status"], "CLIENT_SIDE_ERROR");
    assert_eq!(entry["error"], "access denied by the provider");
    t.fail(None);
    let (s, b) = t.remove("k1", "secret", "keep");
    assert_eq!(s, 200);
    assert_eq!(b["data"]["associated_secrets"], json!({}));
    assert!(t.objects("k1").is_empty());
    assert!(t.sync_keys().is_empty());

    // An unknown mount with no association behind it stays a 400.
    assert_eq!(t.remove("k1", "nope", "app").0, 400);
    assert_eq!(t.remove("k1", "secret", "dir/").0, 400);
}

#[test]
fn remove_works_after_the_mount_is_gone() {
    let t = T::new();
    t.put("app", json!({"a": "1"}));
    t.dest("t1", Granularity::SecretPath, None);
    t.set_ok("t1", "app");
    // Drop the mount from the table only (as if disabled before sync learnt of it).
    let mut tx = Tx::new(&t.f.storage);
    let mut table = MountTable::load(&mut tx).unwrap();
    table.entries.clear();
    table.save(&mut tx).unwrap();
    tx.commit().unwrap();
    let (s, b) = t.remove("t1", "secret", "app");
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["associated_secrets"], json!({}));
    assert!(t.objects("t1").is_empty());
    assert!(t.sync_keys().is_empty());
}

#[test]
fn read_shapes() {
    let t = T::new();
    let (s, b) = t.call(
        "GET",
        "sys/sync/destinations/in-mem/nope/associations",
        Value::Null,
    );
    assert_eq!((s, b), (404, json!({"errors": []})));
    t.dest("t1", Granularity::SecretPath, None);
    assert_eq!(
        t.read("t1"),
        json!({"associated_secrets": {}, "store_name": "t1", "store_type": "in-mem"})
    );
}

#[test]
fn list_all_associations() {
    let t = T::new();
    assert_eq!(
        t.call("LIST", "sys/sync/associations", Value::Null),
        (404, json!({"errors": []}))
    );
    let (s, _) = t.call("POST", "sys/mounts/my/kv", json!({"type": "kv-v2"}));
    assert_eq!(s, 204);
    t.put("a", json!({"x": "1"}));
    let (s, _) = t.call("POST", "my/kv/data/p/q", json!({"data": {"x": "1"}}));
    assert_eq!(s, 200);
    t.dest("t1", Granularity::SecretPath, None);
    t.dest("t2", Granularity::SecretKey, None);
    t.set_ok("t1", "a");
    t.set_ok("t2", "a");
    let (s, b) = t.set("t1", "my/kv", "p/q");
    assert_eq!(s, 200, "{b}");
    let (s, b) = t.call("GET", "sys/sync/associations?list=true", Value::Null);
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["data"],
        json!({
            "keys": ["my/kv/p/q", "secret/a"],
            "key_info": {
                "my/kv/p/q": [{"mount": "my/kv/", "secret_path": "p/q"}],
                "secret/a": [{"mount": "secret/", "secret_path": "a"}],
            },
            "total_associations": 3,
            "total_secrets": 2,
        })
    );
    assert_eq!(t.call("GET", "sys/sync/associations", Value::Null).0, 405);
}

#[test]
fn destinations_of_a_secret() {
    let t = T::new();
    t.put("app/db", json!({"a": "1", "b": "2"}));
    t.dest("t1", Granularity::SecretPath, None);
    t.dest("k1", Granularity::SecretKey, None);
    let query = "sys/sync/associations/destinations?mount=secret&secret_name=app/db";
    let (s, b) = t.call("GET", query, Value::Null);
    assert_eq!(
        (s, &b["data"]),
        (200, &json!({"associated_destinations": {}}))
    );

    t.set_ok("t1", "app/db");
    t.set_ok("k1", "app/db");
    // One sub-key of k1 fails: the worst status wins.
    t.put("app/db", json!({"a": "1", "b": "2", "c": "3"}));
    t.fail(Some(client_error()));
    t.set_ok("k1", "app/db");
    t.fail(None);
    // The write left t1 PENDING (queued) until the worker ran; the failed
    // `set` of k1 is a client-side error: nothing was queued for it.
    let (_, b) = t.call("GET", query, Value::Null);
    assert_eq!(
        b["data"]["associated_destinations"]["in-mem/t1"]["sync_status"],
        "PENDING"
    );
    assert_eq!(t.drain().processed, 1);

    let (s, b) = t.call("GET", query, Value::Null);
    assert_eq!(s, 200, "{b}");
    let dests = b["data"]["associated_destinations"].as_object().unwrap();
    assert_eq!(dests.len(), 2);
    assert_eq!(dests["in-mem/t1"]["type"], "in-mem");
    assert_eq!(dests["in-mem/t1"]["name"], "t1");
    assert_eq!(dests["in-mem/t1"]["sync_status"], "SYNCED");
    assert_eq!(dests["in-mem/k1"]["sync_status"], "CLIENT_SIDE_ERROR");
    assert!(
        !dests["in-mem/k1"]["updated_at"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    // The path form answers the same.
    let (s, b2) = t.call("GET", "sys/sync/associations/secret/app/db", Value::Null);
    assert_eq!(s, 200);
    assert_eq!(b2["data"], b["data"]);

    for bad in [
        "sys/sync/associations/destinations?secret_name=app/db",
        "sys/sync/associations/destinations?mount=secret",
        "sys/sync/associations/destinations?mount=nope&secret_name=app/db",
        "sys/sync/associations/destinations?mount=secret&secret_name=app/",
    ] {
        assert_eq!(t.call("GET", bad, Value::Null).0, 400, "{bad}");
    }
}

#[test]
fn drop_all_orphans_the_objects_and_drops_pending_work() {
    let t = T::new();
    t.put("a", json!({"x": "1"}));
    t.put("b", json!({"x": "1"}));
    let d = t.dest("t1", Granularity::SecretPath, None);
    t.set_ok("t1", "a");
    t.set_ok("t1", "b");
    // A change queues work for both.
    t.put("a", json!({"x": "2"}));
    t.put("b", json!({"x": "2"}));
    assert_eq!(t.outbox_keys().len(), 2);
    assert!(has_any(&mut Tx::new(&t.f.storage), "in-mem", "t1").unwrap());
    drop_all(&t.f.storage, &d).unwrap();
    assert!(!has_any(&mut Tx::new(&t.f.storage), "in-mem", "t1").unwrap());
    assert!(t.sync_keys().is_empty());
    assert!(t.outbox_keys().is_empty());
    assert!(
        !t.f.storage
            .keys()
            .iter()
            .any(|k| crate::sync::outbox::is_count_key(k))
    );
    assert_eq!(t.objects("t1").len(), 2);
}

#[test]
fn an_unchanged_object_is_not_pushed_again() {
    let t = T::new();
    t.put("app", json!({"a": "1", "b": "2"}));
    t.dest("t1", Granularity::SecretKey, None);
    t.set_ok("t1", "app");
    let after_first = t.calls();
    assert_eq!(after_first, 2, "one push per key");
    // A refresh with nothing changed costs no provider call.
    t.set_ok("t1", "app");
    assert_eq!(t.calls(), after_first);
    // One changed key costs one push; the other key is skipped.
    t.put("app", json!({"a": "1", "b": "3"}));
    t.set_ok("t1", "app");
    assert_eq!(t.calls(), after_first + 1);
    // A failed push is retried even if the value did not change.
    t.fail(Some(client_error()));
    t.put("app", json!({"a": "9", "b": "3"}));
    t.set_ok("t1", "app");
    t.fail(None);
    let before = t.calls();
    t.set_ok("t1", "app");
    assert_eq!(t.calls(), before + 1, "only the failed key is pushed again");
}

#[test]
fn a_push_deferred_past_the_inline_bound_answers_pending_and_is_queued() {
    let t = T::new();
    let acc = t.accessor("secret/");
    t.put("app", json!({"a": "1"}));
    t.dest("t1", Granularity::SecretPath, None);
    let key = format!("{acc}/app");
    t.fail(Some(SyncError::Deferred(
        "the provider did not answer within 3s".into(),
    )));
    let data = t.set_ok("t1", "app");
    let entry = &data["associated_secrets"][&key];
    assert_eq!(entry["sync_status"], "PENDING");
    assert!(
        entry.get("error").is_none(),
        "PENDING is not an error: {entry}"
    );
    // The worker finishes it, once the retry is due.
    assert_eq!(t.outbox_keys().len(), 1);
    t.fail(None);
    crate::sync::worker::make_all_due(&t.f.storage);
    let settings = crate::sync::worker::Settings {
        backoff_base_ms: 1,
        backoff_cap_ms: 1,
        coalesce_window_ms: 0,
    };
    let report = crate::sync::worker::run(&t.f.env(), 0, 1, 10, &settings);
    assert_eq!(report.processed, 1);
    assert_eq!(
        t.read("t1")["associated_secrets"][&key]["sync_status"],
        "SYNCED"
    );
    assert_eq!(t.objects("t1").len(), 1);
}
