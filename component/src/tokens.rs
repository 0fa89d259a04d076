//! The engine's view of the host's `tokens` import: the token store of the
//! request's namespace. The host keeps the records and applies every rule
//! that needs the caller, its policies, the token tree or the clock; the
//! engine parses the token endpoints' fields and writes Vault's answers
//! (`auth::token`).
//!
//! [`Minimal`] is an in-memory stand-in for native tests: it records what it
//! is asked and answers with plausible records, without the host's rules.

use std::cell::RefCell;

/// Why an operation of the token store failed (WIT `token-error`); mapped to
/// the answer in `error.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// 400 with this message.
    BadRequest(String),
    /// 403 with this message.
    Forbidden(String),
    /// 503: the storage failed (the message is for the log).
    Unavailable(String),
}

/// Which token an operation is about.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// The token of the request.
    Caller,
    Token(String),
    Accessor(String),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Caller => f.write_str("Caller"),
            Target::Token(_) => f.write_str("Token(*****)"),
            Target::Accessor(a) => f.debug_tuple("Accessor").field(a).finish(),
        }
    }
}

/// What a create request asks for, its fields parsed (0 and empty: unset).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CreateRequest {
    /// Served at `create-orphan`.
    pub orphan_endpoint: bool,
    pub policies: Option<Vec<String>>,
    pub meta: Option<Vec<(String, String)>>,
    pub no_parent: bool,
    pub no_default_policy: bool,
    pub renewable: bool,
    pub ttl: u64,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub display_name: String,
    pub num_uses: u64,
    pub id: Option<String>,
}

impl std::fmt::Debug for CreateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateRequest")
            .field("orphan_endpoint", &self.orphan_endpoint)
            .field("policies", &self.policies)
            .field("ttl", &self.ttl)
            .field("id", &self.id.as_ref().map(|_| "*****"))
            .finish_non_exhaustive()
    }
}

/// A token's lease (times in nanoseconds since the Unix epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    pub issue_time: u64,
    /// `None`: it never expires.
    pub expire_time: Option<u64>,
    pub last_renewal_time: Option<u64>,
    /// Whether a renewal would be accepted now.
    pub renewable: bool,
    /// Seconds left; 0 for a token that never expires.
    pub ttl: i64,
}

/// A token as lookups show it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TokenInfo {
    /// The token; empty when it was named by its accessor.
    pub id: String,
    pub accessor: String,
    pub policies: Vec<String>,
    pub path: String,
    pub meta: Option<Vec<(String, String)>>,
    pub display_name: String,
    /// Uses left; 0: unlimited; -1: its last use is being made.
    pub num_uses: i64,
    pub orphan: bool,
    /// Seconds since the Unix epoch.
    pub creation_time: u64,
    pub creation_ttl: u64,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub lease: Lease,
    /// Empty in the root namespace.
    pub namespace_path: String,
}

impl std::fmt::Debug for TokenInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenInfo")
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("path", &self.path)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// A token created or renewed: what an `auth` block shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issued {
    pub info: TokenInfo,
    pub lease_duration: u64,
    pub renewable: bool,
    pub warnings: Vec<String>,
}

/// The token store (WIT `tokens`).
pub trait Tokens {
    fn create(&self, req: &CreateRequest) -> Result<Issued, TokenError>;
    fn lookup(&self, which: &Target) -> Result<Option<TokenInfo>, TokenError>;
    fn renew(&self, which: &Target, increment: u64) -> Result<Option<Issued>, TokenError>;
    fn revoke(&self, which: &Target) -> Result<bool, TokenError>;
    fn revoke_orphan(&self, token: &str) -> Result<bool, TokenError>;
    fn list_accessors(&self) -> Result<Vec<String>, TokenError>;
    fn tidy(&self) -> Result<(), TokenError>;
}

/// A stand-in for native tests: tokens in a list, with none of the host's
/// rules. The caller is token `caller`; a created token is `tok-<n>` with
/// accessor `acc-<n>`, the policies asked for (or `default`), and the TTL
/// asked for (or 768h). [`Minimal::fail`] makes every call fail.
#[derive(Default)]
pub struct Minimal {
    tokens: RefCell<Vec<TokenInfo>>,
    failure: RefCell<Option<TokenError>>,
    /// The create requests received, in order.
    pub created: RefCell<Vec<CreateRequest>>,
}

