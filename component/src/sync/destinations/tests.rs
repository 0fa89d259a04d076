//! Behaviour shared by every type: names, reads, merges, tags, templates,
//! lists and deletes. Each type module tests its own field table.

use serde_json::{Value, json};

use super::testing::Server;
use super::*;
use crate::connector::SyncError;

const AWS: &str = "sys/sync/destinations/aws-sm/prod";
const MEM: &str = "sys/sync/destinations/in-mem/box";

fn errors(body: &Value) -> String {
    body["errors"][0].as_str().unwrap_or_default().to_string()
}

#[test]
fn read_shape_and_missing_destinations() {
    let s = Server::new();
    assert_eq!(s.get(MEM), (404, json!({"errors": []})));
    assert_eq!(s.patch(MEM, json!({})), (404, json!({"errors": []})));
    let (status, body) = s.post(MEM, Value::Null);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"name": "box", "type": "in-mem", "connection_details": {},
               "options": {"granularity_level": "secret-path",
                           "secret_name_template": "vault/{{ .MountAccessor }}/{{ .SecretPath }}"}})
    );
    assert_eq!(body["mount_type"], "system");
    assert_eq!(body["warnings"], Value::Null);
    assert_eq!(s.get(MEM).1["data"], body["data"]);
    assert_eq!(s.call("PUT", MEM, json!({})).0, 200);
}

#[test]
fn names_and_types_are_checked() {
    let s = Server::new();
    for name in ["a%20b", "dot.", "caf%C3%A9", "a:b"] {
        let (status, body) = s.post(&format!("sys/sync/destinations/in-mem/{name}"), json!({}));
        assert_eq!(status, 400, "{name}");
        assert!(errors(&body).contains("invalid destination name"), "{body}");
    }
    for name in ["a.b", "A_b-9", "x"] {
        s.write(&format!("sys/sync/destinations/in-mem/{name}"), json!({}));
    }
    for (method, path) in [
        ("GET", "sys/sync/destinations/gitlab/x"),
        ("POST", "sys/sync/destinations/gitlab/x"),
        ("DELETE", "sys/sync/destinations/gitlab/x"),
        ("LIST", "sys/sync/destinations/gitlab"),
    ] {
        let (status, body) = s.call(method, path, json!({}));
        assert_eq!(status, 400, "{method} {path}");
        assert_eq!(errors(&body), "unknown destination type \"gitlab\"");
    }
    assert_eq!(s.snapshot().len(), 3);
}

#[test]
fn post_merges_into_the_stored_record() {
    let s = Server::new();
    s.write(
        AWS,
        json!({"region": "us-east-1", "role_arn": "arn:aws:iam::111122223333:role/a",
               "granularity": "secret-key", "secret_name_template": "x/{{ .SecretKey }}",
               "custom_tags": {"a": "1", "b": "2"}, "allowed_ports": [443]}),
    );
    // Absent fields keep their values; `""` clears one.
    let data = s.write(AWS, json!({"external_id": "e", "role_arn": ""}));
    assert_eq!(
        data["connection_details"],
        json!({"region": "us-east-1", "external_id": "e", "identity_token_ttl": 3600,
               "allowed_ports": [443]})
    );
    assert_eq!(
        data["options"],
        json!({"granularity_level": "secret-key", "secret_name_template": "x/{{ .SecretKey }}",
               "custom_tags": {"a": "1", "b": "2"}})
    );
    // An empty template goes back to the type's default.
    let data = s.write(AWS, json!({"secret_name_template": ""}));
    assert_eq!(
        data["options"]["secret_name_template"],
        "vault/{{ .MountAccessor }}/{{ .SecretPath }}/{{ .SecretKey }}"
    );
    let data = s.write(AWS, json!({"granularity": "secret-path"}));
    assert_eq!(
        data["options"]["secret_name_template"],
        "vault/{{ .MountAccessor }}/{{ .SecretPath }}"
    );
}

