"""Mounts and KV-v2 driven through hvac, exactly as users do. What hvac does against real Vault must
hold against kvsync (Vault's API documentation for mounts and KV-v2; Vault's KV-v2 plugin is the
reference where the documentation is silent)."""

from __future__ import annotations

import json
import time

import pytest
from hvac import exceptions as hexc

from kvsync_helpers import (
    ACCESSOR_RE,
    RFC3339_NANO_RE,
    UUID_RE,
    assert_alive,
    assert_recent_ts,
    make_hvac_client,
    ts_ns,
    unique,
)

SECRET = "secret"


@pytest.fixture(autouse=True)
def _server_survives(dev_server):
    yield
    assert_alive(dev_server.server, dev_server.token)


def kv(client):
    return client.secrets.kv.v2


def new_mount(client, backend_type="kv", options=None, **kw):
    path = unique("kvm")
    if options is None and backend_type == "kv":
        options = {"version": "2"}
    resp = client.sys.enable_secrets_engine(backend_type, path=path, options=options, **kw)
    assert resp.status_code == 204, resp.text
    return path


def merge_patch(client, mount, path, body):
    """The real PATCH (not hvac's read+write emulation): JSON merge patch on <m>/data/<p>."""
    return client.adapter.request(
        "PATCH",
        f"/v1/{mount}/data/{path}",
        json=body,
        headers={"Content-Type": "application/merge-patch+json"},
    )


# --------------------------------------------------------------------------------------------
# auth + mounts
# --------------------------------------------------------------------------------------------


def test_is_authenticated(dev_server, client):
    assert client.is_authenticated() is True
    bad = make_hvac_client(dev_server.addr, "not-a-valid-token-" + unique())
    assert bad.is_authenticated() is False


def test_enable_kv_with_version_option_list_and_disable(client):
    path = new_mount(client, "kv", options={"version": "2"}, description="hvac mount")

    listing = client.sys.list_mounted_secrets_engines()
    entry = listing["data"][path + "/"]
    assert entry["type"] == "kv"
    assert entry["options"] == {"version": "2"}
    assert ACCESSOR_RE.match(entry["accessor"]), entry["accessor"]
    assert entry["description"] == "hvac mount"
    assert UUID_RE.match(entry["uuid"]), entry["uuid"]
    assert isinstance(entry["config"], dict)
    for k in ("default_lease_ttl", "max_lease_ttl", "force_no_cache"):
        assert k in entry["config"], f"config lacks {k}: {entry['config']}"
    for k in (
        "accessor", "config", "description", "external_entropy_access", "local", "options",
        "plugin_version", "running_plugin_version", "running_sha256", "seal_wrap", "type", "uuid",
        "deprecation_status",
    ):
        assert k in entry, f"mount entry lacks {k!r}: {sorted(entry)}"
    # sys/mounts is one of Vault's legacy routes that copies data keys to the top level too
    assert listing[path + "/"] == entry
    assert listing["secret/"] == listing["data"]["secret/"]
    # hvac's helper built on the listing
    assert client.sys.retrieve_mount_option(path, "version") == "2"

    # the new mount works
    kv(client).create_or_update_secret("a", {"k": "v"}, mount_point=path)
    got = kv(client).read_secret_version("a", mount_point=path, raise_on_deleted_version=True)
    assert got["data"]["data"] == {"k": "v"}

    resp = client.sys.disable_secrets_engine(path)
    assert resp.status_code == 204
    assert path + "/" not in client.sys.list_mounted_secrets_engines()["data"]
    with pytest.raises(hexc.InvalidPath) as ei:
        kv(client).read_secret_version("a", mount_point=path, raise_on_deleted_version=True)
    assert "no handler for route" in str(ei.value)


def test_dev_mode_secret_mount_is_kv_v2(client):
    listing = client.sys.list_mounted_secrets_engines()
    entry = listing["data"]["secret/"]
    assert entry["type"] == "kv"
    assert entry["options"]["version"] == "2"
    assert ACCESSOR_RE.match(entry["accessor"])
    assert "sys/" in listing["data"]


def test_enable_backend_type_kv_v2_alias(client):
    path = new_mount(client, "kv-v2", options=None)
    entry = client.sys.list_mounted_secrets_engines()["data"][path + "/"]
    assert entry["type"] == "kv"
    assert entry["options"]["version"] == "2"
    assert ACCESSOR_RE.match(entry["accessor"])


