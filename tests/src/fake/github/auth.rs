//! Who a request authenticates as: a personal access token, or an
//! installation token this fake issued for a GitHub App, in exchange for an
//! RS256 app JWT verified with the app's public key.

use base64::Engine as _;
use serde_json::{Value, json};

use super::state::{Inner, InstallationToken};
use super::{iso, not_found, now};
use crate::fake::{FakeRequest, FakeResponse};

/// Installation tokens live one hour, as on GitHub.
const TOKEN_TTL_SECS: u64 = 3600;

/// Who a request authenticates as.
pub(super) enum Principal {
    Pat { write: bool },
    Installation { account: String },
}

impl Principal {
    pub(super) fn sees(&self, owner: &str) -> bool {
        match self {
            Principal::Pat { .. } => true,
            Principal::Installation { account } => account.eq_ignore_ascii_case(owner),
        }
    }

    pub(super) fn can_write(&self) -> bool {
        match self {
            Principal::Pat { write } => *write,
            Principal::Installation { .. } => true,
        }
    }
}

pub(super) fn access_token(inner: &mut Inner, req: &FakeRequest, id: &str) -> FakeResponse {
    let undecodable = || {
        FakeResponse::json(
            401,
            json!({"message": "A JSON web token could not be decoded", "documentation_url": "https://docs.github.com/rest"}),
        )
    };
    let Some(jwt) = req.bearer() else {
        return FakeResponse::json(
            401,
            json!({"message": "You must authenticate with a JSON web token to access this endpoint.", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    // The issuer picks the key: read it before verifying.
    let Some(claims) = jwt
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return undecodable();
    };
    let Some(app_id) = claims
        .get("iss")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
    else {
        return undecodable();
    };
    let Some(app) = inner.apps.get(&app_id) else {
        return FakeResponse::json(
            404,
            json!({"message": "Integration not found", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes()) else {
        return undecodable();
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // `iss` is the app id, a number: checked above, not by the library (strings only).
    validation.set_required_spec_claims(&["exp"]);
    validation.leeway = 0;
    let Ok(data) = jsonwebtoken::decode::<Value>(jwt, &key, &validation) else {
        return undecodable();
    };
    let now = now();
    let iat = data
        .claims
        .get("iat")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if iat > now + 60 {
        return FakeResponse::json(
            401,
            json!({"message": "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued.", "documentation_url": "https://docs.github.com/rest"}),
        );
    }
    if exp <= now || exp > now + 600 + 60 || exp.saturating_sub(iat) > 660 {
        return FakeResponse::json(
            401,
            json!({"message": "'Expiration time' claim ('exp') is too far in the future", "documentation_url": "https://docs.github.com/rest"}),
        );
    }
    let Some(installation) = id.parse::<u64>().ok() else {
        return not_found();
    };
    let Some(account) = app.installations.get(&installation).cloned() else {
        return not_found();
    };
    let token = format!("ghs_{}", random_hex(18));
    let expires_at = now + TOKEN_TTL_SECS;
    inner.tokens.insert(
        token.clone(),
        InstallationToken {
            installation,
            account,
            expires_at,
        },
    );
    inner.tokens_issued += 1;
    FakeResponse::json(
        201,
        json!({
            "token": token, "expires_at": iso(expires_at),
            "permissions": {"secrets": "write", "actions": "write", "metadata": "read", "organization_secrets": "write"},
            "repository_selection": "all",
        }),
    )
}

pub(super) fn authenticate(inner: &Inner, req: &FakeRequest) -> Result<Principal, FakeResponse> {
    let Some(token) = req.bearer() else {
        return Err(FakeResponse::json(
            401,
            json!({"message": "Requires authentication", "documentation_url": "https://docs.github.com/rest"}),
        ));
    };
    if let Some(write) = inner.pats.get(token) {
        return Ok(Principal::Pat { write: *write });
    }
    if let Some(t) = inner.tokens.get(token)
        && t.expires_at > now()
        && inner
            .apps
            .values()
            .any(|a| a.installations.contains_key(&t.installation))
    {
        return Ok(Principal::Installation {
            account: t.account.clone(),
        });
    }
    Err(FakeResponse::json(
        401,
        json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
    ))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // A failure leaves zeros: still unique enough with the counter-based ids around it.
    let _ = getrandom::fill(&mut buf);
    hex::encode(buf)
}
