use super::*;
use serde_json::json;

/// A connector that talks to `base_url` instead of Vercel's API.
fn with_base_url(base_url: impl Into<String>) -> VercelProject {
    VercelProject::new(&ConnectorEnv {
        vercel_api_url: Some(base_url.into()),
        ..ConnectorEnv::default()
    })
}

fn dest(config: Value) -> Dest<Config> {
    let d = crate::connectors::Destination::parse(
        "vercel-project".into(),
        "v".into(),
        config.to_string(),
    );
    Dest::parse(&d.unwrap()).unwrap()
}

/// Why `config` cannot be used: a parse error or a settings error.
fn settings_error(config: Value) -> SyncError {
    let d = crate::connectors::Destination::parse(
        "vercel-project".into(),
        "v".into(),
        config.to_string(),
    );
    match Dest::<Config>::parse(&d.unwrap()) {
        Err(e) => e,
        Ok(d) => d.config.settings().err().unwrap(),
    }
}

fn config() -> Value {
    json!({
        "access_token": "vercel-SECRET-token",
        "project_id": "prj_1",
        "team_id": "team_1",
        "deployment_environments": ["preview", "production"],
    })
}

fn secret(name: &str, value: &str) -> ExternalSecret {
    ExternalSecret {
        name: name.into(),
        value: Zeroizing::new(value.into()),
        tags: vec![("hashicorp:vault".into(), String::new())],
    }
}

#[test]
fn names_follow_vercels_rule() {
    for ok in ["A", "_9", "VAULT_KV_1234_APP_PASSWORD", "lower_case", "_"] {
        assert!(check_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "9lives", "A-B", "A.B", "A B", "é", "A/B"] {
        let err = check_name(bad).unwrap_err();
        assert!(matches!(err, SyncError::ClientSide(_)), "{bad}: {err:?}");
    }
}

#[test]
fn values_up_to_64_kib() {
    assert!(check_value(&"x".repeat(MAX_VALUE_BYTES)).is_ok());
    let err = check_value(&"x".repeat(MAX_VALUE_BYTES + 1)).unwrap_err();
    assert!(
        matches!(&err, SyncError::ClientSide(m) if m.contains("65537 bytes")),
        "{err:?}"
    );
}

#[test]
fn settings_read_the_engines_fields() {
    let d = dest(config());
    let s = d.config.settings().unwrap();
    assert_eq!(s.project_id, "prj_1");
    assert_eq!(s.team_id, Some("team_1"));
    // Vercel's order, whatever the config's.
    assert_eq!(s.targets, vec!["production", "preview"]);
    let mut c = config();
    c["deployment_environments"] = json!("development, preview,development");
    c["team_id"] = json!("");
    let d = dest(c);
    let s = d.config.settings().unwrap();
    assert_eq!(s.targets, vec!["preview", "development"]);
    assert_eq!(s.team_id, None);

    for (field, value) in [
        ("deployment_environments", json!([])),
        ("deployment_environments", json!("staging")),
        ("deployment_environments", json!([1])),
        ("access_token", json!("")),
        ("project_id", json!(null)),
        ("team_id", json!({"a": 1})),
    ] {
        let mut c = config();
        c[field] = value;
        let err = settings_error(c);
        assert!(
            matches!(&err, SyncError::ClientSide(m) if m.contains(field)),
            "{field}: {err:?}"
        );
        assert!(!err.to_string().contains("SECRET"));
    }
}

#[test]
fn urls_carry_the_team_and_encode_segments() {
    let d = dest(config());
    let api = Api::new(&d, "http://127.0.0.1:9/", &Dns::System).unwrap();
    let url = api
        .url(
            &["v10", "projects", "my project", "env"],
            &[("upsert", "true")],
        )
        .unwrap();
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:9/v10/projects/my%20project/env?upsert=true&teamId=team_1"
    );
    let mut c = config();
    c.as_object_mut().unwrap().remove("team_id");
    let d = dest(c);
    let api = Api::new(&d, "https://api.example.com/prefix", &Dns::System).unwrap();
    let url = api
        .url(&["v9", "projects", "prj_1", "env", "abc/def"], &[])
        .unwrap();
    assert_eq!(
        url.as_str(),
        "https://api.example.com/prefix/v9/projects/prj_1/env/abc%2Fdef"
    );
}

#[test]
fn the_upsert_body_is_one_encrypted_item() {
    let body = upsert_body("KEY", "v\"1", &["production", "preview"]).unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        json!([{"key": "KEY", "value": "v\"1", "type": "encrypted", "target": ["production", "preview"]}])
    );
}