def test_accessors_and_uuids_are_unique(client):
    a = new_mount(client)
    b = new_mount(client)
    data = client.sys.list_mounted_secrets_engines()["data"]
    assert data[a + "/"]["accessor"] != data[b + "/"]["accessor"]
    assert data[a + "/"]["uuid"] != data[b + "/"]["uuid"]
    accessors = [v["accessor"] for v in data.values()]
    assert len(accessors) == len(set(accessors)), accessors


def test_remount_same_path_starts_empty(client):
    path = new_mount(client)
    kv(client).create_or_update_secret("x", {"a": "1"}, mount_point=path)
    old_acc = client.sys.list_mounted_secrets_engines()["data"][path + "/"]["accessor"]
    client.sys.disable_secrets_engine(path)
    client.sys.enable_secrets_engine("kv", path=path, options={"version": "2"})
    new_acc = client.sys.list_mounted_secrets_engines()["data"][path + "/"]["accessor"]
    assert new_acc != old_acc
    with pytest.raises(hexc.InvalidPath):
        kv(client).read_secret_version("x", mount_point=path, raise_on_deleted_version=True)
    with pytest.raises(hexc.InvalidPath):
        kv(client).list_secrets("", mount_point=path)


def test_read_mount_configuration(client):
    path = new_mount(client)
    cfg = client.sys.read_mount_configuration(path)
    data = cfg["data"]
    assert isinstance(data["default_lease_ttl"], int)
    assert isinstance(data["max_lease_ttl"], int)
    assert data["force_no_cache"] is False
    assert data["options"]["version"] == "2"


# --------------------------------------------------------------------------------------------
# KV-v2 data
# --------------------------------------------------------------------------------------------


def test_create_and_read_versions(client):
    p = unique("app") + "/db"
    w1 = kv(client).create_or_update_secret(p, {"user": "app", "password": "s3cr3t"})
    meta1 = w1["data"]
    assert meta1["version"] == 1
    assert meta1["deletion_time"] == ""
    assert meta1["destroyed"] is False
    assert meta1["custom_metadata"] is None
    assert_recent_ts(meta1["created_time"])

    w2 = kv(client).create_or_update_secret(p, {"user": "app", "password": "rotated", "n": 2})
    assert w2["data"]["version"] == 2
    assert ts_ns(w2["data"]["created_time"]) >= ts_ns(meta1["created_time"])

    latest = kv(client).read_secret_version(p, raise_on_deleted_version=True)
    assert latest["data"]["data"] == {"user": "app", "password": "rotated", "n": 2}
    assert latest["data"]["metadata"]["version"] == 2
    assert latest["data"]["metadata"]["created_time"] == w2["data"]["created_time"]
    assert latest["data"]["metadata"]["deletion_time"] == ""
    assert latest["data"]["metadata"]["destroyed"] is False

    v1 = kv(client).read_secret_version(p, version=1, raise_on_deleted_version=True)
    assert v1["data"]["data"] == {"user": "app", "password": "s3cr3t"}
    assert v1["data"]["metadata"]["version"] == 1
    assert v1["data"]["metadata"]["created_time"] == meta1["created_time"]

    same = kv(client).read_secret(p, raise_on_deleted_version=True)
    assert same["data"]["data"] == latest["data"]["data"]

    with pytest.raises(hexc.InvalidPath):
        kv(client).read_secret_version(p, version=3, raise_on_deleted_version=True)
    with pytest.raises(hexc.InvalidPath):
        kv(client).read_secret_version(unique("missing"), raise_on_deleted_version=True)


def test_values_of_every_json_type_round_trip(client):
    p = unique("types")
    value = {
        "s": "text",
        "i": 42,
        "f": 1.5,
        "b": True,
        "n": None,
        "list": [1, "two", {"three": 3}],
        "nested": {"deep": {"deeper": "x"}},
        "unicode": "h\u00e9llo \u2603",
        "empty": "",
    }
    kv(client).create_or_update_secret(p, value)
    got = kv(client).read_secret_version(p, raise_on_deleted_version=True)
    assert got["data"]["data"] == value


