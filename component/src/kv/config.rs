//! `<mount>/config`: the mount-wide `max_versions`, `cas_required` and
//! `delete_version_after` (Vault's `path_config.go`).

use serde_json::json;

use crate::api::Reply;
use crate::error::ApiResult;
use crate::framework::{Call, FieldSpec, FieldType};
use crate::storage::Tx;
use crate::time;

use super::record::Kv;
use super::{given, max_versions};

pub const FIELDS: &[FieldSpec] = &[
    FieldSpec::new("max_versions", FieldType::Int)
        .describe("Versions each secret keeps unless it sets its own; 0 means 10."),
    FieldSpec::new("cas_required", FieldType::Bool)
        .describe("Whether every data write on the mount must give options.cas."),
    FieldSpec::new("delete_version_after", FieldType::Duration).describe(
        "How long versions live before they are deleted automatically; 0 never, negative disables it for every secret.",
    ),
];

/// `GET <mount>/config`.
pub fn read(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let config = Kv::new(tx, call.mount()?).config()?;
    Ok(Reply::data(json!({
        "cas_required": config.cas_required,
        "delete_version_after": time::format_duration(config.delete_version_after),
        "max_versions": config.max_versions,
    })))
}

/// `POST <mount>/config`: sets the settings given, keeps the others.
pub fn write(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let (fields, req) = (&call.fields, call.req);
    let mut kv = Kv::new(tx, call.mount()?);
    let mut config = kv.config()?;
    let mut changed = false;
    if given(req, "max_versions") {
        config.max_versions = max_versions(fields)?;
        changed = true;
    }
    if given(req, "cas_required") {
        config.cas_required = fields.bool("cas_required").unwrap_or(false);
        changed = true;
    }
    if given(req, "delete_version_after") {
        // Negative disables automatic deletion for every secret; 0 clears it.
        config.delete_version_after = fields.duration("delete_version_after").unwrap_or(0).max(-1);
        changed = true;
    }
    if changed {
        kv.put_config(&config)?;
    }
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::testing::Server;

    #[test]
    fn defaults_then_updates() {
        let s = Server::new();
        let (status, body) = s.get("secret/config");
        assert_eq!(status, 200);
        let defaults =
            json!({"cas_required": false, "delete_version_after": "0s", "max_versions": 0});
        assert_eq!(body["data"], defaults);
        assert_eq!(body["mount_type"], "kv");
        // Nothing given: nothing stored.
        assert_eq!(s.post("secret/config", json!({})), (204, Value::Null));
        assert!(s.keys().is_empty());

        let update =
            json!({"max_versions": "7", "cas_required": true, "delete_version_after": 3600});
        assert_eq!(s.post("secret/config", update), (204, Value::Null));
        let expected =
            json!({"cas_required": true, "delete_version_after": "1h0m0s", "max_versions": 7});
        assert_eq!(s.get("secret/config").1["data"], expected);
        assert_eq!(s.keys(), vec!["config"]);

        // Partial updates keep the other settings.
        assert_eq!(
            s.post("secret/config", json!({"cas_required": false})).0,
            204
        );
        assert_eq!(s.get("secret/config").1["data"]["max_versions"], 7);
        assert_eq!(
            s.post("secret/config", json!({"delete_version_after": "-5m"}))
                .0,
            204
        );
        assert_eq!(
            s.get("secret/config").1["data"]["delete_version_after"],
            "-1s"
        );
        assert_eq!(
            s.post("secret/config", json!({"delete_version_after": "0s"}))
                .0,
            204
        );
        assert_eq!(
            s.get("secret/config").1["data"]["delete_version_after"],
            "0s"
        );
    }

    #[test]
    fn validation_and_warnings() {
        let s = Server::new();
        assert_eq!(
            s.post("secret/config", json!({"max_versions": "many"})).0,
            400
        );
        assert_eq!(s.post("secret/config", json!({"max_versions": -2})).0, 400);
        assert_eq!(
            s.post("secret/config", json!({"cas_required": "perhaps"}))
                .0,
            400
        );
        assert_eq!(
            s.post("secret/config", json!({"delete_version_after": "later"}))
                .0,
            400
        );
        let (status, body) = s.post("secret/config", json!({"max_version": 3}));
        assert_eq!(status, 200);
        assert_eq!(
            body["warnings"],
            json!(["Endpoint ignored these unrecognized parameters: [max_version]"])
        );
        assert!(s.keys().is_empty());
    }
}
