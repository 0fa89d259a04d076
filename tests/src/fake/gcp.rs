//! A faithful fake of Google Secret Manager (REST API v1) and of Google's
//! OAuth token endpoint (the service-account JWT-bearer grant).
//!
//! - `POST /token`: the JWT-bearer grant. The assertion must be an RS256 JWT
//!   signed by the test service account's key ([`TEST_PRIVATE_KEY_PEM`]; checked
//!   with its public key), with `iss` = [`CLIENT_EMAIL`], a `kid` (if any) equal
//!   to [`PRIVATE_KEY_ID`], `aud` = this endpoint's own URL
//!   (`http://<Host>/token`), the cloud-platform scope, and `iat`/`exp` at most an
//!   hour apart and not expired. Answers `{"access_token","expires_in":3599,
//!   "token_type":"Bearer"}`, or 400 `{"error":"invalid_grant",
//!   "error_description":"Invalid JWT Signature."}` (and the like).
//! - `/v1/projects/{p}/secrets…`: the Secret Manager routes, which need a bearer
//!   token issued above (else 401 `UNAUTHENTICATED`) and the project
//!   [`PROJECT_ID`] or its number [`PROJECT_NUMBER`] (else 403
//!   `PERMISSION_DENIED`): create (`?secretId=`, `[A-Za-z0-9_-]{1,255}`, a
//!   replication policy, valid labels; 409 `ALREADY_EXISTS`), get, list,
//!   `:addVersion` (base64 payload ≤ 64 KiB, `dataCrc32c` checked when sent),
//!   `versions/{n|latest}:access` (data + `dataCrc32c`), delete (200 `{}`);
//!   404 `NOT_FOUND`. Errors in Google's shape `{"error":{"code","message","status"}}`.
//!
//! `state()`: `{"objects": {id: {"value": <latest payload as UTF-8, null without
//! versions>, "tags": <labels>}}, "writes": <addVersion count>, "creates": <create
//! count>, "deletes": n, "replication": {id: policy}, "versions": {id: count},
//! "checksummed": {id: whether the latest version came with dataCrc32c},
//! "tokens_issued": n}`. Throttling (429 `RESOURCE_EXHAUSTED`) and outages (503)
//! come from the framework's fault table.
//!
//! Not modelled: IAM beyond "the one project", quotas (use faults), version
//! states (disable / destroy / enable), etags and `?etag=` preconditions, list
//! paging and filters, secret TTL / expiry / rotation / topics / annotations,
//! regional endpoints, updating a secret (PATCH), label keys with non-ASCII
//! lowercase letters (Google accepts them; this fake only takes `[a-z0-9_-]`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{FakeRequest, FakeResponse, Service, object, utc_datetime};

/// The project the test service account may use.
pub const PROJECT_ID: &str = "kvsync-test";
/// Its number, which Google puts in resource names.
pub const PROJECT_NUMBER: &str = "424242424242";
/// The test service account.
pub const CLIENT_EMAIL: &str = "kvsync-sync@kvsync-test.iam.gserviceaccount.com";
/// The id of [`TEST_PRIVATE_KEY_PEM`] (the JWT header's `kid`).
pub const PRIVATE_KEY_ID: &str = "5b1c0d5e7a7f4bd0a1c7e0e1b9f6a0d3c2e4f601";
/// The scope the token endpoint requires.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Largest payload, in bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// How long an issued access token lives, in seconds.
pub const TOKEN_TTL: u64 = 3599;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CLOCK_SKEW: u64 = 60;

