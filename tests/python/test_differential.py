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

from differential import DECIDED, KV_METADATA_CAS, MOUNT_TYPE, TRACKED, Decision, check_pinned
from kvsync_helpers import assert_alive, unique

SECRET = "secret"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MERGE = {"Content-Type": "application/merge-patch+json"}

# ---- README decisions the allowed differences rest on ----------------------------------------

ONLY_KV_V2 = "Only KV version 2 can be mounted (`kv-v1` and other engine types: 400)."
ERROR_TEXTS = "Error texts Vault does not publish are specific messages"
NEGATIVE_MAX_VERSIONS = "A negative `max_versions` (secret metadata or mount config) is refused with 400"
PATCH_415 = "`PATCH` needs `Content-Type: application/merge-patch+json` and answers 415 without it"
WARN_INSTEAD_OF_204 = ("A call that answers 204 but was sent fields or query parameters it does not know answers 200 "
                       "with the `Endpoint ignored these unrecognized parameters` warning")
NO_WRAPPING = "Response wrapping is not supported: a request with a non-empty `X-Vault-Wrap-TTL`"
EXACT_INTEGERS = "Integers in secret data are kept exact, also beyond 2^53"
HEALTH_KEYS = "`sys/health` also has the keys Vault documents and OpenBao dropped"
ROOT_TOKEN = ("The bootstrap root token (`--dev-root-token-id`, `operator init`) looks itself up with "
              "`display_name` `root` and `path` `auth/token/root`")
OPTIONS_405 = "`OPTIONS` answers 405 `unsupported operation`"


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
    for quote in (ONLY_KV_V2, ERROR_TEXTS, NEGATIVE_MAX_VERSIONS, PATCH_415, WARN_INSTEAD_OF_204, EXACT_INTEGERS,
                  HEALTH_KEYS, ROOT_TOKEN, OPTIONS_405, MOUNT_TYPE, KV_METADATA_CAS, POLICY_FIELDS,
                  POLICY_NAME_WARNING, SEAL_STATUS, CAPABILITIES_400, LEADER):
        Decision(where="x", readme=quote).verify()
    for decision in DECIDED:
        decision.verify()
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
# decisions allowed in every call (differential.DECIDED)
# --------------------------------------------------------------------------------------------


def test_envelope_mount_type(diff):
    diff.allow(Decision(where="mount_type", kind="extra", readme=MOUNT_TYPE))
    diff.get("secret/config", expect=200)


def test_kv_metadata_cas_fields(diff):
    diff.allow(Decision(where="data.metadata_cas_required", kind="missing", readme=KV_METADATA_CAS),
               Decision(where="data.current_metadata_version", kind="missing", readme=KV_METADATA_CAS))
    p = unique("mcas")
    write(diff, p, {"a": "1"})
    diff.get(f"secret/metadata/{p}", expect=200)
    diff.get("secret/config", expect=200)


# --------------------------------------------------------------------------------------------
# KV-v2: data
# --------------------------------------------------------------------------------------------


def test_kv_write_read_and_versions(diff):
    p = unique("rw") + "/db"
    write(diff, p, {"user": "app", "password": "s3cr3t"})
    write(diff, p, {"user": "app", "password": "rotated", "n": 2})
    diff.get(f"secret/data/{p}", expect=200)
    diff.get(f"secret/data/{p}?version=1", expect=200)
    diff.get(f"secret/data/{p}", params={"version": "2"}, expect=200)
    diff.get(f"secret/data/{p}?version=0", expect=200)  # 0 = latest
    diff.get(f"secret/data/{p}?version=3", expect=404)
    diff.get(f"secret/data/{unique('missing')}", expect=404)
    diff.get(f"secret/data/{p}?version=abc")
    diff.get(f"secret/data/{p}?version=-1")


def test_kv_values_of_every_json_type(diff):
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
        "empty_map": {},
        "empty_list": [],
    }
    write(diff, p, value)
    diff.get(f"secret/data/{p}", expect=200)


def test_kv_integers_beyond_float64_precision(diff):
    # bao rounds 9007199254740993 to the nearest float64 (9007199254740992)
    diff.allow(Decision(where="data.data.big", kind="value", readme=EXACT_INTEGERS))
    p = unique("bigint")
    write(diff, p, {"big": 2**53 + 1})
    diff.get(f"secret/data/{p}", expect=200)


def test_kv_empty_data_and_odd_paths(diff):
    write(diff, unique("empty"), {})
    folder = unique("odd")
    write(diff, f"{folder}/my secret \u00fc", {"k": "v"})
    diff.get(f"secret/data/{folder}/my secret \u00fc", expect=200)
    diff.list(f"secret/metadata/{folder}", expect=200)
    diff.get(f"secret/data/{folder}/my%20secret%20%C3%BC", expect=200)


def test_kv_put_is_post(diff):
    p = unique("put")
    diff.put(f"secret/data/{p}", json={"data": {"a": "1"}}, expect=200)
    diff.get(f"secret/data/{p}", expect=200)


def test_kv_cas(diff):
    p = unique("cas")
    write(diff, p, {"a": "1"}, cas=0)
    diff.post(f"secret/data/{p}", json={"data": {"a": "again"}, "options": {"cas": 0}}, expect=400)
    write(diff, p, {"a": "2"}, cas=1)
    diff.post(f"secret/data/{p}", json={"data": {"a": "stale"}, "options": {"cas": 1}}, expect=400)
    diff.post(f"secret/data/{p}", json={"data": {"a": "future"}, "options": {"cas": 5}}, expect=400)
    diff.post(f"secret/data/{p}", json={"data": {"a": "x"}, "options": {"cas": "x"}}, expect=400)
    write(diff, p, {"a": "3"}, cas="2")  # lenient: a numeric string
    diff.get(f"secret/data/{p}", expect=200)
    diff.post(f"secret/data/{unique('cas-missing')}", json={"data": {"a": "1"}, "options": {"cas": 1}}, expect=400)


def test_kv_cas_required_on_the_key(diff):
    p = unique("casreq")
    write(diff, p, {"a": "1"})
    diff.post(f"secret/metadata/{p}", json={"cas_required": True}, expect=204)
    diff.post(f"secret/data/{p}", json={"data": {"a": "no-cas"}}, expect=400)
    write(diff, p, {"a": "2"}, cas=1)
    diff.merge_patch(f"secret/data/{p}", {"data": {"b": "x"}}, expect=400)
    diff.merge_patch(f"secret/data/{p}", {"data": {"b": "x"}, "options": {"cas": 2}}, expect=200)
    diff.get(f"secret/data/{p}", expect=200)


def test_kv_merge_patch(diff):
    p = unique("mpatch")
    write(diff, p, {"keep": "k", "drop": "d", "nested": {"a": 1, "b": 2}})
    diff.merge_patch(f"secret/data/{p}", {"data": {"drop": None, "new": "n", "nested": {"a": None, "c": 3}}},
                     expect=200)
    diff.get(f"secret/data/{p}", expect=200)
    diff.merge_patch(f"secret/data/{p}", {"data": {"x": "y"}, "options": {"cas": 1}}, expect=400)
    diff.merge_patch(f"secret/data/{p}", {"data": {"x": "y"}, "options": {"cas": 2}}, expect=200)
    diff.merge_patch(f"secret/data/{p}", {"options": {}}, expect=400)  # no data
    diff.merge_patch(f"secret/data/{p}", {"data": "not-a-map"}, expect=400)
    diff.merge_patch(f"secret/data/{unique('mpatch-missing')}", {"data": {"a": "b"}}, expect=404)
    diff.delete(f"secret/data/{p}", expect=204)
    diff.merge_patch(f"secret/data/{p}", {"data": {"a": "b"}}, expect=404)
    diff.get(f"secret/metadata/{p}", expect=200)


