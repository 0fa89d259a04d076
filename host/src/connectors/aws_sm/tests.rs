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

#[test]
fn settings_read_the_config() {
    let s = Settings::from_config(&json!({
        "access_key_id": "AKIA", "secret_access_key": "s", "region": " eu-west-1 ",
        "role_arn": "", "kms_key_id": null, "replica_regions": {"us-west-2": ""},
    }))
    .unwrap();
    assert_eq!(s.region.as_deref(), Some("eu-west-1"));
    assert!(s.role_arn.is_none() && s.kms_key_id.is_none() && !s.wif);
    assert!(s.keys.is_some());
    assert_eq!(s.replicas().unwrap().len(), 1);
    let s = Settings::from_config(&json!({})).unwrap();
    assert!(s.keys.is_none() && s.replicas().is_none());
}