/// The test service account's private key (PKCS#8 PEM): a throwaway key
/// generated for these tests only (`openssl genrsa 2048`). The conformance
/// profile `tests/python/conformance/gcp_sm.py` carries the same key.
pub const TEST_PRIVATE_KEY_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIIEugIBADANBgkqhkiG9w0BAQEFAASCBKQwggSgAgEAAoIBAQCnihB40NoSIDw1
GJToKlgHrpV4X8FtB9gPgydwD9bsUV9WFQZ4uexiPZ8Ocrs9NSUWsVbTrBsInvd2
2RO1InEMmYIHRMrqwempluz3DD0QWYIjBKJneP9u3q0bn6I+ADi7aC2rhlziTnkh
GUq9HR2vZeYMf8CISOeBIL2MlKF0nyS5ov1XXlB3qX7ERXZj58zjU2bnTxgMG5fu
RsVZxg7PddUAuGCGF3r+B4GgsAg9Pby+HIlawiZaQl30yNHUKg6uEU6Z0Gz9EBsl
r0M5agp6+TRNCVeES5/UrnG5WqFZ6Nh5QeyEr12okAph3KSsc0ryiY0bGohOt1LJ
65nWxB+VAgMBAAECggEAKEhYdIwW2sPYZhXOe9Huj45JDwPLAJmht/0bZuTQEsrv
5sUwZKejb+2MCE/KuElGbSHflA5uA5EhQ/imtecdkl94daHzPiW4tld9C1tsdTlo
Ql4zZDiiBfjRW3Jy8oBgI6NFU9f/DkS6+BvaLgVJpWoVOY0f8ETDMPd7y8jS1zSm
KHTEIGI4kUOb82y1ioPOPMlFo3q/W1AV1gcz0Oz3XcyJQDu2dnVKuD/t2FW4tBc4
9DjclZI5AGNizfG3+BAyk1ltEm3M5Dk1WvroR0PcP2+y156n82DjXQAKJkq7ZiH5
8/hddexpDyszDZpN4jAHJeXCVDPSnhxCeYAnONKEUQKBgQDqVo6BKNOVYbq8+MUt
IdHa+mvnXpfemwlqTlcNVyZK20mijHC8bxpXfWGFs+8gKzzXUJ7prdFH/6dWx+ze
EJe0AabNZoHsZ7fhvrscP+C/VeND0or8IhlL/BTzvAIi/ELgnv8ZAs3cWdNND4gk
su9wCEaWediiTYxi8ZfbkbiiDQKBgQC3BsMU/c5CUc4lt4HtdpqqGZYCIBNZ7uQR
qcPGd6ILFWfoyAN14fs6E3R9B4KPnNY9scKoON9xfHLESLzCxuhX3smWSEIb/H+a
k3CT86DoP82yK0TT8kEqHpTw1kRtKcrYgZ/iv+96JlphmT0z+ZTcB3c3Ob35TmFD
Tkn3ry15qQJ/MIO6/QJ2y3ZwMq9OIwndaHhv3na2+l8ek+OkIh7ozpaXqA9rR5e4
3GQYzJVz7DUHY4xNWhOiQEWtX0oEv/Svc5Tj86JFQ6w1ZYcXNcIDxZkCdAgivhBR
LGoD7HH//z46mkZQid0KwZPXKx0MEoz5BTixZHXVY8SqS9G4nryMfQKBgEzenS6C
zo8SFpfGs94NEzZf2p335Mi/ybAVcfE4K6mmCuc8oh9vkvk4VJNyhQZWI7DzqMLI
aCgc0YLY3dacfdbx7g6dOI7ShLFiPUUWbL0+luC+xYCS3YWYJIvmIgULKXO3NXSh
ki3mT81v88GRkFC9Hffm24AKyFThW7WYMGxJAoGAJr2i8Fg2wuzP4wh+VLht41Fj
Rr6VrVpYQ33SZ4XTiucxxCJPOKGIYvAhy2w7XgEh57RZ3Cdt9jEsOeWZq87YaCze
CmRumsF8P8LJS+BQf3CrtPQ2CklK2BMLQj9abMzGHbCOTl8Vf1TwP9uyAHnsrz8/
5X3XEFF/XDQotozd7SU=
-----END PRIVATE KEY-----
";

