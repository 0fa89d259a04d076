//! `in-mem`: Vault's undocumented test destination. No connection details;
//! the connector keeps the external objects in memory, and
//! `GET sys/sync/destinations/in-mem/:name/objects` shows them (kvsync extension).

use crate::sync::names::normalize;

use super::schema;
use super::{DestinationType, Granularity};

pub const TYPE: DestinationType = DestinationType {
    kind: "in-mem",
    default_granularity: Granularity::SecretPath,
    default_template_path: "vault/{{ .MountAccessor }}/{{ .SecretPath }}",
    default_template_key: "vault/{{ .MountAccessor }}/{{ .SecretPath }}/{{ .SecretKey }}",
    name_rule: &normalize::IN_MEM,
    cloud: false,
    fields: &[],
    rules: schema::no_rules,
    reads: &[],
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::connector::{Connector, ExternalSecret};
    use crate::sync::destinations::testing::{Server, TypeCase};

    #[test]
    fn field_table() {
        TypeCase {
            kind: "in-mem",
            full: json!({"granularity": "secret-key", "secret_name_template": "t/{{ .SecretKey }}",
                         "allowed_ports": [443, 8443]}),
            full_read: json!({"allowed_ports": [443, 8443]}),
            minimal: json!({}),
            secrets: &[],
            bad: vec![
                (json!({"granularity": "all"}), "granularity"),
                (json!({"secret_name_template": "t/{{ .SecretPath }}", "granularity": "secret-key"}),
                 "secret_name_template"),
            ],
            immutable: vec![],
            sensitive: &[],
        }
        .check();
    }

    #[test]
    fn objects_show_what_the_connector_holds() {
        let s = Server::new();
        let path = "sys/sync/destinations/in-mem/box/objects";
        assert_eq!(s.get(path).0, 404);
        s.write("sys/sync/destinations/in-mem/box", json!({}));
        let (status, body) = s.get(path);
        assert_eq!((status, &body["data"]), (200, &json!({"objects": {}})));
        let dest = s.dest("in-mem", "box").unwrap();
        let secret = ExternalSecret {
            name: "vault/kv_1234/app".into(),
            value: "{\"a\":\"1\"}".into(),
            tags: dest.tags(),
        };
        s.fakes
            .connector
            .push(&dest.connector_ref(), &secret)
            .unwrap();
        let (_, body) = s.get(path);
        assert_eq!(
            body["data"]["objects"],
            json!({"vault/kv_1234/app": {"value": "{\"a\":\"1\"}", "tags": {"hashicorp:vault": ""}}})
        );
        assert_eq!(s.call("POST", path, json!({})).0, 405);
        // What an association syncs shows up too.
        s.associate("in-mem", "box", "app");
        let (_, body) = s.get(path);
        assert_eq!(body["data"]["objects"].as_object().unwrap().len(), 2);
        // Only in-mem has objects.
        assert_eq!(s.get("sys/sync/destinations/aws-sm/box/objects").0, 404);
    }

    #[test]
    fn objects_need_read_on_every_secret_shown_or_sudo() {
        let s = Server::new();
        let path = "sys/sync/destinations/in-mem/box/objects";
        s.write("sys/sync/destinations/in-mem/box", json!({}));
        s.associate("in-mem", "box", "app");
        s.associate("in-mem", "box", "team/db");
        s.fakes.authz.deny("sudo", path);
        assert_eq!(s.get(path).0, 200);
        s.fakes.authz.deny("read", "secret/data/team/db");
        let (status, body) = s.get(path);
        assert_eq!(
            (status, body),
            (
                403,
                json!({"errors": ["permission denied to read the content of the secret team/db in mount secret"]})
            )
        );
        // An object no association claims shows to `sudo` only.
        let t = Server::new();
        t.write("sys/sync/destinations/in-mem/box", json!({}));
        let dest = t.dest("in-mem", "box").unwrap();
        let orphan = ExternalSecret {
            name: "left-behind".into(),
            value: "v".into(),
            tags: vec![],
        };
        t.fakes
            .connector
            .push(&dest.connector_ref(), &orphan)
            .unwrap();
        assert_eq!(t.get(path).0, 200);
        t.fakes.authz.deny("sudo", path);
        assert_eq!(t.get(path).0, 403);
    }

    #[test]
    fn in_mem_takes_no_tags() {
        let s = Server::new();
        let (status, body) = s.post(
            "sys/sync/destinations/in-mem/box",
            json!({"custom_tags": {"a": "b"}, "region": "x"}),
        );
        assert_eq!(status, 200);
        assert_eq!(
            body["warnings"],
            json!(["Endpoint ignored these unrecognized parameters: [custom_tags region]"])
        );
        assert_eq!(body["data"]["connection_details"], json!({}));
        assert!(body["data"]["options"].get("custom_tags").is_none());
        assert_eq!(s.dest("in-mem", "box").unwrap().tags().len(), 1);
    }
}
