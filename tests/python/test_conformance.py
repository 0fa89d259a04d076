"""One conformance suite, run once per destination type against its provider double.

For each profile (conformance/<type>.py): create a destination and associate a KV secret; the object
appears at the provider with the exact name, value and tags; an update changes it with
exactly one write (pushed by the sync worker, no refresh needed); an unchanged refresh writes nothing; `secret-key` writes one object per key and
deletes a removed key's object; `remove` deletes it; throttling gives EXTERNAL_SERVICE_ERROR with the
retry hint; bad credentials give CLIENT_SIDE_ERROR; strict networking refuses the loopback double.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from conformance import load_profiles
from conftest import start_dev_server
from kvsync_helpers import Http

PROFILES = load_profiles()


@pytest.fixture(scope="module", params=PROFILES, ids=[p.kind for p in PROFILES])
def world(request, kvsync_bin, tmp_path_factory):
    profile = request.param
    tmp = tmp_path_factory.mktemp(f"conformance-{profile.kind}")
    profile.start(tmp)
    try:
        srv = start_dev_server(kvsync_bin, tmp / "kvsync", env_extra=profile.server_env())
        try:
            http = Http(srv.addr, srv.token)
            acc = http.get("sys/mounts/secret").json()["data"]["accessor"]
            yield profile, http, acc
            http.close()
        finally:
            srv.server.stop()
    finally:
        profile.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(http, profile, name, **overrides):
    r = http.post(f"sys/sync/destinations/{profile.kind}/{name}", json=profile.destination(name, **overrides))
    assert r.status_code == 200, r.text
    return r.json()["data"]


def write(http, path, data):
    r = http.post(f"secret/data/{path}", json={"data": data})
    assert r.status_code == 200, r.text


def set_assoc(http, profile, name, secret):
    r = http.post(f"sys/sync/destinations/{profile.kind}/{name}/associations/set",
                  json={"mount": "secret", "secret_name": secret})
    assert r.status_code == 200, r.text
    return r.json()["data"]["associated_secrets"]


def remove_assoc(http, profile, name, secret):
    r = http.post(f"sys/sync/destinations/{profile.kind}/{name}/associations/remove",
                  json={"mount": "secret", "secret_name": secret})
    assert r.status_code == 200, r.text
    return r.json()["data"]["associated_secrets"]


def wait_for(check, timeout_s: float = 20.0, step_s: float = 0.05) -> bool:
    """Polls `check` (bounded in time and count) until it holds."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / step_s) + 1):
        if check():
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(step_s)
    return False


def wait_for_rows(http, profile, name, check, timeout_s: float = 20.0):
    """The destination's association rows once `check(rows)` holds, else None."""
    found = {}

    def probe():
        r = http.get(f"sys/sync/destinations/{profile.kind}/{name}/associations")
        found["rows"] = r.json()["data"]["associated_secrets"]
        return check(found["rows"])

    return found.get("rows") if wait_for(probe, timeout_s) else None


def expected_tags(profile) -> dict:
    return {"hashicorp:vault": ""} if profile.cloud else {}


def test_write_update_refresh_remove(world):
    profile, http, acc = world
    name, secret = unique("d"), unique("app")
    create(http, profile, name, granularity="secret-path")
    write(http, secret, {"user": "app", "password": "p1"})
    rows = set_assoc(http, profile, name, secret)
    row = rows[f"{acc}/{secret}"]
    assert row["sync_status"] == "SYNCED", row
    ext = profile.expected_name(acc, secret)
    obj = profile.objects()[ext]
    assert json.loads(obj["value"]) == {"user": "app", "password": "p1"}
    for k, v in expected_tags(profile).items():
        assert obj["tags"].get(k) == v, obj["tags"]

    # A change reaches the provider by itself (the sync worker), with exactly one write and no
    # read-before-write.
    before = profile.writes()
    write(http, secret, {"user": "app", "password": "p2"})
    converged = wait_for(lambda: json.loads(profile.objects().get(ext, {}).get("value", "{}")).get("password") == "p2")
    assert converged, profile.objects().get(ext)
    rows = wait_for_rows(http, profile, name, lambda r: r[f"{acc}/{secret}"]["sync_status"] == "SYNCED")
    assert rows, "the association did not return to SYNCED"
    assert profile.writes() == before + 1

    # Unchanged: a refresh costs no provider write.
    assert set_assoc(http, profile, name, secret)[f"{acc}/{secret}"]["sync_status"] == "SYNCED"
    assert profile.writes() == before + 1

    rows = remove_assoc(http, profile, name, secret)
    assert f"{acc}/{secret}" not in rows or rows[f"{acc}/{secret}"]["sync_status"] == "UNSYNCED"
    assert ext not in profile.objects()