/// The public half of [`TEST_PRIVATE_KEY_PEM`] (`openssl rsa -pubout`): the
/// token endpoint verifies assertions with it.
pub const TEST_PUBLIC_KEY_PEM: &str = r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAp4oQeNDaEiA8NRiU6CpY
B66VeF/BbQfYD4MncA/W7FFfVhUGeLnsYj2fDnK7PTUlFrFW06wbCJ73dtkTtSJx
DJmCB0TK6sHpqZbs9ww9EFmCIwSiZ3j/bt6tG5+iPgA4u2gtq4Zc4k55IRlKvR0d
r2XmDH/AiEjngSC9jJShdJ8kuaL9V15Qd6l+xEV2Y+fM41Nm508YDBuX7kbFWcYO
z3XVALhghhd6/geBoLAIPT28vhyJWsImWkJd9MjR1CoOrhFOmdBs/RAbJa9DOWoK
evk0TQlXhEuf1K5xuVqhWejYeUHshK9dqJAKYdykrHNK8omNGxqITrdSyeuZ1sQf
lQIDAQAB
-----END PUBLIC KEY-----
";

/// Another throwaway key, unknown to the fake: assertions it signs fail the
/// signature check (the "bad credentials" of the tests).
pub const OTHER_PRIVATE_KEY_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCneP+pijuc6rBr
57IrXH+sxfYbZf4yWfR+1JnbGaEjgFptjjDWjo8ZGVHlOnakeLf72hVmRv2pbxGO
Y1dIcd9oKqgJS/zrgIsUcboNbMM4UwFgdFAk4g7OOg93ZFTriC4Dx979XqYXkIXq
MugWg5UCpAtFF992HMAPSrsdLxjqvKOVHlyR0B68ytGfYyr28GwXFA48kw2VuE4B
RfGh9QLluofHpVOs7nOUmRp7sB7ePWbvZoL7HZj7bUxsB/p/WW/XuFyXmdj/c7dA
RYSYN/wmrximux3GIl/aSMKkuGxb4IswrXkRUKRWbJSYwUi8JaZXHCr87CI6E4GX
o6vB6KtJAgMBAAECggEAFG0GV64Ps8WPE3Ycrbu4KcEyUWio7oi4sJBrHIU9eVhC
Dzsouz6Ddwb2zVvKVSiRHhNdCU6uyQ/OJxz4LBKRckHDoXCmbi3NKMbvL4x8qf27
vQEqtjjpH9+Ge+QdlGWVYSorSSFWZijfIG+pjXdqgPozkq+E9oGurh7KABb6tcRu
NXx7fw1qV2s9oKj7m1xAueeq46DIcE7/3vZrAYkiOwWX/vJmoqJ1Yq9u/ZqK/Pkq
FTCLtjt/erU0JKbcgyAH2TyNhFhFW6HR+DodqOoVTNEZRWchbvhGuLWw/Y276tny
1MWscCaT2Fz4Qm/4O0dRPn7bJRh/iUn3cgbeoJQZAQKBgQDTL6Qct9UlvGvDP6IS
Ubp4cP3Oyj9vi9/jSYaB9kqg1sU/ykkefDj2PYhthVVLYFGvny0WEow/dABMY3QZ
48O2berl/XoWifo3ZNT6tIE+m8r08fxa8brvXzsTb6Oo9bqnVEQom3CWsTyuKmEs
yQ8O2ZGD6PPEQrOUBV7OngUgyQKBgQDLArErFr8X8eJr53UOOb+iFj+6u6/ghgxT
sQlxk+GKgvczx4KS0fQ4zkBh25ZOLcrSkKaLbefS67yPXfg0bEN4whije7J6FsPW
wtDraSuwLrZvIS8Nk9rZww+dmcRSAS3Z2HCcFwK7DrbNUSKq/YT8+VjMT5ug6uh5
yS9swEL2gQKBgQCIPv8oy+0GiHYZpC8ClJmx5GvKgq7EX0BVGXVe2S+ybn0ZN39O
3KO/MVmYFuI9W+m3XQEwcUzsDwG2Rp97qHb2dhmKwaqHagL0w+enytZrNwWMW6YM
YlHQ5uZtFqRGeCowk+vZKtdLURMt5geFZj2BvhnkOWEzKDlE8OYGdOooCQKBgQDE
OgbsImF1kK2OJTzFElbEIoNZSJ+5A3kY0E/Tg+CHFQ5C836n0d8hpWMf87O2P5cD
ryP8M7DX9FrfrTID4f3Z1KsiIqeiUSzdApQUaCT9eDmI82da1Wa+BEisynuz1EXw
gsBeb/OIwbE6hklfRAvuxknpuq0wfr9VMHzxvmk7gQKBgC9bpYLHSA2dI9zlNXSO
MgdygC7hx93VIi67E9IAiqGo6jo2CATn0cz64INDfzWe9nCB4Jk8AKGavvA1XuU/
NXxkd0IIQy8FnIjtIFt/jdSa6k4UelKhbw00NwL8WJCDYpMXH1fglNFUS7hqjuzv
hWVvveRJA9xov65I3ekYvclK
-----END PRIVATE KEY-----
";

