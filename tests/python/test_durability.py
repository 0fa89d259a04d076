"""Config mode (redb storage, encryption at rest): init, restart, kill -9, keys, no plaintext on disk.

Every server runs in its own pytest tmp dir on 127.0.0.1:0 and is killed by the server_factory
finalizer whatever happens."""

from __future__ import annotations

import base64
import binascii
import os
import stat
import time
import uuid

import pytest

from kvsync_helpers import ACCESSOR_RE, files_containing, marker_variants, unique

KEY_PHRASES = ("key", "decrypt", "encrypt")


def new_key_b64() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def enable_kv(h, mount):
    r = h.post(f"sys/mounts/{mount}", json={"type": "kv-v2", "description": "durable"})
    assert r.status_code == 204, r.text
    # Real Vault upgrades a fresh KV-v2 mount asynchronously in non-dev mode (answers 400 for a
    # moment); wait for it (bounded) so the suite stays valid against Vault too.
    for _ in range(100):
        if h.get(f"{mount}/config").status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"mount {mount} never became usable")


def write(h, mount, path, data, **options):
    body = {"data": data}
    if options:
        body["options"] = options
    r = h.post(f"{mount}/data/{path}", json=body)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
    return r.json()["data"]


def ok(r, *statuses):
    statuses = statuses or (200, 204)
    assert r.status_code in statuses, f"{r.request.method} {r.url}: {r.status_code} {r.text[:300]}"
    return r


def snapshot(h, mount, paths, folders):
    """Everything a client can observe about the given secrets, timestamps included."""
    snap = {}
    m = ok(h.get(f"sys/mounts/{mount}"), 200).json()["data"]
    snap["mount"] = {k: m.get(k) for k in ("accessor", "uuid", "type", "options", "description")}
    snap["config"] = ok(h.get(f"{mount}/config"), 200).json()["data"]
    for p in paths:
        r = h.get(f"{mount}/metadata/{p}")
        snap[("meta", p)] = (r.status_code, r.json().get("data"))
        if r.status_code != 200:
            continue
        for v in sorted(r.json()["data"]["versions"], key=int):
            d = h.get(f"{mount}/data/{p}?version={v}")
            snap[("data", p, v)] = (d.status_code, d.json().get("data"))
    for f in folders:
        r = h.list(f"{mount}/metadata/{f}")
        snap[("list", f)] = (r.status_code, (r.json().get("data") or {}).get("keys"))
    return snap


# --------------------------------------------------------------------------------------------
# init
# --------------------------------------------------------------------------------------------


def test_init_prints_token_writes_key_0600_and_refuses_second_init(server_factory):
    cs = server_factory()
    token = cs.init()
    assert cs.key_file.is_file(), f"no key file at the default {cs.key_file}"
    assert mode_of(cs.key_file) == 0o600, oct(mode_of(cs.key_file))
    key_before = cs.key_file.read_bytes()

    again = cs.run_init()
    assert again.returncode != 0, f"second init succeeded:\n{again.stdout}\n{again.stderr}"
    assert "Initial Root Token" not in again.stdout
    assert cs.key_file.read_bytes() == key_before, "second init rewrote the key"

    cs.start()
    h = cs.http()
    r = ok(h.get("auth/token/lookup-self"), 200)
    assert r.json()["data"]["id"] == token
    assert "root" in r.json()["data"]["policies"]
    assert h.get("sys/health").json()["initialized"] is True
    assert h.get("auth/token/lookup-self", token="not-" + token).status_code == 403


def test_init_with_explicit_key_file_path(server_factory, tmp_path):
    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    key_file = key_dir / "encryption.key"
    cs = server_factory(key_file=key_file)
    cs.init()
    assert key_file.is_file()
    assert mode_of(key_file) == 0o600
    assert not (cs.storage / "encryption.key").exists(), "key written to the default place instead"
    cs.start()
    h = cs.http()
    enable_kv(h, "kv")
    write(h, "kv", "a", {"b": "c"})
    assert cs.stop() == 0
    cs.start()
    assert cs.http().get("kv/data/a").json()["data"]["data"] == {"b": "c"}


def test_server_refuses_uninitialized_storage(server_factory):
    cs = server_factory()
    rc, out = cs.start_expect_exit()
    assert rc is not None, "server kept running on uninitialized storage:\n" + out
    assert rc != 0
    assert "operator init" in out, out


