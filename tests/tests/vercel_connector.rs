//! The `vercel-project` connector against the Vercel fake, in process: one
//! write per push, `failed[]` inside a 201 as an error, `teamId` scoping,
//! delete by id across targets, and the error classes (credentials,
//! throttling, egress).
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
use kvsync_tests::fake::vercel::{self, Vercel};
use kvsync_tests::fake::{Backend, FakeServer};
use serde_json::{Value, json};

/// One fake for the whole binary; each test's registry finds it through its
/// `ConnectorEnv` (`KVSYNC_VERCEL_API_URL` in the server).
struct World {
    server: FakeServer,
    vercel: Arc<Vercel>,
    admin: reqwest::Client,
}

static WORLD: OnceLock<World> = OnceLock::new();
/// The tests share the fake (its `failed[]` mode, call log and faults): one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let vercel = Arc::new(Vercel::new());
        let server = FakeServer::start(Backend::Fake(vercel.clone()), 0).unwrap();
        let admin = reqwest::Client::builder().no_proxy().build().unwrap();
        World {
            server,
            vercel,
            admin,
        }
    })
}

impl World {
    /// A registry whose `vercel-project` connector calls the fake.
    fn connectors(&self) -> Connectors {
        let env = ConnectorEnv {
            vercel_api_url: Some(self.server.url()),
            ..ConnectorEnv::default()
        };
        Connectors::with_env(env, DEFAULT_TIMEOUT)
    }

    async fn clear_calls(&self) {
        let url = format!("{}/_admin/calls", self.server.url());
        self.admin.delete(url).send().await.unwrap();
    }

