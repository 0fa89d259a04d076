//! The KV version 2 secrets engine, as HashiCorp's vault-plugin-secrets-kv
//! serves it: `data/`, `metadata/`, `delete/`, `undelete/`, `destroy/`,
//! `subkeys/` and `config` (the table [`BACKEND`]), one module per endpoint
//! family, on the records of [`record`]. Any other path under the mount
//! answers Vault's `pathInvalid` reply (404 with a warning).

pub mod config;
pub mod data;
pub mod metadata;
pub mod record;
pub mod subkeys;
pub mod versions;

use serde_json::{Map, Value};

use crate::api::Operation::{self, Create, Delete, List, Patch, Read, Update};
use crate::api::{LogicalRequest, Reply};
use crate::error::{ApiError, ApiResult};
use crate::framework::{Backend, Call, FieldSpec, Fields, Path, op};
use crate::storage::Tx;
use crate::sys::mounts::MountEntry;
use crate::time;

use record::Kv;

const ROOT_WARNING: &str =
    "Non-listing operations on the root of a K/V v2 mount are not supported.";

/// The KV-v2 engine: its paths are relative to each mount of the engine.
pub static BACKEND: Backend = Backend::new("", "kv", PATHS).fallback(invalid_path);

/// The `{path}` parameter of a secret's paths.
const SECRET: &[FieldSpec] = &[FieldSpec::string("path").describe("Location of the secret.")];

const PATHS: &[Path] = &[
    Path::new(
        "config",
        "Configures settings for the KV store.",
        &[
            op(
                Read,
                "kv-v2-read-configuration",
                "Read the mount's settings.",
                config::read,
            ),
            op(
                Update,
                "kv-v2-configure",
                "Set the mount's settings given.",
                config::write,
            ),
        ],
    )
    .fields(config::FIELDS),
    // Any path under `data/`, empty included: a read of no secret is a 404,
    // a LIST a 405 (the path has no list), a write is refused before routing.
    Path::new(
        "data/{path*}",
        "Write, read, patch and delete the versions of a secret.",
        &[
            op(
                Read,
                "kv-v2-read",
                "Read a version of the secret (the current one by default).",
                data::read,
            ),
            op(
                Create,
                "kv-v2-write",
                "Write the first version of the secret.",
                data::write,
            ),
            op(
                Update,
                "kv-v2-write",
                "Write a new version of the secret.",
                data::write,
            ),
            op(
                Patch,
                "kv-v2-patch",
                "Merge changes into the current version, as a new version.",
                data::patch,
            ),
            op(
                Delete,
                "kv-v2-delete",
                "Soft-delete the current version.",
                data::delete,
            ),
        ],
    )
    .params(SECRET)
    .fields(data::FIELDS)
    .existence_check(data::exists),
    Path::new(
        "metadata/{path*}",
        "Read, write, patch and delete the metadata of a secret, and list secrets.",
        &[
            op(
                Read,
                "kv-v2-read-metadata",
                "Read the secret's metadata and versions.",
                metadata::read,
            ),
            op(
                List,
                "kv-v2-list",
                "List the secrets and folders of a folder.",
                metadata::list,
            ),
            op(
                Create,
                "kv-v2-write-metadata",
                "Create the secret's metadata.",
                metadata::write,
            ),
            op(
                Update,
                "kv-v2-write-metadata",
                "Update the secret's settings.",
                metadata::write,
            ),
            op(
                Patch,
                "kv-v2-patch-metadata-path",
                "Merge changes into the secret's settings.",
                metadata::patch,
            ),
            op(
                Delete,
                "kv-v2-delete-metadata-and-all-versions",
                "Delete the secret: its metadata and every version.",
                metadata::delete,
            ),
        ],
    )
    .params(&[FieldSpec::string("path")
        .describe("Location of the secret, or of the folder a list shows.")])
    .fields(metadata::FIELDS)
    .existence_check(data::exists),
    Path::new(
        "subkeys/{path*}",
        "Read the structure of a secret without its values.",
        &[op(
            Read,
            "kv-v2-read-subkeys",
            "Read the keys of a version, values replaced by null.",
            subkeys::read,
        )],
    )
    .params(SECRET)
    .fields(subkeys::FIELDS),
    Path::new(
        "delete/{path*}",
        "Soft-delete versions of a secret.",
        &[op(
            Update,
            "kv-v2-delete-versions",
            "Soft-delete the versions listed.",
            versions::delete,
        )],
    )
    .params(SECRET)
    .fields(versions::FIELDS),
    Path::new(
        "undelete/{path*}",
        "Restore soft-deleted versions of a secret.",
        &[op(
            Update,
            "kv-v2-undelete-versions",
            "Restore the versions listed.",
            versions::undelete,
        )],
    )
    .params(SECRET)
    .fields(versions::FIELDS),
    Path::new(
        "destroy/{path*}",
        "Permanently remove versions of a secret.",
        &[op(
            Update,
            "kv-v2-destroy-versions",
            "Remove the data of the versions listed.",
            versions::destroy,
        )],
    )
    .params(SECRET)
    .fields(versions::FIELDS),
];

