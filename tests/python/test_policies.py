"""ACL policies and their enforcement, end to end against the real binary: the policy endpoints
(`sys/policies/acl`, the legacy `sys/policy`), the capabilities endpoints, the start-up endpoints
clients call before anything else, and the 403 shapes of a refused request.
"""

from __future__ import annotations

import base64
import json

import pytest

from kvsync_helpers import assert_alive, unique

READER = """
path "secret/data/app/*" {
  capabilities = ["read"]
}
path "secret/metadata/app/" {
  capabilities = ["list"]
}
"""


@pytest.fixture(autouse=True)
def _server_survives(dev_server):
    yield
    assert_alive(dev_server.server, dev_server.token)


def test_policies_crud_with_hvac_in_hcl_and_json(client):
    name = unique("reader")
    client.sys.create_or_update_acl_policy(name=name, policy=READER)
    read = client.sys.read_acl_policy(name)
    assert read["data"] == {"name": name, "policy": READER}

    # JSON, as hvac sends a dict.
    as_json = unique("jsonpol")
    doc = {"path": {"secret/data/x": {"capabilities": ["read", "list"]}}}
    client.sys.create_or_update_acl_policy(name=as_json, policy=doc)
    assert json.loads(client.sys.read_acl_policy(as_json)["data"]["policy"]) == doc

    keys = client.sys.list_acl_policies()["data"]["keys"]
    assert {name, as_json, "default"} <= set(keys)
    assert keys[-1] == "root"

    # The legacy routes: `policies` and `keys`, `rules`.
    legacy = client.sys.list_policies()
    assert legacy["data"]["policies"] == legacy["data"]["keys"] == keys
    assert client.sys.read_policy(name)["rules"] == READER

    client.sys.delete_acl_policy(as_json)
    client.sys.delete_acl_policy(name)
    keys = client.sys.list_acl_policies()["data"]["keys"]
    assert name not in keys and as_json not in keys


def test_policy_names_are_lower_cased_and_bodies_may_be_base64(http):
    name = unique("Loud")
    encoded = base64.b64encode(READER.encode()).decode()
    r = http.put(f"sys/policies/acl/{name}", json={"policy": encoded})
    assert r.status_code == 200, r.text
    assert r.json()["warnings"] == [f"policy name was converted to {name.lower()}"]
    r = http.get(f"sys/policies/acl/{name.lower()}")
    assert r.status_code == 200
    assert r.json()["data"] == {"name": name.lower(), "policy": READER}
    assert http.delete(f"sys/policies/acl/{name}").status_code == 204


def test_builtin_policies(http):
    r = http.get("sys/policies/acl/root")
    assert (r.status_code, r.json()["data"]) == (200, {"name": "root", "policy": ""})
    default = http.get("sys/policies/acl/default").json()["data"]["policy"]
    assert 'path "auth/token/lookup-self"' in default
    for method, path, message in [
        ("PUT", "sys/policies/acl/root", 'cannot update "root" policy'),
        ("DELETE", "sys/policies/acl/root", 'cannot delete "root" policy'),
        ("DELETE", "sys/policies/acl/default", "cannot delete default policy"),
    ]:
        r = http.request(method, path, json={"policy": READER})
        assert (r.status_code, r.json()) == (400, {"errors": [message]}), f"{method} {path}"
    r = http.put(f"sys/policies/acl/{unique('bad')}", json={"policy": "path {"})
    assert r.status_code == 400
    assert r.json()["errors"][0].startswith("failed to parse policy")
    assert http.get("sys/policies/acl").status_code == 405


def test_capabilities_self_with_hvac_and_the_go_clients_body(client, http):
    # hvac: `paths`.
    r = http.post("sys/capabilities-self", json={"paths": ["secret/data/a", "sys/mounts"]})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"secret/data/a": ["root"], "sys/mounts": ["root"]}
    assert r.json()["sys/mounts"] == ["root"]
    # The Go client (and the Vault CLI): its own token and one `path`.
    r = http.post("sys/capabilities-self", json={"token": http.token, "path": "secret/data/a"})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"secret/data/a": ["root"], "capabilities": ["root"]}
    assert r.json()["capabilities"] == ["root"]
    r = http.post("sys/capabilities", json={"token": http.token, "paths": ["x"]})
    assert r.json()["data"]["x"] == ["root"]
    r = http.post("sys/capabilities", json={"token": "nope", "paths": ["x"]})
    assert (r.status_code, r.json()) == (400, {"errors": ["invalid token"]})


