"""The token auth method (`auth/token/...`) end to end: hvac's token calls against the real
binary (shapes, trees, TTL expiry, `num_uses`, accessors, orphans, errors), the Terraform
provider's start-up sequence, the sweep across a restart, and the same requests against OpenBao
(differential, the `diff` fixture).

Tests that need non-root policies write them through `PUT sys/policies/acl/<name>` (`grant`).
"""

from __future__ import annotations

import time

import hvac
import pytest

from kvsync_helpers import Http, make_hvac_client, unique

# ---- helpers -----------------------------------------------------------------------------------

POLL_TIMEOUT = 20.0  # seconds: the longest any test waits for an expiry or the sweep


def wait_until(check, timeout: float = POLL_TIMEOUT, interval: float = 0.2):
    """Polls `check()` until it returns a truthy value (returned), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def grant(http: Http, name: str, hcl: str) -> bool:
    """Writes ACL policy `name`."""
    r = http.put(f"sys/policies/acl/{name}", json={"policy": hcl})
    assert r.status_code in (200, 204), r.text
    return True


def create(http: Http, body: dict, token=Http._DEFAULT, path="auth/token/create") -> dict:
    r = http.post(path, json=body, token=token)
    assert r.status_code == 200, r.text
    return r.json()


def as_token(dev_server, token: str) -> Http:
    return Http(dev_server.addr, token)


TOKEN_ADMIN = """
path "auth/token/create" { capabilities = ["update"] }
path "auth/token/create-orphan" { capabilities = ["update"] }
path "auth/token/lookup" { capabilities = ["update", "read"] }
path "auth/token/revoke-orphan" { capabilities = ["update"] }
"""

LOOKUP_KEYS = {
    "accessor", "creation_time", "creation_ttl", "display_name", "entity_id", "expire_time",
    "explicit_max_ttl", "id", "issue_time", "meta", "num_uses", "orphan", "path", "policies",
    "renewable", "ttl", "type",
}
AUTH_KEYS = {
    "client_token", "accessor", "policies", "token_policies", "metadata", "lease_duration",
    "renewable", "entity_id", "token_type", "orphan", "mfa_requirement", "num_uses",
}


@pytest.fixture(scope="module", autouse=True)
def token_admin_policy(dev_server):
    """Policy `p` lets its tokens create and manage tokens (written once the server serves
    policies)."""
    h = Http(dev_server.addr, dev_server.token)
    grant(h, "p", TOKEN_ADMIN)
    h.close()


# ---- hvac: shapes ------------------------------------------------------------------------------


def test_create_and_lookups_with_hvac(dev_server, client):
    created = client.auth.token.create(
        policies=["app"], ttl="1h", meta={"team": "payments"}, display_name="ci job", num_uses=0
    )
    auth = created["auth"]
    assert set(auth) == AUTH_KEYS
    assert auth["client_token"].startswith("hvs.")
    assert auth["policies"] == ["app", "default"] == auth["token_policies"]
    assert auth["metadata"] == {"team": "payments"}
    assert (auth["lease_duration"], auth["renewable"], auth["orphan"]) == (3600, True, False)
    assert (auth["token_type"], auth["entity_id"], auth["mfa_requirement"]) == ("service", "", None)
    assert created["data"] is None
    assert created["warnings"] == ['Policy "app" does not exist']

    token, accessor = auth["client_token"], auth["accessor"]
    data = client.auth.token.lookup(token)["data"]
    assert set(data) == LOOKUP_KEYS
    assert data["id"] == token and data["accessor"] == accessor
    assert data["display_name"] == "token-ci-job"
    assert data["path"] == "auth/token/create"
    assert data["meta"] == {"team": "payments"}
    assert data["creation_ttl"] == 3600 and 3590 <= data["ttl"] <= 3600
    assert data["renewable"] is True and data["orphan"] is False
    assert data["expire_time"] and data["issue_time"]

    child = make_hvac_client(dev_server.addr, token)
    try:
        assert child.is_authenticated()
        own = child.auth.token.lookup_self()["data"]
        assert own["id"] == token and own["policies"] == ["app", "default"]
    finally:
        child.adapter.close()
    by_accessor = client.auth.token.lookup_accessor(accessor)["data"]
    assert by_accessor["id"] == "" and by_accessor["accessor"] == accessor
    assert accessor in client.auth.token.list_accessors()["data"]["keys"]


def test_create_accepts_the_cli_and_go_client_defaults(http):
    # `vault token create` without flags, then the Go client's zero values.
    for body in (
        {"ttl": "0s", "explicit_max_ttl": "0s", "period": "0s", "type": "service",
         "policies": ["x"], "display_name": "", "num_uses": 0, "entity_alias": ""},
        {"ttl": "", "explicit_max_ttl": "", "period": "", "type": "", "policies": ["x"],
         "renewable": True, "no_parent": False, "no_default_policy": False, "meta": None},
    ):
        auth = create(http, body)["auth"]
        assert auth["lease_duration"] == 768 * 3600
        assert auth["policies"] == ["default", "x"]


def test_root_tokens(http):
    # A root token asking no TTL never expires and cannot be renewed.
    auth = create(http, {})["auth"]
    assert (auth["policies"], auth["lease_duration"], auth["renewable"]) == (["root"], 0, False)
    r = http.post("auth/token/renew-self", json={}, token=auth["client_token"])
    assert (r.status_code, r.json()) == (400, {"errors": ["lease is not renewable"]})
    r = http.post("auth/token/renew-self", json={})
    assert (r.status_code, r.json()) == (400, {"errors": ["lease is not renewable"]})
    # A capped TTL says so.
    r = http.post("auth/token/create", json={"ttl": "1000h"})
    assert r.json()["auth"]["lease_duration"] == 768 * 3600
    assert r.json()["warnings"] == [
        'TTL of "1000h" exceeded the effective max_ttl of "768h"; TTL value is capped accordingly'
    ]


# ---- trees ---------------------------------------------------------------------------------------


def test_revoking_a_token_revokes_its_tree(dev_server, http):
    # Not root, allowed to create tokens; its descendants inherit that.
    grant(http, "tok-parent", TOKEN_ADMIN)
    parent = create(http, {"policies": ["tok-parent"], "ttl": "1h"})["auth"]["client_token"]
    child = create(http, {"ttl": "1h"}, token=parent)["auth"]["client_token"]
    grandchild = create(http, {"ttl": "1h"}, token=child)["auth"]["client_token"]
    orphan = create(http, {"ttl": "1h"}, token=child, path="auth/token/create-orphan")["auth"]
    assert orphan["orphan"] is True
    for t in (parent, child, grandchild):
        assert http.get("auth/token/lookup-self", token=t).status_code == 200
    r = http.post("auth/token/revoke", json={"token": child})
    assert r.status_code == 204
    for t in (child, grandchild):
        r = http.get("auth/token/lookup-self", token=t)
        assert (r.status_code, r.json()) == (403, {"errors": ["permission denied", "invalid token"]})
    assert http.get("auth/token/lookup-self", token=parent).status_code == 200
    assert http.get("auth/token/lookup-self", token=orphan["client_token"]).status_code == 200
    r = http.post("auth/token/lookup", json={"token": grandchild})
    assert (r.status_code, r.json()) == (403, {"errors": ["bad token"]})
    # Revoking it again, or an unknown token: nothing to do.
    assert http.post("auth/token/revoke", json={"token": child}).status_code == 204


def test_revoke_orphan_keeps_the_children(client, http):
    parent = create(http, {"ttl": "1h"})["auth"]["client_token"]
    child = create(http, {"ttl": "1h"}, token=parent)["auth"]["client_token"]
    client.auth.token.revoke_and_orphan_children(parent)
    assert http.get("auth/token/lookup-self", token=parent).status_code == 403
    data = client.auth.token.lookup(child)["data"]
    assert data["orphan"] is True
    r = http.post("auth/token/revoke-orphan", json={"token": parent})
    assert (r.status_code, r.json()) == (400, {"errors": ["token to revoke not found"]})


def test_revoke_self_and_by_accessor(dev_server, client, http):
    one = create(http, {"ttl": "1h"})["auth"]
    r = http.post("auth/token/revoke-self", json={}, token=one["client_token"])
    assert r.status_code == 204
    assert http.get("auth/token/lookup-self", token=one["client_token"]).status_code == 403
    # hvac's own calls: an orphan, which revokes itself.
    orphan = client.auth.token.create_orphan(policies=["p"], ttl="1h")["auth"]
    assert orphan["orphan"] is True and orphan["policies"] == ["default", "p"]
    own = make_hvac_client(dev_server.addr, orphan["client_token"])
    try:
        own.auth.token.revoke_self()
        assert not own.is_authenticated()
    finally:
        own.adapter.close()
    two = create(http, {"ttl": "1h"})["auth"]
    client.auth.token.revoke_accessor(two["accessor"])
    assert http.get("auth/token/lookup-self", token=two["client_token"]).status_code == 403
    r = http.post("auth/token/revoke-accessor", json={"accessor": two["accessor"]})
    assert (r.status_code, r.json()["warnings"]) == (200, ["No token found with this accessor"])


# ---- lifetimes -----------------------------------------------------------------------------------


def test_renewals(client, http):
    auth = create(http, {"policies": ["p"], "ttl": "1h", "explicit_max_ttl": "2h"})["auth"]
    token, accessor = auth["client_token"], auth["accessor"]
    renewed = client.auth.token.renew(token, increment="30m")
    assert renewed["auth"]["lease_duration"] == 1800
    assert renewed["auth"]["client_token"] == token
    by_accessor = client.auth.token.renew_accessor(accessor, increment=600)
    assert by_accessor["auth"]["client_token"] == ""
    assert by_accessor["auth"]["lease_duration"] == 600
    capped = client.auth.token.renew(token, increment="5h")
    assert capped["auth"]["lease_duration"] <= 7200
    assert len(capped["warnings"]) == 1 and "capped" in capped["warnings"][0]
    data = client.auth.token.lookup(token)["data"]
    assert data["last_renewal_time"] > 0 and data["last_renewal"]
    assert data["creation_ttl"] == 3600
    child = make_hvac_client(client.adapter.base_uri, token)
    try:
        assert child.auth.token.renew_self(increment=60)["auth"]["lease_duration"] == 60
    finally:
        child.adapter.close()
    fixed = create(http, {"policies": ["p"], "ttl": "1h", "renewable": False})["auth"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="lease is not renewable"):
        client.auth.token.renew(fixed["client_token"])
    with pytest.raises(hvac.exceptions.InvalidRequest, match="token not found"):
        client.auth.token.renew("hvs.nope")
    # A periodic token is renewed to its period, whatever it asks.
    periodic = create(http, {"policies": ["p"], "period": "2h"})["auth"]
    assert periodic["lease_duration"] == 7200
    again = client.auth.token.renew(periodic["client_token"], increment="5h")
    assert again["auth"]["lease_duration"] == 7200
    assert client.auth.token.lookup(periodic["client_token"])["data"]["period"] == 7200


def test_expired_tokens_are_refused_then_swept(client, http):
    grant(http, "tok-parent", TOKEN_ADMIN)
    auth = create(http, {"policies": ["tok-parent"], "ttl": "2s"})["auth"]
    token, accessor = auth["client_token"], auth["accessor"]
    child = create(http, {"ttl": "1h"}, token=token)["auth"]["client_token"]
    assert http.get("auth/token/lookup-self", token=token).status_code == 200

    def refused():
        r = http.get("auth/token/lookup-self", token=token)
        return r.status_code == 403 and r.json() == {"errors": ["permission denied", "invalid token"]}

    wait_until(refused)
    r = http.post("auth/token/lookup", json={"token": token})
    assert (r.status_code, r.json()) == (403, {"errors": ["bad token"]})
    # The sweep removes its record (and its index entries) with its subtree.
    wait_until(lambda: accessor not in client.auth.token.list_accessors()["data"]["keys"])
    assert http.get("auth/token/lookup-self", token=child).status_code == 403


def test_use_limits(dev_server, client, http):
    auth = create(http, {"policies": ["p"], "ttl": "1h", "num_uses": 2})["auth"]
    token = auth["client_token"]
    assert auth["num_uses"] == 2
    first = http.get("auth/token/lookup-self", token=token)
    assert first.json()["data"]["num_uses"] == 1
    # Its last request still sees itself, with -1 uses left.
    last = http.get("auth/token/lookup-self", token=token)
    assert last.json()["data"]["num_uses"] == -1
    r = http.get("auth/token/lookup-self", token=token)
    assert (r.status_code, r.json()) == (403, {"errors": ["permission denied", "invalid token"]})
    # Revoked after its last request.
    r = http.post("auth/token/lookup", json={"token": token})
    assert (r.status_code, r.json()) == (403, {"errors": ["bad token"]})
    assert auth["accessor"] not in client.auth.token.list_accessors()["data"]["keys"]
    # A token with a use limit cannot create tokens.
    limited = create(http, {"ttl": "1h", "num_uses": 5})["auth"]["client_token"]
    r = http.post("auth/token/create", json={}, token=limited)
    assert (r.status_code, r.json()) == (400, {"errors": ["restricted use token cannot generate child tokens"]})


# ---- rules and errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,message",
    [
        ({"type": "batch"}, "batch tokens are not supported"),
        ({"type": "banana"}, "invalid 'token_type' value"),
        ({"ttl": "-1h"}, "ttl must be positive"),
        ({"explicit_max_ttl": -5}, "explicit_max_ttl must be positive"),
        ({"period": "-1m"}, "period must be positive"),
        ({"num_uses": -1}, "number of uses cannot be negative"),
        ({"entity_alias": "me"}, "'entity_alias' is only allowed in combination with token role"),
        ({"policies": ["response-wrapping"]}, 'cannot assign policy "response-wrapping"'),
        ({"id": "with.dot"}, "custom token ID cannot have a '.' in the value"),
        ({"id": "hvs.mine"}, "custom token ID cannot have the 'hvs.' prefix"),
    ],
)
def test_create_errors(http, body, message):
    r = http.post("auth/token/create", json=body)
    assert (r.status_code, r.json()) == (400, {"errors": [message]})


def test_lookup_renew_revoke_errors(http):
    cases = [
        ("auth/token/lookup", {"token": "hvs.unknown"}, 403, "bad token"),
        ("auth/token/lookup-accessor", {"accessor": "unknown"}, 400, "invalid accessor"),
        ("auth/token/lookup-accessor", {}, 400, "missing accessor"),
        ("auth/token/renew", {}, 400, "missing token ID"),
        ("auth/token/renew-accessor", {"accessor": "unknown"}, 400, "invalid accessor"),
        ("auth/token/revoke", {}, 400, "missing token ID"),
        ("auth/token/revoke-orphan", {}, 400, "missing token ID"),
        ("auth/token/revoke-accessor", {}, 400, "missing accessor"),
        ("auth/token/create/some-role", {}, 400, "unknown role some-role"),
    ]
    for path, body, status, message in cases:
        r = http.post(path, json=body)
        assert (r.status_code, r.json()) == (status, {"errors": [message]}), path
    assert http.post("auth/token/revoke", json={"token": "hvs.unknown"}).status_code == 204
    r = http.post("auth/token/tidy", json={})
    assert r.status_code == 202 and len(r.json()["warnings"]) == 1
    assert http.request("LIST", "auth/token/roles").status_code == 404


def test_a_non_root_parent_gives_at_most_what_it_has(http):
    grant(http, "tok-parent", TOKEN_ADMIN)
    parent = create(http, {"policies": ["tok-parent", "extra"], "ttl": "1h"})["auth"]["client_token"]
    child = create(http, {"policies": ["extra"]}, token=parent)["auth"]
    assert child["policies"] == ["default", "extra"]
    inherited = create(http, {}, token=parent)["auth"]
    assert inherited["policies"] == ["default", "extra", "tok-parent"]
    for body, message in [
        ({"policies": ["root"]}, "child policies must be subset of parent"),
        ({"policies": ["extra", "more"]}, "child policies must be subset of parent"),
        ({"no_parent": True}, "root or sudo privileges required to create orphan token"),
        ({"period": "1h"}, "root or sudo privileges required to create periodic token"),
        ({"id": "chosen"}, "root or sudo privileges required to specify token id"),
    ]:
        r = http.post("auth/token/create", json=body, token=parent)
        assert (r.status_code, r.json()) == (400, {"errors": [message]}), body
    orphan = create(http, {"policies": ["extra"]}, token=parent, path="auth/token/create-orphan")["auth"]
    assert orphan["orphan"] is True
    r = http.post("auth/token/revoke-orphan", json={"token": orphan["client_token"]}, token=parent)
    assert (r.status_code, r.json()) == (400, {"errors": ["root or sudo privileges required to revoke and orphan"]})


def test_listing_accessors_needs_sudo(http):
    grant(http, "lister", 'path "auth/token/accessors" { capabilities = ["list"] }')
    grant(http, "sudo-lister", 'path "auth/token/accessors" { capabilities = ["list", "sudo"] }')
    plain = create(http, {"policies": ["lister"]})["auth"]["client_token"]
    sudo = create(http, {"policies": ["sudo-lister"]})["auth"]["client_token"]
    assert http.request("LIST", "auth/token/accessors", token=plain).status_code == 403
    r = http.request("LIST", "auth/token/accessors", token=sudo)
    assert r.status_code == 200 and r.json()["data"]["keys"]


# ---- the Terraform provider's start-up -----------------------------------------------------------

# What the Terraform provider's token needs for its start-up, and what the run then does.
TERRAFORM_POLICY = """
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/create" { capabilities = ["update"] }
path "secret/data/terraform/*" { capabilities = ["create", "read", "update"] }
"""

#: Exactly the body `internal/provider/meta.go` sends for its child token (defaults).
TERRAFORM_CHILD = {
    "display_name": "terraform", "ttl": "1200s", "explicit_max_ttl": "1200s", "renewable": False,
    "num_uses": 0, "type": "", "entity_alias": "",
}


def test_terraform_start_up_sequence(dev_server, http):
    assert grant(http, "terraform", TERRAFORM_POLICY)
    parent = create(http, {"policies": ["terraform"], "no_default_policy": True, "ttl": "1h"})["auth"]
    tf = as_token(dev_server, parent["client_token"])
    # 1. lookup-self: policies, ttl, namespace_path (absent in the root namespace).
    me = tf.get("auth/token/lookup-self", headers={"X-Vault-Request": "true"})
    assert me.status_code == 200, me.text
    data = me.json()["data"]
    assert data["policies"] == ["terraform"] and 0 < data["ttl"] <= 3600
    assert "namespace_path" not in data
    # 2. the child token, with exactly Terraform's body.
    r = tf.post("auth/token/create", json=TERRAFORM_CHILD, headers={"X-Vault-Request": "true"})
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    assert auth["policies"] == ["terraform"]
    assert (auth["lease_duration"], auth["renewable"], auth["orphan"]) == (1200, False, False)
    child = as_token(dev_server, auth["client_token"])
    # 3. every call with the child token.
    info = child.get("auth/token/lookup-self").json()["data"]
    assert info["display_name"] == "token-terraform"
    assert info["explicit_max_ttl"] == 1200 and info["creation_ttl"] == 1200
    p = unique("tf")
    w = child.post(f"secret/data/terraform/{p}", json={"data": {"k": "v"}})
    assert w.status_code == 200, w.text
    assert child.get(f"secret/data/terraform/{p}").json()["data"]["data"] == {"k": "v"}
    assert child.get("secret/data/other").status_code == 403
    assert child.post("auth/token/create", json={"policies": ["root"]}).json() == {
        "errors": ["child policies must be subset of parent"]
    }
    tf.close()
    child.close()


# ---- across a restart ------------------------------------------------------------------------------


def test_tokens_and_the_sweep_survive_a_restart(server_factory):
    srv = server_factory("tokens")
    srv.init()
    srv.start()
    h = srv.http()
    lasting = create(h, {"policies": ["p"], "ttl": "1h"})["auth"]
    short = create(h, {"policies": ["p"], "ttl": "3s"})["auth"]
    h.close()
    srv.stop()
    srv.start()
    h = srv.http()
    try:
        assert h.get("auth/token/lookup-self", token=lasting["client_token"]).status_code == 200
        wait_until(lambda: h.get("auth/token/lookup-self", token=short["client_token"]).status_code == 403)

        def swept():
            keys = h.request("LIST", "auth/token/accessors").json()["data"]["keys"]
            return short["accessor"] not in keys and lasting["accessor"] in keys

        wait_until(swept)
        # The initial root token of `operator init` keeps working.
        assert h.get("auth/token/lookup-self").json()["data"]["path"] == "auth/token/root"
    finally:
        h.close()


# ---- differential: the same requests against OpenBao ---------------------------------------------


def ttl_class(body):
    """The remaining `ttl` of a lookup depends on when it is read: compare whether it is set."""
    if isinstance(body, dict) and isinstance(body.get("data"), dict) and "ttl" in body["data"]:
        body["data"]["ttl"] = "positive" if body["data"]["ttl"] > 0 else body["data"]["ttl"]
    return body


def test_differential_create_and_lookup(diff):
    created = diff.post(
        "auth/token/create",
        json={"policies": ["app"], "ttl": "1h", "meta": {"team": "x"}, "display_name": "ci job",
              "num_uses": 3},
        expect=200,
    )
    token = diff.issued(created, "app token")
    accessor = diff.accessors(created)
    diff.post("auth/token/lookup", json={"token": token}, project=ttl_class, expect=200)
    diff.get("auth/token/lookup", params={"token": token}, project=ttl_class, expect=200)
    diff.post("auth/token/lookup-accessor", json={"accessor": accessor}, project=ttl_class, expect=200)
    # The child's own requests spend its uses; the last one sees -1 left.
    for _ in range(3):
        diff.get("auth/token/lookup-self", token=token, project=ttl_class, expect=200)
    diff.get("auth/token/lookup-self", token=token, expect=403)
    diff.post("auth/token/lookup", json={"token": token}, expect=403)


def test_differential_terraform_child_of_root(diff):
    created = diff.post("auth/token/create", json=TERRAFORM_CHILD, expect=200)
    token = diff.issued(created, "terraform")
    diff.get("auth/token/lookup-self", token=token, project=ttl_class, expect=200)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"policies": ["a", "B", " b "], "no_default_policy": True, "ttl": 60},
        {"policies": "A, b"},
        {"ttl": "1000h"},
        {"explicit_max_ttl": "60s"},
        # `absent`: a policy neither server has (this module writes `p` on kvsync only).
        {"period": "2h", "explicit_max_ttl": "1h", "policies": ["absent"]},
        {"ttl": "10h", "explicit_max_ttl": "1h", "policies": ["absent"]},
        {"meta": ["a=b", "c=d"], "ttl": "0s", "renewable": "false"},
        {"no_parent": True, "policies": ["absent"]},
        {"type": "batch"},
        {"type": "other"},
        {"ttl": "-1h"},
        {"num_uses": -1},
        {"entity_alias": "x"},
        {"policies": ["response-wrapping"]},
        {"id": "a.b"},
    ],
)
def test_differential_create_variants(diff, body):
    diff.post("auth/token/create", json=body)


def test_differential_orphans_renewals_and_revocations(diff):
    parent = diff.issued(diff.post("auth/token/create", json={"ttl": "1h"}, expect=200), "parent")
    child_pair = diff.post("auth/token/create", token=parent, json={"ttl": "1h"}, expect=200)
    child = diff.issued(child_pair, "child")
    orphan = diff.issued(
        diff.post("auth/token/create-orphan", token=parent, json={"ttl": "1h"}, expect=200), "orphan"
    )
    diff.post("auth/token/renew", json={"token": child, "increment": "30m"}, expect=200)
    diff.post("auth/token/renew-accessor", json={"accessor": diff.accessors(child_pair), "increment": 600},
              expect=200)
    diff.post("auth/token/renew-self", token=child, json={"increment": 60}, expect=200)
    diff.post("auth/token/renew", json={"token": "hvs.unknown"}, expect=400)
    diff.post("auth/token/revoke-orphan", json={"token": parent}, expect=204)
    diff.post("auth/token/lookup", json={"token": child}, project=ttl_class, expect=200)
    diff.post("auth/token/revoke", json={"token": child}, expect=204)
    diff.get("auth/token/lookup-self", token=child, expect=403)
    diff.get("auth/token/lookup-self", token=orphan, project=ttl_class, expect=200)
    diff.post("auth/token/revoke-self", token=orphan, json={}, expect=204)
    diff.post("auth/token/revoke", json={"token": "hvs.unknown"}, expect=204)
    diff.post("auth/token/revoke-accessor", json={"accessor": "unknown"}, expect=200)


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "auth/token/lookup", {"token": "hvs.unknown"}),
        ("POST", "auth/token/lookup-accessor", {"accessor": "unknown"}),
        ("POST", "auth/token/lookup-accessor", {}),
        ("POST", "auth/token/renew", {}),
        ("POST", "auth/token/renew-accessor", {"accessor": "unknown"}),
        ("POST", "auth/token/revoke", {}),
        ("POST", "auth/token/revoke-orphan", {}),
        ("POST", "auth/token/revoke-orphan", {"token": "hvs.unknown"}),
        ("POST", "auth/token/revoke-accessor", {}),
        ("POST", "auth/token/create/some-role", {}),
        ("POST", "auth/token/tidy", {}),
        ("LIST", "auth/token/roles", None),
        ("GET", "auth/token/roles/some-role", None),
        ("GET", "auth/token/lookup-self/", None),
        ("GET", "auth/token/create", None),
        ("GET", "auth/token/accessors/", None),
    ],
)
def test_differential_errors_and_odd_paths(diff, method, path, body):
    diff.call(method, path, **({"json": body} if body is not None else {}))


def test_differential_accessor_listing(diff):
    created = diff.post("auth/token/create", json={"ttl": "1h"}, expect=200)
    accessors = diff.accessors(created)
    for side, http, accessor in (("kvsync", diff.kvsync, accessors.kvsync), ("bao", diff.bao, accessors.bao)):
        keys = http.request("LIST", "auth/token/accessors").json()["data"]["keys"]
        assert accessor in keys, side
    # The keys are random per server: compare the shape only.
    diff.list("auth/token/accessors", project=lambda b: {"keys": bool(b["data"]["keys"])}, expect=200)
    diff.get("auth/token/accessors", params={"list": "true"},
             project=lambda b: {"keys": bool(b["data"]["keys"])}, expect=200)


def test_differential_a_non_root_parent(diff, dev_server, bao_server):
    # The parent may create tokens (a policy on both servers; written to kvsync only once it
    # serves policies, and not needed before, when it enforces none).
    for http in (diff.kvsync, diff.bao):
        grant(http, "tok-parent", TOKEN_ADMIN)
    parent = diff.issued(
        diff.post("auth/token/create", json={"policies": ["tok-parent", "extra"], "ttl": "1h"}, expect=200),
        "parent",
    )
    for body in (
        {"policies": ["root"]},
        {"policies": ["extra", "more"]},
        {"no_parent": True},
        {"period": "1h"},
        {"id": "chosen"},
    ):
        diff.post("auth/token/create", token=parent, json=body, expect=400)
    diff.post("auth/token/create", token=parent, json={"policies": ["extra"]}, expect=200)
    diff.post("auth/token/create", token=parent, json={}, expect=200)
    diff.post("auth/token/create-orphan", token=parent, json={"policies": ["Extra"]}, expect=200)
    diff.post("auth/token/revoke-orphan", token=parent, json={"token": "hvs.unknown"}, expect=400)
    restricted = diff.issued(
        diff.post("auth/token/create", json={"num_uses": 3, "policies": ["tok-parent", "extra"]}, expect=200),
        "restricted",
    )
    diff.post("auth/token/create", token=restricted, json={}, expect=400)
