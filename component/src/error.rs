//! The engine's one error type, mapped to Vault's status codes and `{"errors":[...]}`
//! bodies in exactly one place ([`ApiError::status`] and [`ApiError::messages`]).

use std::fmt;

use crate::keyring::KeyringError;
use crate::namespaces::NamespaceError;
use crate::policies::PolicyError;
use crate::storage::StorageError;
use crate::tokens::TokenError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the request is invalid; the message says what and how to fix it.
    BadRequest(String),
    /// 403 `permission denied`.
    PermissionDenied,
    /// 403 with a specific message (e.g. the secret-read check of `associations/set`).
    Forbidden(String),
    /// 404 with an empty `errors` list: the object or list does not exist.
    NotFound,
    /// 404: no mount serves this path.
    NoHandler(String),
    /// 404: the mount exists but has no such path.
    UnsupportedPath,
    /// 405: the path exists but not with this method.
    UnsupportedOperation,
    /// 415: a PATCH without the merge-patch content type.
    UnsupportedMediaType(String),
    /// A storage compare-and-swap failed: the router runs the request again.
    Conflict,
    /// 503: storage failed; the request may be retried.
    Unavailable(String),
    /// 500: a bug or corrupt state. The detail is for the log, never the client.
    Internal(String),
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::PermissionDenied | ApiError::Forbidden(_) => 403,
            ApiError::NotFound | ApiError::NoHandler(_) | ApiError::UnsupportedPath => 404,
            ApiError::UnsupportedOperation => 405,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Internal(_) => 500,
            ApiError::Conflict | ApiError::Unavailable(_) => 503,
        }
    }

    /// The strings of the `errors` array.
    pub fn messages(&self) -> Vec<String> {
        match self {
            ApiError::BadRequest(m) | ApiError::Forbidden(m) => vec![m.clone()],
            ApiError::PermissionDenied => vec!["permission denied".to_string()],
            ApiError::NotFound => vec![],
            ApiError::NoHandler(path) => {
                vec![format!(
                    "no handler for route \"{path}\". route entry not found."
                )]
            }
            ApiError::UnsupportedPath => vec!["unsupported path".to_string()],
            ApiError::UnsupportedOperation => vec!["unsupported operation".to_string()],
            ApiError::UnsupportedMediaType(provided) => vec![format!(
                "PATCH requires Content-Type of application/merge-patch+json, provided {provided}"
            )],
            ApiError::Conflict => {
                vec!["the request conflicted with concurrent changes; retry it".to_string()]
            }
            ApiError::Unavailable(_) => {
                vec!["storage is unavailable; retry the request".to_string()]
            }
            ApiError::Internal(_) => vec!["internal error".to_string()],
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Internal(detail) | ApiError::Unavailable(detail) => {
                write!(f, "{}: {detail}", self.status())
            }
            other => write!(f, "{}: {}", other.status(), other.messages().join("; ")),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Conflict => ApiError::Conflict,
            StorageError::Invalid(m) => {
                ApiError::BadRequest(format!("invalid storage key or value: {m}"))
            }
            StorageError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

/// The policy store's errors already say their class; the message is
/// Vault's (a storage failure's stays in the log).
impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::BadRequest(m) => ApiError::BadRequest(m),
            PolicyError::Forbidden(m) => ApiError::Forbidden(m),
            PolicyError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

/// The keyring's errors already say their class (a storage failure's message
/// stays in the log).
impl From<KeyringError> for ApiError {
    fn from(e: KeyringError) -> Self {
        match e {
            KeyringError::BadRequest(m) => ApiError::BadRequest(m),
            KeyringError::Forbidden(m) => ApiError::Forbidden(m),
            KeyringError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

/// The namespace store's errors already say their class (a storage
/// failure's message stays in the log).
impl From<NamespaceError> for ApiError {
    fn from(e: NamespaceError) -> Self {
        match e {
            NamespaceError::BadRequest(m) => ApiError::BadRequest(m),
            NamespaceError::Forbidden(m) => ApiError::Forbidden(m),
            NamespaceError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

/// The token store's errors already say their class; the message is
/// Vault's (a storage failure's stays in the log).
impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::BadRequest(m) => ApiError::BadRequest(m),
            TokenError::Forbidden(m) => ApiError::Forbidden(m),
            TokenError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
