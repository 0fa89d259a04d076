//! `gcp-sm`: Google Secret Manager over its REST API (`reqwest` through the
//! shared egress-bound client, `jsonwebtoken` with the `aws_lc_rs` backend).
//!
//! **Auth.** The destination's `credentials` field holds a service-account JSON
//! key. The connector signs an RS256 JWT with it (header `kid` = `private_key_id`;
//! claims `iss` = `client_email`, `scope` = cloud-platform, `aud` = `token_uri`,
//! `iat` = now, `exp` = now + 1 h) and trades it at the key's `token_uri`
//! (taken as given, so a test key can point at a fake; the egress rules apply to
//! it like to every connection to the provider) for an access token. Tokens are
//! cached until a minute before they expire, keyed by client email, key id,
//! token URI and a digest of the private key. Empty `credentials` would mean
//! Application Default Credentials, and `identity_token_audience` /
//! `service_account_email` workload identity federation: neither is supported
//! yet (`CLIENT_SIDE_ERROR` saying so).
//!
//! **Calls** (base URL `https://secretmanager.googleapis.com`, overridden by the
//! server's environment variable `KVSYNC_GCP_SECRET_MANAGER_URL`, see
//! [`ConnectorEnv`]; project from
//! the destination's `project_id`, else the key's):
//! - push: `POST …/secrets/{id}:addVersion` with the base64 payload and its
//!   CRC32C. An existing secret costs exactly that one call. On 404 the secret
//!   is created (`POST …/secrets?secretId={id}` with the replication policy and
//!   labels; 409 `ALREADY_EXISTS` — another writer won the race — is fine) and
//!   the version is added again: three calls, two of them writes.
//! - push_new (an object kvsync never wrote: an association's first sync):
//!   create, then add the version: two calls.
//! - delete: `DELETE …/secrets/{id}` (all versions, no soft delete); 404 counts
//!   as deleted.
//!
//! **Labels.** Tags become labels. GCP label keys and values are lowercase
//! `[a-z0-9_-]`, at most 63 characters, keys starting with a letter; so every
//! tag key and value is lowercased, every other character becomes `-`, a key
//! not starting with a letter gets the prefix `tag-`, and both are cut at 63
//! characters (see [`label_key`], [`label_value`]). The built-in
//! `hashicorp:vault` tag therefore is the label `hashicorp-vault`. Two tags that
//! map to the same label key are a `CLIENT_SIDE_ERROR`. Labels and replication
//! are set when the secret is created; later pushes only add versions (one
//! write per change), so a change of `custom_tags` does not relabel existing
//! secrets, and GCP does not allow changing a secret's replication at all.
//!
//! **Replication** ([`Config::replication`]): `replica_regions` (location → KMS key or
//! "") → user-managed; else the deprecated `replication_locations` /
//! `locational_kms_keys` → user-managed; else automatic, customer-managed with
//! `kms_key_id` (or the deprecated `global_kms_key`) when set.
//!
//! **Errors.** Secret IDs (`[A-Za-z0-9_-]{1,255}`) and payload size (64 KiB) are
//! checked before any call. Google's error body `{"error":{"code","message",
//! "status"}}` is condensed into the message; 429 `RESOURCE_EXHAUSTED`, 503 and
//! other 5xx are `EXTERNAL_SERVICE_ERROR` with the `Retry-After` header (or the
//! body's `RetryInfo.retryDelay`) as retry hint; 401/403 and other 4xx are
//! `CLIENT_SIDE_ERROR`; the token endpoint's `invalid_grant` is "Google rejected
//! the service account credentials". No call is retried here: the engine retries.

mod client;
mod config;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::egress::Dns;
use super::http;
use super::{Connector, ConnectorEnv, Dest, ExternalSecret, SyncError};
pub use client::SCOPE;
use client::{TokenKey, Tokens};
pub use config::{Config, DEFAULT_TOKEN_URI};