def test_secret_key_granularity_writes_one_object_per_key(world):
    profile, http, acc = world
    name, secret = unique("k"), unique("keys")
    create(http, profile, name, granularity="secret-key")
    write(http, secret, {"alpha": "one", "beta": "two"})
    rows = set_assoc(http, profile, name, secret)
    assert rows[f"{acc}/{secret}/alpha"]["sync_status"] == "SYNCED", rows
    assert rows[f"{acc}/{secret}/beta"]["sync_status"] == "SYNCED", rows
    objects = profile.objects()
    a, b = profile.expected_name(acc, secret, "alpha"), profile.expected_name(acc, secret, "beta")
    assert objects[a]["value"] == "one"
    assert objects[b]["value"] == "two"

    write(http, secret, {"alpha": "one"})
    assert wait_for(lambda: b not in profile.objects()), "the removed key's object was not deleted"
    rows = wait_for_rows(http, profile, name, lambda r: f"{acc}/{secret}/beta" not in r)
    assert rows is not None and f"{acc}/{secret}/alpha" in rows, rows
    objects = profile.objects()
    assert objects[a]["value"] == "one"
    remove_assoc(http, profile, name, secret)
    assert a not in profile.objects()


def test_throttling_is_an_external_service_error_with_the_retry_hint(world):
    profile, http, acc = world
    name, secret = unique("t"), unique("thr")
    create(http, profile, name, granularity="secret-path")
    write(http, secret, {"v": "1"})
    profile.throttle(times=20, retry_after_s=7)
    try:
        row = set_assoc(http, profile, name, secret)[f"{acc}/{secret}"]
    finally:
        profile.clear_faults()
    assert row["sync_status"] == "EXTERNAL_SERVICE_ERROR", row
    assert "retry after 7s" in row["error"], row["error"]
    # Once the provider recovers, a refresh syncs.
    assert set_assoc(http, profile, name, secret)[f"{acc}/{secret}"]["sync_status"] == "SYNCED"
    remove_assoc(http, profile, name, secret)


def test_bad_credentials_are_a_client_side_error(world):
    profile, http, acc = world
    name, secret = unique("b"), unique("cred")
    create(http, profile, name, granularity="secret-path", **profile.bad_credentials())
    write(http, secret, {"v": "1"})
    row = set_assoc(http, profile, name, secret)[f"{acc}/{secret}"]
    assert row["sync_status"] == "CLIENT_SIDE_ERROR", row
    assert row.get("error"), row
    assert profile.expected_name(acc, secret) not in profile.objects()


# Types whose double is named by a plain-http URL in the destination itself (the others'
# endpoints are the server's environment overrides).
PLAIN_HTTP_IN_DESTINATION = ("gh", "azure-kv", "gcp-sm")


def test_strict_networking_refuses_the_loopback_double(world):
    profile, http, acc = world
    name, secret = unique("n"), unique("net")
    if profile.kind in PLAIN_HTTP_IN_DESTINATION:
        # Refused at write time: the credentials would travel in clear.
        body = profile.destination(name, granularity="secret-path", disable_strict_networking=False)
        r = http.post(f"sys/sync/destinations/{profile.kind}/{name}", json=body)
        assert r.status_code == 400, r.text
        assert "https" in r.text and "disable_strict_networking" in r.text, r.text
        return
    create(http, profile, name, granularity="secret-path", disable_strict_networking=False)
    write(http, secret, {"v": "1"})
    before = len(profile.objects())
    row = set_assoc(http, profile, name, secret)[f"{acc}/{secret}"]
    assert row["sync_status"] == "CLIENT_SIDE_ERROR", row
    assert "egress refused" in row["error"], row["error"]
    assert len(profile.objects()) == before
