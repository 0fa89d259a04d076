//! What a failed provider call leaves in an association's `error`: the
//! classification and a short, scrubbed provider message — never the secret
//! value pushed or the destination's credentials, whatever the provider
//! echoes; no control characters; bounded length. And a provider answer is
//! read up to 1 MiB only.
//!
//! One raw HTTP server stands for every provider: it hands out tokens and
//! GitHub's public key, and answers every other request with a 400 whose
//! message echoes the request (its body and `Authorization`), or, in the
//! oversized mode, with a body of several MiB and no length.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::time::Duration;

use base64::Engine as _;
use kvsync::connectors::{
    ConnectorEnv, Connectors, DEFAULT_TIMEOUT, Destination, ExternalSecret, SyncError,
};
use kvsync_tests::fake::gcp;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const VALUE: &str = "echo-SECRET-value-4711";
const GH_TOKEN: &str = "ghp_ECHOtoken4711";
const VERCEL_TOKEN: &str = "vercel-ECHO-token-4711";
const OVERSIZED: usize = 3 << 20;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Echo,
    Oversized,
}

struct Server {
    url: String,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        for _ in 0..64 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, mode)).await;
            });
        }
    });
    Server { url, task }
}

/// Reads one request (head, then `Content-Length` bytes) and answers it.
async fn answer(mut stream: TcpStream, mode: Mode) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 1 << 20 {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while buf.len() < head_end + length.min(1 << 20) {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let response = if path.contains("/token") {
        ok(&json!({"access_token": "at-fake", "expires_in": 3600, "token_type": "Bearer"}))
    } else if path.ends_with("/public-key") {
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        ok(&json!({"key_id": "1", "key": key}))
    } else if mode == Mode::Oversized {
        let mut r = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                      connection: close\r\n\r\n{\"message\": \""
            .to_vec();
        r.resize(r.len() + OVERSIZED, b'x');
        r
    } else {
        let echo = format!(
            "\u{1b}[31m\r\nrejected {body} (authorization: {})",
            header("authorization")
        );
        let text = json!({
            "__type": "ValidationException", "message": echo,
            "error": {"code": "bad_request", "message": echo, "status": "INVALID_ARGUMENT"},
        })
        .to_string();
        format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.1\r\n\
             x-amzn-errortype: ValidationException\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{text}",
            text.len()
        )
        .into_bytes()
    };
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

fn ok(body: &Value) -> Vec<u8> {
    let text = body.to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{text}",
        text.len()
    )
    .into_bytes()
}

/// Every connector type against `url`, strict networking off (loopback,
/// plain http).
fn cases(url: &str) -> Vec<(&'static str, ConnectorEnv, Value)> {
    let env = ConnectorEnv {
        aws_endpoint_url: Some(url.to_string()),
        azure_authority_host: Some(url.to_string()),
        gcp_secret_manager_url: Some(url.to_string()),
        vercel_api_url: Some(url.to_string()),
        ..ConnectorEnv::default()
    };
    let configs = [
        (
            "aws-sm",
            json!({"access_key_id": "AKIAECHO", "secret_access_key": "aws-ECHO-secret-4711",
                   "region": "us-east-1"}),
        ),
        (
            "azure-kv",
            json!({"key_vault_uri": url, "client_id": "c", "client_secret": "az-ECHO-secret-4711",
                   "tenant_id": "t"}),
        ),
        (
            "gcp-sm",
            json!({"credentials": json!({
                "type": "service_account", "client_email": gcp::CLIENT_EMAIL,
                "project_id": gcp::PROJECT_ID, "private_key_id": gcp::PRIVATE_KEY_ID,
                "private_key": gcp::TEST_PRIVATE_KEY_PEM, "token_uri": format!("{url}/token"),
            }).to_string()}),
        ),
        (
            "gh",
            json!({"access_token": GH_TOKEN, "repository_owner": "o", "repository_name": "r",
                   "enterprise_url": url}),
        ),
        (
            "vercel-project",
            json!({"access_token": VERCEL_TOKEN, "project_id": "p",
                   "deployment_environments": ["production"]}),
        ),
    ];
    configs
        .into_iter()
        .map(|(kind, mut config)| {
            config["disable_strict_networking"] = json!(true);
            (kind, env.clone(), config)
        })
        .collect()
}

async fn push(kind: &str, env: ConnectorEnv, config: &Value) -> SyncError {
    let connectors = Connectors::with_env(env, DEFAULT_TIMEOUT);
    let dest = Destination::parse(kind.into(), "d".into(), config.to_string()).unwrap();
    let secret = ExternalSecret {
        name: "ECHO1".into(),
        value: VALUE.to_string().into(),
        tags: vec![("hashicorp:vault".into(), String::new())],
    };
    match connectors.push(&dest, &secret).await {
        Ok(()) => panic!("{kind}: the push succeeded against a server that refuses it"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn provider_messages_never_carry_values_credentials_or_control_characters() {
    let server = server(Mode::Echo).await;
    let forbidden = [
        VALUE.to_string(),
        base64::engine::general_purpose::STANDARD.encode(VALUE),
        GH_TOKEN.to_string(),
        VERCEL_TOKEN.to_string(),
    ];
    let mut wrong = Vec::new();
    for (kind, env, config) in cases(&server.url) {
        let err = push(kind, env, &config).await;
        let message = err.to_string();
        if !message.contains("rejected") {
            wrong.push(format!("{kind}: the provider's text is missing: {message}"));
        }
        for f in &forbidden {
            if message.contains(f.as_str()) {
                wrong.push(format!("{kind}: echoes {f}: {message}"));
            }
        }
        if message.chars().any(char::is_control) {
            wrong.push(format!("{kind}: control characters in {message:?}"));
        }
        if message.chars().count() > 601 {
            wrong.push(format!("{kind}: {} characters", message.chars().count()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn provider_answers_are_read_up_to_one_mebibyte() {
    let server = server(Mode::Oversized).await;
    let mut wrong = Vec::new();
    for (kind, env, config) in cases(&server.url) {
        let err = push(kind, env, &config).await;
        let message = err.to_string();
        let refused =
            matches!(err, SyncError::ExternalService { .. }) && message.contains("over 1 MiB");
        if !refused {
            wrong.push(format!("{kind}: {message}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
