//! The `aws-sm` connector against the in-process AWS fake (`fake::aws`),
//! through the registry: the calls each operation makes (put, then create on
//! `ResourceNotFound`; create first for a new object; forced deletes and
//! replicas), the error classes (throttling with its hint, outages, refusals,
//! egress, names and sizes before any call), assumed roles and the client
//! cache. The endpoint comes from a `ConnectorEnv`, as `AWS_ENDPOINT_URL` does
//! in the server. The conformance suite runs the same connector against moto.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::sync::Arc;
use std::time::Duration;

use kvsync::connectors::{
    ConnectorEnv, Connectors, DEFAULT_TIMEOUT, Destination, ExternalSecret, SyncError,
};
use kvsync_tests::fake::aws::{
    CREATE, DELETE, DESCRIBE, PUT, REMOVE_REGIONS, STS, SecretsManager, aws_error,
};
use kvsync_tests::fake::{Backend, FakeResponse, FakeServer};
use serde_json::{Value, json};

/// `SecretString`: at most 65,536 bytes.
const MAX_VALUE: usize = 65_536;

/// A registry whose `aws-sm` connector sends every AWS call to `endpoint`.
fn connectors_at(endpoint: &str) -> Connectors {
    let env = ConnectorEnv {
        aws_endpoint_url: Some(endpoint.to_string()),
        ..ConnectorEnv::default()
    };
    Connectors::with_env(env, DEFAULT_TIMEOUT)
}

/// A fresh fake (stopped when the returned server is dropped) and a registry
/// pointed at it.
fn setup() -> (Arc<SecretsManager>, Connectors, FakeServer) {
    let fake = Arc::new(SecretsManager::new());
    let server = FakeServer::start(Backend::Fake(fake.clone()), 0).unwrap();
    let c = connectors_at(&server.url());
    (fake, c, server)
}

