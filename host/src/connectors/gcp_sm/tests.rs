use std::sync::Arc;

use jsonwebtoken::Algorithm;
use reqwest::header::HeaderValue;

use super::client::{sign_assertion, token_error};
use super::config::ServiceAccount;
use super::*;
use crate::connectors::{Destination, DestinationConnector, typed};

/// The connector as the registry holds it (it parses each destination).
fn connector() -> Arc<dyn DestinationConnector> {
    typed(GcpSecretManager::new(&ConnectorEnv::default()))
}

/// The replication policy of a config, or why the config cannot be read.
fn replication(config: &Value) -> Result<Value, SyncError> {
    Dest::<Config>::parse(&dest(config.clone())).map(|d| d.config.replication())
}

fn dest(config: Value) -> Destination {
    Destination {
        kind: "gcp-sm".into(),
        name: "d".into(),
        config,
        tenant: String::new(),
    }
}

fn secret(name: &str, value: &str) -> ExternalSecret {
    ExternalSecret {
        name: name.into(),
        value: Zeroizing::new(value.into()),
        tags: vec![("hashicorp:vault".into(), String::new())],
    }
}

fn client_side(r: Result<(), SyncError>) -> String {
    match r {
        Err(SyncError::ClientSide(m)) => m,
        other => panic!("expected a client-side error, got {other:?}"),
    }
}

