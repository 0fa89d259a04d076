//! The `aws-sm` clients: one per destination (its credentials, region, role
//! and egress rules), built from the AWS config with the endpoints of the
//! [`ConnectorEnv`], the role assumed through STS when there is one, and
//! cached, because loading the AWS config (environment, profile files, region
//! and credential chains) costs far more than a call. A client with assumed-role
//! credentials is rebuilt [`RENEW_BEFORE`] they expire. Every endpoint the SDK
//! resolves goes through the destination's egress rules first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager as sm;
use sha2::{Digest, Sha256};
use sm::config::Region;

use super::config::Config;
use super::{PROVIDER, classify_with};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use http_body_util::Limited;

use crate::connectors::egress::{Dns, EgressPolicy, EgressResolver};
use crate::connectors::fields::Secret;
use crate::connectors::{ConnectorEnv, DEFAULT_TIMEOUT, Dest, SyncError, http};

/// The STS session name of an assumed role (shows in CloudTrail).
const SESSION_NAME: &str = "vault-secrets-sync";
/// Assumed-role credentials are renewed this long before they expire.
pub const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// Most clients kept; past it the oldest is dropped.
const MAX_CACHED: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client is cached under: everything that shapes it, the access
/// keys only as a SHA-256 digest (the key holds no credential).
#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    keys: Option<[u8; 32]>,
    region: Option<String>,
    role_arn: Option<String>,
    external_id: Option<String>,
    egress: EgressPolicy,
}

struct Cached {
    client: sm::Client,
    /// When the client's credentials expire (assumed roles only).
    expires: Option<SystemTime>,
    built: Instant,
}

/// The client cache and the endpoint overrides.
pub(super) struct Clients {
    cache: Mutex<HashMap<ClientKey, Cached>>,
    /// The Secrets Manager endpoint that overrides the SDK's resolution.
    secrets_manager_endpoint: Option<String>,
    /// The STS endpoint that overrides the SDK's resolution.
    sts_endpoint: Option<String>,
    dns: Dns,
}

impl Clients {
    pub fn new(env: &ConnectorEnv) -> Self {
        Clients {
            cache: Mutex::default(),
            secrets_manager_endpoint: env.aws_secrets_manager_endpoint().map(str::to_string),
            sts_endpoint: env.aws_sts_endpoint().map(str::to_string),
            dns: env.dns.clone(),
        }
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<ClientKey, Cached>> {
        // Every update is one insert or remove: a panic elsewhere cannot have
        // left the map half-written.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The destination's client: cached, or built (and cached).
    pub async fn client(&self, dest: &Dest<Config>) -> Result<sm::Client, SyncError> {
        let keys = dest.config.keys()?;
        let key = ClientKey {
            keys: keys.map(|(id, secret)| {
                let mut digest = Sha256::new();
                digest.update(id.as_str().as_bytes());
                digest.update([0]);
                digest.update(secret.as_str().as_bytes());
                digest.finalize().into()
            }),
            region: dest.config.region.clone(),
            role_arn: dest.config.role_arn.clone(),
            external_id: dest.config.external_id.clone(),
            egress: (*dest.egress).clone(),
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
        let (client, expires) = self.build(dest, keys).await?;
        let mut cache = self.cache();
        cache.retain(|_, c| fresh(c));
        if cache.len() >= MAX_CACHED {
            let oldest = cache
                .iter()
                .min_by_key(|(_, c)| c.built)
                .map(|(k, _)| k.clone());
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
        dest: &Dest<Config>,
        keys: Option<(&Secret, &Secret)>,
    ) -> Result<(sm::Client, Option<SystemTime>), SyncError> {
        let config = &dest.config;
        if config.identity_token_audience.is_some() {
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
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret)) = keys {
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
        // The destination's HTTP client: its resolver checks every address in
        // the lookup the connection uses. Only the Secrets Manager and STS
        // clients get it: the credential chain (IMDS, profiles) is the
        // operator's, not the destination's.
        let http = SharedHttpClient::new(Capped(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .build_with_resolver(EgressResolver {
                    policy: dest.egress.clone(),
                    dns: self.dns.clone(),
                }),
        ));
        let mut sm_config = sm::config::Builder::from(&sdk).http_client(http.clone());
        if let Some(endpoint) = &self.secrets_manager_endpoint {
            sm_config = sm_config.endpoint_url(endpoint);
        }
        let mut sm_config = sm_config.endpoint_resolver(CheckedSecretsManager {
            policy: dest.egress.clone(),
            inner: sm::config::endpoint::DefaultResolver::new(),
        });
        let mut expires = None;
        if let Some(role_arn) = &config.role_arn {
            let mut sts = aws_sdk_sts::config::Builder::from(&sdk).http_client(http);
            if let Some(endpoint) = &self.sts_endpoint {
                sts = sts.endpoint_url(endpoint);
            }
            let sts = aws_sdk_sts::Client::from_conf(
                sts.endpoint_resolver(CheckedSts {
                    policy: dest.egress.clone(),
                    inner: aws_sdk_sts::config::endpoint::DefaultResolver::new(),
                })
                .build(),
            );
            let assumed = sts
                .assume_role()
                .role_arn(role_arn)
                .role_session_name(SESSION_NAME)
                .set_external_id(config.external_id.clone())
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
            sm_config = sm_config.credentials_provider(sm::config::Credentials::new(
                creds.access_key_id(),
                creds.secret_access_key(),
                Some(creds.session_token().to_string()),
                expiry,
                "AssumeRole",
            ));
        }
        Ok((sm::Client::from_conf(sm_config.build()), expires))
    }
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
            check_endpoint(&self.policy, endpoint.url())?;
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
            check_endpoint(&self.policy, endpoint.url())?;
            Ok(endpoint)
        })
    }
}

/// The SDK's HTTP client with every answer read up to [`http::MAX_BODY`]
/// (a longer one fails with a `LengthLimitError` as its source).
#[derive(Debug)]
struct Capped(SharedHttpClient);

impl HttpClient for Capped {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(CappedConnector(self.0.http_connector(settings, components)))
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

#[derive(Debug)]
struct CappedConnector(SharedHttpConnector);

impl HttpConnector for CappedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let answer = self.0.call(request);
        HttpConnectorFuture::new(async move {
            let response = answer.await?;
            Ok(response.map(|body| SdkBody::from_body_1_x(Limited::new(body, http::MAX_BODY))))
        })
    }
}

/// Checks an endpoint's port (and address, for a literal: the resolver never
/// sees those); the refusal travels through the SDK as the error's source, a
/// [`SyncError`] that [`classify_with`] finds and returns as is.
fn check_endpoint(policy: &EgressPolicy, url: &str) -> Result<(), sm::error::BoxError> {
    let parsed = url::Url::parse(url).map_err(|e| {
        Box::new(SyncError::ClientSide(format!(
            "invalid {PROVIDER} endpoint {url:?}: {e}"
        ))) as sm::error::BoxError
    })?;
    policy
        .check_url(&parsed)
        .map_err(|e| Box::new(e) as sm::error::BoxError)
}
