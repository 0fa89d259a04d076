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

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use crypto_box::SecretKey;
use crypto_box::aead::OsRng;
use serde_json::{Map, Value, json};

use super::{FakeRequest, FakeResponse, Service, object, percent_decode};

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
/// Installation tokens live one hour, as on GitHub.
const TOKEN_TTL_SECS: u64 = 3600;
const DOCS: &str = "https://docs.github.com/rest/actions/secrets";
const API_VERSIONS: [&str; 2] = ["2022-11-28", "2026-03-10"];

/// A stored secret: the plaintext GitHub would hold, and its metadata.
#[derive(Debug, Clone)]
struct Stored {
    value: String,
    created_at: u64,
    updated_at: u64,
    visibility: Option<String>,
    selected_repository_ids: Vec<u64>,
}

/// One secrets scope (repository, environment or organization).
struct Scope {
    key: SecretKey,
    key_id: String,
    secrets: BTreeMap<String, Stored>,
}

impl Scope {
    fn new() -> Self {
        Scope {
            key: SecretKey::generate(&mut OsRng),
            key_id: key_id(),
            secrets: BTreeMap::new(),
        }
    }

    fn rotate(&mut self) {
        self.key = SecretKey::generate(&mut OsRng);
        self.key_id = key_id();
    }

    fn state(&self) -> Value {
        let secrets: Map<String, Value> = self
            .secrets
            .iter()
            .map(|(name, s)| {
                let mut v = object(json!({"value": s.value, "created_at": iso(s.created_at), "updated_at": iso(s.updated_at)}));
                if let Some(vis) = &s.visibility {
                    v.insert("visibility".into(), json!(vis));
                    v.insert(
                        "selected_repository_ids".into(),
                        json!(s.selected_repository_ids),
                    );
                }
                (name.clone(), Value::Object(v))
            })
            .collect();
        json!({"key_id": self.key_id, "secrets": secrets})
    }
}

struct Repo {
    id: u64,
    owner: String,
    name: String,
    private: bool,
    scope: Scope,
    /// By environment name as created (GitHub matches them case-insensitively).
    environments: BTreeMap<String, Scope>,
}

struct Org {
    id: u64,
    login: String,
    scope: Scope,
}

struct App {
    public_key_pem: String,
    /// installation id → account login.
    installations: BTreeMap<u64, String>,
}

struct InstallationToken {
    installation: u64,
    account: String,
    expires_at: u64,
}

/// Who a request authenticates as.
enum Principal {
    Pat { write: bool },
    Installation { account: String },
}

impl Principal {
    fn sees(&self, owner: &str) -> bool {
        match self {
            Principal::Pat { .. } => true,
            Principal::Installation { account } => account.eq_ignore_ascii_case(owner),
        }
    }

    fn can_write(&self) -> bool {
        match self {
            Principal::Pat { write } => *write,
            Principal::Installation { .. } => true,
        }
    }
}

#[derive(Clone, Copy)]
enum ScopeKind {
    Repo,
    Env,
    Org,
}

impl ScopeKind {
    fn limit(self) -> usize {
        match self {
            ScopeKind::Org => MAX_ORG_SECRETS,
            ScopeKind::Repo | ScopeKind::Env => MAX_REPO_SECRETS,
        }
    }
}

struct Inner {
    /// By lower-cased `owner/name`.
    repos: BTreeMap<String, Repo>,
    /// By lower-cased login.
    orgs: BTreeMap<String, Org>,
    pats: HashMap<String, bool>,
    apps: BTreeMap<u64, App>,
    tokens: HashMap<String, InstallationToken>,
    next_id: u64,
    writes: u64,
    deletes: u64,
    tokens_issued: u64,
}

