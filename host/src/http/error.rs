//! The host's own HTTP errors (transport, limits, identity), mapped to status and
//! Vault's `{"errors":[...]}` body in one place. Every other body is the engine's.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header};

use crate::runtime::CallError;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("permission denied")]
    PermissionDenied,
    /// A token was presented that is unknown, revoked, expired or used up.
    #[error("permission denied")]
    InvalidToken,
    #[error("request body too large: the limit is {0} bytes")]
    PayloadTooLarge(usize),
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// A 400 whose message is shown as it is.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("storage unavailable")]
    Storage(String),
    #[error("not found")]
    NotFound,
    /// The request addresses a namespace that does not exist.
    #[error("namespace not found")]
    NamespaceNotFound,
    /// The body did not arrive within `http_read_timeout`.
    #[error("the request body did not arrive within http_read_timeout")]
    RequestTimeout,
    /// A rate-limit quota refused the request (`path`: the full request path); `headers` go
    /// on the response besides `Retry-After`.
    #[error("request path {path:?}: rate limit quota exceeded")]
    RateLimited {
        path: String,
        retry_after: u64,
        headers: Vec<(&'static str, String)>,
    },
}

impl HostError {
    pub fn status(&self) -> StatusCode {
        match self {
            HostError::PermissionDenied | HostError::InvalidToken => StatusCode::FORBIDDEN,
            HostError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HostError::BadRequest(_) | HostError::Refused(_) => StatusCode::BAD_REQUEST,
            HostError::NotFound | HostError::NamespaceNotFound => StatusCode::NOT_FOUND,
            HostError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            HostError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            HostError::Call(
                CallError::LimitExceeded(_) | CallError::Busy | CallError::TenantBusy,
            )
            | HostError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            HostError::Call(CallError::Trap(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client reads; internal details stay in the log.
    fn messages(&self) -> Vec<String> {
        match self {
            HostError::NotFound => vec![],
            HostError::InvalidToken => {
                vec!["permission denied".to_string(), "invalid token".to_string()]
            }
            HostError::Call(CallError::Trap(_)) => vec!["internal error".to_string()],
            HostError::Storage(_) => vec!["storage is unavailable; retry the request".to_string()],
            other => vec![other.to_string()],
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        if let HostError::Call(CallError::Trap(detail)) = &self {
            tracing::error!(detail = %detail, "the engine trapped; the request got a 500");
        }
        if let HostError::Storage(detail) = &self {
            tracing::error!(detail = %detail, "storage failure");
        }
        let body = serde_json::json!({ "errors": self.messages() }).to_string();
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        if let HostError::RateLimited {
            retry_after,
            headers,
            ..
        } = &self
        {
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    header::HeaderName::from_bytes(name.as_bytes()),
                    header::HeaderValue::from_str(value),
                ) {
                    h.insert(name, value);
                }
            }
            h.insert(header::RETRY_AFTER, header::HeaderValue::from(*retry_after));
        }
        // The rest of a late body is not worth waiting for.
        if matches!(self, HostError::RequestTimeout) {
            h.insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_503_and_traps_are_generic_500s() {
        let limit = HostError::Call(CallError::LimitExceeded("cpu time")).into_response();
        assert_eq!(limit.status(), StatusCode::SERVICE_UNAVAILABLE);
        let busy = HostError::Call(CallError::Busy).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        let tenant = HostError::Call(CallError::TenantBusy);
        assert_eq!(
            tenant.messages(),
            ["the namespace has too many requests in progress; retry the request"]
        );
        assert_eq!(tenant.status(), StatusCode::SERVICE_UNAVAILABLE);
        let trap = HostError::Call(CallError::Trap("wasm backtrace: secret detail".into()));
        assert_eq!(trap.messages(), vec!["internal error".to_string()]);
        assert_eq!(
            trap.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let big = HostError::PayloadTooLarge(10).into_response();
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(big.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            HostError::PermissionDenied.messages(),
            vec!["permission denied".to_string()]
        );
        let limited = HostError::RateLimited {
            path: "secret/data/x".into(),
            retry_after: 3,
            headers: vec![("x-ratelimit-limit", "2".into())],
        };
        assert_eq!(
            limited.messages(),
            ["request path \"secret/data/x\": rate limit quota exceeded"]
        );
        let limited = limited.into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "3");
        assert_eq!(limited.headers()["x-ratelimit-limit"], "2");
        let invalid = HostError::InvalidToken;
        assert_eq!(invalid.messages(), ["permission denied", "invalid token"]);
        assert_eq!(invalid.status(), StatusCode::FORBIDDEN);
    }
}
