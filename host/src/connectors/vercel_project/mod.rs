//! `vercel-project`: environment variables of a Vercel project.
//!
//! Plain `reqwest` through the shared [`http::client`] (egress-filtering
//! resolver, no redirects, no proxies, no retries: the engine is the one layer
//! that retries). Base URL `https://api.vercel.com`, overridable with
//! `KVSYNC_VERCEL_API_URL` ([`ConnectorEnv`]); `Authorization: Bearer <access_token>`; the team
//! scope goes in the `teamId` query parameter when `team_id` is set.
//!
//! - **push**: one call, `POST /v10/projects/{project}/env?upsert=true` with a
//!   one-item array `[{key, value, type: "encrypted", target}]`. Vercel answers
//!   201 `{"created", "failed": [...]}`; a non-empty `failed` is an error for
//!   the key even though the status is a success.
//! - **delete**: `GET /v10/projects/{project}/env` to find the ids of the key
//!   (every entry of that key whose targets intersect the destination's
//!   `deployment_environments`; branch-specific entries are not the sync's and
//!   are left alone), then `DELETE /v9/projects/{project}/env/{id}` for each
//!   (404 counts as deleted). A key that is not there is deleted already.
//!
//! Names (letters, digits and `_`, not starting with a digit) and the value
//! size (64 KiB, Vercel's budget for all the variables of a deployment) are
//! checked before any call.

mod client;
mod config;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::egress::Dns;
use super::http;
use super::{Connector, ConnectorEnv, Dest, ExternalSecret, SyncError};
use client::{Api, scrub};
pub use config::{Config, TARGETS};

/// Vercel's REST API.
pub const DEFAULT_API_URL: &str = "https://api.vercel.com";
/// Vercel allows 64 KiB for all the variables of one deployment combined; a
/// single value can never be larger.
pub const MAX_VALUE_BYTES: usize = 65_536;
/// Provider name in messages.
const PROVIDER: &str = "Vercel";

/// The `vercel-project` connector.
pub struct VercelProject {
    /// Base URL of the API: `KVSYNC_VERCEL_API_URL`, else Vercel's.
    base_url: String,
    dns: Dns,
}

impl VercelProject {
    /// The connector, with the API URL override of `env`.
    pub fn new(env: &ConnectorEnv) -> Self {
        VercelProject {
            base_url: env
                .vercel_api_url
                .clone()
                .unwrap_or_else(|| DEFAULT_API_URL.to_string()),
            dns: env.dns.clone(),
        }
    }
}

#[async_trait]
impl Connector for VercelProject {
    const KIND: &'static str = "vercel-project";
    type Config = Config;

    async fn push(&self, dest: &Dest<Config>, secret: &ExternalSecret) -> Result<(), SyncError> {
        check_name(&secret.name)?;
        check_value(&secret.value)?;
        let api = Api::new(dest, &self.base_url, &self.dns)?;
        let url = api.url(
            &["v10", "projects", api.settings.project_id, "env"],
            &[("upsert", "true")],
        )?;
        let body = Zeroizing::new(upsert_body(
            &secret.name,
            &secret.value,
            &api.settings.targets,
        )?);
        let request = api
            .client
            .post(url.clone())
            .header("content-type", "application/json")
            .body(body.to_vec());
        let answer = api.send(&url, request, &secret.value).await?;
        if !answer.status.is_success() {
            return Err(answer.error());
        }
        let failures = failures_of(&answer.body).map_err(|e| SyncError::ExternalService {
            message: format!(
                "{PROVIDER} answered {} with an unreadable body: {e}",
                answer.status.as_u16()
            ),
            retry_after: None,
        })?;
        match failures.first() {
            None => Ok(()),
            Some(first) => Err(failure_error(
                &secret.name,
                first,
                failures.len(),
                &secret.value,
            )),
        }
    }

    async fn delete(&self, dest: &Dest<Config>, name: &str) -> Result<(), SyncError> {
        if check_name(name).is_err() {
            // Vercel could never have stored such a key: nothing to delete.
            return Ok(());
        }
        let api = Api::new(dest, &self.base_url, &self.dns)?;
        let url = api.url(&["v10", "projects", api.settings.project_id, "env"], &[])?;
        let answer = api.send(&url, api.client.get(url.clone()), "").await?;
        if !answer.status.is_success() {
            return Err(answer.error());
        }
        let ids = ids_to_delete(&answer.body, name, &api.settings.targets).map_err(|e| {
            SyncError::ExternalService {
                message: format!(
                    "{PROVIDER} answered the env listing with an unreadable body: {e}"
                ),
                retry_after: None,
            }
        })?;
        for id in ids {
            let url = api.url(
                &["v9", "projects", api.settings.project_id, "env", &id],
                &[],
            )?;
            let answer = api.send(&url, api.client.delete(url.clone()), "").await?;
            if !answer.status.is_success() && answer.status.as_u16() != 404 {
                return Err(answer.error());
            }
        }
        Ok(())
    }
}

