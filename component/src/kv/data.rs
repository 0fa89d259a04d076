//! `<mount>/data/<path>`: write, read, patch and soft-delete secret versions
//! (Vault's `path_data.go`).

use serde_json::{Map, Value, json};

use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec, FieldType, Fields, weak_int};
use crate::storage::Tx;
use crate::time;

use super::record::{Found, KeyMetadata, Kv, KvConfig};
use super::secret_path;

pub const FIELDS: &[FieldSpec] = &[
    FieldSpec::new("version", FieldType::Int)
        .describe("The version a read returns; 0 or absent: the current one."),
    FieldSpec::new("options", FieldType::Map).describe(
        "Write options: cas makes the write conditional on the current version (0: only if the secret does not exist).",
    ),
    FieldSpec::new("data", FieldType::Map).describe(
        "The key/value pairs of the secret: a write stores them as a new version, a patch merges them into the current one.",
    ),
];

/// `GET <mount>/data/<path>`.
pub fn read(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    read_version(
        &mut Kv::new(tx, call.mount()?),
        secret_path(call),
        &call.fields,
    )
}

/// `POST <mount>/data/<path>`: a new version.
pub fn write(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    write_version(
        &mut Kv::new(tx, call.mount()?),
        secret_path(call),
        &call.fields,
    )
}

/// `PATCH <mount>/data/<path>`.
pub fn patch(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    patch_version(
        &mut Kv::new(tx, call.mount()?),
        secret_path(call),
        &call.fields,
    )
}

/// `DELETE <mount>/data/<path>`.
pub fn delete(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    delete_current(&mut Kv::new(tx, call.mount()?), secret_path(call))
}

/// Vault's existence check of `data/` and `metadata/`: whether the secret
/// has metadata (a POST then updates it, else creates it).
pub fn exists(tx: &mut Tx, call: &Call) -> ApiResult<bool> {
    let path = secret_path(call);
    if path.is_empty() {
        return Ok(false);
    }
    super::record::secret_exists(tx, call.mount()?, path)
}

fn read_version(kv: &mut Kv, path: &str, fields: &Fields) -> ApiResult<Reply> {
    let requested = fields.int("version").unwrap_or(0);
    match kv.read_version(path, requested, time::now())? {
        None => Err(ApiError::NotFound),
        Some(Found {
            metadata,
            data: None,
        }) => {
            // Deleted or destroyed: Vault still shows the version's metadata.
            Ok(Reply::data(json!({ "data": null, "metadata": metadata })).with_status(404))
        }
        Some(Found {
            metadata,
            data: Some(data),
        }) => Ok(Reply::data(json!({ "data": data, "metadata": metadata }))),
    }
}

fn write_version(kv: &mut Kv, path: &str, fields: &Fields) -> ApiResult<Reply> {
    let config = kv.config()?;
    // An explicit `"data": null` is a version whose data is `null`, as in Vault.
    let data = match fields.map("data") {
        Some(data) => Value::Object(data.clone()),
        None if fields.is_null("data") => Value::Null,
        None => return Err(ApiError::bad_request("no data provided")),
    };
    let mut meta = kv.metadata(path)?.unwrap_or_default();
    check_and_set(fields, &config, &meta)?;
    let body = kv.write_version(path, &mut meta, &config, &data, time::now())?;
    kv.secret_changed(path);
    Ok(Reply::data(body))
}

/// JSON merge patch (RFC 7396) of `data` into the current version, written
/// as a new version: `"data": null` makes the new version's data `null`, and
/// a patch of a version whose data is `null` starts from an empty object. A
/// secret that does not exist, or has no version, is a 404 without a body (as
/// Vault's KV engine answers); a deleted or destroyed one a 404 with its
/// version's metadata.
fn patch_version(kv: &mut Kv, path: &str, fields: &Fields) -> ApiResult<Reply> {
    let changes = match fields.map("data") {
        Some(changes) => Some(changes),
        None if fields.is_null("data") => None,
        None => return Err(ApiError::bad_request("no data provided")),
    };
    let Some(mut meta) = kv.metadata(path)? else {
        return Ok(Reply::empty(404));
    };
    let config = kv.config()?;
    check_and_set(fields, &config, &meta)?;
    let current = meta.current_version;
    let Some(vm) = meta.versions.get(&current).copied() else {
        return Ok(Reply::empty(404));
    };
    let now = time::now();
    if !vm.is_live(now) {
        return Ok(Reply::data(meta.version_json(current, &vm)).with_status(404));
    }
    let data = match changes {
        Some(changes) => {
            let mut data = kv.data_map(path, current)?;
            merge_patch(&mut data, changes);
            Value::Object(data)
        }
        None => Value::Null,
    };
    let body = kv.write_version(path, &mut meta, &config, &data, now)?;
    kv.secret_changed(path);
    Ok(Reply::data(body))
}

