//! The `gh` connector against the in-process GitHub fake: repository,
//! environment and organization secrets, the GitHub App flow, key rotation,
//! error mapping, and the calls each operation costs.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: helpers outside #[test] functions fail the test by panicking"
)]

use std::sync::Arc;
use std::time::Duration;

use kvsync::connectors::{
    ConnectorEnv, Connectors, DEFAULT_TIMEOUT, Destination, ExternalSecret, SyncError,
};
use kvsync_tests::fake::github::{self, GitHub};
use kvsync_tests::fake::{Backend, FakeServer, Service};
use serde_json::{Value, json};

struct World {
    fake: Arc<GitHub>,
    server: FakeServer,
    http: reqwest::Client,
    connectors: Connectors,
}

impl World {
    fn new() -> Self {
        let fake = Arc::new(GitHub::new());
        let server = FakeServer::start(Backend::Fake(fake.clone()), 0).unwrap();
        World {
            fake,
            server,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            connectors: Connectors::with_env(ConnectorEnv::default(), DEFAULT_TIMEOUT),
        }
    }

    fn dest(&self, extra: Value) -> Destination {
        let mut config = json!({
            "repository_owner": github::OWNER, "repository_name": github::REPO,
            "access_token": github::TOKEN, "enterprise_url": self.server.url(),
            "disable_strict_networking": true,
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                config.as_object_mut().unwrap().remove(k);
            } else {
                config[k] = v.clone();
            }
        }
        Destination::parse("gh".into(), "d".into(), config.to_string()).unwrap()
    }

    async fn push(&self, dest: &Destination, name: &str, value: &str) -> Result<(), SyncError> {
        let secret = ExternalSecret {
            name: name.into(),
            value: value.to_string().into(),
            tags: vec![("hashicorp:vault".into(), String::new())],
        };
        self.connectors.push(dest, &secret).await
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server.url()));
        if !body.is_null() {
            req = req.body(body.to_string());
        }
        req.send().await.unwrap()
    }

    async fn hook(&self, path: &str, body: Value) {
        let r = self
            .admin(reqwest::Method::POST, &format!("/_fake/{path}"), body)
            .await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }

    async fn fault(&self, fault: Value) {
        let r = self
            .admin(reqwest::Method::POST, "/_admin/faults", fault)
            .await;
        assert_eq!(r.status(), 204);
    }

    /// The calls the fake received since the last look (`METHOD /path`).
    async fn calls(&self) -> Vec<String> {
        let r = self
            .admin(reqwest::Method::GET, "/_admin/calls", Value::Null)
            .await;
        let calls: Value = r.json().await.unwrap();
        self.admin(reqwest::Method::DELETE, "/_admin/calls", Value::Null)
            .await;
        calls
            .as_array()
            .unwrap()
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

    fn state(&self) -> Value {
        self.fake.state()
    }
}

fn client_side(r: Result<(), SyncError>) -> String {
    match r {
        Err(SyncError::ClientSide(m)) => m,
        other => panic!("expected a client-side error, got {other:?}"),
    }
}

fn external(r: Result<(), SyncError>) -> (String, Option<Duration>) {
    match r {
        Err(SyncError::ExternalService {
            message,
            retry_after,
        }) => (message, retry_after),
        other => panic!("expected an external-service error, got {other:?}"),
    }
}

const SCOPE: &str = "/api/v3/repos/kvsync/demo/actions/secrets";

#[tokio::test]
async fn repository_secrets_with_a_token() {
    let w = World::new();
    let d = w.dest(json!({}));
    w.push(&d, "db_pass", "p1").await.unwrap();
    assert_eq!(
        w.calls().await,
        [
            format!("GET {SCOPE}/public-key"),
            format!("PUT {SCOPE}/DB_PASS")
        ]
    );
    assert_eq!(w.state()["objects"]["DB_PASS"]["value"], "p1");
    // The key is cached: an update is one call.
    w.push(&d, "DB_PASS", "p2").await.unwrap();
    assert_eq!(w.calls().await, [format!("PUT {SCOPE}/DB_PASS")]);
    let state = w.state();
    assert_eq!(
        state["objects"]["DB_PASS"],
        json!({"value": "p2", "tags": {}})
    );
    assert_eq!(state["writes"], 2);

    w.connectors.delete(&d, "DB_PASS").await.unwrap();
    assert_eq!(w.calls().await, [format!("DELETE {SCOPE}/DB_PASS")]);
    assert!(w.state()["objects"].get("DB_PASS").is_none());
    // Deleting what is gone succeeds.
    w.connectors.delete(&d, "DB_PASS").await.unwrap();
}

#[tokio::test]
async fn a_rotated_key_is_fetched_again_once() {
    let w = World::new();
    let d = w.dest(json!({}));
    w.push(&d, "A", "1").await.unwrap();
    w.hook(
        "rotate-key",
        json!({"owner": github::OWNER, "repo": github::REPO}),
    )
    .await;
    w.calls().await;
    w.push(&d, "A", "2").await.unwrap();
    assert_eq!(
        w.calls().await,
        [
            format!("PUT {SCOPE}/A"),
            format!("GET {SCOPE}/public-key"),
            format!("PUT {SCOPE}/A"),
        ]
    );
    assert_eq!(w.state()["objects"]["A"]["value"], "2");
}

