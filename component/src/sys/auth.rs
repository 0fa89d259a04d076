//! `GET sys/auth`: the enabled auth methods. kvsync has one, the token store
//! at `auth/token/`, which is always there and cannot be disabled.

use serde_json::{Map, json};

use crate::api::Reply;
use crate::error::ApiResult;
use crate::framework::Call;
use crate::storage::Tx;
use crate::sys::builtin_entry;

/// `GET sys/auth`: `token/` in Vault's shape, also at the top level.
pub fn list(_tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    let mut config = Map::new();
    config.insert("token_type".into(), json!("default-service"));
    let token = builtin_entry(
        (
            "token",
            "auth_token_00000000",
            "00000000-0000-0000-0000-000000000001",
        ),
        "token based credentials",
        config,
        false,
    );
    Ok(Reply::data(json!({ "token/": token })).with_data_at_top_level())
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
