//! `GET sys/auth`: the enabled auth methods. kvsync has one, the token store
//! at `auth/token/`, which is always there and cannot be disabled.

use serde_json::json;

use crate::api::Reply;
use crate::error::ApiResult;
use crate::framework::Call;
use crate::storage::Tx;
use crate::sys::VAULT_VERSION;

/// The release part of the version (`2.2.0` of `2.2.0+ent`).
fn release() -> &'static str {
    VAULT_VERSION.split('+').next().unwrap_or(VAULT_VERSION)
}

/// `GET sys/auth`: `token/` in Vault's shape, also at the top level.
pub fn list(_tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    Ok(Reply::data(json!({
        "token/": {
            "accessor": "auth_token_00000000",
            "config": {
                "default_lease_ttl": 0,
                "force_no_cache": false,
                "max_lease_ttl": 0,
                "token_type": "default-service",
            },
            "description": "token based credentials",
            "external_entropy_access": false,
            "local": false,
            "options": null,
            "plugin_version": "",
            "running_plugin_version": format!("v{}+builtin.vault", release()),
            "running_sha256": "",
            "seal_wrap": false,
            "type": "token",
            "uuid": "00000000-0000-0000-0000-000000000001",
        }
    }))
    .with_data_at_top_level())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::env::Fakes;
    use crate::testing::call;

    #[test]
    fn lists_the_token_store() {
        let f = Fakes::default();
        let (status, body) = call(&f.env(), "GET", "sys/auth", &Value::Null);
        assert_eq!(status, 200);
        assert_eq!(body["data"]["token/"]["type"], "token");
        assert_eq!(body["token/"], body["data"]["token/"]);
        assert_eq!(body["mount_type"], "system");
        assert_eq!(
            body["data"]["token/"]["running_plugin_version"],
            "v2.2.0+builtin.vault"
        );
    }
}
