//! From policy text to [`Policy`]: base64 unwrapping, the document's keys
//! and their meaning, Vault's error messages.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;

use super::hcl::{self, Item, Node};
use super::{Capability, CapabilitySet, PolicyError};

/// Keys a path block may hold.
const PATH_KEYS: [&str; 11] = [
    "capabilities",
    "policy",
    "allowed_parameters",
    "denied_parameters",
    "required_parameters",
    "min_wrapping_ttl",
    "max_wrapping_ttl",
    "mfa_methods",
    "control_group",
    "subscribe_event_types",
    "comment",
];

/// A parsed ACL policy of one namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    name: String,
    text: String,
    rules: Vec<PathRule>,
}

impl Policy {
    /// Parses `text` (HCL or JSON, possibly base64-encoded) as the policy
    /// `name`; the name is lower-cased.
    pub fn parse(name: &str, text: &str) -> Result<Policy, PolicyError> {
        parse(name, text.as_bytes())
    }

    /// A policy with no rules (how a policy a token names but that does not
    /// exist behaves).
    pub fn empty(name: &str) -> Policy {
        Policy {
            name: name.to_lowercase(),
            text: String::new(),
            rules: Vec::new(),
        }
    }

    /// The lower-cased name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The document as written (after base64 decoding), for reads.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The path rules in document order, unmerged.
    pub fn rules(&self) -> &[PathRule] {
        &self.rules
    }

    /// Whether some pattern is templated (`{{identity.entity.id}}`).
    pub fn is_templated(&self) -> bool {
        self.rules.iter().any(|r| r.templated)
    }
}

/// Parses a policy document given as bytes: the entry point for fuzzing.
/// Never panics; anything that is not a valid policy is an error.
pub fn parse(name: &str, text: &[u8]) -> Result<Policy, PolicyError> {
    let text = decode_base64(text).unwrap_or_else(|| String::from_utf8_lossy(text).into_owned());
    let doc = hcl::parse_document(&text)?;

    // Unknown top-level keys are reported all together, first.
    let invalid: Vec<String> = doc
        .items
        .iter()
        .filter(|i| !matches!(i.key(), "name" | "path"))
        .map(|i| format!("invalid key {:?}{}", i.key(), i.at()))
        .collect();
    if !invalid.is_empty() {
        return Err(PolicyError::many(invalid));
    }

    let mut rules = Vec::new();
    for item in &doc.items {
        if item.key() == "name" {
            // Any scalar, as HCL 1 turns numbers and booleans into strings.
            if item.keys.len() != 1 || matches!(item.value, Node::List(_) | Node::Object(_)) {
                return Err(PolicyError::new(format!(
                    "name must be a string{}",
                    item.at()
                )));
            }
            continue;
        }
        for (pattern, body) in path_blocks(item, doc.json)? {
            rules.push(PathRule::decode(pattern, body)?);
        }
    }
    Ok(Policy {
        name: name.to_lowercase(),
        text,
        rules,
    })
}

/// Text that is valid standard base64 (with padding; newlines ignored, as
/// Go's decoder does) of UTF-8 text.
fn decode_base64(text: &[u8]) -> Option<String> {
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
    );
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    let decoded = LENIENT.decode(compact).ok()?;
    String::from_utf8(decoded).ok()
}

/// The `(pattern, body)` pairs of one top-level `path` item:
/// `path "p" { ... }` in HCL; `"path": {"p": {...}, ...}` (or a list of such
/// objects, or a list of bodies per pattern) in JSON.
fn path_blocks(item: &Item, json: bool) -> Result<Vec<(&str, &[Item])>, PolicyError> {
    let not_a_block = || {
        PolicyError::new(format!(
            "path must be a block: path \"<pattern>\" {{ ... }}{}",
            item.at()
        ))
    };
    match (item.keys.as_slice(), &item.value) {
        ([_, pattern], Node::Object(body)) => Ok(vec![(pattern.as_str(), body.as_slice())]),
        ([_], value) if json => {
            let objects: Vec<&Node> = match value {
                Node::List(list) => list.iter().collect(),
                other => vec![other],
            };
            let mut out = Vec::new();
            for object in objects {
                let Node::Object(patterns) = object else {
                    return Err(not_a_block());
                };
                for p in patterns {
                    let bodies: Vec<&Node> = match &p.value {
                        Node::List(list) => list.iter().collect(),
                        other => vec![other],
                    };
                    for body in bodies {
                        let Node::Object(body) = body else {
                            return Err(not_a_block());
                        };
                        out.push((p.key(), body.as_slice()));
                    }
                }
            }
            Ok(out)
        }
        _ => Err(not_a_block()),
    }
}