@pytest.mark.parametrize("path,body", [("data", {"data": {"a": "b"}}), ("metadata", {"max_versions": 2})])
def test_kv_merge_patch_of_a_missing_secret(diff, path, body):
    """404 with an empty body."""
    diff.merge_patch(f"secret/{path}/{unique('mpatch-missing')}", body, expect=404)


def test_kv_merge_patch_of_metadata_without_versions(diff):
    p = unique("mpatch-nover")
    diff.post(f"secret/metadata/{p}", json={"max_versions": 3}, expect=204)
    diff.merge_patch(f"secret/data/{p}", {"data": {"a": "b"}}, expect=404)


def test_kv_merge_patch_content_types(diff):
    p = unique("p415")
    write(diff, p, {"a": "1"})
    body = json.dumps({"data": {"a": "2"}})
    diff.call("PATCH", f"secret/data/{p}", data=body, headers={"Content-Type": "application/json"}, expect=415)
    diff.call("PATCH", f"secret/data/{p}", data=body, headers={"Content-Type": "text/plain"}, expect=415)
    diff.call("PATCH", f"secret/metadata/{p}", data="{}", headers={"Content-Type": "application/json"},
              expect=415)
    diff.call("PATCH", f"secret/data/{p}", data=json.dumps({"data": {"c": "3"}}),
              headers={"Content-Type": "application/merge-patch+json; charset=utf-8"}, expect=200)
    diff.get(f"secret/data/{p}", expect=200)


def test_kv_merge_patch_without_content_type(diff):
    diff.allow(Decision(where="$status", readme=PATCH_415))  # bao: 400 mime: no media type
    p = unique("p400")
    write(diff, p, {"a": "1"})
    diff.call("PATCH", f"secret/data/{p}", data=json.dumps({"data": {"a": "2"}}), expect=400)


def test_kv_soft_delete_and_undelete(diff):
    p = unique("del")
    write(diff, p, {"v": "1"})
    write(diff, p, {"v": "2"})
    diff.delete(f"secret/data/{p}", expect=204)
    diff.get(f"secret/data/{p}", expect=404)  # a full envelope with data null and the metadata
    diff.get(f"secret/data/{p}?version=1", expect=200)
    diff.get(f"secret/metadata/{p}", expect=200)
    diff.get(f"secret/subkeys/{p}", expect=404)
    diff.delete(f"secret/data/{p}", expect=204)  # again: nothing new to delete
    diff.post(f"secret/undelete/{p}", json={"versions": [2]}, expect=204)
    diff.get(f"secret/data/{p}", expect=200)
    write(diff, p, {"v": "3"})
    diff.get(f"secret/metadata/{p}", expect=200)


def test_kv_delete_versions_destroy_undelete(diff):
    p = unique("destroy")
    for i in range(1, 4):
        write(diff, p, {"v": str(i)})
    diff.post(f"secret/delete/{p}", json={"versions": [1, 2]}, expect=204)
    diff.get(f"secret/data/{p}?version=1", expect=404)
    diff.get(f"secret/data/{p}", expect=200)
    diff.put(f"secret/destroy/{p}", json={"versions": [3]}, expect=204)
    diff.get(f"secret/data/{p}", expect=404)  # destroyed: data null, destroyed true
    diff.get(f"secret/subkeys/{p}", expect=404)
    diff.post(f"secret/undelete/{p}", json={"versions": [1, 3]}, expect=204)
    diff.get(f"secret/data/{p}?version=1", expect=200)
    diff.get(f"secret/data/{p}?version=3", expect=404)
    diff.get(f"secret/metadata/{p}", expect=200)
    # versions that never existed are ignored
    diff.post(f"secret/delete/{p}", json={"versions": [7, 8]}, expect=204)
    diff.post(f"secret/destroy/{p}", json={"versions": [9]}, expect=204)
    diff.post(f"secret/undelete/{p}", json={"versions": [9]}, expect=204)
    diff.get(f"secret/metadata/{p}", expect=200)


def test_kv_version_operations_on_missing_secrets(diff):
    p = unique("nothing")
    diff.delete(f"secret/data/{p}")
    diff.post(f"secret/delete/{p}", json={"versions": [1]})
    diff.post(f"secret/undelete/{p}", json={"versions": [1]})
    diff.post(f"secret/destroy/{p}", json={"versions": [1]})
    diff.delete(f"secret/metadata/{p}")
    diff.get(f"secret/metadata/{p}", expect=404)


@pytest.mark.parametrize("op", ["delete", "undelete", "destroy"])
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"versions": []},
        {"versions": ["abc"]},
        {"versions": "1,2"},
        {"versions": ["1", "2"]},
        {"versions": 1},
        {"versions": [1.5]},
        {"versions": None},
    ],
    ids=["none", "empty", "not-int", "comma-string", "numeric-strings", "scalar", "float", "null"],
)
def test_kv_versions_argument(diff, op, body):
    p = unique("vers")
    write(diff, p, {"a": "1"})
    write(diff, p, {"a": "2"})
    diff.post(f"secret/{op}/{p}", json=body)
    diff.get(f"secret/metadata/{p}", expect=200)


# --------------------------------------------------------------------------------------------
# KV-v2: list
# --------------------------------------------------------------------------------------------


def test_kv_list_methods(diff):
    diff.allow(Decision(where="errors", kind="list", request="list=notabool", readme=ERROR_TEXTS))
    base = unique("lst")
    for name in ("one", "two", "dir/three", "dir/sub/four", "both", "both/child"):
        write(diff, f"{base}/{name}", {"n": name})
    for variant in (
        lambda: diff.list(f"secret/metadata/{base}", expect=200),
        lambda: diff.list(f"secret/metadata/{base}/", expect=200),
        lambda: diff.get(f"secret/metadata/{base}?list=true", expect=200),
        lambda: diff.get(f"secret/metadata/{base}/", params={"list": "true"}, expect=200),
        lambda: diff.get(f"secret/metadata/{base}?list=1", expect=200),
        lambda: diff.get(f"secret/metadata/{base}?list=True", expect=200),
        lambda: diff.get(f"secret/metadata/{base}?list=t", expect=200),
        lambda: diff.list(f"secret/metadata/{base}/dir", expect=200),
    ):
        variant()
    diff.get(f"secret/metadata/{base}?list=notabool", expect=400)
    diff.get(f"secret/metadata/{base}/one?list=false", expect=200)
    diff.get(f"secret/metadata/{base}/one?list=0", expect=200)
    diff.list(f"secret/metadata/{unique('empty')}", expect=404)
    diff.get(f"secret/metadata/{unique('empty')}/?list=true", expect=404)


def test_kv_list_a_fresh_mount_and_its_root(diff):
    m = new_mount(diff)
    diff.list(f"{m}/metadata", expect=404)
    diff.list(f"{m}/metadata/", expect=404)
    write(diff, "a/b", {"x": "1"}, mount=m)
    write(diff, "c", {"x": "1"}, mount=m)
    diff.list(f"{m}/metadata", expect=200)
    diff.list(f"{m}/metadata/", expect=200)
    diff.get(f"{m}/metadata/?list=true", expect=200)


