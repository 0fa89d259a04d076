//! The built-in policies: `root` (everything, cannot be changed) and
//! `default` (what every token may do about itself; created in every
//! namespace, editable, not deletable).

use super::Policy;
use super::ROOT_POLICY;

/// The name of the default policy.
pub const DEFAULT_POLICY: &str = "default";

/// The default policy's text: Vault's default policy, less what kvsync does
/// not serve (OIDC provider authorization, control groups, `sys/tools/random`).
pub const DEFAULT_POLICY_TEXT: &str = r#"# Every token may look itself up, renew and revoke itself.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}

# ... ask which capabilities it holds on a path,
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# ... and read the ACL its policies add up to (for UIs; the format of this
# internal path may change).
path "sys/internal/ui/resultant-acl" {
  capabilities = ["read"]
}

# Its own identity entity, by id or name.
path "identity/entity/id/{{identity.entity.id}}" {
  capabilities = ["read"]
}
path "identity/entity/name/{{identity.entity.name}}" {
  capabilities = ["read"]
}

# Renew a lease it holds, and look up a lease whose ID it already knows.
path "sys/leases/renew" {
  capabilities = ["update"]
}
path "sys/leases/lookup" {
  capabilities = ["update"]
}

# Its own cubbyhole.
path "cubbyhole/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# Response wrapping: wrap a value, look up and unwrap a wrapping token.
path "sys/wrapping/wrap" {
  capabilities = ["update"]
}
path "sys/wrapping/lookup" {
  capabilities = ["update"]
}
path "sys/wrapping/unwrap" {
  capabilities = ["update"]
}

# Hashing tools.
path "sys/tools/hash" {
  capabilities = ["update"]
}
path "sys/tools/hash/*" {
  capabilities = ["update"]
}
"#;

/// The default policy as shipped. The text is a constant that the tests
/// parse; should it ever fail to parse, the result grants nothing.
pub fn default_policy() -> Policy {
    Policy::parse(DEFAULT_POLICY, DEFAULT_POLICY_TEXT)
        .unwrap_or_else(|_| Policy::empty(DEFAULT_POLICY))
}

/// The root policy: no rules, and [`Acl::new`](super::Acl::new) turns an ACL
/// holding it into one that allows everything in its namespace.
pub fn root_policy() -> Policy {
    Policy::empty(ROOT_POLICY)
}

#[cfg(test)]
mod tests {
    use super::super::{Acl, Operation};
    use super::*;

    #[test]
    fn default_policy_parses_with_the_same_parser() {
        let p = Policy::parse(DEFAULT_POLICY, DEFAULT_POLICY_TEXT).unwrap();
        assert_eq!(p, default_policy());
        assert_eq!(p.rules().len(), 15);
        assert!(p.is_templated());
    }

    #[test]
    fn default_policy_grants() {
        let acl = Acl::new("", [&default_policy()]);
        assert!(
            acl.allows(Operation::Read, "auth/token/lookup-self")
                .allowed()
        );
        assert!(
            !acl.allows(Operation::Update, "auth/token/lookup-self")
                .allowed()
        );
        assert!(
            acl.allows(Operation::Update, "auth/token/renew-self")
                .allowed()
        );
        assert!(
            acl.allows(Operation::Update, "auth/token/revoke-self")
                .allowed()
        );
        assert!(
            acl.allows(Operation::Update, "sys/capabilities-self")
                .allowed()
        );
        assert!(
            acl.allows(Operation::Read, "sys/internal/ui/resultant-acl")
                .allowed()
        );
        assert!(acl.allows(Operation::Update, "sys/leases/renew").allowed());
        assert!(acl.allows(Operation::Update, "sys/leases/lookup").allowed());
        assert!(!acl.allows(Operation::List, "sys/leases/lookup/").allowed());
        assert!(acl.allows(Operation::Create, "cubbyhole/x").allowed());
        assert!(acl.allows(Operation::List, "cubbyhole/").allowed());
        assert!(
            acl.allows(Operation::Update, "sys/wrapping/unwrap")
                .allowed()
        );
        assert!(
            acl.allows(Operation::Update, "sys/tools/hash/sha2-256")
                .allowed()
        );
        assert!(!acl.allows(Operation::Read, "secret/data/x").allowed());
        assert!(
            !acl.allows(Operation::List, "sys/sync/destinations/")
                .allowed()
        );
        // Templated rules are dropped: no entity to fill them with.
        assert!(!acl.allows(Operation::Read, "identity/entity/id/").allowed());
        assert_eq!(
            acl.capabilities("identity/entity/id/{{identity.entity.id}}"),
            ["deny"]
        );
        assert_eq!(
            acl.capabilities("cubbyhole/a"),
            ["create", "delete", "list", "read", "update"]
        );
    }

    #[test]
    fn root_policy_is_root() {
        let root = root_policy();
        assert_eq!(root.name(), "root");
        assert_eq!(root.text(), "");
        assert!(Acl::new("", [&root]).is_root());
    }
}