/// How a pattern matches, once compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternKind {
    /// The path must equal the pattern.
    Exact,
    /// A trailing `*`: the path must start with the pattern before it.
    Prefix,
    /// Holds a `+` segment (and may end in `*`).
    Segment,
}

/// Classifies a full pattern (namespace prefix included) as Vault does: a
/// `+` counts when the pattern is `+`, starts with `+/` or holds `/+`.
pub(super) fn pattern_kind(pattern: &str) -> PatternKind {
    if pattern == "+" || pattern.starts_with("+/") || pattern.contains("/+") {
        PatternKind::Segment
    } else if pattern.ends_with('*') {
        PatternKind::Prefix
    } else {
        PatternKind::Exact
    }
}

/// One `path` block.
#[derive(Clone, Debug, PartialEq)]
pub struct PathRule {
    pattern: String,
    capabilities: CapabilitySet,
    constraints: Constraints,
    templated: bool,
}

/// What a rule says beyond its capabilities. Stored, merged per pattern, and
/// not enforced (see the module documentation), except that a rule with a
/// wrapping TTL grants nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Constraints {
    /// Parameter name (lower case) → allowed values; an empty list allows
    /// any value; the name `*` stands for every parameter.
    pub allowed_parameters: Option<BTreeMap<String, Vec<serde_json::Value>>>,
    /// Parameter name (lower case) → denied values; an empty list denies
    /// any value; the name `*` stands for every parameter.
    pub denied_parameters: Option<BTreeMap<String, Vec<serde_json::Value>>>,
    pub required_parameters: Vec<String>,
    pub min_wrapping_ttl: Option<Duration>,
    pub max_wrapping_ttl: Option<Duration>,
    pub mfa_methods: Vec<String>,
    pub subscribe_event_types: Vec<String>,
    /// A `control_group` block was present.
    pub control_group: bool,
}

impl Constraints {
    /// Whether the rule asks for response wrapping.
    pub fn requires_wrapping(&self) -> bool {
        self.min_wrapping_ttl.is_some() || self.max_wrapping_ttl.is_some()
    }
}