#[tokio::test]
async fn environment_secrets() {
    let w = World::new();
    let d = w.dest(json!({"environment_name": "prod"}));
    // GitHub answers 404 for an environment that does not exist.
    let m = client_side(w.push(&d, "A", "v").await);
    assert!(m.contains("404") && m.contains("prod"), "{m}");
    w.hook(
        "environments",
        json!({"owner": github::OWNER, "repo": github::REPO, "name": "prod"}),
    )
    .await;
    w.calls().await;
    w.push(&d, "env_secret", "e1").await.unwrap();
    let env = "/api/v3/repos/kvsync/demo/environments/prod/secrets";
    assert_eq!(
        w.calls().await,
        [
            format!("GET {env}/public-key"),
            format!("PUT {env}/ENV_SECRET")
        ]
    );
    let state = w.state();
    assert_eq!(
        state["repos"]["kvsync/demo"]["environments"]["prod"]["secrets"]["ENV_SECRET"]["value"],
        "e1"
    );
    // Not a repository secret.
    assert!(state["objects"].get("ENV_SECRET").is_none());
    w.connectors.delete(&d, "ENV_SECRET").await.unwrap();
    assert!(
        w.state()["repos"]["kvsync/demo"]["environments"]["prod"]["secrets"]
            .get("ENV_SECRET")
            .is_none()
    );
}

#[tokio::test]
async fn organization_secrets() {
    let w = World::new();
    w.hook("repos", json!({"owner": github::OWNER, "name": "api"}))
        .await;
    let org = json!({
        "repository_owner": null, "repository_name": null, "secrets_location": "organization",
        "organization_name": github::OWNER,
    });
    let mut all = org.clone();
    all["organization_visibility"] = json!("all");
    w.push(&w.dest(all), "ORG_ALL", "o1").await.unwrap();
    let mut selected = org.clone();
    selected["organization_visibility"] = json!("selected");
    selected["selected_repository_names"] = json!(["demo", "api"]);
    let d = w.dest(selected);
    w.calls().await;
    w.push(&d, "ORG_SEL", "o2").await.unwrap();
    // The org's key is cached; the repository ids are looked up once.
    assert_eq!(
        w.calls().await,
        [
            "GET /api/v3/repos/kvsync/demo",
            "GET /api/v3/repos/kvsync/api",
            "PUT /api/v3/orgs/kvsync/actions/secrets/ORG_SEL",
        ]
    );
    let state = w.state();
    let orgs = &state["orgs"]["kvsync"]["secrets"];
    assert_eq!(orgs["ORG_ALL"]["value"], "o1");
    assert_eq!(orgs["ORG_ALL"]["visibility"], "all");
    assert_eq!(orgs["ORG_SEL"]["visibility"], "selected");
    let ids = |repo: &str| state["repos"][repo]["id"].clone();
    assert_eq!(
        orgs["ORG_SEL"]["selected_repository_ids"],
        json!([ids("kvsync/demo"), ids("kvsync/api")])
    );
    w.push(&d, "ORG_SEL", "o3").await.unwrap();
    assert_eq!(
        w.calls().await,
        ["PUT /api/v3/orgs/kvsync/actions/secrets/ORG_SEL"]
    );

    let mut missing = org.clone();
    missing["organization_visibility"] = json!("selected");
    missing["selected_repository_names"] = json!(["nope"]);
    let m = client_side(w.push(&w.dest(missing), "X", "v").await);
    assert!(m.contains("kvsync/nope"), "{m}");
    w.connectors.delete(&d, "ORG_SEL").await.unwrap();
    assert!(
        w.state()["orgs"]["kvsync"]["secrets"]
            .get("ORG_SEL")
            .is_none()
    );
}

fn app(installation_id: u64) -> Value {
    json!({
        "access_token": null, "app_name": "kvsync-app", "installation_id": installation_id,
        "app_config": {"app_id": github::APP_ID, "private_key": github::APP_PRIVATE_KEY_PEM},
    })
}

