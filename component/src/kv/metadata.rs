//! `<mount>/metadata/<path>`: read, write, patch, delete and list secrets'
//! metadata (Vault's `path_metadata.go`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::api::{LogicalRequest, Reply};
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec, FieldType, Fields};
use crate::storage::Tx;
use crate::time;

use super::record::{KeyMetadata, Kv, KvConfig};
use super::{given, max_versions, secret_path};

pub const FIELDS: &[FieldSpec] = &[
    FieldSpec::new("max_versions", FieldType::Int)
        .describe("Versions the secret keeps; 0 uses the mount's setting."),
    FieldSpec::new("cas_required", FieldType::Bool)
        .describe("Whether every data write of the secret must give options.cas."),
    FieldSpec::new("delete_version_after", FieldType::Duration).describe(
        "How long versions of the secret live before they are deleted automatically; 0 never.",
    ),
    FieldSpec::new("custom_metadata", FieldType::Map).describe(
        "Up to 64 string pairs kept with the secret (keys up to 128 bytes, values up to 512).",
    ),
    FieldSpec::new("exclude_deleted", FieldType::Bool).describe(
        "Whether a list leaves out secrets whose current version is deleted or destroyed.",
    ),
];

const SETTINGS: [&str; 4] = [
    "max_versions",
    "cas_required",
    "delete_version_after",
    "custom_metadata",
];

const MAX_CUSTOM_KEYS: usize = 64;
const MAX_CUSTOM_KEY_LEN: usize = 128;
const MAX_CUSTOM_VALUE_LEN: usize = 512;
const CUSTOM_PREFIX: &str = "custom_metadata validation failed";

/// `GET <mount>/metadata/<path>`.
pub fn read(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    read_metadata(&mut Kv::new(tx, call.mount()?), secret_path(call))
}

/// `LIST <mount>/metadata/<folder>`.
pub fn list(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    list_folder(
        &mut Kv::new(tx, call.mount()?),
        call.param("path"),
        &call.fields,
    )
}

/// `POST <mount>/metadata/<path>`.
pub fn write(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    write_metadata(
        &mut Kv::new(tx, call.mount()?),
        secret_path(call),
        &call.fields,
        call.req,
    )
}

/// `PATCH <mount>/metadata/<path>`.
pub fn patch(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    patch_metadata(
        &mut Kv::new(tx, call.mount()?),
        secret_path(call),
        &call.fields,
        call.req,
    )
}

/// `DELETE <mount>/metadata/<path>`: the secret and all its versions.
pub fn delete(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    delete_secret(&mut Kv::new(tx, call.mount()?), secret_path(call))
}

fn read_metadata(kv: &mut Kv, path: &str) -> ApiResult<Reply> {
    let meta = kv.metadata(path)?.ok_or(ApiError::NotFound)?;
    let versions: Map<String, Value> = meta
        .versions
        .iter()
        .map(|(n, vm)| {
            let v = json!({
                "created_time": time::rfc3339(vm.created_time),
                "deletion_time": time::rfc3339(vm.deletion_time),
                "destroyed": vm.destroyed,
            });
            (n.to_string(), v)
        })
        .collect();
    Ok(Reply::data(json!({
        "cas_required": meta.cas_required,
        "created_time": time::rfc3339(meta.created_time),
        "current_version": meta.current_version,
        "custom_metadata": meta.custom_metadata_json(),
        "delete_version_after": time::format_duration(meta.delete_version_after),
        "max_versions": meta.max_versions,
        "oldest_version": meta.oldest_version,
        "updated_time": time::rfc3339(meta.updated_time),
        "versions": versions,
    })))
}

