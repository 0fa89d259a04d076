//! `policy`: the ACL policy parser (HCL 1, JSON, either base64-encoded),
//! [`Acl::new`] over up to three parsed policies in a namespace, and
//! [`Acl::allows`] / [`Acl::capabilities`] / [`Acl::has_any_access_under`]
//! on arbitrary paths.
//!
//! Invariants: nothing panics; a parsed policy's text (the document after
//! base64 decoding) parses again to the same rules; a root ACL allows everything under its
//! namespace.

use arbitrary::{Result, Unstructured};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kvsync_host_core::policy::{Acl, Operation, Policy};
use serde_json::{Value, json};

use crate::input::{list, word};

/// Pieces of policy documents.
const TOKENS: &[&str] = &[
    "path",
    " ",
    "\n",
    "\"secret/*\"",
    "\"secret/data/+/x\"",
    "\"secret/metadata/\"",
    "\"*\"",
    "\"+\"",
    "\"+*\"",
    "\"/\"",
    "\"\"",
    "\"a\\\"b\"",
    "\"\\u00e9\"",
    "\"{{identity.entity.id}}/*\"",
    "{",
    "}",
    "[",
    "]",
    "=",
    ":",
    ",",
    "capabilities",
    "policy",
    "\"read\"",
    "\"list\"",
    "\"create\"",
    "\"update\"",
    "\"patch\"",
    "\"delete\"",
    "\"sudo\"",
    "\"deny\"",
    "\"write\"",
    "\"root\"",
    "\"subscribe\"",
    "\"recover\"",
    "\"bogus\"",
    "allowed_parameters",
    "denied_parameters",
    "required_parameters",
    "\"*\" = []",
    "min_wrapping_ttl",
    "max_wrapping_ttl",
    "\"1h\"",
    "\"5s\"",
    "3600",
    "-1",
    "1.5e3",
    "true",
    "mfa_methods",
    "control_group",
    "factor",
    "subscribe_event_types",
    "comment",
    "name",
    "#",
    "//",
    "/*",
    "*/",
    "<<EOT\n",
    "\nEOT\n",
    "\"${x}\"",
    "null",
];

const CAPABILITIES: &[&str] = &[
    "read", "list", "create", "update", "patch", "delete", "sudo", "deny", "root", "x",
];

const PATTERNS: &[&str] = &[
    "secret/*",
    "secret/data/app",
    "secret/metadata/+",
    "secret/+/app*",
    "+/+",
    "*",
    "",
    "/",
    "sys/sync/*",
    "team-a/secret/*",
    "secret/data/app/",
    "a*b",
];

const PATHS: &[&str] = &[
    "",
    "/",
    "secret/",
    "secret/data/app",
    "secret/data/app/",
    "secret/metadata/app/",
    "secret/metadata/",
    "secret/data/app/x",
    "team-a/secret/data/app",
    "team-a/",
    "sys/sync/config",
    "a*b",
    "ab",
    "//secret/data/app",
    "secret//data",
];

const NAMESPACES: &[&str] = &["", "team-a/", "team-a/child/"];

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok((documents, namespace, requests)) = input(&mut u) else {
        return;
    };
    let mut policies = Vec::new();
    for (name, text) in &documents {
        let Ok(policy) = kvsync_host_core::policy::parse(name, text) else {
            continue;
        };
        // The same rules; not always the same text: a document that decodes
        // from base64 to text that is itself valid base64 (such text holds no
        // rules, e.g. blank) is decoded once more, as Vault would.
        let again = Policy::parse(name, policy.text()).map(|p| p.rules().to_vec());
        assert_eq!(
            again.as_deref(),
            Ok(policy.rules()),
            "the text of a parsed policy parses to other rules: {:?}",
            policy.text()
        );
        policies.push(policy);
    }
    let acl = Acl::new(&namespace, &policies);
    for (operation, path, sudo) in requests {
        let decision = acl.allows(operation, &path);
        let allowed = decision.permits(sudo);
        let _ = (decision.capabilities(), decision.constraints());
        if acl.is_root() && path.trim_start_matches('/').starts_with(&namespace) {
            assert!(allowed, "a root ACL refused {operation:?} {path:?}");
        }
        let _ = acl.capabilities(&path);
        let _ = acl.has_any_access_under(&path);
    }
}

type Input = (
    Vec<(String, Vec<u8>)>,
    String,
    Vec<(Operation, String, bool)>,
);

fn input(u: &mut Unstructured) -> Result<Input> {
    let documents = list(u, 3, |u| {
        let name = word(u, &["p", "root", "default", "reader"])?;
        Ok((name, document(u)?))
    })?;
    let namespace = (*u.choose(NAMESPACES)?).to_string();
    let requests = list(u, 6, |u| {
        let operation = *u.choose(&Operation::ALL)?;
        let mut path = word(u, PATHS)?;
        if u.ratio(1u8, 3u8)? {
            path.insert_str(0, &namespace);
        }
        Ok((operation, path, u.arbitrary()?))
    })?;
    Ok((documents, namespace, requests))
}

/// A policy document: HCL from tokens, structured JSON, arbitrary bytes, or
/// base64 of HCL.
fn document(u: &mut Unstructured) -> Result<Vec<u8>> {
    Ok(match u.int_in_range(0..=5u8)? {
        0 | 1 => hcl(u)?.into_bytes(),
        2 => json_policy(u)?.to_string().into_bytes(),
        3 => u.arbitrary()?,
        _ => BASE64.encode(hcl(u)?).into_bytes(),
    })
}

fn hcl(u: &mut Unstructured) -> Result<String> {
    if u.ratio(1u8, 2u8)? {
        return Ok(list(u, 32, |u| word(u, TOKENS))?.concat());
    }
    // Well-formed blocks, so the compiler and matcher see many rules.
    let blocks = list(u, 5, |u| {
        let pattern = word(u, PATTERNS)?;
        let caps = list(u, 4, |u| Ok(format!("{:?}", word(u, CAPABILITIES)?)))?;
        Ok(format!(
            "path {pattern:?} {{ capabilities = [{}] }}\n",
            caps.join(", ")
        ))
    })?;
    Ok(blocks.concat())
}

fn json_policy(u: &mut Unstructured) -> Result<Value> {
    let mut paths = serde_json::Map::new();
    for _ in 0..u.int_in_range(0..=4u8)? {
        let caps = list(u, 4, |u| word(u, CAPABILITIES))?;
        let rule = if u.ratio(1u8, 4u8)? {
            json!({ "policy": word(u, &["read", "write", "deny", "sudo"])? })
        } else {
            json!({ "capabilities": caps })
        };
        paths.insert(word(u, PATTERNS)?, rule);
    }
    Ok(json!({ "path": paths }))
}