/// Vercel's rule for variable names: letters, digits and `_`, not starting with
/// a digit.
pub fn check_name(name: &str) -> Result<(), SyncError> {
    let bad = |why: &str| {
        SyncError::ClientSide(format!(
            "{name:?} is not a valid Vercel environment variable name: {why}"
        ))
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(bad(&format!("{c:?} is not a letter, a digit or _")));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad("it starts with a digit"));
    }
    Ok(())
}

/// A value must fit in Vercel's 64 KiB budget.
pub fn check_value(value: &str) -> Result<(), SyncError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(SyncError::ClientSide(format!(
            "the value is {} bytes but Vercel allows at most {MAX_VALUE_BYTES} bytes for the variables of a deployment",
            value.len()
        )));
    }
    Ok(())
}

/// One item of the upsert body (borrowed: the value is not copied).
#[derive(Serialize)]
struct UpsertItem<'a> {
    key: &'a str,
    value: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    target: &'a [&'static str],
}

/// The body of the upsert: a one-item array of an `encrypted` variable.
pub fn upsert_body(
    name: &str,
    value: &str,
    targets: &[&'static str],
) -> Result<Vec<u8>, SyncError> {
    serde_json::to_vec(&[UpsertItem {
        key: name,
        value,
        kind: "encrypted",
        target: targets,
    }])
    .map_err(|e| SyncError::Internal(format!("cannot encode the Vercel request: {e}")))
}

/// One entry of `failed[]`.
#[derive(Debug, Default, Deserialize)]
pub struct Failure {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Deserialize)]
struct FailedItem {
    #[serde(default)]
    error: Failure,
}

#[derive(Deserialize)]
struct CreateAnswer {
    #[serde(default)]
    failed: Vec<FailedItem>,
}

/// The failures a 2xx answer of the upsert carries (none when it has no
/// `failed`, or an empty body).
pub fn failures_of(body: &str) -> Result<Vec<Failure>, String> {
    if body.trim().is_empty() {
        return Ok(Vec::new());
    }
    let answer: CreateAnswer = serde_json::from_str(body)
        .map_err(|e| format!("line {}, column {}", e.line(), e.column()))?;
    Ok(answer.failed.into_iter().map(|f| f.error).collect())
}

/// Codes of failures that are the provider's trouble, worth a retry.
fn retryable(code: &str) -> bool {
    let code = code.to_ascii_lowercase();
    [
        "rate_limit",
        "too_many_requests",
        "internal",
        "unavailable",
        "timeout",
        "timed_out",
        "try_again",
        "bad_gateway",
    ]
    .iter()
    .any(|c| code.contains(c))
}

/// The sync error of a failed upsert item: conflicts and rejected input are
/// the destination's (client side); rate limits and internal errors are
/// Vercel's (retried).
pub fn failure_error(name: &str, first: &Failure, count: usize, secret: &str) -> SyncError {
    let code = if first.code.is_empty() {
        "unknown"
    } else {
        first.code.as_str()
    };
    let text = scrub(Zeroizing::new(first.message.clone()), secret);
    let more = if count > 1 {
        format!(" (and {} more)", count - 1)
    } else {
        String::new()
    };
    let message = format!(
        "{PROVIDER} did not write {name}: {code}: {}{more}",
        http::detail(&text)
    );
    if retryable(code) {
        SyncError::ExternalService {
            message,
            retry_after: None,
        }
    } else {
        SyncError::ClientSide(message)
    }
}

#[derive(Deserialize)]
struct ListAnswer {
    #[serde(default)]
    envs: Vec<ListedEnv>,
}

#[derive(Deserialize)]
struct ListedEnv {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    key: String,
    /// An array of environments, or a single one as a string.
    #[serde(default)]
    target: Option<Value>,
    #[serde(default, rename = "gitBranch")]
    git_branch: Option<String>,
}

impl ListedEnv {
    fn targets(&self) -> Vec<&str> {
        match &self.target {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

/// The ids of the entries of `name` the destination owns: same key, no git
/// branch, and at least one target among `targets`.
pub fn ids_to_delete(body: &str, name: &str, targets: &[&str]) -> Result<Vec<String>, String> {
    let answer: ListAnswer = serde_json::from_str(body)
        .map_err(|e| format!("line {}, column {}", e.line(), e.column()))?;
    Ok(answer
        .envs
        .into_iter()
        .filter(|e| e.key == name)
        .filter(|e| e.git_branch.as_deref().is_none_or(str::is_empty))
        .filter(|e| e.targets().iter().any(|t| targets.contains(t)))
        .filter_map(|e| e.id)
        .collect())
}

#[cfg(test)]
mod tests;
