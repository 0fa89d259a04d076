//! `gcp-sm`: Google Secret Manager, with the deprecated 1.18/1.19
//! replication and KMS fields accepted next to their 2.2 replacements.

use crate::error::{ApiError, ApiResult};
use crate::framework::{Check, FieldSpec, FieldType};
use crate::storage::Tx;
use crate::sync::names::normalize;

use super::schema::{self, Details};
use super::{DestinationType, Granularity};

const FIELDS: &[FieldSpec] = &[
    // The key file names its own token endpoint (`token_uri`), where the
    // signed assertion goes: it is an endpoint as much as a credential.
    FieldSpec::string("credentials")
        .sensitive()
        .credential()
        .endpoint()
        .check(Check::JsonObject)
        .describe(
            "JSON key file of a service account; application default credentials when unset.",
        ),
    FieldSpec::string("project_id")
        .describe("Project of the secrets; the project of the credentials when unset."),
    FieldSpec::string("service_account_email")
        .check(Check::ServiceAccountEmail)
        .describe("Service account to impersonate with workload identity federation."),
    schema::IDENTITY_TOKEN_AUDIENCE,
    schema::IDENTITY_TOKEN_KEY,
    schema::IDENTITY_TOKEN_TTL,
    FieldSpec::string("kms_key_id")
        .describe("KMS key in the global location for automatically replicated secrets."),
    FieldSpec::new("replica_regions", FieldType::KvPairs).describe(
        "Locations of user-managed replicas, each with its KMS key (all set or all empty).",
    ),
    // Deprecated: `replica_regions` and `kms_key_id` replace them.
    FieldSpec::new("replication_locations", FieldType::CommaStringSlice)
        .describe("Deprecated: locations of user-managed replicas; use replica_regions."),
    FieldSpec::new("locational_kms_keys", FieldType::KvPairs)
        .describe("Deprecated: KMS key per replica location; use replica_regions."),
    FieldSpec::string("global_kms_key")
        .describe("Deprecated: KMS key of automatically replicated secrets; use kms_key_id."),
];

pub const TYPE: DestinationType = DestinationType {
    kind: "gcp-sm",
    default_granularity: Granularity::SecretPath,
    default_template_path: "vault/{{ .MountAccessor }}/{{ .SecretPath }}",
    default_template_key: "vault/{{ .MountAccessor }}/{{ .SecretPath }}/{{ .SecretKey }}",
    name_rule: &normalize::GCP_SM,
    cloud: true,
    fields: FIELDS,
    rules,
    reads: &[],
};

/// Automatic replication (`kms_key_id`, `global_kms_key`) excludes user-managed
/// replication (`replica_regions`, `replication_locations`, `locational_kms_keys`),
/// and a deprecated field excludes its replacement.
const EXCLUSIVE: &[(&str, &str)] = &[
    ("credentials", "identity_token_audience"),
    ("kms_key_id", "replica_regions"),
    ("kms_key_id", "global_kms_key"),
    ("kms_key_id", "replication_locations"),
    ("kms_key_id", "locational_kms_keys"),
    ("global_kms_key", "locational_kms_keys"),
    ("global_kms_key", "replica_regions"),
    ("global_kms_key", "replication_locations"),
    ("replica_regions", "replication_locations"),
    ("replica_regions", "locational_kms_keys"),
];

