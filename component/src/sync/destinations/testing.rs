//! The full router over in-memory fakes, and a table-driven check every type
//! module runs on its own field table.

use std::cell::RefCell;

use serde_json::{Value, json};

use crate::env::Fakes;
use crate::storage::{Storage, Tx};
use crate::sync::keys;

use super::Destination;

pub struct Server {
    pub fakes: Fakes,
    /// Every response body, to search for leaked credentials.
    bodies: RefCell<Vec<String>>,
}

impl Server {
    pub fn new() -> Self {
        Server {
            fakes: Fakes::default(),
            bodies: RefCell::new(Vec::new()),
        }
    }

    /// Sends a request (`path` may carry a query); returns the status and decoded body.
    pub fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let response = crate::testing::send(&self.fakes.env(), method, path, &body);
        let text = String::from_utf8(response.body).unwrap();
        self.bodies.borrow_mut().push(text.clone());
        let decoded = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (response.status, decoded)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, Value::Null)
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, body)
    }

    pub fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("PATCH", path, body)
    }

    /// Creates or updates, asserting 200; returns the response `data`.
    pub fn write(&self, path: &str, body: Value) -> Value {
        let (status, body) = self.post(path, body);
        assert_eq!(status, 200, "{body}");
        body["data"].clone()
    }

    pub fn dest(&self, kind: &str, name: &str) -> Option<Destination> {
        let mut tx = Tx::new(&self.fakes.storage);
        Destination::load(&mut tx, kind, name).unwrap()
    }

    /// Sends a request that must fail with 400 naming `field`, and change nothing.
    /// Returns the error message.
    pub fn rejects(&self, method: &str, path: &str, body: Value, field: &str) -> String {
        let before = self.snapshot();
        let (status, body) = self.call(method, path, body);
        assert_eq!(status, 400, "{method} {path} {body}");
        let msg = body["errors"][0].as_str().unwrap().to_string();
        assert!(msg.contains(field), "{field} not named in {msg:?}");
        assert!(self.snapshot() == before, "stored after {msg}");
        msg
    }

    /// Every stored key and value.
    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let storage = &self.fakes.storage;
        storage
            .keys()
            .into_iter()
            .map(|k| {
                let value = storage.get(&k).unwrap().map(|e| e.value);
                (k, value.unwrap_or_default())
            })
            .collect()
    }

    /// Registers a GitHub App record directly in storage.
    pub fn put_app(&self, name: &str) {
        let mut tx = Tx::new(&self.fakes.storage);
        tx.put_json(
            keys::github_app(name),
            &json!({"app_id": 1, "private_key": "-----BEGIN KEY-----APPSECRET"}),
        )
        .unwrap();
        tx.commit().unwrap();
    }

    /// Mounts KV-v2 at `secret/` (once), writes `secret/<secret>` and
    /// associates it with the destination through the API.
    pub fn associate(&self, kind: &str, name: &str, secret: &str) {
        if self.get("sys/mounts/secret").0 != 200 {
            let (status, body) = self.post("sys/mounts/secret", json!({"type": "kv-v2"}));
            assert_eq!(status, 204, "{body}");
        }
        let (status, body) = self.post(
            &format!("secret/data/{secret}"),
            json!({"data": {"password": "KV-secret-value"}}),
        );
        assert_eq!(status, 200, "{body}");
        let (status, body) = self.post(
            &format!("sys/sync/destinations/{kind}/{name}/associations/set"),
            json!({"mount": "secret", "secret_name": secret}),
        );
        assert_eq!(status, 200, "{body}");
    }

    /// Runs the sync worker over everything due.
    pub fn drain(&self) -> crate::sync::worker::RunReport {
        crate::sync::worker::run(
            &self.fakes.env(),
            0,
            1,
            1000,
            &crate::sync::worker::Settings::default(),
        )
    }

    /// Makes every outbox entry due now (skips the backoff in tests).
    pub fn make_due(&self) {
        crate::sync::worker::make_all_due(&self.fakes.storage);
    }

    /// No response so far contains any of `secrets`.
    pub fn assert_no_leak(&self, secrets: &[&str]) {
        for body in self.bodies.borrow().iter() {
            for secret in secrets {
                assert!(!body.contains(secret), "{secret} leaked in {body}");
            }
        }
    }
}

