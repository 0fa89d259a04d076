//! PLACEHOLDER for the destination types and endpoints (being written). The
//! public items below are the contract other modules rely on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::{LogicalRequest, Reply};
use crate::connector::DestinationRef;
use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::storage::Tx;
use crate::sync::keys;
use crate::sync::names::{NameRule, normalize};
use crate::time::Nanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    SecretPath,
    SecretKey,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::SecretPath => "secret-path",
            Granularity::SecretKey => "secret-key",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Networking {
    pub allowed_ipv4_addresses: Vec<String>,
    pub allowed_ipv6_addresses: Vec<String>,
    pub allowed_ports: Vec<u16>,
    pub disable_strict_networking: bool,
}

/// A stored destination. Credentials are kept in clear here (the storage
/// barrier encrypts every value) and masked on every read.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// Type-specific fields, coerced and validated.
    pub connection_details: Map<String, Value>,
    pub granularity: Granularity,
    /// `None`: the type's default template.
    pub secret_name_template: Option<String>,
    pub custom_tags: BTreeMap<String, String>,
    pub networking: Networking,
    pub purge_initiated_at: Option<Nanos>,
    pub purge_error: Option<String>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("connection_details", &"*****")
            .field("granularity", &self.granularity)
            .finish()
    }
}

/// One destination type, declared as data.
pub struct DestinationType {
    pub kind: &'static str,
    pub default_granularity: Granularity,
    /// Default templates for `secret-path` and `secret-key`.
    pub default_template_path: &'static str,
    pub default_template_key: &'static str,
    pub name_rule: &'static NameRule,
    /// Cloud types take `custom_tags` and write tags.
    pub cloud: bool,
}

pub const IN_MEM: DestinationType = DestinationType {
    kind: "in-mem",
    default_granularity: Granularity::SecretPath,
    default_template_path: "vault/{{ .MountAccessor }}/{{ .SecretPath }}",
    default_template_key: "vault/{{ .MountAccessor }}/{{ .SecretPath }}/{{ .SecretKey }}",
    name_rule: &normalize::IN_MEM,
    cloud: false,
};

/// Every destination type kvsync knows.
pub const TYPES: &[&DestinationType] = &[&IN_MEM];

pub fn type_of(kind: &str) -> Option<&'static DestinationType> {
    TYPES.iter().copied().find(|t| t.kind == kind)
}

impl Destination {
    pub fn load(tx: &mut Tx, kind: &str, name: &str) -> ApiResult<Option<Destination>> {
        if type_of(kind).is_none() {
            return Err(ApiError::bad_request(format!(
                "unknown destination type {kind:?}"
            )));
        }
        tx.get_json(&keys::destination(kind, name))
    }

    pub fn save(&self, tx: &mut Tx) -> ApiResult<()> {
        tx.put_json(keys::destination(&self.kind, &self.name), self)
    }

    pub fn spec(&self) -> ApiResult<&'static DestinationType> {
        type_of(&self.kind).ok_or_else(|| {
            ApiError::Internal(format!("stored destination of unknown type {}", self.kind))
        })
    }

    /// The template in force: the stored one, else the type's default.
    pub fn template(&self) -> ApiResult<String> {
        if let Some(t) = &self.secret_name_template {
            return Ok(t.clone());
        }
        let spec = self.spec()?;
        Ok(match self.granularity {
            Granularity::SecretPath => spec.default_template_path,
            Granularity::SecretKey => spec.default_template_key,
        }
        .to_string())
    }

    /// What the connector needs: connection details and networking as JSON.
    pub fn connector_ref(&self) -> DestinationRef {
        let mut config = self.connection_details.clone();
        if let Ok(Value::Object(net)) = serde_json::to_value(&self.networking) {
            config.extend(net);
        }
        DestinationRef {
            kind: self.kind.clone(),
            name: self.name.clone(),
            config: Value::Object(config).to_string(),
        }
    }

    /// Tags for external objects: `hashicorp:vault` plus `custom_tags` on cloud types.
    pub fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![("hashicorp:vault".to_string(), String::new())];
        if type_of(&self.kind).is_some_and(|t| t.cloud) {
            tags.extend(self.custom_tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        tags
    }

    /// Normalises a rendered external name to the type's character set.
    pub fn normalize_name(&self, rendered: &str) -> ApiResult<String> {
        self.spec()?
            .name_rule
            .apply(rendered)
            .map_err(ApiError::BadRequest)
    }
}

/// `LIST sys/sync/destinations`.
pub fn list_all(_tx: &mut Tx, _req: &LogicalRequest) -> ApiResult<Reply> {
    Err(ApiError::UnsupportedPath)
}

/// `LIST sys/sync/destinations/:type`.
pub fn list_type(_tx: &mut Tx, _req: &LogicalRequest, _kind: &str) -> ApiResult<Reply> {
    Err(ApiError::UnsupportedPath)
}

/// `sys/sync/destinations/:type/:name`: read, write, patch, delete.
pub fn handle(
    _tx: &mut Tx,
    _env: &Env,
    _req: &LogicalRequest,
    _kind: &str,
    _name: &str,
) -> ApiResult<Reply> {
    Err(ApiError::UnsupportedPath)
}

/// `GET sys/sync/destinations/in-mem/:name/objects` (kvsync extension).
pub fn objects(_tx: &mut Tx, _env: &Env, _kind: &str, _name: &str) -> ApiResult<Reply> {
    Err(ApiError::UnsupportedPath)
}