def test_kv_list_after_deletes(diff):
    base = unique("listdel")
    write(diff, f"{base}/keep", {"a": "1"})
    write(diff, f"{base}/gone", {"a": "1"})
    write(diff, f"{base}/soft", {"a": "1"})
    diff.delete(f"secret/metadata/{base}/gone", expect=204)
    diff.delete(f"secret/data/{base}/soft", expect=204)
    diff.list(f"secret/metadata/{base}", expect=200)
    diff.post(f"secret/destroy/{base}/soft", json={"versions": [1]}, expect=204)
    diff.list(f"secret/metadata/{base}", expect=200)
    diff.delete(f"secret/metadata/{base}/keep", expect=204)
    diff.delete(f"secret/metadata/{base}/soft", expect=204)
    diff.list(f"secret/metadata/{base}", expect=404)


def test_kv_list_on_paths_that_do_not_list(diff):
    p = unique("nolist")
    write(diff, p, {"a": "1"})
    diff.list(f"secret/data/{p}", expect=405)
    diff.get(f"secret/data/{p}?list=true", expect=405)
    diff.list(f"secret/subkeys/{p}", expect=405)
    diff.list("secret/config", expect=404)  # an invalid path for LIST: 404 with the KV warning


def test_kv_read_with_list_false_warns(diff):
    p = unique("lf")
    write(diff, p, {"a": "1"})
    diff.get(f"secret/metadata/{p}?list=false", expect=200)
    diff.get(f"secret/data/{p}?list=0", expect=200)
    diff.get(f"secret/metadata/{p}?list=false&list=true", expect=200)


# --------------------------------------------------------------------------------------------
# KV-v2: metadata
# --------------------------------------------------------------------------------------------


def test_kv_metadata_write_read_patch_delete(diff):
    p = unique("meta")
    write(diff, p, {"a": "1"})
    write(diff, p, {"a": "2"})
    diff.get(f"secret/metadata/{p}", expect=200)
    diff.post(
        f"secret/metadata/{p}",
        json={"max_versions": 5, "cas_required": True, "custom_metadata": {"owner": "team-a", "env": "prod"},
              "delete_version_after": "1h"},
        expect=204,
    )
    diff.get(f"secret/metadata/{p}", expect=200)
    write(diff, p, {"a": "3"}, cas=2)  # custom_metadata shows in the write's answer
    diff.get(f"secret/data/{p}", expect=200)
    diff.merge_patch(f"secret/metadata/{p}", {"custom_metadata": {"owner": None, "team": "b"}, "max_versions": 7},
                     expect=204)
    diff.get(f"secret/metadata/{p}", expect=200)
    diff.merge_patch(f"secret/metadata/{p}", {"cas_required": False}, expect=204)
    diff.get(f"secret/metadata/{p}", expect=200)
    diff.delete(f"secret/metadata/{p}", expect=204)
    diff.get(f"secret/metadata/{p}", expect=404)
    diff.get(f"secret/data/{p}", expect=404)
    diff.get(f"secret/data/{p}?version=1", expect=404)
    write(diff, p, {"a": "new"})  # starts over at version 1
    diff.get(f"secret/metadata/{p}", expect=200)


def test_kv_metadata_before_any_version(diff):
    base = unique("meta-first")
    p = f"{base}/k"
    diff.post(f"secret/metadata/{p}", json={"max_versions": 3, "custom_metadata": {"k": "v"}}, expect=204)
    diff.get(f"secret/metadata/{p}", expect=200)
    diff.list(f"secret/metadata/{base}", expect=200)  # a key with metadata only is listed
    diff.get(f"secret/data/{p}", expect=404)
    diff.get(f"secret/subkeys/{p}", expect=404)
    write(diff, p, {"a": "1"})
    diff.get(f"secret/metadata/{p}", expect=200)


@pytest.mark.parametrize(
    "value", ["1h", "90m", "1h30m", "3600s", "0s", "0", 3600, "3600", "1.5h", "-1h", "1d", "soon", True]
)
def test_kv_delete_version_after_formats(diff, value):
    p = unique("dva")
    write(diff, p, {"a": "1"})
    diff.post(f"secret/metadata/{p}", json={"delete_version_after": value})
    diff.get(f"secret/metadata/{p}", expect=200)


@pytest.mark.parametrize(
    "body",
    [
        {"max_versions": "7"},
        {"max_versions": "abc"},
        {"cas_required": "true"},
        {"cas_required": "1"},
        {"cas_required": 1},
        {"cas_required": "notabool"},
        {"custom_metadata": "not-a-map"},
        {"custom_metadata": {"n": 1}},
        {"custom_metadata": {"n": None}},
        {"custom_metadata": {"nested": {"a": "b"}}},
        {"custom_metadata": {}},
        {"custom_metadata": None},
        {"custom_metadata": "a=b,c=d"},
        {},
    ],
    ids=lambda b: json.dumps(b),
)
def test_kv_metadata_field_types(diff, body):
    p = unique("mtypes")
    write(diff, p, {"a": "1"})
    diff.post(f"secret/metadata/{p}", json=body)
    diff.get(f"secret/metadata/{p}", expect=200)


@pytest.mark.parametrize(
    "path,body",
    [("metadata", {"max_versions": 7.0}), ("data", {"data": {"a": "2"}, "options": {"cas": 1.0}}),
     ("metadata", {"max_versions": 1e1}), ("config", {"max_versions": 2.0})],
    ids=["max_versions", "cas", "exponent", "config"],
)
def test_kv_float_where_an_integer_is_expected(diff, path, body):
    p = unique("float")
    write(diff, p, {"a": "1"})
    diff.post(f"secret/{path}/{p}" if path != "config" else "secret/config", json=body, expect=400)
    diff.get(f"secret/metadata/{p}", expect=200)


@pytest.mark.parametrize(
    "value", [True, False, "", "+5", "0x10", "0o7", "010", "0b11", "1_0", " 5", "5 ", "_5", "9223372036854775808"],
    ids=lambda v: json.dumps(v),
)
def test_kv_integer_forms(diff, value):
    """Vault's int parsing: Go's weak decoding (booleans, "" as 0, ParseInt with base prefixes)."""
    p = unique("intform")
    write(diff, p, {"a": "1"})
    diff.post(f"secret/metadata/{p}", json={"max_versions": value})
    diff.get(f"secret/metadata/{p}", expect=200)
    diff.post(f"secret/data/{p}", json={"data": {"a": "2"}, "options": {"cas": value}})
    diff.get(f"secret/data/{p}", params={"version": value} if value is not True and value is not False else None)


def test_kv_metadata_negative_max_versions(diff):
    # bao stores it wrapped: 204, and max_versions reads back as 4294967295
    diff.allow(Decision(where="$status", readme=NEGATIVE_MAX_VERSIONS),
               Decision(where="<root>", kind="type", readme=NEGATIVE_MAX_VERSIONS))
    p = unique("negmax")
    write(diff, p, {"a": "1"})
    diff.post(f"secret/metadata/{p}", json={"max_versions": -1}, expect=204)


def test_kv_custom_metadata_limits(diff):
    p = unique("cmlim")
    write(diff, p, {"a": "1"})
    diff.post(f"secret/metadata/{p}", json={"custom_metadata": {f"k{i}": "v" for i in range(65)}})
    diff.post(f"secret/metadata/{p}", json={"custom_metadata": {"k" * 129: "v"}})
    diff.post(f"secret/metadata/{p}", json={"custom_metadata": {"k": "v" * 513}})
    diff.post(f"secret/metadata/{p}", json={"custom_metadata": {f"k{i}": "v" for i in range(64)}}, expect=204)
    diff.get(f"secret/metadata/{p}", expect=200)


