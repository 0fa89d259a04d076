//! The `gh` destination's config as the engine sends it (plus `app_config`,
//! which the engine adds for a GitHub App), where it points (the [`Target`]),
//! GitHub's name and size rules, and the API's base URL.

use std::sync::Arc;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::connectors::egress::EgressPolicy;
use crate::connectors::fields::{self, Secret};
use crate::connectors::http::require_https;
use crate::connectors::{Dest, SyncError};

const GITHUB_API: &str = "https://api.github.com";
/// GitHub's limit on one secret's value.
pub const MAX_VALUE_BYTES: usize = 48 * 1024;

/// The destination's connection details.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, deserialize_with = "fields::secret")]
    pub access_token: Option<Secret>,
    #[serde(default, deserialize_with = "fields::text")]
    pub app_name: Option<String>,
    #[serde(default, deserialize_with = "fields::positive")]
    pub installation_id: Option<u64>,
    #[serde(default, deserialize_with = "fields::text")]
    pub enterprise_url: Option<String>,
    #[serde(default, deserialize_with = "fields::text")]
    pub secrets_location: Option<String>,
    #[serde(default, deserialize_with = "fields::text")]
    pub repository_owner: Option<String>,
    #[serde(default, deserialize_with = "fields::text")]
    pub repository_name: Option<String>,
    #[serde(default, deserialize_with = "fields::text")]
    pub environment_name: Option<String>,
    #[serde(default, deserialize_with = "fields::text")]
    pub organization_name: Option<String>,
    #[serde(default, deserialize_with = "fields::text")]
    pub organization_visibility: Option<String>,
    #[serde(default, deserialize_with = "fields::list")]
    pub selected_repository_names: Vec<String>,
    /// The GitHub App's registration (`sys/sync/github-apps`), added by the
    /// engine when `app_name` is set.
    #[serde(default)]
    pub app_config: Option<AppConfig>,
}

/// A GitHub App as the engine passes it to the connector.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    #[serde(default, deserialize_with = "fields::positive")]
    pub app_id: Option<u64>,
    #[serde(default, deserialize_with = "fields::secret")]
    pub private_key: Option<Secret>,
    #[serde(default, deserialize_with = "fields::text")]
    pub app_name: Option<String>,
}

/// Where the secrets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Location {
    Repository {
        owner: String,
        repo: String,
        environment: Option<String>,
    },
    Organization {
        org: String,
        visibility: String,
        selected: Vec<String>,
    },
}

pub(super) enum Credentials {
    Token(Zeroizing<String>),
    App {
        app_id: u64,
        installation_id: u64,
        private_key: Zeroizing<String>,
    },
}

/// A destination's config, read.
pub(super) struct Target {
    /// The REST API's base URL, without a trailing `/`.
    pub base: String,
    pub location: Location,
    pub credentials: Credentials,
    pub policy: Arc<EgressPolicy>,
}

impl Target {
    pub fn new(dest: &Dest<Config>) -> Result<Self, SyncError> {
        let c = &dest.config;
        if let Some(url) = &c.enterprise_url {
            require_https(&dest.egress, "enterprise_url", url)?;
        }
        let base = api_base(c.enterprise_url.as_deref())?;
        let required = |value: &Option<String>, field: &str, when: &str| {
            value
                .clone()
                .ok_or_else(|| SyncError::ClientSide(format!("{field} is required when {when}")))
        };
        let location = match c.secrets_location.as_deref().unwrap_or("repository") {
            "repository" => {
                let when = "secrets_location is repository";
                Location::Repository {
                    owner: required(&c.repository_owner, "repository_owner", when)?,
                    repo: required(&c.repository_name, "repository_name", when)?,
                    environment: c.environment_name.clone(),
                }
            }
            "organization" => {
                let when = "secrets_location is organization";
                let org = required(&c.organization_name, "organization_name", when)?;
                let visibility =
                    required(&c.organization_visibility, "organization_visibility", when)?;
                if !matches!(visibility.as_str(), "all" | "private" | "selected") {
                    return Err(SyncError::ClientSide(format!(
                        "organization_visibility must be all, private or selected, not {visibility:?}"
                    )));
                }
                let selected = c.selected_repository_names.clone();
                if visibility == "selected" && selected.is_empty() {
                    return Err(SyncError::ClientSide(
                        "selected_repository_names is required when organization_visibility is selected"
                            .to_string(),
                    ));
                }
                Location::Organization {
                    org,
                    visibility,
                    selected,
                }
            }
            other => {
                return Err(SyncError::ClientSide(format!(
                    "secrets_location must be repository or organization, not {other:?}"
                )));
            }
        };
        let app = c.app_config.as_ref();
        let app_name = c
            .app_name
            .as_deref()
            .or_else(|| app.and_then(|a| a.app_name.as_deref()));
        let credentials = if let Some(app_name) = app_name {
            let installation_id = c.installation_id.ok_or_else(|| {
                SyncError::ClientSide("installation_id is required with app_name".to_string())
            })?;
            let (Some(app_id), Some(private_key)) = (
                app.and_then(|a| a.app_id),
                app.and_then(|a| a.private_key.as_ref()),
            ) else {
                return Err(SyncError::Internal(format!(
                    "destination {:?} uses GitHub App {app_name:?}, but the app's app_id and \
                     private_key were not passed to the connector (app_config)",
                    dest.name
                )));
            };
            Credentials::App {
                app_id,
                installation_id,
                private_key: Zeroizing::new(private_key.as_str().to_string()),
            }
        } else if let Some(token) = &c.access_token {
            Credentials::Token(Zeroizing::new(token.as_str().to_string()))
        } else {
            return Err(SyncError::ClientSide(
                "no GitHub credentials: set access_token, or app_name and installation_id"
                    .to_string(),
            ));
        };
        Ok(Target {
            base,
            location,
            credentials,
            policy: dest.egress.clone(),
        })
    }

