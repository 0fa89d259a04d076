//! Typed connectors: a connector declares its config as a `serde` struct
//! ([`Connector::Config`]) and receives each destination already parsed, as a
//! [`Dest`]: the connection details in that struct, the networking fields as
//! the destination's [`EgressPolicy`]. [`typed`] wraps such a connector for the
//! registry; the wrapper parses the config once per call, before the connector
//! runs, so no connector reads JSON field by field.
//!
//! The engine sends a destination's `connection_details` (credentials in
//! clear, unset fields absent) plus the four networking fields; its field
//! tables are the authority on names and types, so provider configs deny
//! unknown fields. A config that does not fit is a `CLIENT_SIDE_ERROR` naming
//! the field and what was expected, never the value.

use std::cell::Cell;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde::de::value::MapDeserializer;
use serde_json::Value;

use super::egress::{EgressPolicy, Networking};
use super::{Destination, DestinationConnector, ExternalSecret, SyncError, cannot_inspect};

/// A destination as a typed connector sees it.
#[derive(Debug)]
pub struct Dest<C> {
    pub name: String,
    /// The tenant whose destination it is.
    pub tenant: String,
    /// The connection details, parsed.
    pub config: C,
    /// The egress rules of the networking fields.
    pub egress: Arc<EgressPolicy>,
}

impl<C: DeserializeOwned> Dest<C> {
    /// Parses a destination's config: the networking fields into its egress
    /// rules, everything else into `C`.
    pub fn parse(dest: &Destination) -> Result<Self, SyncError> {
        let Value::Object(map) = &dest.config else {
            return Err(SyncError::Internal(format!(
                "the config of destination {:?} is not a JSON object",
                dest.name
            )));
        };
        let networking = |key: &str| Networking::FIELDS.contains(&key);
        let egress: Networking = deserialize(map.iter().filter(|(k, _)| networking(k)))?;
        let config: C = deserialize(map.iter().filter(|(k, _)| !networking(k)))?;
        Ok(Dest {
            name: dest.name.clone(),
            tenant: dest.tenant.clone(),
            config,
            egress: Arc::new(EgressPolicy::try_from(egress)?),
        })
    }
}

/// A client for one destination type, with its config as a type.
///
/// Implementations classify every failure as the sync status it causes (see
/// [`SyncError`]) and never put credentials or secret values in error
/// messages. Timeouts and metering are the registry's job.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The destination type served, e.g. `aws-sm`.
    const KIND: &'static str;
    /// The destination's connection details.
    type Config: DeserializeOwned + Send + Sync;

    /// Creates or overwrites an external secret.
    async fn push(
        &self,
        dest: &Dest<Self::Config>,
        secret: &ExternalSecret,
    ) -> Result<(), SyncError>;

    /// [`Connector::push`] of an object kvsync has not written before: a
    /// provider that must choose between create and update tries create first
    /// (one call for a new object), and still overwrites an object that exists
    /// anyway.
    async fn push_new(
        &self,
        dest: &Dest<Self::Config>,
        secret: &ExternalSecret,
    ) -> Result<(), SyncError> {
        self.push(dest, secret).await
    }

    /// Deletes an external secret; one that does not exist counts as deleted.
    async fn delete(&self, dest: &Dest<Self::Config>, name: &str) -> Result<(), SyncError>;

    /// The objects the destination holds, for types that can show them.
    async fn inspect(&self, dest: &Dest<Self::Config>) -> Result<Vec<ExternalSecret>, SyncError> {
        let _ = dest;
        Err(cannot_inspect())
    }
}

/// `connector` as the registry holds it.
pub fn typed<C: Connector>(connector: C) -> Arc<dyn DestinationConnector> {
    Arc::new(Typed(connector))
}

/// Parses each destination, then calls the typed connector.
struct Typed<C>(C);

#[async_trait]
impl<C: Connector> DestinationConnector for Typed<C> {
    fn kind(&self) -> &'static str {
        C::KIND
    }

    async fn push(&self, dest: &Destination, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.0.push(&Dest::parse(dest)?, secret).await
    }

    async fn push_new(&self, dest: &Destination, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.0.push_new(&Dest::parse(dest)?, secret).await
    }

    async fn delete(&self, dest: &Destination, name: &str) -> Result<(), SyncError> {
        self.0.delete(&Dest::parse(dest)?, name).await
    }

    async fn inspect(&self, dest: &Destination) -> Result<Vec<ExternalSecret>, SyncError> {
        self.0.inspect(&Dest::parse(dest)?).await
    }
}