@pytest.mark.parametrize(
    "bad_key",
    ["not base64 at all!!", base64.b64encode(os.urandom(16)).decode(), base64.b64encode(os.urandom(33)).decode()],
    ids=["not-base64", "16-bytes", "33-bytes"],
)
def test_init_rejects_malformed_env_key(server_factory, bad_key):
    cs = server_factory()
    res = cs.run_init(env_key=bad_key)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "Initial Root Token" not in res.stdout
    assert any(p in out.lower() for p in KEY_PHRASES), out
    # the failed init left the storage uninitialized: a proper init still works
    cs.init(env_key=new_key_b64())


# --------------------------------------------------------------------------------------------
# restart and crash
# --------------------------------------------------------------------------------------------


def test_graceful_restart_preserves_everything(server_factory):
    cs = server_factory()
    cs.init()
    cs.start()
    h = cs.http()
    m = unique("dur")
    enable_kv(h, m)
    ok(h.post(f"{m}/config", json={"max_versions": 7}))

    write(h, m, "app/db", {"user": "app", "password": "p1"})
    write(h, m, "app/db", {"user": "app", "password": "p2"})
    write(h, m, "app/db", {"user": "app", "password": "p3"})
    ok(h.post(f"{m}/delete/app/db", json={"versions": [1]}))
    ok(h.post(f"{m}/destroy/app/db", json={"versions": [2]}))
    ok(h.post(f"{m}/metadata/app/db", json={"max_versions": 5, "custom_metadata": {"owner": "team"}}))
    write(h, m, "app/api", {"token": "t\u00f6ken \u2603", "n": 3, "nested": {"x": [1, 2]}})
    write(h, m, "app/api", {"token": "second"})
    ok(h.delete(f"{m}/data/app/api"))  # soft-delete the latest (version 2)
    write(h, m, "gone", {"a": "1"})
    ok(h.delete(f"{m}/metadata/gone"))
    bulk = [f"bulk/s{i:02d}" for i in range(25)]
    for i, p in enumerate(bulk):
        write(h, m, p, {"i": i, "v": f"value-{i}"})

    paths = ["app/db", "app/api", "gone"] + bulk
    folders = ["", "app", "bulk"]
    before = snapshot(h, m, paths, folders)
    assert ACCESSOR_RE.match(before["mount"]["accessor"])

    rc = cs.stop()
    assert rc == 0, f"graceful stop (SIGTERM) exited with {rc}\n" + cs.server.describe()
    cs.start()
    h2 = cs.http()
    assert ok(h2.get("auth/token/lookup-self"), 200).json()["data"]["id"] == cs.token
    after = snapshot(h2, m, paths, folders)
    assert after == before

    # and the content is what was written (not merely equal before/after)
    assert h2.get(f"{m}/data/app/db").json()["data"]["data"] == {"user": "app", "password": "p3"}
    meta = h2.get(f"{m}/metadata/app/db").json()["data"]
    assert meta["custom_metadata"] == {"owner": "team"}
    assert meta["max_versions"] == 5
    assert meta["versions"]["1"]["deletion_time"] != ""
    assert meta["versions"]["2"]["destroyed"] is True
    assert h2.get(f"{m}/data/app/db?version=2").status_code == 404
    assert h2.get(f"{m}/data/app/api").status_code == 404
    assert h2.get(f"{m}/data/app/api?version=1").json()["data"]["data"]["nested"] == {"x": [1, 2]}
    assert h2.get(f"{m}/metadata/gone").status_code == 404
    assert h2.get(f"{m}/config").json()["data"]["max_versions"] == 7
    assert h2.list(f"{m}/metadata/bulk").json()["data"]["keys"] == [p.split("/")[1] for p in bulk]
    # writes continue where they left off
    assert write(h2, m, "app/db", {"user": "app", "password": "p4"})["version"] == 4


