//! `gh`: GitHub Actions secrets of a repository, a repository environment or
//! an organization, with a personal access token or a GitHub App.
//!
//! kvsync serves many tenants from one process, so there is no fallback to
//! the server's environment: `repository_owner` and `repository_name` are
//! required for the `repository` location, and the organization fields
//! (visibility included: it decides which repositories see the secrets) for
//! `organization`.

use crate::error::{ApiError, ApiResult};
use crate::framework::{Check, FieldSpec, FieldType, Preset};
use crate::storage::Tx;
use crate::sync::keys;
use crate::sync::names::normalize;

use super::schema::Details;
use super::{DestinationType, Granularity};

const FIELDS: &[FieldSpec] = &[
    FieldSpec::string("access_token")
        .sensitive()
        .credential()
        .describe("Personal access token that writes the secrets."),
    // The App's private key is the credential: naming it again is what
    // re-enters it (and what the App's access check sees).
    FieldSpec::string("app_name")
        .credential()
        .read_under("app_config")
        .describe(
            "GitHub App registered at sys/sync/github-apps to authenticate as, instead of a token.",
        ),
    FieldSpec::new("installation_id", FieldType::Int)
        .check(Check::Positive)
        .describe("Installation ID of the GitHub App; required with app_name."),
    FieldSpec::string("enterprise_url")
        .endpoint()
        .check(Check::HttpUrl)
        .describe("Base URL of a GitHub Enterprise Server; github.com when unset."),
    FieldSpec::string("secrets_location")
        .default(Preset::Str("repository"))
        .check(Check::OneOf(&["repository", "organization"]))
        .describe(
            "Whether the secrets are repository (or environment) secrets or organization secrets.",
        ),
    FieldSpec::string("repository_owner")
        .immutable()
        .describe("Owner of the repository that receives the secrets."),
    FieldSpec::string("repository_name")
        .immutable()
        .describe("Name of the repository that receives the secrets."),
    FieldSpec::string("environment_name")
        .describe("Environment of the repository whose secrets are written."),
    FieldSpec::string("organization_name")
        .describe("Organization that receives the secrets; required for organization secrets."),
    FieldSpec::string("organization_visibility")
        .immutable()
        .check(Check::OneOf(&["all", "private", "selected"]))
        .describe("Which repositories of the organization may use its secrets."),
    FieldSpec::new("selected_repository_names", FieldType::CommaStringSlice)
        .immutable()
        .describe(
            "Repositories that may use the secrets when organization_visibility is selected.",
        ),
];

pub const TYPE: DestinationType = DestinationType {
    kind: "gh",
    default_granularity: Granularity::SecretKey,
    default_template_path: "VAULT_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}",
    default_template_key: "VAULT_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}_{{ .SecretKey | uppercase }}",
    name_rule: &normalize::GH,
    cloud: false,
    fields: FIELDS,
    rules,
    // Binding a destination to a GitHub App needs `read` on the app.
    reads: &[("app_name", "sys/sync/github-apps/")],
};