/// Soft-deletes the current version (no-op when absent, deleted or destroyed).
fn delete_current(kv: &mut Kv, path: &str) -> ApiResult<Reply> {
    let now = time::now();
    if let Some(mut meta) = kv.metadata(path)? {
        let current = meta.current_version;
        if let Some(vm) = meta.versions.get_mut(&current)
            && vm.is_live(now)
        {
            vm.deletion_time = now;
            kv.put_metadata(path, &meta)?;
            kv.secret_changed(path);
        }
    }
    Ok(Reply::no_content())
}

/// Vault's `validateCheckAndSetOption`.
fn check_and_set(fields: &Fields, config: &KvConfig, meta: &KeyMetadata) -> ApiResult<()> {
    match fields.map("options").and_then(|o| o.get("cas")) {
        Some(raw) => {
            // Vault decodes it as its field parser decodes an int.
            let cas = weak_int(raw)
                .ok_or_else(|| ApiError::bad_request("error parsing check-and-set parameter"))?;
            if u64::try_from(cas).ok() != Some(meta.current_version) {
                return Err(ApiError::bad_request(
                    "check-and-set parameter did not match the current version",
                ));
            }
            Ok(())
        }
        None if config.cas_required || meta.cas_required => Err(ApiError::bad_request(
            "check-and-set parameter required for this call",
        )),
        None => Ok(()),
    }
}

