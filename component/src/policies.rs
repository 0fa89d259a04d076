//! The engine's view of the host's `policies` import: the ACL policies of
//! the request's namespace, which the host stores and parses (names are
//! lower-cased there), and the capabilities a token holds.

use std::cell::RefCell;
use std::collections::BTreeMap;

/// Why the policy store refused or failed (WIT `policies.policy-error`): the
/// status class, with Vault's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// 400.
    BadRequest(String),
    /// 403.
    Forbidden(String),
    /// 503; the message is for the log.
    Unavailable(String),
}

/// A policy as stored by the host: its lower-case name and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyText {
    pub name: String,
    pub text: String,
}

/// Whose capabilities [`Policies::capabilities`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The caller of the request.
    Caller,
    Token(String),
    Accessor(String),
}

/// The ACL policies of the request's namespace (the host's `policies`
/// import). The host parses and stores; names are lower-cased there.
pub trait Policies {
    fn read(&self, name: &str) -> Result<Option<PolicyText>, PolicyError>;
    fn write(&self, name: &str, text: &str) -> Result<(), PolicyError>;
    fn delete(&self, name: &str) -> Result<(), PolicyError>;
    /// Sorted names, `root` last.
    fn list(&self) -> Result<Vec<String>, PolicyError>;
    /// The capabilities of `subject` on each path, in order.
    fn capabilities(
        &self,
        subject: &Subject,
        paths: &[String],
    ) -> Result<Vec<Vec<String>>, PolicyError>;
}

/// In-memory policies for native tests: texts are stored as given (nothing
/// is parsed; a text containing `invalid` is refused as unparsable), `root`
/// and `default` behave as the host's built-ins, and capabilities are
/// `["root"]` for the caller and the token `root`, `["read"]` for the token
/// or accessor `reader`.
pub struct MemPolicies {
    stored: RefCell<BTreeMap<String, String>>,
}

impl Default for MemPolicies {
    fn default() -> Self {
        let stored = BTreeMap::from([("default".to_string(), String::new())]);
        MemPolicies {
            stored: RefCell::new(stored),
        }
    }
}

impl Policies for MemPolicies {
    fn read(&self, name: &str) -> Result<Option<PolicyText>, PolicyError> {
        let name = name.trim().to_lowercase();
        if name == "root" {
            return Ok(Some(PolicyText {
                name,
                text: String::new(),
            }));
        }
        let text = self.stored.borrow().get(&name).cloned();
        Ok(text.map(|text| PolicyText { name, text }))
    }

    fn write(&self, name: &str, text: &str) -> Result<(), PolicyError> {
        let name = name.trim().to_lowercase();
        if name == "root" {
            return Err(PolicyError::BadRequest(
                "cannot update \"root\" policy".into(),
            ));
        }
        if text.trim().is_empty() {
            return Err(PolicyError::BadRequest(
                "'policy' parameter not supplied or empty".into(),
            ));
        }
        if text.contains("invalid") {
            return Err(PolicyError::BadRequest(
                "failed to parse policy: invalid".into(),
            ));
        }
        self.stored.borrow_mut().insert(name, text.to_string());
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), PolicyError> {
        match name.trim().to_lowercase().as_str() {
            "root" => Err(PolicyError::BadRequest(
                "cannot delete \"root\" policy".into(),
            )),
            "default" => Err(PolicyError::BadRequest(
                "cannot delete default policy".into(),
            )),
            name => {
                self.stored.borrow_mut().remove(name);
                Ok(())
            }
        }
    }

    fn list(&self) -> Result<Vec<String>, PolicyError> {
        let mut names: Vec<String> = self.stored.borrow().keys().cloned().collect();
        names.push("root".to_string());
        Ok(names)
    }

    fn capabilities(
        &self,
        subject: &Subject,
        paths: &[String],
    ) -> Result<Vec<Vec<String>>, PolicyError> {
        let caps = match subject {
            Subject::Caller => "root",
            Subject::Token(t) if t == "root" => "root",
            Subject::Token(t) if t == "reader" => "read",
            Subject::Accessor(a) if a == "reader" => "read",
            Subject::Token(_) => return Err(PolicyError::BadRequest("invalid token".into())),
            Subject::Accessor(_) => return Err(PolicyError::BadRequest("invalid accessor".into())),
        };
        Ok(paths.iter().map(|_| vec![caps.to_string()]).collect())
    }
}
