//! ACL policies in Vault's policy language: parsing, compiling several
//! policies into one [`Acl`], and deciding what a request may do.
//!
//! # Documents
//!
//! [`Policy::parse`] reads HCL (the HCL 1 dialect Vault's policies are
//! written in) or the equivalent JSON; a body that decodes cleanly from
//! standard base64 to UTF-8 text is decoded first, as Vault does. The top
//! level holds `path "<pattern>" { ... }` blocks and an optional `name`
//! (ignored: the name comes from the caller). A path block accepts
//! `capabilities`, the legacy `policy` (`deny` → deny; `read` → read, list;
//! `write` → create, read, update, delete, list; `sudo` → write's and sudo),
//! `allowed_parameters`, `denied_parameters`, `required_parameters`,
//! `min_wrapping_ttl`, `max_wrapping_ttl`, `mfa_methods`, `control_group`,
//! `subscribe_event_types` and `comment`; any other key, an unknown
//! capability and `+*` in a pattern are errors. A rule whose capabilities
//! include `deny` is a deny rule and nothing else.
//!
//! Patterns: one leading `/` is dropped. A trailing `*` makes a prefix rule
//! (`secret/foo*` covers `secret/foo`, `secret/food`, `secret/foo/bar`); a `*`
//! anywhere else is a literal character. A `+` segment matches exactly one
//! path segment (`secret/+/config`) and may be combined with a trailing `*`.
//! Anything else is an exact rule. Templated patterns
//! (`identity/entity/id/{{identity.entity.id}}`) are accepted and dropped
//! when compiling: kvsync has no identity entities to fill them with.
//!
//! # Compiling
//!
//! [`Acl::new`] takes the policies of one namespace and that namespace's path
//! (`""` for the root namespace, `team-a/` otherwise). Every pattern is
//! prefixed with the namespace path, and callers evaluate
//! `<request namespace path><request path>`: that one rule keeps a token of
//! `team-a/` inside `team-a/` and its children. Rules with the same pattern
//! (from one policy or several) are merged: capabilities are OR-ed, and a
//! `deny` in any of them leaves only `deny`. Rules with different patterns are
//! never merged. A policy named `root` makes the whole ACL root: everything
//! under its namespace is allowed, `sudo` included.
//!
//! # Which rule applies
//!
//! Exactly one rule decides a request; there is no "deny anywhere wins":
//!
//! 1. An exact rule equal to the path wins outright (for LIST, an exact rule
//!    equal to the path without its trailing `/` also counts).
//! 2. Otherwise the candidates are the longest matching prefix rule and every
//!    matching `+` rule, and the one with the highest priority wins. Comparing
//!    two candidates, the first difference decides, and the candidate with:
//!    1. its first `+` or `*` earlier in the pattern is lower;
//!    2. a trailing `*` (against none) is lower;
//!    3. more `+` segments is lower;
//!    4. the shorter pattern is lower;
//!    5. the lexicographically smaller pattern is lower.
//! 3. No rule: denied.
//!
//! So `secret/*` [deny] with `secret/foo` [read] allows reading `secret/foo`,
//! while `secret/*` [read] with `secret/super` [deny] refuses `secret/super`.
//!
//! LIST requests end in `/` (`secret/metadata/app/`). After the exact rules
//! of step 1, candidates come from both the path and the path without the
//! slash (so `secret/metadata/+` grants LIST on `secret/metadata/x/`). If the
//! most specific `deny` among them is at least as specific as the most
//! specific candidate granting `list`, the deny wins; otherwise that
//! list-granting candidate does; with neither, the best candidate overall.
//!
//! The winning rule then needs the operation's capability (`read`, `list`,
//! `create`, `update`, `patch`, `delete`); root-protected paths also need
//! `sudo` on it ([`Decision::permits`]).
//!
//! # Not enforced
//!
//! `allowed_parameters`, `denied_parameters` and `required_parameters` are
//! parsed and stored (merged per pattern like Vault, see
//! [`Constraints`]) but **not enforced**: a rule grants its capabilities
//! whatever the request body holds. Vault does not apply them to KV-v2 either.
//! `mfa_methods` and `control_group` are stored and not enforced, as in
//! Vault's community edition. `min_wrapping_ttl`/`max_wrapping_ttl` would
//! require response wrapping, which kvsync does not offer, so a winning rule
//! carrying either grants nothing (closed, not open).