def test_empty_data_map_is_a_valid_version(client):
    p = unique("empty")
    w = kv(client).create_or_update_secret(p, {})
    assert w["data"]["version"] == 1
    got = kv(client).read_secret_version(p, raise_on_deleted_version=True)
    assert got["data"]["data"] == {}


def test_paths_with_spaces_and_unicode(client):
    folder = unique("odd")
    name = "my secret \u00fc"
    kv(client).create_or_update_secret(f"{folder}/{name}", {"k": "v"})
    got = kv(client).read_secret_version(f"{folder}/{name}", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"k": "v"}
    keys = kv(client).list_secrets(folder)["data"]["keys"]
    assert keys == [name]


def test_cas(client):
    p = unique("cas")
    assert kv(client).create_or_update_secret(p, {"a": "1"}, cas=0)["data"]["version"] == 1
    with pytest.raises(hexc.InvalidRequest) as ei:
        kv(client).create_or_update_secret(p, {"a": "again"}, cas=0)
    assert "check-and-set" in str(ei.value)
    assert kv(client).create_or_update_secret(p, {"a": "2"}, cas=1)["data"]["version"] == 2
    with pytest.raises(hexc.InvalidRequest) as ei:
        kv(client).create_or_update_secret(p, {"a": "stale"}, cas=1)
    assert "did not match" in str(ei.value)
    with pytest.raises(hexc.InvalidRequest):
        kv(client).create_or_update_secret(p, {"a": "future"}, cas=5)
    got = kv(client).read_secret_version(p, raise_on_deleted_version=True)
    assert got["data"]["data"] == {"a": "2"}
    assert got["data"]["metadata"]["version"] == 2
    # cas on a secret that does not exist yet, other than 0
    with pytest.raises(hexc.InvalidRequest):
        kv(client).create_or_update_secret(unique("cas-missing"), {"a": "1"}, cas=1)


def test_cas_required_per_key(client):
    p = unique("casreq")
    kv(client).create_or_update_secret(p, {"a": "1"})
    r = kv(client).update_metadata(p, cas_required=True)
    assert r.status_code == 204
    with pytest.raises(hexc.InvalidRequest) as ei:
        kv(client).create_or_update_secret(p, {"a": "no-cas"})
    assert "check-and-set parameter required" in str(ei.value)
    assert kv(client).create_or_update_secret(p, {"a": "2"}, cas=1)["data"]["version"] == 2
    # real PATCH is subject to cas_required as well
    with pytest.raises(hexc.InvalidRequest):
        merge_patch(client, SECRET, p, {"data": {"b": "x"}})
    assert merge_patch(client, SECRET, p, {"data": {"b": "x"}, "options": {"cas": 2}})["data"]["version"] == 3


def test_hvac_patch_read_then_write(client):
    p = unique("hpatch")
    kv(client).create_or_update_secret(p, {"a": "1", "b": "2"})
    out = kv(client).patch(p, {"b": "changed", "c": "3"})
    assert out["data"]["version"] == 2
    got = kv(client).read_secret_version(p, raise_on_deleted_version=True)
    assert got["data"]["data"] == {"a": "1", "b": "changed", "c": "3"}
    with pytest.raises(hexc.InvalidPath):
        kv(client).patch(unique("hpatch-missing"), {"a": "1"})


def test_real_merge_patch(client):
    p = unique("mpatch")
    kv(client).create_or_update_secret(p, {"keep": "k", "drop": "d", "nested": {"a": 1, "b": 2}})
    out = merge_patch(client, SECRET, p, {"data": {"drop": None, "new": "n", "nested": {"a": None, "c": 3}}})
    assert isinstance(out, dict), out
    assert out["data"]["version"] == 2
    assert_recent_ts(out["data"]["created_time"])
    assert out["data"]["deletion_time"] == ""
    assert out["data"]["destroyed"] is False
    got = kv(client).read_secret_version(p, raise_on_deleted_version=True)
    assert got["data"]["data"] == {"keep": "k", "new": "n", "nested": {"b": 2, "c": 3}}

    # cas mismatch on PATCH
    with pytest.raises(hexc.InvalidRequest):
        merge_patch(client, SECRET, p, {"data": {"x": "y"}, "options": {"cas": 1}})
    assert merge_patch(client, SECRET, p, {"data": {"x": "y"}, "options": {"cas": 2}})["data"]["version"] == 3

    # PATCH of a secret that does not exist -> 404
    with pytest.raises(hexc.InvalidPath):
        merge_patch(client, SECRET, unique("mpatch-missing"), {"data": {"a": "b"}})

    # PATCH when the latest version is soft-deleted -> 404, nothing written
    kv(client).delete_latest_version_of_secret(p)
    with pytest.raises(hexc.InvalidPath):
        merge_patch(client, SECRET, p, {"data": {"a": "b"}})
    assert kv(client).read_secret_metadata(p)["data"]["current_version"] == 3