def test_kv_max_versions_pruning(diff):
    p = unique("maxv")
    write(diff, p, {"v": "1"})
    diff.post(f"secret/metadata/{p}", json={"max_versions": 2}, expect=204)
    for i in range(2, 5):
        write(diff, p, {"v": str(i)})
    diff.get(f"secret/metadata/{p}", expect=200)
    diff.get(f"secret/data/{p}?version=1", expect=404)
    diff.get(f"secret/data/{p}?version=3", expect=200)
    diff.post(f"secret/undelete/{p}", json={"versions": [1]}, expect=204)
    diff.get(f"secret/metadata/{p}", expect=200)
    # lowering max_versions prunes at the next write
    diff.post(f"secret/metadata/{p}", json={"max_versions": 1}, expect=204)
    diff.get(f"secret/metadata/{p}", expect=200)
    write(diff, p, {"v": "5"})
    diff.get(f"secret/metadata/{p}", expect=200)


def test_kv_delete_version_after_sets_a_deletion_time(diff):
    p = unique("dvat")
    diff.post(f"secret/metadata/{p}", json={"delete_version_after": "1h"}, expect=204)
    write(diff, p, {"a": "1"})
    diff.get(f"secret/data/{p}", expect=200)
    diff.get(f"secret/metadata/{p}", expect=200)


# --------------------------------------------------------------------------------------------
# KV-v2: subkeys, config, paths
# --------------------------------------------------------------------------------------------


def test_kv_subkeys(diff):
    p = unique("subk")
    write(diff, p, {"foo": "abc", "bar": {"baz": "def", "q": {"r": 1}}, "n": 1, "l": [1, 2], "e": {}})
    write(diff, p, {"only": "v2"})
    diff.get(f"secret/subkeys/{p}", expect=200)
    diff.get(f"secret/subkeys/{p}?version=1", expect=200)
    for depth in (0, 1, 2, 3):
        diff.get(f"secret/subkeys/{p}?version=1&depth={depth}", expect=200)
    diff.get(f"secret/subkeys/{p}?version=1&depth=-1")
    diff.get(f"secret/subkeys/{p}?version=1&depth=abc")
    diff.get(f"secret/subkeys/{p}?version=9", expect=404)
    diff.get(f"secret/subkeys/{unique('subk-missing')}", expect=404)


def test_kv_config(diff):
    m = new_mount(diff)
    diff.get(f"{m}/config", expect=200)
    diff.post(f"{m}/config", json={"max_versions": 2, "cas_required": True, "delete_version_after": "2h"},
              expect=204)
    diff.get(f"{m}/config", expect=200)
    diff.post(f"{m}/data/k", json={"data": {"v": "1"}}, expect=400)  # cas required by the mount
    for i in range(3):
        diff.post(f"{m}/data/k", json={"data": {"v": str(i)}, "options": {"cas": i}}, expect=200)
    diff.get(f"{m}/metadata/k", expect=200)  # mount max_versions prunes; key max_versions stays 0
    diff.post(f"{m}/config", json={"max_versions": "abc"}, expect=400)
    diff.post(f"{m}/config", json={"cas_required": "nope"}, expect=400)
    diff.post(f"{m}/config", json={"delete_version_after": "soon"}, expect=400)
    diff.post(f"{m}/config", json={"delete_version_after": 0, "cas_required": "false"}, expect=204)
    diff.post(f"{m}/config", json={}, expect=204)
    diff.get(f"{m}/config", expect=200)
    diff.delete(f"{m}/config")
    diff.merge_patch(f"{m}/config", {"max_versions": 1})


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "secret/foo"),
        ("POST", "secret/foo"),
        ("DELETE", "secret/foo"),
        ("GET", "secret/foo/bar"),
        ("GET", "secret/data"),
        ("GET", "secret/metadata"),
        ("GET", "secret/metadata/"),
        ("GET", "secret/subkeys/"),
        ("POST", "secret/delete/"),
        ("GET", "secret/delete/x"),
        ("GET", "secret/destroy/x"),
        ("GET", "secret/undelete/x"),
        ("GET", "secret/"),
        ("GET", "secret"),
    ],
)
def test_kv_paths_outside_the_api(diff, method, path):
    diff.call(method, path, json={"data": {"a": "1"}} if method == "POST" else None)


@pytest.mark.parametrize(
    "method,status", [("GET", 404), ("POST", 400), ("PUT", 400), ("LIST", 405), ("DELETE", 204)]
)
def test_kv_data_with_an_empty_secret_path(diff, method, status):
    diff.call(method, "secret/data/", json={"data": {"a": "1"}} if method in ("POST", "PUT") else None,
              expect=status)


@pytest.mark.parametrize(
    "path",
    ["secret/data/{p}/", "secret/metadata/{p}/", "secret/delete/{p}/", "secret/destroy/{p}/", "secret/config/",
     "sys/mounts/{p}-m/", f"{unique('nomount')}/x/"],
)
def test_writes_to_a_path_ending_in_a_slash(diff, path):
    p = unique("wslash")
    write(diff, p, {"a": "1"})
    diff.post(path.format(p=p), json={"data": {"a": "2"}, "versions": [1], "type": "kv-v2"}, expect=400)
    diff.merge_patch(path.format(p=p), {"data": {"a": "2"}}, expect=400)
    diff.get(f"secret/data/{p}", expect=200)


# --------------------------------------------------------------------------------------------
# sys/mounts
# --------------------------------------------------------------------------------------------


def test_mount_enable_read_tune_list_disable(diff):
    m = unique("mnt")
    diff.post(f"sys/mounts/{m}", json={"type": "kv-v2", "description": "a test mount"}, expect=204)
    diff.get(f"sys/mounts/{m}", expect=200)
    diff.get(f"sys/mounts/{m}/", expect=200)
    diff.get("sys/mounts", project=pick(f"{m}/", "secret/"), expect=200)
    diff.get(f"sys/internal/ui/mounts/{m}", expect=200)
    write(diff, "x", {"a": "1"}, mount=m)
    diff.delete(f"sys/mounts/{m}", expect=204)
    diff.get("sys/mounts", project=pick(f"{m}/", "secret/"), expect=200)
    diff.get(f"sys/mounts/{m}", expect=400)
    diff.get(f"{m}/data/x", expect=404)
    diff.delete(f"sys/mounts/{m}", expect=204)  # disabling twice is fine


def test_mount_tune_read(diff):
    diff.get("sys/mounts/secret/tune", expect=200)
    m = new_mount(diff, config={"default_lease_ttl": "1h"})
    diff.get(f"sys/mounts/{m}/tune", expect=200)  # the system's max_lease_ttl


def test_mount_tune_read_of_unknown_mount(diff):
    diff.get(f"sys/mounts/{unique('nomnt')}/tune")


@pytest.mark.parametrize(
    "body",
    [
        {"type": "kv", "options": {"version": "2"}},
        {"type": "kv", "options": {"version": 2}},
        {"type": "kv-v2", "options": {"version": "2"}},
        {"type": "kv-v2", "config": {}, "local": False, "seal_wrap": False},
        {"type": "kv-v2", "config": {"default_lease_ttl": "1h", "max_lease_ttl": 7200}},
        {"type": "kv-v2", "local": True, "seal_wrap": True},
        {"type": "kv-v2", "options": {"version": "2", "other": "x"}},
        {"type": "kv-v2", "description": 5},
    ],
    ids=lambda b: json.dumps(b),
)
def test_mount_enable_kv_v2_variants(diff, body):
    m = unique("mvar")
    diff.post(f"sys/mounts/{m}", json=body, expect=204)
    diff.get(f"sys/mounts/{m}", expect=200)
    if "config" in body and body["config"]:  # explicit TTLs read back as set
        diff.get(f"sys/mounts/{m}/tune", expect=200)


