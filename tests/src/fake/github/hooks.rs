//! The fake's test hooks under `/_fake/` (no auth): add repositories,
//! environments, organizations, tokens and apps; rotate a scope's key; expire
//! every installation token.

use serde_json::{Value, json};

use super::state::{App, Scope, env_key, repo_key};
use super::{GitHub, error};
use crate::fake::{FakeRequest, FakeResponse};

impl GitHub {
    pub(super) fn test_hook(&self, req: &FakeRequest, rest: &str) -> FakeResponse {
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