def test_delete_latest_and_undelete(client, http):
    p = unique("del")
    kv(client).create_or_update_secret(p, {"v": "1"})
    kv(client).create_or_update_secret(p, {"v": "2"})
    r = kv(client).delete_latest_version_of_secret(p)
    assert r.status_code == 204

    raw = http.get(f"secret/data/{p}")
    assert raw.status_code == 404
    body = raw.json()
    assert body["data"]["data"] is None
    assert body["data"]["metadata"]["version"] == 2
    assert body["data"]["metadata"]["deletion_time"] != ""
    assert_recent_ts(body["data"]["metadata"]["deletion_time"])
    assert body["data"]["metadata"]["destroyed"] is False
    assert "errors" not in body

    with pytest.raises(hexc.InvalidPath):
        kv(client).read_secret_version(p, raise_on_deleted_version=True)
    soft = kv(client).read_secret_version(p, raise_on_deleted_version=False)
    assert soft["data"]["data"] is None
    assert soft["data"]["metadata"]["deletion_time"] != ""

    # older version unaffected
    assert kv(client).read_secret_version(p, version=1, raise_on_deleted_version=True)["data"]["data"] == {"v": "1"}

    meta = kv(client).read_secret_metadata(p)["data"]
    assert meta["versions"]["2"]["deletion_time"] != ""
    assert meta["versions"]["1"]["deletion_time"] == ""
    assert meta["current_version"] == 2

    r = kv(client).undelete_secret_versions(p, [2])
    assert r.status_code == 204
    got = kv(client).read_secret_version(p, raise_on_deleted_version=True)
    assert got["data"]["data"] == {"v": "2"}
    assert got["data"]["metadata"]["deletion_time"] == ""


def test_delete_versions_destroy_and_undelete(client, http):
    p = unique("destroy")
    for i in range(1, 4):
        kv(client).create_or_update_secret(p, {"v": str(i)})

    r = kv(client).delete_secret_versions(p, [1, 2])
    assert r.status_code == 204
    meta = kv(client).read_secret_metadata(p)["data"]
    assert meta["versions"]["1"]["deletion_time"] != ""
    assert meta["versions"]["2"]["deletion_time"] != ""
    assert meta["versions"]["3"]["deletion_time"] == ""
    raw = http.get(f"secret/data/{p}?version=1")
    assert raw.status_code == 404
    assert raw.json()["data"]["data"] is None
    assert raw.json()["data"]["metadata"]["deletion_time"] != ""
    assert kv(client).read_secret_version(p, raise_on_deleted_version=True)["data"]["data"] == {"v": "3"}

    r = kv(client).destroy_secret_versions(p, [3])
    assert r.status_code == 204
    raw = http.get(f"secret/data/{p}")
    assert raw.status_code == 404
    body = raw.json()
    assert body["data"]["data"] is None
    assert body["data"]["metadata"]["destroyed"] is True
    assert body["data"]["metadata"]["version"] == 3
    # hvac (as against Vault) only returns the body for *deleted* versions; destroyed-only raises
    with pytest.raises(hexc.InvalidPath):
        kv(client).read_secret_version(p, raise_on_deleted_version=False)

    # undelete restores 1 but can not bring back destroyed 3
    kv(client).undelete_secret_versions(p, [1, 3])
    assert kv(client).read_secret_version(p, version=1, raise_on_deleted_version=True)["data"]["data"] == {"v": "1"}
    meta = kv(client).read_secret_metadata(p)["data"]
    assert meta["versions"]["3"]["destroyed"] is True
    assert meta["versions"]["1"]["deletion_time"] == ""
    assert meta["versions"]["2"]["deletion_time"] != ""
    with pytest.raises(hexc.InvalidPath):
        kv(client).read_secret_version(p, version=3, raise_on_deleted_version=True)