#[test]
fn secret_ids_follow_googles_rule() {
    assert!(check_secret_id("vault_kv_1234_my-secret").is_ok());
    assert!(check_secret_id(&"x".repeat(255)).is_ok());
    assert!(check_secret_id(&"x".repeat(256)).is_err());
    assert!(check_secret_id("").is_err());
    for bad in ["a/b", "a.b", "a b", "é", "a:b", "../x"] {
        assert!(check_secret_id(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn invalid_names_and_big_values_fail_before_any_call() {
    // No credentials at all: the checks must come first.
    let c = connector();
    let d = dest(json!({}));
    let m = client_side(c.push(&d, &secret("a/b", "v")).await);
    assert!(
        m.contains("not a valid Google Secret Manager secret ID"),
        "{m}"
    );
    let m = client_side(
        c.push(&d, &secret("ok", &"v".repeat(MAX_PAYLOAD + 1)))
            .await,
    );
    assert!(m.contains("64 KiB"), "{m}");
    assert!(!m.contains("vvvv"), "{m}");
    // A name Google cannot hold is already deleted.
    assert_eq!(c.delete(&d, "a/b").await, Ok(()));
}

#[tokio::test]
async fn adc_and_workload_identity_are_not_supported_yet() {
    let c = connector();
    let m = client_side(
        c.push(&dest(json!({"credentials": ""})), &secret("s", "v"))
            .await,
    );
    assert!(
        m.contains("Application Default Credentials are not supported"),
        "{m}"
    );
    let wif = dest(
        json!({"identity_token_audience": "//iam/x", "service_account_email": "a@p.iam.gserviceaccount.com"}),
    );
    let m = client_side(c.push(&wif, &secret("s", "v")).await);
    assert!(
        m.contains("workload identity federation is not supported"),
        "{m}"
    );
    let ext = dest(json!({"credentials": "{\"type\":\"external_account\",\"audience\":\"x\"}"}));
    let m = client_side(c.delete(&ext, "s").await);
    assert!(
        m.contains("workload identity federation is not supported"),
        "{m}"
    );
}

#[tokio::test]
async fn bad_keys_are_client_side_and_never_quoted() {
    let c = connector();
    let m = client_side(
        c.push(
            &dest(json!({"credentials": "not json SECRET-KEY-TEXT"})),
            &secret("s", "v"),
        )
        .await,
    );
    assert!(m.contains("not a service account JSON key"), "{m}");
    assert!(!m.contains("SECRET-KEY-TEXT"), "{m}");
    let no_key =
        json!({"type": "service_account", "client_email": "a@b", "project_id": "p"}).to_string();
    let m = client_side(
        c.push(&dest(json!({"credentials": no_key})), &secret("s", "v"))
            .await,
    );
    assert!(m.contains("lacks client_email or private_key"), "{m}");
    let bad_pem = json!({"type": "service_account", "client_email": "a@b", "project_id": "p",
                         "private_key": "-----BEGIN PRIVATE KEY-----\nSECRET-KEY-TEXT\n-----END PRIVATE KEY-----\n",
                         "token_uri": "http://127.0.0.1:9/token"})
    .to_string();
    let d = dest(json!({"credentials": bad_pem, "disable_strict_networking": true}));
    let m = client_side(c.push(&d, &secret("s", "v")).await);
    assert!(m.contains("not an RSA private key"), "{m}");
    assert!(!m.contains("SECRET-KEY-TEXT"), "{m}");
    let m = client_side(
        c.push(&dest(json!({"credentials": json!({"client_email": "a@b", "private_key": "k"}).to_string()})), &secret("s", "v"))
            .await,
    );
    assert!(m.contains("no project"), "{m}");
    let sa = json!({"client_email": "a@b", "private_key": "k", "project_id": "p/../q"}).to_string();
    let m = client_side(
        c.push(&dest(json!({"credentials": sa})), &secret("s", "v"))
            .await,
    );
    assert!(m.contains("not a valid Google Cloud project ID"), "{m}");
}

#[tokio::test]
async fn strict_networking_refuses_the_token_endpoint_and_the_api() {
    let c = connector();
    let sa = json!({"client_email": "a@b", "private_key": "k", "project_id": "p",
                    "token_uri": "https://127.0.0.1:8080/token"})
    .to_string();
    let m = client_side(
        c.push(&dest(json!({"credentials": sa})), &secret("s", "v"))
            .await,
    );
    assert!(m.contains("egress refused"), "{m}");
}

#[test]
fn version_bodies_carry_base64_and_crc32c() {
    let body: Value = serde_json::from_str(&version_body("hello")).unwrap();
    assert_eq!(body["payload"]["data"], "aGVsbG8=");
    // CRC-32C("hello") = 0x9a71bb4c
    assert_eq!(body["payload"]["dataCrc32c"], "2591144780");
    let body: Value = serde_json::from_str(&version_body("{\"a\":\"é\"}")).unwrap();
    assert_eq!(body["payload"]["data"], "eyJhIjoiw6kifQ==");
}

#[test]
fn tags_become_valid_labels() {
    assert_eq!(label_key("hashicorp:vault"), "hashicorp-vault");
    assert_eq!(label_key("Team Name"), "team-name");
    assert_eq!(label_key("env_1"), "env_1");
    assert_eq!(label_key("1st"), "tag-1st");
    assert_eq!(label_key("_x"), "tag-_x");
    assert_eq!(label_key(""), "tag-");
    assert_eq!(label_key(&"k".repeat(100)).len(), 63);
    assert_eq!(label_value("Prod/EU"), "prod-eu");
    assert_eq!(label_value(""), "");
    assert_eq!(label_value("Ünïcode"), "-n-code");
    let tags = vec![
        ("hashicorp:vault".to_string(), String::new()),
        ("Env".to_string(), "Prod".to_string()),
    ];
    assert_eq!(
        labels(&tags).unwrap(),
        BTreeMap::from([
            ("env".to_string(), "prod".to_string()),
            ("hashicorp-vault".to_string(), String::new())
        ])
    );
    let clash = vec![
        ("a:b".to_string(), "1".to_string()),
        ("A-B".to_string(), "2".to_string()),
    ];
    assert!(matches!(labels(&clash), Err(SyncError::ClientSide(m)) if m.contains("both become")));
    let many: Vec<_> = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
    assert!(labels(&many).is_err());
}

#[test]
fn replication_policies() {
    assert_eq!(replication(&json!({})).unwrap(), json!({"automatic": {}}));
    assert_eq!(
        replication(&json!({"kms_key_id": "projects/p/locations/global/keyRings/r/cryptoKeys/k"}))
            .unwrap(),
        json!({"automatic": {"customerManagedEncryption": {"kmsKeyName": "projects/p/locations/global/keyRings/r/cryptoKeys/k"}}})
    );
    assert_eq!(
        replication(&json!({"global_kms_key": "g"})).unwrap(),
        json!({"automatic": {"customerManagedEncryption": {"kmsKeyName": "g"}}})
    );
    assert_eq!(
        replication(&json!({"replica_regions": {"us-east1": "k1", "europe-west1": "k2"}})).unwrap(),
        json!({"userManaged": {"replicas": [
            {"location": "europe-west1", "customerManagedEncryption": {"kmsKeyName": "k2"}},
            {"location": "us-east1", "customerManagedEncryption": {"kmsKeyName": "k1"}},
        ]}})
    );
    assert_eq!(
        replication(&json!({"replica_regions": {"us-east1": ""}})).unwrap(),
        json!({"userManaged": {"replicas": [{"location": "us-east1"}]}})
    );
    assert_eq!(
        replication(&json!({"replication_locations": ["us-east1", "europe-west1"], "locational_kms_keys": {"us-east1": "k1"}}))
            .unwrap(),
        json!({"userManaged": {"replicas": [
            {"location": "europe-west1"},
            {"location": "us-east1", "customerManagedEncryption": {"kmsKeyName": "k1"}},
        ]}})
    );
    assert_eq!(
        replication(&json!({"replication_locations": "us-east1, us-west1"})).unwrap(),
        json!({"userManaged": {"replicas": [{"location": "us-east1"}, {"location": "us-west1"}]}})
    );
    assert!(replication(&json!({"replica_regions": ["x"]})).is_err());
}

#[test]
fn google_errors_map_to_sync_errors() {
    let h = HeaderMap::new();
    let body = |code: u16, status: &str| {
        json!({"error": {"code": code, "message": "m", "status": status}}).to_string()
    };
    assert!(
        matches!(api_error(401, &h, &body(401, "UNAUTHENTICATED")), SyncError::ClientSide(m) if m.contains("UNAUTHENTICATED m"))
    );
    assert!(
        matches!(api_error(403, &h, &body(403, "PERMISSION_DENIED")), SyncError::ClientSide(m) if m.contains("Secret Manager Admin"))
    );
    assert!(matches!(
        api_error(400, &h, &body(400, "INVALID_ARGUMENT")),
        SyncError::ClientSide(_)
    ));
    assert!(matches!(
        api_error(503, &h, &body(503, "UNAVAILABLE")),
        SyncError::ExternalService {
            retry_after: None,
            ..
        }
    ));
    let mut with_header = HeaderMap::new();
    with_header.insert("retry-after", HeaderValue::from_static("7"));
    match api_error(429, &with_header, &body(429, "RESOURCE_EXHAUSTED")) {
        SyncError::ExternalService {
            message,
            retry_after,
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(
                message.contains("429") && message.contains("RESOURCE_EXHAUSTED"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let retry_info =
        json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"}]}})
        .to_string();
    assert!(matches!(api_error(429, &h, &retry_info),
        SyncError::ExternalService { retry_after: Some(d), .. } if d == Duration::from_millis(2500)));
    // Not Google's shape: the shared mapping of the raw body.
    assert!(matches!(
        api_error(502, &h, "<html>bad gateway</html>"),
        SyncError::ExternalService { .. }
    ));
}

#[test]
fn token_endpoint_errors() {
    let h = HeaderMap::new();
    let bad = json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        .to_string();
    assert!(matches!(token_error(400, &h, &bad),
        SyncError::ClientSide(m) if m.contains("Google rejected the service account credentials") && m.contains("Invalid JWT Signature.")));
    assert!(matches!(
        token_error(503, &h, "unavailable"),
        SyncError::ExternalService { .. }
    ));
    assert!(
        matches!(token_error(400, &h, "{\"error\":\"invalid_request\"}"), SyncError::ClientSide(m) if m.contains("invalid_request"))
    );
}

#[test]
fn assertions_are_rs256_with_the_expected_claims() {
    // The throwaway test key committed in the GCP fake.
    let fake = include_str!("../../../../tests/src/fake/gcp.rs");
    let start = fake.find("-----BEGIN PRIVATE KEY-----").unwrap();
    let end = fake[start..].find("-----END PRIVATE KEY-----").unwrap()
        + start
        + "-----END PRIVATE KEY-----".len();
    let pem = &fake[start..end];
    let sa = ServiceAccount {
        kind: "service_account".into(),
        client_email: "sync@p.iam.gserviceaccount.com".into(),
        private_key: pem.into(),
        private_key_id: "kid-1".into(),
        token_uri: "http://127.0.0.1:1/token".into(),
        project_id: "p".into(),
    };
    let jwt = sign_assertion(&sa).unwrap();
    let header = jsonwebtoken::decode_header(jwt.as_str()).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some("kid-1"));
    let payload = jwt.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], "sync@p.iam.gserviceaccount.com");
    assert_eq!(claims["aud"], "http://127.0.0.1:1/token");
    assert_eq!(claims["scope"], SCOPE);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
}

#[test]
fn protobuf_durations() {
    assert_eq!(proto_duration("7s"), Some(Duration::from_secs(7)));
    assert_eq!(proto_duration("0.5s"), Some(Duration::from_millis(500)));
    assert_eq!(proto_duration("7"), None);
    assert_eq!(proto_duration("-1s"), None);
}

#[test]
fn a_token_lifetime_beyond_the_clock_is_capped_not_a_panic() {
    use std::time::{Duration, Instant};

    use super::client::refresh_at;
    use crate::connectors::http::MAX_TOKEN_LIFETIME;
    let now = Instant::now();
    assert_eq!(
        refresh_at(now, Some(3600)),
        Some(now + Duration::from_secs(3540))
    );
    assert_eq!(refresh_at(now, None), Some(now + Duration::from_secs(3540)));
    assert_eq!(refresh_at(now, Some(100)), None);
    assert_eq!(
        refresh_at(now, Some(u64::MAX)),
        Some(now + MAX_TOKEN_LIFETIME - Duration::from_secs(60))
    );
}