impl Inner {
    fn add_repo(&mut self, owner: &str, name: &str, private: bool) -> u64 {
        let key = repo_key(owner, name);
        if let Some(r) = self.repos.get(&key) {
            return r.id;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.repos.insert(
            key,
            Repo {
                id,
                owner: owner.to_string(),
                name: name.to_string(),
                private,
                scope: Scope::new(),
                environments: BTreeMap::new(),
            },
        );
        id
    }

    fn add_org(&mut self, login: &str) -> u64 {
        let key = login.to_ascii_lowercase();
        if let Some(o) = self.orgs.get(&key) {
            return o.id;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.orgs.insert(
            key,
            Org {
                id,
                login: login.to_string(),
                scope: Scope::new(),
            },
        );
        id
    }
}

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

impl GitHub {
    fn test_hook(&self, req: &FakeRequest, rest: &str) -> FakeResponse {
        let body = if req.body.is_empty() {
            Value::Null
        } else {
            match req.json() {
                Ok(v) => v,
                Err(resp) => return resp,
            }
        };
        let s = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        };
        let mut inner = self.lock();
        match (req.method.as_str(), rest) {
            ("POST", "repos") => {
                let (Some(owner), Some(name)) = (s("owner"), s("name")) else {
                    return error(400, "owner and name are required");
                };
                let private = body.get("private").and_then(Value::as_bool).unwrap_or(true);
                let id = inner.add_repo(owner, name, private);
                FakeResponse::json(201, json!({"id": id}))
            }
            ("POST", "environments") => {
                let (Some(owner), Some(repo), Some(name)) = (s("owner"), s("repo"), s("name"))
                else {
                    return error(400, "owner, repo and name are required");
                };
                let Some(r) = inner.repos.get_mut(&repo_key(owner, repo)) else {
                    return error(404, "Not Found");
                };
                if env_key(r, name).is_none() {
                    r.environments.insert(name.to_string(), Scope::new());
                }
                FakeResponse::json(201, json!({"name": name}))
            }
            ("POST", "orgs") => {
                let Some(name) = s("name") else {
                    return error(400, "name is required");
                };
                let id = inner.add_org(name);
                FakeResponse::json(201, json!({"id": id}))
            }
            ("POST", "tokens") => {
                let Some(token) = s("token") else {
                    return error(400, "token is required");
                };
                let write = body.get("write").and_then(Value::as_bool).unwrap_or(true);
                inner.pats.insert(token.to_string(), write);
                FakeResponse::empty(201)
            }
            ("POST", "apps") => {
                let (Some(app_id), Some(pem)) = (
                    body.get("app_id").and_then(Value::as_u64),
                    s("public_key_pem"),
                ) else {
                    return error(400, "app_id and public_key_pem are required");
                };
                if jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).is_err() {
                    return error(400, "public_key_pem is not an RSA public key");
                }
                let installations = body
                    .get("installations")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(id, acc)| {
                                Some((id.parse::<u64>().ok()?, acc.as_str()?.to_string()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                inner.apps.insert(
                    app_id,
                    App {
                        public_key_pem: pem.to_string(),
                        installations,
                    },
                );
                FakeResponse::empty(201)
            }
            ("POST", "rotate-key") => {
                let scope = if let Some(org) = s("org") {
                    inner
                        .orgs
                        .get_mut(&org.to_ascii_lowercase())
                        .map(|o| &mut o.scope)
                } else if let (Some(owner), Some(repo)) = (s("owner"), s("repo")) {
                    inner.repos.get_mut(&repo_key(owner, repo)).and_then(|r| {
                        match s("environment") {
                            Some(env) => env_key(r, env).and_then(|k| r.environments.get_mut(&k)),
                            None => Some(&mut r.scope),
                        }
                    })
                } else {
                    return error(
                        400,
                        "org, or owner and repo (and environment), are required",
                    );
                };
                match scope {
                    Some(scope) => {
                        scope.rotate();
                        FakeResponse::json(200, json!({"key_id": scope.key_id}))
                    }
                    None => error(404, "Not Found"),
                }
            }
            ("POST", "expire-tokens") => {
                for t in inner.tokens.values_mut() {
                    t.expires_at = 0;
                }
                FakeResponse::empty(204)
            }
            _ => error(404, "unknown test hook"),
        }
    }
}

fn route(inner: &mut Inner, req: &FakeRequest, segs: &[&str]) -> FakeResponse {
    if req.header("user-agent").is_none_or(str::is_empty) {
        return FakeResponse::json(
            403,
            json!({"message": "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes."}),
        );
    }
    if let Some(v) = req.header("x-github-api-version")
        && !API_VERSIONS.contains(&v)
    {
        return FakeResponse::json(
            400,
            json!({"message": format!("API version {v} is not supported."), "documentation_url": "https://docs.github.com/rest/overview/api-versions"}),
        );
    }
    let method = req.method.as_str();
    if let ("POST", ["app", "installations", id, "access_tokens"]) = (method, segs) {
        return access_token(inner, req, id);
    }
    let principal = match authenticate(inner, req) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    match (method, segs) {
        ("GET", ["repos", owner, repo]) => {
            match inner
                .repos
                .get(&repo_key(owner, repo))
                .filter(|r| principal.sees(&r.owner))
            {
                Some(r) => FakeResponse::json(
                    200,
                    json!({
                        "id": r.id, "name": r.name, "full_name": format!("{}/{}", r.owner, r.name),
                        "owner": {"login": r.owner}, "private": r.private,
                        "visibility": if r.private { "private" } else { "public" },
                    }),
                ),
                None => not_found(),
            }
        }
        ("GET", ["orgs", org]) => match inner
            .orgs
            .get(&org.to_ascii_lowercase())
            .filter(|o| principal.sees(&o.login))
        {
            Some(o) => FakeResponse::json(200, json!({"id": o.id, "login": o.login})),
            None => not_found(),
        },
        (_, ["repos", owner, repo, "actions", "secrets", rest @ ..]) => {
            let key = repo_key(owner, repo);
            match inner
                .repos
                .get_mut(&key)
                .filter(|r| principal.sees(&r.owner))
            {
                Some(r) => {
                    let out = secrets(&mut r.scope, ScopeKind::Repo, &principal, req, rest, None);
                    account(inner, req, &out);
                    out
                }
                None => not_found(),
            }
        }
        (
            _,
            [
                "repos",
                owner,
                repo,
                "environments",
                env,
                "secrets",
                rest @ ..,
            ],
        ) => {
            let key = repo_key(owner, repo);
            let Some(r) = inner
                .repos
                .get_mut(&key)
                .filter(|r| principal.sees(&r.owner))
            else {
                return not_found();
            };
            let Some(env) = env_key(r, env) else {
                return not_found();
            };
            let Some(scope) = r.environments.get_mut(&env) else {
                return not_found();
            };
            let out = secrets(scope, ScopeKind::Env, &principal, req, rest, None);
            account(inner, req, &out);
            out
        }
        (_, ["orgs", org, "actions", "secrets", rest @ ..]) => {
            let key = org.to_ascii_lowercase();
            let Some(login) = inner
                .orgs
                .get(&key)
                .filter(|o| principal.sees(&o.login))
                .map(|o| o.login.clone())
            else {
                return not_found();
            };
            let org_repo_ids: Vec<u64> = inner
                .repos
                .values()
                .filter(|r| r.owner.eq_ignore_ascii_case(&login))
                .map(|r| r.id)
                .collect();
            let Some(o) = inner.orgs.get_mut(&key) else {
                return not_found();
            };
            let out = secrets(
                &mut o.scope,
                ScopeKind::Org,
                &principal,
                req,
                rest,
                Some(&org_repo_ids),
            );
            account(inner, req, &out);
            out
        }
        _ => not_found(),
    }
}

/// Counts accepted writes and deletes.
fn account(inner: &mut Inner, req: &FakeRequest, out: &FakeResponse) {
    match (req.method.as_str(), out.status) {
        ("PUT", 201 | 204) => inner.writes += 1,
        ("DELETE", 204) => inner.deletes += 1,
        _ => {}
    }
}

/// The secrets routes of one scope; `rest` follows `…/secrets`.
fn secrets(
    scope: &mut Scope,
    kind: ScopeKind,
    principal: &Principal,
    req: &FakeRequest,
    rest: &[&str],
    org_repo_ids: Option<&[u64]>,
) -> FakeResponse {
    match (req.method.as_str(), rest) {
        ("GET", ["public-key"]) => FakeResponse::json(
            200,
            json!({"key_id": scope.key_id, "key": b64().encode(scope.key.public_key().as_bytes())}),
        ),
        ("GET", [] | [""]) => {
            let per_page = req
                .query_param("per_page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            let page = req
                .query_param("page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let items: Vec<Value> = scope
                .secrets
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|(name, s)| metadata(name, s))
                .collect();
            FakeResponse::json(
                200,
                json!({"total_count": scope.secrets.len(), "secrets": items}),
            )
        }
        ("GET", [name]) => match scope.secrets.get(&name.to_ascii_uppercase()) {
            Some(s) => FakeResponse::json(200, metadata(&name.to_ascii_uppercase(), s)),
            None => not_found(),
        },
        ("PUT", [name]) => {
            if !principal.can_write() {
                return forbidden();
            }
            put_secret(scope, kind, req, name, org_repo_ids)
        }
        ("DELETE", [name]) => {
            if !principal.can_write() {
                return forbidden();
            }
            match scope.secrets.remove(&name.to_ascii_uppercase()) {
                Some(_) => FakeResponse::empty(204),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn put_secret(
    scope: &mut Scope,
    kind: ScopeKind,
    req: &FakeRequest,
    name: &str,
    org_repo_ids: Option<&[u64]>,
) -> FakeResponse {
    if let Err(why) = check_name(name) {
        return error(422, &format!("Invalid request.\n\n{why}"));
    }
    let body = match req.json() {
        Ok(Value::Object(m)) => m,
        Ok(_) => return error(400, "Problems parsing JSON"),
        Err(_) => return error(400, "Problems parsing JSON"),
    };
    let Some(encrypted) = body.get("encrypted_value").and_then(Value::as_str) else {
        return error(
            422,
            "Invalid request.\n\n\"encrypted_value\" wasn't supplied.",
        );
    };
    let Some(key_id) = body.get("key_id").and_then(Value::as_str) else {
        return error(422, "Invalid request.\n\n\"key_id\" wasn't supplied.");
    };
    if !is_base64(encrypted) {
        return error(
            422,
            "Invalid request.\n\nInvalid property /encrypted_value: does not match pattern ^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$",
        );
    }
    if key_id != scope.key_id {
        return error(
            422,
            "Bad request - key_id does not match the current public key.",
        );
    }
    let (visibility, selected) = if let Some(repo_ids) = org_repo_ids {
        let visibility = match body.get("visibility").and_then(Value::as_str) {
            Some(v @ ("all" | "private" | "selected")) => v.to_string(),
            Some(other) => {
                return error(
                    422,
                    &format!(
                        "Invalid request.\n\n{other:?} is not a member of [\"all\", \"private\", \"selected\"]."
                    ),
                );
            }
            None => return error(422, "Invalid request.\n\n\"visibility\" wasn't supplied."),
        };
        let selected: Vec<u64> = if visibility == "selected" {
            let Some(ids) = body
                .get("selected_repository_ids")
                .and_then(Value::as_array)
            else {
                return error(
                    422,
                    "Invalid request.\n\n\"selected_repository_ids\" is required when visibility is selected.",
                );
            };
            let mut out = Vec::new();
            for id in ids {
                match id.as_u64() {
                    Some(id) if repo_ids.contains(&id) => out.push(id),
                    _ => {
                        return error(
                            422,
                            &format!(
                                "Invalid request.\n\nRepository {id} is not in this organization."
                            ),
                        );
                    }
                }
            }
            out
        } else {
            Vec::new()
        };
        (Some(visibility), selected)
    } else {
        (None, Vec::new())
    };
    let Ok(sealed) = b64().decode(encrypted) else {
        return error(
            422,
            "Invalid request.\n\nencrypted_value is not valid base64.",
        );
    };
    let Ok(plain) = scope.key.unseal(&sealed) else {
        return error(
            422,
            "Bad request - encrypted_value could not be decrypted with the public key of key_id.",
        );
    };
    let Ok(value) = String::from_utf8(plain) else {
        return error(422, "Invalid request.\n\nThe secret value is not UTF-8.");
    };
    if value.len() > MAX_VALUE_BYTES {
        return error(
            422,
            "Invalid request.\n\nSecret value is too large: secrets are limited to 48 KB.",
        );
    }
    let name = name.to_ascii_uppercase();
    let now = now();
    match scope.secrets.get_mut(&name) {
        Some(s) => {
            s.value = value;
            s.updated_at = now;
            s.visibility = visibility;
            s.selected_repository_ids = selected;
            FakeResponse::empty(204)
        }
        None => {
            if scope.secrets.len() >= kind.limit() {
                return error(
                    422,
                    &format!(
                        "Invalid request.\n\nThis scope already holds the maximum of {} secrets.",
                        kind.limit()
                    ),
                );
            }
            scope.secrets.insert(
                name,
                Stored {
                    value,
                    created_at: now,
                    updated_at: now,
                    visibility,
                    selected_repository_ids: selected,
                },
            );
            FakeResponse::json(201, json!({}))
        }
    }
}

fn access_token(inner: &mut Inner, req: &FakeRequest, id: &str) -> FakeResponse {
    let undecodable = || {
        FakeResponse::json(
            401,
            json!({"message": "A JSON web token could not be decoded", "documentation_url": "https://docs.github.com/rest"}),
        )
    };
    let Some(jwt) = req.bearer() else {
        return FakeResponse::json(
            401,
            json!({"message": "You must authenticate with a JSON web token to access this endpoint.", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    // The issuer picks the key: read it before verifying.
    let Some(claims) = jwt
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return undecodable();
    };
    let Some(app_id) = claims
        .get("iss")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
    else {
        return undecodable();
    };
    let Some(app) = inner.apps.get(&app_id) else {
        return FakeResponse::json(
            404,
            json!({"message": "Integration not found", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes()) else {
        return undecodable();
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // `iss` is the app id, a number: checked above, not by the library (strings only).
    validation.set_required_spec_claims(&["exp"]);
    validation.leeway = 0;
    let Ok(data) = jsonwebtoken::decode::<Value>(jwt, &key, &validation) else {
        return undecodable();
    };
    let now = now();
    let iat = data
        .claims
        .get("iat")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if iat > now + 60 {
        return FakeResponse::json(
            401,
            json!({"message": "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued.", "documentation_url": "https://docs.github.com/rest"}),
        );
    }
    if exp <= now || exp > now + 600 + 60 || exp.saturating_sub(iat) > 660 {
        return FakeResponse::json(
            401,
            json!({"message": "'Expiration time' claim ('exp') is too far in the future", "documentation_url": "https://docs.github.com/rest"}),
        );
    }
    let Some(installation) = id.parse::<u64>().ok() else {
        return not_found();
    };
    let Some(account) = app.installations.get(&installation).cloned() else {
        return not_found();
    };
    let token = format!("ghs_{}", random_hex(18));
    let expires_at = now + TOKEN_TTL_SECS;
    inner.tokens.insert(
        token.clone(),
        InstallationToken {
            installation,
            account,
            expires_at,
        },
    );
    inner.tokens_issued += 1;
    FakeResponse::json(
        201,
        json!({
            "token": token, "expires_at": iso(expires_at),
            "permissions": {"secrets": "write", "actions": "write", "metadata": "read", "organization_secrets": "write"},
            "repository_selection": "all",
        }),
    )
}

fn authenticate(inner: &Inner, req: &FakeRequest) -> Result<Principal, FakeResponse> {
    let Some(token) = req.bearer() else {
        return Err(FakeResponse::json(
            401,
            json!({"message": "Requires authentication", "documentation_url": "https://docs.github.com/rest"}),
        ));
    };
    if let Some(write) = inner.pats.get(token) {
        return Ok(Principal::Pat { write: *write });
    }
    if let Some(t) = inner.tokens.get(token)
        && t.expires_at > now()
        && inner
            .apps
            .values()
            .any(|a| a.installations.contains_key(&t.installation))
    {
        return Ok(Principal::Installation {
            account: t.account.clone(),
        });
    }
    Err(FakeResponse::json(
        401,
        json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
    ))
}

/// GitHub's secret name rules.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("Secret names can't be empty.");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(
            "Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or underscores (_).",
        );
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("Secret names must not start with a number.");
    }
    if name
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("GITHUB_"))
    {
        return Err("Secret names must not start with the GITHUB_ prefix.");
    }
    Ok(())
}

/// The OpenAPI pattern of `encrypted_value`.
fn is_base64(s: &str) -> bool {
    let data = s.trim_end_matches('=');
    let pad = s.len() - data.len();
    s.len().is_multiple_of(4)
        && pad <= 2
        && data
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

fn metadata(name: &str, s: &Stored) -> Value {
    let mut v = object(
        json!({"name": name, "created_at": iso(s.created_at), "updated_at": iso(s.updated_at)}),
    );
    if let Some(vis) = &s.visibility {
        v.insert("visibility".into(), json!(vis));
    }
    Value::Object(v)
}

fn env_key(repo: &Repo, name: &str) -> Option<String> {
    repo.environments
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
}

fn repo_key(owner: &str, name: &str) -> String {
    format!(
        "{}/{}",
        owner.to_ascii_lowercase(),
        name.to_ascii_lowercase()
    )
}

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

/// GitHub sends its rate-limit budget on every API answer.
fn with_rate_headers(resp: FakeResponse) -> FakeResponse {
    if resp
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("x-ratelimit-remaining"))
    {
        return resp;
    }
    let reset = (now() / 3600 + 1) * 3600;
    resp.with_header("x-ratelimit-limit", "5000")
        .with_header("x-ratelimit-remaining", "4999")
        .with_header("x-ratelimit-used", "1")
        .with_header("x-ratelimit-reset", &reset.to_string())
        .with_header("x-ratelimit-resource", "core")
        .with_header("x-github-api-version-selected", "2022-11-28")
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // A failure leaves zeros: still unique enough with the counter-based ids around it.
    let _ = getrandom::fill(&mut buf);
    hex::encode(buf)
}

/// GitHub's key ids are large decimal numbers.
fn key_id() -> String {
    let mut buf = [0u8; 8];
    let _ = getrandom::fill(&mut buf);
    (u64::from_le_bytes(buf) >> 4).to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds.
fn iso(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or_default();
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto_box::PublicKey;

    fn request(method: &str, path: &str, token: Option<&str>, body: Value) -> FakeRequest {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(
            "user-agent",
            hyper::header::HeaderValue::from_static("test"),
        );
        if let Some(t) = token {
            headers.insert(
                "authorization",
                hyper::header::HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
            );
        }
        FakeRequest {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers,
            body: if body.is_null() {
                bytes::Bytes::new()
            } else {
                bytes::Bytes::from(body.to_string())
            },
        }
    }

    fn body(r: &FakeResponse) -> Value {
        serde_json::from_slice(&r.body).unwrap_or(Value::Null)
    }

    fn seal(gh: &GitHub, scope_path: &str, value: &str) -> Value {
        let r = gh.handle(&request(
            "GET",
            &format!("{scope_path}/public-key"),
            Some(TOKEN),
            Value::Null,
        ));
        assert_eq!(r.status, 200, "{:?}", body(&r));
        let key = body(&r);
        let pk: [u8; 32] = b64()
            .decode(key["key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let sealed = PublicKey::from(pk)
            .seal(&mut OsRng, value.as_bytes())
            .unwrap();
        json!({"encrypted_value": b64().encode(sealed), "key_id": key["key_id"]})
    }

    #[test]
    fn repository_secret_round_trip() {
        let gh = GitHub::new();
        let scope = "/repos/kvsync/demo/actions/secrets";
        let put = seal(&gh, scope, "s3cret");
        let r = gh.handle(&request(
            "PUT",
            &format!("{scope}/db_pass"),
            Some(TOKEN),
            put.clone(),
        ));
        assert_eq!(r.status, 201);
        let r = gh.handle(&request(
            "PUT",
            &format!("/api/v3{scope}/DB_PASS"),
            Some(TOKEN),
            put,
        ));
        assert_eq!(r.status, 204);
        let state = gh.state();
        assert_eq!(state["objects"]["DB_PASS"]["value"], "s3cret");
        assert_eq!(state["writes"], 2);
        let r = gh.handle(&request(
            "GET",
            &format!("{scope}/DB_PASS"),
            Some(TOKEN),
            Value::Null,
        ));
        assert_eq!(r.status, 200);
        assert!(body(&r).get("value").is_none());
        let r = gh.handle(&request(
            "DELETE",
            &format!("{scope}/db_pass"),
            Some(TOKEN),
            Value::Null,
        ));
        assert_eq!(r.status, 204);
        let r = gh.handle(&request(
            "DELETE",
            &format!("{scope}/db_pass"),
            Some(TOKEN),
            Value::Null,
        ));
        assert_eq!(r.status, 404);
    }

    #[test]
    fn rejects_bad_requests() {
        let gh = GitHub::new();
        let scope = "/repos/kvsync/demo/actions/secrets";
        let r = gh.handle(&request(
            "GET",
            &format!("{scope}/public-key"),
            Some("ghp_wrong"),
            Value::Null,
        ));
        assert_eq!(
            (r.status, body(&r)["message"].as_str()),
            (401, Some("Bad credentials"))
        );
        let put = seal(&gh, scope, "v");
        for name in ["GITHUB_X", "1A", "A-B"] {
            let r = gh.handle(&request(
                "PUT",
                &format!("{scope}/{name}"),
                Some(TOKEN),
                put.clone(),
            ));
            assert_eq!(r.status, 422, "{name}");
        }
        let mut stale = put.clone();
        stale["key_id"] = json!("1");
        assert_eq!(
            gh.handle(&request("PUT", &format!("{scope}/A"), Some(TOKEN), stale))
                .status,
            422
        );
        let mut garbage = put.clone();
        garbage["encrypted_value"] = json!("AAAA");
        assert_eq!(
            gh.handle(&request("PUT", &format!("{scope}/A"), Some(TOKEN), garbage))
                .status,
            422
        );
        let big = seal(&gh, scope, &"x".repeat(MAX_VALUE_BYTES + 1));
        assert_eq!(
            gh.handle(&request("PUT", &format!("{scope}/A"), Some(TOKEN), big))
                .status,
            422
        );
        let r = gh.handle(&request(
            "GET",
            "/repos/kvsync/nope/actions/secrets/public-key",
            Some(TOKEN),
            Value::Null,
        ));
        assert_eq!(r.status, 404);
        let r = gh.handle(&request(
            "GET",
            "/repos/kvsync/demo/environments/prod/secrets/public-key",
            Some(TOKEN),
            Value::Null,
        ));
        assert_eq!(r.status, 404);
        // Rotation makes the old key id stale.
        let r = gh.handle(&request(
            "POST",
            "/_fake/rotate-key",
            None,
            json!({"owner": OWNER, "repo": REPO}),
        ));
        assert_eq!(r.status, 200);
        assert_eq!(
            gh.handle(&request("PUT", &format!("{scope}/A"), Some(TOKEN), put))
                .status,
            422
        );
        assert_eq!(gh.state()["writes"], 0);
    }

    #[test]
    fn read_only_tokens_cannot_write() {
        let gh = GitHub::new();
        gh.handle(&request(
            "POST",
            "/_fake/tokens",
            None,
            json!({"token": "ghp_ro", "write": false}),
        ));
        let scope = "/repos/kvsync/demo/actions/secrets";
        let put = seal(&gh, scope, "v");
        let r = gh.handle(&request("PUT", &format!("{scope}/A"), Some("ghp_ro"), put));
        assert_eq!(r.status, 403);
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(784_111_777), "1994-11-06T08:49:37Z");
        assert_eq!(iso(1_709_251_200), "2024-03-01T00:00:00Z");
    }
}
