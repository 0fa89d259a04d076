//! A small client of a Vault-compatible HTTP API, for commands that ask a
//! running server (`kvsync sync status`). Where and as whom it connects is
//! resolved as by the Vault CLI: flags, then `VAULT_ADDR`, `VAULT_TOKEN`,
//! `VAULT_CACERT`, `VAULT_SKIP_VERIFY`, then `~/.vault-token`. A read returns
//! the answer's `data`, `None` on 404, and Vault's `errors` as the error.
//! Redirects are refused, not followed: the token travels in a header that
//! would go along to wherever a redirect points.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::auth::Token;
use crate::env::VaultEnv;

/// The Vault CLI's default address, as plain HTTP (kvsync's dev listener).
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:8200";

/// Where and how to connect, after flags and environment.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub address: String,
    pub ca_cert: Option<PathBuf>,
    pub tls_skip_verify: bool,
}

impl Target {
    /// The flags given (`--address`, `--ca-cert`, `--tls-skip-verify`)
    /// first, then `VAULT_ADDR`, `VAULT_CACERT`, `VAULT_SKIP_VERIFY`.
    pub fn resolve(
        address: Option<String>,
        ca_cert: Option<PathBuf>,
        tls_skip_verify: bool,
        env: &VaultEnv,
    ) -> Target {
        let address = address
            .or_else(|| env.address.clone())
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
        Target {
            address: address.trim().trim_end_matches('/').to_string(),
            ca_cert: ca_cert.or_else(|| env.ca_cert.clone()),
            tls_skip_verify: tls_skip_verify || env.skip_verify,
        }
    }
}

/// `--token`, then `VAULT_TOKEN`, then `~/.vault-token`, trimmed; `None`
/// when none is found or it is empty.
pub fn resolve_token(flag: Option<String>, env: &VaultEnv) -> Option<Token> {
    let raw = Zeroizing::new(match (flag, &env.token) {
        (Some(token), _) => token,
        (None, Some(token)) => token.expose().to_owned(),
        (None, None) => std::fs::read_to_string(env.token_file.as_ref()?).ok()?,
    });
    let token = raw.trim();
    (!token.is_empty()).then(|| Token::new(token.to_string()))
}

/// Reads a Vault-compatible API over HTTP(S) with one token.
pub struct Client {
    http: reqwest::Client,
    address: String,
    token: Token,
}

impl Client {
    pub fn new(target: &Target, token: Token) -> anyhow::Result<Self> {
        // No redirects: the token header would go along to wherever the
        // answer points (reqwest strips only the standard credential headers).
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .danger_accept_invalid_certs(target.tls_skip_verify);
        if let Some(file) = &target.ca_cert {
            let pem = std::fs::read(file)
                .with_context(|| format!("cannot read the CA certificate {}", file.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("invalid CA certificate {}", file.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Client {
            http: builder.build().context("cannot build the HTTP client")?,
            address: target.address.clone(),
            token,
        })
    }

    /// GET `/v1/<path>` (`path` may carry a query): the answer's `data`,
    /// `None` on 404.
    pub async fn get(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let url = format!("{}/v1/{path}", self.address);
        let resp = self
            .http
            .get(&url)
            .header("X-Vault-Token", self.token.expose())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {}: {}", self.address, chain(&e)))?;
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                .unwrap_or_default();
            anyhow::bail!(
                "GET /v1/{path}: the server answered {status} with a redirect to {location:?}; \
                 redirects are not followed (the token would go along): use that address \
                 with --address or VAULT_ADDR"
            );
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("GET /v1/{path}: cannot read the response: {e}"))?;
        response_data(&format!("GET /v1/{path}"), status, &body)
    }
}

/// The `data` of a Vault API answer to `what` (`GET /v1/...`): `None` on
/// 404, an error naming `what` and the answer's `errors` from 300 up.
pub fn response_data(what: &str, status: u16, body: &[u8]) -> anyhow::Result<Option<Value>> {
    if status == 404 {
        return Ok(None);
    }
    if status >= 300 {
        anyhow::bail!("{what}: {}", error_text(status, body));
    }
    let body: Value = serde_json::from_slice(body)
        .with_context(|| format!("{what}: the response is not JSON"))?;
    Ok(Some(body.get("data").cloned().unwrap_or(Value::Null)))
}

/// The `errors` of a Vault error body, joined; the status alone otherwise.
pub fn error_text(status: u16, body: &[u8]) -> String {
    let errors: Vec<String> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("errors").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    if errors.is_empty() {
        format!("status {status}")
    } else {
        format!("status {status}: {}", errors.join("; "))
    }
}

/// Percent-encodes one path segment (everything but RFC 3986's unreserved set).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error and its sources, `: `-separated (reqwest's own text is terse).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vault_env() -> VaultEnv {
        VaultEnv {
            address: Some("https://vault.example:8200/".to_string()),
            token: Some(Token::new(" env-token\n".to_string())),
            ca_cert: Some(PathBuf::from("/etc/ca.pem")),
            skip_verify: true,
            token_file: None,
        }
    }