/// The secrets and folders under `folder`; `exclude_deleted` drops secrets whose
/// current version is deleted or destroyed. Nothing to list is a 404.
fn list_folder(kv: &mut Kv, folder: &str, fields: &Fields) -> ApiResult<Reply> {
    let mut keys = kv.list(folder)?;
    if fields.bool("exclude_deleted") == Some(true) {
        let now = time::now();
        let mut kept = Vec::with_capacity(keys.len());
        for key in keys {
            let gone = !key.ends_with('/')
                && kv
                    .metadata(&format!("{folder}{key}"))?
                    .and_then(|m| m.version(0))
                    .is_some_and(|(_, vm)| !vm.is_live(now));
            if !gone {
                kept.push(key);
            }
        }
        keys = kept;
    }
    Reply::keys(keys)
}

/// A secret has a name. (A path ending in `/` never gets here: the HTTP
/// layer refuses writes to one, and reads ignore the slash.)
fn check_path(path: &str) -> ApiResult<()> {
    if path.is_empty() {
        return Err(ApiError::bad_request("missing path"));
    }
    Ok(())
}

/// Creates the metadata if missing and sets the settings given; 204.
fn write_metadata(
    kv: &mut Kv,
    path: &str,
    fields: &Fields,
    req: &LogicalRequest,
) -> ApiResult<Reply> {
    check_path(path)?;
    if !SETTINGS.iter().any(|f| given(req, f)) {
        return Ok(Reply::no_content());
    }
    let custom = if given(req, "custom_metadata") {
        Some(custom_metadata(fields.map("custom_metadata"), false)?)
    } else {
        None
    };
    let config = kv.config()?;
    let warning = cas_warning(&config, fields, req);
    let now = time::now();
    let mut meta = kv.metadata(path)?.unwrap_or_else(|| KeyMetadata {
        created_time: now,
        updated_time: now,
        ..KeyMetadata::default()
    });
    apply_settings(&mut meta, fields, req)?;
    if let Some(custom) = custom {
        meta.custom_metadata = custom;
    }
    kv.put_metadata(path, &meta)?;
    Ok(Reply::no_content().with_warning(warning))
}

/// JSON merge patch of the settings into existing metadata; 204, or 404
/// without a body when the secret does not exist.
fn patch_metadata(
    kv: &mut Kv,
    path: &str,
    fields: &Fields,
    req: &LogicalRequest,
) -> ApiResult<Reply> {
    check_path(path)?;
    let changes = fields.map("custom_metadata");
    if let Some(changes) = changes {
        custom_metadata(Some(changes), true)?;
    }
    let config = kv.config()?;
    let Some(mut meta) = kv.metadata(path)? else {
        return Ok(Reply::empty(404));
    };
    let warning = cas_warning(&config, fields, req);
    apply_settings(&mut meta, fields, req)?;
    match changes {
        Some(changes) => {
            for (key, value) in changes {
                match value {
                    Value::Null => meta.custom_metadata.remove(key),
                    other => meta
                        .custom_metadata
                        .insert(key.clone(), weak_string(other).unwrap_or_default()),
                };
            }
            validate_custom_metadata(&meta.custom_metadata)?;
        }
        None if given(req, "custom_metadata") => meta.custom_metadata.clear(),
        None => {}
    }
    kv.put_metadata(path, &meta)?;
    Ok(Reply::no_content().with_warning(warning))
}

/// Removes the metadata and every version's data; 204 even when absent.
fn delete_secret(kv: &mut Kv, path: &str) -> ApiResult<Reply> {
    if let Some(meta) = kv.metadata(path)? {
        kv.delete_secret(path, &meta);
        kv.secret_changed(path);
    }
    Ok(Reply::no_content())
}

/// Sets the scalar settings the request names; an explicit `null` resets one.
fn apply_settings(meta: &mut KeyMetadata, fields: &Fields, req: &LogicalRequest) -> ApiResult<()> {
    if given(req, "max_versions") {
        meta.max_versions = max_versions(fields)?;
    }
    if given(req, "cas_required") {
        meta.cas_required = fields.bool("cas_required").unwrap_or(false);
    }
    if given(req, "delete_version_after") {
        meta.delete_version_after = match fields.duration("delete_version_after").unwrap_or(0) {
            secs if secs < 0 => {
                return Err(ApiError::bad_request(format!(
                    "cannot provide negative value '{secs}' for delete_version_after"
                )));
            }
            secs => secs,
        };
    }
    Ok(())
}

