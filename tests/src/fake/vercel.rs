//! A fake of Vercel's project environment variable API, modelled on `@vercel/sdk`'s zod models (`createprojectenvop.ts`,
//! `filterprojectenvsop.ts`, `getprojectenvop.ts`, `removeprojectenvop.ts`).
//!
//! - Auth: `Authorization: Bearer vercel_test_token`, else 403 in Vercel's
//!   shape (`invalidToken` / `missingToken`).
//! - Scope: the token's user belongs to team `team_kvsync` (slug `kvsync`),
//!   which owns project `prj_kvsynctest` (name `kvsynctest`). A project is
//!   found only in the scope the request names (`teamId` / `slug`, else the
//!   user's personal scope): another team → 403, the wrong scope → 404.
//! - `POST /v10/projects/{idOrName}/env[?upsert=true]`: one object or an
//!   array; schema, key rules and size are checked for the whole request
//!   (400 `bad_request`); per-item conflicts go to `failed[]` inside a 201
//!   (`ENV_ALREADY_EXISTS` without upsert, `ENV_CONFLICT` when the targets
//!   overlap an entry with another target set). Entries are unique per (key,
//!   target set, gitBranch); an upsert of the same triple updates in place.
//! - `GET /v10/projects/{idOrName}/env[?decrypt=true&gitBranch=]`,
//!   `GET /v1/projects/{idOrName}/env/{id}` (decrypted),
//!   `DELETE /v9/projects/{idOrName}/env/{id}` (200 with the deleted entry).
//!   `sensitive` values are never returned; `encrypted` ones only decrypted.
//! - Test hooks (no auth), under `/_fake/` (`/_admin/` is the framework's):
//!   `POST /_fake/fail {"times", "code"?, "message"?}` makes the next `times`
//!   upsert items fail inside a 201; `DELETE /_fake/fail` turns it off;
//!   `POST /_fake/projects {"id", "name"?, "team_id"?}` adds a project;
//!   `POST /_fake/envs {"project"?, "key", "value", "type"?, "target", "gitBranch"?}`
//!   stores an entry as if someone else had (not counted as a write).
//!
//! 429 + `X-RateLimit-*` answers come from the framework's fault table.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::{FakeRequest, FakeResponse, Service, object};

/// The only token the fake accepts.
pub const TOKEN: &str = "vercel_test_token";
/// The seeded project, owned by [`TEAM_ID`].
pub const PROJECT_ID: &str = "prj_kvsynctest";
pub const PROJECT_NAME: &str = "kvsynctest";
/// The team the token's user belongs to.
pub const TEAM_ID: &str = "team_kvsync";
pub const TEAM_SLUG: &str = "kvsync";
/// The token's user (its personal scope holds no project unless added).
pub const USER_ID: &str = "user_kvsync";
/// Vercel's budget for all the variables of one deployment (per target here).
pub const MAX_BYTES: usize = 65_536;
const TARGETS: [&str; 3] = ["production", "preview", "development"];
const TYPES: [&str; 5] = ["system", "secret", "encrypted", "plain", "sensitive"];

#[derive(Debug, Clone)]
struct Env {
    id: String,
    key: String,
    value: String,
    kind: String,
    target: Vec<String>,
    git_branch: Option<String>,
    comment: Option<String>,
    created_at: u64,
    updated_at: u64,
}

impl Env {
    /// The entry as the API shows it; `decrypted`: `encrypted` values in clear.
    fn to_json(&self, decrypted: bool) -> Value {
        let mut out = object(json!({
            "id": self.id,
            "key": self.key,
            "type": self.kind,
            "target": self.target,
            "configurationId": null,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "createdBy": USER_ID,
            "updatedBy": USER_ID,
            "customEnvironmentIds": [],
        }));
        match self.kind.as_str() {
            // Write-only: never returned.
            "sensitive" => {}
            "encrypted" | "secret" if !decrypted => {
                out.insert("value".into(), json!(ciphertext(&self.id, &self.value)));
                out.insert("decrypted".into(), json!(false));
            }
            "encrypted" | "secret" => {
                out.insert("value".into(), json!(self.value));
                out.insert("decrypted".into(), json!(true));
            }
            _ => {
                out.insert("value".into(), json!(self.value));
            }
        }
        if let Some(b) = &self.git_branch {
            out.insert("gitBranch".into(), json!(b));
        }
        if let Some(c) = &self.comment {
            out.insert("comment".into(), json!(c));
        }
        Value::Object(out)
    }

