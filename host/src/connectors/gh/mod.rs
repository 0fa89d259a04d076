//! `gh`: GitHub Actions secrets of a repository, a repository environment or
//! an organization, through `octocrab`'s HTTP stack (its base URI, timeouts
//! and raw request methods; no retries: the `retry` feature is off, the
//! engine is the one layer that retries).
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
//! octocrab cannot take the egress-filtering resolver, so the API's URL is
//! resolved and checked against the destination's egress rules
//! ([`check_url`](crate::connectors::egress::EgressPolicy::check_url)) at the
//! start of every operation, before the token exchange and the secret calls.

mod api;
mod config;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use crypto_box::PublicKey;
use crypto_box::aead::OsRng;
use hyper::Method;
use hyper::header::HeaderValue;
use octocrab::Octocrab;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::http::checked_url;
use super::{Destination, DestinationConnector, ExternalSecret, SyncError};
use api::{Failure, app_jwt, bearer, parse_utc, send, unix_now};
use config::{Credentials, Location, Target, check_name, check_value, segment};

pub use config::MAX_VALUE_BYTES;

/// How long a scope's public key is reused without asking again.
pub const KEY_TTL: Duration = Duration::from_secs(300);
/// How long a repository's id (organization secrets, `selected`) is reused.
const REPO_ID_TTL: Duration = Duration::from_secs(300);
/// Installation tokens are renewed this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// Connect, read and write timeouts of the HTTP client.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on every cache (entries); a full cache is emptied.
const MAX_CACHE: usize = 4096;
/// Bound on the cached HTTP clients (one per API base URL and runtime).
const MAX_CLIENTS: usize = 64;

/// The GitHub Actions secrets connector.
#[derive(Default)]
pub struct GitHub {
    /// One client per (runtime, API base URL): octocrab's client runs a
    /// worker task on the runtime that built it.
    clients: Mutex<HashMap<(tokio::runtime::Id, String), Octocrab>>,
    /// Public keys by API base URL + scope path.
    keys: Mutex<HashMap<String, CachedKey>>,
    /// Installation tokens of GitHub Apps.
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    /// Repository ids by API base URL + `owner/name` (lower-cased).
    repo_ids: Mutex<HashMap<String, (u64, Instant)>>,
}