def test_mount_default_description(diff):
    m = unique("mdesc")
    diff.post(f"sys/mounts/{m}", json={"type": "kv-v2"}, expect=204)
    diff.get(f"sys/mounts/{m}", expect=200)
    diff.get(f"sys/mounts/{m}/tune", expect=200)
    diff.get("sys/mounts", project=pick(f"{m}/"), expect=200)


def test_mount_enable_with_a_form_body(diff):
    m = unique("mform")
    diff.post(f"sys/mounts/{m}", data="type=kv-v2&description=from+a+form", headers=FORM, expect=204)
    diff.get(f"sys/mounts/{m}", expect=200)


@pytest.mark.parametrize(
    "body",
    [{"type": "kv"}, {"type": "kv", "options": {"version": "1"}}, {"type": "kv-v1"}, {"type": "transit"}],
    ids=lambda b: json.dumps(b),
)
def test_mount_enable_other_than_kv_v2(diff, body):
    """bao mounts these; kvsync refuses them with 400 (README)."""
    diff.allow(Decision(where="$status", readme=ONLY_KV_V2), Decision(where="<root>", readme=ONLY_KV_V2))
    diff.post(f"sys/mounts/{unique('mother')}", json=body, expect=204)


@pytest.mark.parametrize(
    "body",
    [{}, {"type": ""}, {"type": "no-such-engine"}, {"type": "kv-v2", "options": "not-a-map"},
     {"type": "kv", "options": {"version": "3"}}],
    ids=lambda b: json.dumps(b),
)
def test_mount_enable_refusals(diff, body):
    m = unique("mref")
    diff.post(f"sys/mounts/{m}", json=body, expect=400)
    diff.get("sys/mounts", project=pick(f"{m}/"), expect=200)


def test_mount_enable_on_taken_or_reserved_paths(diff):
    m = new_mount(diff)
    write(diff, "keep", {"a": "1"}, mount=m)
    diff.post(f"sys/mounts/{m}", json={"type": "kv-v2"}, expect=400)
    diff.post(f"sys/mounts/{m}/nested", json={"type": "kv-v2"}, expect=400)
    diff.post("sys/mounts/secret", json={"type": "kv-v2"}, expect=400)
    diff.post(f"sys/mounts/sys/{unique('x')}", json={"type": "kv-v2"}, expect=400)
    diff.post("sys/mounts/sys", json={"type": "kv-v2"}, expect=400)
    diff.get(f"{m}/data/keep", expect=200)


def test_mount_disable_refusals(diff):
    diff.delete("sys/mounts/sys", expect=400)
    diff.delete(f"sys/mounts/{unique('never')}", expect=204)


def test_mounts_listing_has_the_same_secret_entry(diff):
    diff.get("sys/mounts", project=pick("secret/"), expect=200)
    diff.get("sys/mounts/secret", expect=200)


def test_mounts_listing_sys_entry(diff):
    diff.get("sys/mounts", project=pick("sys/"), expect=200)
    diff.get("sys/mounts/sys", expect=200)


# --------------------------------------------------------------------------------------------
# sys/health, sys/internal/ui/mounts, auth/token/lookup-self
# --------------------------------------------------------------------------------------------

HEALTH_COMMON = ("initialized", "sealed", "standby", "replication_performance_mode", "replication_dr_mode",
                 "server_time_utc", "version", "cluster_name", "cluster_id")
HEALTH_VAULT_ONLY = ("performance_standby", "enterprise", "echo_duration_ms", "clock_skew_ms", "removed_from_cluster")


def health_common(body):
    return {k: v for k, v in body.items() if k in HEALTH_COMMON} if isinstance(body, dict) else body


@pytest.mark.parametrize("token", [None, "garbage-token", "root"])
def test_health(diff, token):
    kw = {} if token == "root" else {"token": token}
    diff.get("sys/health", project=health_common, expect=200, **kw)


def test_health_keys(diff):
    diff.allow(*(Decision(where=k, kind="extra", readme=HEALTH_KEYS) for k in HEALTH_VAULT_ONLY))
    diff.get("sys/health", token=None, expect=200)


@pytest.mark.parametrize(
    "query",
    ["standbyok=true", "perfstandbyok=true", "sealedcode=299", "standbycode=299", "uninitcode=299",
     "drsecondarycode=299", "performancestandbycode=299", "standbyok=true&standbycode=299", "bogus=1"],
)
def test_health_query_parameters(diff, query):
    diff.get(f"sys/health?{query}", token=None, project=health_common, expect=200)


@pytest.mark.parametrize("code", [200, 201, 299, 429, 503])
def test_health_activecode(diff, code):
    diff.get(f"sys/health?activecode={code}", token=None, project=health_common, expect=code)
    diff.call("HEAD", f"sys/health?activecode={code}", token=None, expect=code)


@pytest.mark.parametrize("query", ["activecode=abc", "sealedcode=1.5", "standbycode=", "standbyok=maybe"])
def test_health_bad_query_parameters(diff, query):
    diff.allow(Decision(where="errors", kind="list", readme=ERROR_TEXTS))  # bao: {"errors": []}
    diff.get(f"sys/health?{query}", token=None, expect=400)


def test_health_cluster_id(diff):
    first = diff.get("sys/health", token=None, project=health_common, expect=200)
    again = diff.get("sys/health", token=None, project=health_common, expect=200)
    for side in ("kv", "bao"):
        a, b = getattr(first, side), getattr(again, side)
        assert (a["cluster_id"], a["cluster_name"]) == (b["cluster_id"], b["cluster_name"]), side


def test_health_head(diff):
    diff.call("HEAD", "sys/health", token=None, expect=200)


def test_internal_ui_mounts(diff):
    diff.get("sys/internal/ui/mounts/secret", expect=200)
    diff.get("sys/internal/ui/mounts/secret/", expect=200)
    diff.get("sys/internal/ui/mounts/secret/foo/bar", expect=200)
    diff.get(f"sys/internal/ui/mounts/{unique('unmounted')}/foo", expect=403)
    diff.get("sys/internal/ui/mounts/secret/foo", token=None, expect=403)
    m = new_mount(diff, description="ui")
    diff.get(f"sys/internal/ui/mounts/{m}/a/b/c", expect=200)


ROOT_TOKEN_DECISIONS = (Decision(where="data.display_name", kind="value", readme=ROOT_TOKEN),
                        Decision(where="data.path", kind="value", readme=ROOT_TOKEN))


def test_lookup_self_dev_root_token(diff):
    diff.allow(*ROOT_TOKEN_DECISIONS)
    diff.get("auth/token/lookup-self", expect=200)


def test_lookup_self(diff):
    diff.allow(*ROOT_TOKEN_DECISIONS)
    diff.get("auth/token/lookup-self", expect=200)
    diff.post("auth/token/lookup-self", expect=200)
    diff.post("auth/token/lookup-self", json={}, expect=200)
    diff.post("auth/token/lookup-self?list=true", json={}, expect=200)
    diff.get("auth/token/lookup-self", token=None, expect=403)
    diff.get("auth/token/lookup-self", token="not-a-token", expect=403)


# --------------------------------------------------------------------------------------------
# ACL policies, capabilities, the start-up endpoints, sys/auth
# --------------------------------------------------------------------------------------------