def test_versions_argument_validation_by_hvac_and_server(client, http):
    p = unique("vers")
    kv(client).create_or_update_secret(p, {"a": "1"})
    # hvac refuses an empty list client-side (as with Vault)
    with pytest.raises(hexc.ParamValidationError):
        kv(client).delete_secret_versions(p, [])
    # the server refuses a missing versions list
    r = http.post(f"secret/delete/{p}", json={})
    assert r.status_code == 400, r.text
    assert r.json()["errors"]
    r = http.post(f"secret/destroy/{p}", json={})
    assert r.status_code == 400, r.text


# --------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------


def test_list_secrets(dev_server, client):
    base = unique("list")
    for name in ("one", "two", "dir/three", "dir/sub/four", "both", "both/child"):
        kv(client).create_or_update_secret(f"{base}/{name}", {"n": name})

    keys = kv(client).list_secrets(base)["data"]["keys"]
    assert sorted(keys) == ["both", "both/", "dir/", "one", "two"]
    assert keys == sorted(keys)
    assert kv(client).list_secrets(f"{base}/dir")["data"]["keys"] == ["sub/", "three"]
    assert kv(client).list_secrets(f"{base}/dir/")["data"]["keys"] == ["sub/", "three"]

    root = kv(client).list_secrets("")["data"]["keys"]
    assert base + "/" in root

    with pytest.raises(hexc.InvalidPath):
        kv(client).list_secrets(unique("nothing-here"))

    # strict_http clients list with GET ?list=true
    strict = make_hvac_client(dev_server.addr, dev_server.token, strict_http=True)
    assert sorted(strict.secrets.kv.v2.list_secrets(base)["data"]["keys"]) == ["both", "both/", "dir/", "one", "two"]


def test_list_hides_fully_deleted_metadata(client):
    base = unique("listdel")
    kv(client).create_or_update_secret(f"{base}/keep", {"a": "1"})
    kv(client).create_or_update_secret(f"{base}/gone", {"a": "1"})
    kv(client).delete_metadata_and_all_versions(f"{base}/gone")
    assert kv(client).list_secrets(base)["data"]["keys"] == ["keep"]
    # soft delete keeps the key listed (Vault lists keys with metadata)
    kv(client).delete_latest_version_of_secret(f"{base}/keep")
    assert kv(client).list_secrets(base)["data"]["keys"] == ["keep"]


# --------------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------------


def test_read_secret_metadata(client):
    p = unique("meta")
    w1 = kv(client).create_or_update_secret(p, {"a": "1"})["data"]
    time.sleep(0.01)
    w2 = kv(client).create_or_update_secret(p, {"a": "2"})["data"]
    meta = kv(client).read_secret_metadata(p)["data"]

    for k in (
        "cas_required", "created_time", "current_version", "custom_metadata", "delete_version_after",
        "max_versions", "oldest_version", "updated_time", "versions",
    ):
        assert k in meta, f"metadata lacks {k!r}: {sorted(meta)}"
    assert meta["current_version"] == 2
    assert meta["oldest_version"] == 0  # Vault: 0 until versions are pruned
    assert meta["max_versions"] == 0
    assert meta["cas_required"] is False
    assert meta["delete_version_after"] == "0s"
    assert meta["custom_metadata"] is None
    assert set(meta["versions"]) == {"1", "2"}
    for v in meta["versions"].values():
        assert RFC3339_NANO_RE.match(v["created_time"])
        assert v["deletion_time"] == ""
        assert v["destroyed"] is False
    assert meta["versions"]["1"]["created_time"] == w1["created_time"]
    assert meta["versions"]["2"]["created_time"] == w2["created_time"]
    assert meta["created_time"] == w1["created_time"]
    assert meta["updated_time"] == w2["created_time"]
    assert ts_ns(meta["updated_time"]) > ts_ns(meta["created_time"])
    # timestamps carry sub-second precision (RFC 3339 with nanoseconds)
    stamps = [meta["created_time"], meta["updated_time"], w1["created_time"], w2["created_time"]]
    assert any("." in s for s in stamps), stamps

    with pytest.raises(hexc.InvalidPath):
        kv(client).read_secret_metadata(unique("meta-missing"))


