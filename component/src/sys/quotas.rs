//! Rate-limit quotas: `sys/quotas/rate-limit` (LIST), `sys/quotas/rate-limit/:name` (read,
//! write, delete) and `sys/quotas/config` (read, write), with Vault's bodies.
//!
//! The engine validates and stores the rules in the root tenant's storage ([`keys`]); the host
//! enforces them in its HTTP front, before a request reaches an engine instance, from a cache of
//! these same records that follows storage changes. [`QuotaSet::find`] is the one matching rule
//! both sides use: the most specific quota wins — a path suffix under a mount (exact, then the
//! longest trailing-glob pattern), then the mount, then the request's namespace, then the
//! nearest parent namespace whose quota is inheritable (the global quota, path `""`, is
//! inheritable unless written otherwise). A namespace's quota never applies to another
//! namespace, nor to its children unless it is inheritable.
//!
//! `role` (login roles of auth methods) is refused when set: kvsync's only auth method, the
//! token store, has no roles. A quota's `path` names a namespace, a mount in it, or a path
//! under that mount; until namespaces exist every path resolves in the root namespace, and a
//! path that names no mount is refused as Vault refuses it.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec, FieldType};
use crate::storage::Tx;
use crate::sys::mounts::MountTable;

/// Where the records live, relative to the root tenant's storage.
pub mod keys {
    /// One record per rate-limit quota, under its name.
    pub const RATE_LIMIT: &str = "core/quotas/rate-limit/";
    /// The quota configuration ([`super::QuotaConfig`]).
    pub const CONFIG: &str = "core/quotas/config";

    pub fn rate_limit(name: &str) -> String {
        format!("{RATE_LIMIT}{name}")
    }
}

/// The `type` a rate-limit quota reads back with.
pub const TYPE_RATE_LIMIT: &str = "rate-limit";

/// Paths no rate-limit quota applies to until the configuration says otherwise (Vault's).
pub const DEFAULT_EXEMPT_PATHS: &[&str] = &[
    "sys/generate-recovery-token/attempt",
    "sys/generate-recovery-token/update",
    "sys/generate-root/attempt",
    "sys/generate-root/update",
    "sys/health",
    "sys/seal-status",
    "sys/unseal",
];

/// Mounts every namespace has besides its secrets engines (the system backend and the token
/// store): a quota may name them.
const BUILTIN_MOUNTS: &[&str] = &["sys/", "auth/token/"];

/// A stored rate-limit quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitQuota {
    pub name: String,
    /// `""` (root) or `team-a/`.
    pub namespace_path: String,
    /// `""` (the whole namespace) or a mount of it, `secret/`.
    pub mount_path: String,
    /// `""` (the whole mount), a path under it (`data/app`), or a prefix pattern (`data/app*`).
    pub path_suffix: String,
    /// Requests allowed per interval (the bucket's size).
    pub rate: f64,
    /// Seconds.
    pub interval: u64,
    /// Seconds a client past the rate is refused (0: only until the bucket refills).
    pub block_interval: u64,
    /// Whether child namespaces without a quota of their own use this one.
    pub inheritable: bool,
}

impl RateLimitQuota {
    /// The `path` it was written with, normalised: namespace, mount and suffix joined.
    pub fn path(&self) -> String {
        format!(
            "{}{}{}",
            self.namespace_path, self.mount_path, self.path_suffix
        )
    }

    /// Whether `other` applies to exactly the same requests (two such quotas cannot coexist).
    fn same_scope(&self, other: &RateLimitQuota) -> bool {
        self.namespace_path == other.namespace_path
            && self.mount_path == other.mount_path
            && self.path_suffix == other.path_suffix
    }

    fn to_json(&self) -> serde_json::Value {
        // A whole rate reads back as an integer, as Vault's JSON writes a float64.
        let rate = if self.rate.fract() == 0.0 && self.rate.abs() < 9.0e15 {
            json!(self.rate as i64)
        } else {
            json!(self.rate)
        };
        json!({
            "block_interval": self.block_interval,
            "inheritable": self.inheritable,
            "interval": self.interval,
            "name": self.name,
            "path": self.path(),
            "rate": rate,
            "role": "",
            "type": TYPE_RATE_LIMIT,
        })
    }
}