/// A service-account JSON key for the fake: `token_uri` is the fake's
/// `<url>/token`; sign with [`TEST_PRIVATE_KEY_PEM`] for a key the fake accepts,
/// or [`OTHER_PRIVATE_KEY_PEM`] for one it rejects.
pub fn service_account_json(fake_url: &str, private_key_pem: &str) -> Value {
    json!({
        "type": "service_account",
        "project_id": PROJECT_ID,
        "private_key_id": PRIVATE_KEY_ID,
        "private_key": private_key_pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "104242424242424242424",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{}/token", fake_url.trim_end_matches('/')),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    })
}

struct Version {
    data: Vec<u8>,
    /// Whether the client sent `dataCrc32c` (Google's `clientSpecifiedPayloadChecksum`).
    checksummed: bool,
}

struct Secret {
    replication: Value,
    labels: BTreeMap<String, String>,
    create_time: String,
    versions: Vec<Version>,
}

#[derive(Default)]
struct Inner {
    secrets: BTreeMap<String, Secret>,
    /// access token → expiry
    tokens: HashMap<String, Instant>,
    writes: u64,
    creates: u64,
    deletes: u64,
    tokens_issued: u64,
}

/// The fake (see the module docs).
#[derive(Default)]
pub struct GcpSecretManager {
    inner: Mutex<Inner>,
}

impl GcpSecretManager {
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Google's error body.
fn google_error(code: u16, status: &str, message: &str) -> FakeResponse {
    FakeResponse::json(
        code,
        json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

/// The token endpoint's error body.
fn oauth_error(code: u16, error: &str, description: &str) -> FakeResponse {
    FakeResponse::json(
        code,
        json!({"error": error, "error_description": description}),
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// RFC 3339 UTC timestamp of now, as Google writes them.
fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}Z", utc_datetime(d.as_secs()), d.subsec_micros())
}

/// The first value of `name` in a form body or query string (`%XX` and `+`
/// decoded).
fn form_param(body: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(body.as_bytes()).find_map(|(k, v)| (k == name).then(|| v.into_owned()))
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let digest = Sha256::digest(nanos.to_le_bytes());
        for (b, d) in bytes.iter_mut().zip(digest) {
            *b = d;
        }
    }
    format!("ya29.fake-{}", hex::encode(bytes))
}

/// `[A-Za-z0-9_-]{1,255}`
pub fn valid_secret_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Label keys: `[a-z][a-z0-9_-]{0,62}`.
fn valid_label_key(k: &str) -> bool {
    k.len() <= 63
        && k.starts_with(|c: char| c.is_ascii_lowercase())
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Label values: `[a-z0-9_-]{0,63}`.
fn valid_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    aud: Value,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    exp: Option<u64>,
}

fn check_replication(r: &Value) -> Result<(), String> {
    let Some(obj) = r.as_object() else {
        return Err("Secret.replication is required.".into());
    };
    match (obj.get("automatic"), obj.get("userManaged")) {
        (Some(auto), None) => {
            let Some(auto) = auto.as_object() else {
                return Err("Secret.replication.automatic must be an object.".into());
            };
            check_cmek(auto.get("customerManagedEncryption"))
        }
        (None, Some(user)) => {
            let replicas = user
                .get("replicas")
                .and_then(Value::as_array)
                .filter(|r| !r.is_empty())
                .ok_or("Secret.replication.userManaged.replicas must not be empty.")?;
            let mut seen = Vec::new();
            for r in replicas {
                let loc = r
                    .get("location")
                    .and_then(Value::as_str)
                    .filter(|l| !l.is_empty())
                    .ok_or("Each replica needs a location.")?;
                if seen.contains(&loc) {
                    return Err(format!("Duplicate replica location: {loc}."));
                }
                seen.push(loc);
                check_cmek(r.get("customerManagedEncryption"))?;
            }
            Ok(())
        }
        _ => Err("Secret.replication must set exactly one of automatic or userManaged.".into()),
    }
}

fn check_cmek(cmek: Option<&Value>) -> Result<(), String> {
    match cmek {
        None => Ok(()),
        Some(c)
            if c.get("kmsKeyName")
                .and_then(Value::as_str)
                .is_some_and(|k| !k.is_empty()) =>
        {
            Ok(())
        }
        Some(_) => Err("customerManagedEncryption.kmsKeyName is required.".into()),
    }
}

impl GcpSecretManager {
    fn token(&self, req: &FakeRequest) -> FakeResponse {
        if req.method != "POST" {
            return FakeResponse::json(405, json!({"error": "method_not_allowed"}));
        }
        let body = String::from_utf8_lossy(&req.body);
        let grant = form_param(&body, "grant_type").unwrap_or_default();
        if grant != JWT_BEARER {
            return oauth_error(
                400,
                "unsupported_grant_type",
                &format!("Invalid grant_type: {grant}"),
            );
        }
        let Some(assertion) = form_param(&body, "assertion").filter(|a| !a.is_empty()) else {
            return oauth_error(
                400,
                "invalid_request",
                "Missing required parameter: assertion",
            );
        };
        let Ok(header) = jsonwebtoken::decode_header(&assertion) else {
            return oauth_error(400, "invalid_grant", "Invalid JWT: malformed assertion.");
        };
        if header.alg != Algorithm::RS256 {
            return oauth_error(
                400,
                "invalid_grant",
                "Invalid JWT: the algorithm must be RS256.",
            );
        }
        let Ok(key) = DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY_PEM.as_bytes()) else {
            return oauth_error(
                500,
                "internal_failure",
                "the fake's public key does not parse",
            );
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = match jsonwebtoken::decode::<Claims>(&assertion, &key, &validation) {
            Ok(data) => data.claims,
            Err(e) => {
                return match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
                    }
                    _ => oauth_error(400, "invalid_grant", "Invalid JWT: malformed claims."),
                };
            }
        };
        if header
            .kid
            .as_deref()
            .is_some_and(|kid| kid != PRIVATE_KEY_ID)
        {
            return oauth_error(400, "invalid_grant", "Invalid JWT Signature.");
        }
        if claims.iss != CLIENT_EMAIL {
            return oauth_error(400, "invalid_grant", "Invalid grant: account not found");
        }
        let own = format!("http://{}/token", req.header("host").unwrap_or_default());
        if claims.aud.as_str() != Some(own.as_str()) {
            return oauth_error(
                400,
                "invalid_grant",
                &format!("Invalid JWT: Failed audience check. The expected value was {own}"),
            );
        }
        let now = now_secs();
        let timely = match (claims.iat, claims.exp) {
            (Some(iat), Some(exp)) => {
                exp > iat && exp - iat <= 3600 && iat <= now + CLOCK_SKEW && exp + CLOCK_SKEW > now
            }
            _ => false,
        };
        if !timely {
            return oauth_error(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            );
        }
        if !claims.scope.split_whitespace().any(|s| s == SCOPE) {
            return oauth_error(
                400,
                "invalid_scope",
                "Invalid OAuth scope or ID token audience provided.",
            );
        }
        let token = random_token();
        let mut inner = self.inner();
        let now = Instant::now();
        inner.tokens.retain(|_, exp| *exp > now);
        inner
            .tokens
            .insert(token.clone(), now + Duration::from_secs(TOKEN_TTL));
        inner.tokens_issued += 1;
        FakeResponse::json(
            200,
            json!({"access_token": token, "expires_in": TOKEN_TTL, "token_type": "Bearer"}),
        )
    }

    fn authorized(&self, req: &FakeRequest) -> bool {
        let Some(token) = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        self.inner()
            .tokens
            .get(token)
            .is_some_and(|exp| *exp > Instant::now())
    }

    fn secret_json(name: &str, s: &Secret) -> Value {
        let mut out = object(json!({
            "name": format!("projects/{PROJECT_NUMBER}/secrets/{name}"),
            "replication": s.replication,
            "createTime": s.create_time,
            "etag": format!("\"{}\"", &hex::encode(Sha256::digest(s.create_time.as_bytes()))[..14]),
        }));
        if !s.labels.is_empty() {
            out.insert("labels".into(), json!(s.labels));
        }
        Value::Object(out)
    }

    fn create(&self, req: &FakeRequest) -> FakeResponse {
        let Some(id) = form_param(&req.query, "secretId") else {
            return google_error(400, "INVALID_ARGUMENT", "secret_id must be specified.");
        };
        if !valid_secret_id(&id) {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "Secret id must be 1-255 characters long and contain only letters, numbers, underscores and hyphens.",
            );
        }
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(_) => {
                return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
            }
        };
        let replication = body.get("replication").cloned().unwrap_or(Value::Null);
        if let Err(m) = check_replication(&replication) {
            return google_error(400, "INVALID_ARGUMENT", &m);
        }
        let mut labels = BTreeMap::new();
        match body.get("labels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                if map.len() > 64 {
                    return google_error(
                        400,
                        "INVALID_ARGUMENT",
                        "A secret can have at most 64 labels.",
                    );
                }
                for (k, v) in map {
                    let Some(v) = v.as_str() else {
                        return google_error(
                            400,
                            "INVALID_ARGUMENT",
                            "Label values must be strings.",
                        );
                    };
                    if !valid_label_key(k) {
                        return google_error(
                            400,
                            "INVALID_ARGUMENT",
                            &format!("Invalid label key: {k}"),
                        );
                    }
                    if !valid_label_value(v) {
                        return google_error(
                            400,
                            "INVALID_ARGUMENT",
                            &format!("Invalid label value: {v}"),
                        );
                    }
                    labels.insert(k.clone(), v.to_string());
                }
            }
            Some(_) => {
                return google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid JSON payload received: labels.",
                );
            }
        }
        let mut inner = self.inner();
        if inner.secrets.contains_key(&id) {
            return google_error(
                409,
                "ALREADY_EXISTS",
                &format!("Secret [projects/{PROJECT_NUMBER}/secrets/{id}] already exists."),
            );
        }
        let secret = Secret {
            replication,
            labels,
            create_time: rfc3339_now(),
            versions: Vec::new(),
        };
        let out = Self::secret_json(&id, &secret);
        inner.secrets.insert(id, secret);
        inner.creates += 1;
        FakeResponse::json(200, out)
    }

    fn add_version(&self, id: &str, req: &FakeRequest) -> FakeResponse {
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(_) => {
                return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
            }
        };
        let data = body
            .pointer("/payload/data")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let b64 = base64::engine::general_purpose::STANDARD;
        let url_safe = base64::engine::general_purpose::URL_SAFE;
        let Ok(data) = b64.decode(data).or_else(|_| url_safe.decode(data)) else {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "Invalid value at 'payload.data' (TYPE_BYTES), Base64 decoding failed.",
            );
        };
        if data.len() > MAX_PAYLOAD {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "Secret Payload cannot be larger than 64KiB.",
            );
        }
        let sent_crc = match body.pointer("/payload/dataCrc32c") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    return google_error(
                        400,
                        "INVALID_ARGUMENT",
                        "Invalid value at 'payload.data_crc32c' (TYPE_INT64).",
                    );
                }
            },
            Some(Value::Number(n)) => n.as_i64(),
            Some(_) => {
                return google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid value at 'payload.data_crc32c' (TYPE_INT64).",
                );
            }
        };
        if let Some(crc) = sent_crc
            && crc != i64::from(crc32c::crc32c(&data))
        {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "Checksum mismatch: the payload's data_crc32c does not match its data.",
            );
        }
        let mut inner = self.inner();
        let Some(secret) = inner.secrets.get_mut(id) else {
            return google_error(
                404,
                "NOT_FOUND",
                &format!(
                    "Secret [projects/{PROJECT_NUMBER}/secrets/{id}] not found or has no versions."
                ),
            );
        };
        let create_time = rfc3339_now();
        secret.versions.push(Version {
            data,
            checksummed: sent_crc.is_some(),
        });
        let n = secret.versions.len();
        inner.writes += 1;
        FakeResponse::json(
            200,
            json!({
                "name": format!("projects/{PROJECT_NUMBER}/secrets/{id}/versions/{n}"),
                "createTime": create_time,
                "state": "ENABLED",
                "replicationStatus": {"automatic": {}},
                "etag": format!("\"{n:014x}\""),
                "clientSpecifiedPayloadChecksum": sent_crc.is_some(),
            }),
        )
    }

    fn access(&self, id: &str, version: &str) -> FakeResponse {
        let inner = self.inner();
        let found = inner.secrets.get(id).and_then(|s| match version {
            "latest" => s.versions.iter().enumerate().next_back(),
            n => n
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| s.versions.get(i).map(|v| (i, v))),
        });
        let Some((i, v)) = found else {
            return google_error(
                404,
                "NOT_FOUND",
                &format!(
                    "Secret Version [projects/{PROJECT_NUMBER}/secrets/{id}/versions/{version}] not found."
                ),
            );
        };
        FakeResponse::json(
            200,
            json!({
                "name": format!("projects/{PROJECT_NUMBER}/secrets/{id}/versions/{}", i + 1),
                "payload": {
                    "data": base64::engine::general_purpose::STANDARD.encode(&v.data),
                    "dataCrc32c": crc32c::crc32c(&v.data).to_string(),
                },
            }),
        )
    }

    fn secrets_route(&self, req: &FakeRequest, rest: &str) -> FakeResponse {
        let method = req.method.as_str();
        if rest == "secrets" {
            return match method {
                "POST" => self.create(req),
                "GET" => {
                    let inner = self.inner();
                    let secrets: Vec<Value> = inner
                        .secrets
                        .iter()
                        .map(|(n, s)| Self::secret_json(n, s))
                        .collect();
                    let total = secrets.len();
                    if secrets.is_empty() {
                        FakeResponse::json(200, json!({}))
                    } else {
                        FakeResponse::json(200, json!({"secrets": secrets, "totalSize": total}))
                    }
                }
                _ => google_error(404, "NOT_FOUND", "Method not found."),
            };
        }
        let Some(rest) = rest.strip_prefix("secrets/") else {
            return google_error(404, "NOT_FOUND", "Method not found.");
        };
        if let Some(id) = rest.strip_suffix(":addVersion") {
            if method != "POST" {
                return google_error(404, "NOT_FOUND", "Method not found.");
            }
            if !valid_secret_id(id) {
                return google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid resource field value in the request.",
                );
            }
            return self.add_version(id, req);
        }
        if let Some((id, version)) = rest
            .split_once("/versions/")
            .and_then(|(id, v)| v.strip_suffix(":access").map(|v| (id, v)))
        {
            if method != "GET" {
                return google_error(404, "NOT_FOUND", "Method not found.");
            }
            return self.access(id, version);
        }
        let id = rest;
        if !valid_secret_id(id) {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "Invalid resource field value in the request.",
            );
        }
        let mut inner = self.inner();
        match method {
            "GET" => match inner.secrets.get(id) {
                Some(s) => FakeResponse::json(200, Self::secret_json(id, s)),
                None => google_error(
                    404,
                    "NOT_FOUND",
                    &format!("Secret [projects/{PROJECT_NUMBER}/secrets/{id}] not found."),
                ),
            },
            "DELETE" => {
                if inner.secrets.remove(id).is_some() {
                    inner.deletes += 1;
                    FakeResponse::json(200, json!({}))
                } else {
                    google_error(
                        404,
                        "NOT_FOUND",
                        &format!("Secret [projects/{PROJECT_NUMBER}/secrets/{id}] not found."),
                    )
                }
            }
            _ => google_error(404, "NOT_FOUND", "Method not found."),
        }
    }
}

