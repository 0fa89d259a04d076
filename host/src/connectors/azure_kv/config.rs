//! The `azure-kv` destination's config, as the engine sends it, and the
//! credentials a call needs from it (checked), with the Azure clouds.

use serde::Deserialize;

use crate::connectors::SyncError;
use crate::connectors::fields::{self, Ignored, Secret};

/// The destination's connection details.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, deserialize_with = "fields::text")]
    pub key_vault_uri: Option<String>,
    #[serde(default, deserialize_with = "fields::text")]
    pub client_id: Option<String>,
    /// Taken as it is (not trimmed).
    #[serde(default, deserialize_with = "fields::secret_as_is")]
    pub client_secret: Option<Secret>,
    #[serde(default, deserialize_with = "fields::text")]
    pub tenant_id: Option<String>,
    #[serde(default, deserialize_with = "fields::text")]
    pub cloud: Option<String>,
    /// Workload identity federation (not supported yet).
    #[serde(default, deserialize_with = "fields::secret")]
    pub identity_token_audience: Option<Secret>,
    #[serde(default, deserialize_with = "fields::secret")]
    pub identity_token_key: Option<Secret>,
    #[serde(default)]
    pub identity_token_ttl: Ignored,
}

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

/// A destination's connection details, checked.
pub struct Credentials<'a> {
    /// `key_vault_uri` without its trailing `/`.
    pub vault: String,
    pub tenant: &'a str,
    pub client_id: &'a str,
    pub secret: &'a str,
    pub cloud: Cloud,
}

impl Config {
    pub fn credentials(&self) -> Result<Credentials<'_>, SyncError> {
        let cloud = Cloud::parse(self.cloud.as_deref())?;
        let Some(secret) = &self.client_secret else {
            return Err(
                if self.identity_token_audience.is_some() || self.identity_token_key.is_some() {
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
        let vault = self
            .key_vault_uri
            .as_deref()
            .ok_or_else(|| SyncError::ClientSide("key_vault_uri is not set".to_string()))?
            .trim_end_matches('/')
            .to_string();
        if !(vault.starts_with("https://") || vault.starts_with("http://"))
            || vault.contains(['?', '#'])
        {
            return Err(SyncError::ClientSide(format!(
                "key_vault_uri {vault:?} is not an http(s) URL of a vault, like https://myvault.vault.azure.net"
            )));
        }
        let tenant = self
            .tenant_id
            .as_deref()
            .ok_or_else(|| SyncError::ClientSide("tenant_id is not set".to_string()))?;
        if !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(SyncError::ClientSide(format!(
                "tenant_id {tenant:?} is neither a tenant ID nor a tenant domain name"
            )));
        }
        let client_id = self
            .client_id
            .as_deref()
            .ok_or_else(|| SyncError::ClientSide("client_id is not set".to_string()))?;
        Ok(Credentials {
            vault,
            tenant,
            client_id,
            secret: secret.as_str(),
            cloud,
        })
    }
}
