//! A fake of Microsoft Entra ID's token endpoint and one Azure Key Vault
//! (secrets only), on one port.
//!
//! **Token endpoint** `POST /{tenant}/oauth2/v2.0/token` (form body): the one
//! test app below, the `client_credentials` grant and the Key Vault scope;
//! answers like Entra ID (`invalid_client` 401, `unauthorized_client`,
//! `invalid_scope`, `unsupported_grant_type`, unknown tenant: 400).
//! Tokens are `<random>.<expiry>.<mac>`, checked without state like the JWTs a
//! real vault checks: any instance of this fake in the process accepts them.
//!
//! **Vault** (every route needs a bearer token from above, else 401 with the
//! `WWW-Authenticate` challenge, and an `api-version`, else 400 `BadParameter`):
//! - `PUT /secrets/{name}` → 200 SecretBundle with a versioned `id`
//!   (`{vault}/secrets/{name}/{32 hex}`); a soft-deleted name → 409 `Conflict`
//!   / `ObjectIsDeletedButRecoverable`;
//! - `GET /secrets/{name}`, `GET /secrets/{name}/` (latest), `GET /secrets/{name}/{version}`;
//!   `GET /secrets` (list, no values);
//! - `DELETE /secrets/{name}` → 200 DeletedSecretBundle: soft delete;
//! - `GET /deletedsecrets` and `/deletedsecrets/{name}`; `POST /deletedsecrets/{name}/recover`
//!   → 200 (the secret becomes readable after [`AzureKeyVault::set_recovery_lag`]
//!   more GETs, 1 by default: recovery is asynchronous at Azure; a PUT meanwhile
//!   → 409 `ObjectIsBeingRecovered`); `DELETE /deletedsecrets/{name}` (purge) → 204;
//! - names `^[0-9a-zA-Z-]{1,127}$` (case-insensitive, as at Azure), values up
//!   to 25 KB (25 × 1024 bytes), at most 15 tags of 512-character names and
//!   values: 400 `BadParameter` otherwise; a missing secret: 404 `SecretNotFound`.
//!
//! Not modelled: permissions (every valid token may do everything), purge
//! protection and retention expiry (deleted secrets stay until purged or
//! recovered), secret attributes beyond `enabled`/`created`/`updated`
//! (`nbf`/`exp` are ignored), paging (`nextLink` is always null), the
//! service's own throttling (inject 429 + `Retry-After` with the fault table),
//! certificates-backed secrets and managed identity / federated credentials.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{FakeRequest, FakeResponse, Service};

/// The test tenant.
pub const TENANT: &str = "00000000-0000-0000-0000-000000000001";
/// The test app's client id and secret.
pub const CLIENT_ID: &str = "kvsync-test-client";
pub const CLIENT_SECRET: &str = "kvsync-test-secret";
/// The only scope the token endpoint grants.
pub const SCOPE: &str = "https://vault.azure.net/.default";
/// Token lifetime, seconds.
pub const TOKEN_LIFETIME: u64 = 3599;
pub const MAX_NAME_LEN: usize = 127;
pub const MAX_VALUE_BYTES: usize = 25 * 1024;
pub const MAX_TAGS: usize = 15;
pub const MAX_TAG_CHARS: usize = 512;
/// Days a deleted secret is kept (only shown in `scheduledPurgeDate`).
const RETENTION_DAYS: u64 = 90;
const API_VERSIONS: &[&str] = &[
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
];

#[derive(Clone)]
struct Version {
    id: String,
    value: String,
    tags: Map<String, Value>,
    content_type: Option<String>,
    enabled: bool,
    created: u64,
}

struct Secret {
    /// The name as first written (lookups ignore case).
    name: String,
    /// Oldest first; the last is the current one.
    versions: Vec<Version>,
    /// GETs still answered 404 after a recovery.
    recovering: u32,
}

struct Deleted {
    secret: Secret,
    deleted: u64,
}

#[derive(Default)]
struct Vault {
    /// By lower-cased name.
    live: BTreeMap<String, Secret>,
    deleted: BTreeMap<String, Deleted>,
    writes: u64,
    tokens_issued: u64,
    recovery_lag: u32,
}

/// The fake (token endpoint + one vault).
pub struct AzureKeyVault {
    vault: Mutex<Vault>,
}

impl Default for AzureKeyVault {
    fn default() -> Self {
        Self::new()
    }
}