fn cas_warning(config: &KvConfig, fields: &Fields, req: &LogicalRequest) -> Option<String> {
    let disabling = given(req, "cas_required") && fields.bool("cas_required") != Some(true);
    (disabling && config.cas_required).then(|| {
        "\"cas_required\" set to false, but is mandated by backend config. This value will be ignored."
            .to_string()
    })
}

/// A custom-metadata value decoded the way Go's `mapstructure.WeakDecode` fills a string.
fn weak_string(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Converts and validates a `custom_metadata` map; `skip_nulls` for patches,
/// where `null` removes a key.
fn custom_metadata(
    raw: Option<&Map<String, Value>>,
    skip_nulls: bool,
) -> ApiResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (key, value) in raw.into_iter().flatten() {
        if skip_nulls && value.is_null() {
            continue;
        }
        let s = weak_string(value).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{CUSTOM_PREFIX}: the value of key {key:?} must be a string"
            ))
        })?;
        out.insert(key.clone(), s);
    }
    validate_custom_metadata(&out)?;
    Ok(out)
}

/// Vault's limits: at most 64 keys; keys of 1 to 128 bytes and values of 1 to
/// 512 bytes, printable. Errors are listed the way go-multierror prints them.
fn validate_custom_metadata(map: &BTreeMap<String, String>) -> ApiResult<()> {
    let mut errors = Vec::new();
    if map.len() > MAX_CUSTOM_KEYS {
        errors.push(format!(
            "{CUSTOM_PREFIX}: payload must contain at most {MAX_CUSTOM_KEYS} keys, provided {}",
            map.len()
        ));
    } else {
        for (key, value) in map {
            if key.is_empty() || key.len() > MAX_CUSTOM_KEY_LEN {
                errors.push(format!(
                    "{CUSTOM_PREFIX}: length of key {key:?} is {} but must be 0 < len(key) <= {MAX_CUSTOM_KEY_LEN}",
                    key.len()
                ));
            }
            if value.is_empty() || value.len() > MAX_CUSTOM_VALUE_LEN {
                errors.push(format!(
                    "{CUSTOM_PREFIX}: length of value for key {key:?} is {} but must be 0 < len(value) <= {MAX_CUSTOM_VALUE_LEN}",
                    value.len()
                ));
            }
            if !printable(key) {
                errors.push(format!(
                    "{CUSTOM_PREFIX}: key {key:?} contains unprintable characters"
                ));
            }
            if !printable(value) {
                errors.push(format!(
                    "{CUSTOM_PREFIX}: value for key {key:?} contains unprintable characters"
                ));
            }
        }
    }
    match errors.len() {
        0 => Ok(()),
        n => {
            let noun = if n == 1 { "error" } else { "errors" };
            let items: String = errors.iter().map(|e| format!("\t* {e}\n")).collect();
            Err(ApiError::BadRequest(format!(
                "{n} {noun} occurred:\n{items}\n"
            )))
        }
    }
}

