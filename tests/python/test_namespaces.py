"""Namespaces end to end: hvac's namespace calls, two teams sharing one server with the same
names and different data, tenant tokens confined to their namespace, nesting, root-only paths,
deletion rules, and the Vault-API parts against OpenBao (`diff`).
"""

from __future__ import annotations

import hvac
import pytest

from differential import Decision
from kvsync_helpers import Http, make_hvac_client, unique


def ns_client(dev_server, namespace=None, token=None) -> hvac.Client:
    return make_hvac_client(dev_server.addr, token or dev_server.token, namespace=namespace)


def team(client: hvac.Client, dev_server, name: str, value: str):
    """Namespace `name` with KV-v2 at secret/, secret `app` = {"v": value}, an in-mem destination
    `d1` and the association; returns the namespace's hvac client."""
    client.sys.create_namespace(name)
    c = ns_client(dev_server, name)
    c.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    c.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": value}, mount_point="secret")
    h = Http(dev_server.addr, dev_server.token)
    ns = {"X-Vault-Namespace": name}
    assert h.post("sys/sync/destinations/in-mem/d1", json={}, headers=ns).status_code == 200
    r = h.post("sys/sync/destinations/in-mem/d1/associations/set",
               json={"mount": "secret", "secret_name": "app"}, headers=ns)
    assert r.status_code == 200, r.text
    h.close()
    return c


def test_hvac_namespace_calls_and_nesting(client, dev_server):
    a = unique("hv")
    r = client.sys.create_namespace(a)
    assert r["data"]["path"] == f"{a}/" and len(r["data"]["id"]) == 5
    assert r["data"]["custom_metadata"] == {}
    keys = client.sys.list_namespaces()["data"]["keys"]
    assert f"{a}/" in keys
    # Nested: through the header, or a path prefix.
    child = ns_client(dev_server, a)
    assert child.sys.create_namespace("ci")["data"]["path"] == f"{a}/ci/"
    h = Http(dev_server.addr, dev_server.token)
    r = h.request("LIST", f"{a}/sys/namespaces")
    assert r.status_code == 200 and r.json()["data"]["keys"] == ["ci/"], r.text
    r = h.get(f"sys/namespaces/{a}/ci")
    assert r.status_code == 200 and r.json()["data"]["path"] == f"{a}/ci/"
    # A parent must exist.
    assert h.post(f"sys/namespaces/{unique('no')}/ci", json={}).status_code == 400
    # Children first.
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.delete_namespace(a)
    child.sys.delete_namespace("ci")
    client.sys.delete_namespace(a)
    assert h.get(f"sys/namespaces/{a}").status_code == 404
    h.close()
    child.adapter.close()