#[test]
fn custom_tags_replace_on_post_and_merge_on_patch() {
    let s = Server::new();
    s.write(AWS, json!({"custom_tags": {"a": "1", "b": "2"}}));
    // POST replaces the map and ignores tags_to_remove.
    let data = s.write(AWS, json!({"custom_tags": "c=3", "tags_to_remove": ["c"]}));
    assert_eq!(data["options"]["custom_tags"], json!({"c": "3"}));
    let data = s.write(AWS, json!({"tags_to_remove": "c"}));
    assert_eq!(data["options"]["custom_tags"], json!({"c": "3"}));
    // PATCH merges entries, then removes the listed keys.
    let (status, body) = s.patch(
        AWS,
        json!({"custom_tags": {"d": "4", "c": "30"}, "tags_to_remove": "c,nope"}),
    );
    assert_eq!(status, 200);
    assert_eq!(body["data"]["options"]["custom_tags"], json!({"d": "4"}));
    let (_, body) = s.patch(AWS, json!({"tags_to_remove": ["d"]}));
    assert_eq!(body["data"]["options"]["custom_tags"], json!({}));
    let dest = s.dest("aws-sm", "prod").unwrap();
    assert_eq!(
        dest.tags(),
        vec![("hashicorp:vault".to_string(), String::new())]
    );
    s.write(AWS, json!({"custom_tags": {"team": "x"}}));
    assert_eq!(s.dest("aws-sm", "prod").unwrap().tags().len(), 2);
}

