//! `azure-kv`: Azure Key Vault.

use crate::error::ApiResult;
use crate::framework::{Check, FieldSpec, Preset};
use crate::storage::Tx;
use crate::sync::names::normalize;

use super::schema::{self, Details};
use super::{DestinationType, Granularity};

const CLOUDS: &[&str] = &[
    "AzurePublicCloud",
    "AzureUSGovernmentCloud",
    "AzureChinaCloud",
];

const FIELDS: &[FieldSpec] = &[
    FieldSpec::string("key_vault_uri")
        .required()
        .immutable()
        .endpoint()
        .check(Check::HttpUrl)
        .describe("URI of the key vault, like https://myvault.vault.azure.net."),
    FieldSpec::string("client_id")
        .required()
        .describe("Client ID of the application registration that writes the secrets."),
    FieldSpec::string("client_secret")
        .sensitive()
        .credential()
        .describe("Client secret of the application registration."),
    FieldSpec::string("tenant_id")
        .required()
        .immutable()
        .describe("Directory (tenant) ID of the application registration."),
    FieldSpec::string("cloud")
        .immutable()
        .endpoint()
        .default(Preset::Str("AzurePublicCloud"))
        .check(Check::OneOf(CLOUDS))
        .describe("Azure cloud of the key vault."),
    // Azure takes audiences shorter than 600 characters.
    schema::IDENTITY_TOKEN_AUDIENCE.check(Check::MaxLen(599)),
    schema::IDENTITY_TOKEN_KEY,
    schema::IDENTITY_TOKEN_TTL,
];

pub const TYPE: DestinationType = DestinationType {
    kind: "azure-kv",
    default_granularity: Granularity::SecretPath,
    default_template_path: "vault-{{ .MountAccessor | replace \"_\" \"-\" }}-{{ .SecretPath }}",
    default_template_key: "vault-{{ .MountAccessor | replace \"_\" \"-\" }}-{{ .SecretPath }}-{{ .SecretKey }}",
    name_rule: &normalize::AZURE_KV,
    cloud: true,
    fields: FIELDS,
    rules,
    reads: &[],
};

/// A client secret, or workload identity federation, or neither (managed identity).
fn rules(_tx: &mut Tx, new: &Details, _old: Option<&Details>) -> ApiResult<()> {
    new.exclusive(&[("client_secret", "identity_token_audience")])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::sync::destinations::testing::{Server, TypeCase};

    const URI: &str = "https://myvault.vault.azure.net";

    fn case() -> TypeCase {
        TypeCase {
            kind: "azure-kv",
            full: json!({
                "key_vault_uri": URI, "client_id": "cid", "client_secret": "AZ-client-SECRET",
                "tenant_id": "tid", "cloud": "AzureUSGovernmentCloud",
                "identity_token_key": "az-KEY-name", "identity_token_ttl": 60,
                "custom_tags": ["a=1", "b=2"], "allowed_ipv4_addresses": "10.0.0.0/8",
            }),
            full_read: json!({
                "key_vault_uri": URI, "client_id": "cid", "client_secret": "*****",
                "tenant_id": "tid", "cloud": "AzureUSGovernmentCloud",
                "identity_token_key": "*****", "identity_token_ttl": 60,
                "allowed_ipv4_addresses": ["10.0.0.0/8"],
            }),
            minimal: json!({"key_vault_uri": URI, "client_id": "cid", "tenant_id": "tid"}),
            secrets: &["AZ-client-SECRET", "az-KEY-name"],
            bad: vec![
                (json!({"key_vault_uri": ""}), "key_vault_uri"),
                (
                    json!({"key_vault_uri": "myvault.vault.azure.net"}),
                    "key_vault_uri",
                ),
                (
                    json!({"key_vault_uri": "ftp://x.example.com"}),
                    "key_vault_uri",
                ),
                (json!({"client_id": ""}), "client_id"),
                (json!({"tenant_id": ""}), "tenant_id"),
                (json!({"cloud": "AzureMoonCloud"}), "cloud"),
                (
                    json!({"identity_token_audience": "a".repeat(600)}),
                    "identity_token_audience",
                ),
                (json!({"identity_token_ttl": "1y"}), "identity_token_ttl"),
                (json!({"granularity": "key"}), "granularity"),
            ],
            immutable: vec![
                ("key_vault_uri", json!("https://other.vault.azure.net")),
                ("tenant_id", json!("tid2")),
                ("cloud", json!("AzureChinaCloud")),
            ],
            sensitive: &["client_secret", "identity_token_key"],
        }
    }

    #[test]
    fn field_table() {
        case().check();
    }

    #[test]
    fn required_fields_and_defaults() {
        let s = Server::new();
        let path = "sys/sync/destinations/azure-kv/d";
        for field in ["key_vault_uri", "client_id", "tenant_id"] {
            let mut body = json!({"key_vault_uri": URI, "client_id": "cid", "tenant_id": "tid"});
            body.as_object_mut().unwrap().remove(field);
            let msg = s.rejects("POST", path, body, field);
            assert!(msg.contains("missing required field"), "{msg}");
        }
        let data = s.write(
            path,
            json!({"key_vault_uri": URI, "client_id": "cid", "tenant_id": "tid"}),
        );
        assert_eq!(data["connection_details"]["cloud"], "AzurePublicCloud");
        assert_eq!(data["connection_details"]["identity_token_ttl"], 3600);
        assert_eq!(
            data["options"],
            json!({"granularity_level": "secret-path", "custom_tags": {},
                   "secret_name_template": "vault-{{ .MountAccessor | replace \"_\" \"-\" }}-{{ .SecretPath }}"})
        );
        // Reading `cloud` back unchanged is not a change.
        s.write(path, json!({"cloud": "AzurePublicCloud"}));
        let msg = s.rejects(
            "POST",
            path,
            json!({"client_secret": "x", "identity_token_audience": "api://AzureADTokenExchange"}),
            "identity_token_audience",
        );
        assert!(msg.contains("mutually exclusive"), "{msg}");
        // The Azure doc sample's `subscription_id` is an unknown field: a warning.
        let (status, body) = s.post(path, json!({"subscription_id": "sub"}));
        assert_eq!(status, 200);
        assert_eq!(
            body["warnings"],
            json!(["Endpoint ignored these unrecognized parameters: [subscription_id]"])
        );
    }
}
