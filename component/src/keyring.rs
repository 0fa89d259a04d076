//! The engine's view of the host's `keyring` import: the storage barrier's
//! active key and its rotation (`sys/key-status`, `sys/rotate`). The host
//! keeps the keys and answers only a caller in the root namespace.

use std::cell::Cell;

/// Why the keyring refused or failed (WIT `keyring.keyring-error`): the
/// status class, with Vault's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringError {
    /// 400 (a namespace other than the root one).
    BadRequest(String),
    /// 403.
    Forbidden(String),
    /// 503; the message is for the log.
    Unavailable(String),
}

/// The active key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStatus {
    pub term: u32,
    /// Nanoseconds since the Unix epoch.
    pub install_time: crate::time::Nanos,
    pub encryptions: u64,
}

/// The storage's keyring (the host's `keyring` import).
pub trait Keyring {
    fn status(&self) -> Result<KeyStatus, KeyringError>;
    /// Adds a key that seals every write from now on; its status.
    fn rotate(&self) -> Result<KeyStatus, KeyringError>;
}

/// No keyring (an engine linked natively without storage encryption): every
/// call is unavailable.
pub struct NoKeyring;

impl Keyring for NoKeyring {
    fn status(&self) -> Result<KeyStatus, KeyringError> {
        Err(KeyringError::Unavailable("no keyring".to_string()))
    }

    fn rotate(&self) -> Result<KeyStatus, KeyringError> {
        Err(KeyringError::Unavailable("no keyring".to_string()))
    }
}

/// An in-memory keyring for native tests: term 1 installed at 1 s after the
/// epoch, each rotation one term and one second more, 7 encryptions per term.
pub struct MemKeyring {
    term: Cell<u32>,
}

impl Default for MemKeyring {
    fn default() -> Self {
        MemKeyring { term: Cell::new(1) }
    }
}

impl MemKeyring {
    fn current(&self) -> KeyStatus {
        let term = self.term.get();
        KeyStatus {
            term,
            install_time: i64::from(term) * 1_000_000_000,
            encryptions: 7,
        }
    }
}

impl Keyring for MemKeyring {
    fn status(&self) -> Result<KeyStatus, KeyringError> {
        Ok(self.current())
    }

    fn rotate(&self) -> Result<KeyStatus, KeyringError> {
        self.term.set(self.term.get().saturating_add(1));
        Ok(self.current())
    }
}
