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
//! region's public endpoint). The SDK's HTTP client cannot take our filtering DNS
//! resolver, so every endpoint the SDK resolves (Secrets Manager and STS) goes
//! through [`EgressPolicy::check_url`] inside the SDK's endpoint resolver, on every
//! request, before the connection: the host is resolved and each address checked.
//! (The SDK then resolves the host again to connect: the small check-then-connect
//! gap of this approach.)
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
//! **Clients** are cached per destination config (SHA-256 of the config, so the
//! cache key holds no credential): loading the AWS config (environment, profile
//! files, region and credential chains) costs far more than a call.
//!
//! Secret values: the SDK takes its own `String` copy of each value to sign and
//! send; that copy is not zeroized.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager as sm;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sm::config::Region;
use sm::error::{ProvideErrorMetadata, SdkError};
use zeroize::Zeroizing;

use super::egress::EgressPolicy;
use super::http;
use super::{
    ConnectorEnv, DEFAULT_TIMEOUT, Destination, DestinationConnector, ExternalSecret, SyncError,
};

const PROVIDER: &str = "AWS Secrets Manager";
/// Secret names: 1–512 characters (the model's `NameType`).
const MAX_NAME: usize = 512;
/// `SecretString`: 1–65,536 bytes.
const MAX_VALUE: usize = 65_536;
/// Tags per secret, and tag key / value lengths.
const MAX_TAGS: usize = 50;
const MAX_TAG_KEY: usize = 128;
const MAX_TAG_VALUE: usize = 256;
/// The STS session name of an assumed role (shows in CloudTrail).
const SESSION_NAME: &str = "vault-secrets-sync";
/// Assumed-role credentials are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// Most clients kept; past it the oldest is dropped.
const MAX_CACHED: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

struct Cached {
    client: sm::Client,
    /// When the client's credentials expire (assumed roles only).
    expires: Option<SystemTime>,
    built: Instant,
}

/// The `aws-sm` connector.
pub struct AwsSecretsManager {
    /// SHA-256 of a destination's config → its client.
    clients: Mutex<HashMap<[u8; 32], Cached>>,
    /// The Secrets Manager endpoint that overrides the SDK's resolution.
    secrets_manager_endpoint: Option<String>,
    /// The STS endpoint that overrides the SDK's resolution.
    sts_endpoint: Option<String>,
}

