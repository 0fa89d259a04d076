//! The Rust half of the parity test: replays request fixtures (`tests/parity/*.json`)
//! through [`kvsync::runtime::Runtime`] with empty in-memory storage, the in-memory
//! connector and deterministic WASI, and prints one line per step. The Node host's
//! `host/node/replay.mjs` prints the same lines for the same fixtures; the
//! `parity` test diffs the two byte for byte.
//!
//! A fixture is `{"description": ..., "steps": [...]}`; each step is one of
//! - `{"request": {"method", "path", "query"?, "headers"?, "body"? | "body_text"?, "caller"?}}`:
//!   `api.handle`. `body` (any JSON) is sent serialized with sorted keys, with
//!   `content-type: application/json` unless `headers` is given; `caller` is
//!   `"root"` (the default: [`parity_root`]) or `null` (no token).
//! - `{"sync_run": {"shard"?, "shards"?, "limit"?}}`: `sync.run` with [`SETTINGS`].
//! - `{"reconcile": {}}`: `sync.reconcile`.
//! - `{"advance_ms": N}`: moves the clock forward.
//!
//! Output lines are JSON with sorted keys: `{"body", "headers", "status", "step",
//! "sync_due"}` for requests (`body_hex` instead of `body` when the body is not
//! UTF-8), `{"report", "step"}` for `sync_run`, `{"queued", "step"}` for
//! `reconcile`, `{"error", "step"}` when the call failed (`trap`, `limit`, `busy`). Each fixture file
//! starts with a `# <file name>` line and from empty storage, a fresh clock at
//! [`DEFAULT_START`] and fresh random streams.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kvsync::auth::{Authority, Caller, Namespace, Token};
use kvsync::connectors::{Connectors, InMemory, typed};
use kvsync::runtime::deterministic::{DEFAULT_START, DeterministicWasi};
use kvsync::runtime::{CallError, Limits, Request, Runtime, SyncDue, SyncSettings};
use kvsync::storage::{RedbBackend, SharedBackend, TenantStorage};
use serde_json::{Value, json};

/// The sync settings of every `sync_run` step (the same in replay.mjs).
pub const SETTINGS: SyncSettings = SyncSettings {
    backoff_base_ms: 1000,
    backoff_cap_ms: 60_000,
    coalesce_window_ms: 0,
};

/// The root caller of the fixtures (the same in replay.mjs).
pub fn parity_root() -> Caller {
    Caller {
        token: Token::new("parity-root-token".into()),
        accessor: "parityRootAccessor000000".into(),
        display_name: "root".into(),
        policies: vec!["root".into()],
        path: "auth/token/root".into(),
        creation_time: DEFAULT_START.as_secs(),
        namespace_id: "root".into(),
    }
}

/// Replays every fixture file in order; returns the output lines.
pub async fn replay_files(files: &[impl AsRef<Path>]) -> anyhow::Result<String> {
    let mut out = String::new();
    for file in files {
        let file = file.as_ref();
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let fixture: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        out.push_str(&format!("# {name}\n"));
        replay(&fixture, &mut out)
            .await
            .with_context(|| format!("replaying {name}"))?;
    }
    Ok(out)
}