def test_start_up_endpoints(client, http):
    status = client.sys.read_seal_status()
    assert status["sealed"] is False and status["initialized"] is True
    assert status["version"].endswith("+ent")
    assert client.sys.is_initialized() is True
    assert client.sys.read_leader_status()["ha_enabled"] is False
    methods = client.sys.list_auth_methods()
    assert methods["data"]["token/"]["type"] == "token"
    # The first three need no token; sys/auth does.
    for path in ["sys/seal-status", "sys/leader", "sys/init"]:
        assert http.get(path, token=None).status_code == 200, path
    assert http.get("sys/auth", token=None).status_code == 403


def test_ui_mounts_need_a_token_and_never_say_404(http):
    r = http.get("sys/internal/ui/mounts/secret/a/b")
    assert r.status_code == 200
    assert r.json()["data"]["path"] == "secret/"
    r = http.get(f"sys/internal/ui/mounts/{unique('nomount')}/x")
    assert (r.status_code, r.json()) == (403, {"errors": ["permission denied"]})
    assert http.get("sys/internal/ui/mounts/secret/a", token=None).status_code == 403


# --------------------------------------------------------------------------------------------
# enforcement, with tokens created through auth/token/create
# --------------------------------------------------------------------------------------------


def token_with(client, *policies: str) -> str:
    return client.auth.token.create(policies=list(policies), no_default_policy=False)["auth"]["client_token"]


def as_token(http, token):
    """The same server, another token."""
    from kvsync_helpers import Http

    return Http(http.addr, token)


def put_policy(http, text: str) -> str:
    name = unique("pol")
    assert http.put(f"sys/policies/acl/{name}", json={"policy": text}).status_code == 204
    return name


DENIED = {"errors": ["permission denied"]}


def test_a_read_only_token_on_kv_v2(client, http):
    folder = unique("app")
    http.post(f"secret/data/app/{folder}", json={"data": {"a": "1"}})
    reader = as_token(http, token_with(client, put_policy(http, READER)))
    r = reader.get(f"secret/data/app/{folder}")
    assert r.status_code == 200 and r.json()["data"]["data"] == {"a": "1"}
    assert reader.list("secret/metadata/app").status_code == 200
    for r in [
        reader.post(f"secret/data/app/{folder}", json={"data": {"a": "2"}}),
        reader.post(f"secret/data/app/{unique('new')}", json={"data": {"a": "2"}}),
        reader.delete(f"secret/data/app/{folder}"),
        reader.get(f"secret/metadata/app/{folder}"),
        reader.list(f"secret/metadata/app/{folder}"),
        reader.get("secret/data/other"),
        reader.get("sys/mounts"),
        reader.get(f"{unique('nomount')}/x"),
    ]:
        assert (r.status_code, r.json()) == (403, DENIED), f"{r.request.method} {r.url}"
    # The default policy: lookup-self and capabilities-self.
    assert reader.get("auth/token/lookup-self").status_code == 200
    r = reader.post("sys/capabilities-self", json={"paths": [f"secret/data/app/{folder}", "sys/mounts"]})
    assert r.json()["data"] == {f"secret/data/app/{folder}": ["read"], "sys/mounts": ["deny"]}
    # Creating needs `create`, updating `update`: the existence check decides which.
    writer = as_token(http, token_with(client, put_policy(http, 'path "secret/data/app/*" { capabilities = ["create"] }')))
    fresh = f"secret/data/app/{unique('fresh')}"
    assert writer.post(fresh, json={"data": {"a": "1"}}).status_code == 200
    assert writer.post(fresh, json={"data": {"a": "2"}}).status_code == 403