/// The stored quota configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaConfig {
    pub enable_rate_limit_audit_logging: bool,
    pub enable_rate_limit_response_headers: bool,
    pub rate_limit_exempt_paths: Vec<String>,
}

impl Default for QuotaConfig {
    /// Before the configuration is first written: Vault's exempt paths, nothing enabled.
    fn default() -> Self {
        QuotaConfig {
            enable_rate_limit_audit_logging: false,
            enable_rate_limit_response_headers: false,
            rate_limit_exempt_paths: DEFAULT_EXEMPT_PATHS.iter().map(|p| p.to_string()).collect(),
        }
    }
}

impl QuotaConfig {
    /// Whether no rate-limit quota applies to `path` (the full path, namespace included): an
    /// exempt path names it exactly (slashes at the ends aside), or ends in `*` and prefixes it.
    pub fn exempts(&self, path: &str) -> bool {
        let path = path.trim_matches('/');
        self.rate_limit_exempt_paths.iter().any(|exempt| {
            let exempt = exempt.trim_start_matches('/');
            match exempt.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => exempt.trim_end_matches('/') == path,
            }
        })
    }
}

/// Every rate-limit quota, for matching requests against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaSet {
    quotas: Vec<RateLimitQuota>,
}

impl QuotaSet {
    pub fn new(quotas: Vec<RateLimitQuota>) -> Self {
        QuotaSet { quotas }
    }

    pub fn quotas(&self) -> &[RateLimitQuota] {
        &self.quotas
    }

    pub fn is_empty(&self) -> bool {
        self.quotas.is_empty()
    }

    /// The quota that applies to a request in namespace `ns` (`""` or `team-a/`) for `path`,
    /// relative to that namespace: the most specific one (see the module docs).
    pub fn find(&self, ns: &str, path: &str) -> Option<&RateLimitQuota> {
        let path = path.trim_start_matches('/');
        let in_ns = || self.quotas.iter().filter(move |q| q.namespace_path == ns);
        // Mounts never nest, so at most one mount serves the path; the longest wins anyway.
        let mount = in_ns()
            .filter(|q| !q.mount_path.is_empty() && serves(&q.mount_path, path))
            .map(|q| q.mount_path.as_str())
            .max_by_key(|m| m.len());
        if let Some(mount) = mount {
            let suffix = path
                .strip_prefix(mount)
                .unwrap_or_default()
                .trim_end_matches('/');
            let on_mount = || in_ns().filter(move |q| q.mount_path == mount);
            if !suffix.is_empty()
                && let Some(q) = on_mount().find(|q| q.path_suffix == suffix)
            {
                return Some(q);
            }
            let glob = on_mount()
                .filter_map(|q| Some((q, q.path_suffix.strip_suffix('*')?)))
                .filter(|(_, prefix)| suffix.starts_with(prefix))
                .max_by_key(|(_, prefix)| prefix.len());
            if let Some((q, _)) = glob {
                return Some(q);
            }
            if let Some(q) = on_mount().find(|q| q.path_suffix.is_empty()) {
                return Some(q);
            }
        }
        let of_namespace = |ns: &str| {
            self.quotas
                .iter()
                .find(|q| q.namespace_path == ns && q.mount_path.is_empty())
        };
        if let Some(q) = of_namespace(ns) {
            return Some(q);
        }
        let mut parent = ns;
        while !parent.is_empty() {
            parent = parent_of(parent);
            if let Some(q) = of_namespace(parent).filter(|q| q.inheritable) {
                return Some(q);
            }
        }
        None
    }
}

/// Whether mount `mount` (`secret/`) serves `path` (`secret/data/x`, or `secret` itself).
fn serves(mount: &str, path: &str) -> bool {
    path.starts_with(mount) || mount.strip_suffix('/') == Some(path)
}

/// `a/b/` → `a/`, `a/` → `""`.
fn parent_of(ns: &str) -> &str {
    let trimmed = ns.strip_suffix('/').unwrap_or(ns);
    match trimmed.rfind('/') {
        Some(at) => trimmed.get(..=at).unwrap_or_default(),
        None => "",
    }
}

// --- the endpoints ---

