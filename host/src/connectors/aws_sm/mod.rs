//! `aws-sm`: AWS Secrets Manager, through the official SDK (`aws-sdk-secretsmanager`).
//!
//! **Credentials**: the destination's `access_key_id` / `secret_access_key`, else the
//! server's default AWS chain (environment, profile, web identity, container, IMDS:
//! the operator's setup, not subject to the destination's egress rules). With
//! `role_arn` those are the base credentials of an STS `AssumeRole` (session name
//! `vault-secrets-sync`, `external_id` when set); the temporary credentials are
//! renewed by rebuilding the client five minutes before they expire.
//! `identity_token_audience` (workload identity federation) is refused: this server
//! issues no identity tokens. **Region**: the destination's `region`, else the
//! environment (`AWS_REGION`, profile, IMDS).
//!
//! **Endpoints**: `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL_STS`, else
//! `AWS_ENDPOINT_URL`, as read once into the [`ConnectorEnv`] and set explicitly on
//! each client; else the SDK's own resolution (the profile's `endpoint_url`, the
//! region's public endpoint). Every endpoint the SDK resolves (Secrets Manager and
//! STS) has its port (and address, for a literal) checked inside the SDK's endpoint
//! resolver ([`EgressPolicy::check_url`]); the host name is checked by the
//! destination's own HTTP client, whose DNS resolver is the egress-filtering
//! [`EgressResolver`](super::egress::EgressResolver): the connection goes to an
//! address checked in the very lookup it uses.
//!
//! **Calls** (no read before write; exactly one layer retries, the engine's: the
//! SDK's retries are disabled, each attempt is bounded by 10 s):
//! - push: `PutSecretValue` (1 call, 1 write, when the secret exists: the common
//!   update); on `ResourceNotFoundException`, `CreateSecret` with the tags,
//!   `kms_key_id` and `replica_regions` (2 calls, 1 write); if a concurrent writer
//!   created it meanwhile (`ResourceExistsException`), `PutSecretValue` again
//!   (3 calls).
//! - push_new (an object kvsync never wrote: an association's first sync):
//!   `CreateSecret` first (1 call); `PutSecretValue` when it exists anyway (2). Tags, KMS key and replicas therefore apply when a secret is created;
//!   updates write the value only (learning the current tags would take a read).
//! - delete: `DeleteSecret` with `ForceDeleteWithoutRecovery` (1 call): no recovery
//!   window, the name can be synced again at once. A missing secret counts as
//!   deleted. A primary that still has replicas cannot be deleted: then
//!   `DescribeSecret` + `RemoveRegionsFromReplication` + `DeleteSecret` (4 calls).
//!
//! **Errors**: throttling, `InternalServiceError`, 5xx, timeouts and connection
//! failures are `ExternalService` (with the `Retry-After` header's delay when one is
//! present: AWS normally sends none); everything else the provider refuses (bad
//! credentials, permissions, invalid parameters, limits) is `ClientSide`, as are the
//! name (1–512 characters of `[A-Za-z0-9/_+=.@-]`), value (1–65,536 bytes) and tag
//! limits, checked before any call.
//!
//! **Clients** are cached per credentials, region, role and egress rules (see
//! `client.rs`): loading the AWS config costs far more than a call.
//!
//! Secret values: the SDK takes its own `String` copy of each value to sign and
//! send; that copy is not zeroized.
mod client;
mod config;

use async_trait::async_trait;
use aws_sdk_secretsmanager as sm;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sm::error::{ProvideErrorMetadata, SdkError};

use super::egress::{cause, refusal};
use super::http;
use super::{Connector, ConnectorEnv, Dest, ExternalSecret, SyncError};
use client::Clients;
pub use config::Config;
use http_body_util::LengthLimitError;

const PROVIDER: &str = "AWS Secrets Manager";
/// Secret names: 1–512 characters (the model's `NameType`).
const MAX_NAME: usize = 512;
/// `SecretString`: 1–65,536 bytes.
const MAX_VALUE: usize = 65_536;
/// Tags per secret, and tag key / value lengths.
const MAX_TAGS: usize = 50;
const MAX_TAG_KEY: usize = 128;
const MAX_TAG_VALUE: usize = 256;

/// The error codes that mean "come back later".
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "InternalServiceError",
    "InternalServiceErrorException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "IDPCommunicationError",
];

/// The `aws-sm` connector: stateless apart from its client cache.
pub struct AwsSecretsManager {
    clients: Clients,
}

impl AwsSecretsManager {
    /// The connector, with the endpoint overrides of `env`.
    pub fn new(env: &ConnectorEnv) -> Self {
        AwsSecretsManager {
            clients: Clients::new(env),
        }
    }
}

#[async_trait]
impl Connector for AwsSecretsManager {
    const KIND: &'static str = "aws-sm";
    type Config = Config;

    async fn push(&self, dest: &Dest<Config>, secret: &ExternalSecret) -> Result<(), SyncError> {
        check(secret)?;
        let client = self.clients.client(dest).await?;
        match put(&client, secret).await {
            Err(e) if is_not_found(&e) => {}
            other => return other.map_err(|e| classify("PutSecretValue", e)),
        }
        create(&client, secret, &dest.config).await
    }