def test_update_metadata(client):
    p = unique("umeta")
    kv(client).create_or_update_secret(p, {"a": "1"})
    r = kv(client).update_metadata(
        p, max_versions=5, cas_required=True, custom_metadata={"owner": "team-a", "env": "prod"},
        delete_version_after="1h",
    )
    assert r.status_code == 204
    meta = kv(client).read_secret_metadata(p)["data"]
    assert meta["max_versions"] == 5
    assert meta["cas_required"] is True
    assert meta["custom_metadata"] == {"owner": "team-a", "env": "prod"}
    assert meta["delete_version_after"] == "1h0m0s"  # Go duration formatting, as Vault returns it
    assert meta["current_version"] == 1

    w = kv(client).create_or_update_secret(p, {"a": "2"}, cas=1)["data"]
    assert w["custom_metadata"] == {"owner": "team-a", "env": "prod"}
    got = kv(client).read_secret_version(p, raise_on_deleted_version=True)
    assert got["data"]["metadata"]["custom_metadata"] == {"owner": "team-a", "env": "prod"}

    # metadata may be written before any version exists
    q = unique("umeta-first")
    assert kv(client).update_metadata(q, max_versions=3, custom_metadata={"k": "v"}).status_code == 204
    meta_q = kv(client).read_secret_metadata(q)["data"]
    assert meta_q["max_versions"] == 3
    assert meta_q["current_version"] == 0
    assert meta_q["versions"] == {}
    assert kv(client).create_or_update_secret(q, {"a": "1"})["data"]["custom_metadata"] == {"k": "v"}


