//! The HTTP front against hostile clients, on a real server (in-memory
//! storage, the real engine) listening on an ephemeral port: half-sent
//! headers, trickled bodies, slow TLS handshakes, too many connections,
//! bodies sent to paths that take none.
//!
//! No assertion measures time: each test sets short listener timeouts and
//! asserts what happened to a connection (closed, answered, not answered
//! while the cap holds), each wait bounded far beyond the timeout it checks.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kvsync::config::Listener;
use kvsync::http::ListenerLimits;
use kvsync::server::{self, EngineOptions, Server};
use kvsync::worker::SyncConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Far beyond every timeout the tests configure: a wait that long means the
/// server never acted.
const BOUND: Duration = Duration::from_secs(20);

struct Running {
    addr: SocketAddr,
    root: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Running {
    async fn start(limits: ListenerLimits) -> Self {
        Self::start_with(limits, None).await
    }

    async fn start_with(limits: ListenerLimits, tls: Option<tempfile::TempDir>) -> Self {
        let engine = EngineOptions {
            cache_dir: kvsync::env::Env::from_process().cache_dir,
            ..EngineOptions::default()
        };
        let server = Arc::new(
            Server::in_memory(&engine, SyncConfig::default())
                .await
                .unwrap(),
        );
        let root = server.tokens().create_root(None).await.unwrap();
        let mut listener = Listener::plain("127.0.0.1:0".into());
        listener.limits = limits;
        if let Some(dir) = &tls {
            listener.tls = Some((dir.path().join("cert.pem"), dir.path().join("key.pem")));
        }
        let listening = server::listen(&listener).await.unwrap();
        let addr = listening.addr;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(listening, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Running {
            addr,
            root: root.token.expose().to_string(),
            stop: Some(stop),
            task: Some(task),
            _dir: tls,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the server stops")
                .unwrap();
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }
}

/// Reads one response (headers, then `content-length` bytes of body).
async fn read_response(conn: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(
            conn.read(&mut byte).await.unwrap(),
            1,
            "closed mid-response"
        );
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8(body).unwrap()
}

/// Whether the server closed `conn` (end of stream or reset) within [`BOUND`].
async fn closed(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let outcome = tokio::time::timeout(BOUND, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    outcome.unwrap_or(false)
}

const HEALTH: &[u8] = b"GET /v1/sys/health HTTP/1.1\r\nhost: kvsync\r\n\r\n";

async fn health(conn: &mut TcpStream) -> String {
    conn.write_all(HEALTH).await.unwrap();
    tokio::time::timeout(BOUND, read_response(conn))
        .await
        .expect("answered")
}

#[tokio::test]
async fn half_sent_requests_are_closed_while_others_are_answered() {
    let server = Running::start(ListenerLimits {
        read_header_timeout: Duration::from_millis(500),
        ..ListenerLimits::default()
    })
    .await;
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut conn = server.connect().await;
        // Every third sends nothing at all; the rest stop mid-headers.
        if i % 3 != 0 {
            conn.write_all(b"GET /v1/sys/health HTTP/1.1\r\nhost: kv")
                .await
                .unwrap();
        }
        idle.push(conn);
    }
    for _ in 0..5 {
        let mut conn = server.connect().await;
        assert!(health(&mut conn).await.starts_with("HTTP/1.1 200"));
    }
    for conn in &mut idle {
        assert!(closed(conn).await, "a half-sent request was left open");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_waits_for_the_idle_timeout_not_the_header_timeout() {
    let server = Running::start(ListenerLimits {
        read_header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(120),
        ..ListenerLimits::default()
    })
    .await;
    let mut conn = server.connect().await;
    assert!(health(&mut conn).await.starts_with("HTTP/1.1 200"));
    // Idle for several header timeouts: the connection still serves.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(health(&mut conn).await.starts_with("HTTP/1.1 200"));
    server.stop().await;
}

#[tokio::test]
async fn a_trickled_body_is_cut_at_the_read_timeout() {
    let server = Running::start(ListenerLimits {
        read_timeout: Duration::from_secs(1),
        ..ListenerLimits::default()
    })
    .await;
    let conn = server.connect().await;
    let (mut reader, mut writer) = conn.into_split();
    const LENGTH: usize = 400;
    let head = format!(
        "POST /v1/secret/data/x HTTP/1.1\r\nhost: kvsync\r\nx-vault-token: {}\r\n\
         content-type: application/json\r\ncontent-length: {LENGTH}\r\n\r\n",
        server.root
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let trickle = tokio::spawn(async move {
        let mut sent = 0;
        while sent < LENGTH {
            if writer.write_all(b" ").await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sent
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(BOUND, reader.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "the connection stayed open");
    let raw = String::from_utf8_lossy(&raw).to_string();
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");
    assert!(raw.contains("http_read_timeout"), "{raw}");
    trickle.abort();
    server.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let server = Running::start(ListenerLimits {
        max_connections: 2,
        ..ListenerLimits::default()
    })
    .await;
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    assert!(health(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(health(&mut second).await.starts_with("HTTP/1.1 200"));
    // The third connects (the kernel's backlog takes it) but is not served.
    let mut third = server.connect().await;
    third.write_all(HEALTH).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), read_response(&mut third)).await;
    assert!(early.is_err(), "served past the cap: {early:?}");
    drop(first);
    let answer = tokio::time::timeout(BOUND, read_response(&mut third))
        .await
        .expect("served once a connection closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(health(&mut second).await.starts_with("HTTP/1.1 200"));
    server.stop().await;
}

/// A self-signed certificate and key made with `openssl`, if it is installed.
fn certificate() -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(dir.path().join("cert.pem"))
        .output();
    match made {
        Ok(out) if out.status.success() => Some(dir),
        _ => None,
    }
}

#[tokio::test]
async fn a_slow_tls_handshake_is_cut() {
    let Some(dir) = certificate() else {
        eprintln!("skipped: openssl is needed to make a test certificate");
        return;
    };
    let server = Running::start_with(
        ListenerLimits {
            tls_handshake_timeout: Duration::from_millis(500),
            read_header_timeout: Duration::from_secs(60),
            ..ListenerLimits::default()
        },
        Some(dir),
    )
    .await;
    let mut silent = server.connect().await;
    // A TLS record header of a ClientHello, and then nothing.
    let mut stalled = server.connect().await;
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    assert!(
        closed(&mut silent).await,
        "a silent TLS client was left open"
    );
    assert!(
        closed(&mut stalled).await,
        "a stalled handshake was left open"
    );
    server.stop().await;
}

#[tokio::test]
async fn paths_without_a_token_never_read_a_body() {
    let server = Running::start(ListenerLimits {
        max_request_size: 1024,
        ..ListenerLimits::default()
    })
    .await;
    // A declared body far past the limit, never sent.
    let mut conn = server.connect().await;
    conn.write_all(
        b"POST /v1/sys/health HTTP/1.1\r\nhost: kvsync\r\ncontent-length: 1073741824\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = tokio::time::timeout(BOUND, read_response(&mut conn))
        .await
        .expect("answered without the body");
    assert!(!answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A body the declared size of which is allowed, never sent: still answered.
    let mut conn = server.connect().await;
    conn.write_all(b"GET /v1/sys/health HTTP/1.1\r\nhost: kvsync\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    let answer = tokio::time::timeout(BOUND, read_response(&mut conn))
        .await
        .expect("answered without the body");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A refused request is answered without its body too.
    let mut conn = server.connect().await;
    conn.write_all(
        b"POST /v1/secret/data/x HTTP/1.1\r\nhost: kvsync\r\nx-vault-token: nope\r\ncontent-length: 100\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = tokio::time::timeout(BOUND, read_response(&mut conn))
        .await
        .expect("refused without the body");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    server.stop().await;
}

/// A refused request whose body is left unread is answered with `Connection:
/// close` (hyper closes that connection after the response: a client not told
/// so reuses a socket that is being closed and fails its next request); one
/// without a body keeps its connection.
#[tokio::test]
async fn an_unread_body_is_answered_with_connection_close() {
    let server = Running::start(ListenerLimits::default()).await;
    let mut conn = server.connect().await;
    conn.write_all(
        b"POST /v1/secret/data/x HTTP/1.1\r\nhost: kvsync\r\nx-vault-token: nope\r\ncontent-length: 2\r\n\r\n{}",
    )
    .await
    .unwrap();
    let answer = tokio::time::timeout(BOUND, read_response(&mut conn))
        .await
        .expect("refused");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
    assert!(closed(&mut conn).await, "the connection is closed");

    let mut conn = server.connect().await;
    conn.write_all(
        b"GET /v1/secret/data/x HTTP/1.1\r\nhost: kvsync\r\nx-vault-token: nope\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = tokio::time::timeout(BOUND, read_response(&mut conn))
        .await
        .expect("refused");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(health(&mut conn).await.starts_with("HTTP/1.1 200"));
    server.stop().await;
}

/// Sends `head` (request line and headers, without the blank line) with
/// `body` on a new connection; the whole answer.
async fn exchange(server: &Running, head: &[u8], body: &[u8]) -> String {
    let mut conn = server.connect().await;
    let mut raw = head.to_vec();
    raw.extend_from_slice(
        format!(
            "\r\nhost: kvsync\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    raw.extend_from_slice(body);
    conn.write_all(&raw).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, conn.read_to_end(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    String::from_utf8_lossy(&answer).to_string()
}

/// Wrapping and unreadable headers are refused by the host; deep JSON,
/// control characters in names and deeply nested templates by the engine
/// (in wasm here), all with 400 and a message saying what was wrong.
#[tokio::test]
async fn hostile_input_gets_400() {
    let server = Running::start(ListenerLimits::default()).await;
    let token = format!("x-vault-token: {}", server.root);
    let with_token = |line: &str, more: &[u8]| -> Vec<u8> {
        let mut head = format!("{line}\r\n{token}").into_bytes();
        head.extend_from_slice(more);
        head
    };
    // A KV-v2 mount, so that a request asking for wrapping would find a secret.
    let mount = exchange(
        &server,
        &with_token("POST /v1/sys/mounts/secret HTTP/1.1", b""),
        br#"{"type":"kv","options":{"version":"2"}}"#,
    )
    .await;
    assert!(mount.starts_with("HTTP/1.1 204"), "{mount}");
    let written = exchange(
        &server,
        &with_token("POST /v1/secret/data/a HTTP/1.1", b""),
        br#"{"data":{"password":"in-the-clear"}}"#,
    )
    .await;
    assert!(written.starts_with("HTTP/1.1 200"), "{written}");
    let template = format!(
        r#"{{"secret_name_template":"{{{{ {}.secret_path{} }}}}"}}"#,
        "(".repeat(2000),
        ")".repeat(2000)
    );
    let cases: Vec<(Vec<u8>, Vec<u8>, &str)> = vec![
        (
            with_token(
                "GET /v1/secret/data/a HTTP/1.1",
                b"\r\nx-vault-wrap-ttl: 60s",
            ),
            vec![],
            "response wrapping is not supported",
        ),
        (
            with_token(
                "GET /v1/secret/data/a HTTP/1.1",
                b"\r\nX-Vault-Wrap-Format: jwt",
            ),
            vec![],
            "response wrapping is not supported",
        ),
        (
            with_token(
                "GET /v1/sys/mounts HTTP/1.1",
                b"\r\nx-vault-namespace: \xffns",
            ),
            vec![],
            "X-Vault-Namespace",
        ),
        (
            b"GET /v1/sys/mounts HTTP/1.1\r\nx-vault-token: hvs.\xff".to_vec(),
            vec![],
            "X-Vault-Token",
        ),
        (
            with_token(
                "POST /v1/sys/mounts/kv HTTP/1.1",
                b"\r\ncontent-type: application/\xe9json",
            ),
            br#"{"type":"kv","options":{"version":"2"}}"#.to_vec(),
            "Content-Type",
        ),
        (
            with_token("POST /v1/sys/mounts/kv HTTP/1.1", b""),
            "[".repeat(10_000).into_bytes(),
            "error parsing JSON",
        ),
        (
            with_token("POST /v1/sys/mounts/kv HTTP/1.1", b""),
            r#"{"a":"#.repeat(10_000).into_bytes(),
            "error parsing JSON",
        ),
        (
            with_token("GET /v1/secret/data/a%01b HTTP/1.1", b""),
            vec![],
            "control characters",
        ),
        (
            with_token("POST /v1/sys/sync/destinations/in-mem/a%07b HTTP/1.1", b""),
            b"{}".to_vec(),
            "control characters",
        ),
        (
            with_token("POST /v1/sys/sync/destinations/in-mem/t HTTP/1.1", b""),
            template.into_bytes(),
            "nested",
        ),
    ];
    for (head, body, says) in cases {
        let answer = exchange(&server, &head, &body).await;
        let shown = String::from_utf8_lossy(&head);
        assert!(answer.starts_with("HTTP/1.1 400"), "{shown}: {answer}");
        assert!(answer.contains(says), "{shown}: {answer}");
        assert!(!answer.contains("in-the-clear"), "{answer}");
    }
    server.stop().await;
}