/// RFC 7396 applied to an object: `null` removes a key, objects merge
/// recursively, anything else replaces.
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(existing) = slot {
                    merge_patch(existing, inner);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::testing::Server;
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn write_then_read() {
        let s = Server::new();
        let (status, body) = s.post("secret/data/app/db", json!({"data": {"user": "u", "n": 1}}));
        assert_eq!(status, 200);
        let d = &body["data"];
        assert_eq!(d["version"], 1);
        assert_eq!(d["deletion_time"], "");
        assert_eq!(d["destroyed"], false);
        assert_eq!(d["custom_metadata"], Value::Null);
        assert!(d["created_time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(body["mount_type"], "kv");

        let (status, body) = s.get("secret/data/app/db");
        assert_eq!(status, 200);
        assert_eq!(body["data"]["data"], json!({"user": "u", "n": 1}));
        assert_eq!(body["data"]["metadata"]["version"], 1);
        assert_eq!(body["data"]["metadata"]["created_time"], d["created_time"]);
        assert_eq!(body["warnings"], Value::Null);

        assert_eq!(s.put("app/db", json!({"user": "v"})), 2);
        let (_, body) = s.get("secret/data/app/db?version=1");
        assert_eq!(body["data"]["data"]["user"], "u");
        let (_, body) = s.get("secret/data/app/db?version=0");
        assert_eq!(body["data"]["data"]["user"], "v");
        // `app` and `app/db` are different secrets.
        assert_eq!(s.get("secret/data/app").0, 404);
    }

    #[test]
    fn read_errors() {
        let s = Server::new();
        assert_eq!(s.get("secret/data/nope"), (404, json!({"errors": []})));
        s.put("app", json!({"a": 1}));
        assert_eq!(
            s.get("secret/data/app?version=7"),
            (404, json!({"errors": []}))
        );
        let (status, body) = s.get("secret/data/app?version=abc");
        assert_eq!(status, 400);
        assert!(body["errors"][0].as_str().unwrap().contains("version"));
        // A repeated parameter is a list, which an integer field refuses.
        assert_eq!(s.get("secret/data/app?version=1&version=1").0, 400);
        let (status, body) = s.get("secret/data/app?foo=1");
        assert_eq!(status, 200);
        assert_eq!(
            body["warnings"],
            json!(["Endpoint ignored these unrecognized parameters: [foo]"])
        );
    }

    #[test]
    fn write_validation() {
        let s = Server::new();
        let (status, body) = s.post("secret/data/app", json!({"options": {}}));
        assert_eq!(
            (status, body),
            (400, json!({"errors": ["no data provided"]}))
        );
        assert_eq!(s.post("secret/data/app", json!({"data": "x"})).0, 400);
        assert_eq!(s.post("secret/data/app", json!({"data": [1]})).0, 400);
        assert_eq!(
            s.post("secret/data/app", json!({"data": {}, "options": 3}))
                .0,
            400
        );
        // A JSON string holding an object is accepted, as Vault's parser does.
        assert_eq!(
            s.post("secret/data/app", json!({"data": "{\"a\":1}"})).0,
            200
        );
        // `"data": null` is kept, and read back, as null.
        assert_eq!(s.post("secret/data/empty", json!({"data": null})).0, 200);
        let (status, body) = s.get("secret/data/empty");
        assert_eq!((status, &body["data"]["data"]), (200, &Value::Null));
        assert_eq!(body["data"]["metadata"]["version"], 1);
        assert_eq!(
            s.get("secret/subkeys/empty").1["data"]["subkeys"],
            Value::Null
        );
        assert!(s.keys().iter().all(|k| !k.contains("nope")));
    }

    #[test]
    fn check_and_set() {
        let s = Server::new();
        let cas = |n: Value| json!({"data": {"a": 1}, "options": {"cas": n}});
        let mismatch =
            json!({"errors": ["check-and-set parameter did not match the current version"]});
        assert_eq!(
            s.post("secret/data/app", cas(json!(1))),
            (400, mismatch.clone())
        );
        assert_eq!(s.post("secret/data/app", cas(json!(0))).0, 200);
        assert_eq!(
            s.post("secret/data/app", cas(json!(0))),
            (400, mismatch.clone())
        );
        assert_eq!(s.post("secret/data/app", cas(json!("1"))).0, 200);
        // Vault's int parsing refuses a number written with a fraction or an exponent.
        assert_eq!(s.post("secret/data/app", cas(json!(2.0))).0, 400);
        assert_eq!(s.post("secret/data/app", cas(json!("0x2"))).0, 200);
        assert_eq!(s.post("secret/data/app", cas(json!(-1))), (400, mismatch));
        let (status, body) = s.post("secret/data/app", cas(json!("abc")));
        assert_eq!(
            (status, body),
            (
                400,
                json!({"errors": ["error parsing check-and-set parameter"]})
            )
        );
        assert_eq!(s.post("secret/data/app", cas(json!([3]))).0, 400);

        let required = json!({"errors": ["check-and-set parameter required for this call"]});
        // Required by the secret's metadata...
        assert_eq!(
            s.post("secret/metadata/app", json!({"cas_required": true}))
                .0,
            204
        );
        assert_eq!(
            s.post("secret/data/app", json!({"data": {}})),
            (400, required.clone())
        );
        assert_eq!(s.post("secret/data/app", cas(json!(3))).0, 200);
        // ...or by the mount's config, for every secret.
        assert_eq!(
            s.post("secret/config", json!({"cas_required": true})).0,
            204
        );
        assert_eq!(
            s.post("secret/data/other", json!({"data": {}})),
            (400, required)
        );
        assert_eq!(s.post("secret/data/other", cas(json!(0))).0, 200);
    }

    #[test]
    fn prunes_versions_beyond_max_versions() {
        let s = Server::new();
        for i in 1..=12 {
            assert_eq!(s.put("app", json!({ "i": i })), i);
        }
        let (_, body) = s.get("secret/metadata/app");
        let meta = &body["data"];
        assert_eq!(meta["oldest_version"], 3);
        assert_eq!(meta["current_version"], 12);
        assert_eq!(meta["versions"].as_object().unwrap().len(), 10);
        assert!(meta["versions"].get("2").is_none());
        assert_eq!(s.get("secret/data/app?version=2").0, 404);
        assert_eq!(s.get("secret/data/app?version=3").1["data"]["data"]["i"], 3);
        let data_keys = s
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("versions/"))
            .count();
        assert_eq!(data_keys, 10);

        // The mount's limit applies to secrets that set none.
        assert_eq!(s.post("secret/config", json!({"max_versions": 2})).0, 204);
        s.put("other", json!({}));
        s.put("other", json!({}));
        s.put("other", json!({}));
        let (_, body) = s.get("secret/metadata/other");
        assert_eq!(body["data"]["oldest_version"], 2);
        assert_eq!(body["data"]["versions"].as_object().unwrap().len(), 2);
    }

    #[test]
    fn delete_version_after_sets_a_future_deletion_time() {
        let s = Server::new();
        assert_eq!(
            s.post("secret/config", json!({"delete_version_after": "1h"}))
                .0,
            204
        );
        let (_, body) = s.post("secret/data/app", json!({"data": {"a": 1}}));
        let deletion = body["data"]["deletion_time"].as_str().unwrap().to_string();
        assert!(!deletion.is_empty());
        // Not yet reached: the version is still readable.
        let (status, body) = s.get("secret/data/app");
        assert_eq!(status, 200);
        assert_eq!(body["data"]["metadata"]["deletion_time"], deletion.as_str());
        // Once reached, reads answer 404 with the metadata.
        s.edit_metadata("app", |m| {
            if let Some(v) = m.versions.get_mut(&1) {
                v.deletion_time = 1;
            }
        });
        assert_eq!(s.get("secret/data/app").0, 404);
        // A negative mount setting disables it.
        assert_eq!(
            s.post("secret/config", json!({"delete_version_after": -1}))
                .0,
            204
        );
        let (_, body) = s.post("secret/data/app", json!({"data": {"a": 1}}));
        assert_eq!(body["data"]["deletion_time"], "");
    }

    #[test]
    fn deleted_and_destroyed_versions_read_as_404_with_metadata() {
        let s = Server::new();
        s.put("app", json!({"a": 1}));
        s.put("app", json!({"a": 2}));
        assert_eq!(
            s.call("DELETE", "secret/data/app", Value::Null),
            (204, Value::Null)
        );
        let (status, body) = s.get("secret/data/app");
        assert_eq!(status, 404);
        assert_eq!(body["data"]["data"], Value::Null);
        let meta = &body["data"]["metadata"];
        assert_eq!(meta["version"], 2);
        assert_ne!(meta["deletion_time"], "");
        assert_eq!(meta["destroyed"], false);
        assert!(body["request_id"].is_string());
        assert_eq!(body["mount_type"], "kv");
        // The older version is untouched.
        assert_eq!(s.get("secret/data/app?version=1").0, 200);
        // Deleting again, or a missing secret, is still 204.
        assert_eq!(s.call("DELETE", "secret/data/app", Value::Null).0, 204);
        assert_eq!(s.call("DELETE", "secret/data/nope", Value::Null).0, 204);
        assert!(s.keys().iter().all(|k| !k.ends_with("nope")));

        assert_eq!(
            s.post("secret/destroy/app", json!({"versions": [1]})).0,
            204
        );
        let (status, body) = s.get("secret/data/app?version=1");
        assert_eq!(status, 404);
        assert_eq!(body["data"]["metadata"]["destroyed"], true);
        assert_eq!(body["data"]["metadata"]["deletion_time"], "");
    }

    #[test]
    fn patch_merges_into_the_current_version() {
        let s = Server::new();
        // A missing secret: 404 without a body, as Vault's KV engine answers.
        assert_eq!(
            s.call("PATCH", "secret/data/app", json!({"data": {"a": 1}})),
            (404, Value::Null)
        );
        s.put("app", json!({"a": 1, "b": {"c": 2, "d": 3}, "e": "x"}));
        let (status, body) = s.call(
            "PATCH",
            "secret/data/app",
            json!({"data": {"a": null, "b": {"c": 5}, "f": [1]}, "options": {"cas": 1}}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["version"], 2);
        let (_, body) = s.get("secret/data/app");
        assert_eq!(
            body["data"]["data"],
            json!({"b": {"c": 5, "d": 3}, "e": "x", "f": [1]})
        );

        let (status, body) = s.call("PATCH", "secret/data/app", json!({"options": {"cas": 2}}));
        assert_eq!(
            (status, body),
            (400, json!({"errors": ["no data provided"]}))
        );
        let (status, _) = s.call(
            "PATCH",
            "secret/data/app",
            json!({"data": {}, "options": {"cas": 1}}),
        );
        assert_eq!(status, 400);

        // A deleted current version cannot be patched.
        assert_eq!(s.call("DELETE", "secret/data/app", Value::Null).0, 204);
        let (status, body) = s.call("PATCH", "secret/data/app", json!({"data": {"a": 1}}));
        assert_eq!(status, 404);
        assert_eq!(body["data"]["version"], 2);
        assert_ne!(body["data"]["deletion_time"], "");
        // Metadata without versions: nothing to patch.
        assert_eq!(
            s.post("secret/metadata/empty", json!({"max_versions": 3}))
                .0,
            204
        );
        assert_eq!(
            s.call("PATCH", "secret/data/empty", json!({"data": {"a": 1}})),
            (404, Value::Null)
        );
    }

    #[test]
    fn patch_with_null_data() {
        let s = Server::new();
        s.put("app", json!({"a": 1}));
        // `"data": null` replaces the whole secret (RFC 7396)...
        let (status, body) = s.call("PATCH", "secret/data/app", json!({"data": null}));
        assert_eq!((status, &body["data"]["version"]), (200, &json!(2)));
        assert_eq!(s.get("secret/data/app").1["data"]["data"], Value::Null);
        // ...and a patch of a null version starts from an empty object.
        let (status, _) = s.call("PATCH", "secret/data/app", json!({"data": {"b": 2}}));
        assert_eq!(status, 200);
        assert_eq!(s.get("secret/data/app").1["data"]["data"], json!({"b": 2}));
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = obj(json!({"a": "b", "c": {"d": "e", "f": "g"}, "h": 1}));
        merge_patch(
            &mut target,
            &obj(json!({"a": "z", "c": {"f": null}, "h": {"i": 2}})),
        );
        assert_eq!(
            Value::Object(target),
            json!({"a": "z", "c": {"d": "e"}, "h": {"i": 2}})
        );
        let mut target = obj(json!({}));
        merge_patch(&mut target, &obj(json!({"a": {"b": null, "c": 1}})));
        assert_eq!(Value::Object(target), json!({"a": {"c": 1}}));
    }
}
