//! What the HTTP-based connectors share: a reqwest client bound to the
//! destination's egress rules, and the mapping of provider answers to sync
//! errors (status codes, retry hints, transport failures).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::header::HeaderMap;
use reqwest::redirect::Policy;
use zeroize::Zeroizing;

use super::egress::{Dns, EgressPolicy, EgressResolver, refusal};
use super::{DEFAULT_TIMEOUT, SyncError};

/// Longest provider error text copied into a status message.
const MAX_DETAIL: usize = 300;
/// Longest provider answer read: a longer one is refused unread (an endpoint
/// that streams without end must not exhaust the host's memory).
pub const MAX_BODY: usize = 1 << 20;
/// Longest message a failed provider call hands back (classification and
/// provider text together).
const MAX_MESSAGE: usize = 600;
/// Values shorter than this are not masked in provider messages (they would
/// garble the text and say nothing).
const MIN_MASKED: usize = 4;
/// A masked value's stand-in.
const MASK: &str = "*****";

/// The longest a provider's token is cached, whatever lifetime the provider
/// claims for it.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// A token lifetime of `seconds` as a provider states it, capped at
/// [`MAX_TOKEN_LIFETIME`]: an absurd claim (`expires_in` near 2^64) can
/// neither overflow the clock nor pin a token for ever.
pub fn token_lifetime(seconds: u64) -> Duration {
    Duration::from_secs(seconds).min(MAX_TOKEN_LIFETIME)
}

/// A client whose every connection obeys `policy`: the answers of `dns` are
/// filtered by it, redirects are not followed (a redirect could leave the
/// allowed addresses), and the environment's proxies are ignored.
pub fn client(policy: &Arc<EgressPolicy>, dns: &Dns) -> Result<reqwest::Client, SyncError> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(EgressResolver {
            policy: policy.clone(),
            dns: dns.clone(),
        }))
        .redirect(Policy::none())
        .no_proxy()
        .timeout(DEFAULT_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("kvsync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SyncError::Internal(format!("cannot build an HTTP client: {e}")))
}

/// Parses `url` and checks it against the egress rules: the port, and the
/// address of an IP literal, which bypasses the resolver (a name is checked
/// by the client's [`EgressResolver`] when it connects).
pub fn checked_url(policy: &EgressPolicy, url: &str) -> Result<url::Url, SyncError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| SyncError::ClientSide(format!("invalid provider URL {url:?}: {e}")))?;
    policy.check_url(&parsed)?;
    Ok(parsed)
}

/// The answer's body, at most [`MAX_BODY`] bytes: a longer one is refused
/// (by its `Content-Length`, or as soon as the stream passes the cap).
pub async fn read_body(
    provider: &str,
    mut resp: reqwest::Response,
) -> Result<Zeroizing<Vec<u8>>, SyncError> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_long(provider));
    }
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport_error(provider, &e))?
    {
        if body.len().saturating_add(chunk.len()) > MAX_BODY {
            return Err(too_long(provider));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// [`read_body`] as text (invalid UTF-8 replaced).
pub async fn read_text(
    provider: &str,
    resp: reqwest::Response,
) -> Result<Zeroizing<String>, SyncError> {
    let body = read_body(provider, resp).await?;
    Ok(Zeroizing::new(String::from_utf8_lossy(&body).into_owned()))
}

/// The error of an answer over [`MAX_BODY`].
pub fn too_long(provider: &str) -> SyncError {
    SyncError::ExternalService {
        message: format!(
            "{provider} sent an answer over {} MiB: not read",
            MAX_BODY >> 20
        ),
        retry_after: None,
    }
}

/// A URL the destination itself names, where its credentials go
/// (`enterprise_url`, `key_vault_uri`, a key file's `token_uri`): plain `http`
/// is refused unless the destination disables strict networking, as the
/// engine refuses it at write time. The operator's endpoint overrides are not
/// destination fields and may be plain `http`.
pub fn require_https(policy: &EgressPolicy, field: &str, url: &str) -> Result<(), SyncError> {
    let plain = url
        .trim_start()
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("http://"));
    if plain && !policy.disabled {
        return Err(SyncError::ClientSide(format!(
            "{field}: a plain http:// URL would carry the credentials in clear; use https, or set \
             disable_strict_networking"
        )));
    }
    Ok(())
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
    shortened(body, MAX_DETAIL)
}

/// `text` on one line, without control characters, at most `max` characters
/// (and an ellipsis).
fn shortened(text: &str, max: usize) -> String {
    let flat: String = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut out: String = flat.chars().take(max).collect();
    if flat.chars().count() > max {
        out.push('…');
    }
    out
}

/// `text` with every occurrence of each of `values` masked: as it is, in
/// base64 and JSON-escaped (the forms a request carries it in), and a
/// value's beginning cut short by an excerpt's ellipsis.
pub fn mask(text: &str, values: &[&str]) -> String {
    let mut out = text.to_string();
    for value in values.iter().filter(|v| v.len() >= MIN_MASKED) {
        let json = serde_json::to_string(value).unwrap_or_default();
        let forms = [
            value.to_string(),
            base64::engine::general_purpose::STANDARD.encode(value.as_bytes()),
            json.trim_matches('"').to_string(),
        ];
        for form in forms.iter().filter(|f| !f.is_empty()) {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), MASK);
            }
            out = mask_cut_prefix(&out, form);
        }
    }
    out
}