    pub fn scope_path(&self) -> String {
        match &self.location {
            Location::Repository {
                owner,
                repo,
                environment: None,
            } => format!(
                "/repos/{}/{}/actions/secrets",
                segment(owner),
                segment(repo)
            ),
            Location::Repository {
                owner,
                repo,
                environment: Some(env),
            } => format!(
                "/repos/{}/{}/environments/{}/secrets",
                segment(owner),
                segment(repo),
                segment(env)
            ),
            Location::Organization { org, .. } => format!("/orgs/{}/actions/secrets", segment(org)),
        }
    }

    pub fn describe(&self) -> String {
        match &self.location {
            Location::Repository {
                owner,
                repo,
                environment: None,
            } => format!("repository {owner}/{repo}"),
            Location::Repository {
                owner,
                repo,
                environment: Some(env),
            } => format!("environment {env:?} of repository {owner}/{repo}"),
            Location::Organization { org, .. } => format!("organization {org}"),
        }
    }
}

/// GitHub's secret name rules; the name as GitHub stores it (upper-case).
pub fn check_name(name: &str) -> Result<String, SyncError> {
    let refuse = |why: &str| SyncError::ClientSide(format!("GitHub secret name {name:?} {why}"));
    if name.is_empty() {
        return Err(SyncError::ClientSide(
            "GitHub secret names cannot be empty".to_string(),
        ));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(refuse("may only contain letters, digits and _"));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(refuse("must not start with a digit"));
    }
    if name
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("GITHUB_"))
    {
        return Err(refuse("must not start with GITHUB_"));
    }
    Ok(name.to_ascii_uppercase())
}

/// GitHub's 48 KB limit on a secret's value.
pub fn check_value(value: &str) -> Result<(), SyncError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(SyncError::ClientSide(format!(
            "the value is {} bytes but GitHub secrets are limited to 48 KB ({MAX_VALUE_BYTES} bytes)",
            value.len()
        )));
    }
    Ok(())
}