    fn same_targets(&self, other: &[String]) -> bool {
        self.target.len() == other.len() && other.iter().all(|t| self.target.contains(t))
    }

    fn overlaps(&self, other: &[String]) -> bool {
        other.iter().any(|t| self.target.contains(t))
    }
}

/// An opaque stand-in for Vercel's ciphertext (it never contains the value).
fn ciphertext(id: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

#[derive(Debug)]
struct Project {
    id: String,
    name: String,
    /// `None`: the user's personal scope.
    team: Option<String>,
    envs: Vec<Env>,
}

/// The `failed[]` mode: the next `times` upsert items fail with this error.
#[derive(Debug, Default)]
struct FailMode {
    times: u32,
    code: String,
    message: String,
}

#[derive(Debug, Default)]
struct Inner {
    projects: Vec<Project>,
    writes: u64,
    next_id: u64,
    fail: FailMode,
}

/// The Vercel fake.
pub struct Vercel {
    inner: Mutex<Inner>,
}

impl Default for Vercel {
    fn default() -> Self {
        Self::new()
    }
}

fn error(status: u16, code: &str, message: &str) -> FakeResponse {
    FakeResponse::json(status, json!({"error": {"code": code, "message": message}}))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn key_is_valid(key: &str) -> bool {
    !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit())
}

/// Percent-decoding of a query value (`+` is a space) or, with
/// `plus_is_space` off, of a path segment.
fn decode_with(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' && plus_is_space { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode(s: &str) -> String {
    decode_with(s, true)
}

/// One validated item of a create request.
struct NewEnv {
    key: String,
    value: String,
    kind: String,
    target: Vec<String>,
    git_branch: Option<String>,
    comment: Option<String>,
}

/// Validates one item against the SDK's request schema and Vercel's rules.
fn parse_item(item: &Value) -> Result<NewEnv, FakeResponse> {
    let obj = item
        .as_object()
        .ok_or_else(|| error(400, "bad_request", "Invalid request: should be object."))?;
    let string = |field: &str| -> Result<String, FakeResponse> {
        match obj.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(error(
                400,
                "bad_request",
                &format!("Invalid request: `{field}` should be string."),
            )),
            None => Err(error(
                400,
                "bad_request",
                &format!("Invalid request: missing required property `{field}`."),
            )),
        }
    };
    let key = string("key")?;
    let value = string("value")?;
    let kind = string("type")?;
    if !TYPES.contains(&kind.as_str()) {
        return Err(error(
            400,
            "bad_request",
            "Invalid request: `type` should be equal to one of the allowed values \"system\", \"secret\", \"encrypted\", \"plain\", \"sensitive\".",
        ));
    }
    let target: Vec<String> = match obj.get("target") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| match t.as_str() {
                Some(s) if TARGETS.contains(&s) => Ok(s.to_string()),
                _ => Err(error(
                    400,
                    "bad_request",
                    "Invalid request: `target` should be equal to one of the allowed values \"production\", \"preview\", \"development\".",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::String(s)) if TARGETS.contains(&s.as_str()) => vec![s.clone()],
        Some(_) => {
            return Err(error(400, "bad_request", "Invalid request: `target` should be array."));
        }
        None => {
            return Err(error(
                400,
                "bad_request",
                "Invalid request: missing required property `target`.",
            ));
        }
    };
    let mut unique: Vec<String> = Vec::new();
    for t in target {
        if !unique.contains(&t) {
            unique.push(t);
        }
    }
    if unique.is_empty() {
        return Err(error(
            400,
            "bad_request",
            "Invalid request: `target` should NOT have fewer than 1 items.",
        ));
    }
    let git_branch = match obj.get("gitBranch") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(error(
                400,
                "bad_request",
                "Invalid request: `gitBranch` should be string.",
            ));
        }
    };
    let comment = obj
        .get("comment")
        .and_then(Value::as_str)
        .map(str::to_string);
    if !key_is_valid(&key) {
        return Err(FakeResponse::json(
            400,
            json!({"error": {
                "code": "bad_request",
                "message": "The name of your Environment Variable contains invalid characters. Only letters, digits, and underscores are allowed. Furthermore, the name should not start with a digit.",
                "key": key,
            }}),
        ));
    }
    if kind == "sensitive" && unique.iter().any(|t| t == "development") {
        return Err(error(
            400,
            "bad_request",
            "Sensitive Environment Variables cannot be created in the Development Environment.",
        ));
    }
    if git_branch.is_some() && unique != ["preview"] {
        return Err(error(
            400,
            "bad_request",
            "A Git branch can only be set for Environment Variables that target only Preview.",
        ));
    }
    if key.len() + value.len() > MAX_BYTES {
        return Err(error(
            400,
            "bad_request",
            &format!(
                "The Environment Variable `{key}` exceeds the 64 KB limit for Environment Variables."
            ),
        ));
    }
    Ok(NewEnv {
        key,
        value,
        kind,
        target: unique,
        git_branch,
        comment,
    })
}

