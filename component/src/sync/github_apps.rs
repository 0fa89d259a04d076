//! `sys/sync/github-apps/:name`: custom GitHub Apps that `gh` destinations
//! authenticate as (`app_name` + `installation_id`). The private key is stored
//! (encrypted at rest by the host) and always read back as `"*****"`, next to
//! the key's fingerprint in GitHub's format, `SHA256:<base64>` of the SHA-256
//! of the DER public key, so users can match it with what GitHub shows.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec, FieldType, MASK};
use crate::storage::Tx;
use crate::sync::destinations::Destination;
use crate::sync::keys;

#[derive(Clone, Serialize, Deserialize)]
struct GithubApp {
    app_id: i64,
    private_key: String,
    fingerprint: String,
}

pub const FIELDS: &[FieldSpec] = &[
    FieldSpec::new("app_id", FieldType::Int)
        .immutable()
        .describe("ID of the GitHub App; it cannot change once the app is registered."),
    FieldSpec::string("private_key").sensitive().describe(
        "The app's RSA private key in PEM; reads show it masked, next to its fingerprint.",
    ),
];

/// `LIST sys/sync/github-apps`.
pub fn list(tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    Reply::keys(tx.names(keys::GITHUB_APPS)?)
}

/// `GET sys/sync/github-apps/:name`.
pub fn read(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let name = call.param("name");
    validate_name(name)?;
    let app: GithubApp = tx
        .get_json(&keys::github_app(name))?
        .ok_or(ApiError::NotFound)?;
    Ok(read_body(name, &app))
}

/// `POST sys/sync/github-apps/:name`: registers the app, or replaces its key.
pub fn write(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let (name, fields) = (call.param("name"), &call.fields);
    validate_name(name)?;
    let key = keys::github_app(name);
    let existing: Option<GithubApp> = tx.get_json(&key)?;
    let app_id = match (fields.int("app_id"), &existing) {
        (Some(id), Some(old)) if id != old.app_id => {
            return Err(ApiError::bad_request(
                "app_id cannot be changed after the app is registered; delete and register it again",
            ));
        }
        (Some(id), _) if id <= 0 => {
            return Err(ApiError::bad_request(format!(
                "app_id must be a positive GitHub App ID, got {id}"
            )));
        }
        (Some(id), _) => id,
        (None, Some(old)) => old.app_id,
        (None, None) => return Err(ApiError::bad_request("app_id is required")),
    };
    let given_key = fields
        .string("private_key")
        .filter(|k| !k.trim().is_empty() && !k.chars().all(|c| c == '*'));
    let (private_key, fingerprint) = match (given_key, &existing) {
        (Some(pem), _) => (
            pem.to_string(),
            fingerprint(pem).map_err(|e| ApiError::bad_request(format!("private_key: {e}")))?,
        ),
        (None, Some(old)) => (old.private_key.clone(), old.fingerprint.clone()),
        (None, None) => return Err(ApiError::bad_request("private_key is required")),
    };
    let app = GithubApp {
        app_id,
        private_key,
        fingerprint,
    };
    tx.put_json(key, &app)?;
    Ok(read_body(name, &app))
}

/// `DELETE sys/sync/github-apps/:name`: refused while a destination uses it.
pub fn delete(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let name = call.param("name");
    validate_name(name)?;
    let key = keys::github_app(name);
    if tx.get(&key)?.is_none() {
        return Ok(Reply::no_content());
    }
    if let Some(dest) = referencing_destination(tx, name)? {
        return Err(ApiError::bad_request(format!(
            "GitHub App {name:?} is used by destination gh/{dest}; change or delete that destination first"
        )));
    }
    tx.delete(key);
    Ok(Reply::no_content())
}

/// `{"app_id", "private_key"}` of a registered app, for the connector of a
/// `gh` destination that authenticates as it.
pub fn app_config(tx: &mut Tx, name: &str) -> ApiResult<Option<serde_json::Value>> {
    let app: Option<GithubApp> = tx.get_json(&keys::github_app(name))?;
    Ok(app.map(|a| json!({ "app_id": a.app_id, "private_key": a.private_key })))
}

fn read_body(name: &str, app: &GithubApp) -> Reply {
    Reply::data(json!({
        "name": name,
        "app_id": app.app_id,
        "fingerprint": app.fingerprint,
        "private_key": MASK,
    }))
}

fn validate_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid GitHub App name {name:?}: use letters, digits, '.', '_' and '-', not ending with '.'"
        )))
    }
}