impl Minimal {
    /// A store holding only the caller's token (`caller`, root).
    pub fn new() -> Self {
        let store = Minimal::default();
        store.tokens.borrow_mut().push(TokenInfo {
            id: "caller".into(),
            accessor: "acc-caller".into(),
            policies: vec!["root".into()],
            path: "auth/token/root".into(),
            display_name: "root".into(),
            orphan: true,
            ..TokenInfo::default()
        });
        store
    }

    /// Every later call fails with `error`.
    pub fn fail(&self, error: TokenError) {
        *self.failure.borrow_mut() = Some(error);
    }

    fn check(&self) -> Result<(), TokenError> {
        match &*self.failure.borrow() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn position(&self, which: &Target) -> Option<usize> {
        self.tokens.borrow().iter().position(|t| match which {
            Target::Caller => t.id == "caller",
            Target::Token(id) => &t.id == id,
            Target::Accessor(a) => &t.accessor == a,
        })
    }

    fn find(&self, which: &Target) -> Option<TokenInfo> {
        let found = self
            .position(which)
            .and_then(|i| self.tokens.borrow().get(i).cloned())?;
        Some(match which {
            Target::Accessor(_) => TokenInfo {
                id: String::new(),
                ..found
            },
            _ => found,
        })
    }
}

impl Tokens for Minimal {
    fn create(&self, req: &CreateRequest) -> Result<Issued, TokenError> {
        self.check()?;
        self.created.borrow_mut().push(req.clone());
        let n = self.tokens.borrow().len();
        let ttl = if req.ttl > 0 { req.ttl } else { 768 * 3600 };
        let info = TokenInfo {
            id: format!("tok-{n}"),
            accessor: format!("acc-{n}"),
            policies: req
                .policies
                .clone()
                .unwrap_or_else(|| vec!["default".into()]),
            path: "auth/token/create".into(),
            meta: req.meta.clone(),
            display_name: "token".into(),
            num_uses: i64::try_from(req.num_uses).unwrap_or(i64::MAX),
            orphan: req.orphan_endpoint || req.no_parent,
            creation_ttl: ttl,
            lease: Lease {
                expire_time: Some(ttl.saturating_mul(1_000_000_000)),
                renewable: req.renewable,
                ttl: i64::try_from(ttl).unwrap_or(i64::MAX),
                ..Lease::default()
            },
            ..TokenInfo::default()
        };
        self.tokens.borrow_mut().push(info.clone());
        Ok(Issued {
            info,
            lease_duration: ttl,
            renewable: req.renewable,
            warnings: Vec::new(),
        })
    }

    fn lookup(&self, which: &Target) -> Result<Option<TokenInfo>, TokenError> {
        self.check()?;
        Ok(self.find(which))
    }

    fn renew(&self, which: &Target, increment: u64) -> Result<Option<Issued>, TokenError> {
        self.check()?;
        Ok(self.find(which).map(|info| Issued {
            lease_duration: if increment > 0 {
                increment
            } else {
                info.creation_ttl
            },
            renewable: info.lease.renewable,
            warnings: Vec::new(),
            info,
        }))
    }

    fn revoke(&self, which: &Target) -> Result<bool, TokenError> {
        self.check()?;
        Ok(match self.position(which) {
            Some(i) => {
                self.tokens.borrow_mut().remove(i);
                true
            }
            None => false,
        })
    }

    fn revoke_orphan(&self, token: &str) -> Result<bool, TokenError> {
        self.revoke(&Target::Token(token.to_string()))
    }

    fn list_accessors(&self) -> Result<Vec<String>, TokenError> {
        self.check()?;
        let mut keys: Vec<String> = self
            .tokens
            .borrow()
            .iter()
            .map(|t| t.accessor.clone())
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn tidy(&self) -> Result<(), TokenError> {
        self.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `engine_request` fuzz target: `auth/token/create` with a
    /// TTL of about 585 years overflowed the stand-in's expiry in nanoseconds
    /// (the host's store saturates, and so does the stand-in now).
    #[test]
    fn a_huge_ttl_saturates_the_expiry() {
        let store = Minimal::new();
        let issued = store
            .create(&CreateRequest {
                ttl: u64::MAX / 1000,
                ..CreateRequest::default()
            })
            .unwrap();
        assert_eq!(issued.info.lease.expire_time, Some(u64::MAX));
    }
}
