//! The `gcp-sm` destination's config, as the engine sends it: the service
//! account key (read once, with the config), the project and the replication
//! policy of new secrets.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Value, json};
use zeroize::Zeroize;

use crate::connectors::fields::{self, Ignored, Secret, nullable};
use crate::connectors::{SyncError, http};

/// Used when a service-account key has no `token_uri`.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The destination's connection details.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A service account JSON key (the engine stores it as a string; an
    /// object is taken too). Blank: Application Default Credentials.
    #[serde(default, deserialize_with = "service_account_key")]
    pub credentials: Option<ServiceAccount>,
    #[serde(default, deserialize_with = "fields::text")]
    pub project_id: Option<String>,
    /// Workload identity federation (not supported yet).
    #[serde(default, deserialize_with = "fields::text")]
    pub service_account_email: Option<String>,
    #[serde(default, deserialize_with = "fields::secret")]
    pub identity_token_audience: Option<Secret>,
    #[serde(default, deserialize_with = "fields::secret")]
    pub identity_token_key: Option<Secret>,
    #[serde(default)]
    pub identity_token_ttl: Ignored,
    #[serde(default, deserialize_with = "fields::text")]
    pub kms_key_id: Option<String>,
    #[serde(default, deserialize_with = "fields::kms_keys")]
    pub replica_regions: BTreeMap<String, String>,
    /// Deprecated: `replica_regions` replaces it.
    #[serde(default, deserialize_with = "fields::list")]
    pub replication_locations: Vec<String>,
    /// Deprecated: `replica_regions` replaces it.
    #[serde(default, deserialize_with = "fields::kms_keys")]
    pub locational_kms_keys: BTreeMap<String, String>,
    /// Deprecated: `kms_key_id` replaces it.
    #[serde(default, deserialize_with = "fields::text")]
    pub global_kms_key: Option<String>,
}

/// The fields of a service-account JSON key this connector uses. Zeroized on
/// drop; `Debug` shows the account, not the key.
#[derive(Deserialize, Default)]
pub struct ServiceAccount {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub client_email: String,
    #[serde(default)]
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: String,
    #[serde(default)]
    pub token_uri: String,
    #[serde(default)]
    pub project_id: String,
}

impl Drop for ServiceAccount {
    fn drop(&mut self) {
        self.private_key.zeroize();
        self.private_key_id.zeroize();
    }
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("type", &self.kind)
            .field("client_email", &self.client_email)
            .field("private_key", &"*****")
            .field("project_id", &self.project_id)
            .finish()
    }
}

impl ServiceAccount {
    pub fn token_uri(&self) -> &str {
        match self.token_uri.trim() {
            "" => DEFAULT_TOKEN_URI,
            uri => uri,
        }
    }
}

/// `credentials`: a JSON key as a string (parsed in place: serde's messages,
/// which may quote the input, are replaced by the position) or an object;
/// absent, null or blank is `None`.
fn service_account_key<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<ServiceAccount>, D::Error> {
    struct Key;
    impl<'de> Visitor<'de> for Key {
        type Value = Option<ServiceAccount>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a service account JSON key")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            if s.trim().is_empty() {
                return Ok(None);
            }
            serde_json::from_str(s).map(Some).map_err(|e| {
                E::custom(format!(
                    "not a service account JSON key (invalid at line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            ServiceAccount::deserialize(de::value::MapAccessDeserializer::new(map))
                .map(Some)
                .map_err(|_| de::Error::custom("not a service account JSON key"))
        }
    }
    Ok(nullable(d, Key)?.flatten())
}

/// Workload identity federation is refused with this message.
const WIF: &str = "workload identity federation is not supported by this server yet; set \
                   credentials to a service account JSON key";

impl Config {
    /// The service-account key, or why it cannot be used.
    pub fn service_account(&self) -> Result<&ServiceAccount, SyncError> {
        let Some(sa) = &self.credentials else {
            if self.identity_token_audience.is_some() || self.service_account_email.is_some() {
                return Err(SyncError::ClientSide(WIF.to_string()));
            }
            return Err(SyncError::ClientSide(
                "Application Default Credentials are not supported yet: set the destination's credentials to a service account JSON key".to_string(),
            ));
        };
        match sa.kind.as_str() {
            "" | "service_account" => {}
            "external_account" | "impersonated_service_account" => {
                return Err(SyncError::ClientSide(WIF.to_string()));
            }
            other => {
                return Err(SyncError::ClientSide(format!(
                    "credentials of type {:?} are not supported; use a service account JSON key",
                    http::detail(other)
                )));
            }
        }
        if sa.client_email.trim().is_empty() || sa.private_key.trim().is_empty() {
            return Err(SyncError::ClientSide(
                "the service account JSON key lacks client_email or private_key".to_string(),
            ));
        }
        Ok(sa)
    }

    /// The project: the destination's `project_id`, else the key's.
    pub fn project_id<'a>(&'a self, sa: &'a ServiceAccount) -> Result<&'a str, SyncError> {
        let project = self
            .project_id
            .as_deref()
            .or_else(|| Some(sa.project_id.trim()).filter(|p| !p.is_empty()))
            .ok_or_else(|| {
                SyncError::ClientSide(
                    "no project: set the destination's project_id (the service account key has none)"
                        .to_string(),
                )
            })?;
        let valid = project.len() <= 100
            && project
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'));
        if !valid {
            return Err(SyncError::ClientSide(format!(
                "project_id {:?} is not a valid Google Cloud project ID",
                http::detail(project)
            )));
        }
        Ok(project)
    }

    /// The replication policy of new secrets: `replica_regions` →
    /// user-managed (one replica per location, with its KMS key when not
    /// empty); else `replication_locations` + `locational_kms_keys`
    /// (deprecated) → user-managed; else automatic, with `kms_key_id` (or the
    /// deprecated `global_kms_key`) as customer-managed key when set.
    pub fn replication(&self) -> Value {
        if !self.replica_regions.is_empty() {
            return user_managed(&self.replica_regions);
        }
        let mut replicas: BTreeMap<String, String> = self
            .replication_locations
            .iter()
            .map(|l| (l.clone(), String::new()))
            .collect();
        replicas.extend(self.locational_kms_keys.clone());
        if !replicas.is_empty() {
            return user_managed(&replicas);
        }
        match self.kms_key_id.as_ref().or(self.global_kms_key.as_ref()) {
            Some(key) => {
                json!({ "automatic": { "customerManagedEncryption": { "kmsKeyName": key } } })
            }
            None => json!({ "automatic": {} }),
        }
    }
}

fn user_managed(replicas: &BTreeMap<String, String>) -> Value {
    let replicas: Vec<Value> = replicas
        .iter()
        .map(|(location, key)| {
            if key.is_empty() {
                json!({ "location": location })
            } else {
                json!({ "location": location, "customerManagedEncryption": { "kmsKeyName": key } })
            }
        })
        .collect();
    json!({ "userManaged": { "replicas": replicas } })
}