/// Google Secret Manager's API.
pub const DEFAULT_BASE_URL: &str = "https://secretmanager.googleapis.com";
/// Largest secret payload Google accepts, in bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Longest secret ID Google accepts.
pub const MAX_SECRET_ID: usize = 255;
/// Longest label key or value.
pub const MAX_LABEL_LEN: usize = 63;
/// Most labels on one resource.
pub const MAX_LABELS: usize = 64;

const PROVIDER: &str = "Google Secret Manager";

/// The `gcp-sm` connector: stateless apart from its access-token cache.
pub struct GcpSecretManager {
    /// The API base URL, or why the configured one cannot be used.
    base_url: Result<String, SyncError>,
    tokens: Tokens,
    dns: Dns,
}

/// Everything one operation needs to reach the destination's project.
struct Session {
    client: reqwest::Client,
    /// `{base}/v1/projects/{project}/secrets`
    secrets_url: String,
    token: Zeroizing<String>,
    token_key: TokenKey,
}

/// A checked secret, ready to write: the session, the version's body and the
/// labels of a new secret.
struct Write {
    session: Session,
    body: Zeroizing<String>,
    labels: BTreeMap<String, String>,
}

/// How an `addVersion` call ended when it did not fail.
enum Added {
    Yes,
    SecretMissing,
}

impl GcpSecretManager {
    /// The connector, with the API URL override of `env`.
    pub fn new(env: &ConnectorEnv) -> Self {
        GcpSecretManager {
            base_url: base_url(env.gcp_secret_manager_url.as_deref()),
            tokens: Tokens::default(),
            dns: env.dns.clone(),
        }
    }

    /// Reads the destination, checks the egress rules for the API and gets a token.
    async fn session(&self, dest: &Dest<Config>) -> Result<Session, SyncError> {
        let policy = &dest.egress;
        let sa = dest.config.service_account()?;
        let project = dest.config.project_id(sa)?;
        let base = self.base_url.clone()?;
        let client = http::client(policy, &self.dns)?;
        let token_key = TokenKey::of(sa);
        let token = self
            .tokens
            .access_token(&client, policy, sa, &token_key)
            .await?;
        http::checked_url(policy, &base)?;
        Ok(Session {
            client,
            secrets_url: format!("{base}/v1/projects/{project}/secrets"),
            token,
            token_key,
        })
    }

    /// One call to the Secret Manager API: status, headers and body.
    async fn call(
        &self,
        session: &Session,
        method: reqwest::Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, HeaderMap, Zeroizing<String>), SyncError> {
        let url = url::Url::parse(url)
            .map_err(|e| SyncError::Internal(format!("cannot build a {PROVIDER} URL: {e}")))?;
        let mut req = session
            .client
            .request(method, url)
            .bearer_auth(session.token.as_str());
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| http::transport_error(PROVIDER, &e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = http::read_text(PROVIDER, resp).await?;
        if status == 401 {
            // The token was revoked or has expired early: fetch a new one next time.
            self.tokens.forget(&session.token_key);
        }
        Ok((status, headers, text))
    }

    async fn add_version(
        &self,
        session: &Session,
        id: &str,
        body: &[u8],
    ) -> Result<Added, SyncError> {
        let url = format!("{}/{id}:addVersion", session.secrets_url);
        let (status, headers, text) = self
            .call(session, reqwest::Method::POST, &url, Some(body.to_vec()))
            .await?;
        match status {
            200..=299 => Ok(Added::Yes),
            404 => Ok(Added::SecretMissing),
            _ => Err(api_error(status, &headers, &text)),
        }
    }

    async fn create(
        &self,
        session: &Session,
        id: &str,
        replication: &Value,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), SyncError> {
        let url = format!("{}?secretId={id}", session.secrets_url);
        let mut body = serde_json::Map::new();
        body.insert("replication".into(), replication.clone());
        if !labels.is_empty() {
            body.insert("labels".into(), json!(labels));
        }
        let (status, headers, text) = self
            .call(
                session,
                reqwest::Method::POST,
                &url,
                Some(Value::Object(body).to_string().into_bytes()),
            )
            .await?;
        match status {
            200..=299 | 409 => Ok(()),
            _ => Err(api_error(status, &headers, &text)),
        }
    }
}

impl GcpSecretManager {
    /// Checks the secret (ID, size, labels: before any call), then opens the
    /// session and encodes the version's body.
    async fn prepare(
        &self,
        dest: &Dest<Config>,
        secret: &ExternalSecret,
    ) -> Result<Write, SyncError> {
        check_secret_id(&secret.name)?;
        check_payload(&secret.name, &secret.value)?;
        let labels = labels(&secret.tags)?;
        Ok(Write {
            session: self.session(dest).await?,
            body: version_body(&secret.value),
            labels,
        })
    }