/// The REST API's base URL: github.com's, or GitHub Enterprise Server's
/// `<enterprise_url>/api/v3` (kept as given when it already ends with
/// `/api/v3` or names an `api.` host, as go-github does).
fn api_base(enterprise_url: Option<&str>) -> Result<String, SyncError> {
    let Some(raw) = enterprise_url else {
        return Ok(GITHUB_API.to_string());
    };
    let mut url = url::Url::parse(raw)
        .map_err(|e| SyncError::ClientSide(format!("enterprise_url is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(SyncError::ClientSide(
            "enterprise_url must be an http or https URL with a host".to_string(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SyncError::ClientSide(
            "enterprise_url must not contain credentials".to_string(),
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let path = url.path().trim_end_matches('/').to_string();
    let api_host = host.starts_with("api.") || host.contains(".api.");
    if !path.ends_with("/api/v3") && !api_host {
        url.set_path(&format!("{path}/api/v3"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved
/// characters; `.` too when the segment is only dots).
pub(super) fn segment(s: &str) -> String {
    let only_dots = s.chars().all(|c| c == '.');
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') || (b == b'.' && !only_dots)
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::connectors::Destination;

    fn target(config: Value) -> Result<Target, SyncError> {
        let d = Destination {
            kind: "gh".into(),
            name: "d".into(),
            config,
            tenant: String::new(),
        };
        Dest::parse(&d).and_then(|d| Target::new(&d))
    }

    #[test]
    fn names_follow_githubs_rules() {
        assert_eq!(check_name("db_pass").unwrap(), "DB_PASS");
        assert_eq!(check_name("_1").unwrap(), "_1");
        assert_eq!(check_name("MY_GITHUB_X").unwrap(), "MY_GITHUB_X");
        for bad in ["", "1A", "A-B", "A B", "github_token", "GITHUB_X", "É"] {
            assert!(
                matches!(check_name(bad), Err(SyncError::ClientSide(_))),
                "{bad:?}"
            );
        }
        assert!(check_value(&"x".repeat(MAX_VALUE_BYTES)).is_ok());
        let e = check_value(&"x".repeat(MAX_VALUE_BYTES + 1)).unwrap_err();
        assert!(
            matches!(&e, SyncError::ClientSide(m) if m.contains("48 KB")),
            "{e:?}"
        );
    }

    #[test]
    fn api_base_urls() {
        assert_eq!(api_base(None).unwrap(), "https://api.github.com");
        assert_eq!(
            api_base(Some("https://ghe.example.com")).unwrap(),
            "https://ghe.example.com/api/v3"
        );
        assert_eq!(
            api_base(Some("https://ghe.example.com/api/v3/")).unwrap(),
            "https://ghe.example.com/api/v3"
        );
        assert_eq!(
            api_base(Some("http://127.0.0.1:8080/")).unwrap(),
            "http://127.0.0.1:8080/api/v3"
        );
        assert_eq!(
            api_base(Some("https://api.acme.ghe.com")).unwrap(),
            "https://api.acme.ghe.com"
        );
        for bad in ["ghe.example.com", "ftp://x", "https://u:p@ghe.example.com"] {
            let e = api_base(Some(bad)).unwrap_err();
            assert!(
                matches!(&e, SyncError::ClientSide(m) if !m.contains("u:p")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn targets() {
        let t = target(json!({
            "access_token": "ghp_x", "repository_owner": "acme", "repository_name": "web"
        }))
        .unwrap();
        assert_eq!(t.scope_path(), "/repos/acme/web/actions/secrets");
        assert_eq!(t.base, "https://api.github.com");
        let t = target(json!({
            "access_token": "ghp_x", "repository_owner": "acme", "repository_name": "web",
            "environment_name": "prod eu", "enterprise_url": "https://ghe.acme.io"
        }))
        .unwrap();
        assert_eq!(
            t.scope_path(),
            "/repos/acme/web/environments/prod%20eu/secrets"
        );
        assert_eq!(t.base, "https://ghe.acme.io/api/v3");
        let t = target(json!({
            "access_token": "ghp_x", "secrets_location": "organization", "organization_name": "acme",
            "organization_visibility": "selected", "selected_repository_names": ["web", " api "]
        }))
        .unwrap();
        assert_eq!(t.scope_path(), "/orgs/acme/actions/secrets");
        assert_eq!(
            t.location,
            Location::Organization {
                org: "acme".into(),
                visibility: "selected".into(),
                selected: vec!["web".into(), "api".into()]
            }
        );
        let t = target(json!({
            "app_name": "my-app", "installation_id": 7, "repository_owner": "a", "repository_name": "b",
            "app_config": {"app_id": "12", "private_key": "PEM"}
        }))
        .unwrap();
        assert!(matches!(
            t.credentials,
            Credentials::App {
                app_id: 12,
                installation_id: 7,
                ..
            }
        ));
        // Without the app's key the engine broke its contract with the host.
        let e = target(json!({
            "app_name": "my-app", "installation_id": 7, "repository_owner": "a", "repository_name": "b",
        }));
        assert!(matches!(e, Err(SyncError::Internal(_))));
        for (bad, field) in [
            (
                json!({"repository_owner": "a", "repository_name": "b"}),
                "access_token",
            ),
            (
                json!({"access_token": "t", "repository_name": "b"}),
                "repository_owner",
            ),
            (
                json!({"access_token": "t", "secrets_location": "organization", "organization_name": "o",
                       "organization_visibility": "selected"}),
                "selected_repository_names",
            ),
            (
                json!({"access_token": "t", "secrets_location": "organization", "organization_name": "o",
                       "organization_visibility": "public"}),
                "organization_visibility",
            ),
            (
                json!({"app_name": "a", "installation_id": "x", "repository_owner": "a", "repository_name": "b"}),
                "installation_id",
            ),
        ] {
            match target(bad) {
                Err(SyncError::ClientSide(m)) => assert!(m.contains(field), "{m}"),
                Err(e) => panic!("{field}: {e:?}"),
                Ok(_) => panic!("{field}: accepted"),
            }
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("my.repo-1_x"), "my.repo-1_x");
    }
}