/// Go's `unicode.IsPrint` for every character: no control characters, and no
/// white space but the plain space.
fn printable(s: &str) -> bool {
    s.chars()
        .all(|c| c == ' ' || !(c.is_control() || c.is_whitespace()))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::testing::Server;
    use super::*;

    #[test]
    fn read_shows_versions_and_settings() {
        let s = Server::new();
        assert_eq!(s.get("secret/metadata/app"), (404, json!({"errors": []})));
        s.put("app", json!({"a": 1}));
        s.put("app", json!({"a": 2}));
        let (status, body) = s.get("secret/metadata/app");
        assert_eq!(status, 200);
        let d = &body["data"];
        assert_eq!(d["cas_required"], false);
        assert_eq!(d["current_version"], 2);
        assert_eq!(d["oldest_version"], 0);
        assert_eq!(d["max_versions"], 0);
        assert_eq!(d["delete_version_after"], "0s");
        assert_eq!(d["custom_metadata"], Value::Null);
        assert_eq!(d["created_time"], d["versions"]["1"]["created_time"]);
        assert_eq!(d["updated_time"], d["versions"]["2"]["created_time"]);
        assert_eq!(
            d["versions"]["2"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            vec!["created_time", "deletion_time", "destroyed"]
        );
        assert_eq!(d.as_object().unwrap().len(), 9);
    }

    #[test]
    fn write_creates_and_updates_settings() {
        let s = Server::new();
        let body = json!({
            "max_versions": "5",
            "cas_required": "true",
            "delete_version_after": "1h30m",
            "custom_metadata": {"owner": "ops", "n": 3},
        });
        assert_eq!(s.post("secret/metadata/app", body), (204, Value::Null));
        let (_, body) = s.get("secret/metadata/app");
        let d = &body["data"];
        assert_eq!(d["max_versions"], 5);
        assert_eq!(d["cas_required"], true);
        assert_eq!(d["delete_version_after"], "1h30m0s");
        assert_eq!(d["custom_metadata"], json!({"owner": "ops", "n": "3"}));
        assert_eq!(d["current_version"], 0);
        assert_eq!(d["versions"], json!({}));
        assert_ne!(d["created_time"], "");
        // Fields not given keep their values; custom_metadata is replaced whole.
        assert_eq!(
            s.post(
                "secret/metadata/app",
                json!({"custom_metadata": {"x": "y"}})
            )
            .0,
            204
        );
        let d = s.get("secret/metadata/app").1["data"].clone();
        assert_eq!(
            (d["max_versions"].clone(), d["custom_metadata"].clone()),
            (json!(5), json!({"x": "y"}))
        );
        // Data writes show the secret's custom metadata.
        let (_, body) = s.post(
            "secret/data/app",
            json!({"data": {}, "options": {"cas": 0}}),
        );
        assert_eq!(body["data"]["custom_metadata"], json!({"x": "y"}));
        assert_eq!(
            s.get("secret/data/app").1["data"]["metadata"]["custom_metadata"],
            json!({"x": "y"})
        );
        // An explicit null resets a setting.
        assert_eq!(
            s.post(
                "secret/metadata/app",
                json!({"max_versions": null, "custom_metadata": null})
            )
            .0,
            204
        );
        let d = s.get("secret/metadata/app").1["data"].clone();
        assert_eq!(
            (d["max_versions"].clone(), d["custom_metadata"].clone()),
            (json!(0), Value::Null)
        );
        // Nothing to set: nothing is created.
        assert_eq!(
            s.post("secret/metadata/other", json!({})),
            (204, Value::Null)
        );
        assert_eq!(s.get("secret/metadata/other").0, 404);
    }

    #[test]
    fn write_validation() {
        let s = Server::new();
        let err = |body: Value| {
            let (status, body) = s.post("secret/metadata/app", body);
            assert_eq!(status, 400, "{body}");
            body["errors"][0].as_str().unwrap().to_string()
        };
        assert!(err(json!({"max_versions": "x"})).contains("max_versions"));
        assert!(err(json!({"max_versions": -1})).contains("max_versions"));
        assert!(err(json!({"max_versions": 7.0})).contains("max_versions"));
        assert!(err(json!({"max_versions": 1e1})).contains("max_versions"));
        assert!(err(json!({"cas_required": "maybe"})).contains("cas_required"));
        assert!(err(json!({"delete_version_after": "soon"})).contains("delete_version_after"));
        assert!(err(json!({"delete_version_after": "-1h"})).contains("negative"));
        assert!(err(json!({"custom_metadata": "x"})).contains("custom_metadata"));
        assert!(err(json!({"custom_metadata": {"k": [1]}})).contains(CUSTOM_PREFIX));
        let many: Map<String, Value> = (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(err(json!({ "custom_metadata": many })).contains("at most 64 keys, provided 65"));
        let e = err(json!({"custom_metadata": {"k".repeat(129): "v", "e": "", "c": "a\u{7}"}}));
        assert!(e.starts_with("3 errors occurred:\n\t* "), "{e}");
        assert!(e.contains("0 < len(key) <= 128"));
        assert!(e.contains("0 < len(value) <= 512"));
        assert!(e.contains("unprintable"));
        assert!(
            err(json!({"custom_metadata": {"k": "v".repeat(513)}}))
                .starts_with("1 error occurred:")
        );
    }

    #[test]
    fn root_and_folder_paths_are_not_secrets() {
        let s = Server::new();
        let refused = json!({"errors": ["cannot write to a path ending in '/'"]});
        assert_eq!(
            s.post("secret/metadata/", json!({"max_versions": 1})),
            (400, refused.clone())
        );
        assert_eq!(
            s.post("secret/metadata/app/", json!({"max_versions": 1})),
            (400, refused.clone())
        );
        assert_eq!(
            s.call("PATCH", "secret/metadata/", json!({"max_versions": 1})),
            (400, refused)
        );
        assert_eq!(s.get("secret/metadata/"), (404, json!({"errors": []})));
        assert_eq!(s.call("DELETE", "secret/metadata/", Value::Null).0, 204);
    }

    #[test]
    fn a_read_with_list_false_warns_of_it() {
        let s = Server::new();
        s.put("app", json!({"a": 1}));
        let (status, body) = s.get("secret/metadata/app?list=false");
        assert_eq!(status, 200);
        assert_eq!(
            body["warnings"],
            json!(["Endpoint ignored these unrecognized parameters: [list]"])
        );
    }

    #[test]
    fn a_trailing_slash_names_the_same_secret() {
        let s = Server::new();
        s.put("app", json!({"a": 1}));
        let (status, body) = s.get("secret/metadata/app/");
        assert_eq!(status, 200);
        assert_eq!(body["data"]["current_version"], 1);
        assert_eq!(s.get("secret/data/app/").1["data"]["data"], json!({"a": 1}));
        assert_eq!(s.get("secret/subkeys/app//").0, 200);
        assert_eq!(s.call("DELETE", "secret/data/app/", Value::Null).0, 204);
        assert_eq!(s.get("secret/data/app").0, 404);
        assert_eq!(s.call("DELETE", "secret/metadata/app/", Value::Null).0, 204);
        assert_eq!(s.get("secret/metadata/app"), (404, json!({"errors": []})));
        // A list still lists the folder.
        s.put("dir/x", json!({}));
        assert_eq!(
            s.call("LIST", "secret/metadata/dir/", Value::Null).1["data"]["keys"],
            json!(["x"])
        );
    }

    #[test]
    fn cas_required_false_warns_when_the_mount_requires_it() {
        let s = Server::new();
        assert_eq!(
            s.post("secret/config", json!({"cas_required": true})).0,
            204
        );
        let (status, body) = s.post("secret/metadata/app", json!({"cas_required": false}));
        assert_eq!(status, 200);
        assert!(
            body["warnings"][0]
                .as_str()
                .unwrap()
                .contains("mandated by backend config")
        );
        let (status, body) = s.call(
            "PATCH",
            "secret/metadata/app",
            json!({"cas_required": false, "zzz": 1}),
        );
        assert_eq!(status, 200);
        assert_eq!(body["warnings"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn patch_merges_settings() {
        let s = Server::new();
        // A missing secret: 404 without a body, as Vault's KV engine answers.
        assert_eq!(
            s.call("PATCH", "secret/metadata/app", json!({"max_versions": 1})),
            (404, Value::Null)
        );
        let initial = json!({"max_versions": 4, "custom_metadata": {"a": "1", "b": "2"}});
        assert_eq!(s.post("secret/metadata/app", initial).0, 204);
        let (status, _) = s.call(
            "PATCH",
            "secret/metadata/app",
            json!({"custom_metadata": {"a": null, "c": "3"}, "delete_version_after": "10s"}),
        );
        assert_eq!(status, 204);
        let d = s.get("secret/metadata/app").1["data"].clone();
        assert_eq!(d["custom_metadata"], json!({"b": "2", "c": "3"}));
        assert_eq!(d["max_versions"], 4);
        assert_eq!(d["delete_version_after"], "10s");
        // A null removes a setting; invalid values are refused.
        assert_eq!(
            s.call(
                "PATCH",
                "secret/metadata/app",
                json!({"custom_metadata": null})
            )
            .0,
            204
        );
        assert_eq!(
            s.get("secret/metadata/app").1["data"]["custom_metadata"],
            Value::Null
        );
        let long = json!({"custom_metadata": {"k": "v".repeat(513)}});
        assert_eq!(s.call("PATCH", "secret/metadata/app", long).0, 400);
        assert_eq!(
            s.call("PATCH", "secret/metadata/app", json!({"max_versions": "x"}))
                .0,
            400
        );
    }

    #[test]
    fn delete_removes_every_key_of_the_secret() {
        let s = Server::new();
        s.put("app", json!({"a": 1}));
        s.put("app", json!({"a": 2}));
        s.put("app/sub", json!({"b": 1}));
        assert_eq!(
            s.post("secret/destroy/app", json!({"versions": "1"})).0,
            204
        );
        assert_eq!(
            s.call("DELETE", "secret/metadata/app", Value::Null),
            (204, Value::Null)
        );
        assert_eq!(s.keys(), vec!["metadata/app/sub", "versions/1/app/sub"]);
        assert_eq!(s.get("secret/metadata/app").0, 404);
        assert_eq!(s.get("secret/data/app").0, 404);
        assert_eq!(s.get("secret/data/app/sub").0, 200);
        assert_eq!(
            s.call("DELETE", "secret/metadata/app/sub", Value::Null).0,
            204
        );
        assert!(s.keys().is_empty());
        assert_eq!(s.call("DELETE", "secret/metadata/app", Value::Null).0, 204);
    }

    #[test]
    fn list_shows_secrets_and_folders() {
        let s = Server::new();
        assert_eq!(
            s.call("LIST", "secret/metadata", Value::Null),
            (404, json!({"errors": []}))
        );
        for p in ["b", "a/x", "a/y/z", "a", "c/d"] {
            s.put(p, json!({}));
        }
        let (status, body) = s.call("LIST", "secret/metadata", Value::Null);
        assert_eq!(status, 200);
        assert_eq!(body["data"], json!({"keys": ["a", "a/", "b", "c/"]}));
        let (_, body) = s.get("secret/metadata/a?list=true");
        assert_eq!(body["data"]["keys"], json!(["x", "y/"]));
        assert_eq!(
            s.call("LIST", "secret/metadata/a/y", Value::Null).1["data"]["keys"],
            json!(["z"])
        );
        assert_eq!(s.call("LIST", "secret/metadata/nope", Value::Null).0, 404);
        assert_eq!(s.call("LIST", "secret/metadata/b", Value::Null).0, 404);

        // exclude_deleted drops secrets whose current version is gone.
        assert_eq!(s.call("DELETE", "secret/data/b", Value::Null).0, 204);
        assert_eq!(
            s.post("secret/destroy/a/x", json!({"versions": [1]})).0,
            204
        );
        let (_, body) = s.call("LIST", "secret/metadata?exclude_deleted=true", Value::Null);
        assert_eq!(body["data"]["keys"], json!(["a", "a/", "c/"]));
        let (_, body) = s.call(
            "LIST",
            "secret/metadata/a?exclude_deleted=true",
            Value::Null,
        );
        assert_eq!(body["data"]["keys"], json!(["y/"]));
        let (_, body) = s.call("LIST", "secret/metadata?exclude_deleted=false", Value::Null);
        assert_eq!(body["data"]["keys"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn printable_matches_go() {
        assert!(printable("a b-é✓"));
        assert!(!printable("a\tb"));
        assert!(!printable("a\u{0}"));
        assert!(!printable("a\u{2028}"));
    }
}
