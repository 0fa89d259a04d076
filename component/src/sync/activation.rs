//! `sys/activation-flags`: the one-time activation of Secrets Sync. kvsync
//! starts activated; the endpoints exist for clients that call them.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::Operation::{Read, Update};
use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Backend, Call, Path, op};
use crate::storage::Tx;
use crate::sync::keys;

const FEATURE: &str = "secrets-sync";

pub static BACKEND: Backend =
    Backend::new("sys/activation-flags/", "system", PATHS).ignore_trailing_slashes();

const PATHS: &[Path] = &[
    Path::new(
        "",
        "The features that are activated, and those that are not.",
        &[op(
            Read,
            "read-activation-flags",
            "Read the activation flags.",
            read,
        )],
    )
    .unauthenticated(),
    Path::new(
        "secrets-sync/activate",
        "Activates Secrets Sync (it starts activated).",
        &[op(
            Update,
            "activation-flags-activate",
            "Activate Secrets Sync.",
            activate,
        )],
    ),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Activation {
    activated: bool,
}

fn activated(tx: &mut Tx) -> ApiResult<bool> {
    Ok(tx
        .get_json::<Activation>(keys::ACTIVATION)?
        .map(|a| a.activated)
        .unwrap_or(true))
}

/// Every sync endpoint answers 400 while the feature is not activated.
pub fn require_activated(tx: &mut Tx) -> ApiResult<()> {
    if activated(tx)? {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "secrets sync feature has not been activated: POST sys/activation-flags/secrets-sync/activate",
        ))
    }
}

fn flags(active: bool) -> Reply {
    let (on, off): (Vec<&str>, Vec<&str>) = if active {
        (vec![FEATURE], vec![])
    } else {
        (vec![], vec![FEATURE])
    };
    Reply::data(json!({ "activated": on, "unactivated": off }))
}

/// `GET sys/activation-flags`.
fn read(tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    Ok(flags(activated(tx)?))
}

/// `POST sys/activation-flags/secrets-sync/activate`.
fn activate(tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    tx.put_json(keys::ACTIVATION, &Activation { activated: true })?;
    Ok(flags(true))
}
