//! A fake of GitHub's REST API for Actions secrets, modelled on GitHub's OpenAPI description (`@octokit/openapi`).
//!
//! - Every route is served both at `/...` (github.com) and `/api/v3/...`
//!   (GitHub Enterprise Server).
//! - Auth: `Authorization: Bearer|token <tok>`. Known tokens are the
//!   personal access token [`TOKEN`] (full access), tokens added through
//!   `/_fake/tokens` (optionally read-only: writes answer 403), and the
//!   installation tokens this fake issued (they see only the repositories and
//!   the organization of the installation's account; others are 404, as on
//!   GitHub). Anything else: 401 `{"message": "Bad credentials"}`. A missing
//!   `User-Agent` is a 403, an unsupported `X-GitHub-Api-Version` a 400.
//! - GitHub Apps: `POST /app/installations/{id}/access_tokens` takes an
//!   RS256 app JWT (`iss` = app id, `iat`/`exp` at most 10 minutes apart,
//!   not expired), verified with the app's public key; the fake knows app
//!   [`APP_ID`] (key pair [`APP_PRIVATE_KEY_PEM`]) with installation
//!   [`INSTALLATION_ID`] on account [`OWNER`], and apps added through
//!   `/_fake/apps`. Answers 201 `{token, expires_at}` (one hour).
//! - Secrets, for a repository (`/repos/{o}/{r}/actions/secrets`), one of its
//!   environments (`/repos/{o}/{r}/environments/{e}/secrets`) or an
//!   organization (`/orgs/{org}/actions/secrets`): each scope holds a real
//!   X25519 key pair. `GET …/public-key` → `{key_id, key}`; `PUT …/{name}`
//!   requires a base64 `encrypted_value` and the current `key_id` (422
//!   otherwise), opens the sealed box with the scope's secret key (422 when it
//!   does not open) and stores the plaintext under the upper-cased name: 201
//!   new, 204 updated. Organization secrets also require `visibility`
//!   (`all`|`private`|`selected`) and, for `selected`, `selected_repository_ids`
//!   of repositories the organization owns. `GET …/{name}` → metadata only;
//!   `GET …` lists; `DELETE …/{name}` → 204, or 404 when missing. Name rules
//!   (`[A-Za-z0-9_]`, not starting with a digit or `GITHUB_`), 48 KB values,
//!   100 secrets per repository or environment, 1,000 per organization: 422.
//!   A repository, environment or organization that does not exist is a 404.
//! - `GET /repos/{o}/{r}` (with the numeric `id`), `GET /orgs/{org}`.
//! - Errors use GitHub's shape `{"message", "documentation_url"}`.
//! - Test hooks (no auth), under `/_fake/` (`/_admin/` is the framework's):
//!   `POST /_fake/repos {"owner", "name", "private"?}`,
//!   `POST /_fake/environments {"owner", "repo", "name"}`,
//!   `POST /_fake/orgs {"name"}`, `POST /_fake/tokens {"token", "write"?}`,
//!   `POST /_fake/apps {"app_id", "public_key_pem", "installations": {"<id>": "<account>"}}`,
//!   `POST /_fake/rotate-key {"owner", "repo", "environment"?} | {"org"}` (the
//!   stale-`key_id` path), `POST /_fake/expire-tokens` (every installation
//!   token expires).
//!
//! Throttling (403 + `x-ratelimit-remaining: 0` + `x-ratelimit-reset`, or
//! 429 + `retry-after`) comes from the framework's fault table.
//!
//! Not modelled: pagination links (`Link` headers), fine-grained token
//! permissions beyond read/write, the org secrets' repository-access
//! sub-routes, secret scanning, `Dependabot`/`Codespaces` secrets, and
//! conditional requests (ETags).
//!
//! Layout: `state.rs` holds what the fake stores (scopes with their key
//! pairs, repositories, organizations, apps, tokens); `auth.rs` who a request
//! is (personal access tokens, app JWTs, installation tokens); `routes.rs`
//! the REST routes and the sealed-box secret writes; `hooks.rs` the
//! `/_fake/` test hooks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::{FakeRequest, FakeResponse, Service, object, percent_decode, utc_datetime};
use routes::{route, with_rate_headers};
use state::{App, Inner, repo_key};

mod auth;
mod hooks;
mod routes;
mod state;
#[cfg(test)]
mod tests;

