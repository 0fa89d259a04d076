//! `aws-sm`: AWS Secrets Manager.

use crate::error::{ApiError, ApiResult};
use crate::framework::{FieldSpec, FieldType};
use crate::storage::Tx;
use crate::sync::names::normalize;

use super::schema::{self, Details};
use super::{DestinationType, Granularity};

const FIELDS: &[FieldSpec] = &[
    FieldSpec::string("access_key_id")
        .sensitive()
        .credential()
        .describe("Access key ID of an IAM user; the server's credential chain when unset."),
    FieldSpec::string("secret_access_key")
        .sensitive()
        .credential()
        .describe("Secret access key that goes with access_key_id."),
    FieldSpec::string("region")
        .immutable()
        .endpoint()
        .describe("AWS region of the secrets; the server's region when unset."),
    FieldSpec::string("role_arn")
        .describe("ARN of an IAM role to assume; it may change only within the same account."),
    FieldSpec::string("external_id").describe("External ID presented when assuming role_arn."),
    schema::IDENTITY_TOKEN_AUDIENCE,
    schema::IDENTITY_TOKEN_KEY,
    schema::IDENTITY_TOKEN_TTL,
    FieldSpec::string("kms_key_id")
        .describe("KMS key that encrypts the secrets in the primary region."),
    FieldSpec::new("replica_regions", FieldType::KvPairs).describe(
        "Regions to replicate the secrets to, each with its KMS key (empty: the AWS-managed key).",
    ),
];

pub const TYPE: DestinationType = DestinationType {
    kind: "aws-sm",
    default_granularity: Granularity::SecretPath,
    default_template_path: "vault/{{ .MountAccessor }}/{{ .SecretPath }}",
    default_template_key: "vault/{{ .MountAccessor }}/{{ .SecretPath }}/{{ .SecretKey }}",
    name_rule: &normalize::AWS_SM,
    cloud: true,
    fields: FIELDS,
    rules,
    reads: &[],
};

fn rules(_tx: &mut Tx, new: &Details, old: Option<&Details>) -> ApiResult<()> {
    new.together("access_key_id", "secret_access_key")?;
    new.exclusive(&[("access_key_id", "identity_token_audience")])?;
    new.needs("identity_token_audience", "role_arn")?;
    let Some(arn) = new.str("role_arn") else {
        return Ok(());
    };
    let account = account_of(arn).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid role_arn {arn:?}: expected arn:aws:iam::<account-id>:role/<name>"
        ))
    })?;
    // The role may change, within the same account only.
    match old.and_then(|d| d.str("role_arn")).and_then(account_of) {
        Some(before) if before != account => Err(ApiError::bad_request(format!(
            "role_arn cannot move to another AWS account (from {before} to {account}); create a new destination instead"
        ))),
        _ => Ok(()),
    }
}

