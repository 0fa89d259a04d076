//! A fake of the AWS calls the `aws-sm` connector makes, for in-process
//! connector tests (the conformance suite runs moto behind the fault proxy
//! instead): Secrets Manager over JSON 1.1 (`X-Amz-Target`) and STS
//! `AssumeRole` over the query protocol, both at `/` of one server, as an
//! `AWS_ENDPOINT_URL` override sends them.
//!
//! - Every request must be SigV4-signed (`Authorization: AWS4-HMAC-SHA256 …`),
//!   else 403 `MissingAuthenticationTokenException`. Signatures are not
//!   verified; tests read the credential scope from [`Seen::authorization`].
//! - `PutSecretValue` (404-like `ResourceNotFoundException` for a missing
//!   secret), `CreateSecret` (`ResourceExistsException` for an existing one;
//!   `AddReplicaRegions` remembered), `DeleteSecret` (refused with
//!   `InvalidParameterException` while the secret has replicas, as AWS does),
//!   `DescribeSecret` (its `ReplicationStatus`), `RemoveRegionsFromReplication`.
//! - `AssumeRole` answers temporary credentials `ASIATEMP` / `temp-secret` /
//!   `temp-token` that expire in 2099.
//! - [`SecretsManager::script`] queues answers for the next calls of one
//!   target (`*`: any), ahead of the modelled behaviour: throttling, outages,
//!   refusals (a Secrets Manager answer without a `content-type` gets
//!   JSON 1.1's). Every request is recorded ([`SecretsManager::seen`]).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};

use super::{FakeRequest, FakeResponse, Service};

/// The `X-Amz-Target` of each Secrets Manager operation the connector uses.
pub const PUT: &str = "secretsmanager.PutSecretValue";
pub const CREATE: &str = "secretsmanager.CreateSecret";
pub const DELETE: &str = "secretsmanager.DeleteSecret";
pub const DESCRIBE: &str = "secretsmanager.DescribeSecret";
pub const REMOVE_REGIONS: &str = "secretsmanager.RemoveRegionsFromReplication";
/// The target recorded for an STS (query protocol) call.
pub const STS: &str = "sts";
/// The access key id of the credentials `AssumeRole` hands out.
pub const TEMP_ACCESS_KEY_ID: &str = "ASIATEMP";

const JSON_1_1: &str = "application/x-amz-json-1.1";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `X-Amz-Target`, or [`STS`] for an STS call.
    pub target: String,
    /// The JSON body (`null` for STS).
    pub body: Value,
    /// The raw body (the form of an STS call).
    pub form: String,
    pub authorization: String,
}

#[derive(Default)]
struct Inner {
    seen: Vec<Seen>,
    script: Vec<(String, FakeResponse)>,
    /// name → current value.
    secrets: HashMap<String, String>,
    /// name → replica regions.
    replicated: HashMap<String, Vec<String>>,
}

/// The fake; see the module documentation.
#[derive(Default)]
pub struct SecretsManager {
    inner: Mutex<Inner>,
}

/// An AWS JSON 1.1 error answer.
pub fn aws_error(status: u16, code: &str, message: &str) -> FakeResponse {
    FakeResponse {
        status,
        headers: vec![("content-type".into(), JSON_1_1.into())],
        body: json!({"__type": code, "message": message})
            .to_string()
            .into_bytes(),
    }
}

fn ok(body: Value) -> FakeResponse {
    FakeResponse {
        status: 200,
        headers: vec![("content-type".into(), JSON_1_1.into())],
        body: body.to_string().into_bytes(),
    }
}

fn not_found() -> FakeResponse {
    aws_error(
        400,
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret.",
    )
}

const ASSUME_ROLE_ANSWER: &str = "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials><AccessKeyId>ASIATEMP</AccessKeyId><SecretAccessKey>temp-secret</SecretAccessKey><SessionToken>temp-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROA:s</AssumedRoleId><Arn>arn:aws:sts::111122223333:assumed-role/r/s</Arn></AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>";

