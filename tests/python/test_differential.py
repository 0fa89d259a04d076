"""Differential tests: kvsync against OpenBao (`bao server -dev`), the reference server for every
Vault API kvsync serves except Secrets Sync.

Every request goes to both servers in the same order (the `diff` fixture, differential.py); status
codes, headers and JSON shapes and stable values must agree. A difference is a kvsync bug unless the
README documents it ("Where kvsync differs from Vault (on purpose)"): such a test allows it with a
`Decision` quoting that line. A kvsync bug is pinned by a test marked
`xfail(strict=True, reason="kvsync bug: ...")` that fails only because of it; a longer sequence that
runs into the same bug masks it with `diff.known_bug(where, pinned_by=...)` so that its other steps
stay compared.

Adding a case: write the requests with `diff.call` / `diff.get` / `diff.post` / ... (the same
keyword arguments as requests; `expect=` asserts bao's status so the test checks what it means to).
"""

from __future__ import annotations

import json

import pytest

from differential import TRACKED, Decision, check_pinned
from kvsync_helpers import assert_alive, unique

SECRET = "secret"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MERGE = {"Content-Type": "application/merge-patch+json"}

# ---- README decisions the allowed differences rest on ----------------------------------------

ONLY_KV_V2 = "Only KV version 2 can be mounted (`kv-v1` and other engine types: 400)."
ERROR_TEXTS = "Error texts Vault does not publish are specific messages"


@pytest.fixture(autouse=True)
def _server_survives(dev_server):
    yield
    assert_alive(dev_server.server, dev_server.token)


def new_mount(diff, **body):
    """A fresh KV-v2 mount on both servers, at the same path."""
    m = unique("dm")
    diff.post(f"sys/mounts/{m}", json={"type": "kv-v2", **body}, expect=204)
    return m


def write(diff, path, data, mount=SECRET, **options):
    body = {"data": data}
    if options:
        body["options"] = options
    return diff.post(f"{mount}/data/{path}", json=body, expect=200)


def pick(*keys):
    """A projection keeping some keys of `data` (and of the top level, where legacy sys/ routes
    copy them): listings whose other entries are not the test's own."""

    def project(body):
        if not isinstance(body, dict):
            return body
        out = {k: v for k, v in body.items() if k not in body.get("data", {}) or k in keys}
        if isinstance(body.get("data"), dict):
            out["data"] = {k: v for k, v in body["data"].items() if k in keys}
        return out

    return project


# --------------------------------------------------------------------------------------------
# the harness itself
# --------------------------------------------------------------------------------------------


def test_tracked_bugs_are_pinned():
    import sys

    for t in TRACKED:
        check_pinned(sys.modules[__name__], t.pinned_by)


def test_decisions_quote_the_readme():
    for quote in (ONLY_KV_V2, ERROR_TEXTS):
        Decision(where="x", readme=quote).verify()
    with pytest.raises(AssertionError):
        Decision(where="x", readme="a decision nobody wrote").verify()


def test_a_difference_fails_and_shows_both_bodies_redacted(diff, dev_server, bao_server):
    p = unique("harness")
    write(diff, p, {"a": "1"})
    # different data on each server: the next read must fail, with both bodies in the message
    diff.kvsync.post(f"secret/data/{p}", json={"data": {"a": "kvsync"}})
    diff.bao.post(f"secret/data/{p}", json={"data": {"a": "bao", "b": 1}})
    with pytest.raises(AssertionError) as ei:
        diff.get(f"secret/data/{p}")
    text = str(ei.value)
    assert "data.data.a: value" in text and "data.data.b: missing in kvsync" in text, text
    assert '"kvsync"' in text and '"bao"' in text
    # root tokens never appear in a report, even when a response echoes one
    with pytest.raises(AssertionError) as ei:
        sides = iter(["kvsync", "bao"])  # project runs on kvsync's body, then on bao's
        diff.get("auth/token/lookup-self", project=lambda b: {"echo": b, "side": next(sides)})
    text = str(ei.value)
    assert dev_server.token not in text and bao_server.token not in text, text
    assert "<root token>" in text


# --------------------------------------------------------------------------------------------
# tracked kvsync bugs (masked in every other call; see differential.TRACKED)
# --------------------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="kvsync bug: every response envelope has a top-level mount_type key; OpenBao's has none",
)
def test_tracked_envelope_mount_type(diff):
    diff.untrack("mount_type")
    diff.get("secret/config", expect=200)


@pytest.mark.xfail(
    strict=True,
    reason="kvsync bug: KV-v2 metadata lacks metadata_cas_required and current_metadata_version, "
    "and the mount config lacks metadata_cas_required",
)
def test_tracked_kv_metadata_cas_fields(diff):
    diff.untrack("kv_metadata_cas")
    diff.untrack("kv_current_metadata_version")
    p = unique("mcas")
    write(diff, p, {"a": "1"})
    diff.get(f"secret/metadata/{p}", expect=200)
