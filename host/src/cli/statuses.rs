//! Sync statuses as both sync commands read them: every destination and its
//! association rows, from the API's `associations` reads (over HTTP for
//! `sync status`, through the engine for `sync run`), and the plain-text
//! tables they are printed in.

use serde::Serialize;
use serde_json::Value;

use crate::vault_client::encode_segment;

/// One association row (one per sub-key with `secret-key` granularity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// `mount/secret_name`.
    pub secret: String,
    pub mount: String,
    pub secret_name: String,
    pub sub_key: Option<String>,
    pub sync_status: String,
    pub updated_at: String,
    pub error: Option<String>,
}

/// A destination and its association rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestinationStatus {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub associations: Vec<Row>,
}

impl DestinationStatus {
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// Reads of the Vault API: the answer's `data`, `None` on 404.
pub trait ApiReader {
    /// A `LIST` of `path`.
    async fn list(&self, path: &str) -> anyhow::Result<Option<Value>>;
    /// A `GET` of `path`.
    async fn read(&self, path: &str) -> anyhow::Result<Option<Value>>;
}

/// Every destination's statuses, sorted by type and name.
pub async fn read_statuses(api: &impl ApiReader) -> anyhow::Result<Vec<DestinationStatus>> {
    let Some(list) = api.list("sys/sync/destinations").await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (kind, name) in parse_destination_list(&list) {
        if let Some(data) = api.read(&associations_path(&kind, &name)).await? {
            out.push(parse_associations(&kind, &name, &data));
        }
    }
    Ok(out)
}

/// The rows of an `associations` read's `data` (`associated_secrets`), sorted
/// by secret and sub-key.
pub fn parse_associations(kind: &str, name: &str, data: &Value) -> DestinationStatus {
    let text = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).map(str::to_string);
    let mut rows: Vec<Row> = data
        .get("associated_secrets")
        .and_then(Value::as_object)
        .map(|secrets| {
            secrets
                .values()
                .map(|entry| {
                    let mount = text(entry, "mount")
                        .or_else(|| text(entry, "accessor"))
                        .unwrap_or_default();
                    let secret_name = text(entry, "secret_name").unwrap_or_default();
                    Row {
                        secret: format!("{mount}/{secret_name}"),
                        mount,
                        secret_name,
                        sub_key: text(entry, "sub_key").filter(|s| !s.is_empty()),
                        sync_status: text(entry, "sync_status")
                            .unwrap_or_else(|| "UNKNOWN".to_string()),
                        updated_at: text(entry, "updated_at").unwrap_or_default(),
                        error: text(entry, "error").filter(|s| !s.is_empty()),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    rows.sort_by(|a, b| (&a.secret, &a.sub_key).cmp(&(&b.secret, &b.sub_key)));
    DestinationStatus {
        kind: kind.to_string(),
        name: name.to_string(),
        associations: rows,
    }
}

/// `(type, name)` pairs of a `LIST sys/sync/destinations` answer's `data`, sorted.
pub fn parse_destination_list(data: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(by_type) = data.get("key_info").and_then(Value::as_object) {
        for (kind, names) in by_type {
            for name in names.as_array().into_iter().flatten() {
                if let Some(name) = name.as_str() {
                    out.push((kind.clone(), name.to_string()));
                }
            }
        }
    }
    out.sort();
    out
}

fn associations_path(kind: &str, name: &str) -> String {
    format!(
        "sys/sync/destinations/{}/{}/associations",
        encode_segment(kind),
        encode_segment(name)
    )
}

/// One line of a table cell: control characters (newlines in provider
/// messages) become spaces; empty cells are `-`.
pub fn cell(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let s = s.trim();
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// Left-aligned columns separated by two spaces, without trailing blanks.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, value) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(value.chars().count());
            }
        }
    }
    let line = |values: Vec<&str>| {
        let mut out = String::new();
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(value);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(value.chars().count());
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.trim_end().to_string()
    };
    let mut lines = vec![line(header.to_vec())];
    lines.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    lines
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    /// Two destinations: `in-mem/demo` with three rows (synced, failed,
    /// pending) and `gh/repo` with none.
    pub(crate) fn sample() -> Vec<DestinationStatus> {
        let demo = parse_associations(
            "in-mem",
            "demo",
            &json!({
                "store_name": "demo",
                "store_type": "in-mem",
                "associated_secrets": {
                    "kv_1/app/db/password": {
                        "accessor": "kv_1", "mount": "secret", "secret_name": "app/db",
                        "sub_key": "password", "sync_status": "SYNCED",
                        "updated_at": "2025-01-02T03:04:05Z"
                    },
                    "kv_1/app/api": {
                        "accessor": "kv_1", "mount": "secret", "secret_name": "app/api",
                        "sync_status": "EXTERNAL_SERVICE_ERROR",
                        "updated_at": "2025-01-02T03:04:06Z",
                        "error": "provider unavailable:\nretry later"
                    },
                    "kv_1/app/db/user": {
                        "accessor": "kv_1", "mount": "secret", "secret_name": "app/db",
                        "sub_key": "user", "sync_status": "PENDING",
                        "updated_at": "2025-01-02T03:04:05Z"
                    }
                }
            }),
        );
        let empty = parse_associations("gh", "repo", &json!({"associated_secrets": {}}));
        vec![demo, empty]
    }

    #[test]
    fn parses_destination_lists_and_associations() {
        let list = parse_destination_list(&json!({
            "keys": ["in-mem", "gh"],
            "key_info": {"in-mem": ["b", "a"], "gh": ["repo"]},
            "total_destinations": 3
        }));
        assert_eq!(
            list,
            vec![
                ("gh".to_string(), "repo".to_string()),
                ("in-mem".to_string(), "a".to_string()),
                ("in-mem".to_string(), "b".to_string()),
            ]
        );
        assert!(parse_destination_list(&Value::Null).is_empty());
        let d = &sample()[0];
        let secrets: Vec<_> = d
            .associations
            .iter()
            .map(|r| (r.secret.as_str(), r.sub_key.as_deref()))
            .collect();
        assert_eq!(
            secrets,
            vec![
                ("secret/app/api", None),
                ("secret/app/db", Some("password")),
                ("secret/app/db", Some("user")),
            ]
        );
        assert_eq!(
            associations_path("in-mem", "d"),
            "sys/sync/destinations/in-mem/d/associations"
        );
        assert_eq!(
            associations_path("in-mem", "a/b"),
            "sys/sync/destinations/in-mem/a%2Fb/associations"
        );
    }

    /// Answers from a table of paths.
    struct Canned(BTreeMap<&'static str, Value>);

    impl ApiReader for Canned {
        async fn list(&self, path: &str) -> anyhow::Result<Option<Value>> {
            Ok(self.0.get(format!("LIST {path}").as_str()).cloned())
        }
        async fn read(&self, path: &str) -> anyhow::Result<Option<Value>> {
            Ok(self.0.get(path).cloned())
        }
    }

    #[tokio::test]
    async fn reads_every_destination_and_its_associations() {
        let api = Canned(BTreeMap::from([
            (
                "LIST sys/sync/destinations",
                json!({"key_info": {"in-mem": ["demo", "gone"]}}),
            ),
            (
                "sys/sync/destinations/in-mem/demo/associations",
                json!({"associated_secrets": {"kv_1/a": {
                    "mount": "secret", "secret_name": "a", "sync_status": "SYNCED"
                }}}),
            ),
        ]));
        let statuses = read_statuses(&api).await.unwrap();
        assert_eq!(
            statuses.len(),
            1,
            "a destination deleted meanwhile is left out"
        );
        assert_eq!(statuses[0].label(), "in-mem/demo");
        assert_eq!(statuses[0].associations[0].secret, "secret/a");
        assert!(
            read_statuses(&Canned(BTreeMap::new()))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
