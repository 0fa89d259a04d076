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

mod client;
mod config;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::egress::Dns;
use super::http::{self, checked_url, status_error, transport_error};
use super::{Connector, ConnectorEnv, Dest, ExternalSecret, SyncError};
pub use client::TOKEN_REFRESH_MARGIN;
use client::{TokenKey, Tokens};
pub use config::{Cloud, Config};

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

const VAULT: &str = "Azure Key Vault";

/// The Azure Key Vault connector. Holds the token cache; no `Debug` (tokens).
pub struct AzureKeyVault {
    /// Sent as `api-version` on every vault call.
    api_version: String,

    /// Pause between the GETs that wait for a recovered secret.
    recover_poll: Duration,
    tokens: Tokens,
    dns: Dns,
}

impl AzureKeyVault {
    /// The connector, with the authority override of `env`.
    pub fn new(env: &ConnectorEnv) -> Self {
        AzureKeyVault {
            api_version: API_VERSION.to_string(),
            recover_poll: RECOVER_POLL_INTERVAL,
            tokens: Tokens::new(env.azure_authority_host.clone()),
            dns: env.dns.clone(),
        }
    }
}

#[async_trait]
impl Connector for AzureKeyVault {
    const KIND: &'static str = "azure-kv";
    type Config = Config;

    async fn push(&self, dest: &Dest<Config>, secret: &ExternalSecret) -> Result<(), SyncError> {
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

    async fn delete(&self, dest: &Dest<Config>, name: &str) -> Result<(), SyncError> {
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
    async fn session(&self, dest: &Dest<Config>) -> Result<Session<'_>, SyncError> {
        let creds = dest.config.credentials()?;
        http::require_https(&dest.egress, "key_vault_uri", &creds.vault)?;
        let client = http::client(&dest.egress, &self.dns)?;
        checked_url(&dest.egress, &creds.vault)?;
        let (token, key) = self.tokens.token(&client, &dest.egress, &creds).await?;
        Ok(Session {
            connector: self,
            client,
            vault: creds.vault,
            token,
            key,
        })
    }
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
    async fn read_error(
        &self,
        resp: reqwest::Response,
    ) -> Result<(u16, HeaderMap, Zeroizing<String>), SyncError> {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if status == 401 {
            // Revoked or otherwise refused: fetch a new one next time.
            self.connector.tokens.forget(&self.key);
        }
        let body = http::read_text(VAULT, resp).await?;
        Ok((status, headers, body))
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
        let (status, headers, text) = self.read_error(resp).await?;
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
            let (status, headers, text) = self.read_error(resp).await?;
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
            let (status, headers, text) = self.read_error(resp).await?;
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
        let (status, headers, text) = self.read_error(resp).await?;
        if status == 404 && ErrorBody::parse(&text).has("SecretNotFound") {
            return Ok(());
        }
        Err(status_error(VAULT, status, &headers, &text))
    }
}

#[cfg(test)]
mod tests;
