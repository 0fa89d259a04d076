//! The `gh` connector's HTTP clients (one octocrab client per runtime and API
//! base URL) and authentication: the `Authorization` of each operation, from
//! the destination's token or a GitHub App's installation token (an RS256 app
//! JWT traded at `POST /app/installations/{id}/access_tokens`, cached until
//! [`TOKEN_MARGIN`] before it expires, per API, app, installation and key).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use hyper::header::HeaderValue;
use octocrab::Octocrab;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::api::{app_jwt, bearer, parse_utc, send, unix_now};
use super::config::{Credentials, Target};
use super::{GitHub, MAX_CACHE, lock};
use crate::connectors::SyncError;
use crate::connectors::egress::EgressPolicy;
use crate::connectors::http::{self, checked_url, token_lifetime};

/// Installation tokens are renewed this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// Bound on the cached HTTP clients (one per API base URL, egress rules and runtime).
const MAX_CLIENTS: usize = 64;

pub(super) struct Session {
    pub crab: Octocrab,
    /// `Bearer <token>`, marked sensitive.
    pub auth: HeaderValue,
    pub base: String,
    /// The secrets route of the scope, e.g. `/repos/o/r/actions/secrets`.
    pub scope: String,
    /// The scope in words, for messages.
    pub what: String,
    /// The installation token's cache entry, when `auth` is one.
    token_key: Option<TokenKey>,
    /// Whether that token came from the cache (a 401 then earns one retry).
    pub token_from_cache: bool,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct TokenKey {
    base: String,
    app_id: u64,
    installation_id: u64,
    /// Another key for the same app must prove itself: no shared token.
    key_sha256: [u8; 32],
}

pub(super) struct CachedToken {
    token: Zeroizing<String>,
    refresh_at: Instant,
}

impl GitHub {
    pub(super) async fn session(
        &self,
        target: &Target,
        fresh_token: bool,
    ) -> Result<Session, SyncError> {
        checked_url(&target.policy, &target.base)?;
        let crab = self.client(&target.base, &target.policy)?;
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

    /// octocrab's client for `base` over the shared egress-bound reqwest
    /// client: its resolver checks the API's addresses in the lookup the
    /// connection uses, and it follows no redirect.
    fn client(&self, base: &str, policy: &Arc<EgressPolicy>) -> Result<Octocrab, SyncError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| {
                SyncError::Internal("the gh connector runs outside a tokio runtime".to_string())
            })?
            .id();
        let key = (runtime, base.to_string(), (**policy).clone());
        let mut clients = lock(&self.clients);
        if let Some(crab) = clients.get(&key) {
            return Ok(crab.clone());
        }
        let http = http::client(policy, &self.dns)?;
        let crab = Octocrab::builder()
            .base_uri(base)
            .and_then(|b| b.build_with_reqwest(http))
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

    pub(super) fn forget_token(&self, session: &Session) {
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
        let expires_at = body
            .get("expires_at")
            .and_then(Value::as_str)
            .and_then(parse_utc);
        if let Some(refresh_at) = refresh_at(Instant::now(), unix_now(), expires_at) {
            let mut tokens = lock(&self.tokens);
            if tokens.len() >= MAX_CACHE {
                tokens.clear();
            }
            tokens.insert(
                key.clone(),
                CachedToken {
                    token: token.clone(),
                    refresh_at,
                },
            );
        }
        Ok(token)
    }
}

/// When an installation token issued `now` (`unix_now` in Unix seconds) that
/// expires at `expires_at` (Unix seconds; GitHub's tokens last an hour, which
/// is assumed when unsaid) is replaced: [`TOKEN_MARGIN`] before it expires;
/// `None` when it is too short-lived to cache.
pub(super) fn refresh_at(now: Instant, unix_now: u64, expires_at: Option<u64>) -> Option<Instant> {
    let lifetime = expires_at.map_or(Duration::from_secs(3600), |at| {
        token_lifetime(at.saturating_sub(unix_now))
    });
    let valid = lifetime
        .checked_sub(TOKEN_MARGIN)
        .filter(|v| !v.is_zero())?;
    now.checked_add(valid)
}