    async fn push_new(
        &self,
        dest: &Dest<Config>,
        secret: &ExternalSecret,
    ) -> Result<(), SyncError> {
        check(secret)?;
        let client = self.clients.client(dest).await?;
        create(&client, secret, &dest.config).await
    }

    async fn delete(&self, dest: &Dest<Config>, name: &str) -> Result<(), SyncError> {
        // A name AWS cannot hold cannot exist there.
        if check_name(name).is_err() {
            return Ok(());
        }
        let client = self.clients.client(dest).await?;
        let err = match delete_secret(&client, name).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if !still_replicated(&err) {
            return Err(classify("DeleteSecret", err));
        }
        // A primary with replicas: drop the replicas, then the secret.
        let described = match client.describe_secret().secret_id(name).send().await {
            Ok(d) => d,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(classify("DescribeSecret", e)),
        };
        let regions: Vec<String> = described
            .replication_status()
            .iter()
            .filter_map(|r| r.region().map(str::to_string))
            .collect();
        if !regions.is_empty() {
            match client
                .remove_regions_from_replication()
                .secret_id(name)
                .set_remove_replica_regions(Some(regions))
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => return Err(classify("RemoveRegionsFromReplication", e)),
            }
        }
        delete_secret(&client, name)
            .await
            .map_err(|e| classify("DeleteSecret", e))
    }
}

/// `CreateSecret` with the tags, KMS key and replicas (one call for a new
/// secret); when the secret exists already (created by someone else
/// meanwhile, or a `push_new` of a secret that was not new),
/// `PutSecretValue` instead.
async fn create(
    client: &sm::Client,
    secret: &ExternalSecret,
    config: &Config,
) -> Result<(), SyncError> {
    let created = client
        .create_secret()
        .name(&secret.name)
        .secret_string(secret.value.as_str())
        .set_tags(Some(
            secret
                .tags
                .iter()
                .map(|(k, v)| sm::types::Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .set_kms_key_id(config.kms_key_id.clone())
        .set_add_replica_regions(config.replicas())
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_exists_exception()) =>
        {
            put(client, secret)
                .await
                .map_err(|e| classify("PutSecretValue", e))
        }
        Err(e) => Err(classify("CreateSecret", e)),
    }
}

async fn put(
    client: &sm::Client,
    secret: &ExternalSecret,
) -> Result<(), SdkError<sm::operation::put_secret_value::PutSecretValueError>> {
    client
        .put_secret_value()
        .secret_id(&secret.name)
        .secret_string(secret.value.as_str())
        .send()
        .await
        .map(|_| ())
}

async fn delete_secret(
    client: &sm::Client,
    name: &str,
) -> Result<(), SdkError<sm::operation::delete_secret::DeleteSecretError>> {
    match client
        .delete_secret()
        .secret_id(name)
        .force_delete_without_recovery(true)
        .send()
        .await
    {
        Err(e) if is_not_found(&e) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// `ResourceNotFoundException`, whatever the operation.
fn is_not_found<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.code() == Some("ResourceNotFoundException"))
}

/// AWS refuses to delete a primary secret that still has replica regions.
fn still_replicated<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().is_some_and(|s| {
        matches!(
            s.code(),
            Some("InvalidParameterException" | "InvalidRequestException")
        ) && s
            .message()
            .is_some_and(|m| m.to_ascii_lowercase().contains("replica"))
    })
}

/// Name, value and tags against AWS's limits, before any call.
fn check(secret: &ExternalSecret) -> Result<(), SyncError> {
    check_name(&secret.name)?;
    check_value(&secret.value)?;
    check_tags(&secret.tags)
}

