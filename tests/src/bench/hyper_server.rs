//! The P2 baseline: a bare hyper server (the same `hyper-util` auto builder as
//! kvsync's front) answering every request with a fixed JSON body of a given
//! size, `200 application/json`.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// A JSON object of exactly `size` bytes (at least 12).
pub fn body_of_size(size: usize) -> Bytes {
    let head = r#"{"data":""#;
    let tail = r#""}"#;
    let fill = size.saturating_sub(head.len() + tail.len());
    let mut s = String::with_capacity(size);
    s.push_str(head);
    s.extend(std::iter::repeat_n('x', fill));
    s.push_str(tail);
    Bytes::from(s)
}

/// Serves `body` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, body: Bytes) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let service = hyper::service::service_fn(move |_req| {
            let mut resp = Response::new(Full::new(body.clone()));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            async move { Ok::<_, Infallible>(resp) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bodies_have_the_asked_size_and_are_json() {
        for size in [12, 100, 4096] {
            let b = super::body_of_size(size);
            assert_eq!(b.len(), size);
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert!(v["data"].is_string());
        }
    }
}
