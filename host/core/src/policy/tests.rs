//! Precedence, LIST and namespace behaviour of compiled ACLs, pinned on
//! Vault's documented examples, and property tests against a naive model.

use super::*;

fn policy(name: &str, text: &str) -> Policy {
    Policy::parse(name, text).unwrap()
}

/// One policy per `(pattern, capabilities)`.
fn policies(rules: &[(&str, &[&str])]) -> Vec<Policy> {
    rules
        .iter()
        .enumerate()
        .map(|(i, (pattern, caps))| {
            let caps: Vec<String> = caps.iter().map(|c| format!("{c:?}")).collect();
            policy(
                &format!("p{i}"),
                &format!(
                    "path {pattern:?} {{ capabilities = [{}] }}",
                    caps.join(", ")
                ),
            )
        })
        .collect()
}

fn acl(rules: &[(&str, &[&str])]) -> Acl {
    Acl::new("", &policies(rules))
}

fn allowed(acl: &Acl, op: Operation, path: &str) -> bool {
    acl.allows(op, path).allowed()
}

use Operation::{Create, Delete, List, Patch, Read, Update};

// The consequences of Vault's precedence, row by row.

#[test]
fn exact_rule_beats_a_glob() {
    let acl = acl(&[("secret/*", &["read"]), ("secret/super", &["deny"])]);
    assert!(!allowed(&acl, Read, "secret/super"));
    assert!(allowed(&acl, Read, "secret/other"));
}

#[test]
fn a_broader_deny_does_not_win() {
    let acl = acl(&[("secret/*", &["deny"]), ("secret/foo", &["read"])]);
    assert!(allowed(&acl, Read, "secret/foo"));
    assert!(!allowed(&acl, Read, "secret/food"));
}

#[test]
fn same_pattern_capabilities_add_up() {
    let acl = acl(&[("secret/*", &["read"]), ("secret/*", &["update"])]);
    assert!(allowed(&acl, Update, "secret/x"));
    assert!(allowed(&acl, Read, "secret/x"));
    assert!(!allowed(&acl, Delete, "secret/x"));
}

#[test]
fn same_pattern_deny_wins_in_any_order() {
    for rules in [
        [("secret/*", &["read"][..]), ("secret/*", &["deny"][..])],
        [("secret/*", &["deny"][..]), ("secret/*", &["read"][..])],
    ] {
        let acl = acl(&rules);
        assert!(!allowed(&acl, Read, "secret/x"));
        assert_eq!(acl.capabilities("secret/x"), ["deny"]);
    }
    // Within one policy too.
    let one = policy(
        "one",
        "path \"a\" { capabilities = [\"read\"] }\npath \"a\" { capabilities = [\"deny\"] }",
    );
    assert!(!allowed(&Acl::new("", [&one]), Read, "a"));
}

#[test]
fn more_plus_segments_rank_lower() {
    let acl = acl(&[("secret/*", &["read"]), ("secret/+/+/foo/*", &["deny"])]);
    assert!(allowed(&acl, Read, "secret/a/b/foo/c"));
}

#[test]
fn longer_pattern_wins_across_namespace_prefixes() {
    // A root-namespace policy naming a child namespace's paths, against the
    // child's own shorter rule, both as full paths.
    let acl = acl(&[
        ("ns1/ns2/ns3/secret/*", &["deny"]),
        ("ns1/ns2/ns3/secret/apps/*", &["read"]),
    ]);
    assert!(allowed(&acl, Read, "ns1/ns2/ns3/secret/apps/x"));
    assert!(!allowed(&acl, Read, "ns1/ns2/ns3/secret/other"));
}