#[async_trait]
impl DestinationConnector for GitHub {
    fn kind(&self) -> &'static str {
        "gh"
    }

    async fn push(&self, dest: &Destination, secret: &ExternalSecret) -> Result<(), SyncError> {
        let name = check_name(&secret.name)?;
        check_value(&secret.value)?;
        let target = Target::parse(dest)?;
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

    async fn delete(&self, dest: &Destination, name: &str) -> Result<(), SyncError> {
        // A name GitHub refuses cannot exist there: nothing to delete.
        let Ok(name) = check_name(name) else {
            return Ok(());
        };
        let target = Target::parse(dest)?;
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
    async fn session(&self, target: &Target, fresh_token: bool) -> Result<Session, SyncError> {
        checked_url(&target.policy, &target.base).await?;
        let crab = self.client(&target.base)?;
        let (auth, token_key, token_from_cache) = match &target.credentials {
            Credentials::Token(token) => (bearer(token)?, None, false),
            Credentials::App {
                app_id,
                installation_id,
                private_key,
            } => {
                let key = TokenKey {
                    base: target.base.clone(),
                    app_id: *app_id,
                    installation_id: *installation_id,
                    key_sha256: Sha256::digest(private_key.as_bytes()).into(),
                };
                let (token, from_cache) =
                    match (!fresh_token).then(|| self.cached_token(&key)).flatten() {
                        Some(token) => (token, true),
                        None => (
                            self.installation_token(&crab, &key, private_key).await?,
                            false,
                        ),
                    };
                (bearer(&token)?, Some(key), from_cache)
            }
        };
        Ok(Session {
            crab,
            auth,
            base: target.base.clone(),
            scope: target.scope_path(),
            what: target.describe(),
            token_key,
            token_from_cache,
        })
    }

    fn client(&self, base: &str) -> Result<Octocrab, SyncError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| {
                SyncError::Internal("the gh connector runs outside a tokio runtime".to_string())
            })?
            .id();
        let key = (runtime, base.to_string());
        let mut clients = lock(&self.clients);
        if let Some(crab) = clients.get(&key) {
            return Ok(crab.clone());
        }
        let crab = Octocrab::builder()
            .set_connect_timeout(Some(IO_TIMEOUT))
            .set_read_timeout(Some(IO_TIMEOUT))
            .set_write_timeout(Some(IO_TIMEOUT))
            .base_uri(base)
            .and_then(|b| b.build())
            .map_err(|e| SyncError::Internal(format!("cannot build the GitHub client: {e}")))?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, crab.clone());
        Ok(crab)
    }

    fn cached_token(&self, key: &TokenKey) -> Option<Zeroizing<String>> {
        let tokens = lock(&self.tokens);
        tokens
            .get(key)
            .filter(|t| Instant::now() < t.refresh_at)
            .map(|t| t.token.clone())
    }

    fn forget_token(&self, session: &Session) {
        if let Some(key) = &session.token_key {
            lock(&self.tokens).remove(key);
        }
    }

    /// `POST /app/installations/{id}/access_tokens` with a fresh app JWT.
    async fn installation_token(
        &self,
        crab: &Octocrab,
        key: &TokenKey,
        private_key: &str,
    ) -> Result<Zeroizing<String>, SyncError> {
        let jwt = app_jwt(key.app_id, private_key, unix_now())?;
        let auth = bearer(&jwt)?;
        let path = format!("/app/installations/{}/access_tokens", key.installation_id);
        let reply = send(crab, Method::POST, &path, &auth, Some(&json!({}))).await?;
        let what = format!(
            "installation {} of GitHub App {}",
            key.installation_id, key.app_id
        );
        if !reply.ok() {
            return Err(match reply.status {
                401 => SyncError::ClientSide(format!(
                    "GitHub refused the JWT of GitHub App {} (401 {}): check the app's app_id and private key",
                    key.app_id,
                    reply.message()
                )),
                404 => SyncError::ClientSide(format!(
                    "GitHub answered 404 for {what}: check installation_id and that the app is installed ({})",
                    reply.message()
                )),
                _ => reply.error(&format!("getting a token for {what}")),
            });
        }
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let Some(token) = body
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        else {
            return Err(SyncError::ExternalService {
                message: format!("GitHub answered without a token for {what}"),
                retry_after: None,
            });
        };
        let token = Zeroizing::new(token.to_string());
        // GitHub's tokens last an hour; without a readable expiry, assume that.
        let lifetime = body
            .get("expires_at")
            .and_then(Value::as_str)
            .and_then(parse_utc)
            .map_or(Duration::from_secs(3600), |at| {
                Duration::from_secs(at.saturating_sub(unix_now()))
            });
        if let Some(valid) = lifetime.checked_sub(TOKEN_MARGIN).filter(|v| !v.is_zero()) {
            let mut tokens = lock(&self.tokens);
            if tokens.len() >= MAX_CACHE {
                tokens.clear();
            }
            tokens.insert(
                key.clone(),
                CachedToken {
                    token: token.clone(),
                    refresh_at: Instant::now() + valid,
                },
            );
        }
        Ok(token)
    }

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

/// What one operation needs to talk to GitHub.
struct Session {
    crab: Octocrab,
    /// `Bearer <token>`, marked sensitive.
    auth: HeaderValue,
    base: String,
    /// The secrets route of the scope, e.g. `/repos/o/r/actions/secrets`.
    scope: String,
    /// The scope in words, for messages.
    what: String,
    /// The installation token's cache entry, when `auth` is one.
    token_key: Option<TokenKey>,
    /// Whether that token came from the cache (a 401 then earns one retry).
    token_from_cache: bool,
}

struct CachedKey {
    key_id: String,
    key: [u8; 32],
    fetched: Instant,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    base: String,
    app_id: u64,
    installation_id: u64,
    /// Another key for the same app must prove itself: no shared token.
    key_sha256: [u8; 32],
}

struct CachedToken {
    token: Zeroizing<String>,
    refresh_at: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
