use super::*;

fn dest(kind: &str, name: &str) -> Destination {
    Destination::parse(kind.into(), name.into(), r#"{"token":"ghp_SECRET"}"#.into()).unwrap()
}

fn secret(name: &str, value: &str) -> ExternalSecret {
    ExternalSecret {
        name: name.into(),
        value: Zeroizing::new(value.into()),
        tags: vec![("hashicorp:vault".into(), "".into())],
    }
}

/// A connector whose calls never finish in time.
struct Sleepy;

#[async_trait]
impl DestinationConnector for Sleepy {
    fn kind(&self) -> &'static str {
        "gh"
    }
    async fn push(&self, _: &Destination, _: &ExternalSecret) -> Result<(), SyncError> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(())
    }
    async fn delete(&self, _: &Destination, _: &str) -> Result<(), SyncError> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(())
    }
}

#[tokio::test]
async fn in_mem_push_overwrite_delete_inspect() {
    let c = Connectors::new();
    let d = dest("in-mem", "demo");
    assert!(c.inspect(&d).await.unwrap().is_empty());
    c.push(&d, &secret("b", "v1")).await.unwrap();
    c.push(&d, &secret("a", "x")).await.unwrap();
    c.push(&d, &secret("b", "v2")).await.unwrap();
    let objects = c.inspect(&d).await.unwrap();
    assert_eq!(objects, vec![secret("a", "x"), secret("b", "v2")]);
    // Destinations do not share objects.
    assert!(
        c.inspect(&dest("in-mem", "other"))
            .await
            .unwrap()
            .is_empty()
    );
    c.delete(&d, "a").await.unwrap();
    c.delete(&d, "never-there").await.unwrap();
    assert_eq!(c.inspect(&d).await.unwrap(), vec![secret("b", "v2")]);
    assert_eq!(c.calls("in-mem", Op::Push, Outcome::Ok), 3);
    assert_eq!(c.calls("in-mem", Op::Delete, Outcome::Ok), 2);
    assert_eq!(c.calls("in-mem", Op::Inspect, Outcome::Ok), 4);
}

#[tokio::test]
async fn a_slow_call_times_out_as_an_external_service_error() {
    let c = Connectors::from_list(vec![Arc::new(Sleepy)]).with_timeout(Duration::from_millis(50));
    let d = dest("gh", "repo");
    let started = Instant::now();
    let err = c.push(&d, &secret("A", "v")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        err,
        SyncError::ExternalService {
            message: "timed out after 50ms".into(),
            retry_after: None
        }
    );
    let err = c.delete(&d, "A").await.unwrap_err();
    assert_eq!(err.outcome(), Outcome::ExternalService);
    assert_eq!(c.calls("gh", Op::Push, Outcome::ExternalService), 1);
    assert_eq!(c.calls("gh", Op::Delete, Outcome::ExternalService), 1);
    assert_eq!(c.calls("gh", Op::Push, Outcome::Ok), 0);
    // The default trait method: this type cannot list its objects.
    assert_eq!(
        c.inspect(&d).await.unwrap_err().outcome(),
        Outcome::ClientSide
    );
    assert_eq!(c.calls("gh", Op::Inspect, Outcome::ClientSide), 1);
}

#[test]
fn the_default_timeout_reads_as_ten_seconds() {
    assert_eq!(Connectors::new().timeout, Duration::from_secs(10));
    assert_eq!(human(DEFAULT_TIMEOUT), "10s");
}

#[tokio::test]
async fn an_unregistered_type_is_a_client_side_error() {
    let c = Connectors::new();
    let err = c
        .push(&dest("nope\n", "d"), &secret("A", "v"))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), Outcome::ClientSide);
    assert!(!err.to_string().contains('\n'));
    let err = c.delete(&dest("nope", "d"), "A").await.unwrap_err();
    assert_eq!(
        err,
        SyncError::ClientSide(
            "destination type nope has no connector in this build yet".to_string()
        )
    );
    assert_eq!(c.calls(UNREGISTERED, Op::Push, Outcome::ClientSide), 1);
    assert_eq!(c.calls(UNREGISTERED, Op::Delete, Outcome::ClientSide), 1);
    assert_eq!(c.calls("nope", Op::Delete, Outcome::ClientSide), 0);
    let metrics = c.metrics();
    assert_eq!(metrics.len(), 2);
    assert_eq!(metrics[0].kind, UNREGISTERED);
}

#[test]
fn debug_output_masks_credentials_and_values() {
    let d = dest("gh", "repo");
    let shown = format!("{d:?}");
    assert!(!shown.contains("ghp_SECRET"), "{shown}");
    assert!(shown.contains("repo"), "{shown}");
    let s = secret("DB_PASSWORD", "hunter2");
    let shown = format!("{s:?} {s:#?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("DB_PASSWORD"), "{shown}");
}

#[test]
fn bad_config_is_internal_and_never_quoted() {
    for config in [r#"{"token":"ghp_SECRET""#, r#""ghp_SECRET""#, "ghp_SECRET"] {
        let err = Destination::parse("gh".into(), "d".into(), config.into()).unwrap_err();
        assert_eq!(err.outcome(), Outcome::Internal);
        assert!(!err.to_string().contains("ghp_SECRET"), "{err}");
    }
    let d = Destination::parse("in-mem".into(), "d".into(), String::new()).unwrap();
    assert_eq!(d.config, serde_json::json!({}));
}

#[test]
fn dropping_a_config_wipes_its_strings() {
    let mut v = serde_json::json!({"a": "secret", "b": ["x", {"c": "y"}], "n": 1});
    zeroize_json(&mut v);
    assert_eq!(
        v,
        serde_json::json!({"a": "", "b": ["", {"c": ""}], "n": 1})
    );
}

#[tokio::test]
async fn plain_http_destination_urls_are_refused_under_strict_networking() {
    // Loopback port 9 is allowed, so nothing but the scheme can refuse these;
    // the operator's own endpoint override may be plain http.
    let env = ConnectorEnv {
        azure_authority_host: Some("http://127.0.0.1:9".into()),
        ..ConnectorEnv::default()
    };
    let c = Connectors::with_env(env, DEFAULT_TIMEOUT);
    let allowed =
        serde_json::json!({"allowed_ipv4_addresses": ["127.0.0.0/8"], "allowed_ports": [9]});
    let with = |mut config: serde_json::Value| {
        for (k, v) in allowed.as_object().into_iter().flatten() {
            config[k] = v.clone();
        }
        config
    };
    let key = serde_json::json!({"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com",
                                 "private_key": "not a key", "project_id": "p",
                                 "token_uri": "http://127.0.0.1:9/token"});
    for (kind, config, field) in [
        (
            "gh",
            with(
                serde_json::json!({"access_token": "t", "repository_owner": "a",
                                    "repository_name": "b", "enterprise_url": "http://127.0.0.1:9"}),
            ),
            "enterprise_url",
        ),
        (
            "azure-kv",
            with(
                serde_json::json!({"key_vault_uri": "http://127.0.0.1:9", "client_id": "c",
                                    "client_secret": "s", "tenant_id": "t"}),
            ),
            "key_vault_uri",
        ),
        (
            "gcp-sm",
            with(serde_json::json!({"credentials": key.to_string()})),
            "token_uri",
        ),
    ] {
        let d = Destination::parse(kind.into(), "d".into(), config.to_string()).unwrap();
        match c.push(&d, &secret("A", "v")).await {
            Err(SyncError::ClientSide(m)) => {
                assert!(m.contains(field) && m.contains("https"), "{kind}: {m}")
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
}
