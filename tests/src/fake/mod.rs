//! A tiny HTTP framework for provider fakes.
//!
//! Every fake runs on 127.0.0.1 (ephemeral port) and shares:
//! - a **fault table** (`POST /_admin/faults` with `{"method", "path_prefix",
//!   "status", "body", "headers", "delay_ms", "hold_ms", "drop", "times"}`):
//!   the next `times` matching requests get that answer (or a dropped
//!   connection, or a delay before the real answer, or — `status` 0 and
//!   `hold_ms` — the real answer, its effect applied at once and the answer
//!   held back that long: a provider that did the work while its client dies);
//!   `DELETE /_admin/faults` clears it;
//! - a **call log** (`GET /_admin/calls` → `[{"method","path","at_ms"}]`, `at_ms`
//!   being when the request arrived, in ms since the Unix epoch; `DELETE` clears it);
//! - the fake's own **state** (`GET /_admin/state`), which tests compare with
//!   what kvsync was supposed to write.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub mod aws;
pub mod azure;
pub mod gcp;
pub mod github;
pub mod vercel;

/// The fields of a JSON object literal (`json!({...})`), for a body that
/// then gains optional fields; anything but an object gives no fields.
pub fn object(literal: Value) -> Map<String, Value> {
    match literal {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

/// `%XX` decoding of a URL path segment (`+` stays `+`); sequences that are
/// not valid escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of Unix seconds, without a zone: each fake
/// adds the fraction and `Z` its provider writes.
pub fn utc_datetime(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or_default();
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A request as a fake sees it (body already read).
#[derive(Debug, Clone)]
pub struct FakeRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl FakeRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Result<Value, FakeResponse> {
        serde_json::from_slice(&self.body)
            .map_err(|e| FakeResponse::json(400, json!({"message": format!("invalid JSON: {e}")})))
    }

    /// The bearer token of the `Authorization` header.
    pub fn bearer(&self) -> Option<&str> {
        let v = self.header("authorization")?;
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .or_else(|| v.strip_prefix("token "))
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| v.to_string())
        })
    }
}