impl AzureKeyVault {
    pub fn new() -> Self {
        AzureKeyVault {
            vault: Mutex::new(Vault {
                recovery_lag: 1,
                ..Vault::default()
            }),
        }
    }

    /// How many GETs of a recovered secret answer 404 before it is readable.
    pub fn set_recovery_lag(&self, reads: u32) {
        self.lock().recovery_lag = reads;
    }

    fn lock(&self) -> MutexGuard<'_, Vault> {
        self.vault.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Service for AzureKeyVault {
    fn handle(&self, req: &FakeRequest) -> FakeResponse {
        let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            [tenant, "oauth2", "v2.0", "token"] => {
                if req.method != "POST" {
                    return FakeResponse::json(405, json!({"error": "invalid_request"}));
                }
                self.token(req, tenant)
            }
            ["secrets", ..] | ["deletedsecrets", ..] => self.vault(req, &segments),
            _ => kv_error(
                404,
                "NotFound",
                &format!("The requested path {} was not found", req.path),
            ),
        }
    }

    fn state(&self) -> Value {
        let v = self.lock();
        let mut objects = Map::new();
        let mut recovering = Vec::new();
        for s in v.live.values() {
            if s.recovering > 0 {
                recovering.push(Value::from(s.name.clone()));
                continue;
            }
            if let Some(cur) = s.versions.last() {
                objects.insert(
                    s.name.clone(),
                    json!({"value": cur.value, "tags": cur.tags, "versions": s.versions.len()}),
                );
            }
        }
        let deleted: Vec<Value> = v
            .deleted
            .values()
            .map(|d| Value::from(d.secret.name.clone()))
            .collect();
        json!({
            "objects": objects,
            "deleted": deleted,
            "recovering": recovering,
            "writes": v.writes,
            "tokens_issued": v.tokens_issued,
        })
    }
}

// ---------------------------------------------------------------- token endpoint

fn oauth_error(status: u16, error: &str, code: u32, description: &str) -> FakeResponse {
    FakeResponse::json(
        status,
        json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
                random_hex(16), random_hex(16), now()
            ),
            "error_codes": [code],
            "timestamp": now().to_string(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

impl AzureKeyVault {
    fn token(&self, req: &FakeRequest, tenant: &str) -> FakeResponse {
        if !req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
        {
            return oauth_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            );
        }
        let form = parse_form(&req.body);
        let get = |k: &str| form.get(k).map(String::as_str);
        if tenant != TENANT {
            return oauth_error(
                400,
                "invalid_request",
                90002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."
                ),
            );
        }
        match get("grant_type") {
            Some("client_credentials") => {}
            None => {
                return oauth_error(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'grant_type'.",
                );
            }
            Some(other) => {
                return oauth_error(
                    400,
                    "unsupported_grant_type",
                    70003,
                    &format!("The app requested an unsupported grant type '{other}'."),
                );
            }
        }
        if get("client_id") != Some(CLIENT_ID) {
            return oauth_error(
                400,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{}' was not found in the directory '{TENANT}'.",
                    get("client_id").unwrap_or("")
                ),
            );
        }
        if get("client_secret") != Some(CLIENT_SECRET) {
            return oauth_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app 'kvsync-test-client'.",
            );
        }
        if get("scope") != Some(SCOPE) {
            return oauth_error(
                400,
                "invalid_scope",
                70011,
                &format!(
                    "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {} is not valid.",
                    get("scope").unwrap_or("")
                ),
            );
        }
        self.lock().tokens_issued += 1;
        FakeResponse::json(
            200,
            json!({
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": issue_token(now() + TOKEN_LIFETIME),
            }),
        )
    }
}

/// A process-wide key that makes tokens checkable without state.
fn token_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        if getrandom::fill(&mut k).is_err() {
            k = Sha256::digest(format!("{:?}{}", SystemTime::now(), std::process::id()).as_bytes())
                .into();
        }
        k
    })
}

fn mac(random: &str, exp: u64) -> String {
    let mut h = Sha256::new();
    h.update(token_key());
    h.update(random.as_bytes());
    h.update(b".");
    h.update(exp.to_string().as_bytes());
    hex::encode(h.finalize())
}

fn issue_token(exp: u64) -> String {
    let random = random_hex(24);
    let mac = mac(&random, exp);
    format!("{random}.{exp}.{mac}")
}