impl Service for GcpSecretManager {
    fn handle(&self, req: &FakeRequest) -> FakeResponse {
        if req.path == "/token" {
            return self.token(req);
        }
        let Some(rest) = req.path.strip_prefix("/v1/projects/") else {
            return google_error(
                404,
                "NOT_FOUND",
                &format!(
                    "The requested URL {} was not found on this server.",
                    req.path
                ),
            );
        };
        if !self.authorized(req) {
            return google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            )
            .with_header("www-authenticate", "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"");
        }
        let (project, rest) = rest.split_once('/').unwrap_or((rest, ""));
        if project != PROJECT_ID && project != PROJECT_NUMBER {
            return google_error(
                403,
                "PERMISSION_DENIED",
                &format!("Permission denied on resource project {project} (or it may not exist)."),
            );
        }
        self.secrets_route(req, rest)
    }

    fn state(&self) -> Value {
        let inner = self.inner();
        let objects: serde_json::Map<String, Value> = inner
            .secrets
            .iter()
            .map(|(id, s)| {
                let value = s.versions.last().map_or(Value::Null, |v| {
                    Value::String(String::from_utf8_lossy(&v.data).into_owned())
                });
                (id.clone(), json!({"value": value, "tags": s.labels}))
            })
            .collect();
        let replication: serde_json::Map<String, Value> = inner
            .secrets
            .iter()
            .map(|(id, s)| (id.clone(), s.replication.clone()))
            .collect();
        let checksummed: serde_json::Map<String, Value> = inner
            .secrets
            .iter()
            .filter_map(|(id, s)| {
                s.versions
                    .last()
                    .map(|v| (id.clone(), json!(v.checksummed)))
            })
            .collect();
        let versions: serde_json::Map<String, Value> = inner
            .secrets
            .iter()
            .map(|(id, s)| (id.clone(), json!(s.versions.len())))
            .collect();
        json!({
            "objects": objects,
            "writes": inner.writes,
            "creates": inner.creates,
            "deletes": inner.deletes,
            "replication": replication,
            "versions": versions,
            "checksummed": checksummed,
            "tokens_issued": inner.tokens_issued,
        })
    }
}
