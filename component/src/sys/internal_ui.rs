//! `sys/internal/ui/mounts/<path>`: the Vault CLI's `kv` commands and the
//! Terraform provider ask it which mount serves a path and which KV version
//! runs there. A caller may ask about a mount when it holds any capability
//! other than `deny` at or under the mount's path (root always); a mount it
//! cannot reach, like a path no mount serves, is a 403, never a 404, so the
//! endpoint cannot be used to find out which mounts exist.

use serde_json::Value;

use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::Call;
use crate::storage::Tx;
use crate::sys::mounts::{MountTable, system_mount_json};

/// The system backend's mount path.
const SYS: &str = "sys/";

pub fn read_mount(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let path = call.param("path");
    let table = MountTable::load(tx)?;
    let (mount_path, mut data) = match table.find(path) {
        Some((mount, _)) => (mount.path.clone(), mount.to_json()),
        None if path == "sys" || path.starts_with(SYS) => (SYS.to_string(), system_mount_json()),
        None => return Err(ApiError::PermissionDenied),
    };
    if !call.env.authz.can_reach(&mount_path) {
        return Err(ApiError::PermissionDenied);
    }
    if let Some(obj) = data.as_object_mut() {
        obj.insert("path".to_string(), Value::String(mount_path));
    }
    Ok(Reply::data(data))
}