/// The personal access token the fake accepts (full access).
pub const TOKEN: &str = "ghp_kvsynctest";
/// The seeded repository `OWNER/REPO`; `OWNER` is also an organization.
pub const OWNER: &str = "kvsync";
pub const REPO: &str = "demo";
/// The seeded GitHub App and its installation on [`OWNER`].
pub const APP_ID: u64 = 1001;
pub const INSTALLATION_ID: u64 = 2002;
/// The seeded app's private key (a test key, generated for this fake).
pub const APP_PRIVATE_KEY_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAkQTyp3GPUDAVPlcE8OsU/8ekHJcTiA7+q11EgSwYJsHEkytK
yokqu4m8b/S1uQ7e1cl+HB3RRdBrK+wMSv+nUSwTkagn4JNG0OwYicfGX/fpgum1
7Sv8EF4rdKXzD2JnVhCqqKGbIslgDKQ5oFmakSBQW8kBPZ7y4RsEkHtkcS7pYjDE
1G4AIcLr+/ZQFhVCaryk/Ebj+1kp2JL+pCjPMZLAs5eILdo4JgGQf/+IIM9KPjBr
cBGceUG2/o18tugcyaqjJU7K8U+I7hq8kXJO1CFjhwV6p2NnJT3QrzJqRnat/Qnn
6MECkQqiQu3pd54+9Tp1GvFWonuKu5xNn7OjEQIDAQABAoIBAAc9iRAyPbSUJv5f
Hb15zjlIRl3BTvnFPmKvyBmfKghG1r2+jMgUjb4x5fcsv4UxHG/t9MJ6fGIlAhHO
Ae3damUVi1dTjwSh08h+7il0YIeWdwmYybMRBe9rBTZIagyRxh0kXUHouig0J8wP
x7sFWD/QTkTL4giJouCZbsqYJ4tVSBOHq97bYwbCSYZy0A7OfnPNWHE7PoP7mLyL
kCaarGZ0Hy7tXYjV655WGru92ZhM7diDfWnW1HNvGeki/fihvB7EOCZ7/Pf5so4n
y6WwWzOCm54Ciea6UdGfKK4vlm9yCG3iqZmQhpt4XHuScOELQTdHfL6R6BHludoc
ozY7kkECgYEAyDVDB5olIJZruBXI2XOLy1Jy28egPdmOoEXyc0L/CavZupclcjzc
6cQCVziPR7s2rDdh0btTtMgRJAmDjxwVldDDICxf14r5j/+Hhdovuos5sUJLrzmw
4vRr9pCrw2H+1bBMR9x3OPs0xFKwyvcd+FiJ2gnJZQ7LNdO1iJSm70ECgYEAuW6N
EvCw/OlLdF5TLHcy459IyzMZ2FQUaAbgE/mftxZW28pNNY7r6Vy5ECrNPFTU7qzN
UzFP5OxjMQxK+sX4IBlNdl6yGFD6frYHxQ1A1laGDhTZ9RvLSOzO3/mMGrxuqWhE
upjSydrEAgVtfSHTzxTE/CLwQatBIsNV8feFj9ECgYBLIcG/zpb0Pb663GH9SKFD
cfNsiuOVklk1yEoN+yxeYsFYhnQlBLYae9YtCSqrzpPb2QS6gkQNaa8VCQT35aAs
EqXHIx/scVjqMwiWsKSMqsbBwJFKdqns4bDKXMw4jEPnyTs3FIMhPRQ2QJnb8RSs
J/3Ddzy+0ehskMBlOvPSgQKBgCzYqdHM2GEyYwdP0LnOUkZuvYI3Z6bEHvNRxlvO
YWw8QOGDOc0cNb4IqNFaKKzQr3bR4A6gvHvXF95C5Ndlja7lr7BTEquC2jJO/+4O
WIH+BwnczSHUiQOoEhhlGBdXP0RFbWnbkA81k3YRrfs3dSx+D24TXRvkuSoZJ+4P
OQQhAoGANzSNpC2ILtz4CLfiHe3uq3yBOCaAurNRGI5/KdKGTnYMBP8nRDO1g8Ik
bwb2pRyXlTF6IOu6y7+HrpeLS01epLoYyw4071rpN9k+Z/PHAv5lrDJoabxDB8IU
O7uwdS9nGOqQxbeHsoCcGXsIWExtENgLcUV2eSUuT7SpUVuwbzw=
-----END RSA PRIVATE KEY-----
";

