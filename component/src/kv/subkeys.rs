//! `<mount>/subkeys/<path>`: the shape of a secret with its values replaced by
//! `null` (Vault's `path_subkeys.go`).

use serde_json::{Map, Value, json};

use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec, FieldType};
use crate::storage::Tx;
use crate::time;

use super::record::{Found, Kv};
use super::secret_path;

pub const FIELDS: &[FieldSpec] = &[
    FieldSpec::new("version", FieldType::Int)
        .describe("The version to show; 0 or absent: the current one."),
    FieldSpec::new("depth", FieldType::Int)
        .describe("How many levels of nested objects to show; 0 without limit."),
];

/// `GET <mount>/subkeys/<path>`.
pub fn read(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let fields = &call.fields;
    let requested = fields.int("version").unwrap_or(0);
    let mut kv = Kv::new(tx, call.mount()?);
    match kv.read_version(secret_path(call), requested, time::now())? {
        None => Err(ApiError::NotFound),
        Some(Found {
            metadata,
            data: None,
        }) => Ok(Reply::data(json!({ "subkeys": null, "metadata": metadata })).with_status(404)),
        Some(Found {
            metadata,
            data: Some(mut data),
        }) => {
            // A version written as `null` has `null` subkeys.
            if let Value::Object(map) = &mut data {
                strip(map, 1, fields.int("depth").unwrap_or(0));
            }
            Ok(Reply::data(
                json!({ "subkeys": data, "metadata": metadata }),
            ))
        }
    }
}

/// Replaces every value of `map` (at nesting `depth`) with `null`, except
/// non-empty objects, which are walked while `limit` is 0 (no limit) or not
/// exceeded.
fn strip(map: &mut Map<String, Value>, depth: i64, limit: i64) {
    let next = depth.saturating_add(1);
    for value in map.values_mut() {
        match value {
            Value::Object(inner) if !inner.is_empty() && (limit == 0 || next <= limit) => {
                strip(inner, next, limit);
            }
            other => *other = Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::testing::Server;

    const SECRET: &str = r#"{"a": 1, "b": {"c": "x", "d": {"e": [1, 2]}, "f": {}}, "g": null}"#;

    #[test]
    fn shows_keys_without_values() {
        let s = Server::new();
        s.put("app", serde_json::from_str(SECRET).unwrap());
        let (status, body) = s.get("secret/subkeys/app");
        assert_eq!(status, 200);
        assert_eq!(
            body["data"]["subkeys"],
            json!({"a": null, "b": {"c": null, "d": {"e": null}, "f": null}, "g": null})
        );
        assert_eq!(body["data"]["metadata"]["version"], 1);
        assert_eq!(body["data"]["metadata"]["custom_metadata"], Value::Null);
        let (_, body) = s.get("secret/subkeys/app?depth=1");
        assert_eq!(
            body["data"]["subkeys"],
            json!({"a": null, "b": null, "g": null})
        );
        let (_, body) = s.get("secret/subkeys/app?depth=2");
        assert_eq!(
            body["data"]["subkeys"]["b"],
            json!({"c": null, "d": null, "f": null})
        );
        assert_eq!(s.get("secret/subkeys/app?depth=x").0, 400);
    }

    #[test]
    fn versions_and_missing_secrets() {
        let s = Server::new();
        assert_eq!(s.get("secret/subkeys/app"), (404, json!({"errors": []})));
        assert_eq!(s.get("secret/subkeys/"), (404, json!({"errors": []})));
        s.put("app", json!({"old": 1}));
        s.put("app", json!({"new": 1}));
        assert_eq!(
            s.get("secret/subkeys/app?version=1").1["data"]["subkeys"],
            json!({"old": null})
        );
        assert_eq!(
            s.get("secret/subkeys/app?version=3"),
            (404, json!({"errors": []}))
        );
        assert_eq!(s.post("secret/delete/app", json!({"versions": [2]})).0, 204);
        let (status, body) = s.get("secret/subkeys/app");
        assert_eq!(status, 404);
        assert_eq!(body["data"]["subkeys"], Value::Null);
        assert_eq!(body["data"]["metadata"]["version"], 2);
    }
}