#[derive(Debug, Clone)]
pub struct FakeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl FakeResponse {
    pub fn json(status: u16, body: Value) -> Self {
        FakeResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn empty(status: u16) -> Self {
        FakeResponse {
            status,
            headers: vec![],
            body: vec![],
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// One provider fake.
pub trait Service: Send + Sync + 'static {
    fn handle(&self, req: &FakeRequest) -> FakeResponse;
    /// What the provider holds, for tests to compare.
    fn state(&self) -> Value;
}

/// What answers the requests that no fault intercepts.
#[derive(Clone)]
pub enum Backend {
    /// A fake provider.
    Fake(Arc<dyn Service>),
    /// A transparent proxy in front of an emulator (moto), for its faults.
    Proxy {
        upstream: String,
        client: reqwest::Client,
    },
}

impl Backend {
    pub fn proxy(upstream: &str) -> Result<Self, reqwest::Error> {
        Ok(Backend::Proxy {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder().no_proxy().build()?,
        })
    }

    fn state(&self) -> Value {
        match self {
            Backend::Fake(s) => s.state(),
            Backend::Proxy { upstream, .. } => json!({ "upstream": upstream }),
        }
    }

    async fn answer(&self, req: &FakeRequest) -> Action {
        match self {
            Backend::Fake(s) => Action::Answer(s.handle(req)),
            Backend::Proxy { upstream, client } => {
                let url = if req.query.is_empty() {
                    format!("{upstream}{}", req.path)
                } else {
                    format!("{upstream}{}?{}", req.path, req.query)
                };
                let Ok(method) = reqwest::Method::from_bytes(req.method.as_bytes()) else {
                    return Action::Answer(FakeResponse::empty(405));
                };
                let mut out = client.request(method, url).body(req.body.clone());
                for (k, v) in &req.headers {
                    if k != hyper::header::HOST && k != hyper::header::CONTENT_LENGTH {
                        out = out.header(k, v);
                    }
                }
                match out.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let headers = resp
                            .headers()
                            .iter()
                            .filter(|(k, _)| {
                                *k != hyper::header::CONTENT_LENGTH
                                    && *k != hyper::header::TRANSFER_ENCODING
                            })
                            .filter_map(|(k, v)| {
                                v.to_str()
                                    .ok()
                                    .map(|v| (k.as_str().to_string(), v.to_string()))
                            })
                            .collect();
                        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                        Action::Answer(FakeResponse {
                            status,
                            headers,
                            body,
                        })
                    }
                    Err(_) => Action::Answer(FakeResponse::empty(502)),
                }
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub body: Value,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub hold_ms: u64,
    #[serde(default)]
    pub drop: bool,
    #[serde(default = "one")]
    pub times: u32,
}

fn default_status() -> u16 {
    500
}

fn one() -> u32 {
    1
}

impl Fault {
    fn matches(&self, req: &FakeRequest) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| req.path.starts_with(p))
    }
}

#[derive(Default)]
struct Admin {
    faults: Mutex<VecDeque<Fault>>,
    calls: Mutex<Vec<(String, String, u64)>>,
}

enum Action {
    Answer(FakeResponse),
    Drop,
}

impl Admin {
    fn take_fault(&self, req: &FakeRequest) -> Option<Fault> {
        let mut faults = self.faults.lock().ok()?;
        let i = faults.iter().position(|f| f.times > 0 && f.matches(req))?;
        let f = faults.get_mut(i)?;
        f.times -= 1;
        let out = f.clone();
        if f.times == 0 {
            faults.remove(i);
        }
        Some(out)
    }

    fn handle_admin(&self, req: &FakeRequest, service: &Backend) -> Option<FakeResponse> {
        let rest = req.path.strip_prefix("/_admin/")?;
        Some(match (req.method.as_str(), rest) {
            ("GET", "state") => FakeResponse::json(200, service.state()),
            ("GET", "calls") => {
                let calls = self.calls.lock().map(|c| c.clone()).unwrap_or_default();
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|(m, p, at)| json!({"method": m, "path": p, "at_ms": at}))
                    .collect();
                FakeResponse::json(200, Value::Array(calls))
            }
            ("DELETE", "calls") => {
                if let Ok(mut c) = self.calls.lock() {
                    c.clear();
                }
                FakeResponse::empty(204)
            }
            ("POST", "faults") => match serde_json::from_slice::<Fault>(&req.body) {
                Ok(f) => {
                    if let Ok(mut faults) = self.faults.lock() {
                        faults.push_back(f);
                    }
                    FakeResponse::empty(204)
                }
                Err(e) => FakeResponse::json(400, json!({"message": e.to_string()})),
            },
            ("DELETE", "faults") => {
                if let Ok(mut faults) = self.faults.lock() {
                    faults.clear();
                }
                FakeResponse::empty(204)
            }
            _ => FakeResponse::json(404, json!({"message": "unknown admin route"})),
        })
    }

    async fn dispatch(&self, req: FakeRequest, service: &Backend) -> Action {
        if let Some(resp) = self.handle_admin(&req, service) {
            return Action::Answer(resp);
        }
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((req.method.clone(), req.path.clone(), now_ms()));
        }
        let mut hold_ms = 0;
        if let Some(fault) = self.take_fault(&req) {
            hold_ms = fault.hold_ms;
            if fault.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
            }
            if fault.drop {
                return Action::Drop;
            }
            if fault.status != 0 {
                let mut resp = if fault.body.is_null() {
                    FakeResponse::empty(fault.status)
                } else if let Value::String(s) = &fault.body {
                    FakeResponse {
                        status: fault.status,
                        headers: vec![],
                        body: s.clone().into_bytes(),
                    }
                } else {
                    FakeResponse::json(fault.status, fault.body.clone())
                };
                resp.headers.extend(fault.headers.iter().cloned());
                return Action::Answer(resp);
            }
        }
        let action = service.answer(&req).await;
        if hold_ms > 0 {
            tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        }
        action
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// A running fake; stops when dropped.
pub struct FakeServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `service` on 127.0.0.1 (`port` 0: ephemeral) on its own thread.
    pub fn start(service: Backend, port: u16) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let admin = Arc::new(Admin::default());
                    loop {
                        let (stream, _) = tokio::select! {
                            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                            _ = &mut stopped => return,
                        };
                        let (admin, service) = (admin.clone(), service.clone());
                        tokio::spawn(async move {
                            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                                let (admin, service) = (admin.clone(), service.clone());
                                async move { serve_one(req, &admin, &service).await }
                            });
                            let _ =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                        });
                    }
                });
            })?;
        Ok(FakeServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `Err` makes hyper close the connection without an answer (a "drop" fault).
async fn serve_one(
    req: Request<Incoming>,
    admin: &Admin,
    service: &Backend,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let req = FakeRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts.headers,
        body,
    };
    match admin.dispatch(req, service).await {
        Action::Answer(r) => {
            let mut resp = Response::new(Full::new(Bytes::from(r.body)));
            *resp.status_mut() = hyper::StatusCode::from_u16(r.status)
                .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
            for (k, v) in r.headers {
                if let (Ok(k), Ok(v)) = (
                    hyper::header::HeaderName::from_bytes(k.as_bytes()),
                    hyper::header::HeaderValue::from_str(&v),
                ) {
                    resp.headers_mut().append(k, v);
                }
            }
            Ok(resp)
        }
        Action::Drop => Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "fault: drop",
        )),
    }
}

/// The fakes a test (or `kvsync-fake`) can start by name. Each provider fake
/// registers here: one line per destination type.
pub fn by_name(name: &str) -> Option<Arc<dyn Service>> {
    match name {
        "aws" => Some(Arc::new(aws::SecretsManager::new())),
        "github" => Some(Arc::new(github::GitHub::new())),
        "azure" => Some(Arc::new(azure::AzureKeyVault::new())),
        "gcp" => Some(Arc::new(gcp::GcpSecretManager::new())),
        "vercel" => Some(Arc::new(vercel::Vercel::new())),
        _ => None,
    }
}
