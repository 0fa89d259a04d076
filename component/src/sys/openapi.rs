//! `sys/internal/specs/openapi`: the OpenAPI document of everything the
//! engine serves, generated from the path tables on each request
//! ([`crate::framework::openapi`]). The KV-v2 paths appear once per mounted
//! KV-v2 engine, read from the mount table, or with `generic_mount_paths`
//! once under the path parameter `{kv_v2_mount_path}`, as Vault writes them.
//! The body is the document itself, outside the envelope.

use crate::api::Reply;
use crate::error::ApiResult;
use crate::framework::openapi::{self, Info, Mounts};
use crate::framework::{Call, FieldSpec, FieldType};
use crate::router::BACKENDS;
use crate::storage::Tx;
use crate::sys::mounts::MountTable;

pub const FIELDS: &[FieldSpec] = &[FieldSpec::new("generic_mount_paths", FieldType::Bool)
    .describe("Write the KV-v2 paths once, under the mount-path parameter {kv_v2_mount_path}, instead of once per mount.")];

/// The mount-path parameter of generic mount paths, and its documented
/// default (the mount of a dev server).
const MOUNT_PARAM: &str = "kv_v2_mount_path";
const DEFAULT_MOUNT: &str = "secret";

const INFO: Info = Info {
    title: "kvsync API",
    description: "Vault's Secrets Sync and KV-v2 HTTP API, as kvsync serves it. All API routes \
                  are prefixed with `/v1/`.",
    version: env!("CARGO_PKG_VERSION"),
};

pub fn read(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let doc = if call.fields.bool("generic_mount_paths").unwrap_or(false) {
        let mounts = Mounts::Generic {
            param: MOUNT_PARAM,
            default: DEFAULT_MOUNT,
        };
        openapi::document(BACKENDS, &mounts, &INFO)
    } else {
        let table = MountTable::load(tx)?;
        let mut paths: Vec<String> = table
            .entries
            .iter()
            .filter(|m| m.is_kv_v2())
            .map(|m| m.path.clone())
            .collect();
        paths.sort();
        openapi::document(BACKENDS, &Mounts::At(&paths), &INFO)
    };
    Ok(Reply::raw(200, doc))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::env::Fakes;
    use crate::testing;

    const SPEC: &str = "sys/internal/specs/openapi";

    /// Every operation id of a document, with its path and method.
    fn operation_ids(doc: &Value) -> Vec<String> {
        let mut ids = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for (method, op) in item.as_object().unwrap() {
                if ["get", "post", "patch", "delete", "head"].contains(&method.as_str()) {
                    ids.push(op["operationId"].as_str().unwrap().to_string());
                }
            }
        }
        ids
    }

    #[test]
    fn the_document_has_each_kv_mount_and_the_fixed_paths() {
        let fakes = Fakes::default();
        let env = fakes.env();
        for mount in ["secret", "team a/kv"] {
            let (status, _) = testing::call(
                &env,
                "POST",
                &format!("sys/mounts/{mount}"),
                &json!({"type": "kv-v2"}),
            );
            assert_eq!(status, 204);
        }
        let resp = testing::send(&env, "GET", SPEC, &Value::Null);
        assert_eq!(resp.status, 200);
        let doc = testing::json_body(&resp);
        assert_eq!(doc["openapi"], "3.0.2");
        let paths = doc["paths"].as_object().unwrap();
        let data = &paths["/secret/data/{path}"];
        assert_eq!(data["x-vault-createSupported"], true);
        assert_eq!(data["post"]["operationId"], "kv-v2-write-secret");
        assert_eq!(
            data["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/KvV2WriteRequest"
        );
        assert_eq!(
            data["patch"]["requestBody"]["content"]["application/merge-patch+json"]["schema"]["$ref"],
            "#/components/schemas/KvV2PatchRequest"
        );
        assert!(paths.contains_key("/team%20a/kv/data/{path}"));
        let list = &paths["/secret/metadata/{path}/"]["get"];
        assert_eq!(list["operationId"], "kv-v2-list-secret");
        assert_eq!(list["parameters"][0]["name"], "list");
        assert_eq!(list["parameters"][0]["required"], true);
        // One path per destination type, its fields in the body.
        let aws = &paths["/sys/sync/destinations/aws-sm/{name}"];
        assert_eq!(
            aws["post"]["operationId"],
            "system-write-sync-destinations-aws-sm-name"
        );
        let schema = &doc["components"]["schemas"]["SystemWriteSyncDestinationsAwsSmNameRequest"];
        assert_eq!(
            schema["properties"]["secret_access_key"]["x-vault-displayAttrs"]["sensitive"],
            true
        );
        assert!(!paths.contains_key("/sys/sync/destinations/{type}/{name}"));
        // The flags, and the answers an operation declares.
        assert_eq!(paths["/auth/token/accessors/"]["x-vault-sudo"], true);
        assert_eq!(paths["/sys/health"]["x-vault-unauthenticated"], true);
        assert!(paths["/sys/health"]["get"]["responses"]["default"].is_object());
        assert!(paths["/sys/health"]["get"]["responses"]["403"].is_null());
        assert!(paths["/auth/token/tidy"]["post"]["responses"]["202"].is_object());
        // A GET without list=true of a path that only lists is a 405 (the
        // schema fuzzer found it undocumented).
        assert!(paths["/sys/policies/acl/"]["get"]["responses"]["405"].is_object());
        assert_eq!(
            testing::call(&env, "GET", "sys/policies/acl/", &Value::Null).0,
            405
        );
        assert!(paths["/sys/policy/"]["get"]["responses"]["405"].is_null());
        assert!(paths.contains_key("/sys/internal/specs/openapi"));
        // Operation ids are unique.
        let mut ids = operation_ids(&doc);
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
        // The same tables and mounts give the same bytes.
        assert_eq!(
            testing::send(&env, "GET", SPEC, &Value::Null).body,
            resp.body
        );
    }

    #[test]
    fn generic_mount_paths_write_the_kv_paths_once() {
        let fakes = Fakes::default();
        let env = fakes.env();
        testing::call(&env, "POST", "sys/mounts/secret", &json!({"type": "kv-v2"}));
        let (status, doc) = testing::call(
            &env,
            "GET",
            &format!("{SPEC}?generic_mount_paths=true"),
            &Value::Null,
        );
        assert_eq!(status, 200);
        let paths = doc["paths"].as_object().unwrap();
        assert!(!paths.contains_key("/secret/data/{path}"));
        let data = &paths["/{kv_v2_mount_path}/data/{path}"];
        assert_eq!(data["get"]["operationId"], "kv-v2-read");
        let params: Vec<&str> = data["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(params, ["path", "kv_v2_mount_path"]);
        // With no KV mount, no KV path.
        let fakes = Fakes::default();
        let (_, doc) = testing::call(&fakes.env(), "GET", SPEC, &Value::Null);
        assert!(
            doc["paths"]
                .as_object()
                .unwrap()
                .keys()
                .all(|k| k.starts_with("/sys/") || k.starts_with("/auth/"))
        );
    }

    #[test]
    fn the_document_needs_read_on_its_path() {
        let fakes = Fakes::default();
        fakes.authz.deny("read", SPEC);
        let (status, _) = testing::call(&fakes.env(), "GET", SPEC, &Value::Null);
        assert_eq!(status, 403);
    }
}
