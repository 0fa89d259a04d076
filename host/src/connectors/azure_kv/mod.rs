//! `azure-kv`: Azure Key Vault secrets, over the REST API with plain reqwest.
//!
//! **Auth**: OAuth 2.0 client credentials against Microsoft Entra ID,
//! `POST {authority}/{tenant_id}/oauth2/v2.0/token` with the form
//! `grant_type=client_credentials&client_id&client_secret&scope={vault resource}/.default`.
//! The authority follows the destination's `cloud` (public, US Government,
//! China) unless the server's environment sets the standard
//! `AZURE_AUTHORITY_HOST` ([`ConnectorEnv`]; tests point it at a fake). Tokens are cached per
//! (authority, tenant, client id, SHA-256 of the secret, scope) until
//! [`TOKEN_REFRESH_MARGIN`] before they expire; a 401 from the vault drops the
//! cached token. Managed identity (no `client_secret`) and workload identity
//! federation (`identity_token_*`) are not supported yet: CLIENT_SIDE_ERROR.
//!
//! **Calls** (every one with an explicit `api-version`, [`API_VERSION`]):
//! - push: `PUT {vault}/secrets/{name}` with `{"value", "tags"}` (a new
//!   version; creates or overwrites, no read first). One call on the happy path.
//!   The soft-delete trap — the name belongs to a deleted-but-recoverable
//!   secret, 409 `ObjectIsDeletedButRecoverable` — is handled by
//!   `POST {vault}/deletedsecrets/{name}/recover`, a bounded poll
//!   (`GET {vault}/secrets/{name}/` until 200, at most [`RECOVER_POLLS`] tries
//!   [`RECOVER_POLL_INTERVAL`] apart) and the `PUT` again: the recovered old
//!   versions stay in the secret's history, the new value is the current one.
//! - delete: `DELETE {vault}/secrets/{name}` (a soft delete on vaults with soft
//!   delete, the default); 404 `SecretNotFound` counts as deleted. The deleted
//!   secret is **not purged**: purging needs the privileged `purge` permission
//!   (and is impossible under purge protection), and a later push of the same
//!   name recovers it as above, so a soft delete is enough. Until it is
//!   recovered or its retention ends, the name stays reserved in the vault.
//!
//! Plus one token call whenever no cached token fits. Name rules
//! (`^[0-9a-zA-Z-]{1,127}$`), the 25 KB value limit and the tag limits (15
//! tags, 512-character names and values) are checked before any call.
//! Errors: see [`super::http::status_error`]; the token endpoint's
//! `invalid_client` / `unauthorized_client` answers say "Azure rejected the
//! client credentials". Egress rules apply to the vault and the authority.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::egress::EgressPolicy;
use super::http::{self, checked_url, detail, status_error, transport_error};
use super::{ConnectorEnv, Destination, DestinationConnector, ExternalSecret, SyncError};

/// The Key Vault REST API version sent with every data-plane call.
pub const API_VERSION: &str = "7.4";
/// Secret names: 1 to this many characters of `[0-9a-zA-Z-]`.
pub const MAX_NAME_LEN: usize = 127;
/// Largest secret value, in bytes (25 KB).
pub const MAX_VALUE_BYTES: usize = 25 * 1024;
/// Most tags on one secret.
pub const MAX_TAGS: usize = 15;
/// Longest tag name and tag value, in characters.
pub const MAX_TAG_CHARS: usize = 512;
/// GETs made while waiting for a recovered secret to be readable.
pub const RECOVER_POLLS: u32 = 10;
/// Pause between those GETs.
pub const RECOVER_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// A cached token is renewed this long before it expires (at most half its life).
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);

const VAULT: &str = "Azure Key Vault";
const ENTRA: &str = "the Azure token endpoint";

/// An Azure environment (`cloud` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Public,
    UsGovernment,
    China,
}

impl Cloud {
    /// `cloud` as stored by the engine; absent or empty is the public cloud.
    pub fn parse(name: Option<&str>) -> Result<Self, SyncError> {
        match name.map(str::trim).unwrap_or("") {
            "" | "AzurePublicCloud" => Ok(Cloud::Public),
            "AzureUSGovernmentCloud" => Ok(Cloud::UsGovernment),
            "AzureChinaCloud" => Ok(Cloud::China),
            other => Err(SyncError::ClientSide(format!(
                "unknown Azure cloud {other:?}: use AzurePublicCloud, AzureUSGovernmentCloud or AzureChinaCloud"
            ))),
        }
    }