def test_metadata_merge_patch(client):
    p = unique("pmeta")
    kv(client).create_or_update_secret(p, {"a": "1"})
    kv(client).update_metadata(p, max_versions=4, custom_metadata={"a": "1", "b": "2"})
    r = client.adapter.request(
        "PATCH",
        f"/v1/secret/metadata/{p}",
        json={"custom_metadata": {"a": None, "c": "3"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 204
    meta = kv(client).read_secret_metadata(p)["data"]
    assert meta["custom_metadata"] == {"b": "2", "c": "3"}
    assert meta["max_versions"] == 4  # untouched by the patch


def test_delete_version_after_sets_future_deletion_time(client):
    p = unique("dva")
    kv(client).update_metadata(p, delete_version_after="1h")
    w = kv(client).create_or_update_secret(p, {"a": "1"})["data"]
    assert w["deletion_time"] != ""
    delta = ts_ns(w["deletion_time"]) - ts_ns(w["created_time"])
    assert abs(delta - 3600 * 10**9) < 10**9, (w["created_time"], w["deletion_time"])
    # a deletion time in the future does not hide the version
    got = kv(client).read_secret_version(p, raise_on_deleted_version=True)
    assert got["data"]["data"] == {"a": "1"}


def test_delete_version_after_expires(client, http):
    p = unique("dva-exp")
    kv(client).update_metadata(p, delete_version_after="1s")
    kv(client).create_or_update_secret(p, {"a": "1"})
    deadline = time.monotonic() + 6
    status = None
    while time.monotonic() < deadline:
        r = http.get(f"secret/data/{p}")
        status = r.status_code
        if status == 404:
            break
        time.sleep(0.25)
    assert status == 404, "version did not become deleted after delete_version_after=1s"
    body = r.json()
    assert body["data"]["data"] is None
    assert body["data"]["metadata"]["deletion_time"] != ""


def test_max_versions_pruning(client, http):
    p = unique("maxv")
    kv(client).create_or_update_secret(p, {"v": "1"})
    kv(client).update_metadata(p, max_versions=2)
    for i in range(2, 5):
        kv(client).create_or_update_secret(p, {"v": str(i)})
    meta = kv(client).read_secret_metadata(p)["data"]
    assert meta["current_version"] == 4
    assert meta["oldest_version"] == 3
    assert set(meta["versions"]) == {"3", "4"}
    with pytest.raises(hexc.InvalidPath):
        kv(client).read_secret_version(p, version=1, raise_on_deleted_version=False)
    raw = http.get(f"secret/data/{p}?version=1")
    assert raw.status_code == 404
    assert raw.json() == {"errors": []}
    assert kv(client).read_secret_version(p, version=3, raise_on_deleted_version=True)["data"]["data"] == {"v": "3"}


def test_delete_metadata_and_all_versions(client):
    base = unique("delmeta")
    p = f"{base}/victim"
    kv(client).create_or_update_secret(p, {"a": "1"})
    kv(client).create_or_update_secret(p, {"a": "2"})
    kv(client).create_or_update_secret(f"{base}/other", {"a": "1"})
    r = kv(client).delete_metadata_and_all_versions(p)
    assert r.status_code == 204
    with pytest.raises(hexc.InvalidPath):
        kv(client).read_secret_version(p, raise_on_deleted_version=False)
    with pytest.raises(hexc.InvalidPath):
        kv(client).read_secret_version(p, version=1, raise_on_deleted_version=False)
    with pytest.raises(hexc.InvalidPath):
        kv(client).read_secret_metadata(p)
    assert kv(client).list_secrets(base)["data"]["keys"] == ["other"]
    # a new write starts over at version 1
    assert kv(client).create_or_update_secret(p, {"a": "new"})["data"]["version"] == 1


# --------------------------------------------------------------------------------------------
# mount config
# --------------------------------------------------------------------------------------------


def test_configure_and_read_configuration(client):
    m = new_mount(client)
    cfg = kv(client).read_configuration(mount_point=m)["data"]
    assert cfg["max_versions"] == 0
    assert cfg["cas_required"] is False
    assert cfg["delete_version_after"] == "0s"

    r = kv(client).configure(max_versions=2, cas_required=True, delete_version_after="2h", mount_point=m)
    assert r.status_code == 204
    cfg = kv(client).read_configuration(mount_point=m)["data"]
    assert cfg["max_versions"] == 2
    assert cfg["cas_required"] is True
    assert cfg["delete_version_after"] == "2h0m0s"

    # cas_required at the mount applies to every key
    with pytest.raises(hexc.InvalidRequest) as ei:
        kv(client).create_or_update_secret("k", {"v": "1"}, mount_point=m)
    assert "check-and-set parameter required" in str(ei.value)
    for i in range(3):
        kv(client).create_or_update_secret("k", {"v": str(i + 1)}, cas=i, mount_point=m)
    meta = kv(client).read_secret_metadata("k", mount_point=m)["data"]
    assert meta["current_version"] == 3
    assert set(meta["versions"]) == {"2", "3"}  # mount max_versions=2 prunes
    assert meta["oldest_version"] == 2
    assert meta["max_versions"] == 0  # key-level setting untouched

    # the config of another mount is independent
    other = kv(client).read_configuration(mount_point=SECRET)["data"]
    assert other["cas_required"] is False


# --------------------------------------------------------------------------------------------
# subkeys
# --------------------------------------------------------------------------------------------


def read_subkeys(client, path, mount=SECRET, **params):
    fn = getattr(kv(client), "read_secret_subkeys", None)
    if fn is not None:
        return fn(path, mount_point=mount, **params)
    return client.adapter.get(f"/v1/{mount}/subkeys/{path}", params=params)


def test_subkeys(client):
    p = unique("subk")
    kv(client).create_or_update_secret(p, {"foo": "abc", "bar": {"baz": "def", "q": {"r": 1}}, "n": 1})
    kv(client).create_or_update_secret(p, {"only": "v2"})

    full = read_subkeys(client, p)["data"]
    assert full["subkeys"] == {"only": None}
    assert full["metadata"]["version"] == 2

    v1 = read_subkeys(client, p, version=1)["data"]
    assert v1["subkeys"] == {"foo": None, "bar": {"baz": None, "q": {"r": None}}, "n": None}
    assert v1["metadata"]["version"] == 1

    d1 = read_subkeys(client, p, version=1, depth=1)["data"]
    assert d1["subkeys"] == {"foo": None, "bar": None, "n": None}
    d2 = read_subkeys(client, p, version=1, depth=2)["data"]
    assert d2["subkeys"] == {"foo": None, "bar": {"baz": None, "q": None}, "n": None}

    for v in d1["subkeys"].values():
        assert v is None  # values never leak through subkeys
    assert "abc" not in json.dumps(v1)

    with pytest.raises(hexc.InvalidPath):
        read_subkeys(client, unique("subk-missing"))
