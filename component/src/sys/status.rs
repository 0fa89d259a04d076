//! The status endpoints clients call at start-up, served without a token:
//! `sys/seal-status` (the Terraform provider reads `version` as a semver and
//! turns on Enterprise-only fields when its build metadata says `ent`; the
//! Vault CLI's `vault status`), `sys/leader` (`vault status`, after the seal
//! status) and `sys/init` (hvac's `is_initialized`). kvsync is never sealed,
//! always initialized and never part of an HA cluster. Bodies are outside the
//! envelope, as Vault sends them.

use serde_json::json;

use crate::api::Reply;
use crate::error::ApiResult;
use crate::framework::Call;
use crate::storage::Tx;
use crate::sys::VAULT_VERSION;
use crate::sys::health::ClusterIdentity;

/// `GET sys/seal-status`.
pub fn seal_status(tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    let cluster = ClusterIdentity::load_or_create(tx)?;
    Ok(Reply::raw(
        200,
        json!({
            "type": "shamir",
            "initialized": true,
            "sealed": false,
            "t": 1,
            "n": 1,
            "progress": 0,
            "nonce": "",
            "version": VAULT_VERSION,
            "build_date": "",
            "migration": false,
            "cluster_name": cluster.name,
            "cluster_id": cluster.id,
            "recovery_seal": false,
            "storage_type": "redb",
            "removed_from_cluster": false,
        }),
    ))
}

/// `GET sys/leader`: HA is not enabled. Vault leaves out the WAL and Raft
/// indexes that are zero.
pub fn leader(_tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    Ok(Reply::raw(
        200,
        json!({
            "ha_enabled": false,
            "is_self": false,
            "active_time": "0001-01-01T00:00:00Z",
            "leader_address": "",
            "leader_cluster_address": "",
            "performance_standby": false,
            "performance_standby_last_remote_wal": 0,
        }),
    ))
}

/// `GET sys/init`.
pub fn init(_tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    Ok(Reply::raw(200, json!({ "initialized": true })))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::env::Fakes;
    use crate::testing::call;

    #[test]
    fn start_up_endpoints() {
        let f = Fakes::default();
        let env = f.env();
        let (status, body) = call(&env, "GET", "sys/seal-status", &Value::Null);
        assert_eq!(status, 200);
        assert_eq!(body["sealed"], false);
        // A semver whose build metadata is `ent`, 2.2.0 or later: the
        // Terraform provider then enables every Secrets Sync field.
        assert_eq!(body["version"], "2.2.0+ent");
        assert!(body.get("data").is_none());
        let (status, body) = call(&env, "GET", "sys/leader", &Value::Null);
        assert_eq!((status, body["ha_enabled"].clone()), (200, json!(false)));
        let (status, body) = call(&env, "GET", "sys/init", &Value::Null);
        assert_eq!((status, body), (200, json!({"initialized": true})));
        // Only GET is served.
        assert_eq!(call(&env, "POST", "sys/init", &json!({})).0, 405);
    }
}
