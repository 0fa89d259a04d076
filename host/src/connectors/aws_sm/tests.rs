use super::*;
use serde_json::json;

#[test]
fn service_errors_map_by_code_and_status() {
    let h = HeaderMap::new();
    let retryable = |status, code| {
        matches!(
            service_error(PROVIDER, "Op", status, Some(code), None, &h),
            SyncError::ExternalService { .. }
        )
    };
    assert!(retryable(400, "ThrottlingException"));
    assert!(retryable(500, "InternalServiceError"));
    assert!(retryable(503, "Whatever"));
    assert!(retryable(429, "Whatever"));
    assert!(!retryable(400, "UnrecognizedClientException"));
    assert!(!retryable(400, "InvalidClientTokenId"));
    assert!(!retryable(400, "AccessDeniedException"));
    assert!(!retryable(400, "LimitExceededException"));
    let e = service_error(
        PROVIDER,
        "PutSecretValue",
        400,
        Some("InvalidRequestException"),
        Some(
            "You can't create this secret because a secret with this name is already scheduled for deletion.",
        ),
        &h,
    );
    assert!(e.to_string().contains("RestoreSecret"), "{e}");
}

fn config(value: serde_json::Value) -> Result<Config, SyncError> {
    let d = crate::connectors::Destination::parse("aws-sm".into(), "d".into(), value.to_string());
    Dest::<Config>::parse(&d.unwrap()).map(|d| d.config)
}

#[test]
fn the_config_is_read() {
    let c = config(json!({
        "access_key_id": "AKIA", "secret_access_key": "s", "region": " eu-west-1 ",
        "role_arn": "", "kms_key_id": null, "replica_regions": {"us-west-2": ""},
        "identity_token_ttl": 3600, "disable_strict_networking": true,
    }))
    .unwrap();
    assert_eq!(c.region.as_deref(), Some("eu-west-1"));
    assert!(c.role_arn.is_none() && c.kms_key_id.is_none());
    assert!(c.identity_token_audience.is_none());
    assert!(c.keys().unwrap().is_some());
    assert_eq!(c.replicas().unwrap().len(), 1);
    let c = config(json!({})).unwrap();
    assert!(c.keys().unwrap().is_none() && c.replicas().is_none());
    // The key pair goes together.
    let c = config(json!({"access_key_id": "AKIA"})).unwrap();
    assert!(matches!(c.keys(), Err(SyncError::ClientSide(m)) if m.contains("together")));
    // The credentials never show in Debug output.
    let shown = format!(
        "{:?}",
        config(json!({"secret_access_key": "aws-SECRET"})).unwrap()
    );
    assert!(!shown.contains("aws-SECRET"), "{shown}");
    for bad in [
        json!({"region": 5}),
        json!({"replica_regions": ["eu-west-1"]}),
        json!({"replica_regions": {"eu-west-1": 5}}),
        json!({"regions": "eu-west-1"}),
    ] {
        assert!(
            matches!(config(bad.clone()), Err(SyncError::ClientSide(_))),
            "{bad}"
        );
    }
}
