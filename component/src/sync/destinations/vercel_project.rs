//! `vercel-project`: environment variables of a Vercel project.

use crate::framework::{Check, FieldSpec, FieldType};
use crate::sync::names::normalize;

use super::schema;
use super::{DestinationType, Granularity};

const FIELDS: &[FieldSpec] = &[
    FieldSpec::string("access_token")
        .sensitive()
        .credential()
        .required()
        .describe("Vercel access token that writes the environment variables."),
    FieldSpec::string("project_id")
        .required()
        .immutable()
        .describe("Project that receives the environment variables."),
    FieldSpec::string("team_id").describe("Team that owns the project."),
    FieldSpec::new("deployment_environments", FieldType::CommaStringSlice)
        .required()
        .check(Check::OneOf(&["development", "preview", "production"]))
        .describe("Deployment environments the variables apply to."),
];

pub const TYPE: DestinationType = DestinationType {
    kind: "vercel-project",
    default_granularity: Granularity::SecretKey,
    default_template_path: "VAULT_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}",
    default_template_key: "VAULT_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}_{{ .SecretKey | uppercase }}",
    name_rule: &normalize::VERCEL,
    cloud: false,
    fields: FIELDS,
    rules: schema::no_rules,
    reads: &[],
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::sync::destinations::testing::{Server, TypeCase};

    fn case() -> TypeCase {
        TypeCase {
            kind: "vercel-project",
            full: json!({
                "access_token": "vercel-SECRET-token", "project_id": "prj_1", "team_id": "team_1",
                "deployment_environments": ["development", "preview", "production"],
                "allowed_ipv6_addresses": ["2001:db8::/32"],
            }),
            full_read: json!({
                "access_token": "*****", "project_id": "prj_1", "team_id": "team_1",
                "deployment_environments": ["development", "preview", "production"],
                "allowed_ipv6_addresses": ["2001:db8::/32"],
            }),
            minimal: json!({"access_token": "v-min", "project_id": "prj_2",
                            "deployment_environments": "production"}),
            secrets: &["vercel-SECRET-token"],
            bad: vec![
                (json!({"access_token": ""}), "access_token"),
                (json!({"project_id": ""}), "project_id"),
                (
                    json!({"deployment_environments": []}),
                    "deployment_environments",
                ),
                (
                    json!({"deployment_environments": "production,staging"}),
                    "deployment_environments",
                ),
                (json!({"team_id": {"a": 1}}), "team_id"),
                (json!({"granularity": "everything"}), "granularity"),
            ],
            immutable: vec![("project_id", json!("prj_9"))],
            sensitive: &["access_token"],
        }
    }

    #[test]
    fn field_table() {
        case().check();
    }

    #[test]
    fn required_fields() {
        let s = Server::new();
        let path = "sys/sync/destinations/vercel-project/v";
        for field in ["access_token", "project_id", "deployment_environments"] {
            let mut body = json!({"access_token": "t", "project_id": "p", "deployment_environments": "preview"});
            body.as_object_mut().unwrap().remove(field);
            let msg = s.rejects("POST", path, body, field);
            assert!(msg.contains("missing required field"), "{msg}");
        }
        // A masked token on create is no token.
        s.rejects(
            "POST",
            path,
            json!({"access_token": "*****", "project_id": "p", "deployment_environments": "preview"}),
            "access_token",
        );
        let data = s.write(
            path,
            json!({"access_token": "t", "project_id": "p", "deployment_environments": "preview"}),
        );
        assert_eq!(data["options"]["granularity_level"], "secret-key");
        assert_eq!(
            data["options"]["secret_name_template"],
            "VAULT_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}_{{ .SecretKey | uppercase }}"
        );
    }
}