    /// Creates the secret with its labels and replication policy (an existing
    /// one answers 409 and is kept as it is), then adds its version: two calls.
    async fn create_with_version(
        &self,
        dest: &Dest<Config>,
        write: &Write,
        id: &str,
    ) -> Result<(), SyncError> {
        let session = &write.session;
        self.create(session, id, &dest.config.replication(), &write.labels)
            .await?;
        match self.add_version(session, id, write.body.as_bytes()).await? {
            Added::Yes => Ok(()),
            Added::SecretMissing => Err(SyncError::ExternalService {
                message: format!(
                    "{PROVIDER}: secret {id} was deleted while its first version was being added"
                ),
                retry_after: None,
            }),
        }
    }
}

#[async_trait]
impl Connector for GcpSecretManager {
    const KIND: &'static str = "gcp-sm";
    type Config = Config;

    async fn push(&self, dest: &Dest<Config>, secret: &ExternalSecret) -> Result<(), SyncError> {
        let write = self.prepare(dest, secret).await?;
        if let Added::Yes = self
            .add_version(&write.session, &secret.name, write.body.as_bytes())
            .await?
        {
            return Ok(());
        }
        self.create_with_version(dest, &write, &secret.name).await
    }

    async fn push_new(
        &self,
        dest: &Dest<Config>,
        secret: &ExternalSecret,
    ) -> Result<(), SyncError> {
        let write = self.prepare(dest, secret).await?;
        self.create_with_version(dest, &write, &secret.name).await
    }

    async fn delete(&self, dest: &Dest<Config>, name: &str) -> Result<(), SyncError> {
        if check_secret_id(name).is_err() {
            // Google cannot hold a secret by that ID, so there is nothing to delete.
            return Ok(());
        }
        let session = self.session(dest).await?;
        let url = format!("{}/{name}", session.secrets_url);
        let (status, headers, text) = self
            .call(&session, reqwest::Method::DELETE, &url, None)
            .await?;
        match status {
            200..=299 | 404 => Ok(()),
            _ => Err(api_error(status, &headers, &text)),
        }
    }
}

/// The API base URL: the override if set, else [`DEFAULT_BASE_URL`].
fn base_url(configured: Option<&str>) -> Result<String, SyncError> {
    let base = configured
        .map(|v| v.trim().trim_end_matches('/').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    match url::Url::parse(&base) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.query().is_none() => Ok(base),
        _ => Err(SyncError::Internal(format!(
            "{} is not an http(s) URL without a query: {base:?}",
            ConnectorEnv::GCP_SECRET_MANAGER_URL
        ))),
    }
}

/// Google's error body: `{"error":{"code","message","status","details":[…]}}`.
#[derive(Deserialize)]
struct GoogleErrorBody {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

/// `"7s"`, `"1.5s"` (a protobuf Duration in JSON) as a duration.
fn proto_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Maps an error answer of the Secret Manager API.
fn api_error(status: u16, headers: &HeaderMap, body: &str) -> SyncError {
    let Ok(GoogleErrorBody { error }) = serde_json::from_str::<GoogleErrorBody>(body) else {
        return http::status_error(PROVIDER, status, headers, body);
    };
    let mut text = match (error.status.is_empty(), error.message.is_empty()) {
        (false, false) => format!("{} {}", error.status, error.message),
        (false, true) => error.status.clone(),
        (true, _) => error.message.clone(),
    };
    if error.status == "PERMISSION_DENIED" {
        text.push_str(" (the service account needs the Secret Manager Admin role on the project, or secrets create/delete and versions add permissions)");
    }
    let mut out = http::status_error(PROVIDER, status, headers, &text);
    if let SyncError::ExternalService { retry_after, .. } = &mut out
        && retry_after.is_none()
    {
        *retry_after = error
            .details
            .iter()
            .filter(|d| {
                d.get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
            })
            .find_map(|d| {
                d.get("retryDelay")
                    .and_then(Value::as_str)
                    .and_then(proto_duration)
            });
    }
    out
}

/// Checks a secret ID against Google's rule: 1 to 255 characters from `[A-Za-z0-9_-]`.
pub fn check_secret_id(id: &str) -> Result<(), SyncError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_SECRET_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(SyncError::ClientSide(format!(
            "{:?} is not a valid Google Secret Manager secret ID: use 1 to {MAX_SECRET_ID} characters from [A-Za-z0-9_-]",
            http::detail(id)
        )))
    }
}