impl Vercel {
    pub fn new() -> Self {
        Vercel {
            inner: Mutex::new(Inner {
                projects: vec![Project {
                    id: PROJECT_ID.to_string(),
                    name: PROJECT_NAME.to_string(),
                    team: Some(TEAM_ID.to_string()),
                    envs: Vec::new(),
                }],
                ..Inner::default()
            }),
        }
    }

    /// The `failed[]` mode: the next `times` upsert items fail inside a 201
    /// with `code` / `message`.
    pub fn fail_next(&self, times: u32, code: &str, message: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.fail = FailMode {
                times,
                code: code.to_string(),
                message: message.to_string(),
            };
        }
    }

    /// Adds a project (`team`: `None` for the user's personal scope).
    pub fn add_project(&self, id: &str, name: &str, team: Option<&str>) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.projects.retain(|p| p.id != id);
            inner.projects.push(Project {
                id: id.to_string(),
                name: name.to_string(),
                team: team.map(str::to_string),
                envs: Vec::new(),
            });
        }
    }

    /// Stores an entry as if someone else had created it (no write counted).
    /// Returns its id.
    pub fn seed_env(
        &self,
        project: &str,
        key: &str,
        value: &str,
        kind: &str,
        target: &[&str],
        git_branch: Option<&str>,
    ) -> Option<String> {
        let mut inner = self.inner.lock().ok()?;
        let id = inner.new_id();
        let now = now_ms();
        let p = inner
            .projects
            .iter_mut()
            .find(|p| p.id == project || p.name == project)?;
        p.envs.push(Env {
            id: id.clone(),
            key: key.to_string(),
            value: value.to_string(),
            kind: kind.to_string(),
            target: target.iter().map(|t| t.to_string()).collect(),
            git_branch: git_branch.map(str::to_string),
            comment: None,
            created_at: now,
            updated_at: now,
        });
        Some(id)
    }

    /// Every entry of a project, as the API shows them decrypted (tests).
    pub fn envs(&self, project: &str) -> Vec<Value> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        inner
            .projects
            .iter()
            .find(|p| p.id == project || p.name == project)
            .map(|p| p.envs.iter().map(|e| e.to_json(true)).collect())
            .unwrap_or_default()
    }

    /// Upsert items written so far.
    pub fn writes(&self) -> u64 {
        self.inner.lock().map(|i| i.writes).unwrap_or_default()
    }

    fn hooks(&self, req: &FakeRequest, rest: &str) -> FakeResponse {
        let body = if req.body.is_empty() {
            json!({})
        } else {
            match req.json() {
                Ok(v) => v,
                Err(e) => return e,
            }
        };
        let text = |f: &str| body.get(f).and_then(Value::as_str).map(str::to_string);
        match (req.method.as_str(), rest) {
            ("POST", "fail") => {
                let times = body.get("times").and_then(Value::as_u64).unwrap_or(1);
                self.fail_next(
                    u32::try_from(times).unwrap_or(u32::MAX),
                    &text("code").unwrap_or_else(|| "ENV_CONFLICT".to_string()),
                    &text("message").unwrap_or_else(|| {
                        "The Environment Variable could not be saved (injected failure)."
                            .to_string()
                    }),
                );
                FakeResponse::empty(204)
            }
            ("DELETE", "fail") => {
                self.fail_next(0, "", "");
                FakeResponse::empty(204)
            }
            ("POST", "projects") => match text("id") {
                Some(id) => {
                    let name = text("name").unwrap_or_else(|| id.clone());
                    self.add_project(&id, &name, text("team_id").as_deref());
                    FakeResponse::empty(204)
                }
                None => error(400, "bad_request", "id is required"),
            },
            ("POST", "envs") => {
                let targets: Vec<String> = body
                    .get("target")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
                match self.seed_env(
                    &text("project").unwrap_or_else(|| PROJECT_ID.to_string()),
                    &text("key").unwrap_or_default(),
                    &text("value").unwrap_or_default(),
                    &text("type").unwrap_or_else(|| "encrypted".to_string()),
                    &targets,
                    text("gitBranch").as_deref(),
                ) {
                    Some(id) => FakeResponse::json(200, json!({"id": id})),
                    None => error(404, "not_found", "Project not found"),
                }
            }
            _ => error(404, "not_found", "unknown fake route"),
        }
    }
}

