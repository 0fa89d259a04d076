//! ACL policies: `sys/policies/acl` (LIST), `sys/policies/acl/:name` (read,
//! write, delete) and the legacy `sys/policy` routes, whose bodies name the
//! document `rules` and copy `data` to the top level. The host stores and
//! parses the policies (the `policies` import): it lower-cases names, keeps
//! `root` unchangeable and `default` undeletable, and refuses a document that
//! does not parse with Vault's message.

use serde_json::json;

use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec};
use crate::storage::Tx;

const POLICY: FieldSpec = FieldSpec::string("policy")
    .describe("The policy document, in HCL or JSON; a base64-encoded document is decoded.");

/// The fields of `sys/policies/acl/:name`.
pub const FIELDS: &[FieldSpec] = &[POLICY];

/// The fields of the legacy `sys/policy/:name`.
pub const LEGACY_FIELDS: &[FieldSpec] = &[
    POLICY,
    FieldSpec::string("rules").describe("The policy document (deprecated: use policy)."),
];

/// The parameter of both.
pub const NAME: &[FieldSpec] = &[FieldSpec::string("name").describe("The name of the policy.")];

fn names(call: &Call) -> ApiResult<Vec<String>> {
    Ok(call.env.policies.list()?)
}

/// `LIST sys/policies/acl`.
pub fn list(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    Ok(Reply::data(json!({ "keys": names(call)? })))
}

/// `GET` or `LIST sys/policy`: the names under both `keys` and `policies`.
pub fn list_legacy(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let names = names(call)?;
    Ok(Reply::data(json!({ "keys": names, "policies": names })).with_data_at_top_level())
}

/// `GET sys/policies/acl/:name`: `name` and `policy`.
pub fn read(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let policy = call
        .env
        .policies
        .read(call.param("name"))?
        .ok_or(ApiError::NotFound)?;
    Ok(Reply::data(
        json!({ "name": policy.name, "policy": policy.text }),
    ))
}

/// `GET sys/policy/:name`: `name` and `rules`.
pub fn read_legacy(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let policy = call
        .env
        .policies
        .read(call.param("name"))?
        .ok_or(ApiError::NotFound)?;
    Ok(Reply::data(json!({ "name": policy.name, "rules": policy.text })).with_data_at_top_level())
}

/// Writes the policy named by the path with `text`; a name with capitals is
/// stored lower-cased, with Vault's warning.
fn write_named(call: &Call, text: &str) -> ApiResult<Reply> {
    let name = call.param("name");
    call.env.policies.write(name, text)?;
    let lower = name.trim().to_lowercase();
    Ok(Reply::no_content()
        .with_warning((lower != name).then(|| format!("policy name was converted to {lower}"))))
}

/// `POST/PUT sys/policies/acl/:name`.
pub fn write(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    write_named(call, call.fields.string("policy").unwrap_or_default())
}

/// `POST/PUT sys/policy/:name`: `policy`, or the deprecated `rules`.
pub fn write_legacy(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    match (call.fields.string("policy"), call.fields.string("rules")) {
        (Some(policy), _) => write_named(call, policy),
        (None, Some(rules)) => Ok(write_named(call, rules)?.with_warning(Some(
            "'rules' is deprecated, please use 'policy' instead".to_string(),
        ))),
        (None, None) => write_named(call, ""),
    }
}