#[test]
fn the_five_priority_rules() {
    // 1. The first wildcard later wins.
    let a = acl(&[("secret/+/x", &["deny"]), ("secret/a/+", &["read"])]);
    assert!(allowed(&a, Read, "secret/a/x"));
    let a = acl(&[("secret/a*", &["read"]), ("secret/+/x", &["deny"])]);
    assert!(allowed(&a, Read, "secret/ab/x"));
    // 2. Not ending in `*` wins.
    let a = acl(&[("secret/+", &["read"]), ("secret/*", &["deny"])]);
    assert!(allowed(&a, Read, "secret/a"));
    let a = acl(&[("secret/+/x", &["read"]), ("secret/+/x*", &["deny"])]);
    assert!(allowed(&a, Read, "secret/a/x"));
    assert!(!allowed(&a, Read, "secret/a/xy"));
    // 3. Fewer `+` segments win.
    let a = acl(&[("secret/+/+/x", &["deny"]), ("secret/+/a/x", &["read"])]);
    assert!(allowed(&a, Read, "secret/b/a/x"));
    // 4. Longer wins.
    let a = acl(&[("secret/+/ab*", &["read"]), ("secret/+/a*", &["deny"])]);
    assert!(allowed(&a, Read, "secret/z/abc"));
    assert!(!allowed(&a, Read, "secret/z/acc"));
    // 5. Lexicographically larger wins.
    let a = acl(&[("+/a/+", &["read"]), ("+/+/a", &["deny"])]);
    assert!(allowed(&a, Read, "a/a/a"));
}

#[test]
fn glob_and_plus_matching() {
    let a = acl(&[("secret/foo*", &["read"])]);
    for path in ["secret/foo", "secret/food", "secret/foo/bar"] {
        assert!(allowed(&a, Read, path), "{path}");
    }
    assert!(!allowed(&a, Read, "secret/fo"));
    // `*` not at the end is a literal character.
    let a = acl(&[("secret/*/x", &["read"])]);
    assert!(allowed(&a, Read, "secret/*/x"));
    assert!(!allowed(&a, Read, "secret/a/x"));
    // `+` is one whole segment, and may precede a trailing `*`.
    let a = acl(&[("secret/+/teamb", &["read"]), ("secret/+/x/*", &["update"])]);
    assert!(allowed(&a, Read, "secret/a/teamb"));
    assert!(!allowed(&a, Read, "secret/a/b/teamb"));
    assert!(!allowed(&a, Read, "secret/teamb"));
    assert!(allowed(&a, Update, "secret/a/x/y/z"));
    assert!(!allowed(&a, Update, "secret/a/x"));
    // `*` alone covers everything; a leading `/` is ignored on both sides.
    let a = acl(&[("/*", &["read"])]);
    assert!(allowed(&a, Read, "anything/at/all"));
    assert!(allowed(&a, Read, "//anything"));
    assert!(allowed(&a, Read, ""));
}

#[test]
fn plus_rules_deeper_than_the_index_still_match() {
    let segment = |i: usize, wild: &'static str| if i.is_multiple_of(3) { wild } else { "x" };
    let pattern: Vec<&str> = (0..40).map(|i| segment(i, "+")).collect();
    let pattern = pattern.join("/");
    let path: Vec<&str> = (0..40).map(|i| segment(i, "anything")).collect();
    let path = path.join("/");
    let glob = format!("{pattern}/y*");
    // (A `*` deny would win over both: same first wildcard, fewer `+`.)
    let a = acl(&[(&pattern, &["read"]), (&glob, &["update"])]);
    assert!(allowed(&a, Read, &path));
    assert!(!allowed(&a, Read, &format!("{path}/more")));
    assert!(allowed(&a, Update, &format!("{path}/yes/more")));
    assert!(!allowed(&a, Update, &format!("{path}/no")));
    assert!(!allowed(&a, Read, &path.replacen("x", "z", 1)));
}

#[test]
fn operations_map_to_capabilities() {
    let a = acl(&[(
        "p/*",
        &["create", "read", "update", "patch", "delete", "list"],
    )]);
    for op in Operation::ALL {
        assert!(allowed(&a, op, "p/x/"), "{op:?}");
    }
    for (cap, op) in [
        ("create", Create),
        ("read", Read),
        ("update", Update),
        ("patch", Patch),
        ("delete", Delete),
        ("list", List),
    ] {
        let a = acl(&[("p/*", &[cap])]);
        for other in Operation::ALL {
            assert_eq!(
                allowed(&a, other, "p/x/"),
                other == op,
                "{cap} vs {other:?}"
            );
        }
    }
}