    /// The Microsoft Entra ID authority of this cloud.
    pub fn authority_host(self) -> &'static str {
        match self {
            Cloud::Public => "https://login.microsoftonline.com",
            Cloud::UsGovernment => "https://login.microsoftonline.us",
            Cloud::China => "https://login.chinacloudapi.cn",
        }
    }

    /// The OAuth scope of Key Vault in this cloud (its resource + `/.default`).
    pub fn vault_scope(self) -> &'static str {
        match self {
            Cloud::Public => "https://vault.azure.net/.default",
            Cloud::UsGovernment => "https://vault.usgovcloudapi.net/.default",
            Cloud::China => "https://vault.azure.cn/.default",
        }
    }
}

/// What a cached token is filed under. The secret is only kept as a hash.
#[derive(Clone, PartialEq, Eq, Hash)]
struct TokenKey {
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

/// The Azure Key Vault connector. Holds the token cache; no `Debug` (tokens).
pub struct AzureKeyVault {
    /// Sent as `api-version` on every vault call.
    api_version: String,
    /// `AZURE_AUTHORITY_HOST`: overrides the cloud's authority.
    authority_host: Option<String>,
    /// Pause between the GETs that wait for a recovered secret.
    recover_poll: Duration,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
}

impl AzureKeyVault {
    /// The connector, with the authority override of `env`.
    pub fn new(env: &ConnectorEnv) -> Self {
        AzureKeyVault {
            api_version: API_VERSION.to_string(),
            authority_host: env.azure_authority_host.clone(),
            recover_poll: RECOVER_POLL_INTERVAL,
            tokens: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl DestinationConnector for AzureKeyVault {
    fn kind(&self) -> &'static str {
        "azure-kv"
    }

    async fn push(&self, dest: &Destination, secret: &ExternalSecret) -> Result<(), SyncError> {
        check_name(&secret.name)?;
        check_value(&secret.name, &secret.value)?;
        let tags = check_tags(&secret.tags)?;
        let body = serde_json::to_vec(&SetSecret {
            value: &secret.value,
            tags,
        })
        .map(Zeroizing::new)
        .map_err(|_| SyncError::Internal("cannot encode the Key Vault request".to_string()))?;
        let session = self.session(dest).await?;
        match session.set(&secret.name, &body).await? {
            Set::Done => Ok(()),
            Set::DeletedButRecoverable => {
                tracing::debug!(
                    destination = %dest.name,
                    secret = %secret.name,
                    "azure-kv: the name belongs to a soft-deleted secret; recovering it"
                );
                session.recover(&secret.name).await?;
                match session.set(&secret.name, &body).await? {
                    Set::Done => Ok(()),
                    Set::DeletedButRecoverable => Err(SyncError::ExternalService {
                        message: format!(
                            "Azure Key Vault still reports secret {} as deleted after recovering it; \
                             the recovery may not have finished",
                            secret.name
                        ),
                        retry_after: None,
                    }),
                }
            }
        }
    }

    async fn delete(&self, dest: &Destination, name: &str) -> Result<(), SyncError> {
        // Key Vault cannot hold a secret under a name its rules refuse.
        if check_name(name).is_err() {
            return Ok(());
        }
        let session = self.session(dest).await?;
        session.delete(name).await
    }
}

impl AzureKeyVault {
    /// Everything one operation needs: checked config, a client bound to the
    /// egress rules, the vault URL (checked) and a token.
    async fn session(&self, dest: &Destination) -> Result<Session<'_>, SyncError> {
        let creds = Credentials::from_config(&dest.config)?;
        let policy = Arc::new(EgressPolicy::from_config(&dest.config)?);
        let client = http::client(&policy)?;
        checked_url(&policy, &creds.vault).await?;
        let (token, key) = self.token(&client, &policy, &creds).await?;
        Ok(Session {
            connector: self,
            client,
            vault: creds.vault,
            token,
            key,
        })
    }

    fn authority(&self, cloud: Cloud) -> String {
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
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self, key: &TokenKey) {
        self.cache().remove(key);
    }

    /// A cached token, or a new one from the token endpoint.
    async fn token(
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
        let url = checked_url(policy, &url).await?;
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
        let body = Zeroizing::new(
            resp.bytes()
                .await
                .map_err(|e| transport_error(ENTRA, &e))?
                .to_vec(),
        );
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
fn renew_at(now: Instant, lifetime_s: u64) -> Option<Instant> {
    let life = Duration::from_secs(lifetime_s);
    let margin = TOKEN_REFRESH_MARGIN.min(life / 2);
    let keep = life.saturating_sub(margin);
    (keep >= Duration::from_secs(1)).then(|| now + keep)
}

/// `expires_in`: a number, or (older endpoints) a string of digits.
fn seconds(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Maps a token endpoint failure. The OAuth error codes that mean "this app
/// id / secret pair is not valid" are the destination's credentials.
fn token_error(status: u16, headers: &HeaderMap, body: &str) -> SyncError {
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

/// The body of `PUT /secrets/{name}`.
#[derive(Serialize)]
struct SetSecret<'a> {
    value: &'a str,
    tags: BTreeMap<&'a str, &'a str>,
}

/// A Key Vault error body: `{"error": {"code", "message", "innererror": {...}}}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: Option<ErrorInfo>,
}

#[derive(Deserialize, Default)]
struct ErrorInfo {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    innererror: Option<Box<ErrorInfo>>,
}

impl ErrorBody {
    fn parse(body: &str) -> Self {
        serde_json::from_str(body).unwrap_or_default()
    }

    /// The error's code and its inner codes, outermost first.
    fn codes(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let mut next = self.error.as_ref();
        while let Some(info) = next {
            if let Some(code) = info.code.as_deref() {
                out.push(code);
            }
            next = info.innererror.as_deref();
        }
        out
    }

    fn has(&self, code: &str) -> bool {
        self.codes().contains(&code)
    }
}

/// A destination's connection details, checked.
struct Credentials<'a> {
    /// `key_vault_uri` without its trailing `/`.
    vault: String,
    tenant: &'a str,
    client_id: &'a str,
    secret: &'a str,
    cloud: Cloud,
}

impl<'a> Credentials<'a> {
    fn from_config(config: &'a Value) -> Result<Self, SyncError> {
        let field = |name: &str| {
            config
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
        };
        let cloud = Cloud::parse(field("cloud"))?;
        let Some(secret) = field("client_secret") else {
            return Err(
                if field("identity_token_audience").is_some()
                    || field("identity_token_key").is_some()
                {
                    SyncError::ClientSide(
                        "workload identity federation is not supported by kvsync's azure-kv \
                         connector yet; set client_secret"
                            .to_string(),
                    )
                } else {
                    SyncError::ClientSide(
                        "client_secret is empty: Azure managed identity is not supported by \
                         kvsync's azure-kv connector yet; set client_secret"
                            .to_string(),
                    )
                },
            );
        };
        let vault = field("key_vault_uri")
            .ok_or_else(|| SyncError::ClientSide("key_vault_uri is not set".to_string()))?
            .trim()
            .trim_end_matches('/')
            .to_string();
        if !(vault.starts_with("https://") || vault.starts_with("http://"))
            || vault.contains(['?', '#'])
        {
            return Err(SyncError::ClientSide(format!(
                "key_vault_uri {vault:?} is not an http(s) URL of a vault, like https://myvault.vault.azure.net"
            )));
        }
        let tenant = field("tenant_id")
            .ok_or_else(|| SyncError::ClientSide("tenant_id is not set".to_string()))?
            .trim();
        if !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(SyncError::ClientSide(format!(
                "tenant_id {tenant:?} is neither a tenant ID nor a tenant domain name"
            )));
        }
        let client_id = field("client_id")
            .ok_or_else(|| SyncError::ClientSide("client_id is not set".to_string()))?
            .trim();
        Ok(Credentials {
            vault,
            tenant,
            client_id,
            secret,
            cloud,
        })
    }
}

/// Key Vault secret names: `^[0-9a-zA-Z-]{1,127}$`.
pub fn check_name(name: &str) -> Result<(), SyncError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(140).collect();
        Err(SyncError::ClientSide(format!(
            "{shown:?} is not a valid Azure Key Vault secret name: use 1 to {MAX_NAME_LEN} \
             characters among 0-9, a-z, A-Z and -"
        )))
    }
}