#[async_trait]
impl DestinationConnector for AwsSecretsManager {
    fn kind(&self) -> &'static str {
        "aws-sm"
    }

    async fn push(&self, dest: &Destination, secret: &ExternalSecret) -> Result<(), SyncError> {
        check_name(&secret.name)?;
        check_value(&secret.value)?;
        check_tags(&secret.tags)?;
        let settings = Settings::from_config(&dest.config)?;
        let client = self.client(dest, &settings).await?;
        match put(&client, secret).await {
            Err(e) if is_not_found(&e) => {}
            other => return other.map_err(|e| classify("PutSecretValue", e)),
        }
        create(&client, secret, &settings).await
    }

    async fn push_new(&self, dest: &Destination, secret: &ExternalSecret) -> Result<(), SyncError> {
        check_name(&secret.name)?;
        check_value(&secret.value)?;
        check_tags(&secret.tags)?;
        let settings = Settings::from_config(&dest.config)?;
        let client = self.client(dest, &settings).await?;
        create(&client, secret, &settings).await
    }

    async fn delete(&self, dest: &Destination, name: &str) -> Result<(), SyncError> {
        // A name AWS cannot hold cannot exist there.
        if check_name(name).is_err() {
            return Ok(());
        }
        let settings = Settings::from_config(&dest.config)?;
        let client = self.client(dest, &settings).await?;
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
    settings: &Settings,
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
        .set_kms_key_id(settings.kms_key_id.clone())
        .set_add_replica_regions(settings.replicas())
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

impl AwsSecretsManager {
    /// The connector, with the endpoint overrides of `env`.
    pub fn new(env: &ConnectorEnv) -> Self {
        AwsSecretsManager {
            clients: Mutex::default(),
            secrets_manager_endpoint: env.aws_secrets_manager_endpoint().map(str::to_string),
            sts_endpoint: env.aws_sts_endpoint().map(str::to_string),
        }
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        // Every update is one insert or remove: a panic elsewhere cannot have
        // left the map half-written.
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The destination's client: cached, or built (and cached).
    async fn client(
        &self,
        dest: &Destination,
        settings: &Settings,
    ) -> Result<sm::Client, SyncError> {
        let key: [u8; 32] = {
            let config = Zeroizing::new(dest.config.to_string());
            Sha256::digest(config.as_bytes()).into()
        };
        let fresh = |c: &Cached| {
            c.expires.is_none_or(|at| {
                at.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > RENEW_BEFORE)
            })
        };
        if let Some(cached) = self.cache().get(&key).filter(|c| fresh(c)) {
            return Ok(cached.client.clone());
        }
        let (client, expires) = self.build(settings).await?;
        let mut cache = self.cache();
        cache.retain(|_, c| fresh(c));
        if cache.len() >= MAX_CACHED {
            let oldest = cache.iter().min_by_key(|(_, c)| c.built).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                cache.remove(&oldest);
            }
        }
        cache.insert(
            key,
            Cached {
                client: client.clone(),
                expires,
                built: Instant::now(),
            },
        );
        Ok(client)
    }

    /// Loads the AWS config for a destination and builds its client (assuming
    /// the role first when there is one).
    async fn build(
        &self,
        settings: &Settings,
    ) -> Result<(sm::Client, Option<SystemTime>), SyncError> {
        if settings.wif {
            return Err(SyncError::ClientSide(
                "workload identity federation is not supported (identity_token_audience): this \
                 server issues no identity tokens; use access keys, role_arn or the server's \
                 AWS credentials"
                    .to_string(),
            ));
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(DEFAULT_TIMEOUT)
                    .operation_timeout(DEFAULT_TIMEOUT)
                    .build(),
            );
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret)) = &settings.keys {
            loader = loader.credentials_provider(sm::config::Credentials::new(
                id.as_str(),
                secret.as_str(),
                None,
                None,
                "destination",
            ));
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(SyncError::ClientSide(
                "no AWS region: set region on the destination or AWS_REGION on the server"
                    .to_string(),
            ));
        }
        let mut config = sm::config::Builder::from(&sdk);
        if let Some(endpoint) = &self.secrets_manager_endpoint {
            config = config.endpoint_url(endpoint);
        }
        let mut config = config.endpoint_resolver(CheckedSecretsManager {
            policy: settings.policy.clone(),
            inner: sm::config::endpoint::DefaultResolver::new(),
        });
        let mut expires = None;
        if let Some(role_arn) = &settings.role_arn {
            let mut sts = aws_sdk_sts::config::Builder::from(&sdk);
            if let Some(endpoint) = &self.sts_endpoint {
                sts = sts.endpoint_url(endpoint);
            }
            let sts = aws_sdk_sts::Client::from_conf(
                sts.endpoint_resolver(CheckedSts {
                    policy: settings.policy.clone(),
                    inner: aws_sdk_sts::config::endpoint::DefaultResolver::new(),
                })
                .build(),
            );
            let assumed = sts
                .assume_role()
                .role_arn(role_arn)
                .role_session_name(SESSION_NAME)
                .set_external_id(settings.external_id.clone())
                .send()
                .await
                .map_err(|e| classify_with("AWS STS", "AssumeRole", e))?;
            let creds = assumed
                .credentials()
                .ok_or_else(|| SyncError::ExternalService {
                    message: "AWS STS AssumeRole answered without credentials".to_string(),
                    retry_after: None,
                })?;
            let expiry = SystemTime::try_from(*creds.expiration()).ok();
            expires = expiry;
            config = config.credentials_provider(sm::config::Credentials::new(
                creds.access_key_id(),
                creds.secret_access_key(),
                Some(creds.session_token().to_string()),
                expiry,
                "AssumeRole",
            ));
        }
        Ok((sm::Client::from_conf(config.build()), expires))
    }
}

/// What the connector reads from a destination's config.
struct Settings {
    keys: Option<(Zeroizing<String>, Zeroizing<String>)>,
    region: Option<String>,
    role_arn: Option<String>,
    external_id: Option<String>,
    wif: bool,
    kms_key_id: Option<String>,
    /// region → KMS key ("" for the AWS-managed key).
    replica_regions: Vec<(String, String)>,
    policy: Arc<EgressPolicy>,
}