/// One type's field table, as the table-driven checks use it.
pub struct TypeCase {
    pub kind: &'static str,
    /// A body with every field set (create).
    pub full: Value,
    /// `connection_details` as the full create reads back.
    pub full_read: Value,
    /// The smallest valid body.
    pub minimal: Value,
    /// The credentials in `full`, which no response may contain.
    pub secrets: &'static [&'static str],
    /// Bodies merged into `minimal` (create) or sent as an update of `full`,
    /// each rejected with 400 naming the field.
    pub bad: Vec<(Value, &'static str)>,
    /// Fields that cannot change, with a different value.
    pub immutable: Vec<(&'static str, Value)>,
    /// The sensitive fields set by `full`.
    pub sensitive: &'static [&'static str],
}

fn merged(base: &Value, extra: &Value) -> Value {
    let mut out = base.clone();
    for (k, v) in extra.as_object().unwrap() {
        out[k] = v.clone();
    }
    out
}

impl TypeCase {
    fn path(&self, name: &str) -> String {
        format!("sys/sync/destinations/{}/{name}", self.kind)
    }

    /// Everything the field table promises: read back, defaults, masking,
    /// validation without side effects, immutables and masked round trips.
    pub fn check(&self) {
        self.check_on(&Server::new());
    }

    /// [`TypeCase::check`] on a prepared server.
    pub fn check_on(&self, s: &Server) {
        // Every field, read back masked.
        let data = s.write(&self.path("full"), self.full.clone());
        assert_eq!(data["name"], "full");
        assert_eq!(data["type"], self.kind);
        assert_eq!(data["connection_details"], self.full_read, "{}", self.kind);
        for field in self.sensitive {
            assert_eq!(data["connection_details"][field], "*****", "{field}");
        }
        let (status, read) = s.get(&self.path("full"));
        assert_eq!(status, 200);
        assert_eq!(read["data"], data);
        // The minimal body materialises defaults.
        let data = s.write(&self.path("min"), self.minimal.clone());
        let spec = super::type_of(self.kind).unwrap();
        assert_eq!(
            data["options"]["granularity_level"],
            spec.default_granularity.as_str()
        );
        assert_eq!(
            data["options"]["secret_name_template"],
            match spec.default_granularity {
                super::Granularity::SecretPath => spec.default_template_path,
                super::Granularity::SecretKey => spec.default_template_key,
            }
        );
        assert_eq!(data["options"].get("custom_tags").is_some(), spec.cloud);
        // Wrong values: 400 naming the field, nothing stored.
        for (extra, field) in &self.bad {
            s.rejects(
                "POST",
                &self.path("bad"),
                merged(&self.minimal, extra),
                field,
            );
            assert_eq!(s.get(&self.path("bad")).0, 404, "{extra}");
            s.rejects("POST", &self.path("full"), extra.clone(), field);
            s.rejects("PATCH", &self.path("full"), extra.clone(), field);
        }
        // Immutables: a changed value is refused, the same value is fine.
        for (field, value) in &self.immutable {
            let msg = s.rejects("PATCH", &self.path("full"), json!({ *field: value }), field);
            assert!(msg.contains("cannot be changed"), "{msg}");
            s.rejects("POST", &self.path("full"), json!({ *field: value }), field);
            let same = self.full.get(*field).cloned().unwrap_or(Value::Null);
            if !same.is_null() {
                assert_eq!(s.patch(&self.path("full"), json!({ *field: same })).0, 200);
            }
        }
        // Masked round trip: echoing a read back keeps every stored value.
        let before = s.dest(self.kind, "full").unwrap();
        let (_, read) = s.get(&self.path("full"));
        let mut echo = read["data"]["connection_details"].clone();
        let echo_map = echo.as_object_mut().unwrap();
        if let Some(Value::Object(app)) = echo_map.remove("app_config") {
            echo_map.extend(app);
        }
        s.write(&self.path("full"), echo.clone());
        assert_eq!(s.patch(&self.path("full"), echo).0, 200);
        let after = s.dest(self.kind, "full").unwrap();
        assert_eq!(after.connection_details, before.connection_details);
        // The connector sees the credentials in clear.
        let config: Value = serde_json::from_str(&after.connector_ref().config).unwrap();
        for field in self.sensitive {
            assert_eq!(config[field], self.full[field], "{field}");
        }
        assert!(!format!("{after:?}").contains(self.secrets.first().unwrap_or(&"\u{0}")));
        s.assert_no_leak(self.secrets);
    }
}