/// Checks the payload size limit (64 KiB).
pub fn check_payload(name: &str, value: &str) -> Result<(), SyncError> {
    if value.len() > MAX_PAYLOAD {
        return Err(SyncError::ClientSide(format!(
            "the value of {name} is {} bytes; Google Secret Manager accepts at most {MAX_PAYLOAD} bytes (64 KiB)",
            value.len()
        )));
    }
    Ok(())
}

/// The `addVersion` body: `{"payload":{"data": base64, "dataCrc32c": "<decimal>"}}`.
pub fn version_body(value: &str) -> Zeroizing<String> {
    let data = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(value.as_bytes()));
    let crc = crc32c::crc32c(value.as_bytes());
    // Base64 needs no JSON escaping.
    Zeroizing::new(format!(
        "{{\"payload\":{{\"data\":\"{}\",\"dataCrc32c\":\"{crc}\"}}}}",
        data.as_str()
    ))
}

fn label_text(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A tag key as a GCP label key: lowercased, characters outside `[a-z0-9_-]`
/// replaced by `-`, prefixed with `tag-` unless it starts with a letter, cut at
/// 63 characters. `hashicorp:vault` → `hashicorp-vault`.
pub fn label_key(tag: &str) -> String {
    let mut key = label_text(tag);
    if !key.starts_with(|c: char| c.is_ascii_lowercase()) {
        key.insert_str(0, "tag-");
    }
    key.truncate(MAX_LABEL_LEN);
    key
}

/// A tag value as a GCP label value: lowercased, characters outside
/// `[a-z0-9_-]` replaced by `-`, cut at 63 characters (may be empty).
pub fn label_value(value: &str) -> String {
    let mut v = label_text(value);
    v.truncate(MAX_LABEL_LEN);
    v
}

/// The labels of a secret, from its tags (see [`label_key`], [`label_value`]).
pub fn labels(tags: &[(String, String)]) -> Result<BTreeMap<String, String>, SyncError> {
    let mut out = BTreeMap::new();
    let mut from: BTreeMap<String, &str> = BTreeMap::new();
    for (k, v) in tags {
        let key = label_key(k);
        if let Some(first) = from.get(&key) {
            return Err(SyncError::ClientSide(format!(
                "tags {first:?} and {k:?} both become the GCP label {key:?} (labels are lowercase [a-z0-9_-]); rename one of them"
            )));
        }
        from.insert(key.clone(), k);
        out.insert(key, label_value(v));
    }
    if out.len() > MAX_LABELS {
        return Err(SyncError::ClientSide(format!(
            "{} tags, but a GCP secret takes at most {MAX_LABELS} labels",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