/// The parameter of `sys/quotas/rate-limit/:name`.
pub const NAME: &[FieldSpec] = &[FieldSpec::string("name").describe("The name of the quota.")];

/// The fields of `sys/quotas/rate-limit/:name`.
pub const RATE_LIMIT_FIELDS: &[FieldSpec] = &[
    FieldSpec::string("path").describe(
        "Where the quota applies: empty for every request, a namespace (team-a/), a mount in it (team-a/secret/), or a path under the mount, optionally ending in *.",
    ),
    FieldSpec::new("rate", FieldType::Float)
        .describe("The requests allowed per interval; must be positive."),
    FieldSpec::new("interval", FieldType::Duration)
        .describe("The interval the rate applies to (default 1s)."),
    FieldSpec::new("block_interval", FieldType::Duration).describe(
        "If set, a client past the rate is refused this long, whatever the rate allows.",
    ),
    FieldSpec::new("inheritable", FieldType::Bool).describe(
        "Whether child namespaces use this namespace quota unless they have one of their own (default: true for the global quota).",
    ),
    FieldSpec::string("role").describe("Login roles are not supported: must be empty."),
    FieldSpec::string("type").describe("The quota type (rate-limit)."),
];

/// The fields of `sys/quotas/config`.
pub const CONFIG_FIELDS: &[FieldSpec] = &[
    FieldSpec::new("rate_limit_exempt_paths", FieldType::StringSlice)
        .describe("Paths no rate-limit quota applies to; empty: none is exempt."),
    FieldSpec::new("enable_rate_limit_audit_logging", FieldType::Bool)
        .describe("Log the requests refused by a rate-limit quota."),
    FieldSpec::new("enable_rate_limit_response_headers", FieldType::Bool)
        .describe("Add the X-Ratelimit-* headers to responses."),
];

/// The stored configuration (the defaults when never written).
pub fn load_config(tx: &mut Tx) -> ApiResult<QuotaConfig> {
    Ok(tx.get_json(keys::CONFIG)?.unwrap_or_default())
}

/// `GET sys/quotas/config`.
pub fn read_config(tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    let config = load_config(tx)?;
    Ok(Reply::data(json!(config)))
}

/// `POST sys/quotas/config`: replaces the whole configuration (an unset field is false or
/// empty, as in Vault).
pub fn write_config(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let config = QuotaConfig {
        enable_rate_limit_audit_logging: call
            .fields
            .bool("enable_rate_limit_audit_logging")
            .unwrap_or(false),
        enable_rate_limit_response_headers: call
            .fields
            .bool("enable_rate_limit_response_headers")
            .unwrap_or(false),
        rate_limit_exempt_paths: call
            .fields
            .strings("rate_limit_exempt_paths")
            .unwrap_or_default(),
    };
    tx.put_json(keys::CONFIG, &config)?;
    Ok(Reply::no_content())
}

/// Every stored quota, sorted by name.
pub fn load_all(tx: &mut Tx) -> ApiResult<Vec<RateLimitQuota>> {
    let mut quotas = Vec::new();
    for name in tx.names(keys::RATE_LIMIT)? {
        if let Some(q) = tx.get_json::<RateLimitQuota>(&keys::rate_limit(&name))? {
            quotas.push(q);
        }
    }
    Ok(quotas)
}

/// `LIST sys/quotas/rate-limit`.
pub fn list(tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    Reply::keys(tx.names(keys::RATE_LIMIT)?)
}

/// Vault's quota names: word characters, `-` and `.`, starting and ending with a word
/// character. Another name matches no path (404).
fn name_of<'a>(call: &Call<'a>) -> ApiResult<&'a str> {
    let name = call.param("name");
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let valid = name.starts_with(word)
        && name.ends_with(word)
        && name.chars().all(|c| word(c) || c == '-' || c == '.');
    if valid {
        Ok(name)
    } else {
        Err(ApiError::NoHandler(call.req.path.clone()))
    }
}

/// `GET sys/quotas/rate-limit/:name`.
pub fn read(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let name = name_of(call)?;
    let quota: RateLimitQuota = tx
        .get_json(&keys::rate_limit(name))?
        .ok_or(ApiError::NotFound)?;
    Ok(Reply::data(quota.to_json()))
}

