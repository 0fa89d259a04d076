//! `sys/health`: Vault's health body, outside the envelope, served without a token.

use serde_json::json;

use crate::api::Reply;
use crate::error::ApiResult;
use crate::framework::Call;
use crate::storage::Tx;
use crate::sys::{CLUSTER_NAME, VAULT_VERSION};
use crate::time;

pub fn read(_tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    Ok(Reply::raw(
        200,
        json!({
            "initialized": true,
            "sealed": false,
            "standby": false,
            "performance_standby": false,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": time::now() / 1_000_000_000,
            "version": VAULT_VERSION,
            "enterprise": true,
            "cluster_name": CLUSTER_NAME,
            "cluster_id": "",
            "echo_duration_ms": 0,
            "clock_skew_ms": 0,
            "removed_from_cluster": false,
        }),
    ))
}
