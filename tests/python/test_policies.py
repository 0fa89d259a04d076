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
