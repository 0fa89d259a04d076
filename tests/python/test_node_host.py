"""The Node.js host (host/node/run.sh: the same engine component, transpiled by jco, under V8) end
to end: the hvac KV-v2 flow, a sync to `in-mem` and a sync to `aws-sm` against moto, each pushed by
its sync worker. The host is started exactly as other tooling starts it:
`host/node/run.sh --listen 127.0.0.1:PORT --dev-root-token-id TOKEN`."""

from __future__ import annotations

import json
import time

import pytest
from hvac import exceptions as hexc

from conftest import start_node_server
from kvsync_helpers import Http, assert_alive, make_hvac_client, unique

WAIT_S = 20.0


def wait_for(check, timeout_s: float = WAIT_S, step_s: float = 0.05):
    """Polls `check` (bounded in time and count) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / step_s) + 1):
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            break
        time.sleep(step_s)
    return check()


@pytest.fixture(scope="module")
def dev_server(node_server):
    """conftest's `client` (hvac) and `http` fixtures talk to this module's Node.js host."""
    return node_server


def test_hvac_kv_v2_flow(node_server, client):
    kv = client.secrets.kv.v2
    assert client.is_authenticated()
    assert not make_hvac_client(node_server.addr, "not-the-root-token").is_authenticated()
    path = unique("app")
    kv.create_or_update_secret(path, {"user": "app", "password": "p1"}, mount_point="secret")
    kv.create_or_update_secret(path, {"user": "app", "password": "p2"}, cas=1, mount_point="secret")
    with pytest.raises(hexc.InvalidRequest):
        kv.create_or_update_secret(path, {"password": "lost"}, cas=1, mount_point="secret")
    got = kv.read_secret_version(path, mount_point="secret", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"user": "app", "password": "p2"}
    assert got["data"]["metadata"]["version"] == 2
    old = kv.read_secret_version(path, version=1, mount_point="secret", raise_on_deleted_version=True)
    assert old["data"]["data"]["password"] == "p1"
    assert path in kv.list_secrets("", mount_point="secret")["data"]["keys"]  # LIST
    meta = kv.read_secret_metadata(path, mount_point="secret")["data"]
    assert meta["current_version"] == 2 and sorted(meta["versions"]) == ["1", "2"]
    kv.delete_latest_version_of_secret(path, mount_point="secret")
    kv.undelete_secret_versions(path, [2], mount_point="secret")
    kv.destroy_secret_versions(path, [1], mount_point="secret")
    kv.delete_metadata_and_all_versions(path, mount_point="secret")
    with pytest.raises(hexc.InvalidPath):
        kv.read_secret_version(path, mount_point="secret", raise_on_deleted_version=True)
    assert_alive(node_server.server, node_server.token)


def test_host_duties(node_server, http):
    api = http
    # /v1/ only, a token except on sys/health, the envelope, no-store
    r = api.session.get(node_server.addr + "/v2/sys/health", timeout=10)
    assert r.status_code == 404 and r.json() == {"errors": []}
    r = api.get("secret/data/x", token=None)
    assert r.status_code == 403 and r.json() == {"errors": ["permission denied"]}
    assert r.headers["cache-control"] == "no-store"
    assert api.get("sys/health", token=None).status_code == 200
    bearer = api.get("sys/mounts/secret", token=None, headers={"Authorization": f"Bearer {node_server.token}"})
    assert bearer.status_code == 200 and bearer.headers["cache-control"] == "no-store"
    r = api.get("sys/mounts", headers={"X-Vault-Namespace": "team-a"})
    assert r.status_code == 400 and "does not exist" in r.json()["errors"][0]
    # LIST and ?list=true are the same request
    api.post("secret/data/dir/a", json={"data": {"k": "v"}})
    assert api.list("secret/metadata/dir").json()["data"] == {"keys": ["a"]}
    assert api.get("secret/metadata/dir", params={"list": "true"}).json()["data"] == {"keys": ["a"]}
    # bad JSON is the engine's 400, never a 500
    r = api.post("secret/data/x", data="{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["errors"]


def test_in_mem_sync_end_to_end(http):
    api = http
    secret, dest = unique("s"), unique("d")
    assert api.post(f"secret/data/{secret}", json={"data": {"k": "v1"}}).status_code == 200
    assert api.post(f"sys/sync/destinations/in-mem/{dest}", json={}).status_code == 200
    r = api.post(f"sys/sync/destinations/in-mem/{dest}/associations/set",
                 json={"mount": "secret", "secret_name": secret})
    assert r.status_code == 200, r.text

    def objects():
        return api.get(f"sys/sync/destinations/in-mem/{dest}/objects").json()["data"]["objects"]

    assert any(json.loads(o["value"]) == {"k": "v1"} for o in objects().values()), objects()
    # an update reaches the destination through the sync worker (no refresh call)
    assert api.post(f"secret/data/{secret}", json={"data": {"k": "v2"}}).status_code == 200
    assert wait_for(lambda: any(json.loads(o["value"]) == {"k": "v2"} for o in objects().values())), objects()
    r = api.post(f"sys/sync/destinations/in-mem/{dest}/associations/remove",
                 json={"mount": "secret", "secret_name": secret})
    assert r.status_code == 200, r.text
    assert wait_for(lambda: objects() == {}), objects()
    assert api.delete(f"sys/sync/destinations/in-mem/{dest}").status_code == 204


@pytest.fixture(scope="module")
def node_with_moto(moto, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("node-aws")
    srv = start_node_server(log_dir, env_extra=moto.server_env(log_dir))
    try:
        yield srv
    finally:
        srv.server.stop()


def test_aws_sm_sync_against_moto(moto, node_with_moto):
    api = Http(node_with_moto.addr, node_with_moto.token)
    sm = moto.client()
    try:
        secret, dest = unique("s"), unique("aws")
        assert api.post(f"secret/data/{secret}", json={"data": {"db": "v1"}}).status_code == 200
        r = api.post(f"sys/sync/destinations/aws-sm/{dest}", json={
            "access_key_id": "AKIAKVSYNCTESTKEY01",
            "secret_access_key": "kvsync-test-secret-access-key",
            "region": "us-east-1",
            "disable_strict_networking": True,
            "custom_tags": {"team": "payments"},
        })
        assert r.status_code == 200, r.text
        r = api.post(f"sys/sync/destinations/aws-sm/{dest}/associations/set",
                     json={"mount": "secret", "secret_name": secret})
        assert r.status_code == 200, r.text

        def held():
            out = {}
            for s in sm.list_secrets().get("SecretList", []):
                if s["Name"].endswith("/" + secret):
                    value = sm.get_secret_value(SecretId=s["ARN"])["SecretString"]
                    out[s["Name"]] = (value, {t["Key"]: t["Value"] for t in s.get("Tags", [])})
            return out

        got = wait_for(held)
        assert len(got) == 1, got
        (value, tags), = got.values()
        assert json.loads(value) == {"db": "v1"}
        assert tags.get("team") == "payments" and "hashicorp:vault" in tags, tags

        assert api.post(f"secret/data/{secret}", json={"data": {"db": "v2"}}).status_code == 200
        assert wait_for(lambda: [v for v, _ in held().values()] == [json.dumps({"db": "v2"}, separators=(",", ":"))]
                        or any(json.loads(v) == {"db": "v2"} for v, _ in held().values())), held()

        r = api.get(f"sys/sync/destinations/aws-sm/{dest}/associations")
        assocs = r.json()["data"]["associated_secrets"]
        assert all(a["sync_status"] == "SYNCED" for a in assocs.values()), assocs

        r = api.post(f"sys/sync/destinations/aws-sm/{dest}/associations/remove",
                     json={"mount": "secret", "secret_name": secret})
        assert r.status_code == 200, r.text
        assert wait_for(lambda: held() == {}), held()
        assert_alive(node_with_moto.server, node_with_moto.token)
    finally:
        api.close()


def test_strict_networking_refuses_the_loopback_double(moto, node_with_moto):
    api = Http(node_with_moto.addr, node_with_moto.token)
    try:
        secret, dest = unique("s"), unique("strict")
        api.post(f"secret/data/{secret}", json={"data": {"k": "v"}})
        r = api.post(f"sys/sync/destinations/aws-sm/{dest}", json={
            "access_key_id": "AKIAKVSYNCTESTKEY01",
            "secret_access_key": "kvsync-test-secret-access-key",
            "region": "us-east-1",
        })
        assert r.status_code == 200, r.text
        r = api.post(f"sys/sync/destinations/aws-sm/{dest}/associations/set",
                     json={"mount": "secret", "secret_name": secret})
        assert r.status_code == 200, r.text
        assocs = api.get(f"sys/sync/destinations/aws-sm/{dest}/associations").json()["data"]["associated_secrets"]
        (a,) = assocs.values()
        assert a["sync_status"] == "CLIENT_SIDE_ERROR", a
        assert "egress refused" in a["error"], a
    finally:
        api.close()
