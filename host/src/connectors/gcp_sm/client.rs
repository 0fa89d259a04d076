//! Access tokens for Google APIs from a service-account key: an RS256 JWT
//! assertion traded at the key's `token_uri`, cached until a minute before
//! the token expires, keyed by client email, key id, token URI and a digest of
//! the private key.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::config::ServiceAccount;
use crate::connectors::egress::EgressPolicy;
use crate::connectors::{SyncError, http};

/// The OAuth scope asked for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

const TOKEN_PROVIDER: &str = "Google's OAuth token endpoint";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// A cached token is replaced this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime of the signed assertion (Google's maximum).
const ASSERTION_TTL: u64 = 3600;

#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct TokenKey {
    client_email: String,
    key_id: String,
    token_uri: String,
    /// SHA-256 of the private key, so that a replaced key never reuses a token.
    key_digest: [u8; 32],
}

struct CachedToken {
    token: Zeroizing<String>,
    refresh_at: Instant,
}

impl TokenKey {
    pub fn of(sa: &ServiceAccount) -> Self {
        TokenKey {
            client_email: sa.client_email.clone(),
            key_id: sa.private_key_id.clone(),
            token_uri: sa.token_uri().to_string(),
            key_digest: Sha256::digest(sa.private_key.as_bytes()).into(),
        }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Drop for TokenResponse {
    fn drop(&mut self) {
        self.access_token.zeroize();
    }
}

/// The access-token cache.
#[derive(Default)]
pub(super) struct Tokens {
    cache: Mutex<HashMap<TokenKey, CachedToken>>,
}

impl Tokens {
    fn lock(&self) -> MutexGuard<'_, HashMap<TokenKey, CachedToken>> {
        // Every update is a single insert or remove: a poisoned map is still whole.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops a token the API refused (revoked, or expired early).
    pub fn forget(&self, key: &TokenKey) {
        self.lock().remove(key);
    }

    /// A cached access token, or a new one from the key's token endpoint.
    pub async fn access_token(
        &self,
        client: &reqwest::Client,
        policy: &EgressPolicy,
        sa: &ServiceAccount,
        key: &TokenKey,
    ) -> Result<Zeroizing<String>, SyncError> {
        let now = Instant::now();
        if let Some(cached) = self.lock().get(key).filter(|c| c.refresh_at > now) {
            return Ok(cached.token.clone());
        }
        http::require_https(policy, "credentials (token_uri)", sa.token_uri())?;
        let token_uri = http::checked_url(policy, sa.token_uri())?;
        if !matches!(token_uri.scheme(), "https" | "http") {
            return Err(SyncError::ClientSide(format!(
                "the service account's token_uri must be an http(s) URL, not {}",
                token_uri.scheme()
            )));
        }
        let assertion = sign_assertion(sa)?;
        let body = Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", JWT_BEARER)
                .append_pair("assertion", &assertion)
                .finish(),
        );
        let resp = client
            .post(token_uri)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.as_bytes().to_vec())
            .send()
            .await
            .map_err(|e| http::transport_error(TOKEN_PROVIDER, &e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = http::read_text(TOKEN_PROVIDER, resp).await?;
        if !(200..300).contains(&status) {
            return Err(token_error(status, &headers, &text));
        }
        // The body holds the token: never quoted in an error.
        let parsed: TokenResponse =
            serde_json::from_str(&text).map_err(|_| SyncError::ExternalService {
                message: format!(
                    "{TOKEN_PROVIDER} answered {status} with an unreadable token response"
                ),
                retry_after: None,
            })?;
        if parsed.access_token.is_empty() {
            return Err(SyncError::ExternalService {
                message: format!("{TOKEN_PROVIDER} answered {status} without an access_token"),
                retry_after: None,
            });
        }
        let token = Zeroizing::new(parsed.access_token.clone());
        let now = Instant::now();
        if let Some(refresh_at) = refresh_at(now, parsed.expires_in) {
            let mut tokens = self.lock();
            tokens.retain(|_, c| c.refresh_at > now);
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

/// When a token issued `now` for `expires_in` seconds (the assertion's
/// lifetime when unsaid) is replaced: [`TOKEN_MARGIN`] before it expires;
/// `None` when it is too short-lived to cache.
pub(super) fn refresh_at(now: Instant, expires_in: Option<u64>) -> Option<Instant> {
    let lifetime = http::token_lifetime(expires_in.unwrap_or(ASSERTION_TTL));
    if lifetime <= TOKEN_MARGIN * 2 {
        return None;
    }
    now.checked_add(lifetime.saturating_sub(TOKEN_MARGIN))
}

/// The signed JWT bearer assertion; zeroized on drop.
pub(super) fn sign_assertion(sa: &ServiceAccount) -> Result<Zeroizing<String>, SyncError> {
    let key = EncodingKey::from_rsa_pem(sa.private_key.as_bytes()).map_err(|_| {
        SyncError::ClientSide(
            "the service account's private_key is not an RSA private key in PEM form".to_string(),
        )
    })?;
    let mut header = Header::new(Algorithm::RS256);
    if !sa.private_key_id.is_empty() {
        header.kid = Some(sa.private_key_id.clone());
    }
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = Claims {
        iss: sa.client_email.trim(),
        scope: SCOPE,
        aud: sa.token_uri(),
        iat,
        exp: iat + ASSERTION_TTL,
    };
    jsonwebtoken::encode(&header, &claims, &key)
        .map(Zeroizing::new)
        .map_err(|_| {
            SyncError::ClientSide("cannot sign with the service account's private_key".to_string())
        })
}

/// Maps an error answer of the token endpoint (`{"error","error_description"}`).
pub(super) fn token_error(status: u16, headers: &HeaderMap, body: &str) -> SyncError {
    #[derive(Deserialize)]
    struct OAuthError {
        #[serde(default)]
        error: String,
        #[serde(default)]
        error_description: String,
    }
    match serde_json::from_str::<OAuthError>(body) {
        Ok(e)
            if matches!(
                e.error.as_str(),
                "invalid_grant" | "invalid_client" | "unauthorized_client"
            ) =>
        {
            let why = if e.error_description.is_empty() {
                e.error.clone()
            } else {
                format!("{}: {}", e.error, e.error_description)
            };
            SyncError::ClientSide(format!(
                "Google rejected the service account credentials ({})",
                http::detail(&why)
            ))
        }
        _ => http::status_error(TOKEN_PROVIDER, status, headers, body),
    }
}