impl Inner {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        // Vercel's env ids: 16 alphanumerics.
        let mut h = Sha256::new();
        h.update(self.next_id.to_le_bytes());
        let hex = hex::encode(h.finalize());
        format!(
            "{}{:04}",
            hex.get(..12).unwrap_or("000000000000"),
            self.next_id % 10_000
        )
    }

    /// The project `id_or_name` in `scope` (`None`: personal), or the answer.
    fn project(
        &mut self,
        id_or_name: &str,
        scope: Option<&str>,
    ) -> Result<&mut Project, FakeResponse> {
        let scope = scope.map(str::to_string);
        self.projects
            .iter_mut()
            .find(|p| (p.id == id_or_name || p.name == id_or_name) && p.team == scope)
            .ok_or_else(|| error(404, "not_found", "Project not found"))
    }

    fn create(&mut self, req: &FakeRequest, project: &str, scope: Option<&str>) -> FakeResponse {
        let body = match req.json() {
            Ok(v) => v,
            Err(_) => return error(400, "bad_request", "Invalid JSON body."),
        };
        let upsert = req
            .query_param("upsert")
            .is_some_and(|v| v == "true" || v == "1");
        let (items, single) = match &body {
            Value::Array(items) => (items.clone(), false),
            other => (vec![other.clone()], true),
        };
        if items.is_empty() {
            return error(
                400,
                "bad_request",
                "Invalid request: should NOT have fewer than 1 items.",
            );
        }
        let parsed: Vec<NewEnv> = match items.iter().map(parse_item).collect::<Result<_, _>>() {
            Ok(p) => p,
            Err(e) => return e,
        };
        if let Err(e) = self.project(project, scope) {
            return e;
        }
        let mut created = Vec::new();
        let mut failed = Vec::new();
        for item in parsed {
            let fail = |code: &str, message: String| {
                json!({"error": {
                    "code": code,
                    "message": message,
                    "key": item.key,
                    "envVarKey": item.key,
                    "target": item.target,
                    "gitBranch": item.git_branch,
                }})
            };
            if self.fail.times > 0 {
                self.fail.times -= 1;
                failed.push(fail(&self.fail.code.clone(), self.fail.message.clone()));
                continue;
            }
            let id = self.new_id();
            let now = now_ms();
            let Ok(p) = self.project(project, scope) else {
                continue;
            };
            let same: Vec<usize> = p
                .envs
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e.key == item.key && e.git_branch == item.git_branch && e.overlaps(&item.target)
                })
                .map(|(i, _)| i)
                .collect();
            let first_target = item.target.first().cloned().unwrap_or_default();
            let branch = item
                .git_branch
                .clone()
                .unwrap_or_else(|| "undefined".to_string());
            let exact = match same.as_slice() {
                [] => None,
                [i] if p.envs.get(*i).is_some_and(|e| e.same_targets(&item.target)) => Some(*i),
                _ => {
                    failed.push(fail(
                        "ENV_CONFLICT",
                        format!(
                            "A variable with the name `{}` already exists for the target {first_target} on branch {branch}",
                            item.key
                        ),
                    ));
                    continue;
                }
            };
            // The per-target budget: every other entry of each target, plus this one.
            let budget_ok = item.target.iter().all(|t| {
                let others: usize = p
                    .envs
                    .iter()
                    .enumerate()
                    .filter(|(i, e)| Some(*i) != exact && e.target.contains(t))
                    .map(|(_, e)| e.key.len() + e.value.len())
                    .sum();
                others + item.key.len() + item.value.len() <= MAX_BYTES
            });
            if !budget_ok {
                failed.push(fail(
                    "ENV_SIZE_LIMIT",
                    format!(
                        "The total size of Environment Variables for the target {first_target} would exceed the 64 KB limit."
                    ),
                ));
                continue;
            }
            let entry = match exact {
                Some(_) if !upsert => {
                    failed.push(fail(
                        "ENV_ALREADY_EXISTS",
                        "Another Environment Variable with the same Name and Environment exists in your project. Remove it or choose a different Name or Environment.".to_string(),
                    ));
                    continue;
                }
                Some(i) => match p.envs.get_mut(i) {
                    Some(e) => {
                        e.value = item.value;
                        e.kind = item.kind;
                        if item.comment.is_some() {
                            e.comment = item.comment;
                        }
                        e.updated_at = now;
                        e.clone()
                    }
                    None => continue,
                },
                None => {
                    let e = Env {
                        id,
                        key: item.key,
                        value: item.value,
                        kind: item.kind,
                        target: item.target,
                        git_branch: item.git_branch,
                        comment: item.comment,
                        created_at: now,
                        updated_at: now,
                    };
                    p.envs.push(e.clone());
                    e
                }
            };
            created.push(entry.to_json(false));
            self.writes += 1;
        }
        let created = if single {
            created.into_iter().next().unwrap_or_else(|| json!({}))
        } else {
            Value::Array(created)
        };
        FakeResponse::json(201, json!({"created": created, "failed": failed}))
    }

    fn list(&mut self, req: &FakeRequest, project: &str, scope: Option<&str>) -> FakeResponse {
        let decrypt = req
            .query_param("decrypt")
            .is_some_and(|v| v == "true" || v == "1");
        let branch = req
            .query_param("gitBranch")
            .map(|b| decode(&b))
            .filter(|b| !b.is_empty());
        match self.project(project, scope) {
            Ok(p) => {
                let envs: Vec<Value> = p
                    .envs
                    .iter()
                    .filter(|e| {
                        branch.is_none() || e.git_branch.is_none() || e.git_branch == branch
                    })
                    .map(|e| e.to_json(decrypt))
                    .collect();
                FakeResponse::json(200, json!({ "envs": envs }))
            }
            Err(e) => e,
        }
    }

    fn get(&mut self, project: &str, scope: Option<&str>, id: &str) -> FakeResponse {
        match self.project(project, scope) {
            Ok(p) => match p.envs.iter().find(|e| e.id == id) {
                Some(e) => FakeResponse::json(200, e.to_json(true)),
                None => error(404, "not_found", "Environment Variable not found"),
            },
            Err(e) => e,
        }
    }

    fn remove(&mut self, project: &str, scope: Option<&str>, id: &str) -> FakeResponse {
        match self.project(project, scope) {
            Ok(p) => match p.envs.iter().position(|e| e.id == id) {
                Some(i) => {
                    let e = p.envs.remove(i);
                    FakeResponse::json(200, e.to_json(false))
                }
                None => error(404, "not_found", "Environment Variable not found"),
            },
            Err(e) => e,
        }
    }
}

