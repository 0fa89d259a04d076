use super::*;
use serde_json::json;

// ---- an in-process AWS JSON 1.1 stub -----------------------------------

/// One request the stub received.
#[derive(Debug, Clone)]
struct Seen {
    /// `X-Amz-Target`, or `sts` for an STS (query protocol) call.
    target: String,
    body: Value,
    /// The raw body of an STS call.
    form: String,
    authorization: String,
}

type Answer = (u16, Vec<(String, String)>, String);

/// Answers by `X-Amz-Target`; the scripted answers go first (in order).
#[derive(Default)]
struct Stub {
    seen: Mutex<Vec<Seen>>,
    script: Mutex<Vec<(String, Answer)>>,
    secrets: Mutex<HashMap<String, String>>,
    replicated: Mutex<HashMap<String, Vec<String>>>,
}

fn aws_error(status: u16, code: &str, message: &str) -> Answer {
    (
        status,
        vec![],
        json!({"__type": code, "message": message}).to_string(),
    )
}

impl Stub {
    fn script(&self, target: &str, answer: Answer) {
        self.script
            .lock()
            .unwrap()
            .push((target.to_string(), answer));
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn targets(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.target).collect()
    }

    fn answer(&self, target: &str, body: &Value) -> Answer {
        {
            let mut script = self.script.lock().unwrap();
            if let Some(i) = script.iter().position(|(t, _)| t == target || t == "*") {
                return script.remove(i).1;
            }
        }
        if target == "sts" {
            let xml = "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials><AccessKeyId>ASIATEMP</AccessKeyId><SecretAccessKey>temp-secret</SecretAccessKey><SessionToken>temp-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROA:s</AssumedRoleId><Arn>arn:aws:sts::111122223333:assumed-role/r/s</Arn></AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>";
            return (
                200,
                vec![("content-type".into(), "text/xml".into())],
                xml.into(),
            );
        }
        let id = body["SecretId"]
            .as_str()
            .or(body["Name"].as_str())
            .unwrap_or("")
            .to_string();
        let mut secrets = self.secrets.lock().unwrap();
        let ok = |v: Value| (200, vec![], v.to_string());
        match target {
            "secretsmanager.PutSecretValue" => match secrets.get_mut(&id) {
                Some(v) => {
                    *v = body["SecretString"].as_str().unwrap().to_string();
                    ok(json!({"Name": id, "VersionId": "v"}))
                }
                None => aws_error(
                    400,
                    "ResourceNotFoundException",
                    "Secrets Manager can't find the specified secret.",
                ),
            },
            "secretsmanager.CreateSecret" => {
                if secrets.contains_key(&id) {
                    return aws_error(400, "ResourceExistsException", "exists");
                }
                secrets.insert(
                    id.clone(),
                    body["SecretString"].as_str().unwrap().to_string(),
                );
                if let Some(regions) = body["AddReplicaRegions"].as_array() {
                    self.replicated.lock().unwrap().insert(
                        id.clone(),
                        regions
                            .iter()
                            .map(|r| r["Region"].as_str().unwrap().to_string())
                            .collect(),
                    );
                }
                ok(json!({"Name": id, "VersionId": "v"}))
            }
            "secretsmanager.DeleteSecret" => {
                if self
                    .replicated
                    .lock()
                    .unwrap()
                    .get(&id)
                    .is_some_and(|r| !r.is_empty())
                {
                    return aws_error(
                        400,
                        "InvalidParameterException",
                        &format!("You can't delete secret {id} that still has replica regions"),
                    );
                }
                match secrets.remove(&id) {
                    Some(_) => ok(json!({"Name": id})),
                    None => aws_error(
                        400,
                        "ResourceNotFoundException",
                        "Secrets Manager can't find the specified secret.",
                    ),
                }
            }
            "secretsmanager.DescribeSecret" => {
                let regions = self
                    .replicated
                    .lock()
                    .unwrap()
                    .get(&id)
                    .cloned()
                    .unwrap_or_default();
                let status: Vec<Value> = regions
                    .iter()
                    .map(|r| json!({"Region": r, "Status": "InSync"}))
                    .collect();
                ok(json!({"Name": id, "ReplicationStatus": status}))
            }
            "secretsmanager.RemoveRegionsFromReplication" => {
                self.replicated.lock().unwrap().remove(&id);
                ok(json!({"ARN": "arn", "ReplicationStatus": []}))
            }
            _ => aws_error(400, "UnknownOperationException", target),
        }
    }
}