mod acl;
mod builtin;
mod hcl;
mod parse;

#[cfg(test)]
mod tests;

pub use acl::{Acl, Decision};
pub use builtin::{DEFAULT_POLICY, DEFAULT_POLICY_TEXT, default_policy, root_policy};
pub use parse::{Constraints, PathRule, PatternKind, Policy, parse};

/// The policy that may do everything.
pub const ROOT_POLICY: &str = "root";

/// One capability a rule may grant (or `deny`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    Create,
    Delete,
    Deny,
    List,
    Patch,
    Read,
    Recover,
    Subscribe,
    Sudo,
    Update,
}

impl Capability {
    /// Every capability, in alphabetical order of their names (the order
    /// `sys/capabilities` answers in).
    pub const ALL: [Capability; 10] = [
        Capability::Create,
        Capability::Delete,
        Capability::Deny,
        Capability::List,
        Capability::Patch,
        Capability::Read,
        Capability::Recover,
        Capability::Subscribe,
        Capability::Sudo,
        Capability::Update,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Delete => "delete",
            Capability::Deny => "deny",
            Capability::List => "list",
            Capability::Patch => "patch",
            Capability::Read => "read",
            Capability::Recover => "recover",
            Capability::Subscribe => "subscribe",
            Capability::Sudo => "sudo",
            Capability::Update => "update",
        }
    }

    /// The capability called `name` (exact, lower case), if there is one.
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == name)
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of capabilities, one bit each. A set holding `deny` holds nothing
/// else once it comes out of the parser or the compiler.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CapabilitySet(u16);

impl CapabilitySet {
    pub const EMPTY: CapabilitySet = CapabilitySet(0);
    pub const DENY: CapabilitySet = CapabilitySet(Capability::Deny.bit());
    /// Every capability but `deny`: what root holds.
    pub const ALL_GRANTS: CapabilitySet =
        CapabilitySet(((1 << Capability::ALL.len()) - 1) & !Capability::Deny.bit());

    pub fn contains(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }

    pub fn insert(&mut self, capability: Capability) {
        self.0 |= capability.bit();
    }

    pub fn union(self, other: CapabilitySet) -> CapabilitySet {
        CapabilitySet(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn is_deny(self) -> bool {
        self.contains(Capability::Deny)
    }

    /// Grants at least one capability other than `deny`, and is not a deny.
    pub fn grants_any(self) -> bool {
        !self.is_deny() && !self.is_empty()
    }

    /// The capabilities in the set, in alphabetical order of their names.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Capability> for CapabilitySet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut set = CapabilitySet::EMPTY;
        for c in iter {
            set.insert(c);
        }
        set
    }
}

impl std::fmt::Debug for CapabilitySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Capability::as_str))
            .finish()
    }
}

/// What a request does, as far as policies are concerned. Renew, revoke and
/// rollback requests are [`Operation::Update`]s; a POST/PUT is `Create` or
/// `Update` by the path's existence check (`Update` where there is none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    List,
    Create,
    Update,
    Patch,
    Delete,
}

impl Operation {
    pub const ALL: [Operation; 6] = [
        Operation::Read,
        Operation::List,
        Operation::Create,
        Operation::Update,
        Operation::Patch,
        Operation::Delete,
    ];

    /// The capability a rule must grant for this operation.
    pub fn capability(self) -> Capability {
        match self {
            Operation::Read => Capability::Read,
            Operation::List => Capability::List,
            Operation::Create => Capability::Create,
            Operation::Update => Capability::Update,
            Operation::Patch => Capability::Patch,
            Operation::Delete => Capability::Delete,
        }
    }
}

/// Why a policy document was refused. The text is Vault's where Vault has
/// one (`path "x": invalid capability "banana"`); the endpoint answers 400
/// with `failed to parse policy: <text>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    message: String,
}

impl PolicyError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        PolicyError {
            message: message.into(),
        }
    }

    /// Several problems at once, in the shape Vault reports them.
    pub(crate) fn many(messages: Vec<String>) -> Self {
        match <[String; 1]>::try_from(messages) {
            Ok([one]) => PolicyError::new(one),
            Err(messages) => {
                let mut text = format!("{} errors occurred:\n", messages.len());
                for m in &messages {
                    text.push_str("\t* ");
                    text.push_str(m);
                    text.push('\n');
                }
                text.push('\n');
                PolicyError::new(text)
            }
        }
    }
}
