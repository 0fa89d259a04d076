//! PLACEHOLDER: `sys/sync/github-apps` (being written).

use crate::api::{LogicalRequest, Reply};
use crate::error::{ApiError, ApiResult};
use crate::storage::Tx;

pub fn list(_tx: &mut Tx) -> ApiResult<Reply> {
    Err(ApiError::UnsupportedPath)
}

pub fn handle(_tx: &mut Tx, _req: &LogicalRequest, _name: &str) -> ApiResult<Reply> {
    Err(ApiError::UnsupportedPath)
}
