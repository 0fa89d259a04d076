//! The token endpoints against the minimal token store: Vault's bodies, the
//! fields as the Go client, the CLI and hvac send them, and the answers for
//! unknown tokens.

use serde_json::{Value, json};

use crate::env::Fakes;
use crate::testing::call;
use crate::tokens::{CreateRequest, TokenError};

fn create(f: &Fakes, path: &str, body: Value) -> (u16, Value) {
    call(&f.env(), "POST", path, &body)
}

fn last_request(f: &Fakes) -> CreateRequest {
    f.tokens.created.borrow().last().cloned().unwrap()
}

#[test]
fn create_answers_with_an_auth_block() {
    let f = Fakes::default();
    let (status, body) = create(
        &f,
        "auth/token/create",
        json!({"policies": ["a", "b"], "ttl": "1h", "meta": {"team": "x"}, "num_uses": "3"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["mount_type"], "token");
    let auth = &body["auth"];
    assert_eq!(auth["client_token"], "tok-1");
    assert_eq!(auth["accessor"], "acc-1");
    assert_eq!(auth["policies"], json!(["a", "b"]));
    assert_eq!(auth["token_policies"], json!(["a", "b"]));
    assert_eq!(auth["metadata"], json!({"team": "x"}));
    assert_eq!(auth["lease_duration"], 3600);
    assert_eq!(auth["renewable"], true);
    assert_eq!(auth["entity_id"], "");
    assert_eq!(auth["token_type"], "service");
    assert_eq!(auth["orphan"], false);
    assert_eq!(auth["mfa_requirement"], Value::Null);
    assert_eq!(auth["num_uses"], 3);
    let mut keys: Vec<&str> = auth
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "accessor",
            "client_token",
            "entity_id",
            "lease_duration",
            "metadata",
            "mfa_requirement",
            "num_uses",
            "orphan",
            "policies",
            "renewable",
            "token_policies",
            "token_type"
        ]
    );
    let req = last_request(&f);
    assert_eq!(req.ttl, 3600);
    assert_eq!(req.num_uses, 3);
    assert!(req.renewable);
    assert!(!req.orphan_endpoint);
}

#[test]
fn create_takes_the_go_client_and_cli_defaults_as_unset() {
    let f = Fakes::default();
    // The Terraform provider's body, then the Vault CLI's.
    for body in [
        json!({"display_name": "terraform", "ttl": "1200s", "explicit_max_ttl": "1200s",
               "renewable": false, "num_uses": 0, "type": "", "entity_alias": ""}),
        json!({"ttl": "0s", "explicit_max_ttl": "0s", "period": "0s", "type": "service",
               "display_name": "", "num_uses": 0, "entity_alias": "", "policies": []}),
    ] {
        let (status, out) = create(&f, "auth/token/create", body);
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["warnings"], Value::Null, "{out}");
    }
    let cli = last_request(&f);
    assert_eq!(
        (cli.ttl, cli.explicit_max_ttl, cli.period, cli.num_uses),
        (0, 0, 0, 0)
    );
    assert_eq!(cli.policies, None);
    assert_eq!(cli.id, None);
    assert_eq!(cli.meta, None);
    let tf = f.tokens.created.borrow()[0].clone();
    assert_eq!((tf.ttl, tf.explicit_max_ttl), (1200, 1200));
    assert!(!tf.renewable);
    assert_eq!(tf.display_name, "terraform");
}

#[test]
fn create_reads_lenient_types() {
    let f = Fakes::default();
    let (status, _) = create(
        &f,
        "auth/token/create-orphan",
        json!({"policies": "A, b", "ttl": 90, "period": "2d", "explicit_max_ttl": "",
               "lease": "1h", "no_parent": "true", "meta": ["k=v"], "id": "custom"}),
    );
    assert_eq!(status, 200);
    let req = last_request(&f);
    assert!(req.orphan_endpoint && req.no_parent);
    // One string is one policy, commas and all, as in Vault.
    assert_eq!(req.policies, Some(vec!["A, b".to_string()]));
    assert_eq!(
        (req.ttl, req.period, req.explicit_max_ttl),
        (90, 172_800, 0)
    );
    assert_eq!(req.meta, Some(vec![("k".into(), "v".into())]));
    assert_eq!(req.id.as_deref(), Some("custom"));
    // `lease` stands for `ttl` when `ttl` is unset.
    create(&f, "auth/token/create", json!({"lease": "1h"}));
    assert_eq!(last_request(&f).ttl, 3600);
}