    #[test]
    fn target_prefers_flags_then_vault_env() {
        let env = vault_env();
        let none = VaultEnv::default();
        let t = Target::resolve(None, None, false, &env);
        assert_eq!(t.address, "https://vault.example:8200");
        assert_eq!(t.ca_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert!(t.tls_skip_verify);
        assert_eq!(
            Target::resolve(Some("http://10.0.0.1:8200".into()), None, false, &env).address,
            "http://10.0.0.1:8200"
        );
        let t = Target::resolve(None, None, false, &none);
        assert_eq!(t.address, DEFAULT_ADDRESS);
        assert!(!t.tls_skip_verify);
        assert_eq!(
            Target::resolve(Some("  ".into()), None, false, &none).address,
            DEFAULT_ADDRESS
        );
    }

    #[test]
    fn token_prefers_the_flag_then_vault_token_then_the_file() {
        let env = vault_env();
        let token = |flag: Option<&str>, env: &VaultEnv| {
            resolve_token(flag.map(str::to_string), env).map(|t| t.expose().to_string())
        };
        assert_eq!(token(None, &env).as_deref(), Some("env-token"));
        assert_eq!(token(Some("flag"), &env).as_deref(), Some("flag"));
        assert_eq!(token(None, &VaultEnv::default()), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".vault-token");
        std::fs::write(&file, "file-token\n").unwrap();
        let from_file = VaultEnv {
            token_file: Some(file),
            ..VaultEnv::default()
        };
        assert_eq!(token(None, &from_file).as_deref(), Some("file-token"));
        let empty = VaultEnv {
            token: Some(Token::new(String::new())),
            ..from_file
        };
        assert_eq!(token(None, &empty), None, "an empty VAULT_TOKEN wins");
    }

    #[test]
    fn answers_are_read_as_their_data() {
        assert_eq!(
            response_data("GET /v1/x", 200, br#"{"data":{"a":1}}"#).unwrap(),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            response_data("GET /v1/x", 200, br#"{}"#).unwrap(),
            Some(Value::Null)
        );
        assert_eq!(response_data("GET /v1/x", 404, b"").unwrap(), None);
        let e = response_data("LIST x", 403, br#"{"errors":["permission denied"]}"#).unwrap_err();
        assert_eq!(e.to_string(), "LIST x: status 403: permission denied");
        assert!(response_data("GET /v1/x", 200, b"<html>").is_err());
    }

    #[test]
    fn error_bodies_are_summarised() {
        assert_eq!(
            error_text(403, br#"{"errors":["permission denied"]}"#),
            "status 403: permission denied"
        );
        assert_eq!(error_text(502, b"bad gateway"), "status 502");
    }

    /// Reads one request head (up to the blank line, at most 16 KiB).
    async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt as _;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    #[tokio::test]
    async fn redirects_are_not_followed_with_the_token() {
        use std::sync::{Arc, Mutex};
        use tokio::io::AsyncWriteExt as _;
        use tokio::net::TcpListener;

        // Another server, on another port: records any request that reaches it.
        let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_addr = other.local_addr().unwrap();
        let seen: Arc<Mutex<Option<String>>> = Arc::default();
        let record = seen.clone();
        let other_task = tokio::spawn(async move {
            if let Ok((mut stream, _)) = other.accept().await {
                let head = read_head(&mut stream).await;
                *record.lock().unwrap() = Some(head);
                let body = br#"{"data":{"keys":["x"]}}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.write_all(body).await;
            }
        });
        // The server asked: every request is redirected to the other one.
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let server_task = tokio::spawn(async move {
            for _ in 0..4 {
                let Ok((mut stream, _)) = server.accept().await else {
                    return;
                };
                read_head(&mut stream).await;
                let reply = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{other_addr}/v1/sys/sync/destinations\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        });
        let target = Target {
            address: format!("http://{addr}"),
            ca_cert: None,
            tls_skip_verify: false,
        };
        let client = Client::new(&target, Token::new("s.REDIRECTED-token".to_string())).unwrap();
        let result = client.get("sys/sync/destinations?list=true").await;
        // Had the client followed, the other server would have answered before `get` returned.
        let reached = seen.lock().unwrap().clone();
        server_task.abort();
        other_task.abort();
        assert!(reached.is_none(), "the redirect was followed: {reached:?}");
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("redirect") && err.contains(&other_addr.to_string()),
            "{err}"
        );
        assert!(!err.contains("REDIRECTED-token"), "{err}");
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode_segment("my-dest_1.x~"), "my-dest_1.x~");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