/// `DELETE sys/policies/acl/:name` and `sys/policy/:name`.
pub fn delete(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    call.env.policies.delete(call.param("name"))?;
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::env::Fakes;
    use crate::testing::call;

    #[test]
    fn crud_and_legacy_shapes() {
        let f = Fakes::default();
        let env = f.env();
        let text = r#"path "secret/*" { capabilities = ["read"] }"#;
        let (status, body) = call(
            &env,
            "PUT",
            "sys/policies/acl/reader",
            &json!({"policy": text}),
        );
        assert_eq!((status, body), (204, Value::Null));
        let (status, body) = call(
            &env,
            "PUT",
            "sys/policies/acl/Loud",
            &json!({"policy": text}),
        );
        assert_eq!(status, 200);
        assert_eq!(
            body["warnings"],
            json!(["policy name was converted to loud"])
        );

        let (status, body) = call(&env, "GET", "sys/policies/acl/reader", &Value::Null);
        assert_eq!(status, 200);
        assert_eq!(body["data"], json!({"name": "reader", "policy": text}));
        assert!(body.get("policy").is_none());
        let (status, body) = call(&env, "GET", "sys/policies/acl/LOUD", &Value::Null);
        assert_eq!((status, body["data"]["name"].clone()), (200, json!("loud")));
        let (status, body) = call(&env, "GET", "sys/policies/acl/root", &Value::Null);
        assert_eq!(
            (status, body["data"].clone()),
            (200, json!({"name": "root", "policy": ""}))
        );
        let (status, body) = call(&env, "GET", "sys/policies/acl/nope", &Value::Null);
        assert_eq!((status, body), (404, json!({"errors": []})));

        let keys = json!(["default", "loud", "reader", "root"]);
        let (status, body) = call(&env, "LIST", "sys/policies/acl", &Value::Null);
        assert_eq!((status, body["data"].clone()), (200, json!({"keys": keys})));
        let (status, _) = call(&env, "GET", "sys/policies/acl?list=true", &Value::Null);
        assert_eq!(status, 200);
        // GET without list is not served.
        let (status, _) = call(&env, "GET", "sys/policies/acl", &Value::Null);
        assert_eq!(status, 405);

        // Legacy routes: `keys` and `policies`, also at the top level; `rules`.
        for method in ["GET", "LIST"] {
            let (status, body) = call(&env, method, "sys/policy", &Value::Null);
            assert_eq!(status, 200);
            assert_eq!(body["data"], json!({"keys": keys, "policies": keys}));
            assert_eq!(body["policies"], keys);
        }
        let (_, body) = call(&env, "GET", "sys/policy/reader", &Value::Null);
        assert_eq!(body["data"], json!({"name": "reader", "rules": text}));
        assert_eq!(body["rules"], text);
        let (status, body) = call(&env, "PUT", "sys/policy/old", &json!({"rules": text}));
        assert_eq!(status, 200);
        assert_eq!(body["data"], Value::Null);
        assert_eq!(
            body["warnings"],
            json!(["'rules' is deprecated, please use 'policy' instead"])
        );
        let (status, _) = call(&env, "PUT", "sys/policy/new", &json!({"policy": text}));
        assert_eq!(status, 204);

        // The host's refusals come back as 400s with its message.
        for (method, path, body, message) in [
            (
                "PUT",
                "sys/policies/acl/root",
                json!({"policy": text}),
                "cannot update \"root\" policy",
            ),
            (
                "PUT",
                "sys/policies/acl/x",
                json!({}),
                "'policy' parameter not supplied or empty",
            ),
            (
                "PUT",
                "sys/policy/x",
                json!({}),
                "'policy' parameter not supplied or empty",
            ),
            (
                "PUT",
                "sys/policies/acl/x",
                json!({"policy": "invalid"}),
                "failed to parse policy: invalid",
            ),
            (
                "DELETE",
                "sys/policies/acl/default",
                Value::Null,
                "cannot delete default policy",
            ),
            (
                "DELETE",
                "sys/policy/root",
                Value::Null,
                "cannot delete \"root\" policy",
            ),
        ] {
            let (status, body) = call(&env, method, path, &body);
            assert_eq!(
                (status, body),
                (400, json!({"errors": [message]})),
                "{method} {path}"
            );
        }

        for path in [
            "sys/policies/acl/reader",
            "sys/policy/old",
            "sys/policies/acl/never",
        ] {
            assert_eq!(call(&env, "DELETE", path, &Value::Null).0, 204, "{path}");
        }
        let (_, body) = call(&env, "LIST", "sys/policies/acl", &Value::Null);
        assert_eq!(
            body["data"]["keys"],
            json!(["default", "loud", "new", "root"])
        );
    }
}
