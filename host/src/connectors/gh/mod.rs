//! `gh`: GitHub Actions secrets of a repository, a repository environment or
//! an organization, through `octocrab`'s HTTP stack (its base URI and raw
//! request methods; no retries: the `retry` feature is off, the engine is the
//! one layer that retries), executed by the shared egress-bound reqwest
//! client ([`http::client`](super::http::client)): its resolver checks the
//! API's addresses in the very lookup the connection uses, it follows no
//! redirect and ignores the environment's proxies.
//!
//! Per operation:
//! - push: `GET …/secrets/public-key` (cached per scope for [`KEY_TTL`]), a
//!   libsodium sealed box of the value with that key, `PUT …/secrets/{NAME}`.
//!   A warm cache makes a push one call. When GitHub refuses a PUT made with a
//!   cached key (422: the key was rotated), the key is fetched again and the
//!   PUT repeated once. Organization secrets carry `visibility` and, for
//!   `selected`, `selected_repository_ids`, resolved from
//!   `selected_repository_names` with `GET /repos/{org}/{name}` (cached).
//! - delete: `DELETE …/secrets/{NAME}`; 404 counts as deleted.
//! - Routes: `/repos/{owner}/{repo}/actions/secrets`,
//!   `/repos/{owner}/{repo}/environments/{env}/secrets` (the current route;
//!   octocrab's environment handler uses the legacy `/repositories/{id}/…`)
//!   and `/orgs/{org}/actions/secrets`, under `https://api.github.com` or
//!   `<enterprise_url>/api/v3`.
//! - Auth: `access_token`, or a GitHub App (`app_name` + `installation_id`,
//!   with the app's `app_id` and `private_key` passed by the engine in
//!   `app_config`): an RS256 app JWT buys an installation token
//!   (`POST /app/installations/{id}/access_tokens`), cached until five minutes
//!   before it expires, per API, app, installation and key. A 401 with a
//!   cached installation token drops it and tries once more with a new one.
//!
//! Names (`[A-Za-z0-9_]`, not starting with a digit or `GITHUB_`, stored
//! upper-case) and the 48 KB value limit are checked before any call.
//! The API URL's port (and address, for a literal) is checked at the start of
//! every operation, before the token exchange and the secret calls
//! ([`check_url`](crate::connectors::egress::EgressPolicy::check_url)); its
//! host name when the connection resolves it.

mod api;
mod client;
mod config;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use crypto_box::PublicKey;
use crypto_box::aead::OsRng;
use hyper::Method;
use octocrab::Octocrab;
use serde_json::{Value, json};

use super::egress::{Dns, EgressPolicy};
use super::{Connector, ConnectorEnv, Dest, ExternalSecret, SyncError};
use api::{Failure, send};
use client::{CachedToken, Session, TokenKey};
use config::{Location, Target, check_name, check_value, segment};

pub use config::{Config, MAX_VALUE_BYTES};

/// How long a scope's public key is reused without asking again.
pub const KEY_TTL: Duration = Duration::from_secs(300);
/// How long a repository's id (organization secrets, `selected`) is reused.
const REPO_ID_TTL: Duration = Duration::from_secs(300);
/// Bound on every cache (entries); a full cache is emptied.
const MAX_CACHE: usize = 4096;

/// The GitHub Actions secrets connector.
#[derive(Default)]
pub struct GitHub {
    /// How the API's host name is resolved.
    dns: Dns,
    /// One client per (runtime, API base URL, egress rules): octocrab's
    /// client runs a worker task on the runtime that built it.
    clients: Mutex<HashMap<(tokio::runtime::Id, String, EgressPolicy), Octocrab>>,
    /// Public keys by API base URL + scope path.
    keys: Mutex<HashMap<String, CachedKey>>,
    /// Installation tokens of GitHub Apps.
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    /// Repository ids by API base URL + `owner/name` (lower-cased).
    repo_ids: Mutex<HashMap<String, (u64, Instant)>>,
}

impl GitHub {
    /// The connector, resolving names with `env`'s resolver.
    pub fn new(env: &ConnectorEnv) -> Self {
        GitHub {
            dns: env.dns.clone(),
            ..GitHub::default()
        }
    }
}

#[async_trait]
impl Connector for GitHub {
    const KIND: &'static str = "gh";
    type Config = Config;

    async fn push(&self, dest: &Dest<Config>, secret: &ExternalSecret) -> Result<(), SyncError> {
        let name = check_name(&secret.name)?;
        check_value(&secret.value)?;
        let target = Target::new(dest)?;
        let session = self.session(&target, false).await?;
        match self.put(&session, &target, &name, &secret.value).await {
            Err(Failure::Unauthorized(_)) if session.token_from_cache => {
                self.forget_token(&session);
                let session = self.session(&target, true).await?;
                self.put(&session, &target, &name, &secret.value)
                    .await
                    .map_err(|f| self.fail(&session, f))
            }
            out => out.map_err(|f| self.fail(&session, f)),
        }
    }

    async fn delete(&self, dest: &Dest<Config>, name: &str) -> Result<(), SyncError> {
        // A name GitHub refuses cannot exist there: nothing to delete.
        let Ok(name) = check_name(name) else {
            return Ok(());
        };
        let target = Target::new(dest)?;
        let session = self.session(&target, false).await?;
        match self.remove(&session, &name).await {
            Err(Failure::Unauthorized(_)) if session.token_from_cache => {
                self.forget_token(&session);
                let session = self.session(&target, true).await?;
                self.remove(&session, &name)
                    .await
                    .map_err(|f| self.fail(&session, f))
            }
            out => out.map_err(|f| self.fail(&session, f)),
        }
    }
}

