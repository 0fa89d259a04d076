//! Lookup, renewal and revocation of tokens (the caller's own, by value or
//! by accessor), the accessor listing, tidy, and the role paths (there are
//! no roles). A token the store does not know gets each endpoint's answer
//! from Vault: `lookup` 403 `bad token`, `renew` 400 `token not found`, the
//! accessor forms 400 `invalid accessor`, `revoke` a silent 204,
//! `revoke-accessor` a 200 with a warning.

use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::Call;
use crate::storage::Tx;
use crate::tokens::Target;

use super::render;

const MISSING_TOKEN: &str = "missing token ID";
const MISSING_ACCESSOR: &str = "missing accessor";
const INVALID_ACCESSOR: &str = "invalid accessor";

/// The non-empty string field `name`, or a 400 with `missing`.
fn required<'c>(call: &'c Call, name: &str, missing: &str) -> ApiResult<&'c str> {
    match call.fields.string(name) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(ApiError::bad_request(missing)),
    }
}

fn accessor(call: &Call) -> ApiResult<Target> {
    required(call, "accessor", MISSING_ACCESSOR).map(|a| Target::Accessor(a.to_string()))
}

fn lookup_of(call: &Call, which: &Target, unknown: ApiError) -> ApiResult<Reply> {
    let info = call.env.tokens.lookup(which)?.ok_or(unknown)?;
    Ok(Reply::data(render::lookup_data(&info)))
}

pub fn lookup_self(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    lookup_of(call, &Target::Caller, bad_token())
}

/// `lookup`: the body's (or query's) `token`, else the caller's own.
pub fn lookup(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let which = match call.fields.string("token") {
        Some(token) if !token.is_empty() => Target::Token(token.to_string()),
        _ => Target::Caller,
    };
    lookup_of(call, &which, bad_token())
}

pub fn lookup_accessor(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    lookup_of(
        call,
        &accessor(call)?,
        ApiError::bad_request(INVALID_ACCESSOR),
    )
}

fn bad_token() -> ApiError {
    ApiError::Forbidden("bad token".to_string())
}

fn renew_of(call: &Call, which: &Target, unknown: ApiError) -> ApiResult<Reply> {
    // A negative increment counts as none, as in Vault.
    let increment = u64::try_from(call.fields.duration("increment").unwrap_or(0)).unwrap_or(0);
    let issued = call.env.tokens.renew(which, increment)?.ok_or(unknown)?;
    Ok(Reply::auth(render::auth_block(&issued)).with_warnings(issued.warnings))
}

pub fn renew_self(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    renew_of(call, &Target::Caller, token_not_found())
}

pub fn renew(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let token = required(call, "token", MISSING_TOKEN)?;
    renew_of(call, &Target::Token(token.to_string()), token_not_found())
}

pub fn renew_accessor(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    renew_of(
        call,
        &accessor(call)?,
        ApiError::bad_request(INVALID_ACCESSOR),
    )
}

fn token_not_found() -> ApiError {
    ApiError::bad_request("token not found")
}

pub fn revoke_self(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    call.env.tokens.revoke(&Target::Caller)?;
    Ok(Reply::no_content())
}

/// `revoke`: an unknown token is revoked already (204).
pub fn revoke(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let token = required(call, "token", MISSING_TOKEN)?;
    call.env.tokens.revoke(&Target::Token(token.to_string()))?;
    Ok(Reply::no_content())
}

pub fn revoke_accessor(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let found = call.env.tokens.revoke(&accessor(call)?)?;
    Ok(match found {
        true => Reply::no_content(),
        false => {
            Reply::no_content().with_warning(Some("No token found with this accessor".to_string()))
        }
    })
}

/// `revoke-orphan`: the host checks that the caller is root or has `sudo`
/// on this path.
pub fn revoke_orphan(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let token = required(call, "token", MISSING_TOKEN)?;
    match call.env.tokens.revoke_orphan(token)? {
        true => Ok(Reply::no_content()),
        false => Err(ApiError::bad_request("token to revoke not found")),
    }
}

pub fn list_accessors(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    Reply::keys(call.env.tokens.list_accessors()?)
}

/// `tidy`: the host's sweep removes the records of expired and revoked
/// tokens in the background; this asks for one now.
pub fn tidy(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    call.env.tokens.tidy()?;
    Ok(Reply::no_content()
        .with_warning(Some(
            "Tidy operation successfully started. Any information from the operation will be \
             printed to kvsync's server logs."
                .to_string(),
        ))
        .with_status(202))
}

/// There are no token roles.
pub fn list_roles(_tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    Err(ApiError::NotFound)
}

pub fn read_role(_tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    Err(ApiError::NotFound)
}

pub fn write_role(_tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    Err(ApiError::bad_request("token roles are not supported"))
}
