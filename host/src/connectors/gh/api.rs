//! One GitHub API exchange through octocrab's stack, and how its answers and
//! failures map to sync errors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::Method;
use hyper::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use octocrab::Octocrab;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::connectors::SyncError;
use crate::connectors::egress::{cause, refusal};
use crate::connectors::http::{MAX_BODY, detail, retry_after, status_error, too_long};

const PROVIDER: &str = "GitHub";
const MEDIA_TYPE: &str = "application/vnd.github+json";
/// GitHub's advice for a secondary rate limit without a retry hint.
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// A failed step: a 401 is kept apart so that a cached installation token
/// can be renewed once.
pub(super) enum Failure {
    Unauthorized(SyncError),
    Other(SyncError),
}

impl From<SyncError> for Failure {
    fn from(e: SyncError) -> Self {
        Failure::Other(e)
    }
}

/// A provider answer, read in full.
pub(super) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// GitHub's `message` (plus its `errors`), else a short excerpt of the body.
    pub fn message(&self) -> String {
        let text = match serde_json::from_slice::<Value>(&self.body) {
            Ok(v) => match (v.get("message").and_then(Value::as_str), v.get("errors")) {
                (Some(m), Some(errors)) => format!("{m} {errors}"),
                (Some(m), None) => m.to_string(),
                _ => String::from_utf8_lossy(&self.body).into_owned(),
            },
            Err(_) => String::from_utf8_lossy(&self.body).into_owned(),
        };
        let text = detail(&text);
        if text.is_empty() {
            "(no details)".to_string()
        } else {
            text
        }
    }

    pub fn failure(&self, what: &str) -> Failure {
        let e = self.error(what);
        if self.status == 401 {
            Failure::Unauthorized(e)
        } else {
            Failure::Other(e)
        }
    }

    /// Classifies an error answer (see [`status_error`] for throttling and 5xx).
    pub fn error(&self, what: &str) -> SyncError {
        let message = self.message();
        let exhausted = self
            .headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0");
        let throttled = self.status == 429
            || self.status >= 500
            || (self.status == 403 && (exhausted || self.headers.contains_key("retry-after")));
        if throttled {
            return match status_error(PROVIDER, self.status, &self.headers, &message) {
                SyncError::ExternalService {
                    message,
                    retry_after,
                } => SyncError::ExternalService {
                    message: format!("{message} ({what})"),
                    retry_after,
                },
                other => other,
            };
        }
        match self.status {
            401 => SyncError::ClientSide(format!(
                "GitHub refused the credentials (401 {message}) while {what}: bad credentials"
            )),
            // Secondary rate limits may come without any header.
            403 if message.to_ascii_lowercase().contains("rate limit") => {
                SyncError::ExternalService {
                    message: format!("GitHub throttled {what} (403 {message})"),
                    retry_after: retry_after(&self.headers).or(Some(SECONDARY_LIMIT_WAIT)),
                }
            }
            403 => SyncError::ClientSide(format!(
                "GitHub denied {what} (403 {message}): the credentials lack the permission"
            )),
            404 => SyncError::ClientSide(format!(
                "GitHub answered 404 while {what} ({message}): check that it exists and that the \
                 credentials can see it"
            )),
            status => {
                SyncError::ClientSide(format!("GitHub answered {status} while {what}: {message}"))
            }
        }
    }
}

/// One request through octocrab's stack (base URI, timeouts), with our
/// `Authorization` and GitHub's media type.
pub(super) async fn send(
    crab: &Octocrab,
    method: Method,
    path: &str,
    auth: &HeaderValue,
    body: Option<&Value>,
) -> Result<Reply, SyncError> {
    let builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(AUTHORIZATION, auth.clone())
        .header(ACCEPT, MEDIA_TYPE);
    let request = crab
        .build_request(builder, body)
        .map_err(|e| SyncError::Internal(format!("cannot build a GitHub request: {e}")))?;
    let response = crab
        .execute(request)
        .await
        .map_err(|e| transport_error(&e))?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| match cause::<LengthLimitError>(e.as_ref()) {
            Some(_) => too_long(PROVIDER),
            None => transport_error(e.as_ref()),
        })?
        .to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// An egress refusal is the destination's configuration; timeouts and
/// connection failures are retryable. octocrab's errors carry no request body
/// or header, so their text is safe to show.
fn transport_error(e: &(dyn std::error::Error + 'static)) -> SyncError {
    use std::io::ErrorKind;
    if let Some(refused) = refusal(e) {
        return SyncError::ClientSide(refused.to_string());
    }
    let mut what = "failed";
    let mut texts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::TimedOut => what = "timed out",
                ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
                | ErrorKind::AddrNotAvailable
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::UnexpectedEof
                | ErrorKind::BrokenPipe
                    if what != "timed out" =>
                {
                    what = "could not be reached";
                }
                _ => {}
            }
        }
        let text = err.to_string();
        if !texts.iter().any(|t| t.contains(&text)) {
            texts.push(text);
        }
        cur = err.source();
    }
    SyncError::ExternalService {
        message: format!("{PROVIDER} {what}: {}", detail(&texts.join(": "))),
        retry_after: None,
    }
}