enum TokenCheck {
    Valid,
    Expired,
    Invalid,
}

fn check_token(token: &str) -> TokenCheck {
    let parts: Vec<&str> = token.split('.').collect();
    let [random, exp, sig] = parts.as_slice() else {
        return TokenCheck::Invalid;
    };
    let Ok(exp) = exp.parse::<u64>() else {
        return TokenCheck::Invalid;
    };
    if mac(random, exp) != *sig {
        TokenCheck::Invalid
    } else if exp <= now() {
        TokenCheck::Expired
    } else {
        TokenCheck::Valid
    }
}

// ---------------------------------------------------------------- vault

fn kv_error(status: u16, code: &str, message: &str) -> FakeResponse {
    FakeResponse::json(status, json!({"error": {"code": code, "message": message}}))
}

fn not_found(name: &str) -> FakeResponse {
    kv_error(
        404,
        "SecretNotFound",
        &format!(
            "A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    )
}

fn deleted_not_found(name: &str) -> FakeResponse {
    kv_error(
        404,
        "SecretNotFound",
        &format!("Deleted Secret not found: {name}"),
    )
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn bad_name(name: &str) -> FakeResponse {
    kv_error(
        400,
        "BadParameter",
        &format!("The request URI contains an invalid name: {name}"),
    )
}

impl AzureKeyVault {
    fn vault(&self, req: &FakeRequest, segments: &[&str]) -> FakeResponse {
        let host = req.header("host").unwrap_or("127.0.0.1");
        let base = format!("http://{host}");
        match req.bearer().map(check_token) {
            Some(TokenCheck::Valid) => {}
            None => {
                return kv_error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.").with_header(
                    "www-authenticate",
                    &format!("Bearer authorization=\"{base}/{TENANT}\", resource=\"https://vault.azure.net\""),
                );
            }
            Some(TokenCheck::Expired) => {
                return kv_error(
                    401,
                    "Unauthorized",
                    "[TokenExpired] Error validating token: 'S2S12086'.",
                );
            }
            Some(TokenCheck::Invalid) => {
                return kv_error(
                    401,
                    "Unauthorized",
                    "[BearerReadAccessTokenFailed] Error validating token: 'S2S12005'.",
                );
            }
        }
        match req.query_param("api-version") {
            None => {
                return kv_error(
                    400,
                    "BadParameter",
                    "The api-version query parameter is required",
                );
            }
            Some(v) if !API_VERSIONS.contains(&v.as_str()) => {
                return kv_error(
                    400,
                    "BadParameter",
                    &format!(
                        "The specified version ({v}) is not recognized. Consider using the latest supported version (7.6)."
                    ),
                );
            }
            Some(_) => {}
        }
        let method = req.method.as_str();
        match (method, segments) {
            ("GET", ["secrets"] | ["secrets", ""]) => self.list(&base),
            ("PUT", ["secrets", name]) => self.put(req, &base, name),
            ("GET", ["secrets", name] | ["secrets", name, ""]) => self.get(&base, name, None),
            ("GET", ["secrets", name, version]) => self.get(&base, name, Some(version)),
            ("DELETE", ["secrets", name]) => self.delete(&base, name),
            ("GET", ["deletedsecrets"] | ["deletedsecrets", ""]) => self.list_deleted(&base),
            ("GET", ["deletedsecrets", name]) => self.get_deleted(&base, name),
            ("POST", ["deletedsecrets", name, "recover"]) => self.recover(&base, name),
            ("DELETE", ["deletedsecrets", name]) => self.purge(name),
            (_, ["secrets", ..] | ["deletedsecrets", ..]) => kv_error(
                405,
                "MethodNotAllowed",
                &format!("The requested resource does not support http method '{method}'."),
            ),
            _ => kv_error(
                404,
                "NotFound",
                &format!("The requested path {} was not found", req.path),
            ),
        }
    }

    fn put(&self, req: &FakeRequest, base: &str, name: &str) -> FakeResponse {
        let mut v = self.lock();
        v.writes += 1;
        if !valid_name(name) {
            return bad_name(name);
        }
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(_) => return kv_error(400, "BadParameter", "The request body is not valid JSON."),
        };
        let Some(value) = body.get("value").and_then(Value::as_str) else {
            return kv_error(
                400,
                "BadParameter",
                "Property 'value' is required and must be a string.",
            );
        };
        if value.len() > MAX_VALUE_BYTES {
            return kv_error(
                400,
                "BadParameter",
                &format!(
                    "The secret value is too large: {} bytes; the maximum is {MAX_VALUE_BYTES} bytes.",
                    value.len()
                ),
            );
        }
        let tags = match body.get("tags") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(t)) => t.clone(),
            Some(_) => {
                return kv_error(
                    400,
                    "BadParameter",
                    "Property 'tags' must be an object of strings.",
                );
            }
        };
        if tags.len() > MAX_TAGS {
            return kv_error(
                400,
                "BadParameter",
                &format!(
                    "Too many tags: {}. A secret can have at most {MAX_TAGS} tags.",
                    tags.len()
                ),
            );
        }
        for (k, t) in &tags {
            let Some(t) = t.as_str() else {
                return kv_error(
                    400,
                    "BadParameter",
                    &format!("The value of tag '{k}' must be a string."),
                );
            };
            if k.is_empty()
                || k.chars().count() > MAX_TAG_CHARS
                || t.chars().count() > MAX_TAG_CHARS
            {
                return kv_error(
                    400,
                    "BadParameter",
                    &format!("Tag names and values must have at most {MAX_TAG_CHARS} characters."),
                );
            }
        }
        let key = name.to_ascii_lowercase();
        if let Some(d) = v.deleted.get(&key) {
            return FakeResponse::json(
                409,
                json!({"error": {
                    "code": "Conflict",
                    "message": format!(
                        "Secret {} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.",
                        d.secret.name
                    ),
                    "innererror": {"code": "ObjectIsDeletedButRecoverable"},
                }}),
            );
        }
        if v.live.get(&key).is_some_and(|s| s.recovering > 0) {
            return FakeResponse::json(
                409,
                json!({"error": {
                    "code": "Conflict",
                    "message": format!("Secret {name} is currently being recovered, and its name cannot be reused until the recovery completes."),
                    "innererror": {"code": "ObjectIsBeingRecovered"},
                }}),
            );
        }
        let version = Version {
            id: random_hex(16),
            value: value.to_string(),
            tags,
            content_type: body
                .get("contentType")
                .and_then(Value::as_str)
                .map(str::to_string),
            enabled: body
                .get("attributes")
                .and_then(|a| a.get("enabled"))
                .and_then(Value::as_bool)
                .unwrap_or(true),
            created: now(),
        };
        let secret = v.live.entry(key).or_insert_with(|| Secret {
            name: name.to_string(),
            versions: Vec::new(),
            recovering: 0,
        });
        secret.versions.push(version.clone());
        let name = secret.name.clone();
        FakeResponse::json(200, bundle(base, &name, &version, true))
    }

    fn get(&self, base: &str, name: &str, version: Option<&str>) -> FakeResponse {
        let mut v = self.lock();
        let Some(secret) = v.live.get_mut(&name.to_ascii_lowercase()) else {
            return not_found(name);
        };
        if secret.recovering > 0 {
            secret.recovering -= 1;
            return not_found(name);
        }
        let found = match version {
            None => secret.versions.last(),
            Some(id) => secret
                .versions
                .iter()
                .find(|ver| ver.id.eq_ignore_ascii_case(id)),
        };
        match found {
            Some(ver) if ver.enabled => {
                FakeResponse::json(200, bundle(base, &secret.name, ver, true))
            }
            Some(_) => kv_error(
                403,
                "Forbidden",
                &format!("Operation get is not allowed on a disabled secret: {name}"),
            ),
            None => not_found(name),
        }
    }

    fn list(&self, base: &str) -> FakeResponse {
        let v = self.lock();
        let items: Vec<Value> = v
            .live
            .values()
            .filter(|s| s.recovering == 0)
            .filter_map(|s| {
                let cur = s.versions.last()?;
                let mut item = bundle(base, &s.name, cur, false);
                if let Value::Object(m) = &mut item {
                    m.insert(
                        "id".into(),
                        Value::from(format!("{base}/secrets/{}", s.name)),
                    );
                }
                Some(item)
            })
            .collect();
        FakeResponse::json(200, json!({"value": items, "nextLink": null}))
    }

    fn delete(&self, base: &str, name: &str) -> FakeResponse {
        let mut v = self.lock();
        let key = name.to_ascii_lowercase();
        match v.live.remove(&key) {
            Some(mut secret) => {
                secret.recovering = 0;
                let d = Deleted {
                    secret,
                    deleted: now(),
                };
                let answer = deleted_bundle(base, &d);
                v.deleted.insert(key, d);
                FakeResponse::json(200, answer)
            }
            None => not_found(name),
        }
    }

    fn get_deleted(&self, base: &str, name: &str) -> FakeResponse {
        let v = self.lock();
        match v.deleted.get(&name.to_ascii_lowercase()) {
            Some(d) => FakeResponse::json(200, deleted_bundle(base, d)),
            None => deleted_not_found(name),
        }
    }

    fn list_deleted(&self, base: &str) -> FakeResponse {
        let v = self.lock();
        let items: Vec<Value> = v
            .deleted
            .values()
            .map(|d| deleted_bundle(base, d))
            .collect();
        FakeResponse::json(200, json!({"value": items, "nextLink": null}))
    }

    fn recover(&self, base: &str, name: &str) -> FakeResponse {
        let mut v = self.lock();
        let key = name.to_ascii_lowercase();
        let Some(d) = v.deleted.remove(&key) else {
            return deleted_not_found(name);
        };
        let mut secret = d.secret;
        secret.recovering = v.recovery_lag;
        let answer = match secret.versions.last() {
            Some(cur) => bundle(base, &secret.name, cur, false),
            None => json!({}),
        };
        v.live.insert(key, secret);
        FakeResponse::json(200, answer)
    }

    fn purge(&self, name: &str) -> FakeResponse {
        let mut v = self.lock();
        match v.deleted.remove(&name.to_ascii_lowercase()) {
            Some(_) => FakeResponse::empty(204),
            None => deleted_not_found(name),
        }
    }
}