fn rules(_tx: &mut Tx, new: &Details, _old: Option<&Details>) -> ApiResult<()> {
    new.exclusive(EXCLUSIVE)?;
    if new.has("identity_token_audience") != new.has("service_account_email") {
        return Err(ApiError::bad_request(
            "workload identity federation auth requires both identity_token_audience and service_account_email",
        ));
    }
    if let Some(regions) = new.map("replica_regions") {
        let with_key = regions
            .values()
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
            .count();
        if with_key != 0 && with_key != regions.len() {
            return Err(ApiError::bad_request(
                "replica_regions: give every location a KMS key (customer-managed encryption) or none (Google-managed)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::sync::destinations::testing::{Server, TypeCase};

    const SA: &str = "sync@my-proj.iam.gserviceaccount.com";

    fn case() -> TypeCase {
        TypeCase {
            kind: "gcp-sm",
            full: json!({
                "credentials": "{\"type\":\"service_account\",\"private_key\":\"GCP-PRIVATE-key\"}",
                "project_id": "my-proj", "identity_token_key": "gcp-KEY-name",
                "identity_token_ttl": 120,
                "replica_regions": {"us-east1": "projects/p/locations/us-east1/keyRings/r/cryptoKeys/k",
                                    "europe-west1": "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k"},
                "custom_tags": {"env": "prod"},
                "secret_name_template": "vault_{{ .SecretPath }}",
                "disable_strict_networking": true,
            }),
            full_read: json!({
                "credentials": "*****", "project_id": "my-proj", "identity_token_key": "*****",
                "identity_token_ttl": 120,
                "replica_regions": {"us-east1": "projects/p/locations/us-east1/keyRings/r/cryptoKeys/k",
                                    "europe-west1": "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k"},
                "disable_strict_networking": true,
            }),
            minimal: json!({}),
            secrets: &["GCP-PRIVATE-key", "gcp-KEY-name"],
            bad: vec![
                (
                    json!({"credentials": "not json GCP-PRIVATE-key"}),
                    "credentials",
                ),
                (
                    json!({"service_account_email": "sync@my-proj.gserviceaccount.com"}),
                    "service_account_email",
                ),
                (
                    json!({"service_account_email": SA}),
                    "identity_token_audience",
                ),
                (json!({"identity_token_ttl": []}), "identity_token_ttl"),
                (
                    json!({"kms_key_id": "k", "replica_regions": {"us-east1": ""}}),
                    "kms_key_id",
                ),
                (
                    json!({"replica_regions": {"a": "k", "b": ""}}),
                    "replica_regions",
                ),
                (
                    json!({"global_kms_key": "k", "locational_kms_keys": {"a": "k"}}),
                    "global_kms_key",
                ),
                (
                    json!({"replication_locations": {"a": 1}}),
                    "replication_locations",
                ),
                (
                    json!({"secret_name_template": "{{ .SecretKey }}"}),
                    "secret_name_template",
                ),
            ],
            immutable: vec![],
            sensitive: &["credentials", "identity_token_key"],
        }
    }

    #[test]
    fn field_table() {
        case().check();
    }

    #[test]
    fn workload_identity_needs_audience_and_email() {
        let s = Server::new();
        let path = "sys/sync/destinations/gcp-sm/d";
        let msg = s.rejects(
            "POST",
            path,
            json!({"identity_token_audience": "//iam.googleapis.com/x"}),
            "service_account_email",
        );
        assert!(msg.contains("requires both"), "{msg}");
        let data = s.write(
            path,
            json!({"identity_token_audience": "GCP-aud-SECRET", "service_account_email": SA}),
        );
        assert_eq!(data["connection_details"]["service_account_email"], SA);
        assert_eq!(
            data["connection_details"]["identity_token_audience"],
            "*****"
        );
        let msg = s.rejects("PATCH", path, json!({"credentials": "{}"}), "credentials");
        assert!(msg.contains("mutually exclusive"), "{msg}");
        s.assert_no_leak(&["GCP-aud-SECRET"]);
    }

    #[test]
    fn deprecated_fields_are_accepted() {
        let s = Server::new();
        let data = s.write(
            "sys/sync/destinations/gcp-sm/old",
            json!({"replication_locations": "us-east1,europe-west1",
                   "locational_kms_keys": {"us-east1": "k1"}}),
        );
        assert_eq!(
            data["connection_details"]["replication_locations"],
            json!(["us-east1", "europe-west1"])
        );
        let data = s.write(
            "sys/sync/destinations/gcp-sm/global",
            json!({"global_kms_key": "projects/p/locations/global/keyRings/r/cryptoKeys/k"}),
        );
        assert!(data["connection_details"]["global_kms_key"].is_string());
        // Moving to the new field means clearing the old one in the same request.
        s.rejects(
            "PATCH",
            "sys/sync/destinations/gcp-sm/global",
            json!({"kms_key_id": "k"}),
            "kms_key_id",
        );
        s.write(
            "sys/sync/destinations/gcp-sm/global",
            json!({"kms_key_id": "k", "global_kms_key": ""}),
        );
        // Google-managed replication: every key empty.
        s.write(
            "sys/sync/destinations/gcp-sm/managed",
            json!({"replica_regions": {"us-east1": "", "europe-west1": ""}}),
        );
    }
}
