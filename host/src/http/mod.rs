//! The HTTP front: TCP/TLS, request size limits and identity. The host resolves
//! the token to a caller, its policies to an ACL and the namespace to a
//! tenant, refuses early what the request's method alone rules out
//! ([`access`]), then hands the request to an engine instance, which routes
//! it, runs the exact check and writes the response body.

pub mod access;
pub mod conn;
mod error;
pub mod namespace;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::{Request, Response, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

pub use conn::{DEFAULT_MAX_REQUEST_SIZE, ListenerLimits};
pub use error::HostError;

use crate::auth::{Authority, PolicyStore, Token, TokenStore};
use crate::namespaces::NamespaceStore;
use crate::runtime::{self, Runtime};
use crate::storage::{SharedBackend, TenantStorage};
use kvsync_component::api;

/// The tenant of the root namespace.
pub const ROOT_TENANT: &str = "root";

/// What answers an API request once the host has resolved its caller and
/// tenant, with the response and the request's effects: the wasm engine
/// ([`Runtime`]) in the server. The benchmarks plug in the same engine linked
/// natively behind this same front, to measure what the sandbox costs
/// (`kvsync-bench`).
#[async_trait::async_trait]
pub trait Api: Send + Sync + 'static {
    async fn handle(
        &self,
        storage: TenantStorage,
        req: runtime::Request,
    ) -> Result<runtime::Outcome, runtime::CallError>;
}

#[async_trait::async_trait]
impl Api for Runtime {
    async fn handle(
        &self,
        storage: TenantStorage,
        req: runtime::Request,
    ) -> Result<runtime::Outcome, runtime::CallError> {
        Runtime::handle(self, storage, req).await
    }
}

pub struct AppState {
    pub api: Arc<dyn Api>,
    pub backend: SharedBackend,
    pub tokens: TokenStore,
    pub policies: PolicyStore,
    /// The namespaces (tenants) requests are addressed to.
    pub namespaces: NamespaceStore,
    /// The listener's limits: body size and timeouts, connection cap.
    pub limits: ListenerLimits,
    /// Wakes the sync worker's loops (`notify_waiters`) when a request's
    /// effects say it made sync work due.
    pub sync_wake: Arc<Notify>,
    /// The HA view `sys/leader` reports (`None`: the engine's answer as it is).
    pub ha: Option<crate::ha::HaView>,
    /// The rate-limit quotas, checked before a request reaches the engine.
    pub quotas: crate::quotas::Quotas,
}

/// The address a request came from (a request extension), for per-client quotas.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// Serves until `shutdown` resolves, then lets in-flight requests finish
/// (bounded). Every connection is held to the state's [`ListenerLimits`]
/// (see [`conn`]).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = state.limits.clone();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's HTTP/1 header timer also runs while a kept-alive connection
    // waits for its next request, so it cannot tell idle from slow: it is
    // the backstop at the longer of the two bounds, and the watchdog
    // (`conn::Activity`) holds each state to its own.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_header_timeout.max(limits.idle_timeout));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.read_header_timeout)
        .keep_alive_timeout(limits.read_header_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut at_cap = false;
    tokio::pin!(shutdown);
    loop {
        // Past the cap, new connections wait in the accept backlog.
        if slots.available_permits() == 0 && !at_cap {
            tracing::warn!(
                max_connections = limits.max_connections,
                "the connection cap is reached: new connections wait until one closes"
            );
        }
        at_cap = slots.available_permits() == 0;
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = conn::Activity::new(&limits);
        let service = {
            let state = state.clone();
            let activity = activity.clone();
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer.ip()));
                let state = state.clone();
                let (request, began) = activity.request_started();
                async move {
                    let resp = handle(&state, req, began).await;
                    drop(request);
                    Ok::<_, Infallible>(resp)
                }
            })
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = tls.clone();
        let handshake_timeout = limits.tls_handshake_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let served = async {
                match acceptor {
                    None => {
                        let io = TokioIo::new(conn::Watched::new(stream, activity.clone()));
                        let conn = builder.serve_connection(io, service).into_owned();
                        watcher.watch(conn).await
                    }
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                        let stream = match handshake.await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "TLS handshake failed");
                                return Ok(());
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return Ok(());
                            }
                        };
                        // The first request's header clock starts once the handshake is done.
                        activity.restart();
                        let io = TokioIo::new(conn::Watched::new(stream, activity.clone()));
                        let conn = builder.serve_connection(io, service).into_owned();
                        watcher.watch(conn).await
                    }
                }
            };
            tokio::select! {
                served = served => if let Err(e) = served {
                    tracing::debug!(error = %e, %peer, "connection closed with an error");
                },
                () = activity.expired() => {
                    tracing::debug!(%peer, "connection closed: no complete request within http_read_header_timeout or http_idle_timeout");
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("in-flight requests did not finish within 10s of shutdown");
        }
    }
}