#[test]
fn sudo_is_a_property_of_the_winning_rule() {
    let a = acl(&[("sys/audit", &["read", "sudo"]), ("sys/*", &["read"])]);
    let d = a.allows(Read, "sys/audit");
    assert!(d.allowed() && d.sudo() && d.permits(true));
    let d = a.allows(Read, "sys/mounts");
    assert!(d.allowed() && !d.sudo() && !d.permits(true) && d.permits(false));
    // `deny` drops `sudo` too.
    let a = acl(&[("sys/audit", &["sudo"]), ("sys/audit", &["deny"])]);
    assert!(!a.allows(Read, "sys/audit").sudo());
}

#[test]
fn a_rule_without_capabilities_still_wins() {
    let a = acl(&[("secret/*", &["read"]), ("secret/x", &[])]);
    assert!(!allowed(&a, Read, "secret/x"));
    assert_eq!(a.capabilities("secret/x"), ["deny"]);
}

#[test]
fn wrapping_ttls_grant_nothing() {
    let p = policy(
        "w",
        "path \"secret/*\" {\n capabilities = [\"read\"]\n max_wrapping_ttl = \"1h\"\n}",
    );
    let a = Acl::new("", [&p]);
    let d = a.allows(Read, "secret/x");
    assert!(!d.allowed());
    assert!(d.capabilities().contains(Capability::Read));
    assert_eq!(a.capabilities("secret/x"), ["read"]);
}

#[test]
fn parameter_constraints_are_stored_not_enforced() {
    let p1 = policy(
        "a",
        r#"path "kv/data/x" {
  capabilities = ["update"]
  allowed_parameters = { "a" = ["1"], "b" = [] }
  required_parameters = ["a"]
}"#,
    );
    let p2 = policy(
        "b",
        r#"path "kv/data/x" {
  capabilities = ["read"]
  allowed_parameters = { "a" = ["2"], "b" = ["3"], "c" = ["4"] }
  denied_parameters = { "*" = [] }
  required_parameters = ["a", "d"]
  mfa_methods = ["totp"]
}"#,
    );
    let a = Acl::new("", [&p1, &p2]);
    let d = a.allows(Update, "kv/data/x");
    assert!(d.allowed());
    let c = d.constraints().unwrap();
    let allowed = c.allowed_parameters.as_ref().unwrap();
    assert_eq!(
        allowed["a"],
        [serde_json::json!("2"), serde_json::json!("1")]
    );
    assert!(allowed["b"].is_empty(), "an empty list (any value) wins");
    assert_eq!(allowed["c"], [serde_json::json!("4")]);
    assert!(c.denied_parameters.as_ref().unwrap()["*"].is_empty());
    assert_eq!(c.required_parameters, ["a", "d"]);
    assert_eq!(c.mfa_methods, ["totp"]);
}

// LIST and trailing slashes.

#[test]
fn list_through_a_glob() {
    let a = acl(&[("secret/metadata/app/*", &["list"])]);
    assert!(allowed(&a, List, "secret/metadata/app/"));
    assert!(allowed(&a, List, "secret/metadata/app/deeper/"));
    assert!(!allowed(&a, List, "secret/metadata/"));
}

#[test]
fn list_through_the_exact_rule_without_slash() {
    let a = acl(&[("secret/metadata/app", &["list"])]);
    assert!(allowed(&a, List, "secret/metadata/app/"));
    assert!(!allowed(&a, Read, "secret/metadata/app/"));
    // The exact slash-less rule decides, deny included.
    let a = acl(&[
        ("secret/metadata/*", &["list"]),
        ("secret/metadata/app", &["deny"]),
    ]);
    assert!(!allowed(&a, List, "secret/metadata/app/"));
    assert!(allowed(&a, List, "secret/metadata/other/"));
    // An exact rule with the slash comes first.
    let a = acl(&[
        ("secret/metadata/app/", &["list"]),
        ("secret/metadata/app", &["deny"]),
    ]);
    assert!(allowed(&a, List, "secret/metadata/app/"));
}

