"""Durable sync end to end: triggers, the outbox, retries, reconciliation, crash safety, the CLIs.

The rules under test: every KV change (write, patch, delete, destroy, undelete, metadata delete) and
every mount disable queues sync work that the worker pushes without any further call; a deleted,
destroyed or soft-deleted latest version unsyncs and keeps its association UNSYNCED, a disabled mount
drops its associations; `sys/sync/config` `disabled` holds work back as PENDING; entries in an error
status carry an `error` field that never holds a secret value; one provider write per changed secret
(P6 in BENCHMARKS.md) and about one per coalescing window for rapid writes (P7).

Every test starts its own servers (a kvsync with short sync timing knobs: backoff base 200 ms, cap
2 s, reconciliation every 2 s, 2 workers) and its own Vercel fake (`kvsync-fake vercel`, whose state
counts provider writes and whose call log stamps each request with `at_ms`). Nothing here ever calls
`associations/set` to make a change propagate: after the initial `set`, a KV call alone must do it.
The assertions are about convergence and counts; the only timing assertion is a lower bound (a
retry-after is honoured), which a slow machine cannot break.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import threading
import time
from typing import Callable

import pytest
import requests

from durable_helpers import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    CONVERGE_S,
    DELETE_ROUTE,
    ENV_ROUTE,
    RECONCILE_S,
    SYNC_HCL,
    SyncConfigServer,
    VercelFake,
    accessor,
    as_json,
    body,
    create_dest,
    dest,
    expect,
    in_mem_name,
    in_mem_objects,
    kv_current,
    kv_write,
    new_kv2_mount,
    remove_assoc,
    rows,
    set_assoc,
    start_sync_dev_server,
    statuses,
    vercel_destination,
    vercel_name,
    wait_for,
)
from kvsync_helpers import Http, assert_alive, child_env, unique

SECRET = "secret"  # dev mode's KV-v2 mount
ERROR_STATUSES = {"INTERNAL_VAULT_ERROR", "CLIENT_SIDE_ERROR", "EXTERNAL_SERVICE_ERROR"}
#: The last line of `kvsync sync run --once`.
DONE_RE = re.compile(r"Done: (?P<processed>\d+) processed, (?P<failed>\d+) failed, (?P<waiting>\d+) waiting")


def val(prefix: str = "v") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


# --------------------------------------------------------------------------------------------
# fixtures: one Vercel fake and one dev-mode kvsync per test
# --------------------------------------------------------------------------------------------


class World:
    def __init__(self, fake: VercelFake, srv, h: Http):
        self.fake = fake
        self.srv = srv
        self.h = h
        self.acc = accessor(h, SECRET)

    def vercel(self, name: str = None, **overrides) -> str:
        name = name or unique("ve")
        create_dest(self.h, "vercel-project", name, vercel_destination(**overrides))
        return name

    def in_mem(self, name: str = None) -> str:
        name = name or unique("im")
        create_dest(self.h, "in-mem", name, {})
        return name


@pytest.fixture
def world(kvsync_bin, tmp_path):
    fake = VercelFake(tmp_path / "fake")
    try:
        srv = start_sync_dev_server(kvsync_bin, tmp_path / "kvsync", env_extra=fake.env())
        h = Http(srv.addr, srv.token)
        try:
            yield World(fake, srv, h)
            assert_alive(srv.server, srv.token)
        finally:
            h.close()
            srv.server.stop()
    finally:
        fake.stop()


@pytest.fixture
def cfg_world(kvsync_bin, tmp_path):
    """A Vercel fake and a (not yet initialised) config-mode kvsync reaching it."""
    fake = VercelFake(tmp_path / "fake")
    cs = SyncConfigServer(kvsync_bin, tmp_path / "cfg", env_extra=fake.env())
    try:
        yield fake, cs
    finally:
        cs.cleanup()
        fake.stop()


def assoc_key(acc: str, path: str) -> str:
    return f"{acc}/{path}"


def wait_rows(h: Http, kind: str, name: str, want: dict, timeout: float = CONVERGE_S) -> dict:
    """Until the destination's rows have (at least) the statuses of `want` ({key: status}, where a
    status may be a set of acceptable statuses)."""

    def probe():
        got = rows(h, kind, name)
        ok = all(
            k in got and (got[k]["sync_status"] in s if isinstance(s, set) else got[k]["sync_status"] == s)
            for k, s in want.items()
        )
        return ok, got

    return wait_for(f"rows of {kind}/{name} reach {want}", probe, timeout)


# --------------------------------------------------------------------------------------------
# 8.1: every trigger, end to end, at in-mem and at the Vercel fake
# --------------------------------------------------------------------------------------------


class Pair:
    """One KV secret associated with an in-mem and a vercel-project destination."""

    def __init__(self, w: World, mount: str = SECRET):
        self.w, self.h, self.mount = w, w.h, mount
        self.acc = accessor(w.h, mount)
        self.path = unique("trig")
        self.im = w.in_mem()
        self.ve = w.vercel()
        self.key = assoc_key(self.acc, self.path)
        self.payload = {"user": "app", "password": val("p1")}
        kv_write(self.h, mount, self.path, self.payload)
        for kind, name in (("in-mem", self.im), ("vercel-project", self.ve)):
            got = set_assoc(self.h, kind, name, mount, self.path)
            assert got[self.key]["sync_status"] == "SYNCED", (kind, got)
        self.expect(self.payload, "SYNCED")

    def observe(self) -> dict:
        im_rows = rows(self.h, "in-mem", self.im)
        ve_rows = rows(self.h, "vercel-project", self.ve)
        return {
            "in-mem": as_json(in_mem_objects(self.h, self.im).get(in_mem_name(self.acc, self.path))),
            "vercel": as_json(self.w.fake.objects().get(vercel_name(self.acc, self.path))),
            "in-mem row": (im_rows.get(self.key) or {}).get("sync_status"),
            "vercel row": (ve_rows.get(self.key) or {}).get("sync_status"),
        }

    def expect(self, value, status, what: str = "") -> dict:
        """Poll until both destinations hold `value` (None: no object) and both rows show `status`
        (None: no row)."""
        want = {"in-mem": value, "vercel": value, "in-mem row": status, "vercel row": status}

        def probe():
            seen = self.observe()
            return seen == want, seen

        return wait_for(f"{what or 'sync'}: expected {want}", probe)


def test_trigger_kv_write_and_patch(world):
    p = Pair(world)
    v2 = {"user": "app", "password": val("p2")}
    kv_write(p.h, SECRET, p.path, v2)
    p.expect(v2, "SYNCED", "write of version 2")

    # Neither a metadata write (custom_metadata is not synced) nor a write to an unassociated
    # secret costs a provider write (a bounded look: 0.5 s); the PATCH that follows costs one (P6).
    before = p.w.fake.writes()
    expect(p.h.post(f"{SECRET}/metadata/{p.path}", json={"custom_metadata": {"owner": "ops"}}), 200, 204)
    kv_write(p.h, SECRET, unique("unrelated"), {"v": val()})
    time.sleep(0.5)
    assert p.w.fake.writes() == before, "a metadata write or an unrelated KV write caused a provider write"
    r = p.h.request("PATCH", f"{SECRET}/data/{p.path}", json={"data": {"extra": "x1"}},
                    headers={"Content-Type": "application/merge-patch+json"})
    expect(r, 200)
    p.expect({**v2, "extra": "x1"}, "SYNCED", "PATCH of the data")
    assert p.w.fake.writes() - before == 1, (
        f"{p.w.fake.writes() - before} provider writes for a metadata write, an unrelated write and one PATCH"
    )


def test_trigger_soft_delete_latest_then_undelete(world):
    p = Pair(world)
    v2 = {"user": "app", "password": val("p2")}
    kv_write(p.h, SECRET, p.path, v2)
    p.expect(v2, "SYNCED", "write of version 2")

    expect(p.h.delete(f"{SECRET}/data/{p.path}"), 204)
    p.expect(None, "UNSYNCED", "DELETE data/ (soft-delete of the latest version)")

    expect(p.h.post(f"{SECRET}/undelete/{p.path}", json={"versions": [2]}), 204)
    p.expect(v2, "SYNCED", "undelete of the latest version")


def test_trigger_delete_versions_undelete_destroy(world):
    p = Pair(world)
    v2 = {"user": "app", "password": val("p2")}
    kv_write(p.h, SECRET, p.path, v2)
    p.expect(v2, "SYNCED", "write of version 2")

    expect(p.h.post(f"{SECRET}/delete/{p.path}", json={"versions": [2]}), 204)
    p.expect(None, "UNSYNCED", "POST delete/ of the latest version")

    expect(p.h.post(f"{SECRET}/undelete/{p.path}", json={"versions": [2]}), 204)
    p.expect(v2, "SYNCED", "POST undelete/ of the latest version")

    expect(p.h.put(f"{SECRET}/destroy/{p.path}", json={"versions": [2]}), 204)
    p.expect(None, "UNSYNCED", "PUT destroy/ of the latest version")

    v3 = {"user": "app", "password": val("p3")}
    kv_write(p.h, SECRET, p.path, v3)
    p.expect(v3, "SYNCED", "a write after destroy")


def test_trigger_metadata_delete_keeps_the_association_unsynced(world):
    p = Pair(world)
    expect(p.h.delete(f"{SECRET}/metadata/{p.path}"), 204)
    p.expect(None, "UNSYNCED", "DELETE metadata/ unsyncs and keeps the association, UNSYNCED")

    v = {"user": "again", "password": val("p")}
    kv_write(p.h, SECRET, p.path, v)
    p.expect(v, "SYNCED", "a write after the metadata delete")


def test_trigger_mount_disable_unsyncs_and_drops_associations(world):
    h = world.h
    mount = unique("kvgone")
    new_kv2_mount(h, mount)
    gone = Pair(world, mount)
    keep = Pair(world)  # another mount: untouched
    expect(h.delete(f"sys/mounts/{mount}"), 204)
    gone.expect(None, None, f"disabling mount {mount} (objects deleted, associations dropped)")
    keep.expect(keep.payload, "SYNCED", "an association of another mount")
    r = h.list("sys/sync/associations")
    if r.status_code != 404:
        keys = body(r)["data"]["keys"]
        assert not any(k.startswith(f"{mount}/") for k in keys), keys


def test_trigger_secret_key_granularity_follows_the_keys(world):
    """8.1: with `secret-key` granularity every write converges the set of per-key objects: a key
    that disappears from the data loses its object (and its row), a new key gets one."""
    h, fake = world.h, world.fake
    name = world.vercel(granularity="secret-key")
    path = unique("keys")
    ext = {k: vercel_name(world.acc, path, k) for k in ("alpha", "beta", "gamma")}
    row = {k: f"{world.acc}/{path}/{k}" for k in ext}
    kv_write(h, SECRET, path, {"alpha": "a1", "beta": "b1"})
    got = set_assoc(h, "vercel-project", name, SECRET, path)
    assert {got[row[k]]["sync_status"] for k in ("alpha", "beta")} == {"SYNCED"}, got

    def state():
        objs, st = fake.objects(), statuses(h, "vercel-project", name)
        return ({k: objs.get(e) for k, e in ext.items()}, {k: st.get(r) for k, r in row.items()})

    def until(objs, sts, what):
        def probe():
            seen = state()
            return seen == (objs, sts), seen

        wait_for(what, probe)

    kv_write(h, SECRET, path, {"alpha": "a2"})
    until({"alpha": "a2", "beta": None, "gamma": None}, {"alpha": "SYNCED", "beta": None, "gamma": None},
          "a write that drops key beta")
    r = h.request("PATCH", f"{SECRET}/data/{path}", json={"data": {"gamma": "g1"}},
                  headers={"Content-Type": "application/merge-patch+json"})
    expect(r, 200)
    until({"alpha": "a2", "beta": None, "gamma": "g1"}, {"alpha": "SYNCED", "beta": None, "gamma": "SYNCED"},
          "a PATCH that adds key gamma")


# --------------------------------------------------------------------------------------------
# P7: coalescing
# --------------------------------------------------------------------------------------------


def test_coalescing_100_rapid_writes(world):
    h, fake = world.h, world.fake
    name = world.vercel()
    path = unique("hot")
    key, ext = assoc_key(world.acc, path), vercel_name(world.acc, path)
    kv_write(h, SECRET, path, {"n": "0"})
    assert set_assoc(h, "vercel-project", name, SECRET, path)[key]["sync_status"] == "SYNCED"
    before = fake.writes()

    last = None
    started = time.monotonic()
    for i in range(1, 101):
        last = {"n": str(i), "v": val()}
        kv_write(h, SECRET, path, last)
    burst = time.monotonic() - started

    def probe():
        st = statuses(h, "vercel-project", name).get(key)
        value = as_json(fake.objects().get(ext))
        return (st == "SYNCED" and value == last), (st, value)

    wait_for("the last of 100 rapid writes reaches the Vercel fake", probe)
    # A push already under way when the value converged still counts: give it a moment.
    time.sleep(0.3)
    pushes = fake.writes() - before
    assert 1 <= pushes <= 5, (
        f"100 rapid KV writes to one secret (in {burst:.2f}s) cost {pushes} provider writes at the fake "
        f"(P7: <= 5, i.e. a ratio <= 0.05)"
    )


# --------------------------------------------------------------------------------------------
# retries: outage with backoff, then recovery without user action; throttling with retry-after
# --------------------------------------------------------------------------------------------


def posts(calls: list) -> list:
    return [c for c in calls if c["method"] == "POST" and c["path"] == ENV_ROUTE]


def test_outage_backoff_then_recovery_on_the_same_port(world):
    h, fake = world.h, world.fake
    name = world.vercel()
    paths = [unique("out") for _ in range(3)]
    keys = [assoc_key(world.acc, p) for p in paths]
    for p in paths:
        kv_write(h, SECRET, p, {"v": val("v1")})
        assert set_assoc(h, "vercel-project", name, SECRET, p)[assoc_key(world.acc, p)]["sync_status"] == "SYNCED"

    # 1. the provider answers 503 to everything
    fake.outage(503)
    sent = []
    for p in paths:
        sent.append(val("v2"))
        kv_write(h, SECRET, p, {"v": sent[-1]})
    got = wait_rows(h, "vercel-project", name, {k: "EXTERNAL_SERVICE_ERROR" for k in keys})
    for k in keys:
        err = got[k].get("error") or ""
        assert err, f"an EXTERNAL_SERVICE_ERROR row carries its error: {got[k]}"
        assert not [v for v in sent if v in err], f"a secret value in an error: {err}"

    # Retries are spaced by the backoff: count push attempts over a window once the backoff has
    # grown (base 200 ms, cap 2 s). A tight loop would make hundreds; one attempt per association
    # every 400 ms on average is already generous. At least one retry per association (cap 2 s).
    time.sleep(1.0)
    fake.clear_calls()
    window = 4.0
    time.sleep(window)
    attempts = len(posts(fake.calls()))
    bound = int(len(keys) * window / (2 * BACKOFF_BASE_S))
    assert len(keys) <= attempts <= bound, (
        f"{attempts} push attempts in {window}s for {len(keys)} failing associations "
        f"(expected between {len(keys)} and {bound}: retried, with backoff)"
    )

    # 2. the provider is gone altogether (connection refused), and the secrets change again
    fake.stop()
    latest = {}
    for p in paths:
        latest[p] = {"v": val("v3")}
        kv_write(h, SECRET, p, latest[p])
    wait_rows(h, "vercel-project", name, {k: "EXTERNAL_SERVICE_ERROR" for k in keys})

    # 3. it comes back on the same port, empty and healthy: everything converges, no user action
    fake.start()
    fake.clear_faults()

    def probe():
        st = statuses(h, "vercel-project", name)
        objs = fake.objects()
        seen = {p: (st.get(assoc_key(world.acc, p)), as_json(objs.get(vercel_name(world.acc, p)))) for p in paths}
        return all(seen[p] == ("SYNCED", latest[p]) for p in paths), seen

    wait_for("every association converges after the provider comes back", probe)
    time.sleep(0.3)
    assert fake.writes() == len(paths), (
        f"the restarted fake received {fake.writes()} writes for {len(paths)} changed secrets (P6: one each)"
    )


def test_unsyncs_during_an_outage_finish_when_the_provider_returns(world):
    """A `remove` and a mount disable whose deletes fail are jobs that must finish: the objects go
    and the associations are dropped once the provider answers again, with no user action."""
    h, fake = world.h, world.fake
    name = world.vercel()
    mount = unique("kvout")
    new_kv2_mount(h, mount)
    macc = accessor(h, mount)
    removed, dropped, kept = unique("rm"), "app", unique("keep")
    kv_write(h, SECRET, removed, {"v": val()})
    kv_write(h, mount, dropped, {"v": val()})
    kv_write(h, SECRET, kept, {"v": val()})
    for m, p in ((SECRET, removed), (mount, dropped), (SECRET, kept)):
        set_assoc(h, "vercel-project", name, m, p)
    k_rm, k_drop, k_keep = assoc_key(world.acc, removed), assoc_key(macc, dropped), assoc_key(world.acc, kept)
    e_rm, e_drop, e_keep = vercel_name(world.acc, removed), vercel_name(macc, dropped), vercel_name(world.acc, kept)
    assert statuses(h, "vercel-project", name) == {k_rm: "SYNCED", k_drop: "SYNCED", k_keep: "SYNCED"}

    fake.outage(503)
    kv_write(h, SECRET, removed, {"v": val("changed")})  # a failing push, then the removal
    got = remove_assoc(h, "vercel-project", name, SECRET, removed)
    assert k_rm in got and got[k_rm]["sync_status"] in ERROR_STATUSES | {"PENDING", "UNSYNCING"}, (
        f"a remove whose delete failed must keep the association in an error / pending state: {got.get(k_rm)}"
    )
    expect(h.delete(f"sys/mounts/{mount}"), 204)
    time.sleep(0.5)
    objs = fake.objects()
    assert e_rm in objs and e_drop in objs, f"the provider is down, yet objects went: {sorted(objs)}"

    fake.clear_faults()

    def probe():
        st, objs = statuses(h, "vercel-project", name), fake.objects()
        seen = (st, sorted(k for k in (e_rm, e_drop, e_keep) if k in objs))
        return seen == ({k_keep: "SYNCED"}, [e_keep]), seen

    wait_for("the failed unsyncs finish once the provider is back", probe)
    time.sleep(0.3)
    assert e_rm not in fake.objects(), "a stale push brought the removed association's object back"


@pytest.mark.parametrize("retry_after_s", [2, 3], ids=["retry-after-2s", "retry-after-3s-over-the-cap"])
def test_throttling_honours_retry_after(world, retry_after_s):
    h, fake = world.h, world.fake
    name = world.vercel()
    path = unique("thr")
    key, ext = assoc_key(world.acc, path), vercel_name(world.acc, path)
    kv_write(h, SECRET, path, {"v": val("v1")})
    assert set_assoc(h, "vercel-project", name, SECRET, path)[key]["sync_status"] == "SYNCED"

    # 3 s is longer than the backoff cap (2 s): a retry-after clamped to the cap shows too.
    reset = int(time.time()) + retry_after_s
    fake.fault(
        method="POST", path_prefix=ENV_ROUTE, status=429, times=1,
        headers=[["retry-after", str(retry_after_s)], ["x-ratelimit-remaining", "0"],
                 ["x-ratelimit-reset", str(reset)]],
        body={"error": {"code": "rate_limited",
                        "message": f"Rate limit exceeded. Try again in {retry_after_s} seconds."}},
    )
    fake.clear_calls()
    v2 = {"v": val("v2")}
    kv_write(h, SECRET, path, v2)

    seen_rows = []

    def probe():
        row = rows(h, "vercel-project", name).get(key) or {}
        seen_rows.append((row.get("sync_status"), row.get("error")))
        value = as_json(fake.objects().get(ext))
        return (row.get("sync_status") == "SYNCED" and value == v2), (row, value)

    wait_for("the throttled push lands after the retry-after", probe)
    attempts = posts(fake.calls())
    assert len(attempts) >= 2, f"expected the throttled attempt and a retry, the fake saw {attempts}"
    t0, t1 = attempts[0]["at_ms"], attempts[1]["at_ms"]
    assert t1 - t0 >= retry_after_s * 1000 - 5, (
        f"retried {t1 - t0} ms after a 429 with `retry-after: {retry_after_s}` "
        f"(must wait >= {retry_after_s * 1000} ms); calls {attempts}"
    )
    throttled = [s for s in seen_rows if s[0] == "EXTERNAL_SERVICE_ERROR"]
    assert throttled, f"while throttled the row never showed EXTERNAL_SERVICE_ERROR: {sorted(set(seen_rows), key=str)}"
    assert any(e and f"retry after {retry_after_s}s" in e for _, e in throttled), throttled[:3]


# --------------------------------------------------------------------------------------------
# crash safety: kill -9 with writes and syncs in flight, restart on the same storage
# --------------------------------------------------------------------------------------------


def test_kill9_with_syncs_in_flight_then_restart(cfg_world):
    fake, cs = cfg_world
    cs.init()
    cs.start()
    h = cs.http()
    mount = "kv"
    new_kv2_mount(h, mount)
    # keep every version: the check below reads each acknowledged one back (default: the last 10)
    expect(h.post(f"{mount}/config", json={"max_versions": 1000}), 200, 204)
    acc = accessor(h, mount)
    name = "crash"
    create_dest(h, "vercel-project", name, vercel_destination())
    live = [f"app{i}" for i in range(4)]
    gone = ["old0", "old1"]
    for p in live + gone:
        kv_write(h, mount, p, {"v": val("v1")})
        assert set_assoc(h, "vercel-project", name, mount, p)[assoc_key(acc, p)]["sync_status"] == "SYNCED"
    for p in gone:
        assert vercel_name(acc, p) in fake.objects()
    # a second destination, purged while the server dies: the purge resumes after the restart
    purged = "purged"
    create_dest(h, "vercel-project", purged, vercel_destination(
        secret_name_template="PURGED_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}"))
    purged_ext = []
    for p in live[:2]:
        assert set_assoc(h, "vercel-project", purged, mount, p)[assoc_key(acc, p)]["sync_status"] == "SYNCED"
        purged_ext.append(f"PURGED_{acc.upper()}_{p.upper()}")
    assert all(e in fake.objects() for e in purged_ext), sorted(fake.objects())
    writes_before = fake.writes()

    # Unsyncs (GET to find the ids, then DELETE) fail until the restart, so the removals and the
    # purge are pending in the outbox when the server dies; pushes take 400 ms, so some are in
    # flight then.
    fake.fault(method="GET", path_prefix="/v", status=503, times=1_000_000)
    fake.slow(400)
    acked: dict = {p: [] for p in live}  # path -> [(version, payload)] acknowledged with 200
    attempted = [0]
    stop = threading.Event()

    def writer():
        w = Http(cs.addr, cs.token)
        try:
            i = 0
            while not stop.is_set() and i < 400:
                p = live[i % len(live)]
                payload = {"v": val(f"w{i}")}
                attempted[0] += 1
                try:
                    r = w.post(f"{mount}/data/{p}", json={"data": payload}, timeout=5)
                except requests.RequestException:
                    return  # the server is gone
                if r.status_code == 200:
                    acked[p].append((r.json()["data"]["version"], payload))
                i += 1
                time.sleep(0.01)
        finally:
            w.close()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        for p in gone:
            got = remove_assoc(h, "vercel-project", name, mount, p)
            assert got.get(assoc_key(acc, p), {}).get("sync_status") in ERROR_STATUSES, (
                f"a removal whose delete failed keeps an error row: {got.get(assoc_key(acc, p))}"
            )
        r = h.delete(dest("vercel-project", purged), params={"purge": "true"})
        assert r.status_code == 204, f"purge: {r.status_code} {r.text[:300]}"
        time.sleep(1.0)
        cs.kill9()
    finally:
        stop.set()
        t.join(15)
    assert not t.is_alive(), "the writer thread did not stop"
    h.close()
    assert sum(len(v) for v in acked.values()) >= 4, f"too few writes were acknowledged before the kill: {acked}"
    time.sleep(1.0)  # provider calls the dead server had in flight complete at the fake (400 ms)
    fake.clear_faults()
    writes_at_restart = fake.writes()

    cs.start()
    h = cs.http()
    try:
        # every acknowledged write survived
        for p, items in acked.items():
            for version, payload in items:
                d = body(h.get(f"{mount}/data/{p}", params={"version": version}))["data"]
                assert d["data"] == payload, f"{p} v{version} after kill -9: {d}"
        latest = {p: kv_current(h, mount, p) for p in live}

        def probe():
            st = statuses(h, "vercel-project", name)
            objs = fake.objects()
            seen = {p: (st.get(assoc_key(acc, p)), as_json(objs.get(vercel_name(acc, p)))) for p in live}
            left = {p: (st.get(assoc_key(acc, p)), vercel_name(acc, p) in objs) for p in gone}
            purge = (h.get(dest("vercel-project", purged)).status_code, [e for e in purged_ext if e in objs])
            ok = (all(seen[p] == ("SYNCED", latest[p]) for p in live)
                  and all(v == (None, False) for v in left.values())
                  and purge == (404, []))
            return ok, {"live": seen, "removed": left, "purged destination (status, objects left)": purge}

        wait_for("after kill -9 and restart, the destination converges to the latest values", probe, 25)

        total = fake.writes() - writes_before
        bound = attempted[0] + len(live)
        assert total <= bound, (
            f"{total} provider writes for {attempted[0]} KV writes to {len(live)} secrets "
            f"(at most one per change plus one re-push per secret after the crash: {bound})"
        )
        after = fake.writes() - writes_at_restart
        assert after <= len(live), (
            f"after the restart the provider received {after} writes for {len(live)} secrets to converge "
            f"(at most one each)"
        )
        # P6: once converged, reconciliation rewrites nothing.
        settled = fake.writes()
        time.sleep(RECONCILE_S + 0.5)
        assert fake.writes() == settled, (
            f"{fake.writes() - settled} provider writes during a reconciliation with nothing to change"
        )
    finally:
        h.close()


def test_kill9_right_after_an_inline_provider_call_the_worker_finishes(kvsync_bin, tmp_path):
    """`associations/set` and `remove` are write-ahead: the server is killed (-9) after the provider
    did the work and before the request could record it; after the restart the worker finishes what
    the request committed as its intent once the inline claim falls due (30 s): the pushed object is
    recorded SYNCED (no object that no association knows), the removed association goes (no row
    claiming an object the provider no longer has)."""
    fake = VercelFake(tmp_path / "fake")
    # The provider holds its answers longer than the default inline bound: a generous bound (still
    # below the 30 s after which the worker may take an inline claim) keeps the kill, right after
    # the provider applied the call, before the request gives up on it.
    settings = {**SYNC_HCL, "sync_inline_timeout": '"25s"', "provider_timeout": '"60s"'}
    cs = SyncConfigServer(kvsync_bin, tmp_path / "cfg", env_extra=fake.env(), settings=settings)
    try:
        cs.init()
        cs.start()
        h = cs.http()
        mount, name, path = "kv", "wa", "app"
        new_kv2_mount(h, mount)
        acc = accessor(h, mount)
        key, ext = assoc_key(acc, path), vercel_name(acc, path)
        create_dest(h, "vercel-project", name, vercel_destination())
        payload = {"v": val("wa")}
        kv_write(h, mount, path, payload)
        h.close()

        def killed_after(op: str, method: str, route: str, applied: Callable[[], bool]) -> None:
            """`op` the association while the provider applies `method route` and holds its answer;
            kill -9 the server once the provider has applied it; restart."""
            fake.fault(method=method, path_prefix=route, status=0, hold_ms=120_000, times=1)
            errors: list = []

            def call():
                c = cs.http()
                try:
                    c.post(f"{dest('vercel-project', name)}/associations/{op}",
                           json={"mount": mount, "secret_name": path}, timeout=90)
                    errors.append("the request was answered before the kill")
                except requests.RequestException:
                    pass  # the server died under it
                finally:
                    c.close()

            t = threading.Thread(target=call, daemon=True)
            t.start()
            try:
                wait_for(f"the provider applied the {op}", lambda: (applied(), fake.objects()), 20)
            finally:
                cs.kill9()
                t.join(15)
            assert not t.is_alive(), "the request thread did not stop"
            assert not errors, errors
            fake.clear_faults()
            cs.start()

        # set: the object is pushed, the server dies before recording it
        killed_after("set", "POST", ENV_ROUTE, lambda: ext in fake.objects())
        h = cs.http()
        try:
            wait_for("after the restart the worker records the pushed object",
                     lambda: (statuses(h, "vercel-project", name).get(key) == "SYNCED",
                              statuses(h, "vercel-project", name)), 60)
            assert as_json(fake.objects().get(ext)) == payload
        finally:
            h.close()

        # remove: the object is deleted, the server dies before dropping the association
        killed_after("remove", "DELETE", DELETE_ROUTE, lambda: ext not in fake.objects())
        h = cs.http()
        try:
            wait_for("after the restart the worker finishes the removal",
                     lambda: (key not in rows(h, "vercel-project", name), rows(h, "vercel-project", name)), 60)
            assert ext not in fake.objects()
        finally:
            h.close()
    finally:
        cs.cleanup()
        fake.stop()


# --------------------------------------------------------------------------------------------
# sys/sync/config: disabled, queue_capacity
# --------------------------------------------------------------------------------------------


def test_disabled_queues_as_pending_then_drains(world):
    h, fake = world.h, world.fake
    name = world.vercel()
    a, b = unique("dis-a"), unique("dis-b")
    ka, kb = assoc_key(world.acc, a), assoc_key(world.acc, b)
    ea, eb = vercel_name(world.acc, a), vercel_name(world.acc, b)
    c = unique("dis-c")
    kc, ec = assoc_key(world.acc, c), vercel_name(world.acc, c)
    a1, c1 = {"v": val("a1")}, {"v": val("c1")}
    kv_write(h, SECRET, a, a1)
    kv_write(h, SECRET, c, c1)
    assert set_assoc(h, "vercel-project", name, SECRET, a)[ka]["sync_status"] == "SYNCED"
    assert set_assoc(h, "vercel-project", name, SECRET, c)[kc]["sync_status"] == "SYNCED"
    before = fake.writes()
    try:
        d = body(h.merge_patch("sys/sync/config", {"disabled": True}))["data"]
        assert d["disabled"] is True, d
        a2, b1 = {"v": val("a2")}, {"v": val("b1")}
        kv_write(h, SECRET, a, a2)
        kv_write(h, SECRET, b, b1)
        got = set_assoc(h, "vercel-project", name, SECRET, b)
        assert got[kb]["sync_status"] == "PENDING", got
        got = remove_assoc(h, "vercel-project", name, SECRET, c)
        assert got.get(kc, {}).get("sync_status") == "PENDING", f"remove while disabled: {got.get(kc)}"
        wait_rows(h, "vercel-project", name, {ka: "PENDING", kb: "PENDING", kc: "PENDING"})
        # nothing reaches the destination while disabled (bounded look: 1 s)
        for _ in range(10):
            objs = fake.objects()
            st = statuses(h, "vercel-project", name)
            seen = (as_json(objs.get(ea)), eb in objs, as_json(objs.get(ec)), fake.writes() - before)
            assert seen == (a1, False, c1, 0), (
                f"sync is disabled, yet the destination changed: {objs}, statuses {st}"
            )
            assert (st.get(ka), st.get(kb), st.get(kc)) == ("PENDING", "PENDING", "PENDING"), st
            time.sleep(0.1)
        d = body(h.merge_patch("sys/sync/config", {"disabled": False}))["data"]
        assert d["disabled"] is False, d

        def probe():
            objs, st = fake.objects(), statuses(h, "vercel-project", name)
            seen = (st.get(ka), as_json(objs.get(ea)), st.get(kb), as_json(objs.get(eb)), st.get(kc), ec in objs)
            return seen == ("SYNCED", a2, "SYNCED", b1, None, False), seen

        wait_for("re-enabling sync drains the queue", probe)
        assert fake.writes() - before == 2, f"{fake.writes() - before} writes for 2 changes"
    finally:
        h.delete("sys/sync/config")


def test_queue_full_is_an_internal_error_then_reconciled(world):
    h, fake = world.h, world.fake
    name = world.vercel()
    a, b = unique("q-a"), unique("q-b")
    ka, kb = assoc_key(world.acc, a), assoc_key(world.acc, b)
    for p in (a, b):
        kv_write(h, SECRET, p, {"v": val("1")})
        assert set_assoc(h, "vercel-project", name, SECRET, p)[assoc_key(world.acc, p)]["sync_status"] == "SYNCED"
    try:
        # Disabled, so the one queued operation stays queued and fills a queue of capacity 1.
        d = body(h.merge_patch("sys/sync/config", {"disabled": True, "queue_capacity": 1}))["data"]
        assert d == {"disabled": True, "queue_capacity": 1}, d
        a2, b2 = {"v": val("a2")}, {"v": val("b2")}
        r = body(h.post(f"{SECRET}/data/{a}", json={"data": a2}))
        assert not r.get("warnings"), f"the first queued operation fits: {r}"
        wait_rows(h, "vercel-project", name, {ka: "PENDING"})
        r = body(h.post(f"{SECRET}/data/{b}", json={"data": b2}))
        warnings = r.get("warnings") or []
        assert any("queue" in w.lower() for w in warnings), f"the KV write succeeds with a warning: {r}"
        assert r["data"]["version"] == 2, r
        got = wait_rows(h, "vercel-project", name, {kb: "INTERNAL_VAULT_ERROR"}, timeout=5)
        assert "sync queue full" in (got[kb].get("error") or ""), got[kb]
        assert kv_current(h, SECRET, b) == b2

        d = body(h.merge_patch("sys/sync/config", {"queue_capacity": 1000000, "disabled": False}))["data"]
        assert d == {"disabled": False, "queue_capacity": 1000000}, d

        def probe():
            objs, st = fake.objects(), statuses(h, "vercel-project", name)
            seen = (st.get(ka), as_json(objs.get(vercel_name(world.acc, a))),
                    st.get(kb), as_json(objs.get(vercel_name(world.acc, b))))
            return seen == ("SYNCED", a2, "SYNCED", b2), seen

        # the dropped operation comes back through reconciliation (every 2 s)
        wait_for("after raising queue_capacity, reconciliation syncs the dropped change", probe)
    finally:
        h.delete("sys/sync/config")


# --------------------------------------------------------------------------------------------
# purge (background job) and force-delete
# --------------------------------------------------------------------------------------------


def test_purge_runs_in_the_background(world):
    h, fake = world.h, world.fake
    name = world.vercel()
    paths = [unique("pg") for _ in range(3)]
    for p in paths:
        kv_write(h, SECRET, p, {"v": val()})
        assert set_assoc(h, "vercel-project", name, SECRET, p)[assoc_key(world.acc, p)]["sync_status"] == "SYNCED"
    exts = [vercel_name(world.acc, p) for p in paths]
    assert all(e in fake.objects() for e in exts)

    fake.slow(400)  # each of the unsync's provider calls takes 400 ms
    r = h.delete(dest("vercel-project", name), params={"purge": "true"})
    assert (r.status_code, r.content) == (204, b""), f"purge: {r.status_code} {r.text[:300]}"
    r = h.get(dest("vercel-project", name))
    assert r.status_code == 200, (
        f"right after DELETE ?purge=true the destination is already gone ({r.status_code}): "
        f"the purge must run as a background job"
    )
    d = r.json()["data"]
    assert re.match(r"^\d{4}-\d{2}-\d{2}T", d.get("purge_initiated_at") or ""), d
    # new associations are refused while the purge runs
    extra = unique("pg-late")
    kv_write(h, SECRET, extra, {"v": "late"})
    r = h.post(f"{dest('vercel-project', name)}/associations/set", json={"mount": SECRET, "secret_name": extra})
    assert r.status_code == 400, f"set during a purge: {r.status_code} {r.text[:300]}"
    # KV writes to the purged secrets meanwhile must not bring their objects back
    for p in paths:
        kv_write(h, SECRET, p, {"v": val("during-purge")})

    def probe():
        r = h.get(dest("vercel-project", name))
        if r.status_code == 200:
            d = r.json()["data"]
            assert "purge_error" not in d, f"the purge failed: {d}"
            return False, d
        return r.status_code == 404, (r.status_code, r.text[:200])

    wait_for("the purged destination disappears", probe)
    fake.clear_faults()
    objs = fake.objects()
    assert not [e for e in exts if e in objs], f"objects left behind by the purge: {sorted(objs)}"
    for p in paths:
        d = body(h.get("sys/sync/associations/destinations", params={"mount": SECRET, "secret_name": p}))
        assert d["data"]["associated_destinations"] == {}, d


def test_purge_during_an_outage_reports_then_completes(world):
    """4.5: a purge whose unsyncs fail keeps the destination, showing `purge_error`; it is retried
    (no user action) and completes once the provider answers again."""
    h, fake = world.h, world.fake
    name = world.vercel()
    paths = [unique("pgo") for _ in range(2)]
    for p in paths:
        kv_write(h, SECRET, p, {"v": val()})
        assert set_assoc(h, "vercel-project", name, SECRET, p)[assoc_key(world.acc, p)]["sync_status"] == "SYNCED"
    exts = [vercel_name(world.acc, p) for p in paths]
    fake.outage(503)
    r = h.delete(dest("vercel-project", name), params={"purge": "true"})
    assert (r.status_code, r.content) == (204, b""), f"purge: {r.status_code} {r.text[:300]}"

    def failing():
        r = h.get(dest("vercel-project", name))
        d = r.json().get("data") if r.status_code == 200 else None
        return bool(d and d.get("purge_initiated_at") and d.get("purge_error")), (r.status_code, r.text[:300])

    wait_for("a failing purge shows purge_initiated_at and purge_error", failing, timeout=10)
    assert all(e in fake.objects() for e in exts)
    fake.clear_faults()

    def gone():
        r = h.get(dest("vercel-project", name))
        return r.status_code == 404, (r.status_code, r.text[:300], sorted(fake.objects()))

    wait_for("the purge completes once the provider is back", gone)
    objs = fake.objects()
    assert not [e for e in exts if e in objs], f"objects left behind by the purge: {sorted(objs)}"


def test_force_delete_is_immediate_and_orphans_objects(world):
    """4.5: force_delete drops the destination and its associations at once and orphans the external
    objects, whether the provider is reachable or not; nothing works on them afterwards."""
    h, fake = world.h, world.fake
    values, exts = {}, {}
    dests = {"reachable": world.vercel(), "unreachable": world.vercel()}
    for label, name in dests.items():
        for i in range(2):
            p = unique(f"fd{i}")
            values[p] = {"v": val()}
            exts[p] = vercel_name(world.acc, p)
            kv_write(h, SECRET, p, values[p])
            assert set_assoc(h, "vercel-project", name, SECRET, p)[assoc_key(world.acc, p)]["sync_status"] == "SYNCED"
    fake.clear_calls()
    for label, name in dests.items():
        if label == "unreachable":
            # unsyncs (GET to find the ids, then DELETE) cannot succeed: force_delete must not care
            for method in ("GET", "DELETE"):
                fake.fault(method=method, path_prefix="/v", status=503, times=1_000_000)
        r = h.delete(dest("vercel-project", name), params={"force_delete": "true"})
        assert (r.status_code, r.content) == (204, b""), f"force_delete ({label}): {r.status_code} {r.text[:300]}"
        r = h.get(dest("vercel-project", name))
        assert r.status_code == 404, f"after force_delete ({label}): {r.status_code} {r.text[:300]}"
    for p in values:
        d = body(h.get("sys/sync/associations/destinations", params={"mount": SECRET, "secret_name": p}))
        assert d["data"]["associated_destinations"] == {}, d
    fake.clear_faults()
    # Nothing keeps working on the deleted destinations: after a reconciliation interval the
    # objects are still there (orphaned) and no deletion reached the provider.
    time.sleep(RECONCILE_S + 0.5)
    objs = fake.objects()
    for p, ext in exts.items():
        assert as_json(objs.get(ext)) == values[p], f"{p}: not orphaned at the provider: {sorted(objs)}"
    deletes = [c for c in fake.calls() if c["method"] == "DELETE" and c["path"].startswith(DELETE_ROUTE)]
    assert deletes == [], f"deletes reached the provider after force_delete: {deletes}"


# --------------------------------------------------------------------------------------------
# the CLIs: `kvsync sync run --once` and `kvsync sync status`
# --------------------------------------------------------------------------------------------


def test_cli_sync_run_once_drains_a_stopped_servers_storage(cfg_world):
    fake, cs = cfg_world
    cs.init()
    cs.start()
    h = cs.http()
    mount = "kv"
    new_kv2_mount(h, mount)
    acc = accessor(h, mount)
    name = "cli-drain"
    create_dest(h, "vercel-project", name, vercel_destination())
    paths = ["one", "two"]
    for p in paths:
        kv_write(h, mount, p, {"v": val("v1")})
        assert set_assoc(h, "vercel-project", name, mount, p)[assoc_key(acc, p)]["sync_status"] == "SYNCED"

    # pending work: the provider is down while the secrets change
    fake.stop()
    latest = {}
    for p in paths:
        latest[p] = {"v": val("v2")}
        kv_write(h, mount, p, latest[p])
    wait_rows(h, "vercel-project", name, {assoc_key(acc, p): "EXTERNAL_SERVICE_ERROR" for p in paths})
    h.close()
    rc = cs.stop()
    assert rc == 0, f"the server did not stop cleanly on SIGTERM (rc={rc})"

    # `--once` runs the work that is due now: let the retries' backoff (cap 2 s) elapse first.
    argv = ["sync", "run", "--once", "--config", cs.config_path]
    time.sleep(BACKOFF_CAP_S + 0.3)
    res = cs.run_cli(argv)
    out = res.stdout + res.stderr
    assert res.returncode != 0, f"`kvsync sync run --once` with the provider down exited 0:\n{out}"
    m = DONE_RE.search(res.stdout)
    assert m and int(m["failed"]) == len(paths), f"expected {len(paths)} failed attempts:\n{out}"

    fake.start()  # same port, healthy, empty
    time.sleep(BACKOFF_CAP_S + 0.3)
    res = cs.run_cli(argv)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"`kvsync sync run --once` rc={res.returncode}:\n{out}"
    summary = [ln for ln in res.stdout.splitlines() if ln.startswith(f"vercel-project/{name} ")]
    assert summary and summary[0].split()[1:] == [str(len(paths)), "0", "0"], (
        f"no per-destination summary `vercel-project/{name}  SYNCED ERRORS PENDING` = {len(paths)} 0 0:\n{out}"
    )
    m = DONE_RE.search(res.stdout)
    assert m and (int(m["processed"]), int(m["failed"])) == (len(paths), 0), out
    objs = fake.objects()
    for p in paths:
        assert as_json(objs.get(vercel_name(acc, p))) == latest[p], f"{p} not drained by the CLI: {objs}\n{out}"
    assert fake.writes() == len(paths), f"{fake.writes()} writes for {len(paths)} changes\n{out}"

    # The CLI committed its outcomes: a server started afterwards has nothing left to push.
    cs.start()
    h = cs.http()
    try:
        st = statuses(h, "vercel-project", name)
        assert all(st.get(assoc_key(acc, p)) == "SYNCED" for p in paths), st

        # ... and the CLI refuses to run on storage a running server holds
        res = cs.run_cli(argv, timeout=30)
        out = (res.stdout + res.stderr).strip()
        assert res.returncode != 0, f"`kvsync sync run --once` ran beside a live server:\n{out}"
        assert re.search(r"running|in use|lock|already open|another", out, re.I), (
            f"no clear message for the refusal:\n{out}"
        )
        assert fake.writes() == len(paths), "the server re-pushed what the CLI had synced"
    finally:
        h.close()


def test_cli_sync_status_lists_associations(world, kvsync_bin, tmp_path):
    h, fake = world.h, world.fake
    im, ve = world.in_mem(), world.vercel()
    good, bad = unique("st-ok"), unique("st-bad")
    kv_write(h, SECRET, good, {"v": val()})
    kv_write(h, SECRET, bad, {"v": val()})
    assert set_assoc(h, "in-mem", im, SECRET, good)[assoc_key(world.acc, good)]["sync_status"] == "SYNCED"
    fake.outage(503)
    got = set_assoc(h, "vercel-project", ve, SECRET, bad)[assoc_key(world.acc, bad)]
    assert got["sync_status"] in ERROR_STATUSES | {"PENDING"}, got
    wait_rows(h, "vercel-project", ve, {assoc_key(world.acc, bad): "EXTERNAL_SERVICE_ERROR"})

    res = subprocess.run(
        [str(kvsync_bin), "sync", "status"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, cwd=str(tmp_path),
        env=child_env({"VAULT_ADDR": world.srv.addr, "VAULT_TOKEN": world.srv.token}),
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"`kvsync sync status` rc={res.returncode}:\n{out}"
    lines = res.stdout.splitlines()

    def line_with(*words):
        return [ln for ln in lines if all(w in ln for w in words)]

    assert line_with(im, good, "SYNCED"), f"no row for in-mem/{im} {good} SYNCED:\n{res.stdout}"
    assert line_with(ve, bad, "EXTERNAL_SERVICE_ERROR"), f"no row for vercel-project/{ve} {bad}:\n{res.stdout}"

    res = subprocess.run(
        [str(kvsync_bin), "sync", "status"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, cwd=str(tmp_path),
        env=child_env({"VAULT_ADDR": world.srv.addr, "VAULT_TOKEN": "not-a-token", "HOME": str(tmp_path)}),
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0, f"`kvsync sync status` with a bad token exited 0:\n{out}"
    assert "permission denied" in out.lower() or "403" in out, out


def test_set_against_a_slow_provider_answers_pending_and_the_worker_finishes(world):
    """`associations/set` tries the first sync inline, but answers once its inline bound (3 s by default) has passed,
    with the association PENDING, and the sync worker finishes the work."""
    w = world
    name = w.vercel()
    path = unique("slow")
    payload = {"v": val("slow")}
    kv_write(w.h, SECRET, path, payload)
    key = assoc_key(w.acc, path)
    # Slower than the inline bound, faster than the provider timeout (10 s).
    w.fake.slow(6000, method="POST")
    try:
        got = set_assoc(w.h, "vercel-project", name, SECRET, path)
        assert got[key]["sync_status"] == "PENDING", got[key]
        assert "error" not in got[key], got[key]
    finally:
        w.fake.clear_faults()

    def probe():
        status = statuses(w.h, "vercel-project", name).get(key)
        value = w.fake.objects().get(vercel_name(w.acc, path))
        return status == "SYNCED" and as_json(value) == payload, (status, value)

    wait_for("the worker finishes the deferred sync", probe)
