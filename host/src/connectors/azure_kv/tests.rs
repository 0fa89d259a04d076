use std::time::Instant;

use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use super::client::{renew_at, seconds, token_error};
use super::*;

fn dest(config: Value) -> Dest<Config> {
    let d =
        crate::connectors::Destination::parse("azure-kv".into(), "d".into(), config.to_string());
    Dest::parse(&d.unwrap()).unwrap()
}

/// A connector whose tokens come from `authority`.
fn with_authority(authority: &str) -> AzureKeyVault {
    AzureKeyVault::new(&ConnectorEnv {
        azure_authority_host: Some(authority.into()),
        ..ConnectorEnv::default()
    })
}

fn secret(name: &str, value: &str) -> ExternalSecret {
    ExternalSecret {
        name: name.into(),
        value: Zeroizing::new(value.into()),
        tags: vec![("hashicorp:vault".into(), String::new())],
    }
}

fn config() -> Value {
    json!({
        "key_vault_uri": "https://myvault.vault.azure.net/",
        "tenant_id": "00000000-0000-0000-0000-000000000001",
        "client_id": "cid",
        "client_secret": "TOP-SECRET-VALUE",
        "cloud": "AzurePublicCloud",
        "identity_token_ttl": 3600,
    })
}

fn client_side(e: SyncError) -> String {
    match e {
        SyncError::ClientSide(m) => m,
        other => panic!("expected a client-side error, got {other:?}"),
    }
}

#[test]
fn names_follow_key_vault_rules() {
    for ok in ["a", "vault-kv-1234-my-secret", "ABC-123", &"x".repeat(127)] {
        check_name(ok).unwrap();
    }
    for bad in ["", "a_b", "a/b", "a.b", "é", " a", &"x".repeat(128)] {
        let m = client_side(check_name(bad).unwrap_err());
        assert!(m.contains("not a valid Azure Key Vault secret name"), "{m}");
    }
}

#[test]
fn values_are_limited_to_25_kb() {
    check_value("n", &"v".repeat(MAX_VALUE_BYTES)).unwrap();
    let m = client_side(check_value("n", &"v".repeat(MAX_VALUE_BYTES + 1)).unwrap_err());
    assert!(m.contains("25600 bytes"), "{m}");
    // Bytes, not characters.
    assert!(check_value("n", &"é".repeat(MAX_VALUE_BYTES / 2 + 1)).is_err());
}

#[test]
fn tags_are_limited() {
    let mut tags: Vec<(String, String)> = (0..15).map(|i| (format!("k{i}"), "v".into())).collect();
    assert_eq!(check_tags(&tags).unwrap().len(), 15);
    // Duplicates collapse, the last wins.
    tags.push(("k0".into(), "w".into()));
    assert_eq!(check_tags(&tags).unwrap()["k0"], "w");
    tags.push(("k15".into(), "v".into()));
    assert!(client_side(check_tags(&tags).unwrap_err()).contains("at most 15"));
    assert!(check_tags(&[("k".repeat(513), String::new())]).is_err());
    assert!(check_tags(&[("k".into(), "v".repeat(513))]).is_err());
    assert!(check_tags(&[("hashicorp:vault".into(), String::new())]).is_ok());
}

#[test]
fn clouds_pick_authority_and_scope() {
    assert_eq!(Cloud::parse(None).unwrap(), Cloud::Public);
    assert_eq!(Cloud::parse(Some("")).unwrap(), Cloud::Public);
    let gov = Cloud::parse(Some("AzureUSGovernmentCloud")).unwrap();
    assert_eq!(gov.authority_host(), "https://login.microsoftonline.us");
    assert_eq!(
        gov.vault_scope(),
        "https://vault.usgovcloudapi.net/.default"
    );
    let cn = Cloud::parse(Some("AzureChinaCloud")).unwrap();
    assert_eq!(cn.authority_host(), "https://login.chinacloudapi.cn");
    assert_eq!(
        Cloud::Public.authority_host(),
        "https://login.microsoftonline.com"
    );
    assert_eq!(
        Cloud::Public.vault_scope(),
        "https://vault.azure.net/.default"
    );
    assert!(Cloud::parse(Some("AzureMoonCloud")).is_err());
    let c = with_authority("http://127.0.0.1:9/");
    assert_eq!(c.tokens.authority(Cloud::China), "http://127.0.0.1:9");
}

#[test]
fn credentials_are_checked() {
    let d = dest(config());
    let creds = d.config.credentials().unwrap();
    assert_eq!(creds.vault, "https://myvault.vault.azure.net");
    assert_eq!(creds.cloud, Cloud::Public);

    let mut mi = config();
    mi["client_secret"] = json!("");
    let m = client_side(dest(mi).config.credentials().err().unwrap());
    assert!(m.contains("managed identity is not supported"), "{m}");

    let mut wif = config();
    wif.as_object_mut().unwrap().remove("client_secret");
    wif["identity_token_audience"] = json!("api://AzureADTokenExchange");
    let m = client_side(dest(wif).config.credentials().err().unwrap());
    assert!(
        m.contains("workload identity federation is not supported"),
        "{m}"
    );

    let mut bad = config();
    bad["tenant_id"] = json!("../evil");
    assert!(dest(bad).config.credentials().is_err());
    let mut bad = config();
    bad["key_vault_uri"] = json!("ftp://x");
    assert!(dest(bad).config.credentials().is_err());
    let mut bad = config();
    bad["cloud"] = json!("Mars");
    assert!(dest(bad).config.credentials().is_err());
}

