//! The azure-kv connector against the Azure fake, in process: create and
//! overwrite, the soft-delete trap (delete, then push again → recovered and
//! overwritten), token caching, and the error mapping (credentials, throttling,
//! outages, egress, name and size checks before any call).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kvsync::connectors::{
    ConnectorEnv, Connectors, DEFAULT_TIMEOUT, Destination, ExternalSecret, SyncError,
};
use kvsync_tests::fake::azure::{self, AzureKeyVault};
use kvsync_tests::fake::{Backend, FakeServer, Service};
use serde_json::{Value, json};

struct World {
    server: FakeServer,
    fake: Arc<AzureKeyVault>,
}

static WORLD: OnceLock<World> = OnceLock::new();
/// The fake is shared: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The fake, started once.
fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let fake = Arc::new(AzureKeyVault::new());
        let server = FakeServer::start(Backend::Fake(fake.clone()), 0).unwrap();
        World { server, fake }
    })
}

impl World {
    fn url(&self) -> String {
        self.server.url()
    }

    /// A registry whose `azure-kv` connector gets its tokens from the fake
    /// (`AZURE_AUTHORITY_HOST`, as the Azure SDKs read it).
    fn connectors(&self) -> Connectors {
        let env = ConnectorEnv {
            azure_authority_host: Some(self.url()),
            ..ConnectorEnv::default()
        };
        Connectors::with_env(env, DEFAULT_TIMEOUT)
    }

    fn dest(&self, overrides: Value) -> Destination {
        let mut config = json!({
            "key_vault_uri": self.url(),
            "tenant_id": azure::TENANT,
            "client_id": azure::CLIENT_ID,
            "client_secret": azure::CLIENT_SECRET,
            "cloud": "AzurePublicCloud",
            "identity_token_ttl": 3600,
            "disable_strict_networking": true,
        });
        for (k, v) in overrides.as_object().unwrap() {
            config[k] = v.clone();
        }
        Destination::parse("azure-kv".into(), "d".into(), config.to_string()).unwrap()
    }

    fn state(&self) -> Value {
        self.fake.state()
    }

    fn object(&self, name: &str) -> Option<Value> {
        self.state()["objects"].get(name).cloned()
    }

    fn deleted(&self, name: &str) -> bool {
        self.state()["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == name)
    }

    fn counter(&self, name: &str) -> u64 {
        self.state()[name].as_u64().unwrap()
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut req = client.request(method, format!("{}/_admin/{path}", self.url()));
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        req.send().await.unwrap()
    }

    async fn fault(&self, fault: Value) {
        let r = self
            .admin(reqwest::Method::POST, "faults", Some(fault))
            .await;
        assert_eq!(r.status(), 204);
    }

    async fn clear(&self) {
        self.admin(reqwest::Method::DELETE, "faults", None).await;
        self.admin(reqwest::Method::DELETE, "calls", None).await;
    }

    /// `METHOD path` of every provider call since the last clear.
    async fn calls(&self) -> Vec<String> {
        let r = self.admin(reqwest::Method::GET, "calls", None).await;
        let calls: Vec<Value> = r.json().await.unwrap();
        calls
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["method"].as_str().unwrap(),
                    c["path"].as_str().unwrap()
                )
            })
            .collect()
    }
}

fn secret(name: &str, value: &str) -> ExternalSecret {
    ExternalSecret {
        name: name.into(),
        value: value.to_string().into(),
        tags: vec![
            ("hashicorp:vault".into(), String::new()),
            ("team".into(), "infra".into()),
        ],
    }
}

fn client_side(r: Result<(), SyncError>) -> String {
    match r {
        Err(SyncError::ClientSide(m)) => m,
        other => panic!("expected a client-side error, got {other:?}"),
    }
}

#[tokio::test]
async fn push_creates_then_overwrites_with_one_put_each_and_one_token() {
    let _serial = SERIAL.lock().await;
    let w = world();
    w.clear().await;
    let c = w.connectors();
    let d = w.dest(json!({}));
    let (writes, tokens) = (w.counter("writes"), w.counter("tokens_issued"));
    c.push(&d, &secret("create-1", "v1")).await.unwrap();
    assert_eq!(
        w.object("create-1").unwrap(),
        json!({"value": "v1", "tags": {"hashicorp:vault": "", "team": "infra"}, "versions": 1})
    );
    c.push(&d, &secret("create-1", "v2")).await.unwrap();
    assert_eq!(w.object("create-1").unwrap()["value"], "v2");
    assert_eq!(w.object("create-1").unwrap()["versions"], 2);
    assert_eq!(w.counter("writes"), writes + 2);
    // One token for both pushes (cached), and no read before write.
    assert_eq!(w.counter("tokens_issued"), tokens + 1);
    let token_path = format!("POST /{}/oauth2/v2.0/token", azure::TENANT);
    assert_eq!(
        w.calls().await,
        vec![
            token_path,
            "PUT /secrets/create-1".into(),
            "PUT /secrets/create-1".into()
        ]
    );
    // Names are case-insensitive at Azure: same secret.
    c.push(&d, &secret("CREATE-1", "v3")).await.unwrap();
    assert_eq!(w.object("create-1").unwrap()["value"], "v3");
    c.delete(&d, "create-1").await.unwrap();
}

