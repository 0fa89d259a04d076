//! `sys/health`: Vault's health body, outside the envelope, served without a
//! token, for `GET` and `HEAD`. kvsync is always initialized, unsealed and
//! active, so the status is `activecode` (200 unless the query sets it); the
//! other status parameters Vault documents are checked and answer for states
//! kvsync is never in.
//!
//! The cluster's identity (`cluster_id`, `cluster_name`) belongs to the storage:
//! created by the first request that asks for it, and the same for as long as
//! the storage lives.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::{Reply, new_uuid, random_bytes};
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec, FieldType};
use crate::storage::Tx;
use crate::sys::VAULT_VERSION;
use crate::time;

/// Where the cluster's identity is stored.
pub const CLUSTER_KEY: &str = "core/cluster";

/// The query parameters of `sys/health`, as Vault documents them.
pub const FIELDS: &[FieldSpec] = &[
    FieldSpec::new("standbyok", FieldType::Bool)
        .describe("Whether a standby answers with the active status (kvsync is never a standby)."),
    FieldSpec::new("perfstandbyok", FieldType::Bool).describe(
        "Whether a performance standby answers with the active status (kvsync is never one).",
    ),
    FieldSpec::new("activecode", FieldType::Int)
        .describe("The status an active, unsealed server answers with (200)."),
    FieldSpec::new("standbycode", FieldType::Int)
        .describe("The status of a standby (429; kvsync is never one)."),
    FieldSpec::new("drsecondarycode", FieldType::Int)
        .describe("The status of a DR secondary (472; kvsync is never one)."),
    FieldSpec::new("performancestandbycode", FieldType::Int)
        .describe("The status of a performance standby (473; kvsync is never one)."),
    FieldSpec::new("haunhealthycode", FieldType::Int)
        .describe("The status of an unhealthy HA node (474; kvsync is never one)."),
    FieldSpec::new("removedcode", FieldType::Int)
        .describe("The status of a node removed from its cluster (530; kvsync is never one)."),
    FieldSpec::new("sealedcode", FieldType::Int)
        .describe("The status of a sealed server (503; kvsync is never sealed)."),
    FieldSpec::new("uninitcode", FieldType::Int)
        .describe("The status of an uninitialized server (501; kvsync is always initialized)."),
];

/// What `sys/health` answers: `activecode` picks the status of a healthy
/// server, any from [`STATUS_RANGE`].
pub const ANSWERS: &[(&str, &str)] = &[
    ("200", "Initialized, unsealed and active"),
    ("default", "The status activecode asks for"),
];

/// The statuses a code parameter may ask for.
const STATUS_RANGE: std::ops::RangeInclusive<i64> = 200..=599;

/// The cluster a storage belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// A random UUID.
    pub id: String,
    /// `vault-cluster-` and 8 random hex digits, as Vault names a cluster
    /// that was not given a name.
    pub name: String,
}

impl ClusterIdentity {
    /// The storage's identity, created (in this transaction) if it has none yet.
    pub fn load_or_create(tx: &mut Tx) -> ApiResult<Self> {
        if let Some(identity) = tx.get_json(CLUSTER_KEY)? {
            return Ok(identity);
        }
        let b = random_bytes::<4>();
        let identity = ClusterIdentity {
            id: new_uuid(),
            name: format!(
                "vault-cluster-{:02x}{:02x}{:02x}{:02x}",
                b[0], b[1], b[2], b[3]
            ),
        };
        tx.put_json(CLUSTER_KEY, &identity)?;
        Ok(identity)
    }
}

/// `GET` and `HEAD sys/health`.
pub fn read(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let fields = &call.fields;
    for spec in FIELDS {
        if let Some(code) = fields.int(spec.name)
            && !STATUS_RANGE.contains(&code)
        {
            return Err(ApiError::bad_request(format!(
                "invalid {} {code}: use an HTTP status from {} to {}",
                spec.name,
                STATUS_RANGE.start(),
                STATUS_RANGE.end()
            )));
        }
    }
    let status = fields
        .int("activecode")
        .and_then(|code| u16::try_from(code).ok())
        .unwrap_or(200);
    let cluster = ClusterIdentity::load_or_create(tx)?;
    Ok(Reply::raw(
        status,
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
            "cluster_name": cluster.name,
            "cluster_id": cluster.id,
            "echo_duration_ms": 0,
            "clock_skew_ms": 0,
            "removed_from_cluster": false,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::env::Fakes;
    use crate::storage::Tx;
    use crate::testing;

    use super::*;

    fn health(fakes: &Fakes, method: &str, query: &str) -> (u16, Value) {
        testing::call(
            &fakes.env(),
            method,
            &format!("sys/health{query}"),
            &Value::Null,
        )
    }

    #[test]
    fn the_cluster_identity_is_created_once_per_storage() {
        let fakes = Fakes::default();
        let (status, first) = health(&fakes, "GET", "");
        assert_eq!(status, 200);
        let id = first["cluster_id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 36);
        let name = first["cluster_name"].as_str().unwrap();
        assert!(
            name.starts_with("vault-cluster-") && name.len() == 22,
            "{name}"
        );
        let (_, again) = health(&fakes, "GET", "");
        assert_eq!(again["cluster_id"], id.as_str());
        assert_eq!(again["cluster_name"], first["cluster_name"]);
        let mut tx = Tx::new(&fakes.storage);
        let stored = ClusterIdentity::load_or_create(&mut tx).unwrap();
        assert_eq!(stored.id, id);
        // Another storage is another cluster.
        let (_, other) = health(&Fakes::default(), "GET", "");
        assert_ne!(other["cluster_id"], id.as_str());
    }

    #[test]
    fn query_codes_set_the_status_as_vault_documents() {
        let fakes = Fakes::default();
        assert_eq!(health(&fakes, "GET", "?activecode=201").0, 201);
        assert_eq!(health(&fakes, "HEAD", "?activecode=299").0, 299);
        assert_eq!(health(&fakes, "HEAD", "").0, 200);
        // Codes for states kvsync is never in change nothing...
        for query in [
            "?standbyok=true",
            "?perfstandbyok=true",
            "?standbycode=299",
            "?sealedcode=299",
            "?uninitcode=299",
            "?drsecondarycode=299",
            "?performancestandbycode=299",
            "?haunhealthycode=299",
            "?removedcode=299",
        ] {
            let (status, body) = health(&fakes, "GET", query);
            assert_eq!(status, 200, "{query}");
            assert_eq!(body["initialized"], true);
        }
        // ...but must be valid.
        for query in [
            "?activecode=abc",
            "?sealedcode=1.5",
            "?standbyok=maybe",
            "?activecode=99",
            "?activecode=600",
            "?uninitcode=-1",
        ] {
            let (status, body) = health(&fakes, "GET", query);
            assert_eq!(status, 400, "{query}");
            assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{query}");
        }
        // Unknown parameters are ignored: the body has no envelope to warn in.
        let (status, body) = health(&fakes, "GET", "?bogus=1");
        assert_eq!(status, 200);
        assert!(body.get("warnings").is_none());
    }
}