#[test]
fn token_errors_map_to_sync_errors() {
    let h = HeaderMap::new();
    let body = json!({
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x\r\nCorrelation ID: y",
    })
    .to_string();
    let m = client_side(token_error(401, &h, &body));
    assert!(m.contains("Azure rejected the client credentials"), "{m}");
    assert!(
        m.contains("AADSTS7000215") && !m.contains("Trace ID"),
        "{m}"
    );
    let m = client_side(token_error(400, &h, r#"{"error":"unauthorized_client"}"#));
    assert!(m.contains("Azure rejected the client credentials"), "{m}");
    let m = client_side(token_error(
        400,
        &h,
        r#"{"error":"invalid_scope","error_description":"AADSTS70011"}"#,
    ));
    assert!(m.contains("400") && m.contains("invalid_scope"), "{m}");
    let mut throttled = HeaderMap::new();
    throttled.insert("retry-after", HeaderValue::from_static("7"));
    match token_error(429, &throttled, "") {
        SyncError::ExternalService { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        token_error(503, &h, "<html>"),
        SyncError::ExternalService { .. }
    ));
}

#[test]
fn key_vault_error_codes_are_read() {
    let body = json!({"error": {"code": "Conflict", "message": "Secret x is currently in a deleted but recoverable state",
                                "innererror": {"code": "ObjectIsDeletedButRecoverable"}}})
    .to_string();
    let e = ErrorBody::parse(&body);
    assert_eq!(e.codes(), vec!["Conflict", "ObjectIsDeletedButRecoverable"]);
    assert!(e.has("ObjectIsDeletedButRecoverable"));
    assert!(
        ErrorBody::parse(r#"{"error":{"code":"SecretNotFound","message":"m"}}"#)
            .has("SecretNotFound")
    );
    assert!(ErrorBody::parse("<html>").codes().is_empty());
}

#[test]
fn tokens_are_renewed_before_they_expire() {
    let now = Instant::now();
    assert_eq!(renew_at(now, 3599), Some(now + Duration::from_secs(3299)));
    assert_eq!(renew_at(now, 60), Some(now + Duration::from_secs(30)));
    assert_eq!(renew_at(now, 1), None);
    assert_eq!(renew_at(now, 0), None);
    // A lifetime at the end of time is capped, not an overflow of the clock.
    assert_eq!(
        renew_at(now, u64::MAX),
        Some(now + crate::connectors::http::MAX_TOKEN_LIFETIME - TOKEN_REFRESH_MARGIN)
    );
    assert_eq!(seconds(&json!("3599")), Some(3599));
    assert_eq!(seconds(&json!(3599)), Some(3599));
    assert_eq!(seconds(&json!(null)), None);
}

#[test]
fn the_request_body_has_value_and_tags() {
    let s = secret("n", "v\"1");
    let body = serde_json::to_value(SetSecret {
        value: &s.value,
        tags: check_tags(&s.tags).unwrap(),
    })
    .unwrap();
    assert_eq!(
        body,
        json!({"value": "v\"1", "tags": {"hashicorp:vault": ""}})
    );
}

#[tokio::test]
async fn checks_come_before_any_call() {
    // An unroutable vault: a call would fail differently.
    let c = AzureKeyVault::new(&ConnectorEnv::default());
    let d = dest(config());
    let m = client_side(c.push(&d, &secret("a_b", "v")).await.unwrap_err());
    assert!(m.contains("not a valid"), "{m}");
    let m = client_side(
        c.push(&d, &secret("ok", &"v".repeat(MAX_VALUE_BYTES + 1)))
            .await
            .unwrap_err(),
    );
    assert!(m.contains("25 KB"), "{m}");
    // Nothing by that name can exist.
    c.delete(&d, "a_b").await.unwrap();
    let mut mi = config();
    mi["client_secret"] = json!("");
    let m = client_side(c.push(&dest(mi), &secret("ok", "v")).await.unwrap_err());
    assert!(m.contains("managed identity"), "{m}");
}

#[tokio::test]
async fn strict_networking_refuses_a_loopback_vault_and_authority() {
    let c = with_authority("http://127.0.0.1:9");
    let mut cfg = config();
    cfg["key_vault_uri"] = json!("https://127.0.0.1:9");
    let m = client_side(
        c.push(&dest(cfg.clone()), &secret("ok", "v"))
            .await
            .unwrap_err(),
    );
    assert!(m.contains("egress refused"), "{m}");
    assert!(!m.contains("TOP-SECRET-VALUE"), "{m}");
    // The vault allowed, the authority still refused (default ports only).
    cfg["key_vault_uri"] = json!("https://8.8.8.8");
    let m = client_side(c.delete(&dest(cfg), "ok").await.unwrap_err());
    assert!(m.contains("egress refused") && m.contains("port 9"), "{m}");
}