/// Serves the stub on 127.0.0.1; returns its URL.
async fn serve(stub: Arc<Stub>) -> String {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let stub = stub.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let stub = stub.clone();
                    async move {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string()
                        };
                        let (target, authorization) =
                            (header("x-amz-target"), header("authorization"));
                        assert!(
                            authorization.starts_with("AWS4-HMAC-SHA256 "),
                            "unsigned request"
                        );
                        let bytes = req.into_body().collect().await.unwrap().to_bytes();
                        let form = String::from_utf8_lossy(&bytes).to_string();
                        let target = if target.is_empty() && form.starts_with("Action=") {
                            "sts".to_string()
                        } else {
                            target
                        };
                        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        stub.seen.lock().unwrap().push(Seen {
                            target: target.clone(),
                            body: body.clone(),
                            form,
                            authorization,
                        });
                        let (status, headers, text) = stub.answer(&target, &body);
                        let mut resp = hyper::Response::new(Full::new(bytes::Bytes::from(text)));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        if target != "sts" {
                            resp.headers_mut().insert(
                                "content-type",
                                HeaderValue::from_static("application/x-amz-json-1.1"),
                            );
                        }
                        for (k, v) in headers {
                            resp.headers_mut().insert(
                                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                HeaderValue::from_str(&v).unwrap(),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// A connector whose calls all go to `endpoint`.
fn with_endpoint(endpoint: &str) -> AwsSecretsManager {
    AwsSecretsManager::new(&ConnectorEnv {
        aws_endpoint_url: Some(endpoint.to_string()),
        ..ConnectorEnv::default()
    })
}

async fn setup() -> (Arc<Stub>, AwsSecretsManager) {
    let stub = Arc::new(Stub::default());
    let url = serve(stub.clone()).await;
    (stub, with_endpoint(&url))
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
        value: Zeroizing::new(value.into()),
        tags: vec![
            ("hashicorp:vault".into(), "".into()),
            ("team".into(), "payments".into()),
        ],
    }
}

const PUT: &str = "secretsmanager.PutSecretValue";
const CREATE: &str = "secretsmanager.CreateSecret";
const DELETE: &str = "secretsmanager.DeleteSecret";

// ---- push ----------------------------------------------------------------

#[tokio::test]
async fn a_new_secret_is_put_then_created_with_tags_kms_and_replicas() {
    let (stub, c) = setup().await;
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
    assert_eq!(stub.secrets.lock().unwrap()["vault/kv_1/app"], "v2");
}

#[tokio::test]
async fn a_new_object_is_created_in_one_call_and_an_existing_one_still_overwritten() {
    let (stub, c) = setup().await;
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
    assert_eq!(stub.secrets.lock().unwrap()["fresh"], "v2");
}

#[tokio::test]
async fn a_create_race_ends_in_a_put() {
    let (stub, c) = setup().await;
    stub.secrets
        .lock()
        .unwrap()
        .insert("s".into(), "old".into());
    stub.script(PUT, aws_error(400, "ResourceNotFoundException", "not yet"));
    c.push(&dest(json!({})), &secret("s", "new")).await.unwrap();
    assert_eq!(stub.targets(), vec![PUT, CREATE, PUT]);
    assert_eq!(stub.secrets.lock().unwrap()["s"], "new");
}

#[tokio::test]
async fn throttling_is_retryable_with_the_retry_after_header_and_not_retried_by_the_sdk() {
    let (stub, c) = setup().await;
    let (status, _, body) = aws_error(400, "ThrottlingException", "Rate exceeded");
    stub.script(
        "*",
        (status, vec![("retry-after".into(), "7".into())], body),
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
    let (stub, c) = setup().await;
    stub.script("*", aws_error(500, "InternalServiceError", "oops"));
    let err = c
        .push(&dest(json!({})), &secret("s", "v"))
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::ExternalService { .. }), "{err:?}");
    stub.script("*", (503, vec![], String::new()));
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
    let (stub, c) = setup().await;
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
        (
            403,
            vec![],
            "<Error><Code>InvalidClientTokenId</Code></Error>".into(),
        ),
    );
    let err = c
        .push(&dest(json!({})), &secret("s", "v"))
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::ClientSide(_)), "{err:?}");
}

