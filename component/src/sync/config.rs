//! `sys/sync/config`: the global switch and queue capacity.

use serde::{Deserialize, Serialize};

use crate::api::Reply;
use crate::effects::Change;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec, FieldType};
use crate::storage::Tx;
use crate::sync::keys;

pub const DEFAULT_QUEUE_CAPACITY: i64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncConfig {
    pub disabled: bool,
    pub queue_capacity: i64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            disabled: false,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

impl SyncConfig {
    pub fn load(tx: &mut Tx) -> ApiResult<Self> {
        Ok(tx.get_json(keys::CONFIG)?.unwrap_or_default())
    }
}

pub const FIELDS: &[FieldSpec] = &[
    FieldSpec::new("disabled", FieldType::Bool)
        .describe("Whether sync is suspended; queued work waits until it is enabled again."),
    FieldSpec::new("queue_capacity", FieldType::Int)
        .describe("The largest number of sync operations the queue holds."),
];

fn reply(config: &SyncConfig) -> ApiResult<Reply> {
    let data = serde_json::to_value(config).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Reply::data(data))
}

/// `GET sys/sync/config`.
pub fn read(tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    reply(&SyncConfig::load(tx)?)
}

/// `PATCH sys/sync/config` (Vault documents PATCH; POST/PUT are accepted with
/// the same merge semantics).
pub fn write(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let fields = &call.fields;
    let mut config = SyncConfig::load(tx)?;
    if let Some(d) = fields.bool("disabled") {
        if config.disabled && !d {
            // Work queued while sync was off is due now, wherever it is.
            tx.record(Change::SyncDueEverywhere);
        }
        config.disabled = d;
    }
    if let Some(q) = fields.int("queue_capacity") {
        if q < 1 {
            return Err(ApiError::bad_request(format!(
                "queue_capacity must be a positive number of operations, got {q}"
            )));
        }
        config.queue_capacity = q;
    }
    tx.put_json(keys::CONFIG, &config)?;
    reply(&config)
}

/// `DELETE sys/sync/config`: back to the defaults.
pub fn delete(tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    tx.delete(keys::CONFIG);
    reply(&SyncConfig::default())
}