/// `DELETE sys/quotas/rate-limit/:name` (204, whether it existed or not).
pub fn delete(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let name = name_of(call)?;
    tx.delete(keys::rate_limit(name));
    Ok(Reply::no_content())
}

/// A non-negative duration field, in seconds.
fn seconds(call: &Call, field: &str) -> ApiResult<u64> {
    let value = call.fields.duration(field).unwrap_or(0);
    u64::try_from(value).map_err(|_| {
        ApiError::BadRequest(format!(
            "error converting input for field \"{field}\": cannot provide negative value '{value}'"
        ))
    })
}

/// `POST sys/quotas/rate-limit/:name`: creates or replaces the quota.
pub fn write(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let name = name_of(call)?;
    let rate = call.fields.float("rate").unwrap_or(0.0);
    if rate <= 0.0 || !rate.is_finite() {
        return Err(ApiError::bad_request("'rate' is invalid"));
    }
    let interval = seconds(call, "interval")?.max(1);
    let block_interval = seconds(call, "block_interval")?;
    if !call.fields.string("role").unwrap_or_default().is_empty() {
        return Err(ApiError::bad_request(
            "role-based quotas are not supported: kvsync has no auth method with login roles",
        ));
    }
    let (namespace_path, mount_path, path_suffix) =
        scope(tx, call.fields.string("path").unwrap_or_default())?;
    let inheritable = match call.fields.bool("inheritable") {
        Some(true) if !mount_path.is_empty() => {
            return Err(ApiError::bad_request(
                "inheritable can only be set on namespace or global quotas",
            ));
        }
        Some(given) => given,
        None => namespace_path.is_empty() && mount_path.is_empty(),
    };
    let quota = RateLimitQuota {
        name: name.to_string(),
        namespace_path,
        mount_path,
        path_suffix,
        rate,
        interval,
        block_interval,
        inheritable,
    };
    if let Some(other) = load_all(tx)?
        .into_iter()
        .find(|q| q.name != quota.name && q.same_scope(&quota))
    {
        return Err(ApiError::BadRequest(format!(
            "quota rule with similar properties exists under the name \"{}\"",
            other.name
        )));
    }
    tx.put_json(keys::rate_limit(name), &quota)?;
    Ok(Reply::no_content())
}