#[tokio::test]
async fn names_values_and_tags_are_checked_before_any_call() {
    let (stub, c) = setup().await;
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
    let (stub, c) = setup().await;
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
        "allowed_ports": [url::Url::parse(c.secrets_manager_endpoint.as_deref().unwrap()).unwrap().port().unwrap()],
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
    let c = with_endpoint(&format!("http://127.0.0.1:{port}"));
    let err = c
        .push(&dest(json!({})), &secret("s", "v"))
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::ExternalService { .. }), "{err:?}");
}

// ---- delete --------------------------------------------------------------

#[tokio::test]
async fn delete_forces_and_a_missing_secret_counts_as_deleted() {
    let (stub, c) = setup().await;
    let d = dest(json!({}));
    stub.secrets.lock().unwrap().insert("s".into(), "v".into());
    c.delete(&d, "s").await.unwrap();
    c.delete(&d, "s").await.unwrap();
    // A name AWS cannot hold: nothing to delete, no call.
    c.delete(&d, "not valid").await.unwrap();
    assert_eq!(stub.targets(), vec![DELETE, DELETE]);
    assert_eq!(stub.seen()[0].body["SecretId"], "s");
    assert_eq!(stub.seen()[0].body["ForceDeleteWithoutRecovery"], true);
    assert!(stub.secrets.lock().unwrap().is_empty());
    stub.script("*", aws_error(400, "AccessDeniedException", "no"));
    assert!(matches!(
        c.delete(&d, "s").await,
        Err(SyncError::ClientSide(_))
    ));
}

#[tokio::test]
async fn deleting_a_replicated_secret_removes_its_replicas_first() {
    let (stub, c) = setup().await;
    let d = dest(json!({"replica_regions": {"eu-west-1": ""}}));
    c.push(&d, &secret("r", "v")).await.unwrap();
    c.delete(&d, "r").await.unwrap();
    assert_eq!(
        stub.targets(),
        vec![
            PUT,
            CREATE,
            DELETE,
            "secretsmanager.DescribeSecret",
            "secretsmanager.RemoveRegionsFromReplication",
            DELETE,
        ]
    );
    assert_eq!(
        stub.seen()[4].body["RemoveReplicaRegions"],
        json!(["eu-west-1"])
    );
    assert!(stub.secrets.lock().unwrap().is_empty());
}

// ---- config, clients -----------------------------------------------------

#[tokio::test]
async fn config_errors_are_client_side() {
    let c = with_endpoint("http://127.0.0.1:9");
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
async fn clients_are_cached_per_config() {
    let (stub, c) = setup().await;
    let d = dest(json!({}));
    let started = Instant::now();
    c.push(&d, &secret("a", "v")).await.unwrap();
    let first = started.elapsed();
    let started = Instant::now();
    for i in 0..20 {
        c.push(&d, &secret("a", &format!("v{i}"))).await.unwrap();
    }
    let cached = started.elapsed() / 20;
    assert_eq!(c.cache().len(), 1);
    c.push(&dest(json!({"custom": "other"})), &secret("a", "v"))
        .await
        .unwrap();
    assert_eq!(c.cache().len(), 2);
    let settings = Settings::from_config(&d.config).unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        c.build(&settings).await.unwrap();
    }
    let build = started.elapsed() / 20;
    let started = Instant::now();
    for i in 0..20 {
        c.cache().clear();
        c.push(&d, &secret("a", &format!("w{i}"))).await.unwrap();
    }
    let uncached = started.elapsed() / 20;
    // Measured (debug build, loopback, plain HTTP): see the report.
    eprintln!(
        "first push {first:?}; cached push {cached:?}; client build {build:?}; \
         push with a new client {uncached:?}"
    );
    assert_eq!(stub.targets().len(), 2 + 20 + 1 + 20);
}

#[tokio::test]
async fn an_assumed_role_signs_with_the_temporary_credentials() {
    let (stub, c) = setup().await;
    let d = dest(json!({
        "role_arn": "arn:aws:iam::111122223333:role/r",
        "external_id": "ext-1",
    }));
    c.push(&d, &secret("s", "v")).await.unwrap();
    c.push(&d, &secret("s", "v2")).await.unwrap();
    // One AssumeRole (the client is cached), then the calls signed with the
    // temporary credentials.
    assert_eq!(stub.targets(), vec!["sts", PUT, CREATE, PUT]);
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
    // STS refusing the role is the destination's configuration.
    c.cache().clear();
    stub.script(
        "sts",
        (
            403,
            vec![("content-type".into(), "text/xml".into())],
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole</Message></Error></ErrorResponse>".into(),
        ),
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