/// The account of `arn:<partition>:iam::<12 digits>:role/<name>`.
fn account_of(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let ok = parts.next() == Some("arn")
        && parts.next().is_some_and(|p| p.starts_with("aws"))
        && parts.next() == Some("iam")
        && parts.next() == Some("");
    let account = parts
        .next()
        .filter(|a| ok && a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))?;
    let resource = parts.next()?;
    resource
        .strip_prefix("role/")
        .is_some_and(|r| !r.is_empty())
        .then_some(account)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sync::destinations::testing::{Server, TypeCase};

    const ARN: &str = "arn:aws:iam::111122223333:role/vault-sync";

    fn case() -> TypeCase {
        TypeCase {
            kind: "aws-sm",
            full: json!({
                "access_key_id": "AKIAEXAMPLEKEY", "secret_access_key": "aws-SECRET-value",
                "region": "us-east-1", "role_arn": ARN, "external_id": "ext-1",
                "identity_token_key": "tok-KEY-name", "identity_token_ttl": "30m",
                "kms_key_id": "arn:aws:kms:us-east-1:111122223333:key/abc",
                "replica_regions": {"eu-west-1": "arn:aws:kms:eu-west-1:111122223333:key/def", "us-west-2": ""},
                "custom_tags": {"team": "payments"},
                "granularity": "secret-key",
                "allowed_ports": [443],
            }),
            full_read: json!({
                "access_key_id": "*****", "secret_access_key": "*****",
                "region": "us-east-1", "role_arn": ARN, "external_id": "ext-1",
                "identity_token_key": "*****", "identity_token_ttl": 1800,
                "kms_key_id": "arn:aws:kms:us-east-1:111122223333:key/abc",
                "replica_regions": {"eu-west-1": "arn:aws:kms:eu-west-1:111122223333:key/def", "us-west-2": ""},
                "allowed_ports": [443],
            }),
            minimal: json!({}),
            secrets: &["AKIAEXAMPLEKEY", "aws-SECRET-value", "tok-KEY-name"],
            bad: vec![
                (
                    json!({"access_key_id": "AKIAONLY", "secret_access_key": ""}),
                    "secret_access_key",
                ),
                (json!({"identity_token_ttl": "soon"}), "identity_token_ttl"),
                (json!({"identity_token_ttl": -5}), "identity_token_ttl"),
                (json!({"role_arn": "not-an-arn"}), "role_arn"),
                (json!({"role_arn": "arn:aws:iam::12:role/x"}), "role_arn"),
                (json!({"replica_regions": "novalue"}), "replica_regions"),
                (json!({"region": ["a"]}), "region"),
                (json!({"granularity": "secret"}), "granularity"),
                (json!({"custom_tags": ["novalue"]}), "custom_tags"),
                (
                    json!({"custom_tags": {"hashicorp:vault": "x"}}),
                    "custom_tags",
                ),
            ],
            immutable: vec![("region", json!("eu-west-1"))],
            sensitive: &["access_key_id", "secret_access_key", "identity_token_key"],
        }
    }

    #[test]
    fn field_table() {
        case().check();
    }

    #[test]
    fn credentials_rules() {
        let s = Server::new();
        let path = "sys/sync/destinations/aws-sm/d";
        let msg = s.rejects(
            "POST",
            path,
            json!({"access_key_id": "AKIA1"}),
            "access_key_id",
        );
        assert!(msg.contains("together"), "{msg}");
        let msg = s.rejects(
            "POST",
            path,
            json!({"access_key_id": "AKIA1", "secret_access_key": "s",
                   "identity_token_audience": "aud", "role_arn": ARN}),
            "identity_token_audience",
        );
        assert!(msg.contains("mutually exclusive"), "{msg}");
        s.rejects(
            "POST",
            path,
            json!({"identity_token_audience": "aud"}),
            "role_arn",
        );
        // Switching to WIF: clear the keys in the same request.
        s.write(
            path,
            json!({"access_key_id": "AKIA1", "secret_access_key": "s"}),
        );
        let data = s.write(
            path,
            json!({"access_key_id": "", "secret_access_key": "", "identity_token_audience": "aud-SECRET",
                   "role_arn": ARN}),
        );
        assert_eq!(
            data["connection_details"]["identity_token_audience"],
            "*****"
        );
        assert!(data["connection_details"].get("access_key_id").is_none());
        assert_eq!(data["connection_details"]["identity_token_ttl"], 3600);
        s.assert_no_leak(&["aud-SECRET"]);
    }

    #[test]
    fn role_arn_stays_in_its_account() {
        let s = Server::new();
        let path = "sys/sync/destinations/aws-sm/d";
        s.write(path, json!({"role_arn": ARN}));
        s.write(
            path,
            json!({"role_arn": "arn:aws:iam::111122223333:role/other"}),
        );
        let msg = s.rejects(
            "PATCH",
            path,
            json!({"role_arn": "arn:aws:iam::999999999999:role/other"}),
            "role_arn",
        );
        assert!(msg.contains("another AWS account"), "{msg}");
        assert_eq!(
            account_of("arn:aws-us-gov:iam::111122223333:role/a/b"),
            Some("111122223333")
        );
        assert_eq!(account_of("arn:aws:iam::111122223333:user/a"), None);
        assert_eq!(account_of("arn:aws:sts::111122223333:role/a"), None);
    }
}
