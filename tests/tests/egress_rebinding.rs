//! DNS rebinding: every connector connects to an address its egress rules
//! allowed in the very lookup that the connection uses, never to what a later
//! lookup of the same name answers.
//!
//! No test may reach the internet, so 127.0.0.2 stands for the public address
//! (the only one allow-listed) and 127.0.0.1 for the internal one the name
//! rebinds to. A resolver double answers 127.0.0.2 to the first lookup and
//! 127.0.0.1 to every later one; a listener on each address, on the same port,
//! counts the connections it gets. The name is `localhost`, so a client that
//! resolves it again on its own also lands on 127.0.0.1.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kvsync::connectors::egress::{Dns, Lookup};
use kvsync::connectors::{ConnectorEnv, Connectors, DEFAULT_TIMEOUT, Destination, ExternalSecret};
use kvsync_tests::fake::gcp;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const PUBLIC: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const INTERNAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// Answers [`PUBLIC`] once, then [`INTERNAL`].
#[derive(Default)]
struct Rebinding {
    lookups: AtomicUsize,
}

#[async_trait::async_trait]
impl Lookup for Rebinding {
    async fn lookup(&self, _host: &str) -> std::io::Result<Vec<IpAddr>> {
        let first = self.lookups.fetch_add(1, Ordering::SeqCst) == 0;
        Ok(vec![IpAddr::V4(if first { PUBLIC } else { INTERNAL })])
    }
}

/// A listener on [`PUBLIC`] and one on [`INTERNAL`], same port, each
/// counting the connections it accepts (it reads what comes, then hangs up).
struct Listeners {
    port: u16,
    public: Arc<AtomicUsize>,
    internal: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

fn count_connections(listener: TcpListener, count: Arc<AtomicUsize>) -> JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
            });
        }
    })
}

async fn listeners() -> Listeners {
    for _ in 0..32 {
        let public = TcpListener::bind((PUBLIC, 0)).await.unwrap();
        let port = public.local_addr().unwrap().port();
        let Ok(internal) = TcpListener::bind((INTERNAL, port)).await else {
            continue;
        };
        let (p, i) = (Arc::default(), Arc::default());
        let tasks = vec![
            count_connections(public, Arc::clone(&p)),
            count_connections(internal, Arc::clone(&i)),
        ];
        return Listeners {
            port,
            public: p,
            internal: i,
            tasks,
        };
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

/// One connector type, its destination and the endpoint overrides, all at
/// `localhost:port`.
fn case(kind: &str, port: u16) -> (ConnectorEnv, Value) {
    let plain = format!("http://localhost:{port}");
    let tls = format!("https://localhost:{port}");
    let env = ConnectorEnv {
        aws_endpoint_url: Some(plain.clone()),
        azure_authority_host: Some(plain.clone()),
        gcp_secret_manager_url: Some(plain.clone()),
        vercel_api_url: Some(plain),
        ..ConnectorEnv::default()
    };
    let config = match kind {
        "aws-sm" => json!({"access_key_id": "AKIAREBIND", "secret_access_key": "aws-REBIND-secret",
                            "region": "us-east-1"}),
        "azure-kv" => {
            json!({"key_vault_uri": tls, "client_id": "c", "client_secret": "az-REBIND-secret",
                              "tenant_id": "t"})
        }
        "gcp-sm" => json!({"credentials": json!({
            "type": "service_account", "client_email": gcp::CLIENT_EMAIL, "project_id": gcp::PROJECT_ID,
            "private_key_id": gcp::PRIVATE_KEY_ID, "private_key": gcp::TEST_PRIVATE_KEY_PEM,
            "token_uri": format!("{tls}/token"),
        }).to_string()}),
        "gh" => {
            json!({"access_token": "ghp_REBIND", "repository_owner": "o", "repository_name": "r",
                        "enterprise_url": tls})
        }
        "vercel-project" => json!({"access_token": "vercel-REBIND", "project_id": "p",
                                    "deployment_environments": ["production"]}),
        other => panic!("no case for {other}"),
    };
    let mut config = config;
    config["allowed_ipv4_addresses"] = json!([format!("{PUBLIC}/32")]);
    config["allowed_ports"] = json!([port]);
    (env, config)
}

#[tokio::test]
async fn every_connector_connects_to_the_address_it_checked() {
    let mut wrong = Vec::new();
    for kind in ["aws-sm", "azure-kv", "gcp-sm", "gh", "vercel-project"] {
        let listeners = listeners().await;
        let (mut env, config) = case(kind, listeners.port);
        env.dns = Dns::custom(Rebinding::default());
        let connectors = Connectors::with_env(env, DEFAULT_TIMEOUT);
        let dest = Destination::parse(kind.into(), "d".into(), config.to_string()).unwrap();
        let secret = ExternalSecret {
            name: "REBIND1".into(),
            value: "rebind-VALUE".to_string().into(),
            tags: vec![("hashicorp:vault".into(), String::new())],
        };
        // The listeners hang up: the call fails, what matters is where it went.
        let result = connectors.push(&dest, &secret).await;
        let (public, internal) = (
            listeners.public.load(Ordering::SeqCst),
            listeners.internal.load(Ordering::SeqCst),
        );
        if internal != 0 {
            wrong.push(format!("{kind}: reached the rebound address ({result:?})"));
        } else if public == 0 {
            wrong.push(format!(
                "{kind}: never reached the checked address ({result:?})"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
