//! A paced latency probe: GETs of one path at a fixed offered rate over a few
//! keep-alive connections, every answer checked (status 200, an expected piece
//! of the body). Each latency counts from when the request was *due*, not from
//! when it went out, so a server that stalls is charged for the requests that
//! queued behind the stall (no coordinated omission).
//!
//! wrk measures the other side of a run (how much load a server takes); the
//! probe measures what one light client sees meanwhile.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// One answer taking longer than this fails the probe (a stuck server).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What to ask, how often and what a right answer holds.
#[derive(Debug, Clone)]
pub struct Probe {
    pub addr: SocketAddr,
    /// Path and query, e.g. `/v1/team-b/secret/data/x`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// A 200 whose body does not contain this is a wrong answer.
    pub expect: String,
    pub connections: usize,
    /// Requests per second, over all connections.
    pub rate: f64,
}

impl Probe {
    /// Runs for `duration` and returns every latency, in milliseconds. Any
    /// wrong answer, failed connection or answer slower than
    /// [`ANSWER_TIMEOUT`] fails the run.
    pub async fn run(&self, duration: Duration) -> anyhow::Result<Vec<f64>> {
        let connections = self.connections.max(1);
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!("probe rate must be positive, not {}", self.rate);
        }
        // Each connection sends every `interval`, offset so that together
        // they send evenly at `rate`.
        let interval = Duration::from_secs_f64(connections as f64 / self.rate);
        let start = Instant::now() + Duration::from_millis(50);
        let end = start + duration;
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..connections {
            let probe = self.clone();
            let offset = interval.mul_f64(c as f64 / connections as f64);
            tasks.spawn(async move { probe.one_connection(start + offset, interval, end).await });
        }
        let mut all = Vec::new();
        while let Some(done) = tasks.join_next().await {
            all.extend(done??);
        }
        Ok(all)
    }

    async fn one_connection(
        &self,
        first: Instant,
        interval: Duration,
        end: Instant,
    ) -> anyhow::Result<Vec<f64>> {
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        let mut latencies = Vec::new();
        let mut due = first;
        let out = async {
            while due < end {
                tokio::time::sleep_until(due).await;
                let mut req = hyper::Request::get(self.path.as_str())
                    .header(hyper::header::HOST, self.addr.to_string());
                for (k, v) in &self.headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                let req = req.body(Empty::<Bytes>::new())?;
                let answer = async {
                    send.ready().await?;
                    let resp = send.send_request(req).await?;
                    let status = resp.status();
                    let body = resp.into_body().collect().await?.to_bytes();
                    anyhow::Ok((status, body))
                };
                let (status, body) = tokio::time::timeout(ANSWER_TIMEOUT, answer)
                    .await
                    .with_context(|| {
                        format!("no answer to GET {} within {ANSWER_TIMEOUT:?}", self.path)
                    })??;
                latencies.push(due.elapsed().as_secs_f64() * 1e3);
                let text = String::from_utf8_lossy(&body);
                if status != hyper::StatusCode::OK || !text.contains(&self.expect) {
                    bail!(
                        "GET {}: {status} {}",
                        self.path,
                        text.chars().take(300).collect::<String>()
                    );
                }
                due += interval;
            }
            anyhow::Ok(())
        }
        .await;
        driver.abort();
        out.map(|()| latencies)
    }
}
