//! `auth/token/lookup-self`: hvac's `is_authenticated` and the Vault CLI call it.

use serde_json::json;

use crate::api::{LogicalRequest, Operation, Reply};
use crate::error::{ApiError, ApiResult};
use crate::time;

pub fn handle(req: &LogicalRequest, rest: &str) -> ApiResult<Reply> {
    match (rest, req.operation) {
        ("lookup-self", Operation::Read | Operation::Create | Operation::Update) => {
            lookup_self(req)
        }
        ("lookup-self", _) => Err(ApiError::UnsupportedOperation),
        _ => Err(ApiError::UnsupportedPath),
    }
}

fn lookup_self(req: &LogicalRequest) -> ApiResult<Reply> {
    let caller = req.caller.as_ref().ok_or(ApiError::PermissionDenied)?;
    let creation = i64::try_from(caller.creation_time).unwrap_or(0);
    let root = caller.policies.iter().any(|p| p == "root");
    Ok(Reply::data(json!({
        "accessor": caller.accessor,
        "creation_time": creation,
        "creation_ttl": 0,
        "display_name": caller.display_name,
        "entity_id": "",
        "expire_time": null,
        "explicit_max_ttl": 0,
        "id": caller.token,
        "issue_time": time::rfc3339(creation.saturating_mul(1_000_000_000)),
        "meta": null,
        "num_uses": 0,
        "orphan": root,
        "path": caller.path,
        "policies": caller.policies,
        "renewable": false,
        "ttl": 0,
        "type": "service",
    })))
}