#[test]
fn create_refuses_what_the_request_alone_rules_out() {
    let f = Fakes::default();
    for (body, message) in [
        (json!({"type": "batch"}), "batch tokens are not supported"),
        (json!({"type": "other"}), "invalid 'token_type' value"),
        (json!({"num_uses": -1}), "number of uses cannot be negative"),
        (
            json!({"entity_alias": "x"}),
            "'entity_alias' is only allowed in combination with token role",
        ),
        (json!({"ttl": "-1h"}), "ttl must be positive"),
        (json!({"lease": -5}), "lease must be positive"),
        (
            json!({"explicit_max_ttl": "-1s"}),
            "explicit_max_ttl must be positive",
        ),
        (json!({"period": -60}), "period must be positive"),
    ] {
        let (status, out) = create(&f, "auth/token/create", body.clone());
        assert_eq!(status, 400, "{body}");
        assert_eq!(out["errors"], json!([message]), "{body}");
    }
    let (status, out) = create(&f, "auth/token/create", json!({"ttl": "soon"}));
    assert_eq!(status, 400, "{out}");
    assert!(f.tokens.created.borrow().is_empty());
    let (status, out) = create(&f, "auth/token/create/my-role", json!({}));
    assert_eq!(
        (status, out),
        (400, json!({"errors": ["unknown role my-role"]}))
    );
}

#[test]
fn the_store_s_errors_keep_their_class_and_message() {
    let f = Fakes::default();
    f.tokens.fail(TokenError::BadRequest(
        "child policies must be subset of parent".into(),
    ));
    let (status, out) = create(&f, "auth/token/create", json!({"policies": ["x"]}));
    assert_eq!(status, 400);
    assert_eq!(
        out["errors"],
        json!(["child policies must be subset of parent"])
    );
    f.tokens
        .fail(TokenError::Forbidden("permission denied".into()));
    let (status, _) = call(&f.env(), "GET", "auth/token/lookup-self", &Value::Null);
    assert_eq!(status, 403);
    f.tokens
        .fail(TokenError::Unavailable("disk on fire".into()));
    let (status, out) = call(&f.env(), "POST", "auth/token/renew-self", &json!({}));
    assert_eq!(status, 503);
    assert!(!out.to_string().contains("disk on fire"));
}