/// The name of a `gh` destination that uses the app, if any.
fn referencing_destination(tx: &mut Tx, app: &str) -> ApiResult<Option<String>> {
    let prefix = format!("{}gh/", keys::DESTINATIONS);
    for name in tx.list(&prefix, Some('/'))? {
        if let Some(dest) = Destination::load(tx, "gh", &name)? {
            let uses = dest
                .connection_details
                .get("app_name")
                .and_then(|v| v.as_str())
                .is_some_and(|n| n == app);
            if uses {
                return Ok(Some(name));
            }
        }
    }
    Ok(None)
}

/// GitHub's fingerprint of an RSA private key in PEM (PKCS#1 or PKCS#8):
/// `SHA256:` + base64 of the SHA-256 of the DER SubjectPublicKeyInfo.
pub fn fingerprint(pem: &str) -> Result<String, String> {
    let der = pem_body(pem)?;
    let rsa = match pem_label(pem) {
        Some("RSA PRIVATE KEY") => der,
        Some("PRIVATE KEY") => pkcs8_rsa_key(&der)?,
        _ => return Err(
            "expected a PEM RSA private key (\"BEGIN RSA PRIVATE KEY\" or \"BEGIN PRIVATE KEY\")"
                .to_string(),
        ),
    };
    let (n, e) = rsa_modulus_and_exponent(&rsa)?;
    let public_key = der_tlv(0x30, &[n, e].concat());
    // AlgorithmIdentifier { rsaEncryption, NULL }
    let algorithm: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let bit_string = der_tlv(0x03, &[&[0u8][..], &public_key].concat());
    let spki = der_tlv(0x30, &[algorithm, &bit_string].concat());
    let digest = Sha256::digest(&spki);
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    ))
}

fn pem_label(pem: &str) -> Option<&str> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = pem.get(start..)?;
    let end = rest.find("-----")?;
    rest.get(..end)
}

fn pem_body(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----") && !l.contains(':'))
        .collect();
    if body.is_empty() {
        return Err("not a PEM-encoded key".to_string());
    }
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| "the PEM body is not valid base64".to_string())
}

/// Reads one DER TLV at `pos`: (tag, the whole TLV bytes, content range end).
fn read_tlv(der: &[u8], pos: usize) -> Result<(u8, usize, usize), String> {
    let bad = || "malformed DER in the private key".to_string();
    let tag = *der.get(pos).ok_or_else(bad)?;
    let first = *der.get(pos + 1).ok_or_else(bad)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err(bad());
        }
        let mut len = 0usize;
        for i in 0..count {
            len = (len << 8) | usize::from(*der.get(pos + 2 + i).ok_or_else(bad)?);
        }
        (len, 2 + count)
    };
    let start = pos + header;
    let end = start.checked_add(len).ok_or_else(bad)?;
    if end > der.len() {
        return Err(bad());
    }
    Ok((tag, start, end))
}

/// PKCS#1 RSAPrivateKey → the DER INTEGERs n and e, as encoded.
fn rsa_modulus_and_exponent(der: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let (tag, start, end) = read_tlv(der, 0)?;
    if tag != 0x30 {
        return Err("the key is not an RSA private key".to_string());
    }
    let body = der.get(start..end).ok_or("malformed DER")?;
    let (_, _, version_end) = read_tlv(body, 0)?;
    let (n_tag, _, n_end) = read_tlv(body, version_end)?;
    let (e_tag, _, e_end) = read_tlv(body, n_end)?;
    if n_tag != 0x02 || e_tag != 0x02 {
        return Err("the key is not an RSA private key".to_string());
    }
    let n = body.get(version_end..n_end).ok_or("malformed DER")?;
    let e = body.get(n_end..e_end).ok_or("malformed DER")?;
    Ok((n, e))
}