/// Masks the longest beginning of `form` (at least [`MIN_MASKED`] bytes)
/// that ends right before an ellipsis in `text`.
fn mask_cut_prefix(text: &str, form: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('…') {
        let (before, after) = rest.split_at(at);
        let cut = (MIN_MASKED..form.len().min(before.len().saturating_add(1)))
            .rev()
            .filter_map(|n| form.get(..n))
            .find(|prefix| before.ends_with(prefix));
        match cut {
            Some(prefix) => {
                out.push_str(
                    before
                        .get(..before.len() - prefix.len())
                        .unwrap_or_default(),
                );
                out.push_str(MASK);
            }
            None => out.push_str(before),
        }
        out.push('…');
        rest = after.get('…'.len_utf8()..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// The message of a failed provider call as it may be stored and shown:
/// `values` (the request's secret value and the destination's credentials)
/// masked, control characters removed, at most [`MAX_MESSAGE`] characters.
pub fn scrubbed(err: SyncError, values: &[&str]) -> SyncError {
    let clean = |m: String| shortened(&mask(&m, values), MAX_MESSAGE);
    match err {
        SyncError::ClientSide(m) => SyncError::ClientSide(clean(m)),
        SyncError::ExternalService {
            message,
            retry_after,
        } => SyncError::ExternalService {
            message: clean(message),
            retry_after,
        },
        SyncError::Internal(m) => SyncError::Internal(clean(m)),
    }
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
    if let Some(refused) = refusal(e) {
        return SyncError::ClientSide(refused.to_string());
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
    fn values_are_masked_whole_encoded_and_cut_short() {
        let value = "s3cr3t-\"value\"-123";
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        let text = format!(
            "a {value} b {b64} c {}",
            serde_json::to_string(value).unwrap()
        );
        let masked = mask(&text, &[value, "ab"]);
        assert_eq!(masked, "a ***** b ***** c \"*****\"");
        // An excerpt that cut the value short still hides its beginning.
        let cut = format!("x {}…", &value[..9]);
        assert_eq!(mask(&cut, &[value]), "x *****…");
        let err = scrubbed(
            SyncError::ClientSide(format!("bad\u{1b}[2J\r\n{value}{}", "y".repeat(2000))),
            &[value],
        );
        let SyncError::ClientSide(m) = err else {
            panic!("{err:?}")
        };
        assert!(m.starts_with("bad [2J *****y"), "{m}");
        assert!(!m.chars().any(char::is_control));
        assert_eq!(m.chars().count(), MAX_MESSAGE + 1);
    }

    #[test]
    fn details_are_short_and_flat() {
        let long = "x\n".repeat(500);
        let d = detail(&long);
        assert!(!d.contains('\n'));
        assert!(d.chars().count() <= MAX_DETAIL + 1);
    }
}
