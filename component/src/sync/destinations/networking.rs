//! The egress rules every destination type takes (Vault 1.19's SSRF fields):
//! request fields, validation, and the read form (under
//! `connection_details`, empty lists and `false` omitted).

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::framework::{FieldSpec, FieldType, Fields};

pub const FIELDS: &[FieldSpec] = &[
    FieldSpec::new("allowed_ipv4_addresses", FieldType::CommaStringSlice).describe(
        "IPv4 CIDR blocks the destination's connections may reach; replaces the default rule for IPv4.",
    ),
    FieldSpec::new("allowed_ipv6_addresses", FieldType::CommaStringSlice).describe(
        "IPv6 CIDR blocks the destination's connections may reach; replaces the default rule for IPv6.",
    ),
    FieldSpec::new("allowed_ports", FieldType::CommaIntSlice)
        .describe("Ports the destination's connections may use; replaces the default 80 and 443."),
    FieldSpec::new("disable_strict_networking", FieldType::Bool)
        .describe("Whether the egress rules are off."),
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Networking {
    pub allowed_ipv4_addresses: Vec<String>,
    pub allowed_ipv6_addresses: Vec<String>,
    pub allowed_ports: Vec<u16>,
    pub disable_strict_networking: bool,
}

impl Networking {
    /// Replaces the fields the request names (absent fields keep their values).
    pub fn apply(&mut self, fields: &Fields) -> ApiResult<()> {
        for (name, v6) in [
            ("allowed_ipv4_addresses", false),
            ("allowed_ipv6_addresses", true),
        ] {
            let Some(cidrs) = fields.strings(name) else {
                continue;
            };
            let cidrs: Vec<String> = cidrs.into_iter().filter(|c| !c.is_empty()).collect();
            if let Some(bad) = cidrs.iter().find(|c| !is_cidr(c, v6)) {
                let family = if v6 { "IPv6" } else { "IPv4" };
                return Err(ApiError::BadRequest(format!(
                    "{name}: invalid CIDR address: {bad} (expected an {family} address/prefix, like {})",
                    if v6 { "2001:db8::/32" } else { "192.0.2.0/24" }
                )));
            }
            if v6 {
                self.allowed_ipv6_addresses = cidrs;
            } else {
                self.allowed_ipv4_addresses = cidrs;
            }
        }
        if let Some(ports) = fields.ints("allowed_ports") {
            self.allowed_ports = ports
                .into_iter()
                .map(|p| {
                    u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "allowed_ports: invalid port {p}: ports are 1 to 65535"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(disable) = fields.bool("disable_strict_networking") {
            self.disable_strict_networking = disable;
        }
        Ok(())
    }

    /// Adds the set fields to a read's `connection_details`.
    pub fn render(&self, details: &mut Map<String, Value>) {
        for (name, list) in [
            ("allowed_ipv4_addresses", &self.allowed_ipv4_addresses),
            ("allowed_ipv6_addresses", &self.allowed_ipv6_addresses),
        ] {
            if !list.is_empty() {
                details.insert(name.to_string(), Value::from(list.clone()));
            }
        }
        if !self.allowed_ports.is_empty() {
            details.insert(
                "allowed_ports".to_string(),
                Value::from(self.allowed_ports.clone()),
            );
        }
        if self.disable_strict_networking {
            details.insert("disable_strict_networking".to_string(), Value::Bool(true));
        }
    }
}

/// `address/prefix` of the given family, as Go's `net.ParseCIDR` accepts it.
fn is_cidr(s: &str, v6: bool) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else {
        return false;
    };
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    if v6 {
        addr.parse::<Ipv6Addr>().is_ok() && prefix <= 128
    } else {
        addr.parse::<Ipv4Addr>().is_ok() && prefix <= 32
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::framework;
    use crate::sync::destinations::testing::Server;

    #[test]
    fn cidrs_need_the_right_family_and_prefix() {
        for (cidr, v6) in [
            ("10.0.0.0/8", false),
            ("0.0.0.0/0", false),
            ("192.0.2.1/32", false),
            ("2001:db8::/32", true),
            ("::/0", true),
            ("::ffff:10.0.0.0/104", true),
        ] {
            assert!(is_cidr(cidr, v6), "{cidr}");
        }
        for (cidr, v6) in [
            ("10.0.0.0", false),
            ("10.0.0.0/33", false),
            ("10.0.0/8", false),
            ("010.0.0.1/8", false),
            ("10.0.0.0/+8", false),
            ("10.0.0.0/", false),
            ("2001:db8::/32", false),
            ("10.0.0.0/8", true),
            ("2001:db8::/129", true),
            ("2001:db8::", true),
        ] {
            assert!(!is_cidr(cidr, v6), "{cidr}");
        }
    }

    #[test]
    fn applies_and_renders() {
        let schema = FIELDS;
        let data = json!({"allowed_ipv4_addresses": "10.0.0.0/8, 192.0.2.0/24",
                          "allowed_ports": "443,8443", "disable_strict_networking": "true"});
        let fields = framework::parse(schema, data.as_object().unwrap()).unwrap();
        let mut n = Networking::default();
        n.apply(&fields).unwrap();
        let mut out = Map::new();
        n.render(&mut out);
        assert_eq!(
            Value::Object(out),
            json!({"allowed_ipv4_addresses": ["10.0.0.0/8", "192.0.2.0/24"],
                   "allowed_ports": [443, 8443], "disable_strict_networking": true})
        );
        let mut out = Map::new();
        Networking::default().render(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn bad_values_are_400_naming_the_field_and_nothing_is_stored() {
        let s = Server::new();
        let path = "sys/sync/destinations/in-mem/net";
        for (body, field, phrase) in [
            (
                json!({"allowed_ipv4_addresses": ["10.0.0.0/33"]}),
                "allowed_ipv4_addresses",
                "invalid CIDR address: 10.0.0.0/33",
            ),
            (
                json!({"allowed_ipv4_addresses": "2001:db8::/32"}),
                "allowed_ipv4_addresses",
                "invalid CIDR address: 2001:db8::/32",
            ),
            (
                json!({"allowed_ipv6_addresses": ["10.0.0.0/8"]}),
                "allowed_ipv6_addresses",
                "invalid CIDR address: 10.0.0.0/8",
            ),
            (
                json!({"allowed_ports": [443, 70000]}),
                "allowed_ports",
                "invalid port",
            ),
            (
                json!({"allowed_ports": [0]}),
                "allowed_ports",
                "invalid port",
            ),
            (
                json!({"allowed_ports": "a"}),
                "allowed_ports",
                "allowed_ports",
            ),
            (
                json!({"disable_strict_networking": "maybe"}),
                "disable_strict_networking",
                "disable_strict_networking",
            ),
        ] {
            let msg = s.rejects("POST", path, body.clone(), field);
            assert!(msg.contains(phrase), "{msg}");
        }
        // On an update, the stored rules stay.
        let (status, _) = s.post(path, json!({"allowed_ports": [443]}));
        assert_eq!(status, 200);
        s.rejects(
            "POST",
            path,
            json!({"allowed_ports": [-1]}),
            "allowed_ports",
        );
        s.rejects(
            "PATCH",
            path,
            json!({"allowed_ipv6_addresses": "x"}),
            "allowed_ipv6_addresses",
        );
        assert_eq!(
            s.dest("in-mem", "net").unwrap().networking.allowed_ports,
            [443]
        );
    }

    #[test]
    fn round_trip_under_connection_details_with_merge() {
        let s = Server::new();
        let path = "sys/sync/destinations/in-mem/net";
        let (status, body) = s.post(
            path,
            json!({"allowed_ipv4_addresses": ["10.0.0.0/8"], "allowed_ipv6_addresses": "2001:db8::/32",
                   "allowed_ports": ["443"], "disable_strict_networking": false}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["data"]["connection_details"],
            json!({"allowed_ipv4_addresses": ["10.0.0.0/8"], "allowed_ipv6_addresses": ["2001:db8::/32"],
                   "allowed_ports": [443]})
        );
        // Absent fields keep their values; an empty list clears one.
        let (_, body) = s.patch(
            path,
            json!({"allowed_ipv6_addresses": [], "disable_strict_networking": true}),
        );
        assert_eq!(
            body["data"]["connection_details"],
            json!({"allowed_ipv4_addresses": ["10.0.0.0/8"], "allowed_ports": [443],
                   "disable_strict_networking": true})
        );
        let dest = s.dest("in-mem", "net").unwrap();
        let config: Value = serde_json::from_str(&dest.connector_ref().config).unwrap();
        assert_eq!(config["allowed_ports"], json!([443]));
        assert_eq!(config["disable_strict_networking"], json!(true));
    }
}