impl PathRule {
    /// The pattern as written, less one leading `/`.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn capabilities(&self) -> CapabilitySet {
        self.capabilities
    }

    pub fn constraints(&self) -> &Constraints {
        &self.constraints
    }

    /// The pattern holds an identity template; such rules are dropped when
    /// compiling.
    pub fn is_templated(&self) -> bool {
        self.templated
    }

    fn decode(written: &str, body: &[Item]) -> Result<PathRule, PolicyError> {
        let pattern = written.strip_prefix('/').unwrap_or(written);
        let templated = check_template(written)?;

        let invalid: Vec<String> = body
            .iter()
            .filter(|i| !PATH_KEYS.contains(&i.key()))
            .map(|i| format!("path {written:?}: invalid key {:?}{}", i.key(), i.at()))
            .collect();
        if !invalid.is_empty() {
            return Err(PolicyError::many(invalid));
        }
        let mut fields: BTreeMap<&str, &Item> = BTreeMap::new();
        for item in body {
            if fields.insert(item.key(), item).is_some() {
                return Err(PolicyError::new(format!(
                    "path {written:?}: duplicate key {:?}{}",
                    item.key(),
                    item.at()
                )));
            }
            if item.keys.len() > 1 && item.key() != "control_group" {
                return Err(PolicyError::new(format!(
                    "path {written:?}: {:?} cannot have labels{}",
                    item.key(),
                    item.at()
                )));
            }
        }
        let field = |key: &str| fields.get(key).copied();
        let strings = |key: &str| -> Result<Vec<String>, PolicyError> {
            field(key).map_or(Ok(Vec::new()), |i| string_list(written, i))
        };

        if pattern.contains("+*") {
            return Err(PolicyError::new(format!(
                "path {pattern:?}: invalid use of wildcards ('+*' is forbidden)"
            )));
        }

        // Legacy `policy = "..."`: `deny` replaces the capabilities, the
        // others add to them.
        let mut names = strings("capabilities")?;
        if let Some(item) = field("policy") {
            let Node::Str(legacy) = &item.value else {
                return Err(type_error(written, item, "a string"));
            };
            let (replace, add): (bool, &[&str]) = match legacy.as_str() {
                "deny" => (true, &["deny"]),
                "read" => (false, &["read", "list"]),
                "write" => (false, &["create", "read", "update", "delete", "list"]),
                "sudo" => (
                    false,
                    &["create", "read", "update", "delete", "list", "sudo"],
                ),
                other => {
                    return Err(PolicyError::new(format!(
                        "path {written:?}: invalid policy {other:?}"
                    )));
                }
            };
            if replace {
                names.clear();
            }
            names.extend(add.iter().map(|s| s.to_string()));
        }

        // In order, stopping at `deny` (as Vault does: what follows a deny
        // is not even checked).
        let mut capabilities = CapabilitySet::EMPTY;
        for name in &names {
            match Capability::from_name(name) {
                Some(Capability::Deny) => {
                    return Ok(PathRule {
                        pattern: pattern.to_string(),
                        capabilities: CapabilitySet::DENY,
                        constraints: Constraints::default(),
                        templated,
                    });
                }
                Some(c) => capabilities.insert(c),
                None => {
                    return Err(PolicyError::new(format!(
                        "path {written:?}: invalid capability {name:?}"
                    )));
                }
            }
        }

        let mut constraints = Constraints {
            allowed_parameters: field("allowed_parameters")
                .map(|i| parameter_map(written, i))
                .transpose()?,
            denied_parameters: field("denied_parameters")
                .map(|i| parameter_map(written, i))
                .transpose()?,
            required_parameters: strings("required_parameters")?,
            min_wrapping_ttl: None,
            max_wrapping_ttl: None,
            mfa_methods: strings("mfa_methods")?,
            subscribe_event_types: strings("subscribe_event_types")?,
            control_group: false,
        };
        if let Some(item) = field("control_group") {
            if !matches!(item.value, Node::Object(_) | Node::List(_)) {
                return Err(type_error(written, item, "a block"));
            }
            constraints.control_group = true;
        }
        // `comment` is accepted with any value and not kept, as in Vault.
        for (key, slot) in [
            ("min_wrapping_ttl", &mut constraints.min_wrapping_ttl),
            ("max_wrapping_ttl", &mut constraints.max_wrapping_ttl),
        ] {
            if let Some(item) = field(key) {
                *slot = duration_seconds(&item.value)
                    .map_err(|e| PolicyError::new(format!("error parsing {key}: {e}")))?
                    .filter(|d| !d.is_zero());
            }
        }
        if let (Some(min), Some(max)) = (constraints.min_wrapping_ttl, constraints.max_wrapping_ttl)
            && max < min
        {
            return Err(PolicyError::new(
                "max_wrapping_ttl cannot be less than min_wrapping_ttl",
            ));
        }
        Ok(PathRule {
            pattern: pattern.to_string(),
            capabilities,
            constraints,
            templated,
        })
    }
}

fn type_error(written: &str, item: &Item, expected: &str) -> PolicyError {
    PolicyError::new(format!(
        "path {written:?}: {:?} must be {expected}, not {}{}",
        item.key(),
        item.value.type_name(),
        item.at()
    ))
}

fn string_list(written: &str, item: &Item) -> Result<Vec<String>, PolicyError> {
    let Node::List(values) = &item.value else {
        return Err(type_error(written, item, "a list of strings"));
    };
    values
        .iter()
        .map(|v| match v {
            Node::Str(s) => Ok(s.clone()),
            other => Err(PolicyError::new(format!(
                "path {written:?}: {:?} must be a list of strings, not hold a {}{}",
                item.key(),
                other.type_name(),
                item.at()
            ))),
        })
        .collect()
}

