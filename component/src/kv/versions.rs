//! `<mount>/delete/<path>`, `<mount>/undelete/<path>` and `<mount>/destroy/<path>`:
//! soft-delete, restore or permanently remove listed versions (Vault's
//! `path_delete.go` and `path_destroy.go`).

use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec, FieldType};
use crate::storage::Tx;
use crate::time;

use super::record::{self, Kv};
use super::secret_path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Delete,
    Undelete,
    Destroy,
}

pub const FIELDS: &[FieldSpec] = &[FieldSpec::new("versions", FieldType::CommaIntSlice)
    .required()
    .describe("The version numbers to act on.")];

/// `POST <mount>/delete/<path>`: soft-deletes versions.
pub fn delete(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    apply(tx, call, Action::Delete)
}

/// `POST <mount>/undelete/<path>`: restores soft-deleted versions.
pub fn undelete(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    apply(tx, call, Action::Undelete)
}

/// `POST <mount>/destroy/<path>`: removes versions' data for good.
pub fn destroy(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    apply(tx, call, Action::Destroy)
}

fn apply(tx: &mut Tx, call: &Call, action: Action) -> ApiResult<Reply> {
    let path = secret_path(call);
    let requested = call.fields.ints("versions").unwrap_or_default();
    if requested.is_empty() {
        // Vault's two handlers spell it differently.
        return Err(ApiError::bad_request(match action {
            Action::Destroy => "no version number provided",
            Action::Delete | Action::Undelete => "No version number provided",
        }));
    }
    let reply = Reply::no_content();
    let mut kv = Kv::new(tx, call.mount()?);
    let Some(mut meta) = kv.metadata(path)? else {
        return Ok(reply);
    };
    let now = time::now();
    // Undeleted versions expire again after `delete_version_after`, counted from now.
    let restored_deletion_time = match action {
        Action::Undelete => record::expiry(now, &kv.config()?, &meta),
        Action::Delete | Action::Destroy => 0,
    };
    let current_live =
        |meta: &record::KeyMetadata| meta.version(0).is_some_and(|(_, vm)| vm.is_live(now));
    let was_live = current_live(&meta);
    let mut changed = false;
    for number in requested.into_iter().filter_map(|n| u64::try_from(n).ok()) {
        // Unknown and destroyed versions are skipped.
        let Some(vm) = meta.versions.get_mut(&number).filter(|vm| !vm.destroyed) else {
            continue;
        };
        match action {
            Action::Delete if vm.is_deleted(now) => continue,
            Action::Delete => vm.deletion_time = now,
            Action::Undelete => vm.deletion_time = restored_deletion_time,
            Action::Destroy => {
                vm.destroyed = true;
                kv.delete_data(path, number);
            }
        }
        changed = true;
    }
    if changed {
        kv.put_metadata(path, &meta)?;
        // Only the current version is synced: a change of older versions is
        // nothing to a destination.
        if current_live(&meta) != was_live {
            kv.secret_changed(path);
        }
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::testing::Server;

    fn version(s: &Server, n: u64) -> Value {
        s.get("secret/metadata/app").1["data"]["versions"][n.to_string()].clone()
    }

    #[test]
    fn versions_are_required() {
        let s = Server::new();
        s.put("app", json!({}));
        for (action, message) in [
            ("delete", "No version number provided"),
            ("undelete", "No version number provided"),
            ("destroy", "no version number provided"),
        ] {
            let path = format!("secret/{action}/app");
            let expected = (400, json!({ "errors": [message] }));
            assert_eq!(s.post(&path, json!({})), expected);
            assert_eq!(s.post(&path, json!({"versions": []})), expected);
            assert_eq!(s.post(&path, json!({"versions": ""})), expected);
            assert_eq!(s.post(&path, json!({"versions": "a,b"})).0, 400);
            // A missing secret, or unknown versions, are fine.
            assert_eq!(
                s.post(&format!("secret/{action}/nope"), json!({"versions": [1]}))
                    .0,
                204
            );
            assert_eq!(s.post(&path, json!({"versions": [9, -1]})).0, 204);
        }
        assert!(s.keys().iter().all(|k| !k.ends_with("nope")));
    }

    #[test]
    fn delete_and_undelete() {
        let s = Server::new();
        for i in 0..3 {
            s.put("app", json!({ "i": i }));
        }
        assert_eq!(
            s.post("secret/delete/app", json!({"versions": "1, 2"})),
            (204, Value::Null)
        );
        assert_ne!(version(&s, 1)["deletion_time"], "");
        assert_eq!(s.get("secret/data/app?version=1").0, 404);
        assert_eq!(s.get("secret/data/app?version=2").0, 404);
        assert_eq!(s.get("secret/data/app").0, 200);
        // Deleting again keeps the first deletion time.
        let first = version(&s, 1)["deletion_time"].clone();
        assert_eq!(s.post("secret/delete/app", json!({"versions": [1]})).0, 204);
        assert_eq!(version(&s, 1)["deletion_time"], first);

        let (status, body) = s.post("secret/undelete/app", json!({"versions": [1], "x": 1}));
        assert_eq!(status, 200);
        assert_eq!(
            body["warnings"],
            json!(["Endpoint ignored these unrecognized parameters: [x]"])
        );
        assert_eq!(version(&s, 1)["deletion_time"], "");
        assert_eq!(s.get("secret/data/app?version=1").1["data"]["data"]["i"], 0);
        assert_eq!(s.get("secret/data/app?version=2").0, 404);
    }

    #[test]
    fn undelete_reschedules_delete_version_after() {
        let s = Server::new();
        s.put("app", json!({}));
        assert_eq!(s.post("secret/delete/app", json!({"versions": [1]})).0, 204);
        assert_eq!(
            s.post("secret/metadata/app", json!({"delete_version_after": "1h"}))
                .0,
            204
        );
        assert_eq!(
            s.post("secret/undelete/app", json!({"versions": [1]})).0,
            204
        );
        assert_ne!(version(&s, 1)["deletion_time"], "");
        assert_eq!(s.get("secret/data/app").0, 200);
    }

    #[test]
    fn destroy_removes_the_data() {
        let s = Server::new();
        s.put("app", json!({"a": 1}));
        s.put("app", json!({"a": 2}));
        assert_eq!(s.post("secret/delete/app", json!({"versions": [2]})).0, 204);
        assert_eq!(
            s.post("secret/destroy/app", json!({"versions": [2]})),
            (204, Value::Null)
        );
        assert_eq!(version(&s, 2)["destroyed"], true);
        assert_eq!(s.keys(), vec!["metadata/app", "versions/1/app"]);
        // Destroyed versions cannot be undeleted or deleted.
        assert_eq!(
            s.post("secret/undelete/app", json!({"versions": [2]})).0,
            204
        );
        let (status, body) = s.get("secret/data/app");
        assert_eq!(status, 404);
        assert_eq!(body["data"]["metadata"]["destroyed"], true);
        assert_ne!(body["data"]["metadata"]["deletion_time"], "");
        assert_eq!(s.get("secret/data/app?version=1").0, 200);
    }
}