#[tokio::test]
async fn soft_delete_trap_delete_then_push_recovers_and_overwrites() {
    let _serial = SERIAL.lock().await;
    let w = world();
    w.clear().await;
    w.fake.set_recovery_lag(2);
    let c = w.connectors();
    let d = w.dest(json!({}));
    c.push(&d, &secret("trap-1", "old")).await.unwrap();
    c.delete(&d, "trap-1").await.unwrap();
    assert!(w.object("trap-1").is_none());
    assert!(w.deleted("trap-1"), "{}", w.state());
    w.clear().await;

    c.push(&d, &secret("trap-1", "new")).await.unwrap();
    let obj = w.object("trap-1").unwrap();
    assert_eq!(obj["value"], "new");
    // The recovered version stays in the history; the new one is current.
    assert_eq!(obj["versions"], 2);
    assert!(!w.deleted("trap-1"));
    assert_eq!(
        w.calls().await,
        vec![
            "PUT /secrets/trap-1",
            "POST /deletedsecrets/trap-1/recover",
            "GET /secrets/trap-1/",
            "GET /secrets/trap-1/",
            "GET /secrets/trap-1/",
            "PUT /secrets/trap-1",
        ]
    );
    // Deleting twice, and deleting what never existed, succeed.
    c.delete(&d, "trap-1").await.unwrap();
    c.delete(&d, "trap-1").await.unwrap();
    c.delete(&d, "never-there").await.unwrap();
    w.fake.set_recovery_lag(1);
}