/// The keys of a lookup's `data`, sorted.
fn keys(data: &Value) -> Vec<String> {
    let mut keys: Vec<String> = data.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

const LOOKUP_KEYS: &[&str] = &[
    "accessor",
    "creation_time",
    "creation_ttl",
    "display_name",
    "entity_id",
    "expire_time",
    "explicit_max_ttl",
    "id",
    "issue_time",
    "meta",
    "num_uses",
    "orphan",
    "path",
    "policies",
    "renewable",
    "ttl",
    "type",
];

#[test]
fn lookups_show_vault_s_data() {
    let f = Fakes::default();
    for (method, body) in [("GET", Value::Null), ("POST", json!({}))] {
        let (status, out) = call(&f.env(), method, "auth/token/lookup-self", &body);
        assert_eq!(status, 200, "{out}");
        let data = &out["data"];
        assert_eq!(keys(data), LOOKUP_KEYS);
        assert_eq!(data["id"], "caller");
        assert_eq!(data["expire_time"], Value::Null);
        assert_eq!(data["type"], "service");
        assert_eq!(data["meta"], Value::Null);
        assert_eq!(out["auth"], Value::Null);
    }
    create(
        &f,
        "auth/token/create",
        json!({"ttl": "1h", "meta": {"a": "b"}}),
    );
    let (status, out) = call(
        &f.env(),
        "POST",
        "auth/token/lookup",
        &json!({"token": "tok-1"}),
    );
    assert_eq!(status, 200);
    assert_eq!(out["data"]["id"], "tok-1");
    assert_eq!(out["data"]["meta"], json!({"a": "b"}));
    assert_eq!(out["data"]["creation_ttl"], 3600);
    assert_eq!(out["data"]["expire_time"], "1970-01-01T01:00:00Z");
    // GET with the token in the query; no token: the caller's own.
    let (_, out) = call(
        &f.env(),
        "GET",
        "auth/token/lookup?token=tok-1",
        &Value::Null,
    );
    assert_eq!(out["data"]["id"], "tok-1");
    let (_, out) = call(&f.env(), "POST", "auth/token/lookup", &json!({}));
    assert_eq!(out["data"]["id"], "caller");
    // By accessor the token itself is not shown.
    let (status, out) = call(
        &f.env(),
        "POST",
        "auth/token/lookup-accessor",
        &json!({"accessor": "acc-1"}),
    );
    assert_eq!(status, 200);
    assert_eq!(out["data"]["id"], "");
    assert_eq!(out["data"]["accessor"], "acc-1");
}

#[test]
fn unknown_tokens_get_each_endpoint_s_answer() {
    let f = Fakes::default();
    let env = f.env();
    let cases = [
        (
            "auth/token/lookup",
            json!({"token": "nope"}),
            403,
            Some("bad token"),
        ),
        (
            "auth/token/lookup-accessor",
            json!({"accessor": "nope"}),
            400,
            Some("invalid accessor"),
        ),
        (
            "auth/token/lookup-accessor",
            json!({}),
            400,
            Some("missing accessor"),
        ),
        (
            "auth/token/renew",
            json!({"token": "nope"}),
            400,
            Some("token not found"),
        ),
        ("auth/token/renew", json!({}), 400, Some("missing token ID")),
        (
            "auth/token/renew-accessor",
            json!({"accessor": "nope"}),
            400,
            Some("invalid accessor"),
        ),
        (
            "auth/token/renew-accessor",
            json!({}),
            400,
            Some("missing accessor"),
        ),
        ("auth/token/revoke", json!({"token": "nope"}), 204, None),
        (
            "auth/token/revoke",
            json!({"token": ""}),
            400,
            Some("missing token ID"),
        ),
        (
            "auth/token/revoke-accessor",
            json!({}),
            400,
            Some("missing accessor"),
        ),
        (
            "auth/token/revoke-orphan",
            json!({"token": "nope"}),
            400,
            Some("token to revoke not found"),
        ),
        (
            "auth/token/revoke-orphan",
            json!({}),
            400,
            Some("missing token ID"),
        ),
    ];
    for (path, body, status, message) in cases {
        let (got, out) = call(&env, "POST", path, &body);
        assert_eq!(got, status, "{path} {body}: {out}");
        if let Some(message) = message {
            assert_eq!(out["errors"], json!([message]), "{path} {body}");
        }
    }
    let (status, out) = call(
        &env,
        "POST",
        "auth/token/revoke-accessor",
        &json!({"accessor": "nope"}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        out["warnings"],
        json!(["No token found with this accessor"])
    );
    assert_eq!(out["data"], Value::Null);
}

#[test]
fn renew_answers_with_an_auth_block() {
    let f = Fakes::default();
    create(&f, "auth/token/create", json!({"ttl": "1h"}));
    let (status, out) = call(
        &f.env(),
        "POST",
        "auth/token/renew",
        &json!({"token": "tok-1", "increment": "30m"}),
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["auth"]["client_token"], "tok-1");
    assert_eq!(out["auth"]["lease_duration"], 1800);
    let (status, out) = call(
        &f.env(),
        "POST",
        "auth/token/renew-accessor",
        &json!({"accessor": "acc-1", "increment": -5}),
    );
    assert_eq!(status, 200);
    assert_eq!(out["auth"]["client_token"], "");
    assert_eq!(out["auth"]["lease_duration"], 3600);
    let (status, out) = call(&f.env(), "POST", "auth/token/renew-self", &json!({}));
    assert_eq!(status, 200);
    assert_eq!(out["auth"]["client_token"], "caller");
}

#[test]
fn revocations_and_the_accessor_list() {
    let f = Fakes::default();
    let env = f.env();
    create(&f, "auth/token/create", json!({}));
    create(&f, "auth/token/create", json!({}));
    let (status, out) = call(&env, "LIST", "auth/token/accessors", &Value::Null);
    assert_eq!(status, 200);
    assert_eq!(out["data"]["keys"], json!(["acc-1", "acc-2", "acc-caller"]));
    let (status, _) = call(&env, "GET", "auth/token/accessors?list=true", &Value::Null);
    assert_eq!(status, 200);
    assert_eq!(
        call(&env, "GET", "auth/token/accessors/", &Value::Null).0,
        405
    );
    assert_eq!(
        call(
            &env,
            "POST",
            "auth/token/revoke",
            &json!({"token": "tok-1"})
        )
        .0,
        204
    );
    assert_eq!(
        call(
            &env,
            "POST",
            "auth/token/revoke-accessor",
            &json!({"accessor": "acc-2"})
        )
        .0,
        204
    );
    assert_eq!(
        call(&env, "POST", "auth/token/revoke-self", &json!({})).0,
        204
    );
    let (status, _) = call(&env, "LIST", "auth/token/accessors", &Value::Null);
    assert_eq!(status, 404);
}

#[test]
fn tidy_roles_and_unknown_paths() {
    let f = Fakes::default();
    let env = f.env();
    let (status, out) = call(&env, "POST", "auth/token/tidy", &json!({}));
    assert_eq!(status, 202);
    assert_eq!(out["warnings"].as_array().unwrap().len(), 1);
    assert_eq!(out["data"], Value::Null);
    assert_eq!(call(&env, "LIST", "auth/token/roles", &Value::Null).0, 404);
    assert_eq!(call(&env, "GET", "auth/token/roles/x", &Value::Null).0, 404);
    assert_eq!(call(&env, "POST", "auth/token/roles/x", &json!({})).0, 400);
    assert_eq!(
        call(&env, "GET", "auth/token/lookup-self/", &Value::Null).0,
        404
    );
    assert_eq!(call(&env, "GET", "auth/token/create", &Value::Null).0, 405);
    assert_eq!(call(&env, "POST", "auth/token/bogus", &json!({})).0, 404);
}

#[test]
fn the_sudo_flags_are_vault_s() {
    let sudo: Vec<&str> = super::PATHS
        .iter()
        .filter(|p| p.sudo)
        .map(|p| p.pattern)
        .collect();
    // `revoke-orphan` checks root or sudo in its handler (a 400), as Vault
    // does; only the accessor listing is root-protected for the ACL.
    assert_eq!(sudo, ["accessors/"]);
    assert!(super::PATHS.iter().all(|p| !p.unauthenticated));
}