def test_kill_9_right_after_acknowledged_writes(server_factory):
    cs = server_factory()
    cs.init()
    cs.start()
    h = cs.http()
    m = unique("crash")
    enable_kv(h, m)
    expected = {}
    for i in range(40):
        p = f"k/s{i:02d}"
        v = {"value": uuid.uuid4().hex, "i": i}
        write(h, m, p, v)
        expected[p] = v
    # overwrite a few, soft-delete one, destroy one, metadata on one, and a brand-new mount last
    for i in range(5):
        p = f"k/s{i:02d}"
        expected[p] = {"value": uuid.uuid4().hex, "second": True}
        assert write(h, m, p, expected[p])["version"] == 2
    ok(h.delete(f"{m}/data/k/s10"))
    ok(h.post(f"{m}/destroy/k/s11", json={"versions": [1]}))
    ok(h.post(f"{m}/metadata/k/s12", json={"custom_metadata": {"late": "yes"}}))
    m2 = unique("late")
    enable_kv(h, m2)
    write(h, m2, "last", {"written": "just before the crash"})

    cs.kill9()  # no chance to flush anything that was not already committed
    assert cs.server.proc.returncode == -9

    cs.start()
    h2 = cs.http()
    assert ok(h2.get("auth/token/lookup-self"), 200).json()["data"]["id"] == cs.token
    for p, v in expected.items():
        r = h2.get(f"{m}/data/{p}")
        if p == "k/s10":
            assert r.status_code == 404 and r.json()["data"]["metadata"]["deletion_time"] != ""
            continue
        if p == "k/s11":
            assert r.status_code == 404 and r.json()["data"]["metadata"]["destroyed"] is True
            continue
        assert r.status_code == 200, f"{p} lost after kill -9: {r.status_code} {r.text}"
        assert r.json()["data"]["data"] == v
    assert h2.get(f"{m}/metadata/k/s12").json()["data"]["custom_metadata"] == {"late": "yes"}
    assert h2.get(f"{m}/metadata/k/s00").json()["data"]["current_version"] == 2
    assert len(h2.list(f"{m}/metadata/k").json()["data"]["keys"]) == 40
    assert h2.get(f"{m2}/data/last").json()["data"]["data"] == {"written": "just before the crash"}
    assert f"{m2}/" in h2.get("sys/mounts").json()["data"]


# --------------------------------------------------------------------------------------------
# encryption at rest
# --------------------------------------------------------------------------------------------


def test_no_plaintext_secret_on_disk(server_factory, tmp_path):
    cs = server_factory()
    cs.init()
    cs.start()
    h = cs.http()
    marker = "kvsync-plaintext-marker-" + uuid.uuid4().hex + uuid.uuid4().hex
    key_marker = "kvsync-datakey-marker-" + uuid.uuid4().hex
    m = unique("enc")
    enable_kv(h, m)
    write(h, m, "leak/check", {"password": marker, key_marker: "v"})
    write(h, m, "leak/check", {"password": marker + "-v2"})
    r = h.merge_patch(f"{m}/data/leak/check", {"data": {"patched": marker + "-patched"}})
    assert r.status_code == 200, r.text
    needles = marker_variants(marker.encode()) + marker_variants(key_marker.encode())

    def check(when):
        assert cs.db_file.is_file() and cs.db_file.stat().st_size > 0, f"{cs.db_file} missing ({when})"
        hits = files_containing(tmp_path, needles, exclude={cs.key_file})
        assert not hits, f"plaintext secret found on disk ({when}): {hits}"

    check("while running")
    cs.kill9()
    check("after kill -9")

    # prove the secret really is in those files: it comes back after a restart
    cs.start()
    h2 = cs.http()
    got = h2.get(f"{m}/data/leak/check").json()["data"]["data"]
    assert got == {"password": marker + "-v2", "patched": marker + "-patched"}
    v1 = h2.get(f"{m}/data/leak/check?version=1").json()["data"]["data"]
    assert v1 == {"password": marker, key_marker: "v"}
    assert cs.stop() == 0
    check("after graceful stop")