fn check_name(name: &str) -> Result<(), SyncError> {
    let len = name.chars().count();
    if len == 0 || len > MAX_NAME {
        return Err(SyncError::ClientSide(format!(
            "invalid {PROVIDER} secret name: it is {len} characters long; names have 1 to {MAX_NAME}"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
    {
        return Err(SyncError::ClientSide(format!(
            "invalid {PROVIDER} secret name {name:?}: {c:?} is not allowed (only ASCII letters, \
             digits and /_+=.@-)"
        )));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), SyncError> {
    if value.is_empty() {
        return Err(SyncError::ClientSide(format!(
            "{PROVIDER} does not store an empty secret value"
        )));
    }
    if value.len() > MAX_VALUE {
        return Err(SyncError::ClientSide(format!(
            "the secret value is {} bytes; {PROVIDER} stores at most {MAX_VALUE}",
            value.len()
        )));
    }
    Ok(())
}

fn check_tags(tags: &[(String, String)]) -> Result<(), SyncError> {
    if tags.len() > MAX_TAGS {
        return Err(SyncError::ClientSide(format!(
            "{} tags: {PROVIDER} allows at most {MAX_TAGS} per secret",
            tags.len()
        )));
    }
    for (k, v) in tags {
        let klen = k.chars().count();
        if klen == 0 || klen > MAX_TAG_KEY {
            return Err(SyncError::ClientSide(format!(
                "tag key {k:?}: {PROVIDER} tag keys have 1 to {MAX_TAG_KEY} characters"
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(SyncError::ClientSide(format!(
                "tag key {k:?}: the aws: prefix is reserved by AWS"
            )));
        }
        if v.chars().count() > MAX_TAG_VALUE {
            return Err(SyncError::ClientSide(format!(
                "the value of tag {k:?} is longer than {MAX_TAG_VALUE} characters"
            )));
        }
    }
    Ok(())
}

fn classify<E>(op: &str, err: SdkError<E>) -> SyncError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    classify_with(PROVIDER, op, err)
}

/// Maps an SDK failure to the sync status it causes. The messages carry the AWS
/// error code and message, never a credential or value.
fn classify_with<E>(provider: &str, op: &str, err: SdkError<E>) -> SyncError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // Our own verdicts travel as an error source: the endpoint check's, and
    // the resolver's egress refusals.
    if let Some(e) = cause::<SyncError>(&err) {
        return e.clone();
    }
    if let Some(refused) = refusal(&err) {
        return SyncError::ClientSide(refused.to_string());
    }
    if cause::<LengthLimitError>(&err).is_some() {
        return http::too_long(provider);
    }
    match &err {
        SdkError::ServiceError(ctx) => {
            let raw = ctx.raw();
            let mut headers = HeaderMap::new();
            for (k, v) in raw.headers().iter() {
                if let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    headers.append(k, v);
                }
            }
            service_error(
                provider,
                op,
                raw.status().as_u16(),
                ctx.err().code(),
                ctx.err().message(),
                &headers,
            )
        }
        SdkError::TimeoutError(_) => SyncError::ExternalService {
            message: format!("{provider} {op} timed out"),
            retry_after: None,
        },
        SdkError::DispatchFailure(d) => {
            let detail = chain(&err);
            if d.is_timeout() {
                SyncError::ExternalService {
                    message: format!("{provider} {op} timed out: {detail}"),
                    retry_after: None,
                }
            } else if d.is_io() {
                SyncError::ExternalService {
                    message: format!("{provider} could not be reached: {detail}"),
                    retry_after: None,
                }
            } else if let Some(cause) = credentials_misconfigured(&err) {
                SyncError::ClientSide(format!(
                    "no usable AWS credentials for {op}: {}",
                    chain(cause)
                ))
            } else {
                SyncError::ExternalService {
                    message: format!("{provider} {op} failed: {detail}"),
                    retry_after: None,
                }
            }
        }
        SdkError::ResponseError(ctx) => {
            // An answer the SDK could not read (e.g. an HTML or XML error page).
            let status = ctx.raw().status().as_u16();
            let message = format!("{provider} {op}: unreadable answer (HTTP {status})");
            if status == 429 || status >= 500 {
                SyncError::ExternalService {
                    message,
                    retry_after: None,
                }
            } else if (400..500).contains(&status) {
                SyncError::ClientSide(message)
            } else {
                SyncError::ExternalService {
                    message,
                    retry_after: None,
                }
            }
        }
        SdkError::ConstructionFailure(_) => SyncError::Internal(format!(
            "cannot build the {provider} {op} request: {}",
            chain(&err)
        )),
        _ => SyncError::ExternalService {
            message: format!("{provider} {op} failed: {}", chain(&err)),
            retry_after: None,
        },
    }
}

/// An error and its sources on one short line, each message once (the SDK's
/// wrappers often repeat their source's text).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(err);
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    http::detail(&parts.join(": "))
}

/// The SDK's credential errors that mean "configure something": no provider in
/// the chain found credentials, or the configuration is invalid. (Timeouts and
/// failures of a credential source stay retryable.)
fn credentials_misconfigured<'e>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e (dyn std::error::Error + 'static)> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(s) = source {
        let shown = s.to_string();
        if shown.starts_with("the credential provider was not enabled")
            || shown.starts_with("the credentials provider was not properly configured")
        {
            return Some(s);
        }
        source = s.source();
    }
    None
}

/// A modelled (or at least parsed) AWS error answer.
fn service_error(
    provider: &str,
    op: &str,
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
    headers: &HeaderMap,
) -> SyncError {
    let shown_code = match code {
        Some(code) => code.to_string(),
        None => format!("HTTP {status}"),
    };
    let code = code.unwrap_or_default();
    let mut text = format!("{provider} {op} failed: {shown_code}");
    if let Some(m) = message.filter(|m| !m.trim().is_empty()) {
        text.push_str(": ");
        text.push_str(&http::detail(m));
    }
    if status == 429 || status >= 500 || RETRYABLE_CODES.contains(&code) {
        SyncError::ExternalService {
            message: text,
            retry_after: http::retry_after(headers),
        }
    } else {
        if code == "InvalidRequestException"
            && message.is_some_and(|m| m.to_ascii_lowercase().contains("scheduled for deletion"))
        {
            text.push_str(
                " (restore the secret with RestoreSecret or delete it for good, then sync again)",
            );
        }
        SyncError::ClientSide(text)
    }
}

#[cfg(test)]
mod tests;
