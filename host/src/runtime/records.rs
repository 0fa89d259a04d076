//! The host's records of the engine's exports (a request and its response,
//! the sync worker's settings and report) and their conversion to and from
//! the WIT records. This is the only place where host types meet the
//! generated ones: fields are moved, never copied, except the caller, whose
//! copy for the guest is wiped once the call has returned.

use std::fmt;

use zeroize::Zeroize as _;

use super::bindings::exports::kvsync::engine::sync as wit_sync;
use super::bindings::kvsync::engine::types as wit;
use crate::auth::{Authority, Caller};

/// One API request below `/v1/`, after the host has applied its transport
/// limits and resolved the caller.
pub struct Request {
    /// The HTTP method as sent (`GET`, `LIST`, `POST`, ...).
    pub method: String,
    /// The path below `/v1/`, without a leading slash, still percent-encoded.
    pub path: String,
    /// The raw query string, without the leading `?`.
    pub query: String,
    /// Request headers, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `None` only on paths served without a token (`sys/health`).
    pub caller: Option<Caller>,
    /// The caller's compiled ACL and its namespace's stores, which the
    /// `authz` and `policies` imports answer with (`None`: no caller; the
    /// engine may then do nothing that needs a capability).
    pub authority: Option<Authority>,
}

/// The engine's answer to a [`Request`].
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

// Bodies carry secrets: `Debug` shows their size only.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("body_len", &self.body.len())
            .field("caller", &self.caller)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Where a request made sync work due (WIT `sync-due`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SyncDue {
    #[default]
    None,
    /// At these destinations (`<type>/<name>`), each named once.
    Destinations(Vec<String>),
    /// At every destination that has queued work (sync was enabled again).
    All,
}

/// What a request caused that the host must act on (WIT `effects`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The host wakes its sync worker for these.
    pub sync_due: SyncDue,
}

/// The engine's answer to a [`Request`] and what the request caused.
#[derive(Debug)]
pub struct Outcome {
    pub response: Response,
    pub effects: Effects,
}

/// The sync worker's timing knobs, as the engine's `sync.run` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    /// First retry delay after a retryable failure; doubles per attempt.
    pub backoff_base_ms: u64,
    /// Longest retry delay.
    pub backoff_cap_ms: u64,
    /// Coalescing window per association; 0: no coalescing.
    pub coalesce_window_ms: u64,
}

/// What one `sync.run` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Outbox entries processed.
    pub processed: u32,
    /// Of those, the ones that ended in an error status.
    pub failed: u32,
    /// When the next queued entry of the shard is due (ms since the Unix
    /// epoch); `None` when there is none.
    pub next_due_ms: Option<u64>,
}

/// A request as the guest receives it. The caller stays with the host (the
/// `authz` import answers for it); the guest gets a copy, whose token is
/// wiped when this is dropped.
pub(super) struct WitRequest(wit::Request);

impl WitRequest {
    /// Splits `req` into the WIT record, and the host's caller and authority.
    pub(super) fn split(req: Request) -> (Self, Option<Caller>, Option<Authority>) {
        let wit_caller = req.caller.as_ref().map(caller_to_wit);
        let wit_req = wit::Request {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: req.body,
            caller: wit_caller,
        };
        (WitRequest(wit_req), req.caller, req.authority)
    }

    pub(super) fn record(&self) -> &wit::Request {
        &self.0
    }
}

impl Drop for WitRequest {
    fn drop(&mut self) {
        if let Some(caller) = &mut self.0.caller {
            caller.token.zeroize();
        }
    }
}

fn caller_to_wit(c: &Caller) -> wit::Caller {
    wit::Caller {
        token: c.token.expose().to_owned(),
        accessor: c.accessor.clone(),
        display_name: c.display_name.clone(),
        policies: c.policies.clone(),
        path: c.path.clone(),
        creation_time: c.creation_time,
    }
}

pub(super) fn response_from_wit(r: wit::Response) -> Response {
    Response {
        status: r.status,
        headers: r.headers,
        body: r.body,
    }
}

pub(super) fn outcome_from_wit(o: wit::Outcome) -> Outcome {
    Outcome {
        response: response_from_wit(o.response),
        effects: Effects {
            sync_due: match o.effects.sync_due {
                wit::SyncDue::None => SyncDue::None,
                wit::SyncDue::Destinations(d) => SyncDue::Destinations(d),
                wit::SyncDue::All => SyncDue::All,
            },
        },
    }
}

pub(super) fn settings_to_wit(s: SyncSettings) -> wit_sync::Settings {
    wit_sync::Settings {
        backoff_base_ms: s.backoff_base_ms,
        backoff_cap_ms: s.backoff_cap_ms,
        coalesce_window_ms: s.coalesce_window_ms,
    }
}

pub(super) fn report_from_wit(r: wit_sync::RunReport) -> RunReport {
    RunReport {
        processed: r.processed,
        failed: r.failed,
        next_due_ms: r.next_due_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Token;

    #[test]
    fn the_guest_gets_a_copy_of_the_caller_and_the_host_keeps_it() {
        let caller = Caller {
            token: Token::new("hvs.tok".into()),
            accessor: "acc".into(),
            display_name: "root".into(),
            policies: vec!["root".into()],
            path: "auth/token/root".into(),
            creation_time: 7,
            namespace_id: "root".into(),
        };
        let req = Request {
            method: "GET".into(),
            path: "secret/data/a".into(),
            query: String::new(),
            headers: vec![],
            body: b"{}".to_vec(),
            caller: Some(caller.clone()),
            authority: None,
        };
        let (wit_req, kept, _) = WitRequest::split(req);
        assert_eq!(kept, Some(caller));
        let record = wit_req.record();
        assert_eq!(record.path, "secret/data/a");
        let copy = record.caller.as_ref().unwrap();
        assert_eq!(copy.token, "hvs.tok");
        assert_eq!(copy.policies, vec!["root".to_string()]);
        assert_eq!(copy.creation_time, 7);
    }

    #[test]
    fn debug_output_shows_no_body_or_token() {
        let req = Request {
            method: "POST".into(),
            path: "secret/data/a".into(),
            query: String::new(),
            headers: vec![],
            body: b"{\"data\":{\"password\":\"hunter2\"}}".to_vec(),
            caller: None,
            authority: None,
        };
        assert!(!format!("{req:?}").contains("hunter2"));
        let resp = Response {
            status: 200,
            headers: vec![],
            body: b"hunter2".to_vec(),
        };
        assert!(!format!("{resp:?}").contains("hunter2"));
    }
}