POLICY_FIELDS = "Policy reads have Vault's fields (`name` and `policy`, `rules` on the legacy `sys/policy` route)"
POLICY_NAME_WARNING = "Writing a policy whose name has capitals answers 200 with Vault's warning"
LEADER = "`sys/leader` has Vault's keys when HA is off"
LEADER_SHARDS = "kvsync adds `shard_holders`: which host holds which sync shard"
SEAL_STATUS = "`sys/seal-status` has Vault's keys (`build_date`, `removed_from_cluster`), not OpenBao's `commit_date`"
CAPABILITIES_400 = "`sys/capabilities` without a `token` answers 400 `no token found`"
LEADER_KEYS = ("is_self", "active_time", "leader_address", "leader_cluster_address", "performance_standby",
               "performance_standby_last_remote_wal")
POLICY_CAS_KEYS = ("version", "modified", "cas_required", "allow_slashes_in_identity_templates",
                   "allow_wildcards_in_identity_templates")


def allow_policy_fields(diff, legacy=False, keys=POLICY_CAS_KEYS):
    """OpenBao's policy check-and-set fields, in `data` (and at the top level on the legacy route)."""
    for key in keys:
        diff.allow(Decision(where=f"data.{key}", kind="missing", readme=POLICY_FIELDS))
        if legacy:
            diff.allow(Decision(where=key, kind="missing", readme=POLICY_FIELDS))


POLICY_HCL = 'path "secret/data/app/*" {\n  capabilities = ["read", "list"]\n}\n'
POLICY_JSON = '{"path": {"secret/data/x": {"capabilities": ["read"]}}}'


def test_policies_crud(diff):
    allow_policy_fields(diff)
    name = unique("pol")
    diff.put(f"sys/policies/acl/{name}", json={"policy": POLICY_HCL}, expect=204)
    diff.get(f"sys/policies/acl/{name}", expect=200)
    diff.post(f"sys/policies/acl/{name}", json={"policy": POLICY_JSON}, expect=204)
    diff.get(f"sys/policies/acl/{name}", expect=200)
    diff.list("sys/policies/acl", project=pick("keys"), expect=200)
    diff.get("sys/policies/acl?list=true", project=pick("keys"), expect=200)
    diff.get("sys/policies/acl", expect=405)
    diff.delete(f"sys/policies/acl/{name}", expect=204)
    diff.get(f"sys/policies/acl/{name}", expect=404)
    diff.delete(f"sys/policies/acl/{name}", expect=204)


def test_policies_builtins_and_refusals(diff):
    # root was never written: it has no modification time.
    allow_policy_fields(diff, keys=[k for k in POLICY_CAS_KEYS if k != "modified"])
    diff.get("sys/policies/acl/root", expect=200)
    diff.put("sys/policies/acl/root", json={"policy": POLICY_HCL}, expect=400)
    diff.delete("sys/policies/acl/root", expect=400)
    diff.delete("sys/policies/acl/default", expect=400)
    diff.put(f"sys/policies/acl/{unique('empty')}", json={}, expect=400)
    diff.put(f"sys/policies/acl/{unique('bad')}", json={"policy": "path {"}, expect=400)


def test_policy_names_are_lower_cased(diff):
    allow_policy_fields(diff)
    diff.allow(Decision(where="$status", request="PUT", readme=POLICY_NAME_WARNING),
               Decision(where="<root>", request="PUT", readme=POLICY_NAME_WARNING))
    name = unique("Loud")
    diff.put(f"sys/policies/acl/{name}", json={"policy": POLICY_HCL}, expect=204)
    diff.get(f"sys/policies/acl/{name.lower()}", expect=200)
    diff.get(f"sys/policies/acl/{name}", expect=200)
    diff.delete(f"sys/policies/acl/{name}", expect=204)


def test_legacy_policy_routes(diff):
    allow_policy_fields(diff, legacy=True)
    name = unique("legacy")
    diff.put(f"sys/policy/{name}", json={"policy": POLICY_HCL}, expect=204)
    diff.put(f"sys/policy/{name}", json={"rules": POLICY_HCL}, expect=200)
    diff.get(f"sys/policy/{name}", expect=200)
    diff.get("sys/policy", project=pick("keys", "policies"), expect=200)
    diff.list("sys/policy", project=pick("keys", "policies"), expect=200)
    diff.delete(f"sys/policy/{name}", expect=204)
    diff.get(f"sys/policy/{name}", expect=404)


def test_capabilities(diff):
    diff.post("sys/capabilities-self", json={"paths": ["secret/data/a", "sys/mounts"]}, expect=200)
    diff.post("sys/capabilities-self", json={"path": "secret/data/a"}, expect=200)
    diff.post("sys/capabilities-self", json={"paths": "a,b"}, expect=200)
    diff.post("sys/capabilities-self", json={}, expect=400)
    diff.post("sys/capabilities", json={"token": "nope", "paths": ["a"]}, expect=400)
    diff.allow(Decision(where="$status", request=r"POST sys/capabilities$", readme=CAPABILITIES_400))
    diff.post("sys/capabilities", json={"paths": ["a"]}, expect=500)
    diff.post("sys/capabilities-accessor", json={"accessor": "nope", "paths": ["a"]}, expect=400)


def test_start_up_endpoints(diff):
    diff.allow(Decision(where="build_date", kind="extra", readme=SEAL_STATUS),
               Decision(where="removed_from_cluster", kind="extra", readme=SEAL_STATUS),
               Decision(where="commit_date", kind="missing", readme=SEAL_STATUS),
               Decision(where="storage_type", kind="value", readme=SEAL_STATUS))
    for key in LEADER_KEYS:
        diff.allow(Decision(where=key, kind="extra", request="sys/leader", readme=LEADER))
    diff.allow(Decision(where="shard_holders", kind="extra", request="sys/leader", readme=LEADER_SHARDS))
    for path in ("sys/seal-status", "sys/leader", "sys/init"):
        diff.get(path, expect=200)
        diff.get(path, token=None, expect=200)


def test_auth_methods(diff):
    diff.get("sys/auth", expect=200)
    diff.get("sys/auth", token=None, expect=403)


# --------------------------------------------------------------------------------------------
# HTTP conventions
# --------------------------------------------------------------------------------------------


def test_unknown_mount_is_404_no_handler(diff):
    m = unique("nomount")
    diff.get(f"{m}/data/x", expect=404)
    diff.post(f"{m}/data/x", json={"data": {"a": "b"}}, expect=404)
    diff.list(f"{m}/", expect=404)
    diff.delete(f"{m}/x", expect=404)


@pytest.mark.parametrize(
    "method,path",
    [
        ("LIST", "secret/data/{p}"),
        ("GET", "secret/data/{p}?list=true"),
        ("PATCH", "sys/mounts/{p}"),
        ("PUT", "sys/mounts"),
        ("DELETE", "sys/mounts"),
    ],
)
def test_operation_not_supported_on_a_path_is_405(diff, method, path):
    p = unique("m405")
    write(diff, p, {"a": "1"})
    diff.call(method, path.format(p=p), data="{}", headers=MERGE, expect=405)
    diff.get(f"secret/data/{p}", expect=200)


@pytest.mark.parametrize(
    "method,path",
    [("FOO", "secret/data/{p}"), ("FOO", "secret/metadata/{p}"), ("FOO", "sys/mounts"), ("POST", "sys/health")],
)
def test_unknown_method_is_405(diff, method, path):
    # bao answers these with an empty errors list, kvsync names the problem
    diff.allow(Decision(where="errors", kind="list", readme=ERROR_TEXTS))
    p = unique("m405")
    write(diff, p, {"a": "1"})
    diff.call(method, path.format(p=p), expect=405, **({"token": None} if path.startswith("sys/health") else {}))
    diff.get(f"secret/data/{p}", expect=200)


