//! `sys/health` on a host with `ha_enabled`: the engine answers with Vault's
//! body for a single active server, and the host adds the HA view.
//!
//! Every kvsync host is active (it serves every request), so the body keeps
//! Vault's answer of an active node (`standby: false`, the status
//! `activecode`). What a host needs to be healthy in HA is its connection to
//! the shared storage, where the shard leases live: `ha_connection_healthy`
//! (Vault's field, which Vault reports on a standby for its connection to the
//! active node) says whether this host could read the leases just now, and
//! when it could not the status is `haunhealthycode` (474 unless the query
//! sets it), so a load balancer takes the host out. kvsync adds
//! `shard_holders`, the same list as `sys/leader`'s: which host holds which
//! sync shard. Without `ha_enabled` the engine's answer goes out as it is.

use serde_json::Value;

use crate::ha::{HaView, now_ms};

/// The status of a host cut off from the shared storage, unless the query's
/// `haunhealthycode` sets another (Vault's default).
const HA_UNHEALTHY: u16 = 474;

impl HaView {
    /// The engine's `sys/health` answer (`status`, `body`) with the HA view
    /// filled in; the answer as it is without `ha_enabled`, or when it is not
    /// a health body (a refused query parameter).
    pub async fn health(&self, query: &str, status: u16, body: Vec<u8>) -> (u16, Vec<u8>) {
        if !self.ha_enabled {
            return (status, body);
        }
        let Ok(Value::Object(mut fields)) = serde_json::from_slice(&body) else {
            return (status, body);
        };
        if !fields.contains_key("initialized") {
            return (status, body);
        }
        let (healthy, holders) = match self.leases.holders(now_ms()).await {
            Ok(holders) => (true, serde_json::to_value(holders).unwrap_or_default()),
            Err(e) => {
                tracing::warn!(error = %e, "sys/health: cannot read the shard leases");
                (false, Value::Null)
            }
        };
        fields.insert("ha_connection_healthy".into(), healthy.into());
        fields.insert("shard_holders".into(), holders);
        let status = if healthy {
            status
        } else {
            unhealthy_status(query)
        };
        match serde_json::to_vec(&fields) {
            Ok(body) => (status, body),
            Err(_) => (status, body),
        }
    }
}

/// `haunhealthycode` from the query (the engine has checked it is a status
/// when it answered with a health body), else Vault's default.
fn unhealthy_status(query: &str) -> u16 {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "haunhealthycode")
        .and_then(|(_, code)| code.parse().ok())
        .unwrap_or(HA_UNHEALTHY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unhealthy_status_is_the_querys_or_vaults() {
        assert_eq!(unhealthy_status(""), 474);
        assert_eq!(unhealthy_status("standbyok=true&haunhealthycode=299"), 299);
        assert_eq!(unhealthy_status("haunhealthycode=abc"), 474);
    }
}