#[test]
fn list_through_a_plus_rule() {
    let a = acl(&[("secret/metadata/+", &["list"])]);
    assert!(allowed(&a, List, "secret/metadata/x/"));
    assert!(!allowed(&a, List, "secret/metadata/x/y/"));
    // Only LIST looks at the slash-less form.
    assert!(!allowed(&a, Read, "secret/metadata/x/"));
}

#[test]
fn list_deny_more_specific_than_the_list_grant_wins() {
    // The slash-less form reaches `kv1/+`; the full form reaches the deny.
    let a = acl(&[("kv1/+", &["list"]), ("kv1/private/*", &["deny"])]);
    assert!(!allowed(&a, List, "kv1/private/"));
    assert!(allowed(&a, List, "kv1/public/"));
    // Without the deny, the list grant of `kv1/+` applies even though the
    // more specific `kv1/private/*` matches the full form.
    let a = acl(&[("kv1/+", &["list"]), ("kv1/private/*", &["read"])]);
    assert!(allowed(&a, List, "kv1/private/"));
    // A less specific deny loses against the list grant.
    let a = acl(&[("kv1/private/+", &["list"]), ("kv1/*", &["deny"])]);
    assert!(allowed(&a, List, "kv1/private/x/"));
    // No list grant and no deny: the best candidate, here granting read only.
    let a = acl(&[("kv1/*", &["list"]), ("kv1/private/*", &["read"])]);
    assert!(!allowed(&a, List, "kv1/private/x/"));
}

// Namespaces and root.

#[test]
fn rules_are_prefixed_with_the_namespace() {
    let p = policy(
        "ns",
        "path \"secret/*\" { capabilities = [\"read\"] }\npath \"child/secret/*\" { capabilities = [\"update\"] }\npath \"+/x\" { capabilities = [\"delete\"] }",
    );
    let a = Acl::new("team-a", [&p]);
    assert_eq!(a.namespace_path(), "team-a/");
    assert!(allowed(&a, Read, "team-a/secret/x"));
    assert!(allowed(&a, Update, "team-a/child/secret/x"));
    assert!(!allowed(&a, Read, "secret/x"), "root namespace path");
    assert!(!allowed(&a, Read, "team-b/secret/x"), "sibling");
    assert!(allowed(&a, Delete, "team-a/y/x"));
    assert!(!allowed(&a, Delete, "team-b/x"));
}

#[test]
fn root_allows_everything_in_its_namespace() {
    let root = root_policy();
    let a = Acl::new("", [&default_policy(), &root]);
    assert!(a.is_root());
    let d = a.allows(Delete, "sys/audit/file");
    assert!(d.allowed() && d.sudo() && d.is_root() && d.permits(true));
    assert_eq!(d.capabilities().iter().count(), 9);
    assert!(!d.capabilities().is_deny());
    assert_eq!(a.capabilities("anything"), ["root"]);
    assert!(a.has_any_access_under("secret/"));
    let a = Acl::new("team-a/", [&root]);
    assert!(allowed(&a, Read, "team-a/secret/x"));
    assert!(!allowed(&a, Read, "team-b/secret/x"));
    assert_eq!(a.capabilities("team-b/x"), ["deny"]);
    assert!(!a.has_any_access_under("secret/"));
}

#[test]
fn no_policies_no_access() {
    let a = Acl::new("", []);
    for op in Operation::ALL {
        assert!(!allowed(&a, op, "secret/x"));
    }
    assert_eq!(a.capabilities("secret/x"), ["deny"]);
    assert!(!a.has_any_access_under("secret/"));
    let empty = Policy::empty("Gone");
    assert_eq!(empty.name(), "gone");
    assert!(!allowed(&Acl::new("", [&empty]), Read, "x"));
}

