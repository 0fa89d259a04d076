//! `sys/activation-flags`: the one-time activation of Secrets Sync. kvsync
//! starts activated (decision 13); the endpoints exist for clients that call them.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::{LogicalRequest, Operation, Reply};
use crate::error::{ApiError, ApiResult};
use crate::storage::Tx;
use crate::sync::keys;

const FEATURE: &str = "secrets-sync";

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

/// `rest` is the path after `sys/activation-flags/`.
pub fn handle(tx: &mut Tx, req: &LogicalRequest, rest: &str) -> ApiResult<Reply> {
    match rest.trim_end_matches('/') {
        "" => match req.operation {
            Operation::Read => Ok(flags(activated(tx)?)),
            _ => Err(ApiError::UnsupportedOperation),
        },
        "secrets-sync/activate" => match req.operation {
            Operation::Create | Operation::Update => {
                tx.put_json(keys::ACTIVATION, &Activation { activated: true })?;
                Ok(flags(true))
            }
            _ => Err(ApiError::UnsupportedOperation),
        },
        _ => Err(ApiError::UnsupportedPath),
    }
}