/// The scope a request names: `Ok(None)` personal, `Ok(Some(team))`, or the
/// 403 of a team the user is not a member of.
fn scope(req: &FakeRequest) -> Result<Option<&'static str>, FakeResponse> {
    let team = req
        .query_param("teamId")
        .map(|t| decode(&t))
        .filter(|t| !t.is_empty());
    let slug = req
        .query_param("slug")
        .map(|s| decode(&s))
        .filter(|s| !s.is_empty());
    match (team.as_deref(), slug.as_deref()) {
        (None, None) => Ok(None),
        (Some(TEAM_ID), None | Some(TEAM_SLUG)) | (None, Some(TEAM_SLUG)) => Ok(Some(TEAM_ID)),
        _ => Err(error(403, "forbidden", "Not authorized")),
    }
}

impl Service for Vercel {
    fn handle(&self, req: &FakeRequest) -> FakeResponse {
        if let Some(rest) = req.path.strip_prefix("/_fake/") {
            return self.hooks(req, rest);
        }
        match req.bearer() {
            None => {
                return FakeResponse::json(
                    403,
                    json!({"error": {"code": "forbidden", "message": "The request is missing an authentication token", "missingToken": true}}),
                );
            }
            Some(t) if t != TOKEN => {
                return FakeResponse::json(
                    403,
                    json!({"error": {"code": "forbidden", "message": "Not authorized", "invalidToken": true}}),
                );
            }
            Some(_) => {}
        }
        let scope = match scope(req) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let parts: Vec<String> = req
            .path
            .trim_start_matches('/')
            .split('/')
            .map(|p| decode_with(p, false))
            .collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let Ok(mut inner) = self.inner.lock() else {
            return error(
                500,
                "internal_server_error",
                "An unexpected internal error occurred",
            );
        };
        match (req.method.as_str(), parts.as_slice()) {
            ("POST", ["v10", "projects", p, "env"]) => inner.create(req, p, scope),
            ("GET", ["v10", "projects", p, "env"]) => inner.list(req, p, scope),
            ("GET", ["v1", "projects", p, "env", id]) => inner.get(p, scope, id),
            ("DELETE", ["v9", "projects", p, "env", id]) => inner.remove(p, scope, id),
            (_, ["v10", "projects", _, "env"]) => error(
                405,
                "method_unknown",
                "This endpoint only responds to GET, POST",
            ),
            (_, ["v1", "projects", _, "env", _]) => {
                error(405, "method_unknown", "This endpoint only responds to GET")
            }
            (_, ["v9", "projects", _, "env", _]) => error(
                405,
                "method_unknown",
                "This endpoint only responds to DELETE, PATCH",
            ),
            _ => error(
                404,
                "not_found",
                "The requested API endpoint was not found.",
            ),
        }
    }