@pytest.mark.parametrize(
    "path,status",
    [("secret/data/{p}", 405), ("secret/data/{p}-missing", 405), ("secret/metadata/{p}", 405),
     ("secret/config", 405), ("secret/foo", 405), ("sys/mounts", 405), ("sys/mounts/secret", 405),
     ("sys/foo", 404), ("auth/token/lookup-self", 405), (f"{unique('nomount')}/x", 404)],
)
def test_head_outside_sys_health(diff, path, status):
    """HEAD is served by sys/health only (the body of a HEAD answer is never sent)."""
    p = unique("head")
    write(diff, p, {"a": "1"})
    diff.call("HEAD", path.format(p=p), expect=status)


def test_head_without_a_token(diff):
    diff.call("HEAD", "secret/config", token=None, expect=403)


def test_options_method(diff):
    diff.allow(Decision(where="$status", readme=OPTIONS_405))  # bao: 400 internal-only operation
    p = unique("opt")
    write(diff, p, {"a": "1"})
    diff.call("OPTIONS", f"secret/data/{p}", expect=400)
    diff.call("OPTIONS", "sys/mounts", expect=400)


@pytest.mark.parametrize(
    "raw",
    ["{not json", '{"data": {"a": "1"}', "[1, 2", '{"data": }', '["data"]', "null", "5", '"text"', " ",
     '{"data": {"a": "1"}} trailing'],
)
def test_malformed_or_non_object_json(diff, raw):
    p = unique("badjson")
    diff.post(f"secret/data/{p}", data=raw, headers={"Content-Type": "application/json"}, expect=400)
    diff.get(f"secret/data/{p}", expect=404)


def test_empty_bodies(diff):
    p = unique("nobody")
    diff.post(f"secret/data/{p}", data="", expect=400)  # no data provided
    diff.post(f"secret/data/{p}", json={}, expect=400)
    diff.post(f"secret/data/{p}", json={"options": {}}, expect=400)
    write(diff, p, {"a": "1"})
    diff.post(f"secret/metadata/{p}", data="", expect=204)
    diff.post(f"secret/delete/{p}", data="", expect=400)


@pytest.mark.parametrize(
    "data",
    [["a", "b"], "a string", 5, True, "a=b"],
    ids=lambda d: json.dumps(d),
)
def test_kv_data_not_a_map(diff, data):
    p = unique("notmap")
    diff.post(f"secret/data/{p}", json={"data": data}, expect=400)
    diff.get(f"secret/data/{p}", expect=404)


def test_kv_data_null(diff):
    p = unique("null")
    write(diff, p, None)
    diff.get(f"secret/data/{p}", expect=200)
    diff.get(f"secret/subkeys/{p}", expect=200)
    write(diff, p, {"a": "1"})
    diff.merge_patch(f"secret/data/{p}", {"data": None}, expect=200)  # replaces the secret (RFC 7396)
    diff.get(f"secret/data/{p}", expect=200)
    diff.get(f"secret/data/{p}?version=2", expect=200)


@pytest.mark.parametrize(
    "options",
    ["not-a-map", ["cas", 1], {"cas": None}, {"cas": True}, {"cas": -1}, {"other": 1}],
    ids=lambda o: json.dumps(o),
)
def test_kv_write_options(diff, options):
    p = unique("opts")
    write(diff, p, {"a": "1"})
    diff.post(f"secret/data/{p}", json={"data": {"a": "2"}, "options": options})
    diff.get(f"secret/data/{p}", expect=200)


def test_form_bodies(diff):
    p = unique("form")
    write(diff, p, {"a": "1"})
    diff.post(f"secret/metadata/{p}", data="max_versions=5&cas_required=true", headers=FORM, expect=204)
    diff.get(f"secret/metadata/{p}", expect=200)
    diff.post(f"secret/data/{p}", data="data=abc", headers=FORM, expect=400)
    diff.post(f"secret/delete/{p}", data="versions=1", headers=FORM, expect=204)
    diff.post(f"secret/undelete/{p}", data="versions=1", headers=FORM, expect=204)
    diff.get(f"secret/metadata/{p}", expect=200)
    # a form body under another content type is parsed as JSON (and fails)
    diff.post(f"secret/metadata/{p}", data="max_versions=6", headers={"Content-Type": "text/plain"}, expect=400)
    diff.post(f"secret/metadata/{p}", data="max_versions=6", expect=400)


def test_unknown_body_fields_on_a_write_that_answers(diff):
    p = unique("unk")
    diff.post(f"secret/data/{p}", json={"data": {"a": "1"}, "bogus_field": 1}, expect=200)
    diff.get(f"secret/data/{p}", expect=200)


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "secret/metadata/{p}", {"max_versions": 2, "bogus_field": 1}),
        ("POST", "sys/mounts/{p}-m", {"type": "kv-v2", "bogus_field": 1}),
        ("DELETE", "secret/data/{p}?bogus_field=1", None),
        ("DELETE", "secret/metadata/{p}?bogus_field=1", None),
    ],
)
def test_unknown_fields_on_a_204_call(diff, method, path, body):
    # bao answers 204 without a body
    diff.allow(Decision(where="$status", readme=WARN_INSTEAD_OF_204),
               Decision(where="<root>", kind="type", readme=WARN_INSTEAD_OF_204))
    p = unique("unk204")
    write(diff, p, {"a": "1"})
    diff.call(method, path.format(p=p), json=body, expect=204)


@pytest.mark.parametrize(
    "path",
    ["secret/data/{p}?bogus=1", "secret/metadata/{p}?bogus=1&version=1", "secret/subkeys/{p}?bogus=1",
     "secret/config?bogus=1"],
)
def test_unknown_query_parameters_on_kv_reads(diff, path):
    p = unique("q")
    write(diff, p, {"a": "1"})
    diff.get(path.format(p=p), expect=200)


@pytest.mark.parametrize(
    "path",
    ["sys/mounts?bogus=1", "sys/mounts/secret?bogus=1", "sys/mounts/secret/tune?bogus=1",
     "sys/internal/ui/mounts/secret?bogus=1", "auth/token/lookup-self?bogus=1", "sys/mounts/secret?type=kv"],
)
def test_unknown_query_parameters_on_sys_reads(diff, path):
    if "lookup-self" in path:
        diff.allow(*ROOT_TOKEN_DECISIONS)
    diff.get(path, project=pick("secret/") if path.startswith("sys/mounts?") else None, expect=200)


def test_delete_ignores_its_body(diff):
    p = unique("delbody")
    write(diff, p, {"v": "1"})
    write(diff, p, {"v": "2"})
    diff.delete(f"secret/data/{p}", json={"versions": [1]}, expect=204)
    diff.get(f"secret/metadata/{p}", expect=200)
    diff.delete(f"secret/metadata/{p}", data="not json at all", expect=204)
    diff.get(f"secret/metadata/{p}", expect=404)


