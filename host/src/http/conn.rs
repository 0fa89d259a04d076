//! What one connection may cost: the listener's timeouts and caps (Vault's
//! names in the `listener "tcp"` stanza) and the watchdog that enforces the
//! ones hyper cannot.
//!
//! A connection moves between two states, as in Go's `net/http`, which
//! Vault's options describe:
//!
//! - **waiting** (no request in flight): the first byte of the next request
//!   must arrive within `http_idle_timeout` of the last response, and the
//!   request's headers within `http_read_header_timeout` of its first byte.
//!   A new connection starts with the header clock running (its first
//!   request is due at once). The watchdog closes a connection that misses
//!   either deadline; for HTTP/1 hyper's own header timer does the same.
//! - **serving** (a request in flight): its body must arrive within
//!   `http_read_timeout` of the request's first byte (the HTTP front answers
//!   408 and closes the connection otherwise), and the engine call is
//!   stopped at `max_request_duration` (503).
//!
//! Over HTTP/2 the same rules hold per connection: any frame read while no
//! stream is open (a ping answer, a window update) starts the header clock,
//! so an h2 connection without requests is closed after
//! `http_read_header_timeout` rather than `http_idle_timeout`.
//!
//! A TLS handshake must finish within `tls_handshake_timeout`, and also
//! within `http_read_header_timeout` of accept (the first request's header
//! clock runs from accept and starts again once the handshake is done).
//!
//! Past `max_connections` open connections, new ones wait in the kernel's
//! accept backlog until one closes (logged once per episode).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

pub use kvsync_host_core::settings::{DEFAULT_MAX_REQUEST_SIZE, ListenerLimits};

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// When the connection last became idle (accepted, or its last request ended).
    waiting_since: Instant,
    /// The first byte read while waiting: the next request has begun.
    first_byte: Option<Instant>,
}

/// One connection's activity, shared by its stream, its requests and its watchdog.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
    changed: Notify,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Activity {
    /// A connection accepted now: its first request's header clock runs.
    pub fn new(limits: &ListenerLimits) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Activity {
            state: Mutex::new(State {
                in_flight: 0,
                waiting_since: now,
                first_byte: Some(now),
            }),
            changed: Notify::new(),
            header_timeout: limits.read_header_timeout,
            idle_timeout: limits.idle_timeout,
        })
    }

    /// Starts the first request's header clock again (after a TLS handshake).
    pub fn restart(&self) {
        let now = Instant::now();
        let mut s = self.state();
        s.waiting_since = now;
        s.first_byte = Some(now);
        drop(s);
        self.changed.notify_one();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every update: a poisoned lock's
        // data is as good as any.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read_some(&self) {
        let mut s = self.state();
        if s.in_flight == 0 && s.first_byte.is_none() {
            s.first_byte = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A request's headers are in: the connection serves until the guard
    /// drops. Returns when the request's first byte arrived.
    pub fn request_started(self: &Arc<Self>) -> (RequestGuard, Instant) {
        let mut s = self.state();
        let began = s.first_byte.take().unwrap_or_else(Instant::now);
        s.in_flight = s.in_flight.saturating_add(1);
        drop(s);
        self.changed.notify_one();
        (RequestGuard(self.clone()), began)
    }

    /// When the connection is to be closed; `None` while a request is served.
    fn deadline(&self) -> Option<Instant> {
        let s = self.state();
        if s.in_flight > 0 {
            return None;
        }
        let idle = s.waiting_since + self.idle_timeout;
        Some(match s.first_byte {
            Some(first) => idle.min(first + self.header_timeout),
            None => idle,
        })
    }

    /// Resolves once the connection missed a deadline of the waiting state.
    pub async fn expired(&self) {
        loop {
            let changed = self.changed.notified();
            match self.deadline() {
                None => changed.await,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {
                            if self.deadline().is_some_and(|d| d <= Instant::now()) {
                                return;
                            }
                        }
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// A request in flight on its connection.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.waiting_since = Instant::now();
            s.first_byte = None;
        }
        drop(s);
        self.0.changed.notify_one();
    }
}

/// A stream whose reads are reported to its connection's [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_waits_for_headers_then_idles_between_requests() {
        let header = Duration::from_secs(10);
        let limits = ListenerLimits {
            read_header_timeout: header,
            idle_timeout: Duration::from_secs(300),
            ..ListenerLimits::default()
        };
        let a = Activity::new(&limits);
        // A new connection: its first request's headers are due.
        assert!(a.deadline().unwrap() <= Instant::now() + header);
        let (guard, _) = a.request_started();
        assert_eq!(a.deadline(), None);
        drop(guard);
        // Between requests: the idle timeout, until the next request's first byte.
        assert!(a.deadline().unwrap() > Instant::now() + header);
        a.read_some();
        assert!(a.deadline().unwrap() <= Instant::now() + header);
        let (_guard, began) = a.request_started();
        assert!(began <= Instant::now());
        assert_eq!(a.deadline(), None);
    }
}
