//! Authorization: what a caller may do. The single place where that is decided,
//! for the host's own checks and for the engine's `authz` import.
//!
//! Today only the `root` policy grants anything (it grants everything); named
//! policies come with the policy work and will be evaluated here.

use super::Caller;

/// The policy that may do everything.
pub const ROOT_POLICY: &str = "root";

/// Whether `caller` has `capability` (`read`, `create`, ...) on `path`.
/// No caller — an unauthenticated request — may do nothing.
pub fn allowed(caller: Option<&Caller>, capability: &str, path: &str) -> bool {
    let Some(caller) = caller else {
        return false;
    };
    let _ = (capability, path);
    caller.policies.iter().any(|p| p == ROOT_POLICY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Token;

    fn caller(policies: &[&str]) -> Caller {
        Caller {
            token: Token::new("t".into()),
            accessor: "a".into(),
            display_name: "d".into(),
            policies: policies.iter().map(|p| p.to_string()).collect(),
            path: "auth/token/create".into(),
            creation_time: 0,
        }
    }

    #[test]
    fn root_may_do_everything() {
        let root = caller(&["default", "root"]);
        for cap in ["read", "create", "update", "delete", "list", "sudo"] {
            assert!(allowed(Some(&root), cap, "my-kv/data/app/db"));
        }
        assert!(allowed(Some(&root), "read", ""));
    }

    #[test]
    fn anyone_else_is_denied() {
        assert!(!allowed(None, "read", "my-kv/data/app/db"));
        assert!(!allowed(Some(&caller(&[])), "read", "my-kv/data/app/db"));
        let others = caller(&["default", "Root", "root-ish", "admin"]);
        assert!(!allowed(Some(&others), "read", "my-kv/data/app/db"));
    }
}
