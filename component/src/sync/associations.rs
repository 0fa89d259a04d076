//! PLACEHOLDER for associations (being written). The public functions are the
//! contract other modules rely on.

use crate::api::{LogicalRequest, Reply};
use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::storage::Tx;
use crate::sync::destinations::Destination;

/// `GET sys/sync/destinations/:type/:name/associations`.
pub fn read(_tx: &mut Tx, _kind: &str, _name: &str) -> ApiResult<Reply> {
    Err(ApiError::UnsupportedPath)
}

/// `POST .../associations/set`.
pub fn set(
    _tx: &mut Tx,
    _env: &Env,
    _req: &LogicalRequest,
    _kind: &str,
    _name: &str,
) -> ApiResult<Reply> {
    Err(ApiError::UnsupportedPath)
}

/// `POST .../associations/remove`.
pub fn remove(
    _tx: &mut Tx,
    _env: &Env,
    _req: &LogicalRequest,
    _kind: &str,
    _name: &str,
) -> ApiResult<Reply> {
    Err(ApiError::UnsupportedPath)
}

/// `LIST sys/sync/associations`.
pub fn list_all(_tx: &mut Tx) -> ApiResult<Reply> {
    Err(ApiError::UnsupportedPath)
}

/// `GET sys/sync/associations/destinations` and `sys/sync/associations/:mount/*name`.
pub fn destinations_of_secret(_tx: &mut Tx, _mount: &str, _secret_name: &str) -> ApiResult<Reply> {
    Err(ApiError::UnsupportedPath)
}

/// Whether the destination has any association.
pub fn has_any(tx: &mut Tx, kind: &str, name: &str) -> ApiResult<bool> {
    Ok(!tx
        .list(&crate::sync::keys::associations_of(kind, name), Some('/'))?
        .is_empty())
}

/// Unsyncs every association of `dest` and drops them (purge). `Ok(Err(msg))`
/// when some external object could not be deleted: the failed associations
/// are kept, with their error status, and `msg` becomes `purge_error`.
pub fn unsync_all(_tx: &mut Tx, _env: &Env, _dest: &Destination) -> ApiResult<Result<(), String>> {
    Err(ApiError::UnsupportedPath)
}

/// Drops every association of the destination without touching external
/// objects (`force_delete`: they are orphaned).
pub fn drop_all(_tx: &mut Tx, _dest: &Destination) -> ApiResult<()> {
    Err(ApiError::UnsupportedPath)
}
