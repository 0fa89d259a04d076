//! The KV version 2 secrets engine (placeholder until the engine lands).

use crate::api::{LogicalRequest, Reply};
use crate::error::{ApiError, ApiResult};
use crate::storage::Tx;
use crate::sys::mounts::MountEntry;

pub fn handle(_tx: &mut Tx, _mount: &MountEntry, _path: &str, _req: &LogicalRequest) -> ApiResult<Reply> {
    Err(ApiError::UnsupportedPath)
}
