//! The connectors' environment: every provider endpoint override the server
//! takes from its process environment, read once at start-up into a
//! [`ConnectorEnv`] that the registry hands to each connector when it builds
//! it. No connector reads the process environment itself; tests build a
//! `ConnectorEnv` that points at their fakes.
//!
//! | variable | overrides |
//! |---|---|
//! | `AWS_ENDPOINT_URL` | every AWS endpoint (Secrets Manager and STS) |
//! | `AWS_ENDPOINT_URL_SECRETS_MANAGER` | the Secrets Manager endpoint (before `AWS_ENDPOINT_URL`) |
//! | `AWS_ENDPOINT_URL_STS` | the STS endpoint of assumed roles (before `AWS_ENDPOINT_URL`) |
//! | `AZURE_AUTHORITY_HOST` | the Microsoft Entra ID authority (else the destination's `cloud`) |
//! | `KVSYNC_GCP_SECRET_MANAGER_URL` | Google Secret Manager's API base URL |
//! | `KVSYNC_VERCEL_API_URL` | Vercel's API base URL |
//!
//! The AWS names are the SDK's own: the AWS SDK also reads them (and the rest
//! of its configuration: region, profiles, credential chain) through
//! aws-config; the connector sets the endpoints explicitly from here, so the
//! two always agree in the server and tests need no process environment.
//! Values are trimmed; an empty value counts as unset.

use super::egress::Dns;

/// Where the connectors reach their providers, when not at the providers'
/// public endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorEnv {
    /// `AWS_ENDPOINT_URL`.
    pub aws_endpoint_url: Option<String>,
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
    pub aws_secrets_manager_endpoint_url: Option<String>,
    /// `AWS_ENDPOINT_URL_STS`.
    pub aws_sts_endpoint_url: Option<String>,
    /// `AZURE_AUTHORITY_HOST`.
    pub azure_authority_host: Option<String>,
    /// `KVSYNC_GCP_SECRET_MANAGER_URL`.
    pub gcp_secret_manager_url: Option<String>,
    /// `KVSYNC_VERCEL_API_URL`.
    pub vercel_api_url: Option<String>,
    /// How provider host names are resolved: the system's resolver (no
    /// variable sets it; tests put a double here).
    pub dns: Dns,
}

impl ConnectorEnv {
    pub const AWS_ENDPOINT_URL: &'static str = "AWS_ENDPOINT_URL";
    pub const AWS_ENDPOINT_URL_SECRETS_MANAGER: &'static str = "AWS_ENDPOINT_URL_SECRETS_MANAGER";
    pub const AWS_ENDPOINT_URL_STS: &'static str = "AWS_ENDPOINT_URL_STS";
    pub const AZURE_AUTHORITY_HOST: &'static str = "AZURE_AUTHORITY_HOST";
    pub const GCP_SECRET_MANAGER_URL: &'static str = "KVSYNC_GCP_SECRET_MANAGER_URL";
    pub const VERCEL_API_URL: &'static str = "KVSYNC_VERCEL_API_URL";

    /// The overrides that `lookup` gives for each variable name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let read = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        ConnectorEnv {
            aws_endpoint_url: read(Self::AWS_ENDPOINT_URL),
            aws_secrets_manager_endpoint_url: read(Self::AWS_ENDPOINT_URL_SECRETS_MANAGER),
            aws_sts_endpoint_url: read(Self::AWS_ENDPOINT_URL_STS),
            azure_authority_host: read(Self::AZURE_AUTHORITY_HOST),
            gcp_secret_manager_url: read(Self::GCP_SECRET_MANAGER_URL),
            vercel_api_url: read(Self::VERCEL_API_URL),
            dns: Dns::System,
        }
    }

    /// The Secrets Manager endpoint: the service's own variable, else the
    /// general one.
    pub fn aws_secrets_manager_endpoint(&self) -> Option<&str> {
        self.aws_secrets_manager_endpoint_url
            .as_deref()
            .or(self.aws_endpoint_url.as_deref())
    }

    /// The STS endpoint: the service's own variable, else the general one.
    pub fn aws_sts_endpoint(&self) -> Option<&str> {
        self.aws_sts_endpoint_url
            .as_deref()
            .or(self.aws_endpoint_url.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_trimmed_and_empty_ones_unset() {
        let env = ConnectorEnv::from_lookup(|name| match name {
            "AWS_ENDPOINT_URL" => Some(" http://127.0.0.1:1 ".into()),
            "AWS_ENDPOINT_URL_STS" => Some("http://127.0.0.1:2".into()),
            "AZURE_AUTHORITY_HOST" => Some("  ".into()),
            "KVSYNC_VERCEL_API_URL" => Some("http://127.0.0.1:3/".into()),
            _ => None,
        });
        assert_eq!(
            env,
            ConnectorEnv {
                aws_endpoint_url: Some("http://127.0.0.1:1".into()),
                aws_sts_endpoint_url: Some("http://127.0.0.1:2".into()),
                vercel_api_url: Some("http://127.0.0.1:3/".into()),
                ..ConnectorEnv::default()
            }
        );
        // Each AWS service: its own variable first, then the general one.
        assert_eq!(
            env.aws_secrets_manager_endpoint(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(env.aws_sts_endpoint(), Some("http://127.0.0.1:2"));
        assert_eq!(ConnectorEnv::default().aws_sts_endpoint(), None);
    }
}
