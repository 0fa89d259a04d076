//! `sys/key-status` and `sys/rotate`: the storage barrier's active key and its
//! rotation, served from the host's `keyring` import (which answers only a
//! caller in the root namespace). `sys/rotate` is root-protected (`sudo`).

use serde_json::json;

use crate::api::Reply;
use crate::error::ApiResult;
use crate::framework::Call;
use crate::storage::Tx;
use crate::time;

/// `GET sys/key-status`: `term`, `install_time` (RFC 3339) and `encryptions`,
/// under `data` and at the top level, as Vault answers.
pub fn status(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let s = call.env.keyring.status()?;
    Ok(Reply::data(json!({
        "term": s.term,
        "install_time": time::rfc3339(s.install_time),
        "encryptions": s.encryptions,
    }))
    .with_data_at_top_level())
}

/// `POST sys/rotate`: a new key seals every write from now on; 204.
pub fn rotate(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    call.env.keyring.rotate()?;
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::env::{Env, Fakes};
    use crate::keyring::{KeyStatus, Keyring, KeyringError};
    use crate::testing::call;

    #[test]
    fn status_and_rotate_in_vaults_shape() {
        let f = Fakes::default();
        let env = f.env();
        let (status, body) = call(&env, "GET", "sys/key-status", &Value::Null);
        assert_eq!(status, 200);
        let expected = json!({
            "term": 1,
            "install_time": "1970-01-01T00:00:01Z",
            "encryptions": 7
        });
        assert_eq!(body["data"], expected);
        assert_eq!(body["term"], 1);
        assert_eq!(body["install_time"], "1970-01-01T00:00:01Z");

        let (status, body) = call(&env, "POST", "sys/rotate", &json!({}));
        assert_eq!((status, body), (204, Value::Null));
        let (_, body) = call(&env, "PUT", "sys/rotate", &Value::Null);
        assert_eq!(body, Value::Null);
        let (_, body) = call(&env, "GET", "sys/key-status", &Value::Null);
        assert_eq!(body["data"]["term"], 3);
        assert_eq!(body["data"]["install_time"], "1970-01-01T00:00:03Z");

        // Only the documented methods.
        assert_eq!(call(&env, "GET", "sys/rotate", &Value::Null).0, 405);
        assert_eq!(call(&env, "POST", "sys/key-status", &json!({})).0, 405);
    }

    struct Refusing(KeyringError);
    impl Keyring for Refusing {
        fn status(&self) -> Result<KeyStatus, KeyringError> {
            Err(self.0.clone())
        }
        fn rotate(&self) -> Result<KeyStatus, KeyringError> {
            Err(self.0.clone())
        }
    }

    #[test]
    fn the_hosts_refusals_keep_their_status() {
        let f = Fakes::default();
        for (err, status) in [
            (
                KeyringError::BadRequest("operation only available in root namespace".into()),
                400,
            ),
            (KeyringError::Forbidden("permission denied".into()), 403),
            (KeyringError::Unavailable("storage".into()), 503),
        ] {
            let refusing = Refusing(err);
            let env = Env {
                keyring: &refusing,
                namespaces: &crate::namespaces::NoNamespaces,
                ..f.env()
            };
            assert_eq!(call(&env, "GET", "sys/key-status", &Value::Null).0, status);
            assert_eq!(call(&env, "POST", "sys/rotate", &json!({})).0, status);
        }
    }
}