/// PKCS#8 PrivateKeyInfo → the inner PKCS#1 key (RSA only).
fn pkcs8_rsa_key(der: &[u8]) -> Result<Vec<u8>, String> {
    const RSA_OID: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    let (_, start, end) = read_tlv(der, 0)?;
    let body = der.get(start..end).ok_or("malformed DER")?;
    let (_, _, version_end) = read_tlv(body, 0)?;
    let (_, alg_start, alg_end) = read_tlv(body, version_end)?;
    let algorithm = body.get(alg_start..alg_end).ok_or("malformed DER")?;
    if !algorithm.starts_with(RSA_OID) {
        return Err("only RSA keys are supported (GitHub App keys are RSA)".to_string());
    }
    let (tag, key_start, key_end) = read_tlv(body, alg_end)?;
    if tag != 0x04 {
        return Err("malformed PKCS#8 key".to_string());
    }
    Ok(body
        .get(key_start..key_end)
        .ok_or("malformed DER")?
        .to_vec())
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Fakes;
    use serde_json::Value;

    /// A throwaway 1024-bit test key, in both PEM forms; its fingerprint was
    /// computed with `openssl rsa -pubout -outform DER | openssl sha256 -binary | openssl base64`.
    const PKCS1: &str = "-----BEGIN RSA PRIVATE KEY-----
MIICXAIBAAKBgQDLLb+BejoZ+vqY8pu/L0Xrhw6y48sYquodL/uLB2BLwUhHKyNa
6LOypnh4hgym8CnZELMm43B3QfQW3UKdRwYn3sxUYdDfaKaeEW0zgy9mo/pgvIb7
JSG8WVprhA4pZRg7nexq+EJEaF+grKkXftY8ueWbP2A+AMhfLTwA7Q51MwIDAQAB
AoGAW3v039LuOGaG0bljoXkirYN5fdkNyMSkd5H0XExs8o9MASeOWs+uogFM+0+4
gK5g2WkokZkVOc2Ln4PvC6xAO4OoGao7x1Z6aHMcEA91Uov9N8olx67JKhrwJsCb
FhJpWFII1hZUhtXz1dAIZcwFDdyqeP+eLY8ogIuxP2GG+2ECQQD1iQliz2eQbWBc
BcDhgvo95OF6ivbJ/Euf3sUpZIMhFkSMmmtn8q4tpFpKJWXPetJ5iJNfdQAR24Be
d6XJMSRjAkEA09aSMQqHZbG5eZMb86/KFupAp0o1ikoNFm2bbxygU9G05c/tnO/T
xJpCOwFU32/fWnJ6o8NBfvYIt2ozkuw88QJAW09fAjQHW5qRXyd0l2jSDvpzL9NF
+8+rgASkZcRPT5qsW22By+JgC/E28qP9vK78Xt3/kFw+bmWm03rDWJLB6QJAfqmj
y/Lxtlqn/gt6ASExAraaZey3SrKwVKLA95T0QGn5chf7iYTU6I8b3tATAW6Q7DHb
JqQPO2y9FX5IzCa44QJBAOx20elGbUfsfu8FWzaZ4cMlbTcHdKGUCGRYmbHUiXaQ
HeHOBzftT3iajZkMIRMNrV1cJbUkWza20eibJ402Mxw=
-----END RSA PRIVATE KEY-----";
    const PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAMstv4F6Ohn6+pjy
m78vReuHDrLjyxiq6h0v+4sHYEvBSEcrI1ros7KmeHiGDKbwKdkQsybjcHdB9Bbd
Qp1HBifezFRh0N9opp4RbTODL2aj+mC8hvslIbxZWmuEDillGDud7Gr4QkRoX6Cs
qRd+1jy55Zs/YD4AyF8tPADtDnUzAgMBAAECgYBbe/Tf0u44ZobRuWOheSKtg3l9
2Q3IxKR3kfRcTGzyj0wBJ45az66iAUz7T7iArmDZaSiRmRU5zYufg+8LrEA7g6gZ
qjvHVnpocxwQD3VSi/03yiXHrskqGvAmwJsWEmlYUgjWFlSG1fPV0AhlzAUN3Kp4
/54tjyiAi7E/YYb7YQJBAPWJCWLPZ5BtYFwFwOGC+j3k4XqK9sn8S5/exSlkgyEW
RIyaa2fyri2kWkolZc960nmIk191ABHbgF53pckxJGMCQQDT1pIxCodlsbl5kxvz
r8oW6kCnSjWKSg0WbZtvHKBT0bTlz+2c79PEmkI7AVTfb99acnqjw0F+9gi3ajOS
7DzxAkBbT18CNAdbmpFfJ3SXaNIO+nMv00X7z6uABKRlxE9PmqxbbYHL4mAL8Tby
o/28rvxe3f+QXD5uZabTesNYksHpAkB+qaPL8vG2Wqf+C3oBITECtppl7LdKsrBU
osD3lPRAaflyF/uJhNTojxve0BMBbpDsMdsmpA87bL0VfkjMJrjhAkEA7HbR6UZt
R+x+7wVbNpnhwyVtNwd0oZQIZFiZsdSJdpAd4c4HN+1PeJqNmQwhEw2tXVwltSRb
NrbR6JsnjTYzHA==
-----END PRIVATE KEY-----";
    const FINGERPRINT: &str = "SHA256:D7x2bUpXYdipt/GQzgwdCgXY/+iGiblcTUM71yUXTfI=";

    fn call(f: &Fakes, method: &str, path: &str, body: Value) -> (u16, Value) {
        crate::testing::call(&f.env(), method, path, &body)
    }

    #[test]
    fn fingerprints_match_openssl_for_both_pem_forms() {
        assert_eq!(fingerprint(PKCS1).unwrap(), FINGERPRINT);
        assert_eq!(fingerprint(PKCS8).unwrap(), FINGERPRINT);
        assert!(fingerprint("not a key").is_err());
        assert!(
            fingerprint("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----")
                .is_err()
        );
    }

    #[test]
    fn register_read_list_and_delete() {
        let f = Fakes::default();
        let (s, body) = call(
            &f,
            "POST",
            "sys/sync/github-apps/app1",
            json!({"app_id": "123", "private_key": PKCS1}),
        );
        assert_eq!(s, 200, "{body}");
        let data = &body["data"];
        assert_eq!(data["app_id"], 123);
        assert_eq!(data["private_key"], "*****");
        assert_eq!(data["fingerprint"], FINGERPRINT);
        assert_eq!(data["name"], "app1");
        assert!(!body.to_string().contains("PRIVATE KEY"));
        // Masked round trip keeps the key; app_id cannot change.
        let (s, _) = call(
            &f,
            "POST",
            "sys/sync/github-apps/app1",
            json!({"private_key": "*****"}),
        );
        assert_eq!(s, 200);
        let (s, body) = call(&f, "GET", "sys/sync/github-apps/app1", Value::Null);
        assert_eq!(
            (s, body["data"]["fingerprint"].clone()),
            (200, json!(FINGERPRINT))
        );
        let (s, _) = call(
            &f,
            "POST",
            "sys/sync/github-apps/app1",
            json!({"app_id": 9}),
        );
        assert_eq!(s, 400);
        let (s, body) = call(&f, "LIST", "sys/sync/github-apps", Value::Null);
        assert_eq!((s, body["data"]["keys"].clone()), (200, json!(["app1"])));
        assert_eq!(
            call(&f, "DELETE", "sys/sync/github-apps/app1", Value::Null).0,
            204
        );
        assert_eq!(
            call(&f, "GET", "sys/sync/github-apps/app1", Value::Null).0,
            404
        );
        assert_eq!(call(&f, "LIST", "sys/sync/github-apps", Value::Null).0, 404);
    }

    #[test]
    fn a_gh_destination_using_the_app_hands_its_key_to_the_connector() {
        let f = Fakes::default();
        let (s, _) = call(
            &f,
            "POST",
            "sys/sync/github-apps/app1",
            json!({"app_id": 42, "private_key": PKCS1}),
        );
        assert_eq!(s, 200);
        let (s, body) = call(
            &f,
            "POST",
            "sys/sync/destinations/gh/d1",
            json!({"app_name": "app1", "installation_id": 7, "repository_owner": "o", "repository_name": "r"}),
        );
        assert_eq!(s, 200, "{body}");
        assert!(!body.to_string().contains("PRIVATE KEY"));
        let mut tx = crate::storage::Tx::new(&f.storage);
        let dest = Destination::load(&mut tx, "gh", "d1").unwrap().unwrap();
        let target = crate::sync::associations::engine::connector_target(&mut tx, &dest).unwrap();
        let config: Value = serde_json::from_str(&target.config).unwrap();
        assert_eq!(config["app_config"]["app_id"], 42);
        assert_eq!(config["app_config"]["private_key"], PKCS1);
        assert_eq!(config["installation_id"], 7);
        // Deleting the app is refused while the destination uses it.
        assert_eq!(
            call(&f, "DELETE", "sys/sync/github-apps/app1", Value::Null).0,
            400
        );
    }

    #[test]
    fn bad_input_is_refused_and_nothing_stored() {
        let f = Fakes::default();
        for body in [
            json!({"private_key": PKCS1}),
            json!({"app_id": 1}),
            json!({"app_id": "x", "private_key": PKCS1}),
            json!({"app_id": -4, "private_key": PKCS1}),
            json!({"app_id": 1, "private_key": "garbage"}),
        ] {
            let (s, resp) = call(&f, "POST", "sys/sync/github-apps/app2", body);
            assert_eq!(s, 400, "{resp}");
            assert!(!resp.to_string().contains("BEGIN"));
        }
        assert_eq!(
            call(&f, "GET", "sys/sync/github-apps/app2", Value::Null).0,
            404
        );
        assert_eq!(
            call(
                &f,
                "POST",
                "sys/sync/github-apps/bad%20name",
                json!({"app_id": 1, "private_key": PKCS1})
            )
            .0,
            400
        );
    }
}
