//! `auth/token/create`, `create-orphan` and `create/:role_name`.
//!
//! Refused here, from the request alone (in Vault's order): `type` other
//! than `service` (`batch` is not supported), a negative `num_uses`, an
//! `entity_alias` (it needs a token role), negative durations. The host
//! decides the rest: the parent's rights, the policies, the TTL.

use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, Fields};
use crate::storage::Tx;
use crate::tokens::CreateRequest;

use super::render;

pub fn create(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    create_token(call, false)
}

pub fn create_orphan(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    create_token(call, true)
}

/// Token roles are not supported, so no role exists.
pub fn create_against_role(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    Err(ApiError::bad_request(format!(
        "unknown role {}",
        call.param("role_name")
    )))
}

fn create_token(call: &Call, orphan_endpoint: bool) -> ApiResult<Reply> {
    let req = request(&call.fields, orphan_endpoint)?;
    let issued = call.env.tokens.create(&req)?;
    Ok(Reply::auth(render::auth_block(&issued)).with_warnings(issued.warnings))
}

/// A duration field that must not be negative: 0 when unset.
fn non_negative(fields: &Fields, name: &str) -> ApiResult<u64> {
    let secs = fields.duration(name).unwrap_or(0);
    u64::try_from(secs).map_err(|_| ApiError::bad_request(format!("{name} must be positive")))
}

/// The create request the fields ask for (`""`, `0` and `null` are unset).
fn request(fields: &Fields, orphan_endpoint: bool) -> ApiResult<CreateRequest> {
    match fields.string("type").unwrap_or_default() {
        "" | "service" => {}
        "batch" => return Err(ApiError::bad_request("batch tokens are not supported")),
        _ => return Err(ApiError::bad_request("invalid 'token_type' value")),
    }
    let num_uses = u64::try_from(fields.int("num_uses").unwrap_or(0))
        .map_err(|_| ApiError::bad_request("number of uses cannot be negative"))?;
    if !fields.string("entity_alias").unwrap_or_default().is_empty() {
        return Err(ApiError::bad_request(
            "'entity_alias' is only allowed in combination with token role",
        ));
    }
    let explicit_max_ttl = non_negative(fields, "explicit_max_ttl")?;
    let period = non_negative(fields, "period")?;
    let ttl = match non_negative(fields, "ttl")? {
        0 => non_negative(fields, "lease")?,
        ttl => ttl,
    };
    Ok(CreateRequest {
        orphan_endpoint,
        policies: fields.strings("policies").filter(|p| !p.is_empty()),
        meta: fields.string_map("meta").map(|m| m.into_iter().collect()),
        no_parent: fields.bool("no_parent").unwrap_or(false),
        no_default_policy: fields.bool("no_default_policy").unwrap_or(false),
        renewable: fields.bool("renewable").unwrap_or(true),
        ttl,
        explicit_max_ttl,
        period,
        display_name: fields
            .string("display_name")
            .unwrap_or_default()
            .to_string(),
        num_uses,
        id: fields
            .string("id")
            .filter(|id| !id.is_empty())
            .map(str::to_string),
    })
}
