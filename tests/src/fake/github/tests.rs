use super::*;
use base64::Engine as _;
use crypto_box::PublicKey;
use crypto_box::aead::OsRng;

fn request(method: &str, path: &str, token: Option<&str>, body: Value) -> FakeRequest {
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        "user-agent",
        hyper::header::HeaderValue::from_static("test"),
    );
    if let Some(t) = token {
        headers.insert(
            "authorization",
            hyper::header::HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    FakeRequest {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers,
        body: if body.is_null() {
            bytes::Bytes::new()
        } else {
            bytes::Bytes::from(body.to_string())
        },
    }
}

fn body(r: &FakeResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

fn seal(gh: &GitHub, scope_path: &str, value: &str) -> Value {
    let r = gh.handle(&request(
        "GET",
        &format!("{scope_path}/public-key"),
        Some(TOKEN),
        Value::Null,
    ));
    assert_eq!(r.status, 200, "{:?}", body(&r));
    let key = body(&r);
    let pk: [u8; 32] = b64()
        .decode(key["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let sealed = PublicKey::from(pk)
        .seal(&mut OsRng, value.as_bytes())
        .unwrap();
    json!({"encrypted_value": b64().encode(sealed), "key_id": key["key_id"]})
}

#[test]
fn repository_secret_round_trip() {
    let gh = GitHub::new();
    let scope = "/repos/kvsync/demo/actions/secrets";
    let put = seal(&gh, scope, "s3cret");
    let r = gh.handle(&request(
        "PUT",
        &format!("{scope}/db_pass"),
        Some(TOKEN),
        put.clone(),
    ));
    assert_eq!(r.status, 201);
    let r = gh.handle(&request(
        "PUT",
        &format!("/api/v3{scope}/DB_PASS"),
        Some(TOKEN),
        put,
    ));
    assert_eq!(r.status, 204);
    let state = gh.state();
    assert_eq!(state["objects"]["DB_PASS"]["value"], "s3cret");
    assert_eq!(state["writes"], 2);
    let r = gh.handle(&request(
        "GET",
        &format!("{scope}/DB_PASS"),
        Some(TOKEN),
        Value::Null,
    ));
    assert_eq!(r.status, 200);
    assert!(body(&r).get("value").is_none());
    let r = gh.handle(&request(
        "DELETE",
        &format!("{scope}/db_pass"),
        Some(TOKEN),
        Value::Null,
    ));
    assert_eq!(r.status, 204);
    let r = gh.handle(&request(
        "DELETE",
        &format!("{scope}/db_pass"),
        Some(TOKEN),
        Value::Null,
    ));
    assert_eq!(r.status, 404);
}

#[test]
fn rejects_bad_requests() {
    let gh = GitHub::new();
    let scope = "/repos/kvsync/demo/actions/secrets";
    let r = gh.handle(&request(
        "GET",
        &format!("{scope}/public-key"),
        Some("ghp_wrong"),
        Value::Null,
    ));
    assert_eq!(
        (r.status, body(&r)["message"].as_str()),
        (401, Some("Bad credentials"))
    );
    let put = seal(&gh, scope, "v");
    for name in ["GITHUB_X", "1A", "A-B"] {
        let r = gh.handle(&request(
            "PUT",
            &format!("{scope}/{name}"),
            Some(TOKEN),
            put.clone(),
        ));
        assert_eq!(r.status, 422, "{name}");
    }
    let mut stale = put.clone();
    stale["key_id"] = json!("1");
    assert_eq!(
        gh.handle(&request("PUT", &format!("{scope}/A"), Some(TOKEN), stale))
            .status,
        422
    );
    let mut garbage = put.clone();
    garbage["encrypted_value"] = json!("AAAA");
    assert_eq!(
        gh.handle(&request("PUT", &format!("{scope}/A"), Some(TOKEN), garbage))
            .status,
        422
    );
    let big = seal(&gh, scope, &"x".repeat(MAX_VALUE_BYTES + 1));
    assert_eq!(
        gh.handle(&request("PUT", &format!("{scope}/A"), Some(TOKEN), big))
            .status,
        422
    );
    let r = gh.handle(&request(
        "GET",
        "/repos/kvsync/nope/actions/secrets/public-key",
        Some(TOKEN),
        Value::Null,
    ));
    assert_eq!(r.status, 404);
    let r = gh.handle(&request(
        "GET",
        "/repos/kvsync/demo/environments/prod/secrets/public-key",
        Some(TOKEN),
        Value::Null,
    ));
    assert_eq!(r.status, 404);
    // Rotation makes the old key id stale.
    let r = gh.handle(&request(
        "POST",
        "/_fake/rotate-key",
        None,
        json!({"owner": OWNER, "repo": REPO}),
    ));
    assert_eq!(r.status, 200);
    assert_eq!(
        gh.handle(&request("PUT", &format!("{scope}/A"), Some(TOKEN), put))
            .status,
        422
    );
    assert_eq!(gh.state()["writes"], 0);
}

#[test]
fn read_only_tokens_cannot_write() {
    let gh = GitHub::new();
    gh.handle(&request(
        "POST",
        "/_fake/tokens",
        None,
        json!({"token": "ghp_ro", "write": false}),
    ));
    let scope = "/repos/kvsync/demo/actions/secrets";
    let put = seal(&gh, scope, "v");
    let r = gh.handle(&request("PUT", &format!("{scope}/A"), Some("ghp_ro"), put));
    assert_eq!(r.status, 403);
}

#[test]
fn iso_dates() {
    assert_eq!(iso(0), "1970-01-01T00:00:00Z");
    assert_eq!(iso(784_111_777), "1994-11-06T08:49:37Z");
    assert_eq!(iso(1_709_251_200), "2024-03-01T00:00:00Z");
}