// sys/capabilities and sys/internal/ui/mounts.

#[test]
fn capabilities_answer_sorted() {
    let a = acl(&[
        (
            "secret/x",
            &[
                "update",
                "read",
                "sudo",
                "create",
                "list",
                "patch",
                "delete",
                "subscribe",
                "recover",
            ],
        ),
        ("secret/metadata/+", &["list"]),
    ]);
    assert_eq!(
        a.capabilities("secret/x"),
        [
            "create",
            "delete",
            "list",
            "patch",
            "read",
            "recover",
            "subscribe",
            "sudo",
            "update"
        ]
    );
    assert_eq!(a.capabilities("/secret/x"), a.capabilities("secret/x"));
    assert_eq!(a.capabilities("secret/y"), ["deny"]);
    // Chosen with LIST's rules.
    assert_eq!(a.capabilities("secret/metadata/app/"), ["list"]);
}

#[test]
fn access_under_a_mount() {
    let a = acl(&[("secret/data/app/*", &["read"])]);
    assert!(a.has_any_access_under("secret/"));
    assert!(a.has_any_access_under("secret"));
    assert!(!a.has_any_access_under("other/"));
    assert!(!a.has_any_access_under("sec/"));
    // An exact rule under the mount, despite a deny on the mount.
    let a = acl(&[("secret/*", &["deny"]), ("secret/data/x", &["read"])]);
    assert!(a.has_any_access_under("secret/"));
    // Only denies.
    let a = acl(&[
        ("secret/*", &["deny"]),
        ("secret/+/x", &["deny"]),
        ("secret/y", &[]),
    ]);
    assert!(!a.has_any_access_under("secret/"));
    // A `+` rule whose first segments match the mount's.
    let a = acl(&[("+/data/*", &["read"])]);
    assert!(a.has_any_access_under("secret/"));
    assert!(!a.has_any_access_under("team/secret/"));
    let a = acl(&[("+/se*", &["read"])]);
    assert!(a.has_any_access_under("x/secret/"));
    // A prefix rule covering the mount itself.
    let a = acl(&[("sec*", &["read"])]);
    assert!(a.has_any_access_under("secret/"));
    // Namespaced: the mount path is the full path.
    let p = policy(
        "n",
        "path \"secret/data/*\" { capabilities = [\"subscribe\"] }",
    );
    let a = Acl::new("team-a/", [&p]);
    assert!(a.has_any_access_under("team-a/secret/"));
    assert!(!a.has_any_access_under("secret/"));
}

