//! `engine_request`: sequences of requests (method, path, query, headers,
//! body) through the engine's request path, linked natively over in-memory
//! storage with root authorization, with sync worker runs in between.
//!
//! Invariants: nothing panics, and no response is a 5xx: the in-memory
//! storage never fails, so every error is the client's (the engine answers
//! 5xx only for storage it cannot reach or a provider it cannot reach).

use arbitrary::{Result, Unstructured};
use kvsync_component::env::Fakes;
use kvsync_component::{Env, Request};

use crate::engine::{json_request, run_worker};
use crate::input::{self, list, word};

const METHODS: &[&str] = &[
    "GET", "PUT", "POST", "PATCH", "DELETE", "LIST", "HEAD", "OPTIONS",
];

/// Where paths start: the engine's routes.
const PREFIXES: &[&str] = &[
    "",
    "secret/data/",
    "secret/metadata/",
    "secret/config",
    "secret/subkeys/",
    "secret/delete/",
    "secret/undelete/",
    "secret/destroy/",
    "kv/data/",
    "sys/mounts/",
    "sys/mounts",
    "sys/remount",
    "sys/auth",
    "sys/health",
    "sys/seal-status",
    "sys/leader",
    "sys/capabilities-self",
    "sys/capabilities",
    "sys/policies/acl/",
    "sys/policy/",
    "sys/internal/ui/mounts/",
    "sys/internal/ui/mounts",
    "sys/activation-flags/secrets-sync/activate",
    "sys/sync/config",
    "sys/sync/destinations",
    "sys/sync/destinations/in-mem/",
    "sys/sync/destinations/aws-sm/",
    "sys/sync/destinations/gh/",
    "sys/sync/destinations/vercel-project/",
    "sys/sync/associations",
    "sys/sync/associations/",
    "sys/sync/github-apps/",
    "auth/token/",
];

/// Path segments after the prefix.
const SEGMENTS: &[&str] = &[
    "secret",
    "kv",
    "app",
    "db",
    "d",
    "a",
    "b",
    "x",
    "data",
    "metadata",
    "config",
    "tune",
    "associations",
    "set",
    "remove",
    "objects",
    "destinations",
    "in-mem",
    "aws-sm",
    "gh",
    "create",
    "lookup",
    "lookup-self",
    "renew",
    "revoke",
    "accessors",
    "roles",
    "default",
    "root",
    "..",
    ".",
    "",
    "*",
    "+",
    "%2F",
    "%00",
    "a%20b",
    "ü",
];

const QUERY_KEYS: &[&str] = &[
    "list",
    "version",
    "versions",
    "purge",
    "force",
    "after",
    "limit",
    "generic_mount_paths",
    "standbyok",
    "depth",
    "cas",
];

const HEADERS: &[&str] = &[
    "content-type",
    "x-vault-request",
    "x-vault-namespace",
    "x-vault-wrap-ttl",
    "x-vault-token",
    "x-vault-mfa",
    "x-vault-index",
    "accept",
    "x-kvsync-sync-due",
];

const HEADER_VALUES: &[&str] = &[
    "application/json",
    "application/merge-patch+json",
    "text/plain",
    "true",
    "ns1/",
    "30s",
    "",
];

/// Requests and worker runs in a sequence; the first mounts KV-v2 at `secret/`.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let fakes = Fakes::default();
    let env = fakes.env();
    check(
        &env,
        &json_request("POST", "sys/mounts/secret", r#"{"type":"kv-v2"}"#),
    );
    let Ok(steps) = u.int_in_range(1..=12u8) else {
        return;
    };
    for _ in 0..steps {
        match step(&mut u) {
            Ok(Step::Request(req)) => check(&env, &req),
            Ok(Step::Worker(limit)) => run_worker(&env, limit),
            Err(_) => return,
        }
    }
}

enum Step {
    Request(Box<Request>),
    Worker(u32),
}

fn step(u: &mut Unstructured) -> Result<Step> {
    if u.ratio(1u8, 8u8)? {
        return Ok(Step::Worker(u.int_in_range(1..=16)?));
    }
    request(u).map(|r| Step::Request(Box::new(r)))
}

fn request(u: &mut Unstructured) -> Result<Request> {
    let method = word(u, METHODS)?;
    let mut path = word(u, PREFIXES)?;
    let segments = list(u, 4, |u| word(u, SEGMENTS))?;
    path.push_str(&segments.join("/"));
    if u.ratio(1u8, 6u8)? {
        path.push('/');
    }
    let query = if u.ratio(1u8, 8u8)? {
        u.arbitrary()?
    } else {
        let pairs = list(u, 3, |u| {
            Ok(format!(
                "{}={}",
                word(u, QUERY_KEYS)?,
                word(u, &["true", "1", "0", "x"])?
            ))
        })?;
        pairs.join("&")
    };
    let mut headers = list(u, 3, |u| Ok((word(u, HEADERS)?, word(u, HEADER_VALUES)?)))?;
    if method == "PATCH" && u.ratio(3u8, 4u8)? {
        headers.push(("content-type".into(), "application/merge-patch+json".into()));
    }
    let body = match u.int_in_range(0..=5u8)? {
        0 => Vec::new(),
        1 => u.arbitrary()?,
        _ => serde_json::to_vec(&input::object(u, 3)?).unwrap_or_default(),
    };
    Ok(Request {
        method,
        path,
        query,
        headers,
        body,
        caller: None,
    })
}

/// Sends `req` and checks that the engine answered without a server error.
fn check(env: &Env, req: &Request) {
    let out = kvsync_component::handle(env, req.clone());
    let status = out.response.status;
    assert!(
        (100..500).contains(&status),
        "{} {}?{} answered {status}: {}",
        req.method,
        req.path,
        req.query,
        String::from_utf8_lossy(&out.response.body)
    );
}