def test_tokens_and_auth_headers(diff, dev_server, bao_server):
    p = unique("auth")
    write(diff, p, {"a": "1"})
    diff.get(f"secret/data/{p}", token=None, expect=403)
    diff.get(f"secret/data/{p}", token="wrong-" + unique(), expect=403)
    diff.post(f"secret/data/{p}", token=None, json={"data": {"a": "evil"}}, expect=403)
    diff.get("sys/mounts", token=None, expect=403)
    diff.post(f"sys/mounts/{unique('evil')}", token="wrong", json={"type": "kv-v2"}, expect=403)
    diff.get(f"secret/data/{p}", token=None, headers={"Authorization": "Bearer wrong"}, expect=403)
    diff.get(f"secret/data/{p}", expect=200)
    # Authorization: Bearer works like X-Vault-Token: each server gets its own root token
    rk = diff.kvsync.get(f"secret/data/{p}", token=None, headers={"Authorization": f"Bearer {dev_server.token}"})
    rb = diff.bao.get(f"secret/data/{p}", token=None, headers={"Authorization": f"Bearer {bao_server.token}"})
    assert (rk.status_code, rb.status_code) == (200, 200), (rk.text, rb.text)
    diff.get(f"secret/data/{p}", headers={"X-Vault-Request": "true"}, expect=200)


def test_encoded_and_dotted_paths(diff):
    # (GET secret/data/<p>/ is left out: bao answers it with a 500, "could not find version data")
    p = unique("enc")
    write(diff, p, {"a": "1"})
    write(diff, f"{p}/sub", {"a": "2"})
    diff.get(f"secret/data/{p}%2Fsub", expect=200)
    diff.get(f"secret/data/./{p}")


def test_repeated_query_parameter(diff):
    p = unique("rep")
    write(diff, p, {"a": "1"})
    write(diff, p, {"a": "2"})
    diff.get(f"secret/data/{p}?version=1&version=2", expect=400)
    diff.get(f"secret/data/{p}?version=1&version=1", expect=400)
    diff.get(f"secret/subkeys/{p}?depth=1&depth=2", expect=400)


def test_metadata_read_with_a_trailing_slash(diff):
    p = unique("slash")
    write(diff, p, {"a": "1"})
    diff.get(f"secret/metadata/{p}/", expect=200)
    diff.get(f"secret/metadata/{p}//", expect=200)
    diff.get(f"secret/data/{unique('slash-missing')}/", expect=404)
    diff.delete(f"secret/data/{p}/", expect=204)  # the same secret: soft-deletes it
    diff.get(f"secret/data/{p}", expect=404)
    diff.delete(f"secret/metadata/{p}/", expect=204)  # ... and deletes it
    diff.get(f"secret/metadata/{p}", expect=404)


def test_large_value_round_trip(diff):
    p = unique("large")
    write(diff, p, {"v": "x" * (1024 * 1024)})
    diff.get(f"secret/data/{p}", expect=200)


@pytest.mark.parametrize("namespace", ["", "/", "root"])
def test_root_namespace_header(diff, namespace):
    p = unique("ns")
    write(diff, p, {"a": "1"})
    diff.get(f"secret/data/{p}", headers={"X-Vault-Namespace": namespace}, expect=200)


def test_unknown_namespace_header(diff):
    diff.get("secret/config", headers={"X-Vault-Namespace": unique("ns") + "/"}, expect=404)


def test_response_wrapping_request(diff):
    # bao answers with wrap_info (a wrapping token) and data null; kvsync refuses.
    diff.allow(Decision(where="$status", readme=NO_WRAPPING), Decision(where="*", readme=NO_WRAPPING))
    p = unique("wrap")
    write(diff, p, {"a": "1"})
    pair = diff.get(f"secret/data/{p}", headers={"X-Vault-Wrap-TTL": "60s"}, expect=200)
    assert pair.kvsync_response.status_code == 400
    assert pair.kvsync_response.json() == {"errors": ["response wrapping is not supported"]}


# ---- rate-limit quotas ------------------------------------------------------------------------
# The bao server is shared by the whole session: quotas here are on fresh mounts only (never
# global), with long intervals, deleted at the end, and the quota configuration is restored.

QUOTA_EXEMPT_DEFAULT = [
    "sys/generate-recovery-token/attempt", "sys/generate-recovery-token/update", "sys/generate-root/attempt",
    "sys/generate-root/update", "sys/health", "sys/seal-status", "sys/unseal",
]


def has_key(name):
    """A projection of a listing to whether `name` is among its keys (other tests' keys differ)."""

    def project(body):
        keys = body.get("data", {}).get("keys", []) if isinstance(body, dict) else []
        return {"listed": name in keys}

    return project


def test_rate_limit_quotas(diff):
    m = new_mount(diff)
    write(diff, "app", {"a": "1"}, mount=m)
    on_mount, on_app = unique("qm"), unique("qa")
    try:
        diff.post(f"sys/quotas/rate-limit/{on_mount}", json={"rate": 2, "path": f"{m}/", "interval": "1h"},
                  expect=204)
        diff.get(f"sys/quotas/rate-limit/{on_mount}", expect=200)
        diff.post(f"sys/quotas/rate-limit/{on_app}",
                  json={"rate": 1.5, "path": f"/{m}/data/app*", "interval": "1h", "block_interval": "2h"},
                  expect=204)
        diff.get(f"sys/quotas/rate-limit/{on_app}", expect=200)
        diff.list("sys/quotas/rate-limit", project=has_key(on_app), expect=200)
        diff.get(f"sys/quotas/rate-limit/{unique('none')}", expect=404)
        # Refused writes.
        diff.post(f"sys/quotas/rate-limit/{unique('dup')}", json={"rate": 1, "path": m}, expect=400)
        diff.post(f"sys/quotas/rate-limit/{unique('bad')}", json={"rate": 1, "path": unique("nope") + "/"},
                  expect=400)
        diff.post(f"sys/quotas/rate-limit/{unique('bad')}", json={"rate": 0, "path": m}, expect=400)
        diff.post(f"sys/quotas/rate-limit/{unique('bad')}", json={"rate": 1, "interval": "x", "path": m},
                  expect=400)
        # Enforcement: the mount's bucket and the path's hold 2 each; then 429 in Vault's envelope.
        diff.get(f"{m}/data/other", expect=404)
        diff.get(f"{m}/metadata/app", expect=200)
        diff.get(f"{m}/data/other", expect=429)
        diff.get(f"{m}/data/app", expect=200)
        diff.get(f"{m}/data/apple", expect=404)  # a rate of 1.5 holds 2 (rounded, as Vault)
        diff.get(f"{m}/data/app", expect=429)
        diff.get("secret/config", expect=200)
        diff.delete(f"sys/quotas/rate-limit/{on_app}", expect=204)
        diff.delete(f"sys/quotas/rate-limit/{on_mount}", expect=204)
        diff.get(f"{m}/data/app", expect=200)
        diff.get(f"sys/quotas/rate-limit/{on_mount}", expect=404)
        diff.delete(f"sys/quotas/rate-limit/{on_mount}", expect=204)
    finally:
        for name in (on_app, on_mount):
            diff.kvsync.delete(f"sys/quotas/rate-limit/{name}")
            diff.bao.delete(f"sys/quotas/rate-limit/{name}")


def test_quota_config(diff):
    try:
        diff.get("sys/quotas/config", expect=200)
        diff.post("sys/quotas/config", json={"enable_rate_limit_response_headers": True,
                                             "rate_limit_exempt_paths": ["secret/data/ci*"]}, expect=204)
        diff.get("sys/quotas/config", expect=200)
        diff.post("sys/quotas/config", json={}, expect=204)
        diff.get("sys/quotas/config", expect=200)
        diff.post("sys/quotas/config", json={"enable_rate_limit_audit_logging": "maybe"}, expect=400)
    finally:
        for side in (diff.kvsync, diff.bao):
            side.post("sys/quotas/config", json={"rate_limit_exempt_paths": QUOTA_EXEMPT_DEFAULT})