/// Vault's `pathInvalid`: a 404 whose body is a success envelope with a warning
/// pointing at the `vault kv` command to use. It serves every operation but
/// `HEAD`, which is a 405 there as on every KV path.
fn invalid_path(path: &str, operation: Operation) -> ApiResult<Reply> {
    let command = match operation {
        Operation::Create | Operation::Update => "put",
        Operation::Patch => "patch",
        Operation::Read => "get",
        Operation::List => "list",
        Operation::Delete => "delete",
        Operation::Header => return Err(ApiError::UnsupportedOperation),
    };
    let warning = if matches!(
        path,
        "metadata" | "data" | "delete" | "undelete" | "destroy"
    ) {
        ROOT_WARNING.to_string()
    } else {
        format!(
            "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API \
             endpoints to use. If using the Vault CLI, use 'vault kv {command}' for this operation."
        )
    };
    Ok(Reply::no_content()
        .with_warning(Some(warning))
        .with_status(404))
}

/// The secret a request names: its path without trailing slashes, which
/// Vault's KV engine ignores when it looks up a secret (`GET metadata/app/`
/// reads `app`). Writes never have one: the HTTP layer refuses them.
fn secret_path<'a>(call: &Call<'a>) -> &'a str {
    call.param("path").trim_end_matches('/')
}

/// Whether the request names `field` at all. Vault's field parser turns an
/// explicit `null` into the field's zero value, where ours drops it.
fn given(req: &LogicalRequest, field: &str) -> bool {
    req.data.contains_key(field)
}

/// The `max_versions` field of `config` and `metadata`, which Vault stores as a uint32.
fn max_versions(fields: &Fields) -> ApiResult<u32> {
    let n = fields.int("max_versions").unwrap_or(0);
    u32::try_from(n).map_err(|_| {
        ApiError::bad_request(format!(
            "max_versions must be between 0 and {}, got {n}",
            u32::MAX
        ))
    })
}

/// The current version of a secret and its data, when it is readable (neither
/// deleted nor destroyed): for engines that consume KV secrets (secrets sync).
pub fn read_current(
    tx: &mut Tx,
    mount: &MountEntry,
    path: &str,
) -> ApiResult<Option<(u64, Map<String, Value>)>> {
    let mut kv = Kv::new(tx, mount);
    let Some(meta) = kv.metadata(path)? else {
        return Ok(None);
    };
    match meta.version(0) {
        Some((number, vm)) if vm.is_live(time::now()) => {
            Ok(Some((number, kv.data_map(path, number)?)))
        }
        _ => Ok(None),
    }
}

/// The number of the current version of a secret when it is readable (for
/// sync reconciliation, which compares it with what destinations hold).
pub fn current_version(tx: &mut Tx, mount: &MountEntry, path: &str) -> ApiResult<Option<u64>> {
    let mut kv = Kv::new(tx, mount);
    let now = time::now();
    Ok(kv
        .metadata(path)?
        .and_then(|meta| meta.version(0))
        .filter(|(_, vm)| vm.is_live(now))
        .map(|(number, _)| number))
}

/// A KV-v2 mount behind the full router, for the tests of every module here.
#[cfg(test)]
pub(crate) mod testing {
    use serde_json::{Value, json};

    use crate::authz::StaticAuthz;
    use crate::connector::MemConnector;
    use crate::env::Env;
    use crate::policies::MemPolicies;
    use crate::storage::{MemStorage, Tx};
    use crate::sys::mounts::{MountEntry, MountTable};
    use crate::tokens::Minimal;

    use super::record::{KeyMetadata, Kv};

    pub struct Server {
        pub store: MemStorage,
        pub connector: MemConnector,
        pub policies: MemPolicies,
        pub tokens: Minimal,
    }

    impl Server {
        /// A fresh store with KV-v2 mounted at `secret/`.
        pub fn new() -> Self {
            let server = Server {
                store: MemStorage::new(),
                connector: MemConnector::default(),
                policies: MemPolicies::default(),
                tokens: Minimal::new(),
            };
            let (status, _) = server.call("POST", "sys/mounts/secret", json!({"type": "kv-v2"}));
            assert_eq!(status, 204);
            server
        }

        /// Sends a request; `path` may carry a query string. Returns the status
        /// and the decoded body (`Null` when empty).
        pub fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
            let env = Env {
                storage: &self.store,
                connector: &self.connector,
                authz: &StaticAuthz(true),
                policies: &self.policies,
                tokens: &self.tokens,
                keyring: &crate::keyring::NoKeyring,
                namespaces: &crate::namespaces::NoNamespaces,
            };
            crate::testing::call(&env, method, path, &body)
        }

        pub fn get(&self, path: &str) -> (u16, Value) {
            self.call("GET", path, Value::Null)
        }

        pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
            self.call("POST", path, body)
        }

        /// Writes `data` to `secret/data/<path>`; returns the new version.
        pub fn put(&self, path: &str, data: Value) -> u64 {
            let (status, body) = self.post(&format!("secret/data/{path}"), json!({ "data": data }));
            assert_eq!(status, 200, "{body}");
            body["data"]["version"].as_u64().unwrap()
        }

        pub fn mount(&self) -> MountEntry {
            let mut tx = Tx::new(&self.store);
            MountTable::load(&mut tx)
                .unwrap()
                .get("secret/")
                .unwrap()
                .clone()
        }

        /// The storage keys of the mount, relative to its prefix.
        pub fn keys(&self) -> Vec<String> {
            let prefix = self.mount().storage_prefix();
            self.store
                .keys()
                .iter()
                .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
                .collect()
        }

        /// Rewrites a secret's metadata record (to move time around in tests).
        pub fn edit_metadata(&self, path: &str, edit: impl FnOnce(&mut KeyMetadata)) {
            let mount = self.mount();
            let mut tx = Tx::new(&self.store);
            let mut kv = Kv::new(&mut tx, &mount);
            let mut meta = kv.metadata(path).unwrap().unwrap();
            edit(&mut meta);
            kv.put_metadata(path, &meta).unwrap();
            tx.commit().unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::testing::Server;
    use super::*;

    fn warning(body: &Value) -> &str {
        body["warnings"][0].as_str().unwrap()
    }

    #[test]
    fn invalid_paths_answer_404_with_a_warning() {
        let s = Server::new();
        for (method, path, command) in [
            ("GET", "secret/foo", "get"),
            ("GET", "secret/", "get"),
            ("POST", "secret/foo", "put"),
            ("DELETE", "secret/foo/bar", "delete"),
            ("PATCH", "secret/foo", "patch"),
            ("LIST", "secret/foo", "list"),
            ("GET", "secret/subkeys", "get"),
            ("LIST", "secret/config", "list"),
        ] {
            let (status, body) = s.call(method, path, json!({}));
            assert_eq!(status, 404, "{method} {path}");
            assert_eq!(body["data"], Value::Null);
            assert_eq!(body["mount_type"], "kv");
            assert!(body.get("errors").is_none());
            let w = warning(&body);
            assert!(
                w.starts_with("Invalid path for a versioned K/V secrets engine."),
                "{w}"
            );
            assert!(
                w.ends_with(&format!("use 'vault kv {command}' for this operation.")),
                "{w}"
            );
        }
        for path in [
            "secret/data",
            "secret/metadata",
            "secret/delete",
            "secret/undelete",
            "secret/destroy",
        ] {
            let (status, body) = s.get(path);
            assert_eq!(status, 404);
            assert_eq!(warning(&body), ROOT_WARNING);
        }
    }

    #[test]
    fn the_data_path_without_a_secret() {
        let s = Server::new();
        // A read of no secret finds nothing; a write is refused before routing.
        assert_eq!(s.get("secret/data/"), (404, json!({"errors": []})));
        assert_eq!(s.get("secret/data/app/"), (404, json!({"errors": []})));
        assert_eq!(
            s.post("secret/data/", json!({"data": {"a": 1}})),
            (
                400,
                json!({"errors": ["cannot write to a path ending in '/'"]})
            )
        );
        assert_eq!(s.call("LIST", "secret/data/", Value::Null).0, 405);
        assert_eq!(s.call("DELETE", "secret/data/", Value::Null).0, 204);
        assert!(s.keys().iter().all(|k| !k.starts_with("metadata/")));
    }

    #[test]
    fn operations_a_path_does_not_serve_are_405() {
        let s = Server::new();
        for (method, path) in [
            ("GET", "secret/destroy/app"),
            ("DELETE", "secret/delete/app"),
            ("PATCH", "secret/undelete/app"),
            ("POST", "secret/subkeys/app"),
            ("LIST", "secret/subkeys/app"),
            ("LIST", "secret/data/app"),
            ("DELETE", "secret/config"),
            ("PATCH", "secret/config"),
            ("HEAD", "secret/data/app"),
            ("HEAD", "secret/metadata/app"),
            ("HEAD", "secret/config"),
            ("HEAD", "secret/foo"),
            ("OPTIONS", "secret/data/app"),
        ] {
            let (status, body) = s.call(method, path, json!({}));
            assert_eq!(status, 405, "{method} {path}");
            assert_eq!(body, json!({"errors": ["unsupported operation"]}));
        }
    }

    #[test]
    fn read_current_skips_deleted_versions() {
        let s = Server::new();
        let mount = s.mount();
        s.put("app", json!({"a": 1}));
        let mut tx = Tx::new(&s.store);
        let (version, data) = read_current(&mut tx, &mount, "app").unwrap().unwrap();
        assert_eq!((version, data.get("a")), (1, Some(&json!(1))));
        assert!(read_current(&mut tx, &mount, "nope").unwrap().is_none());
        assert_eq!(s.call("DELETE", "secret/data/app", Value::Null).0, 204);
        let mut tx = Tx::new(&s.store);
        assert!(read_current(&mut tx, &mount, "app").unwrap().is_none());
    }
}
