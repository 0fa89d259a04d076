//! The `gcp-sm` connector against the GCP fake, in process: the calls each
//! operation makes, the create → 409 → addVersion race, CRC32C, replication
//! policies, labels, error mapping and the token cache.
//!
//! One fake serves every test (each test's registry gets its URL through a
//! `ConnectorEnv`), and the tests take turns so that the fake's call log and
//! counters belong to one test at a time.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kvsync::connectors::{
    ConnectorEnv, Connectors, DEFAULT_TIMEOUT, Destination, ExternalSecret, SyncError,
};
use kvsync_tests::fake::{Backend, FakeServer, Service, gcp};
use serde_json::{Value, json};

struct World {
    server: FakeServer,
    fake: Arc<gcp::GcpSecretManager>,
    http: reqwest::Client,
}

static WORLD: OnceLock<World> = OnceLock::new();
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let fake = Arc::new(gcp::GcpSecretManager::new());
        let server = FakeServer::start(Backend::Fake(fake.clone()), 0).unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        World { server, fake, http }
    })
}

/// A registry whose `gcp-sm` connector calls the fake's API.
fn connectors() -> Connectors {
    let env = ConnectorEnv {
        gcp_secret_manager_url: Some(world().server.url()),
        ..ConnectorEnv::default()
    };
    Connectors::with_env(env, DEFAULT_TIMEOUT)
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

fn credentials(key_pem: &str) -> String {
    gcp::service_account_json(&world().server.url(), key_pem).to_string()
}

fn dest(extra: Value) -> Destination {
    let mut config = json!({
        "credentials": credentials(gcp::TEST_PRIVATE_KEY_PEM),
        "project_id": gcp::PROJECT_ID,
        "disable_strict_networking": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    Destination {
        kind: "gcp-sm".into(),
        name: "gcp".into(),
        tenant: String::new(),
        config,
    }
}

fn secret(name: &str, value: &str, tags: &[(&str, &str)]) -> ExternalSecret {
    let mut all = vec![("hashicorp:vault".to_string(), String::new())];
    all.extend(tags.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ExternalSecret {
        name: name.into(),
        value: value.to_string().into(),
        tags: all,
    }
}

fn state() -> Value {
    world().fake.state()
}

async fn calls() -> Vec<(String, String)> {
    let w = world();
    let calls: Vec<Value> = w
        .http
        .get(format!("{}/_admin/calls", w.server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    calls
        .iter()
        .map(|c| {
            (
                c["method"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn clear_calls() {
    let w = world();
    w.http
        .delete(format!("{}/_admin/calls", w.server.url()))
        .send()
        .await
        .unwrap();
}

async fn fault(f: Value) {
    let w = world();
    let r = w
        .http
        .post(format!("{}/_admin/faults", w.server.url()))
        .body(f.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

async fn clear_faults() {
    let w = world();
    w.http
        .delete(format!("{}/_admin/faults", w.server.url()))
        .send()
        .await
        .unwrap();
}

fn secrets_path() -> String {
    format!("/v1/projects/{}/secrets", gcp::PROJECT_ID)
}

fn add_version_path(id: &str) -> String {
    format!("{}/{id}:addVersion", secrets_path())
}

fn post(path: String) -> (String, String) {
    ("POST".into(), path)
}

/// An access token from the fake, obtained the way the connector does.
async fn access_token() -> String {
    let w = world();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let aud = format!("{}/token", w.server.url());
    let claims = json!({"iss": gcp::CLIENT_EMAIL, "scope": gcp::SCOPE, "aud": aud, "iat": now, "exp": now + 3600});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(gcp::PRIVATE_KEY_ID.into());
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(gcp::TEST_PRIVATE_KEY_PEM.as_bytes()).unwrap();
    let jwt = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let resp: Value = w
        .http
        .post(aud)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jwt}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["token_type"], "Bearer", "{resp}");
    assert_eq!(resp["expires_in"], 3599, "{resp}");
    resp["access_token"].as_str().unwrap().to_string()
}

fn external(e: &SyncError) -> (String, Option<Duration>) {
    match e {
        SyncError::ExternalService {
            message,
            retry_after,
        } => (message.clone(), *retry_after),
        other => panic!("expected an external-service error, got {other:?}"),
    }
}

fn client_side(e: SyncError) -> String {
    match e {
        SyncError::ClientSide(m) => m,
        other => panic!("expected a client-side error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_new_object_costs_a_create_and_a_version_and_an_existing_one_is_kept() {
    let _turn = TURN.lock().await;
    let c = connectors();
    let d = dest(json!({}));
    let id = unique("new");
    // Warm the token cache so only the secret's own calls are counted.
    c.push(&d, &secret(&unique("warm"), "w", &[]))
        .await
        .unwrap();
    clear_calls().await;
    c.push_new(&d, &secret(&id, "v1", &[])).await.unwrap();
    assert_eq!(
        calls().await,
        vec![post(secrets_path()), post(add_version_path(&id))]
    );
    // It existed after all: the create answers 409, the secret gets a version.
    clear_calls().await;
    c.push_new(&d, &secret(&id, "v2", &[])).await.unwrap();
    assert_eq!(
        calls().await,
        vec![post(secrets_path()), post(add_version_path(&id))]
    );
    let s = state();
    assert_eq!(s["objects"][&id]["value"], "v2");
    assert_eq!(s["versions"][&id], 2);
}

#[tokio::test]
async fn first_push_creates_and_an_update_is_one_add_version() {
    let _turn = TURN.lock().await;
    let c = connectors();
    let d = dest(json!({}));
    let id = unique("first");
    clear_calls().await;
    c.push(&d, &secret(&id, "{\"password\":\"p1\"}", &[]))
        .await
        .unwrap();
    assert_eq!(
        calls().await,
        vec![
            post("/token".into()),
            post(add_version_path(&id)),
            post(secrets_path()),
            post(add_version_path(&id))
        ]
    );
    let s = state();
    assert_eq!(
        s["objects"][&id],
        json!({"value": "{\"password\":\"p1\"}", "tags": {"hashicorp-vault": ""}})
    );
    assert_eq!(s["replication"][&id], json!({"automatic": {}}));

    // An update: one call, one write, the token from the cache.
    let writes = s["writes"].as_u64().unwrap();
    clear_calls().await;
    c.push(&d, &secret(&id, "{\"password\":\"p2\"}", &[]))
        .await
        .unwrap();
    assert_eq!(calls().await, vec![post(add_version_path(&id))]);
    let s = state();
    assert_eq!(s["writes"].as_u64().unwrap(), writes + 1);
    assert_eq!(s["objects"][&id]["value"], "{\"password\":\"p2\"}");
    assert_eq!(s["versions"][&id], 2);

    // Delete: one call; deleting again (404) succeeds.
    clear_calls().await;
    c.delete(&d, &id).await.unwrap();
    assert_eq!(
        calls().await,
        vec![("DELETE".to_string(), format!("{}/{id}", secrets_path()))]
    );
    assert!(state()["objects"].get(&id).is_none());
    c.delete(&d, &id).await.unwrap();
}

#[tokio::test]
async fn a_lost_create_race_goes_on_to_add_version() {
    let _turn = TURN.lock().await;
    let c = connectors();
    let d = dest(json!({}));
    let id = unique("race");
    c.push(&d, &secret(&id, "v1", &[])).await.unwrap();
    let creates = state()["creates"].as_u64().unwrap();
    // The secret "is missing" at the first addVersion, then exists at create.
    fault(json!({"method": "POST", "path_prefix": add_version_path(&id), "status": 404,
                 "body": {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}, "times": 1}))
    .await;
    clear_calls().await;
    c.push(&d, &secret(&id, "v2", &[])).await.unwrap();
    assert_eq!(
        calls().await,
        vec![
            post(add_version_path(&id)),
            post(secrets_path()),
            post(add_version_path(&id))
        ]
    );
    let s = state();
    assert_eq!(
        s["creates"].as_u64().unwrap(),
        creates,
        "the 409 created nothing"
    );
    assert_eq!(s["objects"][&id]["value"], "v2");
    assert_eq!(s["versions"][&id], 2);
    c.delete(&d, &id).await.unwrap();
}

#[tokio::test]
async fn payloads_carry_a_crc32c_the_provider_checks() {
    let _turn = TURN.lock().await;
    let w = world();
    let c = connectors();
    let d = dest(json!({}));
    let id = unique("crc");
    let value = "héllo wörld ✓";
    c.push(&d, &secret(&id, value, &[])).await.unwrap();
    let s = state();
    assert_eq!(s["objects"][&id]["value"], value);
    assert_eq!(
        s["checksummed"][&id], true,
        "the connector sends dataCrc32c"
    );

    let token = access_token().await;
    let access: Value = w
        .http
        .get(format!(
            "{}{}/{id}/versions/latest:access",
            w.server.url(),
            secrets_path()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        access["payload"]["dataCrc32c"],
        crc32c::crc32c(value.as_bytes()).to_string()
    );

    // The fake rejects a wrong checksum, as Google does.
    let wrong = crc32c::crc32c(value.as_bytes()).wrapping_add(1);
    let r = w
        .http
        .post(format!("{}{}", w.server.url(), add_version_path(&id)))
        .bearer_auth(&token)
        .body(json!({"payload": {"data": "aGk=", "dataCrc32c": wrong.to_string()}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Checksum mismatch")
    );
    // And a request without a token.
    let r = w
        .http
        .get(format!(
            "{}{}/{id}/versions/latest:access",
            w.server.url(),
            secrets_path()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    c.delete(&d, &id).await.unwrap();
}

#[tokio::test]
async fn replication_policies_and_labels_are_set_at_creation() {
    let _turn = TURN.lock().await;
    let c = connectors();
    let tags = [("Team", "Platform"), ("cost-center", "CC 42")];
    let cases = [
        (json!({}), json!({"automatic": {}})),
        (
            json!({"kms_key_id": "projects/p/locations/global/keyRings/r/cryptoKeys/k"}),
            json!({"automatic": {"customerManagedEncryption": {"kmsKeyName": "projects/p/locations/global/keyRings/r/cryptoKeys/k"}}}),
        ),
        (
            json!({"replica_regions": {"us-east1": "k-east", "europe-west1": "k-west"}}),
            json!({"userManaged": {"replicas": [
                {"location": "europe-west1", "customerManagedEncryption": {"kmsKeyName": "k-west"}},
                {"location": "us-east1", "customerManagedEncryption": {"kmsKeyName": "k-east"}},
            ]}}),
        ),
        (
            json!({"replica_regions": {"us-east1": "", "us-west1": ""}}),
            json!({"userManaged": {"replicas": [{"location": "us-east1"}, {"location": "us-west1"}]}}),
        ),
        (
            json!({"replication_locations": ["us-east1", "asia-east1"], "locational_kms_keys": {"us-east1": "k1"}}),
            json!({"userManaged": {"replicas": [
                {"location": "asia-east1"},
                {"location": "us-east1", "customerManagedEncryption": {"kmsKeyName": "k1"}},
            ]}}),
        ),
        (
            json!({"global_kms_key": "g"}),
            json!({"automatic": {"customerManagedEncryption": {"kmsKeyName": "g"}}}),
        ),
    ];
    for (i, (extra, expected)) in cases.into_iter().enumerate() {
        let d = dest(extra);
        let id = unique(&format!("repl{i}"));
        c.push(&d, &secret(&id, "v", &tags)).await.unwrap();
        let s = state();
        assert_eq!(s["replication"][&id], expected, "case {i}");
        assert_eq!(
            s["objects"][&id]["tags"],
            json!({"hashicorp-vault": "", "team": "platform", "cost-center": "cc-42"}),
            "case {i}"
        );
        c.delete(&d, &id).await.unwrap();
    }
    // Tags that collide as labels are the destination's configuration to fix.
    let d = dest(json!({}));
    let err = c
        .push(
            &d,
            &secret(&unique("clash"), "v", &[("Env", "a"), ("env", "b")]),
        )
        .await
        .unwrap_err();
    assert!(client_side(err).contains("both become the GCP label"));
}

#[tokio::test]
async fn errors_are_classified() {
    let _turn = TURN.lock().await;
    let c = connectors();
    let d = dest(json!({}));
    let id = unique("err");
    let objects_before = state()["objects"].as_object().unwrap().len();

    // A key the provider does not know.
    let bad = dest(json!({"credentials": credentials(gcp::OTHER_PRIVATE_KEY_PEM)}));
    let m = client_side(c.push(&bad, &secret(&id, "v", &[])).await.unwrap_err());
    assert!(
        m.contains("Google rejected the service account credentials"),
        "{m}"
    );
    assert!(m.contains("Invalid JWT Signature"), "{m}");
    assert!(!m.contains("PRIVATE KEY"), "{m}");

    // Throttling, with and without Retry-After; outages.
    fault(json!({"path_prefix": "/v1/", "status": 429, "times": 1,
                 "body": {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}},
                 "headers": [["retry-after", "7"]]}))
    .await;
    let (m, retry) = external(&c.push(&d, &secret(&id, "v", &[])).await.unwrap_err());
    assert_eq!(retry, Some(Duration::from_secs(7)));
    assert!(m.contains("429") && m.contains("RESOURCE_EXHAUSTED"), "{m}");
    fault(json!({"path_prefix": "/v1/", "status": 429, "times": 1,
                 "body": {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED",
                          "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]}}}))
    .await;
    let (_, retry) = external(&c.push(&d, &secret(&id, "v", &[])).await.unwrap_err());
    assert_eq!(retry, Some(Duration::from_secs(3)));
    fault(json!({"path_prefix": "/v1/", "status": 503, "times": 1,
                 "body": {"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}}))
    .await;
    let (m, _) = external(&c.delete(&d, &id).await.unwrap_err());
    assert!(m.contains("UNAVAILABLE"), "{m}");
    fault(json!({"path_prefix": "/v1/", "drop": true, "times": 1})).await;
    external(&c.push(&d, &secret(&id, "v", &[])).await.unwrap_err());
    fault(json!({"path_prefix": "/token", "status": 503, "times": 1, "body": "backend error"}))
        .await;
    let other_key = connectors();
    external(
        &other_key
            .push(&d, &secret(&id, "v", &[]))
            .await
            .unwrap_err(),
    );
    clear_faults().await;

    // A project the service account may not use.
    let elsewhere = dest(json!({"project_id": "someone-elses"}));
    let m = client_side(
        c.push(&elsewhere, &secret(&id, "v", &[]))
            .await
            .unwrap_err(),
    );
    assert!(m.contains("403") && m.contains("PERMISSION_DENIED"), "{m}");

    // Egress rules cover the token endpoint (the fake's is plain http, refused
    // first under strict networking) and the API.
    let strict = dest(json!({"disable_strict_networking": false}));
    let m = client_side(
        connectors()
            .push(&strict, &secret(&id, "v", &[]))
            .await
            .unwrap_err(),
    );
    assert!(m.contains("token_uri") && m.contains("https"), "{m}");
    let m = client_side(c.push(&strict, &secret(&id, "v", &[])).await.unwrap_err());
    assert!(
        m.contains("egress refused"),
        "{m} (cached token, API refused)"
    );

    // Name and size, before any call.
    clear_calls().await;
    let m = client_side(
        c.push(&d, &secret("vault/kv/x", "v", &[]))
            .await
            .unwrap_err(),
    );
    assert!(
        m.contains("not a valid Google Secret Manager secret ID"),
        "{m}"
    );
    let m = client_side(
        c.push(&d, &secret(&id, &"x".repeat(64 * 1024 + 1), &[]))
            .await
            .unwrap_err(),
    );
    assert!(m.contains("64 KiB"), "{m}");
    assert!(calls().await.is_empty());
    // Exactly 64 KiB is accepted.
    c.push(&d, &secret(&id, &"x".repeat(64 * 1024), &[]))
        .await
        .unwrap();
    c.delete(&d, &id).await.unwrap();
    assert_eq!(
        state()["objects"].as_object().unwrap().len(),
        objects_before
    );
}

#[tokio::test]
async fn tokens_are_cached_and_dropped_after_a_401() {
    let _turn = TURN.lock().await;
    let c = connectors();
    let d = dest(json!({}));
    let id = unique("tok");
    clear_calls().await;
    for v in ["1", "2", "3"] {
        c.push(&d, &secret(&id, v, &[])).await.unwrap();
    }
    let tokens = |calls: &[(String, String)]| calls.iter().filter(|(_, p)| p == "/token").count();
    assert_eq!(tokens(&calls().await), 1);

    fault(json!({"path_prefix": "/v1/", "status": 401, "times": 1,
                 "body": {"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}}))
    .await;
    let m = client_side(c.push(&d, &secret(&id, "4", &[])).await.unwrap_err());
    assert!(m.contains("UNAUTHENTICATED"), "{m}");
    clear_calls().await;
    c.push(&d, &secret(&id, "5", &[])).await.unwrap();
    assert_eq!(tokens(&calls().await), 1, "a new token after the 401");
    assert_eq!(state()["objects"][&id]["value"], "5");
    c.delete(&d, &id).await.unwrap();
}
