//! `auth/token/lookup-self`: hvac's `is_authenticated` and the Vault CLI call it.

use serde_json::json;

use crate::api::Operation::{Read, Update};
use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Backend, Call, Path, op};
use crate::storage::Tx;
use crate::time;

pub static BACKEND: Backend = Backend::new("auth/token/", "token", PATHS);

const PATHS: &[Path] = &[Path::new(
    "lookup-self",
    "Information about the token of the request.",
    &[
        op(
            Read,
            "token-look-up-self",
            "Look up the calling token.",
            lookup_self,
        ),
        op(
            Update,
            "token-look-up-self2",
            "Look up the calling token (POST form).",
            lookup_self,
        ),
    ],
)];

fn lookup_self(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let caller = call.req.caller.as_ref().ok_or(ApiError::PermissionDenied)?;
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