fn parameter_map(
    written: &str,
    item: &Item,
) -> Result<BTreeMap<String, Vec<serde_json::Value>>, PolicyError> {
    let Node::Object(entries) = &item.value else {
        return Err(type_error(written, item, "an object of lists"));
    };
    let mut map = BTreeMap::new();
    for entry in entries {
        let Node::List(values) = &entry.value else {
            return Err(PolicyError::new(format!(
                "path {written:?}: {:?}: the values of {:?} must be a list{}",
                item.key(),
                entry.key(),
                entry.at()
            )));
        };
        map.insert(
            entry.key().to_lowercase(),
            values.iter().map(Node::to_json).collect(),
        );
    }
    Ok(map)
}

/// Checks the identity templates in a pattern: every `{{` closes, and names
/// something under `identity.`. Returns whether there is one.
fn check_template(pattern: &str) -> Result<bool, PolicyError> {
    let mut rest = pattern;
    let mut templated = false;
    while let Some(open) = rest.find("{{") {
        let after = rest.get(open + 2..).unwrap_or("");
        let Some(close) = after.find("}}") else {
            return Err(PolicyError::new(
                "failed to validate policy templating: unclosed template",
            ));
        };
        let selector = after.get(..close).unwrap_or("").trim();
        if !selector.starts_with("identity.") {
            return Err(PolicyError::new(format!(
                "failed to validate policy templating: invalid template {selector:?}"
            )));
        }
        templated = true;
        rest = after.get(close + 2..).unwrap_or("");
    }
    Ok(templated)
}

