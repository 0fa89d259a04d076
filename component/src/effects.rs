//! What a request changed, as typed events, and what the host must act on.
//!
//! A module that changes state records a [`Change`] in the request's
//! transaction ([`crate::storage::Tx::record`]) and knows nothing of who acts
//! on it: the KV engine records that a secret changed, the mount table that a
//! mount is being disabled. Before the transaction commits, the router hands
//! the changes to secrets sync, which queues the work they cause in the same
//! commit and records where sync work became due. What the host must do once
//! the request is answered leaves the engine as [`Effects`] (the WIT
//! `effects` record, returned with the response).

use std::collections::BTreeSet;

/// One change made by a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A KV-v2 secret changed in a way a destination may see: a new current
    /// version, or the current version became unreadable or readable again.
    SecretChanged {
        /// The accessor of the secret's mount.
        mount_accessor: String,
        /// The secret's path below the mount.
        path: String,
    },
    /// The mount with this accessor is being disabled.
    MountDisabled { accessor: String },
    /// Sync work became due now at the destination `<type>/<name>`.
    SyncDue { destination: String },
    /// Sync work became due at every destination that has any (sync was
    /// enabled again).
    SyncDueEverywhere,
}

/// Where sync work became due (WIT `sync-due`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SyncDue {
    #[default]
    None,
    /// At these destinations (`<type>/<name>`), each named once, sorted.
    Destinations(Vec<String>),
    /// At every destination that has queued work.
    All,
}

impl SyncDue {
    /// Where the `changes` of a committed request made sync work due.
    pub fn of(changes: &[Change]) -> Self {
        let mut destinations = BTreeSet::new();
        for change in changes {
            match change {
                Change::SyncDueEverywhere => return SyncDue::All,
                Change::SyncDue { destination } => {
                    destinations.insert(destination);
                }
                _ => {}
            }
        }
        if destinations.is_empty() {
            SyncDue::None
        } else {
            SyncDue::Destinations(destinations.into_iter().cloned().collect())
        }
    }

    pub fn is_none(&self) -> bool {
        *self == SyncDue::None
    }

    /// These places and the destination `<type>/<name>`.
    pub fn and(self, destination: String) -> Self {
        match self {
            SyncDue::None => SyncDue::Destinations(vec![destination]),
            SyncDue::Destinations(mut names) => {
                if let Err(at) = names.binary_search(&destination) {
                    names.insert(at, destination);
                }
                SyncDue::Destinations(names)
            }
            SyncDue::All => SyncDue::All,
        }
    }
}

/// What a request caused that the host must act on (WIT `effects`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The host wakes its sync worker for these.
    pub sync_due: SyncDue,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(destination: &str) -> Change {
        Change::SyncDue {
            destination: destination.into(),
        }
    }

    #[test]
    fn sync_due_names_each_destination_once() {
        let secret = Change::SecretChanged {
            mount_accessor: "kv_1".into(),
            path: "app".into(),
        };
        assert_eq!(SyncDue::of(&[]), SyncDue::None);
        assert!(SyncDue::of(std::slice::from_ref(&secret)).is_none());
        assert_eq!(
            SyncDue::of(&[secret, due("in-mem/b"), due("aws-sm/a"), due("in-mem/b")]),
            SyncDue::Destinations(vec!["aws-sm/a".into(), "in-mem/b".into()])
        );
        assert_eq!(
            SyncDue::of(&[due("in-mem/b"), Change::SyncDueEverywhere]),
            SyncDue::All
        );
    }

    #[test]
    fn a_destination_added_keeps_each_named_once_and_sorted() {
        let a = || "aws-sm/a".to_string();
        let b = || "in-mem/b".to_string();
        assert_eq!(SyncDue::None.and(b()), SyncDue::Destinations(vec![b()]));
        assert_eq!(
            SyncDue::Destinations(vec![b()]).and(a()).and(b()),
            SyncDue::Destinations(vec![a(), b()])
        );
        assert_eq!(SyncDue::All.and(a()), SyncDue::All);
    }
}
