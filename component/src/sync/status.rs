//! The nine sync statuses of an association row, as Vault names them.

use serde::{Deserialize, Serialize};

use crate::connector::SyncError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncStatus {
    /// Queued, not processed yet (also every operation while sync is disabled).
    Pending,
    /// A sync is in progress.
    Syncing,
    /// The last sync succeeded; the external copy is up to date.
    Synced,
    /// An unsync is in progress.
    Unsyncing,
    /// The external object was removed (or never written: the secret does not exist).
    Unsynced,
    /// A failure inside kvsync.
    InternalVaultError,
    /// A configuration problem: credentials, permissions, a name the provider rejects.
    ClientSideError,
    /// A provider-side failure: outage, timeout, throttling.
    ExternalServiceError,
    /// The state cannot be determined.
    Unknown,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Pending => "PENDING",
            SyncStatus::Syncing => "SYNCING",
            SyncStatus::Synced => "SYNCED",
            SyncStatus::Unsyncing => "UNSYNCING",
            SyncStatus::Unsynced => "UNSYNCED",
            SyncStatus::InternalVaultError => "INTERNAL_VAULT_ERROR",
            SyncStatus::ClientSideError => "CLIENT_SIDE_ERROR",
            SyncStatus::ExternalServiceError => "EXTERNAL_SERVICE_ERROR",
            SyncStatus::Unknown => "UNKNOWN",
        }
    }

    pub fn is_error(self) -> bool {
        matches!(
            self,
            SyncStatus::InternalVaultError
                | SyncStatus::ClientSideError
                | SyncStatus::ExternalServiceError
        )
    }

    /// The status a failed provider call leaves behind.
    pub fn of_error(e: &SyncError) -> Self {
        match e {
            SyncError::ClientSide(_) => SyncStatus::ClientSideError,
            SyncError::ExternalService { .. } => SyncStatus::ExternalServiceError,
            SyncError::Internal(_) => SyncStatus::InternalVaultError,
            SyncError::Deferred(_) => SyncStatus::Pending,
        }
    }

    /// For aggregating sub-key rows into one status per destination: the worst wins.
    pub fn severity(self) -> u8 {
        match self {
            SyncStatus::Synced => 0,
            SyncStatus::Unsynced => 1,
            SyncStatus::Pending => 2,
            SyncStatus::Syncing | SyncStatus::Unsyncing => 3,
            SyncStatus::Unknown => 4,
            SyncStatus::ExternalServiceError => 5,
            SyncStatus::ClientSideError => 6,
            SyncStatus::InternalVaultError => 7,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialise_as_vault_strings() {
        for s in [
            SyncStatus::Pending,
            SyncStatus::Syncing,
            SyncStatus::Synced,
            SyncStatus::Unsyncing,
            SyncStatus::Unsynced,
            SyncStatus::InternalVaultError,
            SyncStatus::ClientSideError,
            SyncStatus::ExternalServiceError,
            SyncStatus::Unknown,
        ] {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(
            SyncStatus::of_error(&SyncError::ExternalService {
                message: "x".into(),
                retry_after_ms: None
            }),
            SyncStatus::ExternalServiceError
        );
    }
}