/// Key Vault secret values: at most [`MAX_VALUE_BYTES`] bytes.
pub fn check_value(name: &str, value: &str) -> Result<(), SyncError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(SyncError::ClientSide(format!(
            "the value of {name} is {} bytes but an Azure Key Vault secret holds at most \
             {MAX_VALUE_BYTES} bytes (25 KB)",
            value.len()
        )));
    }
    Ok(())
}

/// The secret's tags as Key Vault takes them: at most [`MAX_TAGS`], names and
/// values up to [`MAX_TAG_CHARS`] characters (the last of duplicates wins).
fn check_tags(tags: &[(String, String)]) -> Result<BTreeMap<&str, &str>, SyncError> {
    let map: BTreeMap<&str, &str> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if map.len() > MAX_TAGS {
        return Err(SyncError::ClientSide(format!(
            "{} tags but an Azure Key Vault secret takes at most {MAX_TAGS} (hashicorp:vault \
             included); remove some custom_tags",
            map.len()
        )));
    }
    for (k, v) in &map {
        if k.is_empty() || k.chars().count() > MAX_TAG_CHARS {
            return Err(SyncError::ClientSide(format!(
                "tag name {:?} is not valid for Azure Key Vault: 1 to {MAX_TAG_CHARS} characters",
                k.chars().take(64).collect::<String>()
            )));
        }
        if v.chars().count() > MAX_TAG_CHARS {
            return Err(SyncError::ClientSide(format!(
                "the value of tag {:?} is longer than the {MAX_TAG_CHARS} characters Azure Key Vault allows",
                k.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(map)
}

/// How a `PUT` ended.
#[derive(Debug, PartialEq, Eq)]
enum Set {
    Done,
    /// 409 `ObjectIsDeletedButRecoverable`: the name is soft-deleted.
    DeletedButRecoverable,
}

/// One operation's connection to one vault.
struct Session<'a> {
    connector: &'a AzureKeyVault,
    client: reqwest::Client,
    vault: String,
    token: Zeroizing<String>,
    key: TokenKey,
}

impl Session<'_> {
    fn url(&self, path: &str) -> String {
        format!(
            "{}/{path}?api-version={}",
            self.vault, self.connector.api_version
        )
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, SyncError> {
        req.bearer_auth(self.token.as_str())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| transport_error(VAULT, &e))
    }

    /// Reads an error answer: its status, headers and (short) body.
    async fn read_error(&self, resp: reqwest::Response) -> (u16, HeaderMap, String) {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        if status == 401 {
            // Revoked or otherwise refused: fetch a new one next time.
            self.connector.forget(&self.key);
        }
        (status, headers, body)
    }

    async fn set(&self, name: &str, body: &[u8]) -> Result<Set, SyncError> {
        let req = self
            .client
            .put(self.url(&format!("secrets/{name}")))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        let resp = self.send(req).await?;
        if resp.status().is_success() {
            // The answer echoes the value: not read.
            return Ok(Set::Done);
        }
        let (status, headers, text) = self.read_error(resp).await;
        let codes = ErrorBody::parse(&text);
        if status == 409 && codes.has("ObjectIsDeletedButRecoverable") {
            return Ok(Set::DeletedButRecoverable);
        }
        if status == 409
            && (codes.has("ObjectIsBeingDeleted") || codes.has("ObjectIsBeingRecovered"))
        {
            // A delete or recovery still under way: passes by itself.
            return Err(SyncError::ExternalService {
                message: format!(
                    "secret {name} is being deleted or recovered in the vault; retry once that finished ({})",
                    status_error(VAULT, status, &headers, &text)
                ),
                retry_after: None,
            });
        }
        Err(status_error(VAULT, status, &headers, &text))
    }

    /// Recovers a soft-deleted secret and waits (bounded) until it is readable.
    async fn recover(&self, name: &str) -> Result<(), SyncError> {
        let req = self
            .client
            .post(self.url(&format!("deletedsecrets/{name}/recover")))
            .header(CONTENT_TYPE, "application/json")
            .body("{}");
        let resp = self.send(req).await?;
        if !resp.status().is_success() {
            let (status, headers, text) = self.read_error(resp).await;
            match status {
                // Recovered or purged in the meantime: the next PUT tells.
                404 => return Ok(()),
                // A recovery already under way: wait for it like for ours.
                409 => {}
                403 => {
                    return Err(SyncError::ClientSide(format!(
                        "secret {name} is deleted but recoverable in the vault, and recovering it \
                         was refused: grant the 'recover' secret permission or purge the deleted \
                         secret ({})",
                        status_error(VAULT, status, &headers, &text)
                    )));
                }
                _ => return Err(status_error(VAULT, status, &headers, &text)),
            }
        }
        for attempt in 0..RECOVER_POLLS {
            if attempt > 0 {
                tokio::time::sleep(self.connector.recover_poll).await;
            }
            // `secrets/{name}/`: the latest version. The answer holds the old value: not read.
            let resp = self
                .send(self.client.get(self.url(&format!("secrets/{name}/"))))
                .await?;
            if resp.status().is_success() {
                return Ok(());
            }
            let (status, headers, text) = self.read_error(resp).await;
            match status {
                404 => continue,
                // No 'get' permission: the PUT will tell whether recovery is done.
                403 => return Ok(()),
                _ => return Err(status_error(VAULT, status, &headers, &text)),
            }
        }
        Err(SyncError::ExternalService {
            message: format!(
                "secret {name} was soft-deleted; its recovery was started but it was not readable \
                 after {RECOVER_POLLS} checks"
            ),
            retry_after: None,
        })
    }

    async fn delete(&self, name: &str) -> Result<(), SyncError> {
        let resp = self
            .send(self.client.delete(self.url(&format!("secrets/{name}"))))
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let (status, headers, text) = self.read_error(resp).await;
        if status == 404 && ErrorBody::parse(&text).has("SecretNotFound") {
            return Ok(());
        }
        Err(status_error(VAULT, status, &headers, &text))
    }
}

#[cfg(test)]
mod tests;