fn rules(tx: &mut Tx, new: &Details, _old: Option<&Details>) -> ApiResult<()> {
    new.together("app_name", "installation_id")?;
    if let Some(app) = new.str("app_name")
        && tx.get(&keys::github_app(app))?.is_none()
    {
        return Err(ApiError::bad_request(format!(
            "app_name: no GitHub App named {app:?}; register it at sys/sync/github-apps/{app} first"
        )));
    }
    let repository = new.is("secrets_location", "repository");
    let when_repo = "secrets_location is repository";
    let when_org = "secrets_location is organization";
    new.exactly_when("repository_owner", repository, when_repo)?;
    new.exactly_when("repository_name", repository, when_repo)?;
    new.only_when("environment_name", repository, when_repo)?;
    new.exactly_when("organization_name", !repository, when_org)?;
    new.exactly_when("organization_visibility", !repository, when_org)?;
    new.exactly_when(
        "selected_repository_names",
        new.is("organization_visibility", "selected"),
        "organization_visibility is selected",
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::sync::destinations::testing::{Server, TypeCase};

    fn case() -> TypeCase {
        TypeCase {
            kind: "gh",
            full: json!({
                "access_token": "ghp_SECRETtoken", "app_name": "my-app", "installation_id": "42",
                "enterprise_url": "https://ghe.example.com/api/v3",
                "repository_owner": "acme", "repository_name": "web", "environment_name": "prod",
                "granularity": "secret-path", "allowed_ports": "443",
            }),
            full_read: json!({
                "access_token": "*****", "app_config": {"app_name": "my-app"}, "installation_id": 42,
                "enterprise_url": "https://ghe.example.com/api/v3", "secrets_location": "repository",
                "repository_owner": "acme", "repository_name": "web", "environment_name": "prod",
                "allowed_ports": [443],
            }),
            minimal: json!({"access_token": "ghp_min", "repository_owner": "acme", "repository_name": "api"}),
            secrets: &["ghp_SECRETtoken", "APPSECRET"],
            bad: vec![
                (json!({"installation_id": "abc"}), "installation_id"),
                (json!({"installation_id": -1}), "installation_id"),
                (
                    json!({"app_name": "nope", "installation_id": 1}),
                    "app_name",
                ),
                (json!({"app_name": "", "installation_id": 7}), "app_name"),
                (
                    json!({"enterprise_url": "ghe.example.com"}),
                    "enterprise_url",
                ),
                (
                    json!({"secrets_location": "everywhere"}),
                    "secrets_location",
                ),
                (json!({"organization_name": "acme"}), "organization_name"),
                (
                    json!({"organization_visibility": "public"}),
                    "organization_visibility",
                ),
                (json!({"granularity": "path"}), "granularity"),
                (
                    json!({"secret_name_template": "X_{{ .SecretPath }}", "granularity": "secret-key"}),
                    "secret_name_template",
                ),
            ],
            immutable: vec![
                ("repository_owner", json!("other")),
                ("repository_name", json!("other")),
            ],
            sensitive: &["access_token"],
        }
    }

    #[test]
    fn field_table() {
        let case = case();
        // The full body names a registered app; the check's server has none yet,
        // so the table runs on a server where the app exists.
        let s = Server::new();
        s.put_app("my-app");
        case.check_on(&s);
    }

    #[test]
    fn repository_and_environment() {
        let s = Server::new();
        let path = "sys/sync/destinations/gh/repo";
        for missing in ["repository_owner", "repository_name"] {
            let mut body = json!({"repository_owner": "acme", "repository_name": "web"});
            body.as_object_mut().unwrap().remove(missing);
            let msg = s.rejects("POST", path, body, missing);
            assert!(
                msg.contains("required when secrets_location is repository"),
                "{msg}"
            );
        }
        let data = s.write(
            path,
            json!({"repository_owner": "acme", "repository_name": "web"}),
        );
        assert_eq!(data["options"]["granularity_level"], "secret-key");
        assert!(data["options"].get("custom_tags").is_none());
        assert!(data["connection_details"].get("access_token").is_none());
        // No custom tags on gh: unknown fields, reported as a warning.
        let (status, body) = s.post(
            path,
            json!({"custom_tags": {"a": "b"}, "tags_to_remove": ["a"]}),
        );
        assert_eq!(status, 200);
        assert_eq!(
            body["warnings"],
            json!(["Endpoint ignored these unrecognized parameters: [custom_tags tags_to_remove]"])
        );
        assert!(s.dest("gh", "repo").unwrap().custom_tags.is_empty());
    }

    #[test]
    fn organization_secrets() {
        let s = Server::new();
        let path = "sys/sync/destinations/gh/org";
        let org = json!({"secrets_location": "organization", "organization_name": "acme",
                         "organization_visibility": "selected", "selected_repository_names": "web,api"});
        for (extra, field) in [
            (json!({"organization_name": ""}), "organization_name"),
            (
                json!({"organization_visibility": ""}),
                "organization_visibility",
            ),
            (
                json!({"selected_repository_names": []}),
                "selected_repository_names",
            ),
            (
                json!({"organization_visibility": "all"}),
                "selected_repository_names",
            ),
            (json!({"environment_name": "prod"}), "environment_name"),
            (json!({"repository_owner": "acme"}), "repository_owner"),
        ] {
            let mut body = org.clone();
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            s.rejects("POST", path, body, field);
        }
        let data = s.write(path, org);
        assert_eq!(
            data["connection_details"]["selected_repository_names"],
            json!(["web", "api"])
        );
        // Visibility and the selected repositories are fixed once created.
        for (field, value) in [
            ("organization_visibility", json!("private")),
            ("selected_repository_names", json!(["web"])),
        ] {
            let msg = s.rejects("PATCH", path, json!({ field: value }), field);
            assert!(msg.contains("cannot be changed"), "{msg}");
        }
        s.write(path, json!({"organization_name": "acme2"}));
    }

    #[test]
    fn github_apps() {
        let s = Server::new();
        let path = "sys/sync/destinations/gh/app";
        let repo = json!({"repository_owner": "acme", "repository_name": "web"});
        let mut body = repo.clone();
        body["app_name"] = json!("my-app");
        body["installation_id"] = json!(7);
        let msg = s.rejects("POST", path, body.clone(), "app_name");
        assert!(msg.contains("sys/sync/github-apps/my-app"), "{msg}");
        s.put_app("my-app");
        body["installation_id"] = json!(null);
        let msg = s.rejects("POST", path, body.clone(), "installation_id");
        assert!(msg.contains("together"), "{msg}");
        body["installation_id"] = json!("7");
        let data = s.write(path, body);
        assert_eq!(
            data["connection_details"]["app_config"],
            json!({"app_name": "my-app"})
        );
        assert_eq!(data["connection_details"]["installation_id"], 7);
        // The connector gets the app's name and installation, not its key.
        let dest = s.dest("gh", "app").unwrap();
        let config: serde_json::Value = serde_json::from_str(&dest.connector_ref().config).unwrap();
        assert_eq!(config["app_name"], "my-app");
        assert_eq!(config["installation_id"], 7);
        assert!(!dest.connector_ref().config.contains("APPSECRET"));
        s.assert_no_leak(&["APPSECRET"]);
    }

    #[test]
    fn binding_an_app_needs_read_on_it() {
        let s = Server::new();
        s.put_app("my-app");
        s.fakes.authz.deny("read", "sys/sync/github-apps/my-app");
        let path = "sys/sync/destinations/gh/app";
        let body = json!({"repository_owner": "acme", "repository_name": "web",
                          "app_name": "my-app", "installation_id": 7});
        let (status, out) = s.post(path, body);
        assert_eq!(status, 403, "{out}");
        assert_eq!(
            out["errors"][0],
            "app_name: permission denied to read sys/sync/github-apps/my-app"
        );
        assert!(s.dest("gh", "app").is_none());
        // A destination without an app, then PATCHed to bind one: refused too.
        s.write(
            path,
            json!({"repository_owner": "acme", "repository_name": "web",
                             "access_token": "ghp_x"}),
        );
        let (status, _) = s.patch(path, json!({"app_name": "my-app", "installation_id": 7}));
        assert_eq!(status, 403);
        // Other changes need nothing of the app.
        s.write(path, json!({"access_token": "ghp_y"}));
    }
}
