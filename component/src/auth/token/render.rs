//! Vault's bodies of the token store: the `data` of a lookup and the `auth`
//! block of a token created or renewed.

use serde_json::{Map, Value, json};

use crate::time;
use crate::tokens::{Issued, TokenInfo};

fn meta(meta: &Option<Vec<(String, String)>>) -> Value {
    match meta {
        None => Value::Null,
        Some(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    }
}

/// An RFC 3339 time from nanoseconds since the epoch.
fn timestamp(nanos: u64) -> Value {
    Value::String(time::rfc3339(i64::try_from(nanos).unwrap_or(i64::MAX)))
}

/// The `data` of `lookup`, `lookup-self` and `lookup-accessor`. `period`,
/// `last_renewal_time` / `last_renewal` and `namespace_path` appear only
/// when they apply, as in Vault.
pub fn lookup_data(info: &TokenInfo) -> Value {
    let lease = &info.lease;
    let mut data = Map::new();
    let mut put = |k: &str, v: Value| {
        data.insert(k.to_string(), v);
    };
    put("accessor", json!(info.accessor));
    put("creation_time", json!(info.creation_time));
    put("creation_ttl", json!(info.creation_ttl));
    put("display_name", json!(info.display_name));
    put("entity_id", json!(""));
    put(
        "expire_time",
        lease.expire_time.map_or(Value::Null, timestamp),
    );
    put("explicit_max_ttl", json!(info.explicit_max_ttl));
    put("id", json!(info.id));
    put("issue_time", timestamp(lease.issue_time));
    put("meta", meta(&info.meta));
    put("num_uses", json!(info.num_uses));
    put("orphan", json!(info.orphan));
    put("path", json!(info.path));
    put("policies", json!(info.policies));
    put("renewable", json!(lease.renewable));
    put("ttl", json!(lease.ttl));
    put("type", json!("service"));
    if info.period > 0 {
        put("period", json!(info.period));
    }
    if let Some(renewed) = lease.last_renewal_time {
        put("last_renewal_time", json!(renewed / 1_000_000_000));
        put("last_renewal", timestamp(renewed));
    }
    if !info.namespace_path.is_empty() {
        put("namespace_path", json!(info.namespace_path));
    }
    Value::Object(data)
}

/// The `auth` block of create and renew responses (`client_token` is empty
/// when the token was named by its accessor).
pub fn auth_block(issued: &Issued) -> Value {
    let info = &issued.info;
    let mut auth = json!({
        "client_token": info.id,
        "accessor": info.accessor,
        "policies": info.policies,
        "metadata": meta(&info.meta),
        "lease_duration": issued.lease_duration,
        "renewable": issued.renewable,
        "entity_id": "",
        "token_type": "service",
        "orphan": info.orphan,
        "mfa_requirement": null,
        "num_uses": info.num_uses,
    });
    if !info.policies.is_empty()
        && let Some(block) = auth.as_object_mut()
    {
        block.insert("token_policies".to_string(), json!(info.policies));
    }
    auth
}