fn dest(extra: Value) -> Destination {
    let mut config = json!({
        "access_key_id": "AKIATESTKEY",
        "secret_access_key": "aws-SECRET-key",
        "region": "us-east-1",
        "disable_strict_networking": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    Destination::parse("aws-sm".into(), "d".into(), config.to_string()).unwrap()
}

fn secret(name: &str, value: &str) -> ExternalSecret {
    ExternalSecret {
        name: name.into(),
        value: value.to_string().into(),
        tags: vec![
            ("hashicorp:vault".into(), "".into()),
            ("team".into(), "payments".into()),
        ],
    }
}

// ---- push ----------------------------------------------------------------

#[tokio::test]
async fn a_new_secret_is_put_then_created_with_tags_kms_and_replicas() {
    let (stub, c, _server) = setup();
    let d = dest(json!({
        "kms_key_id": "arn:aws:kms:us-east-1:111122223333:key/abc",
        "replica_regions": {"eu-west-1": "arn:aws:kms:eu-west-1:111122223333:key/def", "us-west-2": ""},
    }));
    c.push(&d, &secret("vault/kv_1/app", "{\"a\":\"1\"}"))
        .await
        .unwrap();
    assert_eq!(stub.targets(), vec![PUT, CREATE]);
    let create = &stub.seen()[1].body;
    assert_eq!(create["Name"], "vault/kv_1/app");
    assert_eq!(create["SecretString"], "{\"a\":\"1\"}");
    assert_eq!(
        create["Tags"],
        json!([{"Key": "hashicorp:vault", "Value": ""}, {"Key": "team", "Value": "payments"}])
    );
    assert_eq!(
        create["KmsKeyId"],
        "arn:aws:kms:us-east-1:111122223333:key/abc"
    );
    let mut replicas = create["AddReplicaRegions"].as_array().unwrap().clone();
    replicas.sort_by_key(|r| r["Region"].as_str().unwrap().to_string());
    assert_eq!(
        replicas,
        vec![
            json!({"Region": "eu-west-1", "KmsKeyId": "arn:aws:kms:eu-west-1:111122223333:key/def"}),
            json!({"Region": "us-west-2"}),
        ]
    );
    // The SDK fills the idempotency token in.
    assert!(
        create["ClientRequestToken"]
            .as_str()
            .is_some_and(|t| t.len() >= 32)
    );

    // An update: one PutSecretValue, nothing else.
    c.push(&d, &secret("vault/kv_1/app", "v2")).await.unwrap();
    assert_eq!(stub.targets(), vec![PUT, CREATE, PUT]);
    let put = &stub.seen()[2].body;
    assert_eq!(put["SecretId"], "vault/kv_1/app");
    assert_eq!(put["SecretString"], "v2");
    assert!(put.get("Tags").is_none());
    assert_eq!(stub.secret("vault/kv_1/app").unwrap(), "v2");
}

#[tokio::test]
async fn a_new_object_is_created_in_one_call_and_an_existing_one_still_overwritten() {
    let (stub, c, _server) = setup();
    c.push_new(&dest(json!({})), &secret("fresh", "v1"))
        .await
        .unwrap();
    assert_eq!(stub.targets(), vec![CREATE]);
    assert_eq!(stub.seen()[0].body["Tags"][0]["Key"], "hashicorp:vault");
    // Written by someone else already: CreateSecret refuses, PutSecretValue wins.
    c.push_new(&dest(json!({})), &secret("fresh", "v2"))
        .await
        .unwrap();
    assert_eq!(stub.targets(), vec![CREATE, CREATE, PUT]);
    assert_eq!(stub.secret("fresh").unwrap(), "v2");
}

#[tokio::test]
async fn a_create_race_ends_in_a_put() {
    let (stub, c, _server) = setup();
    stub.insert_secret("s", "old");
    stub.script(PUT, aws_error(400, "ResourceNotFoundException", "not yet"));
    c.push(&dest(json!({})), &secret("s", "new")).await.unwrap();
    assert_eq!(stub.targets(), vec![PUT, CREATE, PUT]);
    assert_eq!(stub.secret("s").unwrap(), "new");
}

#[tokio::test]
async fn throttling_is_retryable_with_the_retry_after_header_and_not_retried_by_the_sdk() {
    let (stub, c, _server) = setup();
    stub.script(
        "*",
        aws_error(400, "ThrottlingException", "Rate exceeded").with_header("retry-after", "7"),
    );
    let err = c
        .push(&dest(json!({})), &secret("s", "v"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SyncError::ExternalService {
            message:
                "AWS Secrets Manager PutSecretValue failed: ThrottlingException: Rate exceeded"
                    .into(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
    assert_eq!(stub.targets().len(), 1, "the SDK must not retry");
    // Without the header: no hint (AWS sends none).
    stub.script("*", aws_error(400, "ThrottlingException", "Rate exceeded"));
    match c
        .push(&dest(json!({})), &secret("s", "v"))
        .await
        .unwrap_err()
    {
        SyncError::ExternalService { retry_after, .. } => assert_eq!(retry_after, None),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn server_errors_are_retryable_and_not_retried_by_the_sdk() {
    let (stub, c, _server) = setup();
    stub.script("*", aws_error(500, "InternalServiceError", "oops"));
    let err = c
        .push(&dest(json!({})), &secret("s", "v"))
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::ExternalService { .. }), "{err:?}");
    stub.script("*", FakeResponse::empty(503));
    let err = c
        .push(&dest(json!({})), &secret("s", "v"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SyncError::ExternalService {
            message: "AWS Secrets Manager PutSecretValue failed: HTTP 503".into(),
            retry_after: None
        }
    );
    assert_eq!(stub.targets().len(), 2);
}

#[tokio::test]
async fn refusals_are_client_side_and_never_show_credentials_or_values() {
    let (stub, c, _server) = setup();
    for (code, msg) in [
        (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        (
            "AccessDeniedException",
            "User is not authorized to perform secretsmanager:PutSecretValue",
        ),
        ("InvalidParameterException", "bad"),
        ("LimitExceededException", "too many"),
        (
            "InvalidRequestException",
            "You can't perform this operation on the secret because it was marked for deletion.",
        ),
    ] {
        stub.script("*", aws_error(400, code, msg));
        let err = c
            .push(&dest(json!({})), &secret("s", "hunter2-VALUE"))
            .await
            .unwrap_err();
        let SyncError::ClientSide(text) = &err else {
            panic!("{code}: {err:?}")
        };
        assert!(text.contains(code), "{text}");
        for secret in ["hunter2-VALUE", "aws-SECRET-key", "AKIATESTKEY"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    assert_eq!(stub.targets().len(), 5);
    // An error the SDK cannot parse, with a 4xx status.
    stub.script(
        "*",
        FakeResponse {
            status: 403,
            headers: vec![],
            body: b"<Error><Code>InvalidClientTokenId</Code></Error>".to_vec(),
        },
    );
    let err = c
        .push(&dest(json!({})), &secret("s", "v"))
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::ClientSide(_)), "{err:?}");
}

#[tokio::test]
async fn names_values_and_tags_are_checked_before_any_call() {
    let (stub, c, _server) = setup();
    let d = dest(json!({}));
    for name in ["", "a b", "ä", "x:y", &"a".repeat(513)] {
        let err = c.push(&d, &secret(name, "v")).await.unwrap_err();
        assert!(matches!(err, SyncError::ClientSide(_)), "{name}: {err:?}");
    }
    for value in [String::new(), "x".repeat(MAX_VALUE + 1)] {
        let err = c.push(&d, &secret("ok", &value)).await.unwrap_err();
        assert!(matches!(err, SyncError::ClientSide(_)), "{err:?}");
    }
    let mut s = secret("ok", "v");
    s.tags.push(("aws:owner".into(), "x".into()));
    assert!(matches!(
        c.push(&d, &s).await,
        Err(SyncError::ClientSide(_))
    ));
    assert!(stub.targets().is_empty());
    // The limits themselves pass.
    c.push(
        &d,
        &secret(&"a/_+=.@-Z9".repeat(52)[..512], &"x".repeat(MAX_VALUE)),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn strict_networking_refuses_the_loopback_endpoint_before_connecting() {
    let (stub, c, server) = setup();
    let d = dest(json!({"disable_strict_networking": false}));
    let err = c.push(&d, &secret("s", "v")).await.unwrap_err();
    let SyncError::ClientSide(text) = &err else {
        panic!("{err:?}")
    };
    assert!(text.contains("egress refused"), "{text}");
    let err = c.delete(&d, "s").await.unwrap_err();
    assert!(err.to_string().contains("egress refused"), "{err}");
    assert!(stub.targets().is_empty());
    // Allowed explicitly: it connects.
    let d = dest(json!({
        "disable_strict_networking": false,
        "allowed_ipv4_addresses": ["127.0.0.1/32"],
        "allowed_ports": [server.addr.port()],
    }));
    c.push(&d, &secret("s", "v")).await.unwrap();
    assert_eq!(stub.targets(), vec![PUT, CREATE]);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retryable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = connectors_at(&format!("http://127.0.0.1:{port}"));
    let err = c
        .push(&dest(json!({})), &secret("s", "v"))
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::ExternalService { .. }), "{err:?}");
}

// ---- delete --------------------------------------------------------------

#[tokio::test]
async fn delete_forces_and_a_missing_secret_counts_as_deleted() {
    let (stub, c, _server) = setup();
    let d = dest(json!({}));
    stub.insert_secret("s", "v");
    c.delete(&d, "s").await.unwrap();
    c.delete(&d, "s").await.unwrap();
    // A name AWS cannot hold: nothing to delete, no call.
    c.delete(&d, "not valid").await.unwrap();
    assert_eq!(stub.targets(), vec![DELETE, DELETE]);
    assert_eq!(stub.seen()[0].body["SecretId"], "s");
    assert_eq!(stub.seen()[0].body["ForceDeleteWithoutRecovery"], true);
    assert_eq!(stub.secret_count(), 0);
    stub.script("*", aws_error(400, "AccessDeniedException", "no"));
    assert!(matches!(
        c.delete(&d, "s").await,
        Err(SyncError::ClientSide(_))
    ));
}

#[tokio::test]
async fn deleting_a_replicated_secret_removes_its_replicas_first() {
    let (stub, c, _server) = setup();
    let d = dest(json!({"replica_regions": {"eu-west-1": ""}}));
    c.push(&d, &secret("r", "v")).await.unwrap();
    c.delete(&d, "r").await.unwrap();
    assert_eq!(
        stub.targets(),
        vec![PUT, CREATE, DELETE, DESCRIBE, REMOVE_REGIONS, DELETE]
    );
    assert_eq!(
        stub.seen()[4].body["RemoveReplicaRegions"],
        json!(["eu-west-1"])
    );
    assert_eq!(stub.secret_count(), 0);
}

// ---- config, clients -----------------------------------------------------

#[tokio::test]
async fn config_errors_are_client_side() {
    let c = connectors_at("http://127.0.0.1:9");
    for extra in [
        json!({"secret_access_key": ""}),
        json!({"identity_token_audience": "aud"}),
        json!({"region": 5}),
        json!({"replica_regions": ["eu-west-1"]}),
    ] {
        let err = c
            .push(&dest(extra.clone()), &secret("s", "v"))
            .await
            .unwrap_err();
        assert!(matches!(err, SyncError::ClientSide(_)), "{extra}: {err:?}");
    }
}

#[tokio::test]
async fn clients_and_assumed_roles_are_cached_per_config() {
    let (stub, c, _server) = setup();
    let role = |external_id: &str| {
        dest(json!({
            "role_arn": "arn:aws:iam::111122223333:role/r",
            "external_id": external_id,
        }))
    };
    // Building a client assumes the role: one AssumeRole per config, however
    // many pushes use it.
    for i in 0..5 {
        c.push(&role("ext-1"), &secret("a", &format!("v{i}")))
            .await
            .unwrap();
    }
    let sts = |stub: &SecretsManager| stub.targets().iter().filter(|t| *t == STS).count();
    assert_eq!(sts(&stub), 1);
    c.push(&role("ext-2"), &secret("a", "w")).await.unwrap();
    assert_eq!(sts(&stub), 2);
    c.push(&role("ext-1"), &secret("a", "x")).await.unwrap();
    assert_eq!(sts(&stub), 2);
    assert_eq!(stub.targets().len(), 2 + 2 + 5 + 1);
}

#[tokio::test]
async fn an_assumed_role_signs_with_the_temporary_credentials() {
    let (stub, c, server) = setup();
    let d = dest(json!({
        "role_arn": "arn:aws:iam::111122223333:role/r",
        "external_id": "ext-1",
    }));
    c.push(&d, &secret("s", "v")).await.unwrap();
    c.push(&d, &secret("s", "v2")).await.unwrap();
    // One AssumeRole (the client is cached), then the calls signed with the
    // temporary credentials.
    assert_eq!(stub.targets(), vec![STS, PUT, CREATE, PUT]);
    let sts = &stub.seen()[0];
    for field in [
        "Action=AssumeRole",
        "RoleSessionName=vault-secrets-sync",
        "ExternalId=ext-1",
    ] {
        assert!(sts.form.contains(field), "{}", sts.form);
    }
    assert!(
        sts.authorization.contains("Credential=AKIATESTKEY/"),
        "{}",
        sts.authorization
    );
    for seen in &stub.seen()[1..] {
        assert!(
            seen.authorization.contains("Credential=ASIATEMP/"),
            "{}",
            seen.authorization
        );
    }
    // STS refusing the role is the destination's configuration (a new
    // registry: no cached client).
    let c = connectors_at(&server.url());
    stub.script(
        "sts",
        FakeResponse {
            status: 403,
            headers: vec![("content-type".into(), "text/xml".into())],
            body: b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole</Message></Error></ErrorResponse>".to_vec(),
        },
    );
    let err = c.push(&d, &secret("s", "v3")).await.unwrap_err();
    let SyncError::ClientSide(text) = &err else {
        panic!("{err:?}")
    };
    assert!(
        text.contains("AWS STS AssumeRole failed: AccessDenied"),
        "{text}"
    );
}