impl GitHub {
    /// A 401 also drops the installation token that got it.
    fn fail(&self, session: &Session, f: Failure) -> SyncError {
        match f {
            Failure::Unauthorized(e) => {
                self.forget_token(session);
                e
            }
            Failure::Other(e) => e,
        }
    }

    /// Checks egress, then gets the client and the `Authorization` header
    /// (exchanging the app's JWT for an installation token when needed).
    /// The scope's public key: `(key_id, key, from_cache)`.
    async fn public_key(
        &self,
        s: &Session,
        fresh: bool,
    ) -> Result<(String, [u8; 32], bool), Failure> {
        let cache_key = format!("{}{}", s.base, s.scope);
        if !fresh
            && let Some(k) = lock(&self.keys)
                .get(&cache_key)
                .filter(|k| k.fetched.elapsed() < KEY_TTL)
        {
            return Ok((k.key_id.clone(), k.key, true));
        }
        let path = format!("{}/public-key", s.scope);
        let reply = send(&s.crab, Method::GET, &path, &s.auth, None).await?;
        if !reply.ok() {
            return Err(reply.failure(&format!("reading the public key of {}", s.what)));
        }
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let key_id = match body.get("key_id") {
            Some(Value::String(id)) => Some(id.clone()),
            Some(Value::Number(id)) => Some(id.to_string()),
            _ => None,
        };
        let key = body
            .get("key")
            .and_then(Value::as_str)
            .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
            .and_then(|k| <[u8; 32]>::try_from(k).ok());
        let (Some(key_id), Some(key)) = (key_id, key) else {
            return Err(Failure::Other(SyncError::ExternalService {
                message: format!("GitHub answered an unreadable public key for {}", s.what),
                retry_after: None,
            }));
        };
        let mut keys = lock(&self.keys);
        if keys.len() >= MAX_CACHE {
            keys.clear();
        }
        keys.insert(
            cache_key,
            CachedKey {
                key_id: key_id.clone(),
                key,
                fetched: Instant::now(),
            },
        );
        Ok((key_id, key, false))
    }

    fn forget_key(&self, s: &Session) {
        lock(&self.keys).remove(&format!("{}{}", s.base, s.scope));
    }

    /// Seals and writes one secret (see the module documentation).
    async fn put(
        &self,
        s: &Session,
        target: &Target,
        name: &str,
        value: &str,
    ) -> Result<(), Failure> {
        let mut extra = serde_json::Map::new();
        if let Location::Organization {
            org,
            visibility,
            selected,
        } = &target.location
        {
            extra.insert("visibility".into(), json!(visibility));
            if visibility == "selected" {
                let mut ids = Vec::with_capacity(selected.len());
                for repo in selected {
                    ids.push(self.repo_id(s, org, repo).await?);
                }
                extra.insert("selected_repository_ids".into(), json!(ids));
            }
        }
        let path = format!("{}/{name}", s.scope);
        let mut fresh = false;
        loop {
            let (key_id, key, cached) = self.public_key(s, fresh).await?;
            let sealed = PublicKey::from(key)
                .seal(&mut OsRng, value.as_bytes())
                .map_err(|_| {
                    SyncError::Internal("cannot encrypt the value for GitHub".to_string())
                })?;
            let mut body = extra.clone();
            body.insert(
                "encrypted_value".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(sealed)),
            );
            body.insert("key_id".into(), json!(key_id));
            let reply = send(
                &s.crab,
                Method::PUT,
                &path,
                &s.auth,
                Some(&Value::Object(body)),
            )
            .await?;
            if reply.ok() {
                return Ok(());
            }
            if reply.status == 422 && cached {
                // Most likely the scope's key was rotated since we cached it.
                tracing::debug!(scope = %s.what, "GitHub refused a cached public key; fetching it again");
                self.forget_key(s);
                fresh = true;
                continue;
            }
            return Err(reply.failure(&format!("writing secret {name} to {}", s.what)));
        }
    }

    async fn remove(&self, s: &Session, name: &str) -> Result<(), Failure> {
        let path = format!("{}/{name}", s.scope);
        let reply = send(&s.crab, Method::DELETE, &path, &s.auth, None).await?;
        if reply.ok() || reply.status == 404 {
            return Ok(());
        }
        Err(reply.failure(&format!("deleting secret {name} from {}", s.what)))
    }

    /// `GET /repos/{owner}/{name}` → `id`, cached.
    async fn repo_id(&self, s: &Session, owner: &str, name: &str) -> Result<u64, Failure> {
        let cache_key = format!(
            "{}/{}/{}",
            s.base,
            owner.to_ascii_lowercase(),
            name.to_ascii_lowercase()
        );
        if let Some((id, at)) = lock(&self.repo_ids).get(&cache_key)
            && at.elapsed() < REPO_ID_TTL
        {
            return Ok(*id);
        }
        let path = format!("/repos/{}/{}", segment(owner), segment(name));
        let reply = send(&s.crab, Method::GET, &path, &s.auth, None).await?;
        if reply.status == 404 {
            return Err(Failure::Other(SyncError::ClientSide(format!(
                "selected_repository_names: GitHub has no repository {owner}/{name} that these credentials can see"
            ))));
        }
        if !reply.ok() {
            return Err(reply.failure(&format!("reading repository {owner}/{name}")));
        }
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let Some(id) = body.get("id").and_then(Value::as_u64) else {
            return Err(Failure::Other(SyncError::ExternalService {
                message: format!("GitHub answered no id for repository {owner}/{name}"),
                retry_after: None,
            }));
        };
        let mut ids = lock(&self.repo_ids);
        if ids.len() >= MAX_CACHE {
            ids.clear();
        }
        ids.insert(cache_key, (id, Instant::now()));
        Ok(id)
    }
}

struct CachedKey {
    key_id: String,
    key: [u8; 32],
    fetched: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