// Property tests.

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A rule of the random rule sets: the pattern as written and its
    /// capabilities (`None` for deny).
    #[derive(Clone, Debug)]
    struct GenRule {
        pattern: String,
        caps: Option<Vec<&'static str>>,
    }

    const GRANTS: [&str; 7] = [
        "read", "list", "create", "update", "patch", "delete", "sudo",
    ];

    fn pattern() -> impl Strategy<Value = String> {
        // Segments from a small alphabet so that rules and paths collide
        // often; `+` a quarter of the time; then no tail, a `*` glued to the
        // last segment, or `/*`. `+*` is not valid, so `+` never takes a glued `*`.
        (
            prop::collection::vec(
                prop_oneof![Just("a"), Just("b"), Just("ab"), Just("+")],
                0..4,
            ),
            0..3u8,
        )
            .prop_map(|(segments, tail)| {
                let mut p = segments.join("/");
                match tail {
                    _ if p.is_empty() => p.push('*'),
                    1 if !p.ends_with('+') => p.push('*'),
                    2 => p.push_str("/*"),
                    _ => {}
                }
                p
            })
    }

    fn rule() -> impl Strategy<Value = GenRule> {
        (
            pattern(),
            prop::option::weighted(0.8, prop::sample::subsequence(GRANTS.to_vec(), 0..4)),
        )
            .prop_map(|(pattern, caps)| GenRule { pattern, caps })
    }

    /// Policies of random rules (several policies may repeat a pattern).
    fn rule_sets() -> impl Strategy<Value = Vec<Vec<GenRule>>> {
        prop::collection::vec(prop::collection::vec(rule(), 0..7), 1..4)
    }

    /// Literal paths over the same alphabet, with or without a trailing `/`.
    fn path() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(
                prop_oneof![Just("a"), Just("b"), Just("ab"), Just("ba")],
                1..5,
            ),
            any::<bool>(),
        )
            .prop_map(|(segments, slash)| {
                let mut p = segments.join("/");
                if slash {
                    p.push('/');
                }
                p
            })
    }

    fn operation() -> impl Strategy<Value = Operation> {
        prop::sample::select(Operation::ALL.to_vec())
    }

    fn hcl(rules: &[GenRule]) -> String {
        rules
            .iter()
            .map(|r| {
                let caps = match &r.caps {
                    None => "\"deny\"".to_string(),
                    Some(c) => c
                        .iter()
                        .map(|c| format!("{c:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                format!("path {:?} {{ capabilities = [{caps}] }}\n", r.pattern)
            })
            .collect()
    }

    fn compile(sets: &[Vec<GenRule>]) -> Acl {
        let policies: Vec<Policy> = sets
            .iter()
            .enumerate()
            .map(|(i, rules)| Policy::parse(&format!("p{i}"), &hcl(rules)).unwrap())
            .collect();
        Acl::new("", &policies)
    }

    fn deny_policy(pattern: &str) -> Policy {
        Policy::parse(
            "deny",
            &format!("path {pattern:?} {{ capabilities = [\"deny\"] }}"),
        )
        .unwrap()
    }

    /// A straightforward model of Vault's precedence, written without the
    /// compiled ACL's indexes: every rule is looked at for every request.
    struct Model {
        /// Merged per pattern as written: (pattern, capabilities).
        rules: Vec<(String, CapabilitySet)>,
    }

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Kind {
        Exact,
        Prefix,
        Plus,
    }

    impl Model {
        fn new(sets: &[Vec<GenRule>]) -> Model {
            let mut rules: Vec<(String, CapabilitySet)> = Vec::new();
            for r in sets.iter().flatten() {
                let caps = match &r.caps {
                    None => CapabilitySet::DENY,
                    Some(c) => c
                        .iter()
                        .map(|c| Capability::from_name(c).unwrap())
                        .collect(),
                };
                match rules.iter_mut().find(|(p, _)| *p == r.pattern) {
                    Some((_, existing)) if existing.is_deny() => {}
                    Some((_, existing)) if caps.is_deny() => *existing = CapabilitySet::DENY,
                    Some((_, existing)) => *existing = existing.union(caps),
                    None => rules.push((r.pattern.clone(), caps)),
                }
            }
            Model { rules }
        }

        fn kind(pattern: &str) -> Kind {
            if pattern.split('/').any(|s| s == "+") {
                Kind::Plus
            } else if pattern.ends_with('*') {
                Kind::Prefix
            } else {
                Kind::Exact
            }
        }

        fn matches(pattern: &str, path: &str) -> bool {
            match Model::kind(pattern) {
                Kind::Exact => pattern == path,
                Kind::Prefix => path.starts_with(&pattern[..pattern.len() - 1]),
                Kind::Plus => {
                    let glob = pattern.ends_with('*');
                    let want: Vec<&str> = pattern.trim_end_matches('*').split('/').collect();
                    let have: Vec<&str> = path.split('/').collect();
                    if have.len() < want.len() || (!glob && have.len() != want.len()) {
                        return false;
                    }
                    want.iter().zip(&have).enumerate().all(|(i, (w, h))| {
                        *w == "+" || w == h || (glob && i == want.len() - 1 && h.starts_with(w))
                    })
                }
            }
        }

        /// (first wildcard position, not a glob, -(plus segments), length,
        /// pattern): larger is more specific.
        fn rank(pattern: &str) -> (usize, bool, isize, usize, String) {
            let bare = pattern.strip_suffix('*').unwrap_or(pattern);
            let first = match Model::kind(pattern) {
                Kind::Plus => pattern.find('+').unwrap(),
                _ => bare.len(),
            };
            let plus = bare.split('/').filter(|s| *s == "+").count() as isize;
            (
                first,
                !pattern.ends_with('*'),
                -plus,
                bare.len(),
                bare.to_string(),
            )
        }

        /// Wildcard candidates for one form of the path: the longest
        /// matching prefix rule and every matching `+` rule.
        fn candidates(&self, path: &str) -> Vec<usize> {
            let mut out: Vec<usize> = (0..self.rules.len())
                .filter(|&i| {
                    Model::kind(&self.rules[i].0) == Kind::Plus
                        && Model::matches(&self.rules[i].0, path)
                })
                .collect();
            let longest = (0..self.rules.len())
                .filter(|&i| {
                    Model::kind(&self.rules[i].0) == Kind::Prefix
                        && Model::matches(&self.rules[i].0, path)
                })
                .max_by_key(|&i| self.rules[i].0.len());
            out.extend(longest);
            out
        }

        fn best(&self, candidates: impl Iterator<Item = usize>) -> Option<usize> {
            candidates.max_by_key(|&i| Model::rank(&self.rules[i].0))
        }

        /// The index of the rule that decides (`op`, `path`).
        fn select(&self, op: Operation, path: &str) -> Option<usize> {
            let exact = |p: &str| {
                (0..self.rules.len())
                    .find(|&i| Model::kind(&self.rules[i].0) == Kind::Exact && self.rules[i].0 == p)
            };
            if let Some(i) = exact(path) {
                return Some(i);
            }
            if op == List
                && let Some(trimmed) = path.strip_suffix('/')
            {
                if let Some(i) = exact(trimmed) {
                    return Some(i);
                }
                let mut all = self.candidates(trimmed);
                all.extend(self.candidates(path));
                let deny = self.best(all.iter().copied().filter(|&i| self.rules[i].1.is_deny()));
                let list = self.best(
                    all.iter()
                        .copied()
                        .filter(|&i| self.rules[i].1.contains(Capability::List)),
                );
                return match (deny, list) {
                    (Some(d), Some(l))
                        if Model::rank(&self.rules[l].0) < Model::rank(&self.rules[d].0) =>
                    {
                        Some(d)
                    }
                    (Some(d), None) => Some(d),
                    (_, Some(l)) => Some(l),
                    (None, None) => self.best(all.into_iter()),
                };
            }
            self.best(self.candidates(path).into_iter())
        }

        fn allows(&self, op: Operation, path: &str) -> bool {
            self.select(op, path)
                .is_some_and(|i| self.rules[i].1.contains(op.capability()))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The compiled ACL decides exactly as the naive model does, for
        /// every operation: same permission, same `sudo`.
        #[test]
        fn compiled_acl_agrees_with_the_model(sets in rule_sets(), path in path()) {
            let acl = compile(&sets);
            let model = Model::new(&sets);
            for op in Operation::ALL {
                let d = acl.allows(op, &path);
                prop_assert_eq!(d.allowed(), model.allows(op, &path), "{:?} {}", op, path);
                let sudo = model.select(op, &path).is_some_and(|i| model.rules[i].1.contains(Capability::Sudo));
                prop_assert_eq!(d.sudo(), sudo);
            }
        }

        /// Adding a `deny` rule whose pattern is the request path itself
        /// refuses every operation on that path (an exact rule comes first,
        /// for LIST too), and `sys/capabilities` answers `["deny"]`.
        #[test]
        fn an_exact_deny_on_the_path_refuses(sets in rule_sets(), path in path()) {
            let mut policies: Vec<Policy> = sets
                .iter()
                .enumerate()
                .map(|(i, rules)| Policy::parse(&format!("p{i}"), &hcl(rules)).unwrap())
                .collect();
            policies.push(deny_policy(&path));
            let acl = Acl::new("", &policies);
            for op in Operation::ALL {
                let d = acl.allows(op, &path);
                prop_assert!(!d.allowed() && !d.sudo(), "{:?} {}", op, path);
            }
            prop_assert_eq!(acl.capabilities(&path), vec!["deny".to_string()]);
        }

        /// Let W be the rule that decides (`op`, `path`) under Vault's
        /// precedence (by the model). Adding `deny` on W's pattern, in a
        /// policy of its own, refuses the request: a deny on the
        /// highest-priority matching rule, or on its very pattern, always
        /// refuses. (A deny on a *broader* matching rule does not: see the
        /// next property.)
        #[test]
        fn a_deny_on_the_deciding_pattern_refuses(sets in rule_sets(), path in path(), op in operation()) {
            let model = Model::new(&sets);
            let Some(w) = model.select(op, &path) else {
                // No rule matches: refused already.
                prop_assert!(!compile(&sets).allows(op, &path).allowed());
                return Ok(());
            };
            let mut with_deny = sets.clone();
            with_deny.push(vec![GenRule { pattern: model.rules[w].0.clone(), caps: None }]);
            let acl = compile(&with_deny);
            prop_assert!(!acl.allows(op, &path).allowed(), "{:?} {} W={}", op, path, model.rules[w].0);
        }

        /// For every operation but LIST, a deny on any pattern other than the
        /// deciding rule's changes nothing, however broadly it matches: there
        /// is no "deny anywhere wins". (LIST differs on purpose: a deny more
        /// specific than the rule granting `list` wins there.)
        #[test]
        fn a_deny_elsewhere_changes_nothing(sets in rule_sets(), path in path(), op in operation(), other in pattern()) {
            prop_assume!(op != List);
            let model = Model::new(&sets);
            let decided = model.select(op, &path).map(|w| model.rules[w].0.clone());
            prop_assume!(decided.as_deref() != Some(other.as_str()));
            let before = compile(&sets).allows(op, &path).allowed();
            let mut with_deny = sets.clone();
            with_deny.push(vec![GenRule { pattern: other.clone(), caps: None }]);
            let after = compile(&with_deny).allows(op, &path).allowed();
            // Adding a rule may create a new winner only if it outranks W.
            let new_model = Model::new(&with_deny);
            let new_winner = new_model.select(op, &path).map(|w| new_model.rules[w].0.clone());
            if new_winner.as_deref() != Some(other.as_str()) {
                prop_assert_eq!(before, after);
            } else {
                prop_assert!(!after);
            }
        }

        /// Evaluation never panics, whatever the path.
        #[test]
        fn evaluation_never_panics(sets in rule_sets(), path in any::<String>(), op in operation()) {
            let acl = compile(&sets);
            let _ = acl.allows(op, &path);
            let _ = acl.capabilities(&path);
            let _ = acl.has_any_access_under(&path);
        }

        /// The parser never panics, on arbitrary bytes or on token soup.
        #[test]
        fn parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse("fuzz", &bytes);
        }

        #[test]
        fn parsing_token_soup_never_panics(
            tokens in prop::collection::vec(
                prop::sample::select(vec![
                    "path", "\"a/+/b*\"", "{", "}", "[", "]", "=", ",", "capabilities", "\"read\"",
                    "\"deny\"", "policy", "\"write\"", "1", "-2.5e3", "0x1f", "true", "# c\n", "/* c */",
                    "<<EOF\nx\nEOF\n", "\n", "\"${a{\"}\"", "\"\\u00e9\"", "allowed_parameters",
                    "min_wrapping_ttl", "\"1h\"", "control_group", "name", "{{identity.entity.id}}",
                ]),
                0..40,
            )
        ) {
            let text = tokens.join(" ");
            let _ = Policy::parse("soup", &text);
        }
    }
}