/// Binds a listener; logs and returns the bound address (port 0 picks one).
pub async fn bind(address: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let addr: SocketAddr = address
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid listen address {address:?}: {e}"))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Answers one request whose first byte arrived at `began`.
///
/// A request whose body is left unread (refused before it was read, or sent
/// to a path that takes none) is answered with `Connection: close`: hyper
/// closes such a connection after the response, and a client told so opens
/// a new one for its next request instead of reusing a socket that is being
/// closed under it.
async fn handle(state: &AppState, req: Request<Incoming>, began: Instant) -> Response<Full<Bytes>> {
    let has_body = !req.body().is_end_stream();
    let (mut resp, body_read) = match respond(state, req, began).await {
        Ok(answered) => answered,
        Err(e) => (e.into_response(), false),
    };
    if has_body && !body_read {
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// The body, up to `limit` bytes, complete by `deadline` (408 otherwise).
async fn read_body(body: Incoming, limit: usize, deadline: Instant) -> Result<Vec<u8>, HostError> {
    let collected = tokio::time::timeout_at(deadline, Limited::new(body, limit).collect()).await;
    match collected {
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(HostError::PayloadTooLarge(limit))
        }
        Ok(Err(e)) => Err(HostError::BadRequest(format!(
            "cannot read the request body: {e}"
        ))),
        Err(_) => Err(HostError::RequestTimeout),
    }
}

/// The headers the host reads, with the names clients write them by. A
/// value of one of them that is not printable ASCII is refused (400) rather
/// than read as absent: a namespace, token or content type must never fall
/// back to a default unnoticed. Other headers with such values are not passed
/// to the engine, which reads none of them.
const READ_HEADERS: &[(&str, &str)] = &[
    ("x-vault-token", "X-Vault-Token"),
    ("authorization", "Authorization"),
    ("x-vault-namespace", "X-Vault-Namespace"),
    ("content-type", "Content-Type"),
    (api::WRAP_TTL_HEADER, "X-Vault-Wrap-TTL"),
    (api::WRAP_FORMAT_HEADER, "X-Vault-Wrap-Format"),
];

/// Refuses, before the token is looked at, a request whose headers the host
/// cannot read, and one asking for response wrapping (as the engine would).
fn check_headers(headers: &header::HeaderMap) -> Result<(), HostError> {
    for (name, shown) in READ_HEADERS {
        if headers.get_all(*name).iter().any(|v| v.to_str().is_err()) {
            return Err(HostError::Refused(format!(
                "the {shown} header must be printable ASCII"
            )));
        }
    }
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if api::wrapping_requested(text(api::WRAP_TTL_HEADER), text(api::WRAP_FORMAT_HEADER)) {
        return Err(HostError::Refused(api::WRAPPING_NOT_SUPPORTED.to_string()));
    }
    Ok(())
}

/// The request's token: `X-Vault-Token`, else `Authorization: Bearer`; an
/// empty one is none.
fn token_of(req: &Request<Incoming>) -> Option<Token> {
    let h = req.headers();
    let token = match h.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        Some(t) => Some(t),
        None => h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            }),
    };
    token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| Token::new(t.to_string()))
}

