//! `storage_record`: the engine over stored records it did not write. A
//! storage holding a mounted KV-v2 engine, a secret with versions, a sync
//! destination and an association (with its outbox, due and claim records)
//! has some of its records replaced (arbitrary bytes, arbitrary JSON, or one
//! field of the stored JSON changed), then every kind of record is read,
//! listed and rewritten through the API and a sync worker run. Each record
//! type is also decoded from the raw bytes directly, and the key escaping of
//! secret names is checked to round-trip.
//!
//! Invariants: nothing panics (a damaged record may make a request fail,
//! with a 500 where storage holds what no client could have written, but
//! never abort the engine); `keys::unescape(keys::escape(s)) == s`.

use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use kvsync_component::Env;
use kvsync_component::env::Fakes;
use kvsync_component::kv::record::{KeyMetadata, KvConfig};
use kvsync_component::storage::{Op, Storage};
use kvsync_component::sync::associations::record::Association;
use kvsync_component::sync::config::SyncConfig;
use kvsync_component::sync::destinations::Destination;
use kvsync_component::sync::keys;
use kvsync_component::sync::outbox::{EntryId, OutboxEntry};
use kvsync_component::sys::mounts::MountTable;
use serde_json::Value;

use crate::engine::{json_request, run_worker};
use crate::input;

