//! Authorization: what a caller may do, decided in one place for the host's
//! early check and for the engine's `authz` import, on the caller's compiled
//! ACL ([`Acl`], from [`super::PolicyStore::acl`]). No ACL — no caller — may
//! do nothing.
//!
//! Paths are relative to the request's namespace, whose path (`""` for the
//! root, `team-a/` otherwise) is put in front of them here; the ACL's rules
//! carry the path of the namespace the caller's token belongs to. So a token
//! of `team-a/` reaches `team-a/` and its children only, and a root token
//! every namespace.

use std::borrow::Cow;

pub use super::policy::ROOT_POLICY;
use super::policy::{Acl, Capability, Operation};

/// `path`, relative to the namespace at `namespace` (`""`: the root), as
/// the ACL evaluates it.
pub fn full_path<'p>(namespace: &str, path: &'p str) -> Cow<'p, str> {
    let path = path.trim_start_matches('/');
    match namespace {
        "" => Cow::Borrowed(path),
        ns => Cow::Owned(format!("{ns}{path}")),
    }
}

/// Whether `operation` on `path` is granted, with `sudo` as well when the
/// path is root-protected (`sudo`).
pub fn authorize(
    acl: Option<&Acl>,
    namespace: &str,
    operation: Operation,
    path: &str,
    sudo: bool,
) -> bool {
    acl.is_some_and(|acl| {
        acl.allows(operation, &full_path(namespace, path))
            .permits(sudo)
    })
}

/// Whether the caller holds `capability` (`read`, `create`, `update`,
/// `patch`, `delete`, `list` or `sudo`) on `path`. Unknown names are refused.
pub fn allowed(acl: Option<&Acl>, namespace: &str, capability: &str, path: &str) -> bool {
    let Some(acl) = acl else {
        return false;
    };
    let path = full_path(namespace, path);
    let operation = match Capability::from_name(capability) {
        Some(Capability::Sudo) => return acl.allows(Operation::Read, &path).sudo(),
        Some(Capability::Read) => Operation::Read,
        Some(Capability::List) => Operation::List,
        Some(Capability::Create) => Operation::Create,
        Some(Capability::Update) => Operation::Update,
        Some(Capability::Patch) => Operation::Patch,
        Some(Capability::Delete) => Operation::Delete,
        _ => return false,
    };
    acl.allows(operation, &path).allowed()
}

/// Whether the caller holds any capability other than `deny` on some rule at
/// or under `prefix` (a mount path such as `secret/`).
pub fn can_reach(acl: Option<&Acl>, namespace: &str, prefix: &str) -> bool {
    acl.is_some_and(|acl| acl.has_any_access_under(&full_path(namespace, prefix)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::{Policy, default_policy, root_policy};

    fn acl(ns: &str, text: &str) -> Acl {
        Acl::new(ns, [&Policy::parse("p", text).unwrap(), &default_policy()])
    }

    #[test]
    fn root_may_do_everything() {
        let root = Acl::new("", [&root_policy()]);
        for cap in [
            "read", "create", "update", "delete", "list", "patch", "sudo",
        ] {
            assert!(allowed(Some(&root), "", cap, "my-kv/data/app/db"), "{cap}");
        }
        assert!(authorize(
            Some(&root),
            "",
            Operation::List,
            "auth/token/accessors/",
            true
        ));
        assert!(can_reach(Some(&root), "", "secret/"));
    }

    #[test]
    fn no_acl_may_do_nothing() {
        assert!(!allowed(None, "", "read", "my-kv/data/app/db"));
        assert!(!authorize(None, "", Operation::Read, "sys/mounts", false));
        assert!(!can_reach(None, "", "secret/"));
    }

    #[test]
    fn policies_decide() {
        let a = acl(
            "",
            r#"
            path "secret/data/*" { capabilities = ["read", "sudo"] }
            path "secret/data/hidden" { capabilities = ["deny"] }
            path "/kv/metadata/" { capabilities = ["list"] }
            "#,
        );
        assert!(allowed(Some(&a), "", "read", "secret/data/app"));
        assert!(allowed(Some(&a), "", "sudo", "secret/data/app"));
        assert!(!allowed(Some(&a), "", "update", "secret/data/app"));
        assert!(!allowed(Some(&a), "", "read", "secret/data/hidden"));
        assert!(!allowed(Some(&a), "", "deny", "secret/data/app"));
        assert!(!allowed(Some(&a), "", "banana", "secret/data/app"));
        assert!(authorize(
            Some(&a),
            "",
            Operation::Read,
            "/secret/data/app",
            true
        ));
        assert!(!authorize(
            Some(&a),
            "",
            Operation::Read,
            "auth/token/lookup-self/x",
            false
        ));
        assert!(authorize(
            Some(&a),
            "",
            Operation::Read,
            "auth/token/lookup-self",
            false
        ));
        assert!(authorize(
            Some(&a),
            "",
            Operation::List,
            "kv/metadata/",
            false
        ));
        assert!(!authorize(
            Some(&a),
            "",
            Operation::List,
            "kv/metadata/x/",
            false
        ));
        assert!(can_reach(Some(&a), "", "secret/"));
        assert!(can_reach(Some(&a), "", "kv/"));
        assert!(!can_reach(Some(&a), "", "other/"));
    }

    #[test]
    fn paths_are_relative_to_the_namespace() {
        let a = acl("team-a/", r#"path "secret/*" { capabilities = ["read"] }"#);
        assert!(allowed(Some(&a), "team-a/", "read", "secret/x"));
        assert!(authorize(
            Some(&a),
            "team-a/",
            Operation::Read,
            "secret/x",
            false
        ));
        assert!(can_reach(Some(&a), "team-a/", "secret/"));
        assert!(!authorize(
            Some(&a),
            "team-a/",
            Operation::Read,
            "team-a/secret/x",
            false
        ));
        // The same token in the root namespace, or a sibling: nothing.
        assert!(!authorize(Some(&a), "", Operation::Read, "secret/x", false));
        assert!(!authorize(
            Some(&a),
            "team-b/",
            Operation::Read,
            "secret/x",
            false
        ));
        // In a child namespace: its rules reach `team-a/child/...` only.
        assert!(!authorize(
            Some(&a),
            "team-a/child/",
            Operation::Read,
            "secret/x",
            false
        ));
    }
}