/// The response, and whether the request's body was read.
async fn respond(
    state: &AppState,
    req: Request<Incoming>,
    began: Instant,
) -> Result<(Response<Full<Bytes>>, bool), HostError> {
    let Some(path) = req.uri().path().strip_prefix("/v1/") else {
        return Err(HostError::NotFound);
    };
    let query = req.uri().query().unwrap_or_default().to_string();
    check_headers(req.headers())?;

    // The namespace: header and path prefix; the path within it.
    let header_ns = req
        .headers()
        .get("x-vault-namespace")
        .and_then(|v| v.to_str().ok());
    let addressed = namespace::address(&state.namespaces, header_ns, path).await?;
    let path = addressed.path;
    // Rate-limit quotas, before the token is looked at (as Vault), in the request's namespace
    // (an unknown namespace has no quotas of its own: the root's global ones apply).
    let ns_path = addressed.namespace.as_ref().map_or("", |n| n.path.as_str());
    let decoded = api::request_path(&path, api::Operation::Read).ok();
    let admitted =
        crate::quotas::admit(state, &req, ns_path, decoded.as_deref().unwrap_or(&path)).await?;

    // Paths served without a token do not spend a use of one.
    if let (Some(ns), Some(decoded)) = (&addressed.namespace, &decoded) {
        namespace::check_root_only(ns, decoded)?;
    }
    let open = decoded.as_deref().is_some_and(access::is_unauthenticated);
    let token = token_of(&req);
    let presented = token.is_some();
    let storage_error = |e: crate::storage::StorageError| HostError::Storage(e.to_string());
    let (mut caller, spent) = match token {
        Some(token) if open => (
            state.tokens.resolve(token).await.map_err(storage_error)?,
            None,
        ),
        Some(token) => match state
            .tokens
            .authenticate(token)
            .await
            .map_err(storage_error)?
        {
            Some(auth) => (Some(auth.caller), auth.spent),
            None => (None, None),
        },
        None => (None, None),
    };
    // The token's own namespace; a token whose namespace was deleted is
    // not valid.
    let home = match &caller {
        Some(c) => namespace::home_of(&state.namespaces, c).await?,
        None => None,
    };
    if home.is_none() {
        caller = None;
    }
    // The `-self` token paths run in the token's namespace.
    let request_ns = match &home {
        Some(home) if decoded.as_deref().is_some_and(namespace::is_self_path) => Some(home.clone()),
        _ => addressed.namespace,
    };
    // An unknown namespace is told only to a valid token (or on a path
    // served without one).
    let Some(request_ns) = request_ns else {
        if let Some(spent) = spent {
            state.tokens.finish(spent).await;
        }
        return Err(match (&caller, open, presented) {
            (Some(_), _, _) | (None, true, _) => HostError::NamespaceNotFound,
            (None, false, true) => HostError::InvalidToken,
            (None, false, false) => HostError::PermissionDenied,
        });
    };
    let authority = match (&caller, &home) {
        (Some(caller), Some(home)) => Some(
            Authority::acting_in(
                request_ns.namespace(),
                &home.namespace(),
                caller,
                &state.policies,
                &state.tokens,
            )
            .await
            .map_err(storage_error)?,
        ),
        _ => None,
    };
    let refused = match (&authority, open) {
        (_, true) => None,
        (None, false) if presented => Some(HostError::InvalidToken),
        (None, false) => Some(HostError::PermissionDenied),
        (Some(authority), false) => {
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let attempt = access::Attempt {
                method: req.method().as_str(),
                path: &path,
                query: &query,
                content_type,
            };
            access::early_check(authority, &attempt).err()
        }
    };
    if let Some(refused) = refused {
        // The body is never read: hyper takes what already arrived (the
        // connection stays usable) or closes the connection.
        drop(req);
        // A refused request spends its use too, as in Vault.
        if let Some(spent) = spent {
            state.tokens.finish(spent).await;
        }
        return Err(refused);
    }

    let limit = state.limits.max_request_size;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) && !open {
        return Err(HostError::PayloadTooLarge(limit));
    }
    let method = req.method().as_str().to_string();
    // `sys/leader` and `sys/health` get the host's HA view added to the engine's answer.
    let open_path = |wanted: &str| {
        open && decoded
            .as_deref()
            .is_some_and(|decoded| decoded.trim_matches('/') == wanted)
    };
    let leader = method == "GET" && open_path("sys/leader");
    let health = (method == "GET" || method == "HEAD") && open_path("sys/health");
    let health_query = if health { query.clone() } else { String::new() };
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter(|(name, _)| *name != "x-vault-token" && *name != header::AUTHORIZATION)
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_string(), v.to_string()))
        })
        .collect();
    // Paths served without a token take no body: it is never read, as for
    // a refused request.
    let body = if open {
        Vec::new()
    } else {
        read_body(req.into_body(), limit, began + state.limits.read_timeout).await?
    };

    let request = runtime::Request {
        method,
        path,
        query,
        headers,
        body,
        caller,
        authority,
    };
    let storage = TenantStorage::new(state.backend.clone(), &request_ns.id);
    let outcome = state.api.handle(storage, request).await;
    // A token whose last use this request made is revoked once it is served.
    if let Some(spent) = spent {
        state.tokens.finish(spent).await;
    }
    let runtime::Outcome {
        response: mut out,
        effects,
    } = outcome?;
    if let (true, 200, Some(ha)) = (leader, out.status, &state.ha) {
        out.body = ha.leader(std::mem::take(&mut out.body)).await;
    }
    if let (true, Some(ha)) = (health, &state.ha) {
        (out.status, out.body) = ha
            .health(&health_query, out.status, std::mem::take(&mut out.body))
            .await;
    }
    // Wake the sync worker first: the work is committed whatever happens to
    // the response. Every loop is woken: which loop serves a destination is
    // the engine's shard function, not the host's.
    if !matches!(effects.sync_due, runtime::SyncDue::None) {
        state.sync_wake.notify_waiters();
    }

    let mut resp = Response::new(Full::new(Bytes::from(out.body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(out.status).map_err(|_| {
        HostError::Call(runtime::CallError::Trap(format!(
            "invalid status {}",
            out.status
        )))
    })?;
    let h = resp.headers_mut();
    for (name, value) in out.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            header::HeaderValue::from_str(&value),
        ) {
            h.insert(name, value);
        }
    }
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    admitted.annotate(h);
    Ok((resp, !open))
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Waker};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::storage::{Barrier, EncryptionKey, RedbBackend};

    /// Answers every request with 200 and the given effects.
    struct Fixed(runtime::SyncDue);

    #[async_trait::async_trait]
    impl Api for Fixed {
        async fn handle(
            &self,
            _: TenantStorage,
            _: runtime::Request,
        ) -> Result<runtime::Outcome, runtime::CallError> {
            Ok(runtime::Outcome {
                response: runtime::Response {
                    status: 200,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: b"{}".to_vec(),
                },
                effects: runtime::Effects {
                    sync_due: self.0.clone(),
                },
            })
        }
    }

    /// Serves one `sys/health` request (no token needed) against an engine
    /// whose request made `sync_due`; returns the raw response and whether
    /// the sync worker was woken.
    async fn serve_one(sync_due: runtime::SyncDue) -> (String, bool) {
        let backend: SharedBackend = Arc::new(Barrier::new(
            RedbBackend::in_memory().unwrap(),
            EncryptionKey::generate().unwrap(),
        ));
        let state = Arc::new(AppState {
            api: Arc::new(Fixed(sync_due)),
            tokens: TokenStore::new(backend.clone()),
            policies: PolicyStore::new(backend.clone()),
            namespaces: NamespaceStore::new(backend.clone()),
            quotas: crate::quotas::Quotas::new(backend.clone()),
            backend,
            limits: ListenerLimits::default(),
            sync_wake: Arc::new(Notify::new()),
            ha: None,
        });
        let wake = state.sync_wake.clone();
        let mut woken = pin!(wake.notified());
        woken.as_mut().enable();
        let (listener, addr) = bind("127.0.0.1:0").await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, None, state, async {
            let _ = stopped.await;
        }));
        let exchange = async {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            conn.write_all(
                b"GET /v1/sys/health HTTP/1.1\r\nhost: kvsync\r\nconnection: close\r\n\r\n",
            )
            .await
            .unwrap();
            let mut raw = Vec::new();
            conn.read_to_end(&mut raw).await.unwrap();
            String::from_utf8(raw).unwrap()
        };
        let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("the server answers");
        // The wake-up precedes the response, so it has happened by now or never.
        let fired = woken
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready();
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(15), server)
            .await
            .expect("the server stops")
            .unwrap();
        (raw, fired)
    }

    #[tokio::test]
    async fn the_effects_of_a_request_wake_the_sync_worker() {
        let (raw, woken) =
            serve_one(runtime::SyncDue::Destinations(vec!["in-mem/d1".into()])).await;
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        assert!(woken);
        assert!(serve_one(runtime::SyncDue::All).await.1);
        let (raw, woken) = serve_one(runtime::SyncDue::None).await;
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        assert!(!woken);
    }
}
