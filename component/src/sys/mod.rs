//! The system backend (`sys/...`): mounts, health and the UI's mount lookup.

pub mod health;
pub mod internal_ui;
pub mod mounts;

use crate::api::{LogicalRequest, Reply};
use crate::error::{ApiError, ApiResult};
use crate::storage::Tx;

pub fn handle(tx: &mut Tx, req: &LogicalRequest) -> ApiResult<Reply> {
    let rest = req
        .path
        .strip_prefix("sys")
        .unwrap_or_default()
        .trim_start_matches('/');
    if rest == "health" {
        return health::handle(req);
    }
    if rest == "mounts" || rest == "mounts/" {
        return mounts::handle_table(tx, req);
    }
    if let Some(path) = rest.strip_prefix("mounts/") {
        return mounts::handle_mount(tx, req, path);
    }
    if let Some(path) = rest.strip_prefix("internal/ui/mounts/") {
        return internal_ui::handle_mount(tx, req, path);
    }
    Err(ApiError::UnsupportedPath)
}
