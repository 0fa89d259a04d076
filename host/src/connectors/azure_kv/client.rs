//! Microsoft Entra ID client-credentials tokens for Key Vault, cached per
//! (authority, tenant, client id, SHA-256 of the secret, scope) until
//! [`TOKEN_REFRESH_MARGIN`] before they expire.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::config::{Cloud, Credentials};
use crate::connectors::SyncError;
use crate::connectors::egress::EgressPolicy;
use crate::connectors::http::{
    checked_url, detail, read_body, status_error, token_lifetime, transport_error,
};

/// A cached token is renewed this long before it expires (at most half its life).
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);

const ENTRA: &str = "the Azure token endpoint";

/// What a cached token is filed under. The secret is only kept as a hash.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct TokenKey {
    authority: String,
    tenant: String,
    client_id: String,
    secret_sha256: [u8; 32],
    scope: &'static str,
}

struct CachedToken {
    token: Zeroizing<String>,
    /// When to stop using it (already includes the refresh margin).
    renew_at: Instant,
}

/// The token cache and the authority override.
pub(super) struct Tokens {
    /// `AZURE_AUTHORITY_HOST`: overrides the cloud's authority.
    authority_host: Option<String>,
    cache: Mutex<HashMap<TokenKey, CachedToken>>,
}

impl Tokens {
    /// An empty cache; `authority_host` overrides every cloud's authority.
    pub fn new(authority_host: Option<String>) -> Self {
        Tokens {
            authority_host,
            cache: Mutex::default(),
        }
    }

    pub fn authority(&self, cloud: Cloud) -> String {
        let host = self
            .authority_host
            .as_deref()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| cloud.authority_host().to_string());
        host.trim_end_matches('/').to_string()
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<TokenKey, CachedToken>> {
        // The map stays consistent whatever a panicking holder did.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops a token the vault refused.
    pub fn forget(&self, key: &TokenKey) {
        self.cache().remove(key);
    }

    /// A cached token, or a new one from the token endpoint.
    pub async fn token(
        &self,
        client: &reqwest::Client,
        policy: &EgressPolicy,
        creds: &Credentials<'_>,
    ) -> Result<(Zeroizing<String>, TokenKey), SyncError> {
        let key = TokenKey {
            authority: self.authority(creds.cloud),
            tenant: creds.tenant.to_string(),
            client_id: creds.client_id.to_string(),
            secret_sha256: Sha256::digest(creds.secret.as_bytes()).into(),
            scope: creds.cloud.vault_scope(),
        };
        let now = Instant::now();
        if let Some(cached) = self.cache().get(&key).filter(|c| c.renew_at > now) {
            return Ok((cached.token.clone(), key));
        }
        let url = format!("{}/{}/oauth2/v2.0/token", key.authority, key.tenant);
        let url = checked_url(policy, &url)?;
        let form = Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "client_credentials")
                .append_pair("client_id", creds.client_id)
                .append_pair("client_secret", creds.secret)
                .append_pair("scope", key.scope)
                .finish(),
        );
        let resp = client
            .post(url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form.as_bytes().to_vec())
            .send()
            .await
            .map_err(|e| transport_error(ENTRA, &e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = read_body(ENTRA, resp).await?;
        if !(200..300).contains(&status) {
            return Err(token_error(
                status,
                &headers,
                &String::from_utf8_lossy(&body),
            ));
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|_| SyncError::ExternalService {
                message: format!("{ENTRA} sent an answer that is not a token response"),
                retry_after: None,
            })?;
        let token = Zeroizing::new(answer.access_token);
        if token.is_empty() {
            return Err(SyncError::ExternalService {
                message: format!("{ENTRA} sent an empty access token"),
                retry_after: None,
            });
        }
        let lifetime = answer.expires_in.as_ref().and_then(seconds).unwrap_or(0);
        if let Some(renew_at) = renew_at(now, lifetime) {
            let mut cache = self.cache();
            cache.retain(|_, c| c.renew_at > now);
            cache.insert(
                key.clone(),
                CachedToken {
                    token: token.clone(),
                    renew_at,
                },
            );
        }
        Ok((token, key))
    }
}

/// When a token that lives `lifetime_s` seconds from `now` stops being used:
/// [`TOKEN_REFRESH_MARGIN`] before it expires, or halfway for short-lived
/// tokens; `None` when it is not worth caching.
pub(super) fn renew_at(now: Instant, lifetime_s: u64) -> Option<Instant> {
    let life = token_lifetime(lifetime_s);
    let margin = TOKEN_REFRESH_MARGIN.min(life / 2);
    let keep = life.saturating_sub(margin);
    now.checked_add(keep)
        .filter(|_| keep >= Duration::from_secs(1))
}

/// `expires_in`: a number, or (older endpoints) a string of digits.
pub(super) fn seconds(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Maps a token endpoint failure. The OAuth error codes that mean "this app
/// id / secret pair is not valid" are the destination's credentials.
pub(super) fn token_error(status: u16, headers: &HeaderMap, body: &str) -> SyncError {
    let parsed: Option<OAuthError> = serde_json::from_str(body).ok();
    if let Some(err) = parsed
        && matches!(status, 400 | 401)
        && matches!(err.error.as_str(), "invalid_client" | "unauthorized_client")
    {
        // The first line of the description (the rest is trace and correlation ids).
        let description = err.error_description.unwrap_or_default();
        let first = description.lines().next().unwrap_or("").trim();
        let why = if first.is_empty() {
            err.error
        } else {
            format!("{}: {}", err.error, detail(first))
        };
        return SyncError::ClientSide(format!(
            "Azure rejected the client credentials ({why}); check tenant_id, client_id and client_secret"
        ));
    }
    status_error(ENTRA, status, headers, body)
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
}