/// The requests that build the stored state every input starts from.
const SETUP: &[(&str, &str, &str)] = &[
    ("POST", "sys/mounts/secret", r#"{"type":"kv-v2"}"#),
    ("POST", "secret/config", r#"{"max_versions":3}"#),
    (
        "POST",
        "secret/data/app/db",
        r#"{"data":{"user":"u","password":"p"}}"#,
    ),
    (
        "POST",
        "secret/data/app/db",
        r#"{"data":{"user":"u2"},"options":{"cas":1}}"#,
    ),
    (
        "POST",
        "secret/metadata/app/db",
        r#"{"custom_metadata":{"team":"t"},"delete_version_after":"1h"}"#,
    ),
    ("POST", "secret/data/other", r#"{"data":{"k":"v"}}"#),
    ("POST", "secret/delete/other", r#"{"versions":[1]}"#),
    (
        "POST",
        "sys/sync/destinations/in-mem/d",
        r#"{"granularity":"secret-key"}"#,
    ),
    (
        "POST",
        "sys/sync/destinations/in-mem/d/associations/set",
        r#"{"mount":"secret","secret_name":"app/db"}"#,
    ),
    ("POST", "sys/sync/destinations/in-mem/e", "{}"),
    (
        "POST",
        "sys/sync/destinations/in-mem/e/associations/set",
        r#"{"mount":"secret","secret_name":"other"}"#,
    ),
    ("POST", "secret/data/app/db", r#"{"data":{"user":"u3"}}"#),
];

/// What is done after the records were damaged: reads, lists and writes of
/// every kind of record.
const AFTER: &[(&str, &str, &str)] = &[
    ("GET", "sys/mounts", ""),
    ("GET", "sys/internal/ui/mounts/secret/app/db", ""),
    ("GET", "secret/config", ""),
    ("GET", "secret/data/app/db", ""),
    ("GET", "secret/data/app/db?version=1", ""),
    ("GET", "secret/metadata/app/db", ""),
    ("GET", "secret/subkeys/app/db", ""),
    ("LIST", "secret/metadata/app/", ""),
    ("GET", "sys/sync/config", ""),
    ("LIST", "sys/sync/destinations", ""),
    ("GET", "sys/sync/destinations/in-mem/d", ""),
    ("GET", "sys/sync/destinations/in-mem/d/associations", ""),
    ("GET", "sys/sync/associations/secret/app/db", ""),
    ("GET", "sys/sync/destinations/in-mem/d/objects", ""),
    ("POST", "secret/data/app/db", r#"{"data":{"user":"u4"}}"#),
    ("PATCH", "secret/data/app/db", r#"{"data":{"extra":"x"}}"#),
    ("POST", "secret/undelete/other", r#"{"versions":[1]}"#),
    ("POST", "secret/destroy/app/db", r#"{"versions":[1]}"#),
    (
        "POST",
        "sys/sync/destinations/in-mem/d",
        r#"{"granularity":"secret-path"}"#,
    ),
    (
        "POST",
        "sys/sync/destinations/in-mem/e/associations/set",
        r#"{"mount":"secret","secret_name":"app/db"}"#,
    ),
    ("WORKER", "", ""),
    (
        "POST",
        "sys/sync/destinations/in-mem/d/associations/remove",
        r#"{"mount":"secret","secret_name":"app/db"}"#,
    ),
    ("DELETE", "secret/metadata/other", ""),
    ("DELETE", "sys/sync/destinations/in-mem/e?purge=true", ""),
    ("WORKER", "", ""),
    ("DELETE", "sys/mounts/secret", ""),
    ("WORKER", "", ""),
];

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = decode_directly(&mut u);
    let fakes = Fakes::default();
    let snapshot = snapshot();
    let ops = snapshot
        .iter()
        .map(|(key, value)| Op::Put {
            key: key.clone(),
            value: value.clone(),
        })
        .collect();
    if fakes.storage.commit(Vec::new(), ops).is_err() {
        return;
    }
    if damage(&mut u, &fakes, snapshot).is_err() {
        return;
    }
    let env = fakes.env();
    for (method, path, body) in AFTER {
        if *method == "WORKER" {
            run_worker(&env, 16);
        } else {
            send(&env, method, path, body);
        }
    }
}

/// Decodes the rest of the input as one record type (and as a key), as the
/// engine's reads do.
fn decode_directly(u: &mut Unstructured) -> Result<()> {
    let which = u.int_in_range(0..=8u8)?;
    let bytes: Vec<u8> = u.arbitrary()?;
    let _ = match which {
        0 => serde_json::from_slice::<KvConfig>(&bytes).is_ok(),
        1 => serde_json::from_slice::<KeyMetadata>(&bytes).is_ok(),
        2 => serde_json::from_slice::<OutboxEntry>(&bytes).is_ok(),
        3 => serde_json::from_slice::<Association>(&bytes).is_ok(),
        4 => serde_json::from_slice::<Destination>(&bytes).is_ok(),
        5 => serde_json::from_slice::<MountTable>(&bytes).is_ok(),
        6 => serde_json::from_slice::<SyncConfig>(&bytes).is_ok(),
        7 => serde_json::from_slice::<Value>(&bytes).is_ok(),
        _ => {
            let text = String::from_utf8_lossy(&bytes);
            let _ = EntryId::parse(&text);
            assert_eq!(keys::unescape(&keys::escape(&text)), text);
            true
        }
    };
    Ok(())
}

/// Replaces one to three stored records.
fn damage(u: &mut Unstructured, fakes: &Fakes, snapshot: &[(String, Vec<u8>)]) -> Result<()> {
    for _ in 0..u.int_in_range(1..=3u8)? {
        let (key, old) = u.choose(snapshot)?;
        let value = match u.int_in_range(0..=3u8)? {
            0 => u.arbitrary()?,
            1 => serde_json::to_vec(&input::json(u, 3)?).unwrap_or_default(),
            _ => {
                let mut record = serde_json::from_slice(old).unwrap_or(Value::Null);
                change_one(u, &mut record)?;
                serde_json::to_vec(&record).unwrap_or_default()
            }
        };
        let op = if u.ratio(1u8, 16u8)? {
            Op::Delete { key: key.clone() }
        } else {
            Op::Put {
                key: key.clone(),
                value,
            }
        };
        if fakes.storage.commit(Vec::new(), vec![op]).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Replaces one value somewhere inside `record` (or removes one field).
fn change_one(u: &mut Unstructured, record: &mut Value) -> Result<()> {
    match record {
        Value::Object(map) if !map.is_empty() && u.ratio(3u8, 4u8)? => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = u.choose(&keys)?;
            if u.ratio(1u8, 8u8)? {
                map.remove(key);
                return Ok(());
            }
            match map.get_mut(key) {
                Some(inner) => change_one(u, inner),
                None => Ok(()),
            }
        }
        Value::Array(items) if !items.is_empty() && u.ratio(3u8, 4u8)? => {
            let i = u.choose_index(items.len())?;
            match items.get_mut(i) {
                Some(inner) => change_one(u, inner),
                None => Ok(()),
            }
        }
        _ => {
            *record = input::json(u, 2)?;
            Ok(())
        }
    }
}

/// The stored state [`SETUP`] builds, made once per process.
fn snapshot() -> &'static [(String, Vec<u8>)] {
    static SNAPSHOT: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let fakes = Fakes::default();
        let env = fakes.env();
        for (method, path, body) in SETUP {
            let status = send(&env, method, path, body);
            assert!(
                (200..300).contains(&status),
                "setup {method} {path} answered {status}"
            );
        }
        fakes
            .storage
            .keys()
            .into_iter()
            .filter_map(|key| {
                let entry = fakes.storage.get(&key).ok().flatten()?;
                Some((key, entry.value))
            })
            .collect()
    })
}

fn send(env: &Env, method: &str, path: &str, body: &str) -> u16 {
    kvsync_component::handle(env, json_request(method, path, body))
        .response
        .status
}
