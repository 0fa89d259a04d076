//! What the HTTP-based connectors share: a reqwest client bound to the
//! destination's egress rules, and the mapping of provider answers to sync
//! errors (status codes, retry hints, transport failures).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::redirect::Policy;

use super::egress::{EgressPolicy, EgressRefused, EgressResolver};
use super::{DEFAULT_TIMEOUT, SyncError};

/// Longest provider error text copied into a status message.
const MAX_DETAIL: usize = 300;

/// The longest a provider's token is cached, whatever lifetime the provider
/// claims for it.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// A token lifetime of `seconds` as a provider states it, capped at
/// [`MAX_TOKEN_LIFETIME`]: an absurd claim (`expires_in` near 2^64) can
/// neither overflow the clock nor pin a token for ever.
pub fn token_lifetime(seconds: u64) -> Duration {
    Duration::from_secs(seconds).min(MAX_TOKEN_LIFETIME)
}

/// A client whose every connection obeys `policy`: DNS answers are filtered by
/// it, redirects are not followed (a redirect could leave the allowed
/// addresses), and the environment's proxies are ignored.
pub fn client(policy: &Arc<EgressPolicy>) -> Result<reqwest::Client, SyncError> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(EgressResolver {
            policy: policy.clone(),
        }))
        .redirect(Policy::none())
        .no_proxy()
        .timeout(DEFAULT_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("kvsync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SyncError::Internal(format!("cannot build an HTTP client: {e}")))
}

/// Parses `url` and checks it against the egress rules (port, and addresses
/// for IP literals, which bypass the resolver).
pub async fn checked_url(policy: &EgressPolicy, url: &str) -> Result<url::Url, SyncError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| SyncError::ClientSide(format!("invalid provider URL {url:?}: {e}")))?;
    policy.check_url(&parsed).await?;
    Ok(parsed)
}

/// The provider's retry hint: `Retry-After` (seconds or an HTTP date), else a
/// rate-limit reset time (`x-ratelimit-reset`, Unix seconds).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(v) = header("retry-after") {
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = httpdate(v) {
            return Some(at.duration_since(SystemTime::now()).unwrap_or_default());
        }
    }
    if let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok()) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        return Some(Duration::from_secs(reset.saturating_sub(now)));
    }
    None
}

/// RFC 7231 IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn httpdate(s: &str) -> Result<SystemTime, ()> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return Err(());
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)
    .ok_or(())? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().map_err(|_| ())?, year.parse().map_err(|_| ())?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().map_err(|_| ()))
        .collect::<Result<_, _>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return Err(());
    };
    // Days from civil (Howard Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    u64::try_from(secs)
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| ())
}

/// A short, single-line excerpt of a provider's error body.
pub fn detail(body: &str) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = flat.chars().take(MAX_DETAIL).collect();
    if flat.chars().count() > MAX_DETAIL {
        out.push('…');
    }
    out
}

/// Maps an HTTP error answer to a sync error. Throttling (429, or a 403 that
/// carries an exhausted rate limit) and 5xx are retryable; other 4xx are the
/// destination's configuration.
pub fn status_error(provider: &str, status: u16, headers: &HeaderMap, body: &str) -> SyncError {
    let exhausted = headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0");
    let message = format!("{provider} answered {status}: {}", detail(body));
    if status == 429
        || status >= 500
        || (status == 403 && (exhausted || headers.contains_key("retry-after")))
    {
        SyncError::ExternalService {
            message,
            retry_after: retry_after(headers),
        }
    } else {
        SyncError::ClientSide(message)
    }
}

/// Maps a transport failure: a refused egress is the destination's
/// configuration; timeouts and connection failures are retryable.
pub fn transport_error(provider: &str, e: &reqwest::Error) -> SyncError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<EgressRefused>() {
            return SyncError::ClientSide(refused.to_string());
        }
        source = s.source();
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not be reached"
    } else {
        "failed"
    };
    SyncError::ExternalService {
        // reqwest's Display includes the URL, never the body.
        message: format!("{provider} {what}: {e}"),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn statuses_map_to_sync_errors() {
        let mut h = HeaderMap::new();
        assert!(matches!(
            status_error("p", 401, &h, "bad"),
            SyncError::ClientSide(_)
        ));
        assert!(matches!(
            status_error("p", 403, &h, "no"),
            SyncError::ClientSide(_)
        ));
        assert!(matches!(
            status_error("p", 503, &h, ""),
            SyncError::ExternalService { .. }
        ));
        h.insert("retry-after", HeaderValue::from_static("7"));
        match status_error("p", 429, &h, "slow down") {
            SyncError::ExternalService { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
        let mut gh = HeaderMap::new();
        gh.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        assert!(matches!(
            status_error("p", 403, &gh, "rate limit"),
            SyncError::ExternalService { .. }
        ));
    }

    #[test]
    fn parses_http_dates() {
        let t = httpdate("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        assert!(httpdate("yesterday").is_err());
    }

    #[test]
    fn details_are_short_and_flat() {
        let long = "x\n".repeat(500);
        let d = detail(&long);
        assert!(!d.contains('\n'));
        assert!(d.chars().count() <= MAX_DETAIL + 1);
    }
}