def test_env_key_no_key_file_and_wrong_key_refused(server_factory):
    cs = server_factory()
    key = new_key_b64()
    cs.init(env_key=key)
    assert not cs.key_file.exists(), "a key file was written although the key came from the env"
    assert not list(cs.dir.rglob("*.key")), list(cs.dir.rglob("*.key"))

    cs.start(env_key=key)
    h = cs.http()
    enable_kv(h, "kv")
    write(h, "kv", "s", {"a": "env-key"})
    assert cs.stop() == 0

    rc, out = cs.start_expect_exit(env_key=new_key_b64())
    assert rc is not None, "server kept running with the wrong KVSYNC_ENCRYPTION_KEY:\n" + out
    assert rc != 0
    assert any(p in out.lower() for p in KEY_PHRASES), out

    rc, out = cs.start_expect_exit(env_key=None)
    assert rc is not None, "server kept running without any encryption key:\n" + out
    assert rc != 0
    assert any(p in out.lower() for p in KEY_PHRASES), out

    cs.start(env_key=key)
    assert cs.http().get("kv/data/s").json()["data"]["data"] == {"a": "env-key"}


def altered_key_bytes(raw: bytes) -> bytes:
    """A different key in the same file format as `raw` (base64 text, hex text or 32 raw bytes)."""
    text = raw.strip()
    trailer = raw[len(raw.rstrip()):]
    try:
        if len(base64.b64decode(text, validate=True)) == 32:
            return base64.b64encode(os.urandom(32)) + trailer
    except (binascii.Error, ValueError):
        pass
    try:
        if len(bytes.fromhex(text.decode())) == 32:
            return os.urandom(32).hex().encode() + trailer
    except (ValueError, UnicodeDecodeError):
        pass
    return bytes([raw[0] ^ 0xFF]) + raw[1:]


def test_wrong_key_file_refused(server_factory):
    cs = server_factory()
    cs.init()
    cs.start()
    h = cs.http()
    enable_kv(h, "kv")
    write(h, "kv", "s", {"a": "file-key"})
    assert cs.stop() == 0

    original = cs.key_file.read_bytes()
    altered = altered_key_bytes(original)
    assert altered != original
    cs.key_file.write_bytes(altered)
    rc, out = cs.start_expect_exit()
    assert rc is not None, "server kept running with a wrong key file:\n" + out
    assert rc != 0
    assert any(p in out.lower() for p in KEY_PHRASES), out

    cs.key_file.write_bytes(original)
    cs.start()
    assert cs.http().get("kv/data/s").json()["data"]["data"] == {"a": "file-key"}


# --------------------------------------------------------------------------------------------
# barrier key rotation (sys/rotate, sys/key-status)
# --------------------------------------------------------------------------------------------


def test_key_rotation_keeps_every_secret_readable_across_restarts(server_factory):
    cs = server_factory()
    cs.init()
    cs.start()
    h = cs.http()
    enable_kv(h, "kv")
    write(h, "kv", "before", {"v": "under term 1"})

    client = cs.client()
    status = client.sys.get_encryption_key_status()
    assert status["data"]["term"] == 1, status
    assert status["term"] == 1  # also at the top level, as Vault answers
    assert status["data"]["encryptions"] >= 1
    assert status["data"]["install_time"].endswith("Z")

    r = ok(h.post("sys/rotate"), 204)
    assert r.text == ""
    assert client.sys.get_encryption_key_status()["data"]["term"] == 2
    write(h, "kv", "after", {"v": "under term 2"})

    # A token without sudo on sys/rotate is refused; with it, allowed.
    def token_for(rules: str) -> str:
        name = f"p{uuid.uuid4().hex[:8]}"
        ok(h.put(f"sys/policies/acl/{name}", json={"policy": rules}), 204)
        created = ok(h.post("auth/token/create", json={"policies": [name]}), 200)
        return created.json()["auth"]["client_token"]

    no_sudo = token_for('path "sys/rotate" { capabilities = ["update"] }')
    assert h.post("sys/rotate", token=no_sudo).status_code == 403
    assert h.get("sys/key-status", token=no_sudo).status_code == 403
    with_sudo = token_for('path "sys/rotate" { capabilities = ["update", "sudo"] }')
    ok(h.post("sys/rotate", token=with_sudo), 204)
    assert client.sys.get_encryption_key_status()["data"]["term"] == 3

    assert cs.stop() == 0
    cs.start()
    h = cs.http()
    assert h.get("kv/data/before").json()["data"]["data"] == {"v": "under term 1"}
    assert h.get("kv/data/after").json()["data"]["data"] == {"v": "under term 2"}
    assert h.get("sys/key-status").json()["data"]["term"] == 3
