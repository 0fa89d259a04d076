//! One destination's way to Vercel's API: its checked settings, its egress
//! rules, a client bound to them, URLs under the base URL, and answers read
//! with any echo of the secret value masked.

use std::sync::Arc;

use reqwest::header::HeaderMap;
use zeroize::Zeroizing;

use super::PROVIDER;
use super::config::{Config, Settings};
use crate::connectors::egress::{Dns, EgressPolicy};
use crate::connectors::{ConnectorEnv, Dest, SyncError, http};

/// One destination's way to the API: its settings, egress rules and client.
pub(super) struct Api<'a> {
    pub settings: Settings<'a>,
    policy: Arc<EgressPolicy>,
    pub client: reqwest::Client,
    base: url::Url,
}

/// A provider answer, body read (and zeroized on drop: it may hold values).
pub(super) struct Answer {
    pub status: reqwest::StatusCode,
    headers: HeaderMap,
    pub body: Zeroizing<String>,
}

impl Answer {
    pub fn error(&self) -> SyncError {
        http::status_error(PROVIDER, self.status.as_u16(), &self.headers, &self.body)
    }
}

impl<'a> Api<'a> {
    pub fn new(dest: &'a Dest<Config>, base_url: &str, dns: &Dns) -> Result<Self, SyncError> {
        let settings = dest.config.settings()?;
        let policy = dest.egress.clone();
        let client = http::client(&policy, dns)?;
        let base = url::Url::parse(base_url.trim_end_matches('/')).map_err(|e| {
            SyncError::Internal(format!(
                "invalid {} {base_url:?}: {e}",
                ConnectorEnv::VERCEL_API_URL
            ))
        })?;
        if base.cannot_be_a_base() {
            return Err(SyncError::Internal(format!(
                "invalid {} {base_url:?}",
                ConnectorEnv::VERCEL_API_URL
            )));
        }
        Ok(Api {
            settings,
            policy,
            client,
            base,
        })
    }

    /// `base/segments…?query&teamId=…`, every segment percent-encoded.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<url::Url, SyncError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| SyncError::Internal("the Vercel API URL cannot take a path".to_string()))?
            .pop_if_empty()
            .extend(segments);
        let team = self.settings.team_id.map(|t| ("teamId", t));
        let pairs: Vec<(&str, &str)> = query.iter().copied().chain(team).collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url)
    }

    /// Checks `url` against the egress rules, sends, reads the answer. Provider
    /// text that quotes `secret` (unlikely, but never shown) is masked.
    pub async fn send(
        &self,
        url: &url::Url,
        request: reqwest::RequestBuilder,
        secret: &str,
    ) -> Result<Answer, SyncError> {
        http::checked_url(&self.policy, url.as_str())?;
        let response = request
            .bearer_auth(self.settings.token.as_str())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| http::transport_error(PROVIDER, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = http::read_text(PROVIDER, response).await?;
        Ok(Answer {
            status,
            headers,
            body: scrub(body, secret),
        })
    }
}

/// `body` with every occurrence of `secret` masked.
pub(super) fn scrub(body: Zeroizing<String>, secret: &str) -> Zeroizing<String> {
    Zeroizing::new(http::mask(&body, &[secret]))
}
