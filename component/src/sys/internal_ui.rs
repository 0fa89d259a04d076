//! `sys/internal/ui/mounts/<path>`: the Vault CLI's `kv` commands ask it which
//! mount serves a path and which KV version runs there.

use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::Call;
use crate::storage::Tx;
use crate::sys::mounts::MountTable;

pub fn read_mount(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let table = MountTable::load(tx)?;
    // Vault answers 403 for unmounted paths so the call cannot enumerate mounts.
    let (mount, _) = table
        .find(call.param("path"))
        .ok_or(ApiError::PermissionDenied)?;
    let mut data = mount.to_json();
    if let Some(obj) = data.as_object_mut() {
        obj.insert(
            "path".to_string(),
            serde_json::Value::String(mount.path.clone()),
        );
    }
    Ok(Reply::data(data))
}
