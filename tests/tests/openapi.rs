//! The OpenAPI document (`sys/internal/specs/openapi`) against the path
//! tables, on the engine linked natively with in-memory imports: every
//! operation of every table the router serves is in the document, under the
//! path and method a client would use, and every operation of the document
//! reaches an endpoint of the router (no 405, no `unsupported path`).
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use serde_json::{Value, json};

use kvsync_component::api::{Operation, Request};
use kvsync_component::env::Fakes;
use kvsync_component::framework::{Check, Path, Schema};
use kvsync_component::router::BACKENDS;

const SPEC: &str = "sys/internal/specs/openapi";
/// The KV-v2 mount of the document's secrets-engine paths.
const MOUNT: &str = "secret/";

fn send(fakes: &Fakes, method: &str, path: &str, query: &str, body: &Value) -> (u16, Value) {
    let content_type = match method {
        "PATCH" => "application/merge-patch+json",
        _ => "application/json",
    };
    let req = Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: vec![("content-type".into(), content_type.into())],
        body: match body {
            Value::Null => Vec::new(),
            body => serde_json::to_vec(body).unwrap(),
        },
        caller: None,
    };
    let resp = kvsync_component::handle(&fakes.env(), req).response;
    let body = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    (resp.status, body)
}

/// A server with one KV-v2 mount, and its document.
fn served() -> (Fakes, Value) {
    let fakes = Fakes::default();
    let (status, _) = send(
        &fakes,
        "POST",
        "sys/mounts/secret",
        "",
        &json!({"type": "kv-v2"}),
    );
    assert_eq!(status, 204);
    let (status, doc) = send(&fakes, "GET", SPEC, "", &Value::Null);
    assert_eq!(status, 200);
    (fakes, doc)
}

/// The values the document writes for a path's field-selecting parameter
/// (one document path each), or one `None`.
fn values_of(path: &Path) -> Vec<Option<(&'static str, &'static str)>> {
    let by_param = std::iter::once(path.fields)
        .chain(path.operations.iter().filter_map(|o| o.fields))
        .find_map(|s| match s {
            Schema::ByParam { param, .. } => Some(param),
            _ => None,
        });
    let Some(param) = by_param else {
        return vec![None];
    };
    let spec = path.params.iter().find(|p| p.name == param).unwrap();
    let Check::OneOf(values) = spec.check else {
        panic!("{}: {param} has no values", path.pattern);
    };
    values.iter().map(|v| Some((param, *v))).collect()
}

#[test]
fn every_operation_of_every_table_is_in_the_document() {
    let (_, doc) = served();
    let paths = doc["paths"].as_object().unwrap();
    let mut checked = 0;
    for backend in BACKENDS {
        let root = match backend.root {
            "" => MOUNT,
            root => root,
        };
        for path in backend.paths {
            for value in values_of(path) {
                let mut pattern = path.pattern.replace(['*', '+'], "");
                let mut ids: Vec<(Operation, String)> = path
                    .operations
                    .iter()
                    .map(|o| (o.operation, o.id.to_string()))
                    .collect();
                if let Some((param, v)) = value {
                    pattern = pattern.replace(&format!("{{{param}}}"), v);
                    for (_, id) in &mut ids {
                        *id = id.replace(&format!("{{{param}}}"), v);
                    }
                }
                let full = format!("/{root}{pattern}");
                for (operation, id) in ids {
                    let (key, method) = match operation {
                        Operation::List if full.ends_with('/') => (full.clone(), "get"),
                        Operation::List => (format!("{full}/"), "get"),
                        Operation::Read => (full.clone(), "get"),
                        Operation::Create | Operation::Update => (full.clone(), "post"),
                        Operation::Patch => (full.clone(), "patch"),
                        Operation::Delete => (full.clone(), "delete"),
                        Operation::Header => (full.clone(), "head"),
                    };
                    // A backend's root is its path without the slash.
                    let key = match paths.contains_key(&key) {
                        true => key,
                        false => key.trim_end_matches('/').to_string(),
                    };
                    let op = &paths
                        .get(&key)
                        .unwrap_or_else(|| panic!("{key} is not in the document"))[method];
                    assert_eq!(op["operationId"], id.as_str(), "{method} {key}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 60, "{checked}");
}

/// A value for a path parameter: its first allowed value, or a name.
fn sample(item: &Value, name: &str) -> String {
    let param = item["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name));
    match param.map(|p| &p["schema"]["enum"][0]) {
        Some(Value::String(v)) => v.clone(),
        _ => "a".to_string(),
    }
}

#[test]
fn every_operation_of_the_document_reaches_an_endpoint() {
    let (fakes, doc) = served();
    let mut reached = 0;
    for (key, item) in doc["paths"].as_object().unwrap() {
        let mut path = String::new();
        let mut rest = key.trim_start_matches('/');
        while let Some((before, after)) = rest.split_once('{') {
            let (name, more) = after.split_once('}').unwrap();
            path.push_str(before);
            path.push_str(&sample(item, name));
            rest = more;
        }
        path.push_str(rest);
        for (method, op) in item.as_object().unwrap() {
            let query = match op["parameters"].as_array() {
                Some(ps) if ps.iter().any(|p| p["name"] == "list") => "list=true",
                _ => "",
            };
            let method = method.to_ascii_uppercase();
            if !["GET", "POST", "PATCH", "DELETE", "HEAD"].contains(&method.as_str()) {
                continue;
            }
            let (status, body) = send(&fakes, &method, &path, query, &json!({}));
            let id = &op["operationId"];
            assert_ne!(status, 405, "{id}: {method} {path}?{query}: {body}");
            assert!(
                status < 500,
                "{id}: {method} {path}?{query}: {status} {body}"
            );
            let unrouted = body["errors"][0]
                .as_str()
                .is_some_and(|e| e == "unsupported path" || e.starts_with("no handler"));
            assert!(!unrouted, "{id}: {method} {path}?{query}: {body}");
            reached += 1;
        }
    }
    assert!(reached > 60, "{reached}");
}