async fn replay(fixture: &Value, out: &mut String) -> anyhow::Result<()> {
    let wasi = DeterministicWasi::new(DEFAULT_START);
    let connectors = Arc::new(Connectors::from_list(vec![typed(InMemory::default())]));
    let runtime = Runtime::new(
        kvsync::runtime::ENGINE_COMPONENT,
        Limits::default(),
        connectors,
        std::env::var_os("KVSYNC_CACHE_DIR")
            .map(std::path::PathBuf::from)
            .as_deref(),
    )?
    .with_deterministic_wasi(wasi.clone());
    let backend: SharedBackend = Arc::new(RedbBackend::in_memory()?);
    // The built-in policies and an empty token store: the fixtures' caller is
    // not in it, as the Node host's replay has no token at all.
    let (tokens, policies) = kvsync::server::identity(&backend).await?;
    let runtime = runtime.with_tokens(tokens.clone());
    let root = Authority::of(Namespace::root(), &parity_root(), &policies, &tokens).await?;
    let storage = TenantStorage::new(backend, "root");
    let steps = fixture
        .get("steps")
        .and_then(Value::as_array)
        .context("a fixture has a \"steps\" list")?;
    for (n, step) in steps.iter().enumerate() {
        let line = if let Some(req) = step.get("request") {
            match runtime.handle(storage.clone(), request(req, &root)?).await {
                Ok(o) => {
                    let (key, body) = match String::from_utf8(o.response.body) {
                        Ok(s) => ("body", Value::String(s)),
                        Err(e) => ("body_hex", Value::String(hex::encode(e.into_bytes()))),
                    };
                    let mut line = json!({
                        "headers": o.response.headers,
                        "status": o.response.status,
                        "step": n,
                        "sync_due": match o.effects.sync_due {
                            SyncDue::None => json!("none"),
                            SyncDue::All => json!("all"),
                            SyncDue::Destinations(d) => json!(d),
                        },
                    });
                    if let Some(fields) = line.as_object_mut() {
                        fields.insert(key.to_string(), body);
                    }
                    line
                }
                Err(e) => json!({"error": error_class(&e), "step": n}),
            }
        } else if let Some(run) = step.get("sync_run") {
            let arg = |k: &str, d: u32| {
                run.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(d)
            };
            match runtime
                .run_sync(
                    storage.clone(),
                    arg("shard", 0),
                    arg("shards", 1),
                    arg("limit", 256),
                    SETTINGS,
                )
                .await
            {
                Ok(r) => json!({
                    "report": {"failed": r.failed, "next_due_ms": r.next_due_ms, "processed": r.processed},
                    "step": n,
                }),
                Err(e) => json!({"error": error_class(&e), "step": n}),
            }
        } else if step.get("reconcile").is_some() {
            match runtime.reconcile(storage.clone()).await {
                Ok(q) => json!({"queued": q, "step": n}),
                Err(e) => json!({"error": error_class(&e), "step": n}),
            }
        } else if let Some(ms) = step.get("advance_ms").and_then(Value::as_u64) {
            wasi.advance(Duration::from_millis(ms));
            continue;
        } else {
            anyhow::bail!("step {n} is none of request, sync_run, reconcile, advance_ms: {step}");
        };
        out.push_str(&line.to_string());
        out.push('\n');
    }
    Ok(())
}

/// What a failed call prints: its class only (trap details differ between engines).
fn error_class(e: &CallError) -> &'static str {
    match e {
        CallError::Trap(_) => "trap",
        CallError::LimitExceeded(_) => "limit",
        CallError::Busy | CallError::TenantBusy => "busy",
    }
}

fn request(req: &Value, root: &Authority) -> anyhow::Result<Request> {
    let text = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or_default();
    let body = match (req.get("body"), req.get("body_text")) {
        (Some(v), _) => serde_json::to_vec(v)?,
        (None, Some(Value::String(s))) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    };
    let headers = match req.get("headers") {
        Some(h) => serde_json::from_value(h.clone()).context("headers are [name, value] pairs")?,
        None if req.get("body").is_some() => {
            vec![("content-type".to_string(), "application/json".to_string())]
        }
        None => Vec::new(),
    };
    let (caller, authority) = match req.get("caller") {
        None => (Some(parity_root()), Some(root.clone())),
        Some(Value::Null) => (None, None),
        Some(Value::String(s)) if s == "root" => (Some(parity_root()), Some(root.clone())),
        Some(other) => anyhow::bail!("unknown caller {other}"),
    };
    Ok(Request {
        method: text("method").to_string(),
        path: text("path").to_string(),
        query: text("query").to_string(),
        headers,
        body,
        caller,
        authority,
    })
}