impl Settings {
    fn from_config(config: &Value) -> Result<Self, SyncError> {
        let access_key_id = string(config, "access_key_id")?.map(Zeroizing::new);
        let secret_access_key = string(config, "secret_access_key")?.map(Zeroizing::new);
        let keys = match (access_key_id, secret_access_key) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (None, None) => None,
            _ => {
                return Err(SyncError::ClientSide(
                    "access_key_id and secret_access_key must be set together".to_string(),
                ));
            }
        };
        let replica_regions = match config.get("replica_regions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(region, key)| match key {
                    Value::String(key) => Ok((region.clone(), key.clone())),
                    Value::Null => Ok((region.clone(), String::new())),
                    _ => Err(SyncError::ClientSide(format!(
                        "replica_regions: the KMS key of {region} must be a string"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(SyncError::ClientSide(
                    "replica_regions: expected a map of region to KMS key".to_string(),
                ));
            }
        };
        Ok(Settings {
            keys,
            region: string(config, "region")?,
            role_arn: string(config, "role_arn")?,
            external_id: string(config, "external_id")?,
            wif: string(config, "identity_token_audience")?.is_some(),
            kms_key_id: string(config, "kms_key_id")?,
            replica_regions,
            policy: Arc::new(EgressPolicy::from_config(config)?),
        })
    }

    fn replicas(&self) -> Option<Vec<sm::types::ReplicaRegionType>> {
        if self.replica_regions.is_empty() {
            return None;
        }
        Some(
            self.replica_regions
                .iter()
                .map(|(region, key)| {
                    sm::types::ReplicaRegionType::builder()
                        .region(region)
                        .set_kms_key_id((!key.is_empty()).then(|| key.clone()))
                        .build()
                })
                .collect(),
        )
    }
}

/// A string field of the config; absent, null or empty is `None`.
fn string(config: &Value, field: &str) -> Result<Option<String>, SyncError> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(SyncError::ClientSide(format!("{field}: expected a string"))),
    }
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

/// The Secrets Manager endpoint resolver, then the egress rules on its answer.
#[derive(Debug)]
struct CheckedSecretsManager {
    policy: Arc<EgressPolicy>,
    inner: sm::config::endpoint::DefaultResolver,
}

impl sm::config::endpoint::ResolveEndpoint for CheckedSecretsManager {
    fn resolve_endpoint<'a>(
        &'a self,
        params: &'a sm::config::endpoint::Params,
    ) -> sm::config::endpoint::EndpointFuture<'a> {
        sm::config::endpoint::EndpointFuture::new(async move {
            let endpoint = self.inner.resolve_endpoint(params).await?;
            check_endpoint(&self.policy, endpoint.url()).await?;
            Ok(endpoint)
        })
    }
}

/// The STS endpoint resolver (assumed roles), then the egress rules on its answer.
#[derive(Debug)]
struct CheckedSts {
    policy: Arc<EgressPolicy>,
    inner: aws_sdk_sts::config::endpoint::DefaultResolver,
}

impl aws_sdk_sts::config::endpoint::ResolveEndpoint for CheckedSts {
    fn resolve_endpoint<'a>(
        &'a self,
        params: &'a aws_sdk_sts::config::endpoint::Params,
    ) -> aws_sdk_sts::config::endpoint::EndpointFuture<'a> {
        aws_sdk_sts::config::endpoint::EndpointFuture::new(async move {
            let endpoint = self.inner.resolve_endpoint(params).await?;
            check_endpoint(&self.policy, endpoint.url()).await?;
            Ok(endpoint)
        })
    }
}

/// Resolves and checks an endpoint; the refusal travels through the SDK as the
/// error's source, a [`SyncError`] that [`classify`] finds and returns as is.
async fn check_endpoint(policy: &EgressPolicy, url: &str) -> Result<(), sm::error::BoxError> {
    let parsed = url::Url::parse(url).map_err(|e| {
        Box::new(SyncError::ClientSide(format!(
            "invalid {PROVIDER} endpoint {url:?}: {e}"
        ))) as sm::error::BoxError
    })?;
    policy
        .check_url(&parsed)
        .await
        .map_err(|e| Box::new(e) as sm::error::BoxError)
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
    // Our own verdicts (egress refusals) travel as an error source.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(s) = source {
        if let Some(e) = s.downcast_ref::<SyncError>() {
            return e.clone();
        }
        source = s.source();
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