#[test]
fn nulls_clear_fields_and_remove_tags() {
    let s = Server::new();
    s.write(
        AWS,
        json!({"region": "us-east-1", "external_id": "e", "custom_tags": {"a": "1", "b": "2", "c": "3"},
               "granularity": "secret-key", "allowed_ports": [443]}),
    );
    let (status, body) = s.patch(
        AWS,
        json!({"external_id": null, "granularity": null, "allowed_ports": null,
               "custom_tags": {"a": null, "d": "4"}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["connection_details"],
        json!({"region": "us-east-1", "identity_token_ttl": 3600})
    );
    assert_eq!(body["data"]["options"]["granularity_level"], "secret-path");
    assert_eq!(
        body["data"]["options"]["custom_tags"],
        json!({"b": "2", "c": "3", "d": "4"})
    );
    // On POST the map is replaced; null entries are simply left out.
    let data = s.write(AWS, json!({"custom_tags": {"b": null, "e": "5"}}));
    assert_eq!(data["options"]["custom_tags"], json!({"e": "5"}));
    let data = s.write(AWS, json!({"custom_tags": null}));
    assert_eq!(data["options"]["custom_tags"], json!({}));
    // An immutable field cannot be cleared either.
    s.rejects("PATCH", AWS, json!({"region": null}), "region");
}

#[test]
fn unknown_fields_are_a_warning() {
    let s = Server::new();
    let (status, body) = s.post(AWS, json!({"regional_kms_keys": {"a": "b"}, "zzz": 1}));
    assert_eq!(status, 200);
    assert_eq!(
        body["warnings"],
        json!(["Endpoint ignored these unrecognized parameters: [regional_kms_keys zzz]"])
    );
    let (_, body) = s.patch(AWS, json!({"nope": true}));
    assert_eq!(
        body["warnings"],
        json!(["Endpoint ignored these unrecognized parameters: [nope]"])
    );
}

#[test]
fn templates_are_validated() {
    let s = Server::new();
    let msg = s.rejects(
        "POST",
        MEM,
        json!({"granularity": "secret-key", "secret_name_template": "{{ .SecretPath }}"}),
        "secret_name_template",
    );
    assert!(
        msg.starts_with(
            "secret name template is invalid: external name template should contain reference to the secret key"
        ),
        "{msg}"
    );
    s.write(MEM, json!({"secret_name_template": "p-{{ .SecretPath }}"}));
    // Switching to secret-key keeps the custom template, which must then use the key.
    s.rejects(
        "PATCH",
        MEM,
        json!({"granularity": "secret-key"}),
        "secret_name_template",
    );
    let (status, _) = s.patch(
        MEM,
        json!({"granularity": "secret-key", "secret_name_template": "p-{{ .SecretPath }}-{{ .SecretKey }}"}),
    );
    assert_eq!(status, 200);
    s.rejects(
        "PATCH",
        MEM,
        json!({"granularity": "secret-path"}),
        "secret_name_template",
    );
    // The template language itself is the names module's; whatever it refuses is a 400.
    for broken in [
        "{{ .InvalidTemplate }}",
        "{{ .SecretPath",
        "{{ .SecretPath | nope }}",
    ] {
        let msg = s.rejects(
            "POST",
            "sys/sync/destinations/in-mem/t",
            json!({"secret_name_template": broken}),
            "secret_name_template",
        );
        assert!(msg.starts_with("secret_name_template is invalid"), "{msg}");
    }
}

#[test]
fn purging_destinations_cannot_change() {
    let s = Server::new();
    s.write(MEM, json!({}));
    let mut tx = Tx::new(&s.fakes.storage);
    let mut dest = Destination::load(&mut tx, "in-mem", "box")
        .unwrap()
        .unwrap();
    dest.purge_initiated_at = Some(1_521_685_446_000_000_000);
    dest.purge_error = Some("provider said no".into());
    dest.save(&mut tx).unwrap();
    tx.commit().unwrap();
    let (_, body) = s.get(MEM);
    assert_eq!(body["data"]["purge_initiated_at"], "2018-03-22T02:24:06Z");
    assert_eq!(body["data"]["purge_error"], "provider said no");
    for method in ["POST", "PATCH"] {
        let msg = s.rejects(method, MEM, json!({"granularity": "secret-key"}), "purge");
        assert!(msg.contains("in-mem/box is being purged"), "{msg}");
    }
    // Without associations left, a delete completes it.
    assert_eq!(s.call("DELETE", MEM, Value::Null).0, 204);
    assert!(s.dest("in-mem", "box").is_none());
}

#[test]
fn lists() {
    let s = Server::new();
    let list = |path: &str| s.call("LIST", path, Value::Null);
    assert_eq!(list("sys/sync/destinations"), (404, json!({"errors": []})));
    assert_eq!(
        list("sys/sync/destinations/gh"),
        (404, json!({"errors": []}))
    );
    s.write("sys/sync/destinations/in-mem/b", json!({}));
    s.write("sys/sync/destinations/in-mem/a", json!({}));
    s.write(
        "sys/sync/destinations/gh/r",
        json!({"repository_owner": "o", "repository_name": "n"}),
    );
    let (status, body) = list("sys/sync/destinations");
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!({"keys": ["gh", "in-mem"], "key_info": {"gh": ["r"], "in-mem": ["a", "b"]},
               "total_destinations": 3})
    );
    let (_, body) = s.get("sys/sync/destinations?list=true");
    assert_eq!(body["data"]["total_destinations"], 3);
    let (_, body) = list("sys/sync/destinations/in-mem/");
    assert_eq!(
        body["data"],
        json!({"keys": ["a", "b"], "total_destinations": 2})
    );
    assert_eq!(list("sys/sync/destinations/aws-sm").0, 404);
    // Plain reads of the list paths are not lists.
    assert_eq!(s.get("sys/sync/destinations").0, 405);
    assert_eq!(s.get("sys/sync/destinations/in-mem").0, 405);
    assert_eq!(list(MEM).0, 405);
}

#[test]
fn delete_rules() {
    let s = Server::new();
    let delete = |query: &str| s.call("DELETE", &format!("{MEM}{query}"), Value::Null);
    assert_eq!(delete(""), (204, Value::Null));
    s.write(MEM, json!({}));
    assert_eq!(delete("?purge=maybe").0, 400);
    assert_eq!(delete("").0, 204);
    assert!(s.dest("in-mem", "box").is_none());
    // With associations and neither flag: refused, nothing changes.
    s.write(MEM, json!({}));
    s.associate("in-mem", "box", "app");
    let before = s.snapshot();
    let (status, body) = delete("");
    assert_eq!(status, 400);
    assert_eq!(
        errors(&body),
        "destination in-mem/box still has associations; retry with purge=true"
    );
    assert_eq!(delete("?purge=false&force_delete=0").0, 400);
    assert!(s.snapshot() == before);
}

#[test]
fn purge_unsyncs_then_deletes() {
    let s = Server::new();
    s.write(MEM, json!({}));
    s.associate("in-mem", "box", "app");
    s.associate("in-mem", "box", "db");
    assert_eq!(s.fakes.connector.objects("in-mem", "box").len(), 2);
    let calls = *s.fakes.connector.calls.borrow();
    // The purge is a background job: 204 at once, no provider call yet.
    assert_eq!(
        s.call("DELETE", &format!("{MEM}?purge=true"), Value::Null)
            .0,
        204
    );
    assert_eq!(*s.fakes.connector.calls.borrow(), calls);
    let (status, body) = s.get(MEM);
    assert_eq!(status, 200);
    assert!(
        body["data"]["purge_initiated_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(body["data"].get("purge_error").is_none());
    let (_, body) = s.get(&format!("{MEM}/associations"));
    for entry in body["data"]["associated_secrets"]
        .as_object()
        .unwrap()
        .values()
    {
        assert_eq!(entry["sync_status"], "PENDING");
    }
    // Neither edits nor new associations meanwhile.
    s.rejects("PATCH", MEM, json!({"granularity": "secret-key"}), "purged");
    // The worker unsyncs every association, then deletes the destination.
    let report = s.drain();
    assert_eq!((report.processed, report.failed), (2, 0));
    assert_eq!(report.next_due_ms, None);
    assert!(s.dest("in-mem", "box").is_none());
    assert!(s.fakes.connector.objects("in-mem", "box").is_empty());
    assert!(
        !s.snapshot().iter().any(|(k, _)| k.starts_with("sync/")),
        "{:?}",
        s.snapshot()
    );
}

#[test]
fn a_failed_purge_keeps_the_destination_with_its_error() {
    let s = Server::new();
    s.write(MEM, json!({}));
    s.associate("in-mem", "box", "app");
    *s.fakes.connector.fail_with.borrow_mut() =
        Some(SyncError::ClientSide("credentials revoked".into()));
    assert_eq!(
        s.call("DELETE", &format!("{MEM}?purge=1"), Value::Null).0,
        204
    );
    let report = s.drain();
    assert_eq!((report.processed, report.failed), (1, 1));
    // Even a client-side error is retried (with backoff): the purge must finish.
    assert!(report.next_due_ms.is_some());
    let (status, body) = s.get(MEM);
    assert_eq!(status, 200);
    assert!(
        body["data"]["purge_initiated_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let purge_error = body["data"]["purge_error"].as_str().unwrap();
    assert!(purge_error.contains("credentials revoked"), "{purge_error}");
    // While purging: no edits; the external object is still there.
    s.rejects("PATCH", MEM, json!({"granularity": "secret-key"}), "purged");
    assert_eq!(s.fakes.connector.objects("in-mem", "box").len(), 1);
    // A plain delete is still refused.
    assert_eq!(s.call("DELETE", MEM, Value::Null).0, 400);
    // Not due yet: nothing happens.
    *s.fakes.connector.fail_with.borrow_mut() = None;
    assert_eq!(s.drain().processed, 0);
    // Once the retry is due, the purge completes.
    s.make_due();
    assert_eq!(s.drain().processed, 1);
    assert!(s.dest("in-mem", "box").is_none());
    assert!(s.fakes.connector.objects("in-mem", "box").is_empty());
    assert!(!s.snapshot().iter().any(|(k, _)| k.starts_with("sync/")));
}

#[test]
fn purging_again_retries_at_once() {
    let s = Server::new();
    s.write(MEM, json!({}));
    s.associate("in-mem", "box", "app");
    *s.fakes.connector.fail_with.borrow_mut() =
        Some(SyncError::ClientSide("credentials revoked".into()));
    assert_eq!(
        s.call("DELETE", &format!("{MEM}?purge=true"), Value::Null)
            .0,
        204
    );
    assert_eq!(s.drain().failed, 1);
    *s.fakes.connector.fail_with.borrow_mut() = None;
    // A second purge request restarts the job now, and clears the error.
    assert_eq!(
        s.call("DELETE", &format!("{MEM}?purge=true"), Value::Null)
            .0,
        204
    );
    assert!(s.get(MEM).1["data"].get("purge_error").is_none());
    assert_eq!(s.drain().processed, 1);
    assert!(s.dest("in-mem", "box").is_none());
}

#[test]
fn force_delete_orphans_external_objects() {
    let s = Server::new();
    s.write(MEM, json!({}));
    s.associate("in-mem", "box", "app");
    *s.fakes.connector.fail_with.borrow_mut() = Some(SyncError::ClientSide("gone".into()));
    let calls = *s.fakes.connector.calls.borrow();
    assert_eq!(
        s.call("DELETE", &format!("{MEM}?force_delete=true"), Value::Null)
            .0,
        204
    );
    assert_eq!(*s.fakes.connector.calls.borrow(), calls, "no provider call");
    assert!(s.dest("in-mem", "box").is_none());
    assert_eq!(s.fakes.connector.objects("in-mem", "box").len(), 1);
    assert!(!s.snapshot().iter().any(|(k, _)| k.starts_with("sync/")));
    // purge + force_delete: unsync what can be, orphan the rest, delete.
    s.write(MEM, json!({}));
    s.associate("in-mem", "box", "db");
    assert_eq!(
        s.call(
            "DELETE",
            &format!("{MEM}?purge=true&force_delete=true"),
            Value::Null
        )
        .0,
        204
    );
    assert!(s.dest("in-mem", "box").is_none());
    assert!(!s.snapshot().iter().any(|(k, _)| k.starts_with("sync/")));
}

#[test]
fn unknown_delete_parameters_are_a_warning() {
    let s = Server::new();
    s.write(MEM, json!({}));
    let (status, body) = s.call("DELETE", &format!("{MEM}?cascade=true"), Value::Null);
    assert_eq!(status, 200);
    assert_eq!(
        body["warnings"],
        json!(["Endpoint ignored these unrecognized parameters: [cascade]"])
    );
    assert!(s.dest("in-mem", "box").is_none());
}

#[test]
fn connector_ref_and_debug() {
    let s = Server::new();
    s.write(
        AWS,
        json!({"access_key_id": "AKIA-ID", "secret_access_key": "SUPER-secret", "region": "us-east-1",
               "allowed_ipv4_addresses": "10.0.0.0/8"}),
    );
    let dest = s.dest("aws-sm", "prod").unwrap();
    let r = dest.connector_ref();
    assert_eq!((r.kind.as_str(), r.name.as_str()), ("aws-sm", "prod"));
    let config: Value = serde_json::from_str(&r.config).unwrap();
    assert_eq!(config["secret_access_key"], "SUPER-secret");
    assert_eq!(config["region"], "us-east-1");
    assert_eq!(config["allowed_ipv4_addresses"], json!(["10.0.0.0/8"]));
    assert_eq!(config["allowed_ports"], json!([]));
    assert_eq!(config["disable_strict_networking"], false);
    for shown in [format!("{dest:?}"), format!("{r:?}")] {
        assert!(
            !shown.contains("SUPER-secret") && !shown.contains("AKIA-ID"),
            "{shown}"
        );
    }
    s.assert_no_leak(&["SUPER-secret", "AKIA-ID"]);
}

#[test]
fn every_type_is_declared_once_with_unique_fields() {
    let mut kinds: Vec<&str> = TYPES.iter().map(|t| t.kind).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds.len(), TYPES.len());
    for t in TYPES {
        let schema: Vec<_> = t.request_fields().into_iter().flatten().collect();
        let mut names: Vec<&str> = schema.iter().map(|f| f.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), schema.len(), "{}", t.kind);
        assert!(t.default_template_key.contains(".SecretKey"), "{}", t.kind);
        assert!(
            !t.default_template_path.contains(".SecretKey"),
            "{}",
            t.kind
        );
        assert_eq!(t.cloud, ["aws-sm", "azure-kv", "gcp-sm"].contains(&t.kind));
        assert_eq!(
            t.default_granularity == Granularity::SecretKey,
            ["gh", "vercel-project"].contains(&t.kind)
        );
    }
}

const GHE: &str = "sys/sync/destinations/gh/ghe";

fn ghe(s: &Server, extra: Value) {
    let mut body = json!({"repository_owner": "acme", "repository_name": "web",
                          "enterprise_url": "https://ghe.example.com"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    s.write(GHE, body);
}

#[test]
fn moving_an_endpoint_needs_the_credentials_again() {
    let s = Server::new();
    ghe(&s, json!({"access_token": "ghp_FIRST-token"}));
    let elsewhere = "https://ghe.attacker.example";
    // PATCH, POST update, a masked echo and clearing the URL (back to
    // github.com) all move the endpoint: the token must come with them.
    for (method, body) in [
        ("PATCH", json!({"enterprise_url": elsewhere})),
        ("POST", json!({"enterprise_url": elsewhere})),
        (
            "POST",
            json!({"enterprise_url": elsewhere, "access_token": "*****"}),
        ),
        (
            "PATCH",
            json!({"enterprise_url": elsewhere, "access_token": "*****"}),
        ),
        ("PATCH", json!({"enterprise_url": ""})),
        ("PATCH", json!({"enterprise_url": null})),
    ] {
        let msg = s.rejects(method, GHE, body.clone(), "access_token");
        assert!(msg.contains("enterprise_url"), "{body}: {msg}");
        assert!(msg.contains("re-enter"), "{body}: {msg}");
    }
    // Echoing a read back without moving anything is fine.
    let (_, read) = s.get(GHE);
    assert_eq!(
        s.post(GHE, read["data"]["connection_details"].clone()).0,
        200
    );
    // With the token given again (new, or the same in clear), the move is accepted.
    s.write(
        GHE,
        json!({"enterprise_url": elsewhere, "access_token": "ghp_SECOND-token"}),
    );
    let (status, _) = s.patch(
        GHE,
        json!({"enterprise_url": "https://ghe2.example.com", "access_token": "ghp_SECOND-token"}),
    );
    assert_eq!(status, 200);
    s.assert_no_leak(&["ghp_FIRST-token", "ghp_SECOND-token"]);
}

#[test]
fn moving_an_endpoint_needs_the_github_app_named_again() {
    let s = Server::new();
    s.put_app("my-app");
    ghe(&s, json!({"app_name": "my-app", "installation_id": 7}));
    let elsewhere = "https://ghe.attacker.example";
    let msg = s.rejects(
        "PATCH",
        GHE,
        json!({"enterprise_url": elsewhere, "installation_id": 7}),
        "app_name",
    );
    assert!(msg.contains("enterprise_url"), "{msg}");
    // Naming the app again (the request that the App's access check sees) moves it.
    s.write(
        GHE,
        json!({"enterprise_url": elsewhere, "app_name": "my-app"}),
    );
    assert_eq!(
        s.dest("gh", "ghe").unwrap().connection_details["enterprise_url"],
        elsewhere
    );
}

#[test]
fn every_type_declares_its_endpoints_and_credentials() {
    let names = |kind: &str, flag: fn(&FieldSpec) -> bool| -> Vec<&str> {
        type_of(kind)
            .unwrap()
            .fields
            .iter()
            .filter(|f| flag(f))
            .map(|f| f.name)
            .collect()
    };
    for (kind, endpoints, credentials) in [
        (
            "aws-sm",
            &["region"][..],
            &["access_key_id", "secret_access_key"][..],
        ),
        ("azure-kv", &["key_vault_uri", "cloud"], &["client_secret"]),
        ("gcp-sm", &["credentials"], &["credentials"]),
        ("gh", &["enterprise_url"], &["access_token", "app_name"]),
        ("vercel-project", &[], &["access_token"]),
        ("in-mem", &[], &[]),
    ] {
        assert_eq!(names(kind, |f| f.endpoint), endpoints, "{kind}");
        assert_eq!(names(kind, |f| f.credential), credentials, "{kind}");
    }
}

#[test]
fn endpoint_urls_need_https_unless_strict_networking_is_off() {
    let s = Server::new();
    let gh = "sys/sync/destinations/gh/plain";
    let repo = json!({"access_token": "t", "repository_owner": "a", "repository_name": "b",
                      "enterprise_url": "http://ghe.example.com"});
    let msg = s.rejects("POST", gh, repo.clone(), "enterprise_url");
    assert!(
        msg.contains("https") && msg.contains("disable_strict_networking"),
        "{msg}"
    );
    let mut relaxed = repo.clone();
    relaxed["disable_strict_networking"] = json!(true);
    s.write(gh, relaxed);
    // Strict networking cannot come back while a plain-http URL is stored.
    s.rejects(
        "PATCH",
        gh,
        json!({"disable_strict_networking": false}),
        "enterprise_url",
    );
    s.write(
        gh,
        json!({"disable_strict_networking": false, "enterprise_url": "https://ghe.example.com",
               "access_token": "t"}),
    );
    let msg = s.rejects(
        "POST",
        "sys/sync/destinations/azure-kv/plain",
        json!({"key_vault_uri": "HTTP://v.example.com", "client_id": "c", "tenant_id": "t"}),
        "key_vault_uri",
    );
    assert!(msg.contains("https"), "{msg}");
    // The GCP key file names where its assertion goes; the key itself is never shown.
    let key = json!({"type": "service_account", "private_key": "GCP-PRIVATE-key",
                     "token_uri": "http://oauth2.example.com/token"});
    let msg = s.rejects(
        "POST",
        "sys/sync/destinations/gcp-sm/plain",
        json!({"credentials": key.to_string()}),
        "credentials",
    );
    assert!(
        msg.contains("token_uri") && !msg.contains("GCP-PRIVATE-key"),
        "{msg}"
    );
    s.write(
        "sys/sync/destinations/gcp-sm/plain",
        json!({"credentials": key.to_string(), "disable_strict_networking": true}),
    );
}

#[test]
fn a_template_whose_output_explodes_is_refused_at_write_time() {
    let s = Server::new();
    let exploding = format!(
        "{{{{ .SecretPath{} }}}}",
        " | replace \"\" \"aaaaaaaaaa\"".repeat(6)
    );
    let msg = s.rejects(
        "POST",
        MEM,
        json!({"secret_name_template": exploding}),
        "secret_name_template",
    );
    assert!(msg.contains("can produce names of up to"), "{msg}");
}