#[test]
fn failed_items_are_errors_classified_by_code() {
    assert!(
        failures_of(r#"{"created": [{"key": "A"}], "failed": []}"#)
            .unwrap()
            .is_empty()
    );
    assert!(
        failures_of(r#"{"created": {"key": "A"}}"#)
            .unwrap()
            .is_empty()
    );
    assert!(failures_of("").unwrap().is_empty());
    assert!(failures_of("<html>").is_err());
    let body = r#"{"created": [], "failed": [
        {"error": {"code": "ENV_CONFLICT", "message": "A variable with the name `A` already exists", "key": "A"}},
        {"error": {"code": "ENV_CONFLICT", "message": "again"}}]}"#;
    let failures = failures_of(body).unwrap();
    assert_eq!(failures.len(), 2);
    let err = failure_error("A", &failures[0], failures.len(), "");
    match &err {
        SyncError::ClientSide(m) => {
            assert!(m.contains("ENV_CONFLICT"), "{m}");
            assert!(m.contains("already exists"), "{m}");
            assert!(m.contains("1 more"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    for code in [
        "BAD_REQUEST",
        "bad_request",
        "ENV_ALREADY_EXISTS",
        "forbidden",
        "",
    ] {
        let f = Failure {
            code: code.into(),
            message: "m".into(),
        };
        assert!(
            matches!(failure_error("A", &f, 1, ""), SyncError::ClientSide(_)),
            "{code}"
        );
    }
    for code in [
        "rate_limited",
        "RATE_LIMITED",
        "internal_server_error",
        "service_unavailable",
        "timeout",
    ] {
        let f = Failure {
            code: code.into(),
            message: "m".into(),
        };
        assert!(
            matches!(
                failure_error("A", &f, 1, ""),
                SyncError::ExternalService { .. }
            ),
            "{code}"
        );
    }
}

#[test]
fn provider_text_never_shows_the_value() {
    let f = Failure {
        code: "bad_request".into(),
        message: "value hunter2-secret is wrong".into(),
    };
    let err = failure_error("A", &f, 1, "hunter2-secret");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let body = scrub(
        Zeroizing::new("echo hunter2-secret".into()),
        "hunter2-secret",
    );
    assert_eq!(body.as_str(), "echo *****");
}

#[test]
fn deletes_find_every_owned_entry_of_the_key() {
    let body = json!({"envs": [
        {"id": "e1", "key": "A", "target": ["production"]},
        {"id": "e2", "key": "A", "target": ["preview", "development"]},
        {"id": "e3", "key": "A", "target": ["development"]},
        {"id": "e4", "key": "A", "target": "preview"},
        {"id": "e5", "key": "A", "target": ["preview"], "gitBranch": "feature"},
        {"id": "e6", "key": "B", "target": ["production"]},
        {"id": "e7", "key": "a", "target": ["production"]},
        {"key": "A", "target": ["production"]},
    ]})
    .to_string();
    assert_eq!(
        ids_to_delete(&body, "A", &["production", "preview"]).unwrap(),
        vec!["e1", "e2", "e4"]
    );
    assert!(
        ids_to_delete(&body, "C", &["production"])
            .unwrap()
            .is_empty()
    );
    assert!(
        ids_to_delete(r#"{"envs": []}"#, "A", &["production"])
            .unwrap()
            .is_empty()
    );
    assert!(ids_to_delete("nope", "A", &["production"]).is_err());
}

#[tokio::test]
async fn bad_names_and_sizes_fail_before_any_call() {
    // Port 9 on loopback: a call would be refused by the egress rules or fail.
    let c = with_base_url("http://127.0.0.1:9");
    let d = dest(config());
    let err = c.push(&d, &secret("9bad", "v")).await.unwrap_err();
    assert!(
        matches!(&err, SyncError::ClientSide(m) if m.contains("starts with a digit")),
        "{err:?}"
    );
    let err = c
        .push(&d, &secret("A", &"x".repeat(MAX_VALUE_BYTES + 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SyncError::ClientSide(m) if m.contains("at most")),
        "{err:?}"
    );
    // A name Vercel could not hold is already gone.
    c.delete(&d, "not-a-key").await.unwrap();
}

#[tokio::test]
async fn strict_networking_refuses_loopback() {
    let c = with_base_url("http://127.0.0.1:9");
    let d = dest(config());
    let err = c.push(&d, &secret("A", "v")).await.unwrap_err();
    assert!(
        matches!(&err, SyncError::ClientSide(m) if m.contains("egress refused")),
        "{err:?}"
    );
    let err = c.delete(&d, "A").await.unwrap_err();
    assert!(
        matches!(&err, SyncError::ClientSide(m) if m.contains("egress refused")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unreachable_api_is_an_external_service_error() {
    // Bind then drop: a loopback port with nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = with_base_url(format!("http://127.0.0.1:{port}"));
    let mut cfg = config();
    cfg["disable_strict_networking"] = json!(true);
    let d = dest(cfg);
    let err = c.push(&d, &secret("A", "hunter2-value")).await.unwrap_err();
    assert!(matches!(err, SyncError::ExternalService { .. }), "{err:?}");
    assert!(
        !err.to_string().contains("SECRET") && !err.to_string().contains("hunter2"),
        "{err}"
    );
}