/// Deserializes `T` from some entries of a config object; an error names the
/// field it is about.
fn deserialize<'a, T: Deserialize<'a>>(
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
) -> Result<T, SyncError> {
    // The deserializer pulls one entry, then reads its value: the last key
    // pulled is the field an error is about.
    let field = Cell::new("");
    let entries = entries.map(|(k, v)| {
        field.set(k.as_str());
        (k.as_str(), v)
    });
    T::deserialize(MapDeserializer::<_, serde_json::Error>::new(entries))
        .map_err(|e| config_error(field.get(), &e.to_string()))
}

/// serde's message about `field`, without the value it may quote (`invalid
/// type: string "…", expected a map` becomes `field: expected a map`).
fn config_error(field: &str, message: &str) -> SyncError {
    let text = if message.starts_with("unknown field") || message.starts_with("missing field") {
        // "unknown field `x`, expected one of …": the name is all there is to say.
        let head = message.split(", expected").next().unwrap_or(message);
        format!("{head} in the destination's config")
    } else {
        match message.split_once(", expected ") {
            Some((_, expected)) => format!("{field}: expected {expected}"),
            // The field types' own messages, which never show the value.
            None => format!("{field}: {message}"),
        }
    };
    SyncError::ClientSide(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fields::{self, Secret};
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default, deserialize_with = "fields::secret")]
        token: Option<Secret>,
        #[serde(default, deserialize_with = "fields::text")]
        region: Option<String>,
        #[serde(default, deserialize_with = "fields::positive")]
        id: Option<u64>,
        #[serde(default, deserialize_with = "fields::list")]
        names: Vec<String>,
        #[serde(default, deserialize_with = "fields::kms_keys")]
        replicas: std::collections::BTreeMap<String, String>,
    }

    fn parse(config: Value) -> Result<Dest<Config>, SyncError> {
        Dest::parse(&Destination {
            kind: "t".into(),
            name: "d".into(),
            config,
            tenant: String::new(),
        })
    }

    fn refused(config: Value) -> String {
        match parse(config) {
            Err(SyncError::ClientSide(m)) => m,
            other => panic!("expected a client-side error, got {other:?}"),
        }
    }

    #[test]
    fn fields_and_networking_are_read_once() {
        let d = parse(json!({
            "token": " t0k3n ", "region": "  ", "id": "7", "names": "a, b,,c",
            "replicas": {" eu-west-1 ": null, "us-east-1": " k "},
            "allowed_ipv4_addresses": ["127.0.0.1/32"], "allowed_ipv6_addresses": [],
            "allowed_ports": [8080], "disable_strict_networking": false,
        }))
        .unwrap();
        assert_eq!(d.name, "d");
        assert_eq!(d.config.token.as_ref().unwrap().as_str(), "t0k3n");
        assert_eq!(d.config.region, None);
        assert_eq!(d.config.id, Some(7));
        assert_eq!(d.config.names, vec!["a", "b", "c"]);
        assert_eq!(
            d.config.replicas,
            [
                ("eu-west-1".into(), "".into()),
                ("us-east-1".into(), "k".into())
            ]
            .into()
        );
        assert_eq!(d.egress.allowed_ports, vec![8080]);
        assert!(d.egress.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        // Nothing set: every field at its default.
        let d = parse(json!({"names": ["x"], "disable_strict_networking": null})).unwrap();
        assert!(d.config.token.is_none() && d.config.id.is_none());
        assert!(!d.egress.disabled);
        // Debug output masks the credential.
        let shown = format!("{:?}", parse(json!({"token": "t0k3n"})).unwrap());
        assert!(!shown.contains("t0k3n"), "{shown}");
    }

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        assert_eq!(refused(json!({"region": 5})), "region: expected a string");
        assert_eq!(
            refused(json!({"token": ["hunter2"]})),
            "token: expected a string"
        );
        let m = refused(json!({"id": "hunter2"}));
        assert_eq!(m, "id: expected a positive integer");
        assert_eq!(refused(json!({"id": 0})), "id: expected a positive integer");
        let m = refused(json!({"replicas": {"eu": 5}}));
        assert_eq!(m, "replicas: expected a string");
        assert!(refused(json!({"names": [1]})).starts_with("names: expected"));
        assert_eq!(
            refused(json!({"hunter2": "x"})),
            "unknown field `hunter2` in the destination's config"
        );
        assert_eq!(
            refused(json!({"allowed_ports": [70000]})),
            "allowed_ports: expected u16"
        );
        let m = refused(json!({"allowed_ipv4_addresses": ["300.1.1.1/8"]}));
        assert!(m.contains("invalid CIDR"), "{m}");
        let err = parse(json!("hunter2")).unwrap_err();
        assert!(matches!(&err, SyncError::Internal(m) if !m.contains("hunter2")));
    }
}