    fn state(&self) -> Value {
        let Ok(inner) = self.inner.lock() else {
            return json!({});
        };
        let mut objects = Map::new();
        let mut projects = Map::new();
        for p in &inner.projects {
            let envs: Vec<Value> = p
                .envs
                .iter()
                .map(|e| {
                    json!({
                        "id": e.id, "key": e.key, "value": e.value, "type": e.kind,
                        "target": e.target, "gitBranch": e.git_branch,
                    })
                })
                .collect();
            projects.insert(
                p.id.clone(),
                json!({"name": p.name, "team": p.team, "envs": envs}),
            );
            if p.id != PROJECT_ID {
                continue;
            }
            for e in &p.envs {
                // One key may have several entries (targets, branches): the
                // first one stands for the key; `projects` shows them all.
                objects.entry(e.key.clone()).or_insert_with(|| {
                    json!({"value": e.value, "tags": {}, "target": e.target, "type": e.kind, "id": e.id})
                });
            }
        }
        json!({
            "objects": objects,
            "writes": inner.writes,
            "projects": projects,
            "fail_next": inner.fail.times,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, token: Option<&str>, body: Value) -> FakeRequest {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut headers = hyper::HeaderMap::new();
        if let Some(t) = token {
            headers.insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        FakeRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers,
            body: if body.is_null() {
                Default::default()
            } else {
                body.to_string().into()
            },
        }
    }

    fn call(v: &Vercel, method: &str, path: &str, body: Value) -> (u16, Value) {
        let r = v.handle(&req(method, path, Some(TOKEN), body));
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        )
    }

    const ENV: &str = "/v10/projects/prj_kvsynctest/env?teamId=team_kvsync";

    #[test]
    fn auth_and_scope() {
        let v = Vercel::new();
        let r = v.handle(&req("GET", ENV, None, Value::Null));
        assert_eq!(r.status, 403);
        let r = v.handle(&req("GET", ENV, Some("wrong"), Value::Null));
        assert_eq!(r.status, 403);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"]["invalidToken"], true);
        assert_eq!(call(&v, "GET", ENV, Value::Null).0, 200);
        assert_eq!(
            call(
                &v,
                "GET",
                "/v10/projects/kvsynctest/env?slug=kvsync",
                Value::Null
            )
            .0,
            200
        );
        // The personal scope does not hold the team's project.
        let (status, body) = call(&v, "GET", "/v10/projects/prj_kvsynctest/env", Value::Null);
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(
            call(
                &v,
                "GET",
                "/v10/projects/prj_kvsynctest/env?teamId=team_other",
                Value::Null
            )
            .0,
            403
        );
        assert_eq!(
            call(
                &v,
                "GET",
                "/v10/projects/prj_nope/env?teamId=team_kvsync",
                Value::Null
            )
            .0,
            404
        );
    }

    #[test]
    fn upsert_creates_then_updates_in_place() {
        let v = Vercel::new();
        let item = json!([{"key": "A", "value": "1", "type": "encrypted", "target": ["production", "preview"]}]);
        let (status, body) = call(&v, "POST", &format!("{ENV}&upsert=true"), item);
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["failed"], json!([]));
        let id = body["created"][0]["id"].as_str().unwrap().to_string();
        assert_ne!(body["created"][0]["value"], "1");
        let item = json!([{"key": "A", "value": "2", "type": "encrypted", "target": ["preview", "production"]}]);
        let (_, body) = call(&v, "POST", &format!("{ENV}&upsert=true"), item.clone());
        assert_eq!(body["created"][0]["id"], id.as_str());
        assert_eq!(v.state()["objects"]["A"]["value"], "2");
        assert_eq!(v.writes(), 2);
        // Without upsert: already exists, inside a 201.
        let (status, body) = call(&v, "POST", ENV, item);
        assert_eq!(status, 201);
        assert_eq!(body["failed"][0]["error"]["code"], "ENV_ALREADY_EXISTS");
        // Overlapping targets of another set: a conflict.
        let item = json!({"key": "A", "value": "3", "type": "encrypted", "target": ["production"]});
        let (_, body) = call(&v, "POST", &format!("{ENV}&upsert=true"), item);
        assert_eq!(body["failed"][0]["error"]["code"], "ENV_CONFLICT");
        assert_eq!(body["created"], json!({}));
        // A disjoint target set is another entry.
        let item = json!({"key": "A", "value": "dev", "type": "plain", "target": ["development"]});
        let (_, body) = call(&v, "POST", &format!("{ENV}&upsert=true"), item);
        assert_eq!(body["created"]["value"], "dev");
        assert_eq!(v.writes(), 3);
        let (_, list) = call(&v, "GET", ENV, Value::Null);
        assert_eq!(list["envs"].as_array().unwrap().len(), 2);
        let (_, list) = call(&v, "GET", &format!("{ENV}&decrypt=true"), Value::Null);
        let values: Vec<&str> = list["envs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["value"].as_str().unwrap())
            .collect();
        assert_eq!(values, vec!["2", "dev"]);
        let (status, one) = call(
            &v,
            "GET",
            &format!("/v1/projects/prj_kvsynctest/env/{id}?teamId=team_kvsync"),
            Value::Null,
        );
        assert_eq!((status, one["value"].as_str()), (200, Some("2")));
        let (status, gone) = call(
            &v,
            "DELETE",
            &format!("/v9/projects/prj_kvsynctest/env/{id}?teamId=team_kvsync"),
            Value::Null,
        );
        assert_eq!((status, gone["id"].as_str()), (200, Some(id.as_str())));
        let (status, _) = call(
            &v,
            "DELETE",
            &format!("/v9/projects/prj_kvsynctest/env/{id}?teamId=team_kvsync"),
            Value::Null,
        );
        assert_eq!(status, 404);
    }

    #[test]
    fn rules_and_limits() {
        let v = Vercel::new();
        let post = |item: Value| call(&v, "POST", &format!("{ENV}&upsert=true"), item);
        for bad in [
            json!({"key": "9A", "value": "1", "type": "encrypted", "target": ["production"]}),
            json!({"key": "A-B", "value": "1", "type": "encrypted", "target": ["production"]}),
            json!({"key": "A", "value": "1", "type": "bogus", "target": ["production"]}),
            json!({"key": "A", "value": "1", "type": "encrypted", "target": ["staging"]}),
            json!({"key": "A", "value": "1", "type": "encrypted"}),
            json!({"key": "A", "type": "encrypted", "target": ["production"]}),
            json!({"key": "A", "value": "1", "type": "sensitive", "target": ["development"]}),
            json!({"key": "A", "value": "x".repeat(MAX_BYTES), "type": "encrypted", "target": ["production"]}),
        ] {
            let (status, body) = post(bad.clone());
            assert_eq!(status, 400, "{bad}: {body}");
            assert_eq!(body["error"]["code"], "bad_request");
        }
        // The per-target budget.
        assert_eq!(post(json!({"key": "A", "value": "x".repeat(40_000), "type": "encrypted", "target": ["production"]})).0, 201);
        let (_, body) = post(
            json!({"key": "B", "value": "x".repeat(30_000), "type": "encrypted", "target": ["production"]}),
        );
        assert_eq!(body["failed"][0]["error"]["code"], "ENV_SIZE_LIMIT");
        // Sensitive values never come back.
        post(json!({"key": "S", "value": "hidden", "type": "sensitive", "target": ["preview"]}));
        let (_, list) = call(&v, "GET", &format!("{ENV}&decrypt=true"), Value::Null);
        let s = list["envs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == "S")
            .unwrap();
        assert!(s.get("value").is_none(), "{s}");
        assert_eq!(v.writes(), 2);
    }

    #[test]
    fn the_failed_mode_fails_items_inside_a_201() {
        let v = Vercel::new();
        let r = v.handle(&req(
            "POST",
            "/_fake/fail",
            None,
            json!({"times": 1, "code": "rate_limited"}),
        ));
        assert_eq!(r.status, 204);
        let items = json!([
            {"key": "A", "value": "1", "type": "encrypted", "target": ["production"]},
            {"key": "B", "value": "2", "type": "encrypted", "target": ["production"]},
        ]);
        let (status, body) = call(&v, "POST", &format!("{ENV}&upsert=true"), items);
        assert_eq!(status, 201);
        assert_eq!(body["failed"][0]["error"]["code"], "rate_limited");
        assert_eq!(body["failed"][0]["error"]["key"], "A");
        assert_eq!(body["created"][0]["key"], "B");
        assert_eq!(v.writes(), 1);
        assert!(v.state()["objects"].get("A").is_none());
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(decode("team%5Fkvsync"), "team_kvsync");
        assert_eq!(decode("a+b%2"), "a b%2");
        assert_eq!(decode("%zz"), "%zz");
    }
}