    async fn calls(&self) -> Vec<(String, String)> {
        let url = format!("{}/_admin/calls", self.server.url());
        let calls: Vec<Value> = self
            .admin
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        calls
            .iter()
            .map(|c| {
                (
                    c["method"].as_str().unwrap().to_string(),
                    c["path"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    async fn fault(&self, fault: Value) {
        let url = format!("{}/_admin/faults", self.server.url());
        let r = self
            .admin
            .post(url)
            .body(fault.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    /// The entries of `key` in the seeded project: (id, value, targets).
    fn entries(&self, key: &str) -> Vec<(String, String, Vec<String>)> {
        self.vercel
            .envs(vercel::PROJECT_ID)
            .into_iter()
            .filter(|e| e["key"] == key)
            .map(|e| {
                let targets = e["target"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect();
                (
                    e["id"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap_or_default().to_string(),
                    targets,
                )
            })
            .collect()
    }
}

fn config() -> Value {
    json!({
        "access_token": vercel::TOKEN,
        "project_id": vercel::PROJECT_ID,
        "team_id": vercel::TEAM_ID,
        "deployment_environments": ["production", "preview"],
        "disable_strict_networking": true,
    })
}

fn dest_with(overrides: Value) -> Destination {
    let mut config = config();
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            config.as_object_mut().unwrap().remove(k);
        } else {
            config[k] = v.clone();
        }
    }
    Destination::parse("vercel-project".into(), "v".into(), config.to_string()).unwrap()
}

fn dest() -> Destination {
    dest_with(json!({}))
}

fn secret(name: &str, value: &str) -> ExternalSecret {
    ExternalSecret {
        name: name.into(),
        value: value.to_string().into(),
        tags: vec![("hashicorp:vault".into(), String::new())],
    }
}

fn client_side(err: &SyncError, needle: &str) {
    match err {
        SyncError::ClientSide(m) => assert!(m.contains(needle), "{m}"),
        other => panic!("expected a client-side error with {needle:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_push_is_one_upsert_and_overwrites_in_place() {
    let w = world();
    let _one = SERIAL.lock().await;
    let c = w.connectors();
    w.clear_calls().await;
    let before = w.vercel.writes();
    c.push(&dest(), &secret("ONE_WRITE", "v1")).await.unwrap();
    c.push(&dest(), &secret("ONE_WRITE", "v2")).await.unwrap();
    assert_eq!(w.vercel.writes(), before + 2);
    let calls = w.calls().await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|(m, p)| m == "POST" && p == "/v10/projects/prj_kvsynctest/env"),
        "{calls:?}"
    );
    let entries = w.entries("ONE_WRITE");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].1, "v2");
    assert_eq!(entries[0].2, vec!["production", "preview"]);
    c.delete(&dest(), "ONE_WRITE").await.unwrap();
    assert!(w.entries("ONE_WRITE").is_empty());
}

#[tokio::test]
async fn failed_items_inside_a_201_are_errors() {
    let w = world();
    let _one = SERIAL.lock().await;
    let c = w.connectors();
    let before = w.vercel.writes();

    w.vercel.fail_next(
        1,
        "ENV_CONFLICT",
        "A variable with the name `FAILED_KEY` already exists",
    );
    let err = c
        .push(&dest(), &secret("FAILED_KEY", "hunter2-value"))
        .await
        .unwrap_err();
    client_side(&err, "ENV_CONFLICT");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(w.entries("FAILED_KEY").is_empty());

    w.vercel.fail_next(1, "rate_limited", "Too many requests");
    let err = c
        .push(&dest(), &secret("FAILED_KEY", "v"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SyncError::ExternalService { message, .. } if message.contains("rate_limited")),
        "{err:?}"
    );
    assert!(w.entries("FAILED_KEY").is_empty());
    assert_eq!(w.vercel.writes(), before);

    // The mode is spent: the next push goes through.
    c.push(&dest(), &secret("FAILED_KEY", "v")).await.unwrap();
    assert_eq!(w.entries("FAILED_KEY").len(), 1);
    c.delete(&dest(), "FAILED_KEY").await.unwrap();

    // A real conflict: someone else owns the key for one of our targets.
    w.vercel
        .seed_env(
            vercel::PROJECT_ID,
            "THEIRS",
            "x",
            "encrypted",
            &["production"],
            None,
        )
        .unwrap();
    let err = c.push(&dest(), &secret("THEIRS", "v")).await.unwrap_err();
    client_side(&err, "ENV_CONFLICT");
    assert_eq!(w.entries("THEIRS")[0].1, "x");
}

#[tokio::test]
async fn requests_are_scoped_to_the_team() {
    let w = world();
    let _one = SERIAL.lock().await;
    let c = w.connectors();
    w.clear_calls().await;
    // The team's project is not in the personal scope.
    let err = c
        .push(&dest_with(json!({"team_id": null})), &secret("SCOPED", "v"))
        .await
        .unwrap_err();
    client_side(&err, "404");
    client_side(&err, "Project not found");
    let err = c
        .push(
            &dest_with(json!({"team_id": "team_other"})),
            &secret("SCOPED", "v"),
        )
        .await
        .unwrap_err();
    client_side(&err, "403");
    let err = c
        .delete(&dest_with(json!({"team_id": "team_other"})), "SCOPED")
        .await
        .unwrap_err();
    client_side(&err, "403");
    assert!(w.entries("SCOPED").is_empty());
    c.push(&dest(), &secret("SCOPED", "v")).await.unwrap();
    assert_eq!(w.entries("SCOPED").len(), 1);

    // A personal project: no teamId, and the team scope does not hold it.
    w.vercel.add_project("prj_personal", "personal", None);
    let personal = dest_with(json!({"team_id": null, "project_id": "prj_personal"}));
    c.push(&personal, &secret("MINE", "v")).await.unwrap();
    let err = c
        .push(
            &dest_with(json!({"project_id": "prj_personal"})),
            &secret("MINE", "v"),
        )
        .await
        .unwrap_err();
    client_side(&err, "404");
    c.delete(&personal, "MINE").await.unwrap();
    assert!(w.vercel.envs("prj_personal").is_empty());

    let calls = w.calls().await;
    assert!(calls.iter().all(|(_, p)| p.starts_with("/v")), "{calls:?}");
    c.delete(&dest(), "SCOPED").await.unwrap();
}

#[tokio::test]
async fn delete_removes_every_owned_entry_by_id() {
    let w = world();
    let _one = SERIAL.lock().await;
    let c = w.connectors();
    let seed = |target: &[&str], branch: Option<&str>| {
        w.vercel
            .seed_env(
                vercel::PROJECT_ID,
                "MULTI",
                "x",
                "encrypted",
                target,
                branch,
            )
            .unwrap()
    };
    let prod = seed(&["production"], None);
    let preview_dev = seed(&["preview", "development"], None);
    let dev = seed(&["development"], None);
    let branch = seed(&["preview"], Some("feature-x"));
    w.clear_calls().await;

    c.delete(&dest(), "MULTI").await.unwrap();
    let calls = w.calls().await;
    let mut deleted: Vec<&str> = calls
        .iter()
        .filter(|(m, _)| m == "DELETE")
        .map(|(_, p)| p.rsplit('/').next().unwrap())
        .collect();
    deleted.sort_unstable();
    let mut expected = vec![prod.as_str(), preview_dev.as_str()];
    expected.sort_unstable();
    assert_eq!(deleted, expected, "{calls:?}");
    assert_eq!(
        calls.iter().filter(|(m, _)| m == "GET").count(),
        1,
        "{calls:?}"
    );
    // Development-only and branch-specific entries are not the destination's.
    let mut left: Vec<String> = w.entries("MULTI").into_iter().map(|e| e.0).collect();
    left.sort_unstable();
    let mut kept = vec![dev.clone(), branch.clone()];
    kept.sort_unstable();
    assert_eq!(left, kept);

    // Nothing left of ours: one listing, no delete, success.
    w.clear_calls().await;
    c.delete(&dest(), "MULTI").await.unwrap();
    c.delete(&dest(), "NEVER_THERE").await.unwrap();
    let calls = w.calls().await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.iter().all(|(m, _)| m == "GET"));

    // An entry gone between the listing and the delete (404) counts as deleted.
    seed(&["production"], None);
    w.fault(json!({"method": "DELETE", "path_prefix": "/v9/", "status": 404,
                   "body": {"error": {"code": "not_found", "message": "Environment Variable not found"}}}))
        .await;
    c.delete(&dest(), "MULTI").await.unwrap();
    // A failing delete is reported.
    w.fault(json!({"method": "DELETE", "path_prefix": "/v9/", "status": 500,
                   "body": {"error": {"code": "internal_server_error", "message": "An unexpected internal error occurred"}}}))
        .await;
    let err = c.delete(&dest(), "MULTI").await.unwrap_err();
    assert!(matches!(err, SyncError::ExternalService { .. }), "{err:?}");
    c.delete(&dest(), "MULTI").await.unwrap();
    let left: Vec<String> = w.entries("MULTI").into_iter().map(|e| e.0).collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[tokio::test]
async fn credentials_throttling_and_egress_are_classified() {
    let w = world();
    let _one = SERIAL.lock().await;
    let c = w.connectors();

    let err = c
        .push(
            &dest_with(json!({"access_token": "wrong"})),
            &secret("CLASSIFIED", "v"),
        )
        .await
        .unwrap_err();
    client_side(&err, "403");
    assert!(!err.to_string().contains("wrong"), "{err}");

    w.fault(json!({"path_prefix": "/v10/", "status": 429, "times": 2,
                   "headers": [["retry-after", "7"], ["x-ratelimit-limit", "100"], ["x-ratelimit-remaining", "0"]],
                   "body": {"error": {"code": "rate_limited", "message": "Rate limit exceeded"}}}))
        .await;
    let err = c
        .push(&dest(), &secret("CLASSIFIED", "v"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SyncError::ExternalService {
            message: err.to_string(),
            retry_after: Some(Duration::from_secs(7))
        }
    );
    let err = c.delete(&dest(), "CLASSIFIED").await.unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::ExternalService {
                retry_after: Some(_),
                ..
            }
        ),
        "{err:?}"
    );

    w.fault(json!({"path_prefix": "/v10/", "status": 503, "body": ""}))
        .await;
    let err = c
        .push(&dest(), &secret("CLASSIFIED", "v"))
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::ExternalService { .. }), "{err:?}");

    let err = c
        .push(
            &dest_with(json!({"disable_strict_networking": false})),
            &secret("CLASSIFIED", "v"),
        )
        .await
        .unwrap_err();
    client_side(&err, "egress refused");

    let err = c
        .push(&dest(), &secret("9_BAD-NAME", "v"))
        .await
        .unwrap_err();
    client_side(&err, "not a valid Vercel environment variable name");
    assert!(w.entries("CLASSIFIED").is_empty());
}
