//! Routes a logical request to the system backend, the token backend or the
//! secrets engine mounted at its path, and runs it as one storage transaction
//! (run again, a bounded number of times, when a concurrent commit conflicts).
//! Before the transaction commits, the changes the request recorded in it
//! become their sync work in the same commit ([`sync::changes::settle`]);
//! what that made due leaves with the response as its effects.

use crate::api::{self, LogicalRequest, Outcome, Reply, Request};
use crate::effects::Effects;
use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::storage::Tx;
use crate::sys::mounts::MountTable;
use crate::{auth, kv, sync, sys};

/// How often a request is run again after a storage conflict.
const CONFLICT_RETRIES: usize = 8;

pub fn handle(env: &Env, req: Request) -> Outcome {
    let logical = match api::to_logical(req) {
        Ok(l) => l,
        Err(e) => return Outcome::only(api::render_error(&e)),
    };
    let mut last = ApiError::Conflict;
    for _ in 0..CONFLICT_RETRIES {
        let mut tx = Tx::new(env.storage);
        let outcome = route(&mut tx, env, &logical).and_then(|(reply, mount_type)| {
            let settled = sync::changes::settle(&mut tx)?;
            tx.commit()?;
            Ok((
                reply.with_warnings(settled.warnings),
                mount_type,
                settled.sync_due,
            ))
        });
        match outcome {
            Ok((reply, mount_type, sync_due)) => {
                return Outcome {
                    response: api::render(reply, &logical.request_id, mount_type),
                    effects: Effects { sync_due },
                };
            }
            Err(ApiError::Conflict) => last = ApiError::Conflict,
            Err(e) => {
                last = e;
                break;
            }
        }
    }
    if matches!(last, ApiError::Internal(_) | ApiError::Unavailable(_)) {
        // Goes to the host's log through wasi:cli/stderr; never includes request data.
        eprintln!("request {} failed: {last}", logical.request_id);
    }
    Outcome::only(api::render_error(&last))
}

/// Runs a request against a transaction: returns the reply and the `mount_type`
/// of the envelope. Nothing is committed here.
pub fn route(tx: &mut Tx, env: &Env, req: &LogicalRequest) -> ApiResult<(Reply, &'static str)> {
    let path = req.path.as_str();
    if sync::serves(path) {
        return sync::handle(tx, env, req).map(|r| (r, "system"));
    }
    if path == "sys" || path.starts_with("sys/") {
        return sys::handle(tx, req).map(|r| (r, "system"));
    }
    if let Some(rest) = path.strip_prefix("auth/token/") {
        return auth::token::handle(req, rest).map(|r| (r, "token"));
    }
    let table = MountTable::load(tx)?;
    match table.find(path) {
        Some((mount, rest)) if mount.is_kv_v2() => {
            kv::handle(tx, mount, rest, req).map(|r| (r, "kv"))
        }
        _ => Err(ApiError::NoHandler(path.to_string())),
    }
}