#[tokio::test]
async fn github_app_installation_tokens() {
    let w = World::new();
    let d = w.dest(app(github::INSTALLATION_ID));
    w.push(&d, "FROM_APP", "a1").await.unwrap();
    assert_eq!(
        w.calls().await,
        [
            format!(
                "POST /api/v3/app/installations/{}/access_tokens",
                github::INSTALLATION_ID
            ),
            format!("GET {SCOPE}/public-key"),
            format!("PUT {SCOPE}/FROM_APP"),
        ]
    );
    // The installation token is cached.
    w.push(&d, "FROM_APP", "a2").await.unwrap();
    assert_eq!(w.calls().await, [format!("PUT {SCOPE}/FROM_APP")]);
    assert_eq!(w.state()["objects"]["FROM_APP"]["value"], "a2");
    assert_eq!(w.state()["installation_tokens_issued"], 1);

    // A token GitHub no longer takes is renewed once.
    w.hook("expire-tokens", Value::Null).await;
    w.calls().await;
    w.push(&d, "FROM_APP", "a3").await.unwrap();
    assert_eq!(
        w.calls().await,
        [
            format!("PUT {SCOPE}/FROM_APP"),
            format!(
                "POST /api/v3/app/installations/{}/access_tokens",
                github::INSTALLATION_ID
            ),
            format!("PUT {SCOPE}/FROM_APP"),
        ]
    );
    assert_eq!(w.state()["installation_tokens_issued"], 2);
    w.connectors.delete(&d, "FROM_APP").await.unwrap();

    // An installation of another app, and a key GitHub does not know.
    let m = client_side(w.push(&w.dest(app(999)), "X", "v").await);
    assert!(m.contains("404") && m.contains("installation"), "{m}");
    let mut wrong_key = app(github::INSTALLATION_ID);
    wrong_key["app_config"]["app_id"] = json!(4242);
    let m = client_side(w.push(&w.dest(wrong_key), "X", "v").await);
    assert!(m.contains("404"), "{m}");
    // The token only sees the installation's account.
    w.hook("repos", json!({"owner": "someone-else", "name": "web"}))
        .await;
    let mut elsewhere = app(github::INSTALLATION_ID);
    elsewhere["repository_owner"] = json!("someone-else");
    elsewhere["repository_name"] = json!("web");
    let m = client_side(w.push(&w.dest(elsewhere), "X", "v").await);
    assert!(m.contains("404"), "{m}");
}

#[tokio::test]
async fn errors_are_classified() {
    let w = World::new();
    let d = w.dest(json!({}));
    let m = client_side(
        w.push(&w.dest(json!({"access_token": "ghp_wrong"})), "A", "v")
            .await,
    );
    assert!(
        m.contains("bad credentials") && !m.contains("ghp_wrong"),
        "{m}"
    );

    // Read-only token: a plain 403.
    w.hook("tokens", json!({"token": "ghp_readonly", "write": false}))
        .await;
    let m = client_side(
        w.push(&w.dest(json!({"access_token": "ghp_readonly"})), "A", "v")
            .await,
    );
    assert!(m.contains("403") && m.contains("permission"), "{m}");

    // Primary rate limit: 403 + exhausted budget + reset time.
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 30;
    w.fault(json!({"status": 403, "body": {"message": "API rate limit exceeded"}, "times": 1,
                   "headers": [["x-ratelimit-remaining", "0"], ["x-ratelimit-reset", reset.to_string()]]}))
        .await;
    let (_, retry) = external(w.push(&d, "A", "v").await);
    assert!((28..=30).contains(&retry.unwrap().as_secs()), "{retry:?}");
    // 429 + retry-after.
    w.fault(
        json!({"status": 429, "body": {"message": "slow down"}, "headers": [["retry-after", "7"]]}),
    )
    .await;
    let (_, retry) = external(w.push(&d, "A", "v").await);
    assert_eq!(retry, Some(Duration::from_secs(7)));
    // 5xx and a dropped connection: retryable, and nothing retried here.
    w.calls().await;
    w.fault(json!({"status": 502, "body": "bad gateway"})).await;
    external(w.push(&d, "A", "v").await);
    assert_eq!(w.calls().await.len(), 1);
    w.fault(json!({"drop": true})).await;
    let (m, _) = external(w.push(&d, "A", "v").await);
    assert!(m.starts_with("GitHub"), "{m}");
    assert_eq!(w.calls().await.len(), 1);
    // The provider recovered.
    w.push(&d, "A", "v").await.unwrap();
    assert_eq!(w.state()["objects"]["A"]["value"], "v");

    // Missing repository: 404, client-side; its delete counts as done.
    let gone = w.dest(json!({"repository_name": "gone"}));
    let m = client_side(w.push(&gone, "A", "v").await);
    assert!(m.contains("404"), "{m}");
    w.connectors.delete(&gone, "A").await.unwrap();

    // Checked before any call: names, sizes, egress.
    w.calls().await;
    client_side(w.push(&d, "GITHUB_TOKEN", "v").await);
    client_side(w.push(&d, "A", &"x".repeat(48 * 1024 + 1)).await);
    // Under strict networking the fake's plain-http URL is refused first.
    let strict = w.dest(json!({"disable_strict_networking": false}));
    let m = client_side(w.push(&strict, "A", "v").await);
    assert!(m.contains("enterprise_url") && m.contains("https"), "{m}");
    assert!(w.calls().await.is_empty());
    // 48 KB exactly is fine.
    w.push(&d, "BIG", &"x".repeat(48 * 1024)).await.unwrap();
}

#[tokio::test]
async fn a_slow_github_times_out_as_an_external_service_error() {
    let w = World::new();
    let connectors = Connectors::with_env(ConnectorEnv::default(), Duration::from_millis(500));
    w.fault(json!({"delay_ms": 2000, "status": 0})).await;
    let d = w.dest(json!({}));
    let secret = ExternalSecret {
        name: "A".into(),
        value: "v".to_string().into(),
        tags: vec![],
    };
    let (m, _) = external(connectors.push(&d, &secret).await);
    assert!(m.contains("timed out"), "{m}");
}
