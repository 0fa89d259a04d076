//! `sys/capabilities-self`, `sys/capabilities` and `sys/capabilities-accessor`:
//! the capabilities a token holds on each of some paths, as the host's
//! `policies` import computes them (names sorted, `["root"]` for a root
//! token, `["deny"]` when nothing is granted). The paths come as `paths` (a
//! list, or a comma-separated string) or as the deprecated `path` (a string
//! or a list: the Go client and the Vault CLI send one string). `data` maps
//! each path to its list, repeats the list as `capabilities` when one path
//! was asked, and is copied to the top level of the body.
//! `capabilities-self` answers for the caller whatever `token` the body
//! names (the Go client sends the caller's own).

use serde_json::{Map, Value};

use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec, FieldType};
use crate::policies::Subject;
use crate::storage::Tx;

const PATHS: FieldSpec = FieldSpec::new("paths", FieldType::CommaStringSlice)
    .describe("The paths to report the capabilities on.");
const PATH: FieldSpec = FieldSpec::new("path", FieldType::CommaStringSlice)
    .describe("The paths to report the capabilities on (deprecated: use paths).");

/// The fields of `sys/capabilities-self`.
pub const SELF_FIELDS: &[FieldSpec] = &[
    PATHS,
    PATH,
    FieldSpec::string("token").describe("Ignored: the capabilities are the caller's token's."),
];

/// The fields of `sys/capabilities`.
pub const TOKEN_FIELDS: &[FieldSpec] = &[
    FieldSpec::string("token").describe("The token to report the capabilities of."),
    PATHS,
    PATH,
];

/// The fields of `sys/capabilities-accessor`.
pub const ACCESSOR_FIELDS: &[FieldSpec] = &[
    FieldSpec::string("accessor")
        .describe("The accessor of the token to report the capabilities of."),
    PATHS,
    PATH,
];

/// `POST sys/capabilities-self`.
pub fn of_caller(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    answer(call, &Subject::Caller)
}

/// `POST sys/capabilities`.
pub fn of_token(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let token = required(call, "token", "no token found")?;
    answer(call, &Subject::Token(token))
}

/// `POST sys/capabilities-accessor`.
pub fn of_accessor(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let accessor = required(call, "accessor", "missing accessor")?;
    answer(call, &Subject::Accessor(accessor))
}

fn required(call: &Call, field: &str, missing: &str) -> ApiResult<String> {
    match call.fields.string(field).map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(ApiError::bad_request(missing)),
    }
}

fn answer(call: &Call, subject: &Subject) -> ApiResult<Reply> {
    let paths = match call.fields.strings("paths") {
        Some(paths) if !paths.is_empty() => paths,
        _ => call.fields.strings("path").unwrap_or_default(),
    };
    if paths.is_empty() {
        return Err(ApiError::bad_request("paths must be supplied"));
    }
    let capabilities = call.env.policies.capabilities(subject, &paths)?;
    if capabilities.len() != paths.len() {
        return Err(ApiError::Internal(format!(
            "capabilities: {} answers for {} paths",
            capabilities.len(),
            paths.len()
        )));
    }
    let mut data = Map::new();
    for (path, caps) in paths.iter().zip(capabilities) {
        data.insert(path.clone(), Value::from(caps));
    }
    if let [only] = paths.as_slice()
        && let Some(caps) = data.get(only).cloned()
    {
        data.insert("capabilities".to_string(), caps);
    }
    Ok(Reply::data(Value::Object(data)).with_data_at_top_level())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::env::Fakes;
    use crate::testing::call;

    #[test]
    fn answers_in_vaults_shape() {
        let f = Fakes::default();
        let env = f.env();
        // hvac: `paths`; the data is also at the top level.
        let (status, body) = call(
            &env,
            "POST",
            "sys/capabilities-self",
            &json!({"paths": ["secret/a", "sys/x"]}),
        );
        assert_eq!(status, 200);
        assert_eq!(
            body["data"],
            json!({"secret/a": ["root"], "sys/x": ["root"]})
        );
        assert_eq!(body["sys/x"], json!(["root"]));
        // The Go client: its own token and one `path` string.
        let (status, body) = call(
            &env,
            "POST",
            "sys/capabilities-self",
            &json!({"token": "anything", "path": "secret/a"}),
        );
        assert_eq!(status, 200);
        assert_eq!(
            body["data"],
            json!({"secret/a": ["root"], "capabilities": ["root"]})
        );
        assert!(body["warnings"].is_null());
        let (_, body) = call(
            &env,
            "POST",
            "sys/capabilities-self",
            &json!({"paths": "a,b"}),
        );
        assert_eq!(body["data"], json!({"a": ["root"], "b": ["root"]}));
        let (status, body) = call(&env, "POST", "sys/capabilities-self", &json!({}));
        assert_eq!(
            (status, body),
            (400, json!({"errors": ["paths must be supplied"]}))
        );

        let (status, body) = call(
            &env,
            "POST",
            "sys/capabilities",
            &json!({"token": "reader", "paths": ["secret/a"]}),
        );
        assert_eq!(status, 200);
        assert_eq!(
            body["data"],
            json!({"secret/a": ["read"], "capabilities": ["read"]})
        );
        let (status, body) = call(
            &env,
            "POST",
            "sys/capabilities-accessor",
            &json!({"accessor": "reader", "path": ["secret/a", "b"]}),
        );
        assert_eq!(status, 200);
        assert_eq!(body["data"], json!({"secret/a": ["read"], "b": ["read"]}));

        for (path, body, message) in [
            (
                "sys/capabilities",
                json!({"token": "nope", "paths": ["a"]}),
                "invalid token",
            ),
            (
                "sys/capabilities",
                json!({"paths": ["a"]}),
                "no token found",
            ),
            (
                "sys/capabilities-accessor",
                json!({"accessor": "nope", "paths": ["a"]}),
                "invalid accessor",
            ),
            (
                "sys/capabilities-accessor",
                json!({"paths": ["a"]}),
                "missing accessor",
            ),
        ] {
            let (status, out) = call(&env, "POST", path, &body);
            assert_eq!(
                (status, out),
                (400, json!({"errors": [message]})),
                "{path} {body}"
            );
        }
    }
}
