//! `sys/namespaces` (LIST: the request namespace's direct children) and
//! `sys/namespaces/:path` (read, create, patch of `custom_metadata`, delete),
//! served from the host's `namespaces` import. Bodies are Vault's: `id`,
//! `path` (full, with a trailing `/`), `custom_metadata`, and OpenBao's
//! `uuid`, `locked` and `tainted`; an empty list or an unknown namespace is
//! a bare 404; a deletion answers 204, also for a namespace that does not
//! exist.

use serde_json::{Value, json};

use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec, FieldType};
use crate::namespaces::NamespaceInfo;
use crate::storage::Tx;

/// The parameter of `sys/namespaces/:path`.
pub const PATH: &[FieldSpec] = &[FieldSpec::string("path")
    .describe("The namespace's path, relative to the request's namespace (may be nested).")];

pub const FIELDS: &[FieldSpec] = &[FieldSpec::new("custom_metadata", FieldType::KvPairs)
    .null_removes_entries()
    .describe("String pairs kept with the namespace; in a PATCH, a null value removes its key.")];

fn shown(n: &NamespaceInfo) -> Value {
    json!({
        "id": n.id,
        "path": n.path,
        "uuid": n.uuid,
        "custom_metadata": n.custom_metadata,
        "locked": false,
        "tainted": false,
    })
}

/// The last segment of a namespace's path, with its `/`: its key in a list.
fn key_of(n: &NamespaceInfo) -> String {
    let name = n.path.trim_end_matches('/');
    let name = name.rsplit_once('/').map_or(name, |(_, last)| last);
    format!("{name}/")
}

/// `LIST sys/namespaces`.
pub fn list(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let children = call.env.namespaces.list()?;
    if children.is_empty() {
        return Err(ApiError::NotFound);
    }
    let keys: Vec<String> = children.iter().map(key_of).collect();
    let info: serde_json::Map<String, Value> =
        children.iter().map(|n| (key_of(n), shown(n))).collect();
    Ok(Reply::data(json!({ "keys": keys, "key_info": info })))
}

/// Whether the namespace a POST names exists (create or update).
pub fn exists(_tx: &mut Tx, call: &Call) -> ApiResult<bool> {
    Ok(call.env.namespaces.read(call.param("path"))?.is_some())
}

/// `GET sys/namespaces/:path`.
pub fn read(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let n = call
        .env
        .namespaces
        .read(call.param("path"))?
        .ok_or(ApiError::NotFound)?;
    Ok(Reply::data(shown(&n)))
}

/// `POST/PUT sys/namespaces/:path`: creates it, or replaces an existing
/// one's metadata when `custom_metadata` is given.
pub fn write(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let metadata = call.fields.string_map("custom_metadata");
    let n = call.env.namespaces.create(call.param("path"), metadata)?;
    Ok(Reply::data(shown(&n)))
}

/// `PATCH sys/namespaces/:path`: merges `custom_metadata` (a null value
/// removes its key).
pub fn patch(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let mut changes: Vec<(String, Option<String>)> = call
        .fields
        .string_map("custom_metadata")
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect();
    changes.extend(
        call.fields
            .removed("custom_metadata")
            .iter()
            .map(|k| (k.clone(), None)),
    );
    let n = call
        .env
        .namespaces
        .patch(call.param("path"), changes)?
        .ok_or_else(|| ApiError::BadRequest("namespace not found".to_string()))?;
    Ok(Reply::data(shown(&n)))
}

/// `DELETE sys/namespaces/:path`: 204, whether it existed or not; its
/// contents are removed after the answer when they are many.
pub fn delete(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    call.env.namespaces.delete(call.param("path"))?;
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::env::Fakes;
    use crate::testing::call;

    #[test]
    fn the_endpoints_in_vaults_shapes() {
        let f = Fakes::default();
        let env = f.env();
        assert_eq!(call(&env, "LIST", "sys/namespaces", &Value::Null).0, 404);
        let (status, body) = call(&env, "POST", "sys/namespaces/team-a", &Value::Null);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["path"], "team-a/");
        assert_eq!(body["data"]["custom_metadata"], json!({}));
        let (status, body) = call(
            &env,
            "PUT",
            "sys/namespaces/team-a/ci",
            &json!({"custom_metadata": {"owner": "alice"}}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["path"], "team-a/ci/");
        assert_eq!(body["data"]["custom_metadata"]["owner"], "alice");
        assert_eq!(
            call(&env, "POST", "sys/namespaces/nope/ci", &Value::Null).0,
            400
        );
        let (status, body) = call(&env, "LIST", "sys/namespaces", &Value::Null);
        assert_eq!(status, 200);
        assert_eq!(body["data"]["keys"], json!(["team-a/"]));
        assert_eq!(body["data"]["key_info"]["team-a/"]["path"], "team-a/");
        let (status, body) = call(&env, "GET", "sys/namespaces/team-a/ci", &Value::Null);
        assert_eq!((status, &body["data"]["locked"]), (200, &json!(false)));
        assert_eq!(call(&env, "GET", "sys/namespaces/zzz", &Value::Null).0, 404);
        let (status, body) = call(
            &env,
            "PATCH",
            "sys/namespaces/team-a/ci",
            &json!({"custom_metadata": {"owner": null, "team": "x"}}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["custom_metadata"], json!({"team": "x"}));
        assert_eq!(
            call(
                &env,
                "PATCH",
                "sys/namespaces/zzz",
                &json!({"custom_metadata": {}})
            )
            .0,
            400
        );
        assert_eq!(
            call(&env, "DELETE", "sys/namespaces/team-a", &Value::Null).0,
            400
        );
        for path in [
            "sys/namespaces/team-a/ci",
            "sys/namespaces/team-a",
            "sys/namespaces/zzz",
        ] {
            assert_eq!(call(&env, "DELETE", path, &Value::Null).0, 204, "{path}");
        }
        assert_eq!(call(&env, "LIST", "sys/namespaces", &Value::Null).0, 404);
    }
}
