//! The `aws-sm` destination's config, as the engine sends it.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager as sm;
use serde::Deserialize;

use crate::connectors::SyncError;
use crate::connectors::fields::{self, Ignored, Secret};

/// The destination's connection details.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, deserialize_with = "fields::secret")]
    pub access_key_id: Option<Secret>,
    #[serde(default, deserialize_with = "fields::secret")]
    pub secret_access_key: Option<Secret>,
    #[serde(default, deserialize_with = "fields::text")]
    pub region: Option<String>,
    #[serde(default, deserialize_with = "fields::text")]
    pub role_arn: Option<String>,
    #[serde(default, deserialize_with = "fields::text")]
    pub external_id: Option<String>,
    /// Workload identity federation (refused: this server issues no identity
    /// tokens).
    #[serde(default, deserialize_with = "fields::secret")]
    pub identity_token_audience: Option<Secret>,
    #[serde(default, deserialize_with = "fields::secret")]
    pub identity_token_key: Option<Secret>,
    #[serde(default)]
    pub identity_token_ttl: Ignored,
    #[serde(default, deserialize_with = "fields::text")]
    pub kms_key_id: Option<String>,
    /// region → KMS key (`""`: the AWS-managed key).
    #[serde(default, deserialize_with = "fields::kms_keys")]
    pub replica_regions: BTreeMap<String, String>,
}

impl Config {
    /// The access key pair (`access_key_id`, `secret_access_key`), when set:
    /// both or neither.
    pub fn keys(&self) -> Result<Option<(&Secret, &Secret)>, SyncError> {
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => Ok(Some((id, secret))),
            (None, None) => Ok(None),
            _ => Err(SyncError::ClientSide(
                "access_key_id and secret_access_key must be set together".to_string(),
            )),
        }
    }

    /// The replicas of a new secret, as `CreateSecret` takes them.
    pub fn replicas(&self) -> Option<Vec<sm::types::ReplicaRegionType>> {
        if self.replica_regions.is_empty() {
            return None;
        }
        Some(
            self.replica_regions
                .iter()
                .map(|(region, key)| {
                    sm::types::ReplicaRegionType::builder()
                        .region(region)
                        .set_kms_key_id((!key.is_empty()).then(|| key.clone()))
                        .build()
                })
                .collect(),
        )
    }
}