def test_two_teams_share_one_server(client, dev_server):
    a, b = unique("team-a"), unique("team-b")
    ca = team(client, dev_server, a, "from-a")
    cb = team(client, dev_server, b, "from-b")
    assert ca.secrets.kv.v2.read_secret_version(path="app", mount_point="secret")["data"]["data"] == {"v": "from-a"}
    assert cb.secrets.kv.v2.read_secret_version(path="app", mount_point="secret")["data"]["data"] == {"v": "from-b"}
    h = Http(dev_server.addr, dev_server.token)
    for ns in (a, b):
        r = h.get("sys/sync/destinations/in-mem/d1/associations", headers={"X-Vault-Namespace": ns})
        assert r.status_code == 200, r.text
        assert len(r.json()["data"]["associated_secrets"]) == 1

    # A token of team a: its policy, its namespace (and children) only.
    grant_a = 'path "secret/*" { capabilities = ["read", "list"] }'
    ca.sys.create_or_update_acl_policy(name="reader", policy=grant_a)
    token = ca.auth.token.create(policies=["reader"])["auth"]["client_token"]
    own = ns_client(dev_server, a, token)
    assert own.secrets.kv.v2.read_secret_version(path="app", mount_point="secret")["data"]["data"] == {"v": "from-a"}
    # lookup-self without a header runs in the token's namespace.
    plain = make_hvac_client(dev_server.addr, token)
    assert plain.auth.token.lookup_self()["data"]["namespace_path"] == f"{a}/"
    # The same paths in b, or the root namespace: 403.
    other = ns_client(dev_server, b, token)
    with pytest.raises(hvac.exceptions.Forbidden):
        other.secrets.kv.v2.read_secret_version(path="app", mount_point="secret")
    with pytest.raises(hvac.exceptions.Forbidden):
        plain.secrets.kv.v2.read_secret_version(path="app", mount_point="secret")
    r = Http(dev_server.addr, token).get(f"{b}/secret/data/app")
    assert r.status_code == 403
    # An unknown namespace: 404 for a valid token, 403 for an invalid one.
    ghost = {"X-Vault-Namespace": unique("ghost")}
    assert Http(dev_server.addr, token).get("secret/data/app", headers=ghost).status_code == 404
    assert Http(dev_server.addr, "nope").get("secret/data/app", headers=ghost).status_code == 403
    # Root-only paths from a child namespace.
    assert h.get("sys/key-status", headers={"X-Vault-Namespace": a}).status_code == 400

    # Deletion: refused while destinations hold associations, naming them.
    r = h.delete(f"sys/namespaces/{a}")
    assert r.status_code == 400 and "in-mem/d1" in r.text, r.text
    r = h.post("sys/sync/destinations/in-mem/d1/associations/remove",
               json={"mount": "secret", "secret_name": "app"}, headers={"X-Vault-Namespace": a})
    assert r.status_code == 200, r.text
    r = h.delete(f"sys/namespaces/{a}")
    assert r.status_code == 204, r.text
    # Everything of a is gone at once: its token, its data; b is untouched.
    with pytest.raises(hvac.exceptions.Forbidden):
        plain.auth.token.lookup_self()
    assert h.get("secret/data/app", headers={"X-Vault-Namespace": a}).status_code == 404
    assert cb.secrets.kv.v2.read_secret_version(path="app", mount_point="secret")["data"]["data"] == {"v": "from-b"}
    for c in (ca, cb, own, plain, other):
        c.adapter.close()
    h.close()


NS_DELETE = "DELETE `sys/namespaces/:path` answers 204"


def without_ids(body):
    """The namespace records of a body with their random `id` and `uuid` left out."""
    def strip(n):
        return {k: v for k, v in n.items() if k not in ("id", "uuid")} if isinstance(n, dict) else n

    data = (body or {}).get("data") if isinstance(body, dict) else None
    if isinstance(data, dict) and "key_info" in data:
        data["key_info"] = {k: strip(v) for k, v in data["key_info"].items()}
    elif isinstance(data, dict):
        body["data"] = strip(data)
    return body


def test_namespaces_against_openbao(diff):
    a = unique("dn")
    diff.post(f"sys/namespaces/{a}", expect=200, project=without_ids)
    diff.put(f"sys/namespaces/{a}", json={"custom_metadata": {"owner": "alice"}}, expect=200, project=without_ids)
    diff.merge_patch(f"sys/namespaces/{a}", {"custom_metadata": {"owner": None, "team": "x"}},
                     expect=200, project=without_ids)
    diff.get(f"sys/namespaces/{a}", expect=200, project=without_ids)
    diff.get(f"sys/namespaces/{unique('none')}", expect=404)
    diff.merge_patch(f"sys/namespaces/{unique('none')}", {"custom_metadata": {}}, expect=400)
    ns = {"X-Vault-Namespace": a}
    diff.list("sys/namespaces", headers=ns, expect=404)
    diff.post("sys/namespaces/ci", headers=ns, expect=200, project=without_ids)
    diff.list("sys/namespaces", headers=ns, expect=200, project=without_ids)
    diff.list(f"{a}/sys/namespaces", expect=200, project=without_ids)
    for bad in ("sys", "root", "a+b"):
        diff.post(f"sys/namespaces/{bad}", expect=400)
    diff.delete(f"sys/namespaces/{a}", expect=400)
    diff.get("sys/key-status", headers=ns, expect=400)
    diff.get("secret/config", headers={"X-Vault-Namespace": f"{a}/{unique('ghost')}"}, expect=404)
    # Deletion: kvsync answers 204 where OpenBao answers 200 {"status": "in-progress"}.
    diff.allow(Decision(where="$status", readme=NS_DELETE, request="DELETE .*"),
               Decision(where="<root>", readme=NS_DELETE, request="DELETE .*"))
    diff.delete("sys/namespaces/ci", headers=ns, expect=200)
    diff.delete(f"sys/namespaces/{a}", expect=200)