/// The public half of [`APP_PRIVATE_KEY_PEM`].
pub const APP_PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAkQTyp3GPUDAVPlcE8OsU
/8ekHJcTiA7+q11EgSwYJsHEkytKyokqu4m8b/S1uQ7e1cl+HB3RRdBrK+wMSv+n
USwTkagn4JNG0OwYicfGX/fpgum17Sv8EF4rdKXzD2JnVhCqqKGbIslgDKQ5oFma
kSBQW8kBPZ7y4RsEkHtkcS7pYjDE1G4AIcLr+/ZQFhVCaryk/Ebj+1kp2JL+pCjP
MZLAs5eILdo4JgGQf/+IIM9KPjBrcBGceUG2/o18tugcyaqjJU7K8U+I7hq8kXJO
1CFjhwV6p2NnJT3QrzJqRnat/Qnn6MECkQqiQu3pd54+9Tp1GvFWonuKu5xNn7Oj
EQIDAQAB
-----END PUBLIC KEY-----
";
/// GitHub's per-secret value limit.
pub const MAX_VALUE_BYTES: usize = 48 * 1024;
pub const MAX_REPO_SECRETS: usize = 100;
pub const MAX_ORG_SECRETS: usize = 1000;

const DOCS: &str = "https://docs.github.com/rest/actions/secrets";

/// The fake GitHub; see the module documentation.
pub struct GitHub {
    inner: Mutex<Inner>,
}

impl Default for GitHub {
    fn default() -> Self {
        Self::new()
    }
}

impl GitHub {
    /// Seeded with the token [`TOKEN`], the organization [`OWNER`], its
    /// repository [`REPO`] and the app [`APP_ID`] installed on [`OWNER`].
    pub fn new() -> Self {
        let mut inner = Inner {
            repos: BTreeMap::new(),
            orgs: BTreeMap::new(),
            pats: HashMap::from([(TOKEN.to_string(), true)]),
            apps: BTreeMap::new(),
            tokens: HashMap::new(),
            next_id: 100_000,
            writes: 0,
            deletes: 0,
            tokens_issued: 0,
        };
        inner.add_org(OWNER);
        inner.add_repo(OWNER, REPO, true);
        inner.apps.insert(
            APP_ID,
            App {
                public_key_pem: APP_PUBLIC_KEY_PEM.to_string(),
                installations: BTreeMap::from([(INSTALLATION_ID, OWNER.to_string())]),
            },
        );
        GitHub {
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Service for GitHub {
    fn handle(&self, req: &FakeRequest) -> FakeResponse {
        if let Some(rest) = req.path.strip_prefix("/_fake/") {
            return self.test_hook(req, rest);
        }
        let path = req.path.strip_prefix("/api/v3").unwrap_or(&req.path);
        let segs: Vec<String> = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let mut inner = self.lock();
        let resp = route(&mut inner, req, &segs);
        with_rate_headers(resp)
    }

    fn state(&self) -> Value {
        let inner = self.lock();
        let default_repo = inner.repos.get(&repo_key(OWNER, REPO));
        let objects: Map<String, Value> = default_repo
            .map(|r| {
                r.scope
                    .secrets
                    .iter()
                    .map(|(name, s)| (name.clone(), json!({"value": s.value, "tags": {}})))
                    .collect()
            })
            .unwrap_or_default();
        let repos: Map<String, Value> = inner
            .repos
            .values()
            .map(|r| {
                let envs: Map<String, Value> = r
                    .environments
                    .iter()
                    .map(|(n, s)| (n.clone(), s.state()))
                    .collect();
                let mut v = object(r.scope.state());
                v.insert("id".into(), json!(r.id));
                v.insert("private".into(), json!(r.private));
                v.insert("environments".into(), Value::Object(envs));
                (format!("{}/{}", r.owner, r.name), Value::Object(v))
            })
            .collect();
        let orgs: Map<String, Value> = inner
            .orgs
            .values()
            .map(|o| {
                let mut v = object(o.scope.state());
                v.insert("id".into(), json!(o.id));
                (o.login.clone(), Value::Object(v))
            })
            .collect();
        json!({
            "objects": objects,
            "writes": inner.writes,
            "deletes": inner.deletes,
            "installation_tokens_issued": inner.tokens_issued,
            "repos": repos,
            "orgs": orgs,
        })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds, as GitHub writes them.
fn iso(secs: u64) -> String {
    format!("{}Z", utc_datetime(secs))
}

/// An error in GitHub's shape.
fn error(status: u16, message: &str) -> FakeResponse {
    FakeResponse::json(
        status,
        json!({"message": message, "documentation_url": DOCS}),
    )
}

fn not_found() -> FakeResponse {
    FakeResponse::json(
        404,
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
    )
}

fn forbidden() -> FakeResponse {
    FakeResponse::json(
        403,
        json!({"message": "Resource not accessible by personal access token", "documentation_url": DOCS}),
    )
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}