/// A SecretBundle (with the value, or the SecretItem shape without it).
fn bundle(base: &str, name: &str, v: &Version, with_value: bool) -> Value {
    let mut out = json!({
        "id": format!("{base}/secrets/{name}/{}", v.id),
        "attributes": {
            "enabled": v.enabled,
            "created": v.created,
            "updated": v.created,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": RETENTION_DAYS,
        },
        "tags": v.tags,
    });
    if let Value::Object(m) = &mut out {
        if with_value {
            m.insert("value".into(), Value::from(v.value.clone()));
        }
        if let Some(ct) = &v.content_type {
            m.insert("contentType".into(), Value::from(ct.clone()));
        }
    }
    out
}

/// A DeletedSecretBundle (no value, as the service answers).
fn deleted_bundle(base: &str, d: &Deleted) -> Value {
    let name = &d.secret.name;
    let mut out = match d.secret.versions.last() {
        Some(cur) => bundle(base, name, cur, false),
        None => json!({}),
    };
    if let Value::Object(m) = &mut out {
        m.insert(
            "recoveryId".into(),
            Value::from(format!("{base}/deletedsecrets/{name}")),
        );
        m.insert("deletedDate".into(), Value::from(d.deleted));
        m.insert(
            "scheduledPurgeDate".into(),
            Value::from(d.deleted + RETENTION_DAYS * 86_400),
        );
    }
    out
}

// ---------------------------------------------------------------- helpers

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `n` random bytes as hex (a hash of time and a counter if the OS RNG fails).
fn random_hex(n: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        let seed = format!(
            "{:?}{}",
            SystemTime::now(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let digest = Sha256::digest(seed.as_bytes());
        buf = digest.iter().cycle().take(n).copied().collect();
    }
    hex::encode(buf)
}

/// An `application/x-www-form-urlencoded` body.
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(decoded) => {
                        out.push(decoded);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let f = parse_form(b"grant_type=client_credentials&scope=https%3A%2F%2Fvault.azure.net%2F.default&x=a+b&bad=%zz");
        assert_eq!(f["scope"], SCOPE);
        assert_eq!(f["x"], "a b");
        assert_eq!(f["bad"], "%zz");
    }

    #[test]
    fn tokens_check_statelessly() {
        let t = issue_token(now() + 60);
        assert!(matches!(check_token(&t), TokenCheck::Valid));
        assert!(matches!(
            check_token(&issue_token(now() - 1)),
            TokenCheck::Expired
        ));
        assert!(matches!(check_token(&format!("{t}x")), TokenCheck::Invalid));
        assert!(matches!(check_token("nope"), TokenCheck::Invalid));
    }
}