/// The namespace, mount and suffix a quota's `path` names: leading `/` dropped, a trailing one
/// added (Vault's sanitising), the mount found among this namespace's mounts (400 otherwise).
fn scope(tx: &mut Tx, path: &str) -> ApiResult<(String, String, String)> {
    let path = path.trim().trim_start_matches('/');
    if path.is_empty() {
        return Ok((String::new(), String::new(), String::new()));
    }
    let sanitized = if path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    };
    // Every path resolves in the root namespace until namespaces exist.
    let namespace_path = String::new();
    let table = MountTable::load(tx)?;
    let mount = table
        .entries
        .iter()
        .map(|m| m.path.as_str())
        .chain(BUILTIN_MOUNTS.iter().copied())
        .filter(|m| sanitized.starts_with(m))
        .max_by_key(|m| m.len())
        .ok_or_else(|| ApiError::BadRequest(format!("invalid mount path \"{sanitized}\"")))?;
    let suffix = sanitized
        .strip_prefix(mount)
        .unwrap_or_default()
        .trim_end_matches('/');
    Ok((namespace_path, mount.to_string(), suffix.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::env::Fakes;
    use crate::testing::call;

    fn quota(name: &str, ns: &str, mount: &str, suffix: &str) -> RateLimitQuota {
        RateLimitQuota {
            name: name.into(),
            namespace_path: ns.into(),
            mount_path: mount.into(),
            path_suffix: suffix.into(),
            rate: 1.0,
            interval: 1,
            block_interval: 0,
            inheritable: ns.is_empty() && mount.is_empty(),
        }
    }

    fn found<'a>(set: &'a QuotaSet, ns: &str, path: &str) -> Option<&'a str> {
        set.find(ns, path).map(|q| q.name.as_str())
    }

    #[test]
    fn the_most_specific_quota_wins() {
        let set = QuotaSet::new(vec![
            quota("global", "", "", ""),
            quota("kv", "", "secret/", ""),
            quota("app", "", "secret/", "data/app"),
            quota("app-glob", "", "secret/", "data/app*"),
            quota("data-glob", "", "secret/", "data/*"),
        ]);
        assert_eq!(found(&set, "", "secret/data/app"), Some("app"));
        assert_eq!(found(&set, "", "secret/data/app/"), Some("app"));
        assert_eq!(found(&set, "", "secret/data/apple"), Some("app-glob"));
        assert_eq!(found(&set, "", "secret/data/other"), Some("data-glob"));
        assert_eq!(found(&set, "", "secret/metadata/app"), Some("kv"));
        assert_eq!(found(&set, "", "secret"), Some("kv"));
        assert_eq!(found(&set, "", "secretive/data/app"), Some("global"));
        assert_eq!(found(&set, "", "sys/mounts"), Some("global"));
        assert_eq!(found(&QuotaSet::default(), "", "sys/mounts"), None);
    }

    #[test]
    fn quotas_of_one_namespace_never_apply_to_another() {
        let set = QuotaSet::new(vec![
            quota("a", "team-a/", "", ""),
            quota("a-kv", "team-a/", "secret/", ""),
            quota("b-kv", "team-b/", "secret/", ""),
        ]);
        assert_eq!(found(&set, "team-a/", "secret/data/x"), Some("a-kv"));
        assert_eq!(found(&set, "team-a/", "sys/mounts"), Some("a"));
        assert_eq!(found(&set, "team-b/", "secret/data/x"), Some("b-kv"));
        assert_eq!(found(&set, "team-b/", "sys/mounts"), None);
        assert_eq!(found(&set, "team-c/", "secret/data/x"), None);
        assert_eq!(found(&set, "", "secret/data/x"), None);
        assert_eq!(found(&set, "", "team-a/secret/data/x"), None);
        // Not inheritable: a child namespace is not throttled by its parent's quota.
        assert_eq!(found(&set, "team-a/ci/", "secret/data/x"), None);
    }

    #[test]
    fn inheritable_quotas_reach_child_namespaces() {
        let mut parent = quota("a", "team-a/", "", "");
        parent.inheritable = true;
        let set = QuotaSet::new(vec![quota("global", "", "", ""), parent]);
        assert_eq!(found(&set, "team-a/ci/x/", "secret/data/x"), Some("a"));
        assert_eq!(found(&set, "team-b/", "secret/data/x"), Some("global"));
        let mut global = quota("global", "", "", "");
        global.inheritable = false;
        let set = QuotaSet::new(vec![global]);
        assert_eq!(found(&set, "team-b/", "x"), None);
        assert_eq!(found(&set, "", "x"), Some("global"));
        assert_eq!(parent_of("a/b/"), "a/");
        assert_eq!(parent_of("a/"), "");
    }

    #[test]
    fn exempt_paths_match_exactly_or_by_prefix() {
        let config = QuotaConfig::default();
        assert!(config.exempts("sys/health"));
        assert!(config.exempts("/sys/health/"));
        assert!(!config.exempts("sys/healthy"));
        assert!(!config.exempts("sys/mounts"));
        let config = QuotaConfig {
            rate_limit_exempt_paths: vec!["secret/data/ci*".into()],
            ..QuotaConfig::default()
        };
        assert!(config.exempts("secret/data/ci/x"));
        assert!(!config.exempts("secret/data/app"));
        assert!(!config.exempts("sys/health"));
    }

    #[test]
    fn crud_with_vaults_bodies() {
        let f = Fakes::default();
        let env = f.env();
        let (status, body) = call(&env, "LIST", "sys/quotas/rate-limit", &Value::Null);
        assert_eq!((status, body), (404, json!({"errors": []})));
        let (status, _) = call(
            &env,
            "POST",
            "sys/quotas/rate-limit/global",
            &json!({"rate": 897.3, "interval": "2m", "block_interval": "5m"}),
        );
        assert_eq!(status, 204);
        let (status, body) = call(&env, "GET", "sys/quotas/rate-limit/global", &Value::Null);
        assert_eq!(status, 200);
        assert_eq!(
            body["data"],
            json!({"block_interval": 300, "inheritable": true, "interval": 120,
                   "name": "global", "path": "", "rate": 897.3, "role": "", "type": "rate-limit"})
        );
        let (status, _) = call(
            &env,
            "PUT",
            "sys/quotas/rate-limit/tokens",
            &json!({"rate": "2", "path": "/auth/token/create"}),
        );
        assert_eq!(status, 204);
        let (_, body) = call(&env, "GET", "sys/quotas/rate-limit/tokens", &Value::Null);
        assert_eq!(body["data"]["path"], "auth/token/create");
        assert_eq!(body["data"]["interval"], 1);
        assert_eq!(body["data"]["rate"].to_string(), "2");
        assert_eq!(body["data"]["inheritable"], false);
        let (_, body) = call(&env, "LIST", "sys/quotas/rate-limit", &Value::Null);
        assert_eq!(body["data"]["keys"], json!(["global", "tokens"]));
        let (status, body) = call(
            &env,
            "POST",
            "sys/quotas/rate-limit/again",
            &json!({"rate": 1}),
        );
        assert_eq!(status, 400);
        assert_eq!(
            body["errors"][0],
            "quota rule with similar properties exists under the name \"global\""
        );
        let (status, _) = call(&env, "DELETE", "sys/quotas/rate-limit/global", &Value::Null);
        assert_eq!(status, 204);
        let (status, _) = call(&env, "DELETE", "sys/quotas/rate-limit/global", &Value::Null);
        assert_eq!(status, 204);
        let (status, _) = call(&env, "GET", "sys/quotas/rate-limit/global", &Value::Null);
        assert_eq!(status, 404);
    }

    #[test]
    fn bad_quotas_are_400s() {
        let f = Fakes::default();
        let env = f.env();
        for (body, message) in [
            (json!({}), "'rate' is invalid"),
            (json!({"rate": 0}), "'rate' is invalid"),
            (json!({"rate": -1.5}), "'rate' is invalid"),
            (
                json!({"rate": 1, "path": "nope/"}),
                "invalid mount path \"nope/\"",
            ),
            (
                json!({"rate": 1, "block_interval": -1}),
                "error converting input for field \"block_interval\": cannot provide negative value '-1'",
            ),
        ] {
            let (status, out) = call(&env, "POST", "sys/quotas/rate-limit/q", &body);
            assert_eq!(status, 400, "{body}");
            assert_eq!(out["errors"][0], message, "{body}");
        }
        for body in [
            json!({"rate": "x"}),
            json!({"rate": 1, "interval": "abc"}),
            json!({"rate": 1, "role": "r"}),
            json!({"rate": 1, "path": "sys/", "inheritable": true}),
        ] {
            let (status, _) = call(&env, "POST", "sys/quotas/rate-limit/q", &body);
            assert_eq!(status, 400, "{body}");
        }
        let (status, _) = call(
            &env,
            "POST",
            "sys/quotas/rate-limit/-q",
            &json!({"rate": 1}),
        );
        assert_eq!(status, 404);
    }

    #[test]
    fn config_reads_defaults_and_is_replaced_whole() {
        let f = Fakes::default();
        let env = f.env();
        let (status, body) = call(&env, "GET", "sys/quotas/config", &Value::Null);
        assert_eq!(status, 200);
        assert_eq!(body["data"]["enable_rate_limit_response_headers"], false);
        assert_eq!(
            body["data"]["rate_limit_exempt_paths"],
            json!(DEFAULT_EXEMPT_PATHS)
        );
        let (status, _) = call(
            &env,
            "POST",
            "sys/quotas/config",
            &json!({"enable_rate_limit_response_headers": true,
                    "rate_limit_exempt_paths": ["secret/data/ci*"]}),
        );
        assert_eq!(status, 204);
        let (_, body) = call(&env, "GET", "sys/quotas/config", &Value::Null);
        assert_eq!(
            body["data"],
            json!({"enable_rate_limit_audit_logging": false,
                   "enable_rate_limit_response_headers": true,
                   "rate_limit_exempt_paths": ["secret/data/ci*"]})
        );
        call(&env, "POST", "sys/quotas/config", &json!({}));
        let (_, body) = call(&env, "GET", "sys/quotas/config", &Value::Null);
        assert_eq!(body["data"]["rate_limit_exempt_paths"], json!([]));
    }
}