impl SecretsManager {
    pub fn new() -> Self {
        SecretsManager::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers the next call of `target` (`*`: of any target) with `answer`.
    pub fn script(&self, target: &str, answer: FakeResponse) {
        self.lock().script.push((target.to_string(), answer));
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// The target of every request so far.
    pub fn targets(&self) -> Vec<String> {
        self.lock().seen.iter().map(|s| s.target.clone()).collect()
    }

    /// The current value of secret `name`.
    pub fn secret(&self, name: &str) -> Option<String> {
        self.lock().secrets.get(name).cloned()
    }

    /// How many secrets the fake holds.
    pub fn secret_count(&self) -> usize {
        self.lock().secrets.len()
    }

    /// Stores a secret as if someone else had created it.
    pub fn insert_secret(&self, name: &str, value: &str) {
        self.lock()
            .secrets
            .insert(name.to_string(), value.to_string());
    }

    fn answer(inner: &mut Inner, target: &str, body: &Value) -> FakeResponse {
        if let Some(i) = inner
            .script
            .iter()
            .position(|(t, _)| t == target || t == "*")
        {
            let mut answer = inner.script.remove(i).1;
            let typed = answer
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
            if !typed && target != STS {
                answer
                    .headers
                    .push(("content-type".into(), JSON_1_1.into()));
            }
            return answer;
        }
        if target == STS {
            return FakeResponse {
                status: 200,
                headers: vec![("content-type".into(), "text/xml".into())],
                body: ASSUME_ROLE_ANSWER.as_bytes().to_vec(),
            };
        }
        let id = body["SecretId"]
            .as_str()
            .or(body["Name"].as_str())
            .unwrap_or_default()
            .to_string();
        let value = body["SecretString"].as_str().map(str::to_string);
        match target {
            PUT => match (inner.secrets.get_mut(&id), value) {
                (Some(v), Some(new)) => {
                    *v = new;
                    ok(json!({"Name": id, "VersionId": "v"}))
                }
                (None, _) => not_found(),
                (Some(_), None) => aws_error(400, "InvalidParameterException", "no SecretString"),
            },
            CREATE => {
                if inner.secrets.contains_key(&id) {
                    return aws_error(400, "ResourceExistsException", "exists");
                }
                let Some(value) = value else {
                    return aws_error(400, "InvalidParameterException", "no SecretString");
                };
                inner.secrets.insert(id.clone(), value);
                if let Some(regions) = body["AddReplicaRegions"].as_array() {
                    inner.replicated.insert(
                        id.clone(),
                        regions
                            .iter()
                            .filter_map(|r| r["Region"].as_str().map(str::to_string))
                            .collect(),
                    );
                }
                ok(json!({"Name": id, "VersionId": "v"}))
            }
            DELETE => {
                if inner.replicated.get(&id).is_some_and(|r| !r.is_empty()) {
                    return aws_error(
                        400,
                        "InvalidParameterException",
                        &format!("You can't delete secret {id} that still has replica regions"),
                    );
                }
                match inner.secrets.remove(&id) {
                    Some(_) => ok(json!({"Name": id})),
                    None => not_found(),
                }
            }
            DESCRIBE => {
                let status: Vec<Value> = inner
                    .replicated
                    .get(&id)
                    .into_iter()
                    .flatten()
                    .map(|r| json!({"Region": r, "Status": "InSync"}))
                    .collect();
                ok(json!({"Name": id, "ReplicationStatus": status}))
            }
            REMOVE_REGIONS => {
                inner.replicated.remove(&id);
                ok(json!({"ARN": "arn", "ReplicationStatus": []}))
            }
            _ => aws_error(400, "UnknownOperationException", target),
        }
    }
}

impl Service for SecretsManager {
    fn handle(&self, req: &FakeRequest) -> FakeResponse {
        let authorization = req.header("authorization").unwrap_or_default().to_string();
        if !authorization.starts_with("AWS4-HMAC-SHA256 ") {
            return aws_error(
                403,
                "MissingAuthenticationTokenException",
                "the request is not signed",
            );
        }
        let form = String::from_utf8_lossy(&req.body).into_owned();
        let target = match req.header("x-amz-target") {
            Some(t) if !t.is_empty() => t.to_string(),
            _ if form.starts_with("Action=") => STS.to_string(),
            _ => String::new(),
        };
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let mut inner = self.lock();
        inner.seen.push(Seen {
            target: target.clone(),
            body: body.clone(),
            form,
            authorization,
        });
        SecretsManager::answer(&mut inner, &target, &body)
    }

    fn state(&self) -> Value {
        let inner = self.lock();
        json!({
            "secrets": inner.secrets,
            "replicated": inner.replicated,
        })
    }
}