def test_a_policy_change_applies_on_the_next_request(client, http):
    folder = unique("app")
    http.post(f"secret/data/app/{folder}", json={"data": {"a": "1"}})
    name = put_policy(http, READER)
    reader = as_token(http, token_with(client, name))
    assert reader.get(f"secret/data/app/{folder}").status_code == 200
    http.put(f"sys/policies/acl/{name}", json={"policy": 'path "x" { capabilities = ["read"] }'})
    assert reader.get(f"secret/data/app/{folder}").status_code == 403
    http.delete(f"sys/policies/acl/{name}")
    assert reader.get(f"secret/data/app/{folder}").status_code == 403
    assert reader.get("auth/token/lookup-self").status_code == 200


def test_a_read_only_token_on_sys_sync(client, http):
    dest = unique("ro")
    assert http.post(f"sys/sync/destinations/in-mem/{dest}", json={}).status_code in (200, 204)
    policy = put_policy(http, 'path "sys/sync/*" { capabilities = ["read", "list"] }')
    reader = as_token(http, token_with(client, policy))
    assert reader.get(f"sys/sync/destinations/in-mem/{dest}").status_code == 200
    assert reader.list("sys/sync/destinations").status_code == 200
    for r in [
        reader.post(f"sys/sync/destinations/in-mem/{unique('new')}", json={}),
        reader.delete(f"sys/sync/destinations/in-mem/{dest}"),
        reader.post(f"sys/sync/destinations/in-mem/{dest}/associations/set",
                    json={"mount": "secret", "secret_name": "x"}),
        reader.merge_patch("sys/sync/config", {"disabled": True}),
    ]:
        assert (r.status_code, r.json()) == (403, DENIED), f"{r.request.method} {r.url}"


def test_associating_a_secret_needs_read_on_it(client, http):
    dest = unique("assoc")
    http.post(f"sys/sync/destinations/in-mem/{dest}", json={})
    secret = unique("s")
    http.post(f"secret/data/{secret}", json={"data": {"a": "1"}})
    policy = put_policy(
        http,
        f'path "sys/sync/*" {{ capabilities = ["read", "update", "create"] }}\n'
        f'path "secret/data/{secret}" {{ capabilities = ["deny"] }}\n',
    )
    syncer = as_token(http, token_with(client, policy))
    r = syncer.post(f"sys/sync/destinations/in-mem/{dest}/associations/set",
                    json={"mount": "secret", "secret_name": secret})
    assert r.status_code == 403, r.text
    # Without the deny (and with read), the same request goes through.
    allowed = put_policy(
        http,
        f'path "sys/sync/*" {{ capabilities = ["read", "update", "create"] }}\n'
        f'path "secret/data/{secret}" {{ capabilities = ["read"] }}\n',
    )
    syncer = as_token(http, token_with(client, allowed))
    r = syncer.post(f"sys/sync/destinations/in-mem/{dest}/associations/set",
                    json={"mount": "secret", "secret_name": secret})
    assert r.status_code == 200, r.text


def test_capabilities_of_another_token_and_by_accessor(client, http):
    created = client.auth.token.create(policies=[put_policy(http, READER)])["auth"]
    paths = ["secret/data/app/x", "secret/metadata/app/"]
    want = {"secret/data/app/x": ["read"], "secret/metadata/app/": ["list"]}
    r = http.post("sys/capabilities", json={"token": created["client_token"], "paths": paths})
    assert r.json()["data"] == want
    r = http.post("sys/capabilities-accessor", json={"accessor": created["accessor"], "paths": paths})
    assert r.json()["data"] == want


def test_ui_mounts_for_a_token_without_access_is_403(client, http):
    reader = as_token(http, token_with(client, put_policy(http, READER)))
    assert reader.get("sys/internal/ui/mounts/secret/app/x").status_code == 200
    m = unique("m")
    assert http.post(f"sys/mounts/{m}", json={"type": "kv-v2"}).status_code == 204
    r = reader.get(f"sys/internal/ui/mounts/{m}/x")
    assert (r.status_code, r.json()) == (403, DENIED)
