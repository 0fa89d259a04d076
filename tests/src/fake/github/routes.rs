//! GitHub's REST routes: repositories, organizations and the secrets of a
//! repository, environment or organization (public key, list, read, sealed
//! write, delete), with GitHub's name rules, limits and error shapes.

use base64::Engine as _;
use serde_json::{Value, json};

use super::auth::{Principal, access_token, authenticate};
use super::state::{Inner, Scope, ScopeKind, Stored, env_key, repo_key};
use super::{MAX_VALUE_BYTES, b64, error, forbidden, iso, not_found, now};
use crate::fake::{FakeRequest, FakeResponse, object};

const API_VERSIONS: [&str; 2] = ["2022-11-28", "2026-03-10"];

pub(super) fn route(inner: &mut Inner, req: &FakeRequest, segs: &[&str]) -> FakeResponse {
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

/// GitHub sends its rate-limit budget on every API answer.
pub(super) fn with_rate_headers(resp: FakeResponse) -> FakeResponse {
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