/// A number of seconds or a duration string (`"300"`, `"300s"`, `"1h30m"`,
/// `"2d"`), as Vault reads TTLs; the string syntax is the engine's
/// (`kvsync_component::time`). Whole seconds; `None` when zero.
fn duration_seconds(value: &Node) -> Result<Option<Duration>, String> {
    let seconds = match value {
        Node::Int(i) => *i,
        // Truncated like the strings' fractions; `as` saturates.
        Node::Float(f) if f.is_finite() => *f as i64,
        Node::Str(s) => kvsync_component::time::parse_duration(s)?,
        other => {
            return Err(format!(
                "cannot parse a duration from a {}",
                other.type_name()
            ));
        }
    };
    u64::try_from(seconds)
        .map(|s| Some(Duration::from_secs(s)))
        .map_err(|_| format!("negative duration {seconds}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> CapabilitySet {
        names
            .iter()
            .map(|n| Capability::from_name(n).unwrap())
            .collect()
    }

    fn parse_err(text: &str) -> String {
        match Policy::parse("t", text) {
            Ok(p) => panic!("expected an error, parsed {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Vault's own parser test document, less OpenBao-only keys.
    const VAULT_SAMPLE: &str = r#"
# Developer policy
name = "dev"
# Deny all paths by default
path "*" {
	policy = "deny"
}
# Allow full access to staging
path "stage/*" {
	policy = "sudo"
}
# Limited read privilege to production
path "prod/version" {
	policy = "read"
	comment = "this comment is stored but not parsed"
}
# Also tests stripping of leading slash and parsing of min/max as string and integer
path "/foo/bar" {
	policy = "read"
	min_wrapping_ttl = 300
	max_wrapping_ttl = "1h"
}
path "foo/bar" {
	capabilities = ["create", "sudo"]
	min_wrapping_ttl = "300s"
	max_wrapping_ttl = 3600
}
path "foo/bar" {
	capabilities = ["create", "sudo"]
	allowed_parameters = {
	  "zip" = []
	  "zap" = []
	}
}
path "test/types" {
	capabilities = ["create", "sudo"]
	allowed_parameters = {
		"map" = [{"good" = "one"}]
		"int" = [1, 2]
	}
	denied_parameters = {
		"String" = ["test"]
		"bool" = [false]
	}
}
path "test/req" {
	capabilities = ["create", "sudo"]
	required_parameters = ["foo"]
}
path "test/mfa" {
	capabilities = ["create", "sudo"]
	mfa_methods = ["my_totp", "my_totp2"]
}
path "test/+/wildcard/+/end*" {
	capabilities = ["patch", "subscribe", "recover"]
	subscribe_event_types = ["kv*"]
}
path "test/control_group" {
	capabilities = ["create", "list"]
	control_group = {
		ttl = "48m"
		factor "admin-approval" {
			controlled_capabilities = ["create"]
			identity {
				group_names = ["admin"]
				approvals = 1
			}
		}
	}
}
"#;

    #[test]
    fn vault_sample_document() {
        let p = Policy::parse("Dev", VAULT_SAMPLE).unwrap();
        assert_eq!(p.name(), "dev");
        assert_eq!(p.text(), VAULT_SAMPLE);
        let rules = p.rules();
        let summary: Vec<(&str, CapabilitySet)> = rules
            .iter()
            .map(|r| (r.pattern(), r.capabilities()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("*", CapabilitySet::DENY),
                (
                    "stage/*",
                    caps(&["create", "read", "update", "delete", "list", "sudo"])
                ),
                ("prod/version", caps(&["read", "list"])),
                ("foo/bar", caps(&["read", "list"])),
                ("foo/bar", caps(&["create", "sudo"])),
                ("foo/bar", caps(&["create", "sudo"])),
                ("test/types", caps(&["create", "sudo"])),
                ("test/req", caps(&["create", "sudo"])),
                ("test/mfa", caps(&["create", "sudo"])),
                (
                    "test/+/wildcard/+/end*",
                    caps(&["patch", "subscribe", "recover"])
                ),
                ("test/control_group", caps(&["create", "list"])),
            ]
        );
        let c = rules[3].constraints();
        assert_eq!(c.min_wrapping_ttl, Some(Duration::from_secs(300)));
        assert_eq!(c.max_wrapping_ttl, Some(Duration::from_secs(3600)));
        assert_eq!(
            rules[4].constraints().min_wrapping_ttl,
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            rules[4].constraints().max_wrapping_ttl,
            Some(Duration::from_secs(3600))
        );
        let allowed = rules[5].constraints().allowed_parameters.as_ref().unwrap();
        assert_eq!(allowed.keys().collect::<Vec<_>>(), ["zap", "zip"]);
        assert!(allowed["zip"].is_empty());
        let t = rules[6].constraints();
        assert_eq!(
            t.allowed_parameters.as_ref().unwrap()["map"],
            vec![serde_json::json!({"good": "one"})]
        );
        assert_eq!(
            t.allowed_parameters.as_ref().unwrap()["int"],
            vec![serde_json::json!(1), serde_json::json!(2)]
        );
        // Parameter names are lower-cased.
        assert_eq!(
            t.denied_parameters.as_ref().unwrap()["string"],
            vec![serde_json::json!("test")]
        );
        assert_eq!(rules[7].constraints().required_parameters, ["foo"]);
        assert_eq!(rules[8].constraints().mfa_methods, ["my_totp", "my_totp2"]);
        assert_eq!(rules[9].constraints().subscribe_event_types, ["kv*"]);
        assert!(rules[10].constraints().control_group);
        assert!(!p.is_templated());
    }

    #[test]
    fn json_is_equivalent() {
        let hcl = Policy::parse(
            "p",
            r#"
path "secret/data/*" { capabilities = ["read", "list"] }
path "secret/data/x" {
  capabilities = ["update"]
  allowed_parameters = { "a" = ["b"] }
  max_wrapping_ttl = "1m"
}
"#,
        )
        .unwrap();
        let json = Policy::parse(
            "p",
            r#"{"path": {"secret/data/*": {"capabilities": ["read", "list"]},
                        "secret/data/x": {"capabilities": ["update"],
                                          "allowed_parameters": {"a": ["b"]},
                                          "max_wrapping_ttl": "1m"}}}"#,
        )
        .unwrap();
        assert_eq!(hcl.rules(), json.rules());
        // Lists of objects, as HCL's JSON form allows.
        let listed = Policy::parse(
            "p",
            r#"{"name": "p", "path": [{"secret/data/*": [{"capabilities": ["read", "list"]}]},
                                     {"secret/data/x": {"capabilities": ["update"],
                                          "allowed_parameters": {"a": ["b"]},
                                          "max_wrapping_ttl": 60}}]}"#,
        )
        .unwrap();
        assert_eq!(hcl.rules(), listed.rules());
        assert_eq!(
            parse_err(r#"{"path": {"a": {"capabilities": ["read"], "bad": 1}}}"#),
            r#"path "a": invalid key "bad""#
        );
        assert_eq!(
            parse_err(r#"{"path": ["a"]}"#),
            "path must be a block: path \"<pattern>\" { ... }"
        );
        assert_eq!(
            parse_err("[1]"),
            "syntax error on line 1: expected a key, '=' or '{', found '['"
        );
    }

    #[test]
    fn base64_bodies_are_decoded() {
        use base64::engine::general_purpose::STANDARD;
        let text = "path \"secret/*\" {\n  capabilities = [\"read\"]\n}\n";
        let encoded = STANDARD.encode(text);
        let p = Policy::parse("b64", &encoded).unwrap();
        assert_eq!(p.text(), text);
        assert_eq!(p.rules()[0].capabilities(), caps(&["read"]));
        // Line breaks inside the base64 are ignored, as Go's decoder does.
        let wrapped = format!("{}\n{}", &encoded[..20], &encoded[20..]);
        assert_eq!(Policy::parse("b64", &wrapped).unwrap().text(), text);
        // Base64 of bytes that are not text is not decoded.
        assert_eq!(
            parse_err("/w=="),
            "syntax error on line 1: illegal character '/'"
        );
        assert_eq!(Policy::parse("e", "").unwrap().rules(), &[]);
    }

    #[test]
    fn legacy_policy_mapping() {
        let p = Policy::parse(
            "legacy",
            r#"
path "a" { policy = "deny" }
path "b" { policy = "read" }
path "c" { policy = "write" }
path "d" { policy = "sudo" }
path "e" {
  capabilities = ["patch"]
  policy = "read"
}
path "f" {
  capabilities = ["patch", "read"]
  policy = "deny"
}
"#,
        )
        .unwrap();
        let got: Vec<CapabilitySet> = p.rules().iter().map(PathRule::capabilities).collect();
        assert_eq!(
            got,
            vec![
                CapabilitySet::DENY,
                caps(&["read", "list"]),
                caps(&["create", "read", "update", "delete", "list"]),
                caps(&["create", "read", "update", "delete", "list", "sudo"]),
                caps(&["patch", "read", "list"]),
                CapabilitySet::DENY,
            ]
        );
        assert_eq!(
            parse_err("path \"/\" {\n\tpolicy = \"banana\"\n}"),
            r#"path "/": invalid policy "banana""#
        );
    }

    #[test]
    fn vault_error_messages() {
        assert_eq!(
            parse_err("path \"/\" {\n\tcapabilities = [\"read\", \"banana\"]\n}"),
            r#"path "/": invalid capability "banana""#
        );
        assert_eq!(
            parse_err("path \"foo/+*\" {\n\tcapabilities = [\"read\"]\n}"),
            r#"path "foo/+*": invalid use of wildcards ('+*' is forbidden)"#
        );
        assert_eq!(
            parse_err("path \"/\" {\n\tcapabilities = [\"read\"]\n\tcapabilites  = [\"read\"]\n}"),
            r#"path "/": invalid key "capabilites" on line 3"#
        );
        assert_eq!(
            parse_err("name = \"test\"\nbad  = \"foo\"\nnope = \"yes\""),
            "2 errors occurred:\n\t* invalid key \"bad\" on line 2\n\t* invalid key \"nope\" on line 3\n\n"
        );
        assert_eq!(
            parse_err(
                "path \"/\" {\n\tpolicy = \"read\"\n\tmin_wrapping_ttl = 400\n\tmax_wrapping_ttl = 200\n}"
            ),
            "max_wrapping_ttl cannot be less than min_wrapping_ttl"
        );
        assert!(
            parse_err("path \"a\" { min_wrapping_ttl = \"soon\" }")
                .starts_with("error parsing min_wrapping_ttl: invalid duration \"soon\"")
        );
        assert_eq!(
            parse_err("path \"a\" { max_wrapping_ttl = -5 }"),
            "error parsing max_wrapping_ttl: negative duration -5"
        );
        // Capability names are exact.
        assert_eq!(
            parse_err("path \"a\" { capabilities = [\"Read\"] }"),
            r#"path "a": invalid capability "Read""#
        );
    }

    #[test]
    fn deny_ends_the_capability_list() {
        // Vault stops at `deny`: what follows is not checked, and the rule's
        // other settings are not read.
        let p = Policy::parse(
            "d",
            r#"path "a" {
  capabilities = ["read", "deny", "banana"]
  min_wrapping_ttl = "nonsense"
}"#,
        )
        .unwrap();
        assert_eq!(p.rules()[0].capabilities(), CapabilitySet::DENY);
        assert_eq!(p.rules()[0].constraints(), &Constraints::default());
        assert!(Policy::parse("d", r#"path "a" { capabilities = ["banana", "deny"] }"#).is_err());
    }

    #[test]
    fn shape_errors() {
        assert_eq!(
            parse_err(r#"path "a" { capabilities = "read" }"#),
            r#"path "a": "capabilities" must be a list of strings, not string on line 1"#
        );
        assert_eq!(
            parse_err(r#"path "a" { capabilities = [1] }"#),
            r#"path "a": "capabilities" must be a list of strings, not hold a number on line 1"#
        );
        assert_eq!(
            parse_err("path \"a\" {\n policy = \"read\"\n policy = \"deny\"\n}"),
            r#"path "a": duplicate key "policy" on line 3"#
        );
        assert_eq!(
            parse_err(r#"path "a" { allowed_parameters = { "x" = "y" } }"#),
            r#"path "a": "allowed_parameters": the values of "x" must be a list on line 1"#
        );
        assert_eq!(
            parse_err(r#"path = { "a" = { capabilities = ["read"] } }"#),
            "path must be a block: path \"<pattern>\" { ... } on line 1"
        );
        assert_eq!(
            parse_err(r#"path "a" "b" { capabilities = ["read"] }"#),
            "path must be a block: path \"<pattern>\" { ... } on line 1"
        );
        assert_eq!(parse_err("name = [3]"), "name must be a string on line 1");
        assert!(Policy::parse("n", "name = 3\npath \"a\" { comment = [1] }").is_ok());
        assert_eq!(
            parse_err(r#"path "a" { capabilities "x" { } }"#),
            r#"path "a": "capabilities" cannot have labels on line 1"#
        );
    }

    #[test]
    fn templated_paths_parse() {
        let p = Policy::parse(
            "t",
            r#"path "identity/entity/id/{{identity.entity.id}}" { capabilities = ["read"] }
path "secret/{{ identity.entity.name }}/*" { capabilities = ["read"] }
path "plain" { capabilities = ["read"] }"#,
        )
        .unwrap();
        assert!(p.is_templated());
        let flags: Vec<bool> = p.rules().iter().map(PathRule::is_templated).collect();
        assert_eq!(flags, [true, true, false]);
        assert_eq!(
            parse_err(r#"path "a/{{identity.entity.id" { capabilities = ["read"] }"#),
            "failed to validate policy templating: unclosed template"
        );
        assert_eq!(
            parse_err(r#"path "a/{{nope}}" { capabilities = ["read"] }"#),
            "failed to validate policy templating: invalid template \"nope\""
        );
    }

    #[test]
    fn patterns_classify_like_vault() {
        for (pattern, kind) in [
            ("secret/foo", PatternKind::Exact),
            ("secret/foo*", PatternKind::Prefix),
            ("*", PatternKind::Prefix),
            ("secret/*/x", PatternKind::Exact),
            ("+", PatternKind::Segment),
            ("+/x", PatternKind::Segment),
            ("secret/+/x", PatternKind::Segment),
            ("secret/+/x*", PatternKind::Segment),
            ("secret/a+b", PatternKind::Exact),
            ("secret/+b", PatternKind::Segment),
        ] {
            assert_eq!(pattern_kind(pattern), kind, "{pattern}");
        }
    }

    #[test]
    fn durations() {
        let secs = |n: Node| duration_seconds(&n).map(|d| d.map(|d| d.as_secs()));
        assert_eq!(secs(Node::Int(90)), Ok(Some(90)));
        assert_eq!(secs(Node::Float(90.7)), Ok(Some(90)));
        assert_eq!(secs(Node::Str("90".into())), Ok(Some(90)));
        assert_eq!(secs(Node::Str("1h30m".into())), Ok(Some(5400)));
        assert_eq!(secs(Node::Str("2d".into())), Ok(Some(172_800)));
        assert!(secs(Node::Str("-1h".into())).is_err());
        assert!(secs(Node::Str("1x".into())).is_err());
        assert!(secs(Node::Bool(true)).is_err());
    }
}