#[tokio::test]
async fn a_recovery_that_does_not_finish_is_retryable() {
    let _serial = SERIAL.lock().await;
    let w = world();
    w.clear().await;
    let c = w.connectors();
    let d = w.dest(json!({}));
    c.push(&d, &secret("slow-1", "old")).await.unwrap();
    c.delete(&d, "slow-1").await.unwrap();
    w.fake.set_recovery_lag(1000);
    let err = c.push(&d, &secret("slow-1", "new")).await.unwrap_err();
    w.fake.set_recovery_lag(1);
    match err {
        SyncError::ExternalService { message, .. } => {
            assert!(message.contains("not readable"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Still recovering: a PUT meets 409 ObjectIsBeingRecovered, which passes by itself.
    let err = c.push(&d, &secret("slow-1", "new")).await.unwrap_err();
    assert!(matches!(err, SyncError::ExternalService { .. }), "{err:?}");
}

#[tokio::test]
async fn a_refused_recovery_is_a_client_side_error() {
    let _serial = SERIAL.lock().await;
    let w = world();
    w.clear().await;
    let c = w.connectors();
    let d = w.dest(json!({}));
    c.push(&d, &secret("norecover-1", "old")).await.unwrap();
    c.delete(&d, "norecover-1").await.unwrap();
    w.fault(json!({
        "method": "POST", "path_prefix": "/deletedsecrets/", "status": 403,
        "body": {"error": {"code": "Forbidden", "message": "The user, group or application does not have secrets recover permission on key vault"}},
    }))
    .await;
    let m = client_side(c.push(&d, &secret("norecover-1", "new")).await);
    assert!(
        m.contains("deleted but recoverable") && m.contains("'recover'"),
        "{m}"
    );
    assert!(w.deleted("norecover-1"));
    w.clear().await;
}

#[tokio::test]
async fn bad_credentials_are_client_side_errors_without_the_secret() {
    let _serial = SERIAL.lock().await;
    let w = world();
    w.clear().await;
    let c = w.connectors();
    let writes = w.counter("writes");
    let m = client_side(
        c.push(
            &w.dest(json!({"client_secret": "wrong-SECRET-value"})),
            &secret("cred-1", "v"),
        )
        .await,
    );
    assert!(m.contains("Azure rejected the client credentials"), "{m}");
    assert!(m.contains("AADSTS7000215"), "{m}");
    assert!(!m.contains("wrong-SECRET-value"), "{m}");
    let m = client_side(
        c.push(
            &w.dest(json!({"client_id": "someone-else"})),
            &secret("cred-1", "v"),
        )
        .await,
    );
    assert!(m.contains("Azure rejected the client credentials"), "{m}");
    let m = client_side(
        c.delete(&w.dest(json!({"tenant_id": "contoso.example"})), "cred-1")
            .await,
    );
    assert!(m.contains("400") && m.contains("AADSTS90002"), "{m}");
    let m = client_side(
        c.push(
            &w.dest(json!({"client_secret": ""})),
            &secret("cred-1", "v"),
        )
        .await,
    );
    assert!(m.contains("managed identity is not supported"), "{m}");
    let m = client_side(
        c.push(
            &w.dest(json!({"client_secret": "", "identity_token_audience": "api://AzureADTokenExchange"})),
            &secret("cred-1", "v"),
        )
        .await,
    );
    assert!(
        m.contains("workload identity federation is not supported"),
        "{m}"
    );
    assert_eq!(w.counter("writes"), writes);
    assert!(w.object("cred-1").is_none());
}

#[tokio::test]
async fn throttling_and_outages_are_retryable_with_the_hint() {
    let _serial = SERIAL.lock().await;
    let w = world();
    w.clear().await;
    let c = w.connectors();
    let d = w.dest(json!({}));
    // The token endpoint throttled (no token cached yet).
    w.fault(json!({"path_prefix": format!("/{}/", azure::TENANT), "status": 429, "headers": [["retry-after", "7"]],
                   "body": {"error": "temporarily_unavailable", "error_description": "AADSTS50196"}}))
        .await;
    match c.push(&d, &secret("thr-1", "v")).await {
        Err(SyncError::ExternalService { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
    // The vault throttled.
    w.fault(json!({"method": "PUT", "status": 429, "headers": [["retry-after", "7"]],
                   "body": {"error": {"code": "Throttled", "message": "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"}}}))
        .await;
    match c.push(&d, &secret("thr-1", "v")).await {
        Err(SyncError::ExternalService {
            message,
            retry_after,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(
                message.contains("429") && message.contains("Throttled"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    w.fault(json!({"method": "PUT", "status": 503})).await;
    assert!(matches!(
        c.push(&d, &secret("thr-1", "v")).await,
        Err(SyncError::ExternalService { .. })
    ));
    w.fault(json!({"method": "DELETE", "drop": true})).await;
    assert!(matches!(
        c.delete(&d, "thr-1").await,
        Err(SyncError::ExternalService { .. })
    ));
    // Recovered: it goes through.
    c.push(&d, &secret("thr-1", "v")).await.unwrap();
    assert_eq!(w.object("thr-1").unwrap()["value"], "v");
    c.delete(&d, "thr-1").await.unwrap();
}

#[tokio::test]
async fn a_401_from_the_vault_drops_the_cached_token() {
    let _serial = SERIAL.lock().await;
    let w = world();
    w.clear().await;
    let c = w.connectors();
    let d = w.dest(json!({}));
    c.push(&d, &secret("revoked-1", "v1")).await.unwrap();
    let tokens = w.counter("tokens_issued");
    w.fault(json!({"method": "PUT", "status": 401,
                   "body": {"error": {"code": "Unauthorized", "message": "[TokenExpired] Error validating token: 'S2S12086'."}}}))
        .await;
    let m = client_side(c.push(&d, &secret("revoked-1", "v2")).await);
    assert!(m.contains("401"), "{m}");
    c.push(&d, &secret("revoked-1", "v2")).await.unwrap();
    assert_eq!(w.counter("tokens_issued"), tokens + 1);
    c.delete(&d, "revoked-1").await.unwrap();
}

#[tokio::test]
async fn names_sizes_and_egress_are_checked_before_any_call() {
    let _serial = SERIAL.lock().await;
    let w = world();
    w.clear().await;
    let c = w.connectors();
    let d = w.dest(json!({}));
    let m = client_side(c.push(&d, &secret("bad_name", "v")).await);
    assert!(m.contains("not a valid Azure Key Vault secret name"), "{m}");
    let m = client_side(c.push(&d, &secret(&"x".repeat(128), "v")).await);
    assert!(m.contains("not a valid"), "{m}");
    let m = client_side(
        c.push(&d, &secret("big-1", &"v".repeat(25 * 1024 + 1)))
            .await,
    );
    assert!(m.contains("25 KB"), "{m}");
    let mut many = secret("tags-1", "v");
    many.tags
        .extend((0..15).map(|i| (format!("t{i}"), "x".to_string())));
    let m = client_side(c.push(&d, &many).await);
    assert!(m.contains("at most 15"), "{m}");
    // Under strict networking the fake's plain-http vault URL is refused first.
    let strict = w.dest(json!({"disable_strict_networking": false}));
    let m = client_side(c.push(&strict, &secret("net-1", "v")).await);
    assert!(m.contains("key_vault_uri") && m.contains("https"), "{m}");
    let m = client_side(c.delete(&strict, "net-1").await);
    assert!(m.contains("key_vault_uri") && m.contains("https"), "{m}");
    assert!(w.calls().await.is_empty());
    // The largest value fits.
    c.push(&d, &secret("big-1", &"v".repeat(25 * 1024)))
        .await
        .unwrap();
    c.delete(&d, "big-1").await.unwrap();
}