/// `Bearer <token>`, marked sensitive; a token that cannot be a header value
/// is refused (octocrab would panic on it).
pub(super) fn bearer(token: &str) -> Result<HeaderValue, SyncError> {
    let text = Zeroizing::new(format!("Bearer {token}"));
    let mut value = HeaderValue::from_str(&text).map_err(|_| {
        SyncError::ClientSide(
            "the GitHub token contains characters that cannot be sent in an HTTP header"
                .to_string(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The app JWT GitHub expects: RS256, `iss` = app id, issued a minute ago
/// (clock drift), valid nine minutes (GitHub allows ten).
pub(super) fn app_jwt(
    app_id: u64,
    private_key: &str,
    now: u64,
) -> Result<Zeroizing<String>, SyncError> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes()).map_err(|_| {
        SyncError::ClientSide(format!(
            "the private key of GitHub App {app_id} is not an RSA private key in PEM format"
        ))
    })?;
    let claims = json!({"iat": now.saturating_sub(60), "exp": now + 540, "iss": app_id});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map(Zeroizing::new)
    .map_err(|e| SyncError::Internal(format!("cannot sign the JWT of GitHub App {app_id}: {e}")))
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SS[.fff](Z|+00:00)`.
pub(super) fn parse_utc(s: &str) -> Option<u64> {
    let (date, time) = s.trim().split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let time = time
        .strip_suffix('Z')
        .or_else(|| time.strip_suffix("+00:00"))?;
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&'static str, &str)], body: Value) -> Reply {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        Reply {
            status,
            headers: h,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn error_answers_map_to_sync_errors() {
        let what = "writing secret X";
        let e = reply(401, &[], json!({"message": "Bad credentials"})).error(what);
        assert!(
            matches!(&e, SyncError::ClientSide(m) if m.contains("bad credentials")),
            "{e:?}"
        );
        // A plain 403 is a permission problem, even with budget left.
        let e = reply(
            403,
            &[("x-ratelimit-remaining", "4999")],
            json!({"message": "Resource not accessible by personal access token"}),
        )
        .error(what);
        assert!(
            matches!(&e, SyncError::ClientSide(m) if m.contains("permission")),
            "{e:?}"
        );
        // Primary rate limit: wait until the reset time.
        let reset = (unix_now() + 30).to_string();
        let e = reply(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
            ],
            json!({"message": "API rate limit exceeded"}),
        )
        .error(what);
        match e {
            SyncError::ExternalService { retry_after, .. } => {
                let s = retry_after.unwrap().as_secs();
                assert!((28..=30).contains(&s), "{s}");
            }
            other => panic!("{other:?}"),
        }
        // 429 / 403 with retry-after.
        for status in [429, 403] {
            match reply(
                status,
                &[("retry-after", "7")],
                json!({"message": "slow down"}),
            )
            .error(what)
            {
                SyncError::ExternalService {
                    retry_after,
                    message,
                } => {
                    assert_eq!(retry_after, Some(Duration::from_secs(7)));
                    assert!(message.contains(what), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        // Secondary limit without headers.
        match reply(
            403,
            &[],
            json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}),
        )
        .error(what)
        {
            SyncError::ExternalService { retry_after, .. } => assert_eq!(retry_after, Some(SECONDARY_LIMIT_WAIT)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            reply(404, &[], json!({"message": "Not Found"})).error(what),
            SyncError::ClientSide(_)
        ));
        assert!(matches!(
            reply(422, &[], json!({"message": "Invalid"})).error(what),
            SyncError::ClientSide(_)
        ));
        assert!(matches!(
            reply(502, &[], json!("bad gateway")).error(what),
            SyncError::ExternalService { .. }
        ));
        assert!(matches!(
            reply(401, &[], json!({})).failure(what),
            Failure::Unauthorized(_)
        ));
    }

    #[test]
    fn transport_errors_are_retryable() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out");
        match transport_error(&io) {
            SyncError::ExternalService { message, .. } => {
                assert!(message.contains("timed out"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        match transport_error(&io) {
            SyncError::ExternalService { message, .. } => {
                assert!(message.contains("could not be reached"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(parse_utc("2016-07-11T22:14:10Z"), Some(1_468_275_250));
        assert_eq!(
            parse_utc("2016-07-11T22:14:10.123+00:00"),
            Some(1_468_275_250)
        );
        assert_eq!(parse_utc("yesterday"), None);
        assert!(
            matches!(bearer("bad\ntoken"), Err(SyncError::ClientSide(m)) if !m.contains("bad"))
        );
        assert!(bearer("ghp_ok").unwrap().is_sensitive());
        let e = app_jwt(1, "not a key", 1000).unwrap_err();
        assert!(matches!(e, SyncError::ClientSide(_)));
    }
}
