"""Raw HTTP against a dev-mode kvsync: envelopes, headers, methods and bad input (Vault's generic HTTP
behaviour, the KV-v2 and mount subset; PATCH requires `application/merge-patch+json` (else 415), unknown
fields are ignored and reported in `warnings`, only KV-v2 can be mounted). After every test the server must still be alive and answer a valid request."""

from __future__ import annotations

import http.client as httpclient
import json
import select
import socket
import time
from urllib.parse import urlsplit

import pytest

from kvsync_helpers import ACCESSOR_RE, ENVELOPE_KEYS, UUID_RE, assert_alive, unique

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _server_survives(dev_server):
    yield
    assert_alive(dev_server.server, dev_server.token)


def write_secret(http, path, data, mount="secret"):
    r = http.post(f"{mount}/data/{path}", json={"data": data})
    assert r.status_code == 200, r.text
    return r.json()


def assert_errors_envelope(r, status):
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("Content-Type") == "application/json", r.headers.get("Content-Type")
    body = r.json()
    assert set(body) == {"errors"}, body
    assert isinstance(body["errors"], list)
    assert all(isinstance(e, str) for e in body["errors"])
    return body["errors"]


def assert_error(r, status, *phrases):
    errs = assert_errors_envelope(r, status)
    assert errs, f"expected a non-empty errors list, got {r.text[:300]}"
    joined = " ".join(errs)
    for p in phrases:
        assert p.lower() in joined.lower(), f"{p!r} not in {errs}"
    return errs


def assert_success_envelope(r, mount_type, status=200):
    assert r.status_code == status, f"{r.status_code}: {r.text[:500]}"
    assert r.headers.get("Content-Type") == "application/json"
    assert r.headers.get("Cache-Control") == "no-store"
    body = r.json()
    assert set(body) == ENVELOPE_KEYS, sorted(body)
    assert UUID_RE.match(body["request_id"]), body["request_id"]
    assert body["lease_id"] == ""
    assert body["renewable"] is False
    assert body["lease_duration"] == 0
    assert body["wrap_info"] is None
    assert body["auth"] is None
    assert body["mount_type"] == mount_type
    return body


def mount_paths(http):
    r = http.get("sys/mounts")
    assert r.status_code == 200
    return set(r.json()["data"])


# --------------------------------------------------------------------------------------------
# envelopes and headers
# --------------------------------------------------------------------------------------------


def test_dev_server_prints_root_token(dev_server):
    deadline = time.monotonic() + 10
    while f"Root Token: {dev_server.token}" not in dev_server.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"Root Token: {dev_server.token}" in dev_server.output()
    assert f"Api Address: {dev_server.addr}" in dev_server.output()


def test_kv_success_envelopes(http):
    p = unique("env")
    r = http.post(f"secret/data/{p}", json={"data": {"a": "b"}, "options": {}})
    body = assert_success_envelope(r, "kv")
    assert body["warnings"] is None
    assert body["data"]["version"] == 1

    body = assert_success_envelope(http.get(f"secret/data/{p}"), "kv")
    assert body["data"]["data"] == {"a": "b"}
    assert body["warnings"] is None

    body = assert_success_envelope(http.get(f"secret/metadata/{p}"), "kv")
    assert body["data"]["current_version"] == 1

    body = assert_success_envelope(http.list("secret/metadata/"), "kv")
    assert p in body["data"]["keys"]

    body = assert_success_envelope(http.get("secret/config"), "kv")
    assert "max_versions" in body["data"]

    body = assert_success_envelope(http.get(f"secret/subkeys/{p}"), "kv")
    assert body["data"]["subkeys"] == {"a": None}


def test_sys_success_envelopes(http):
    body = assert_success_envelope(http.get("sys/internal/ui/mounts/secret/foo"), "system")
    assert body["data"]["type"] == "kv"

    r = http.get("sys/mounts/secret")
    assert r.status_code == 200, r.text
    body = r.json()
    # a legacy route: data copied to the top level as well, on top of the envelope
    assert ENVELOPE_KEYS <= set(body), sorted(body)
    assert body["mount_type"] == "system"
    assert UUID_RE.match(body["request_id"])
    assert body["type"] == body["data"]["type"] == "kv"
    assert body["accessor"] == body["data"]["accessor"]
    assert ACCESSOR_RE.match(body["data"]["accessor"])
    assert body["data"]["options"] == {"version": "2"}
    for k in ("accessor", "config", "description", "local", "options", "seal_wrap", "type", "uuid"):
        assert k in body["data"], k

    r = http.get("sys/mounts")
    body = r.json()
    assert body["mount_type"] == "system"
    assert body["secret/"] == body["data"]["secret/"]
    assert body["data"]["secret/"]["accessor"] == http.get("sys/mounts/secret").json()["data"]["accessor"]


def test_request_ids_are_unique(http):
    ids = {http.get("secret/config").json()["request_id"] for _ in range(5)}
    assert len(ids) == 5


def test_lookup_self_envelope_and_data(dev_server, http):
    r = http.get("auth/token/lookup-self")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == ENVELOPE_KEYS
    data = body["data"]
    assert data["id"] == dev_server.token
    assert "root" in data["policies"]
    assert isinstance(data["accessor"], str) and data["accessor"]
    assert data["accessor"] != dev_server.token


def cases_for_headers(http):
    p = unique("hdr")
    write_secret(http, p, {"a": "1"})
    return [
        ("GET data", lambda: http.get(f"secret/data/{p}"), 200),
        ("POST data", lambda: http.post(f"secret/data/{p}", json={"data": {"a": "2"}}), 200),
        ("POST metadata (204)", lambda: http.post(f"secret/metadata/{p}", json={"max_versions": 3}), 204),
        ("LIST", lambda: http.list("secret/metadata/"), 200),
        ("health", lambda: http.get("sys/health", token=None), 200),
        ("missing secret", lambda: http.get(f"secret/data/{unique('nope')}"), 404),
        ("unknown mount", lambda: http.get(f"{unique('nomount')}/x"), 404),
        ("invalid kv path", lambda: http.get("secret/foo"), 404),
        ("no token", lambda: http.get(f"secret/data/{p}", token=None), 403),
        ("bad json", lambda: http.post(f"secret/data/{p}", data="{nope"), 400),
        ("405", lambda: http.list(f"secret/data/{p}"), 405),
        (
            "415",
            lambda: http.request(
                "PATCH", f"secret/data/{p}", data="{}", headers={"Content-Type": "application/json"}
            ),
            415,
        ),
    ]


def test_cache_control_and_content_type_on_every_response(http):
    for name, call, status in cases_for_headers(http):
        r = call()
        assert r.status_code == status, f"{name}: {r.status_code} {r.text[:300]}"
        assert r.headers.get("Cache-Control") == "no-store", f"{name}: {r.headers}"
        if status != 204:
            # hvac only parses error bodies when the header is exactly application/json
            assert r.headers.get("Content-Type") == "application/json", f"{name}: {r.headers}"
            json.loads(r.content)


def test_204_has_empty_body(http):
    p = unique("nocontent")
    write_secret(http, p, {"a": "1"})
    for r in (
        http.post(f"secret/metadata/{p}", json={"max_versions": 3}),
        http.post(f"secret/delete/{p}", json={"versions": [1]}),
        http.post(f"secret/undelete/{p}", json={"versions": [1]}),
        http.delete(f"secret/data/{p}"),
        http.delete(f"secret/metadata/{p}"),
    ):
        assert r.status_code == 204, f"{r.request.method} {r.url}: {r.status_code} {r.text}"
        assert r.content == b""


def test_204_has_json_content_type(http):
    p = unique("nocontent-ct")
    write_secret(http, p, {"a": "1"})
    r = http.post(f"secret/metadata/{p}", json={"max_versions": 3})
    assert r.status_code == 204
    assert r.headers.get("Content-Type") == "application/json"


# --------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------


def test_list_method_and_list_query(http):
    base = unique("lst")
    write_secret(http, f"{base}/a", {"x": "1"})
    write_secret(http, f"{base}/d/b", {"x": "1"})
    expected = ["a", "d/"]

    for r in (
        http.list(f"secret/metadata/{base}"),
        http.list(f"secret/metadata/{base}/"),
        http.get(f"secret/metadata/{base}?list=true"),
        http.get(f"secret/metadata/{base}/", params={"list": "true"}),
        http.get(f"secret/metadata/{base}?list=1"),
        http.get(f"secret/metadata/{base}?list=True"),
    ):
        assert r.status_code == 200, f"{r.url}: {r.status_code} {r.text}"
        assert r.json()["data"]["keys"] == expected, r.url

    # Vault answers 400 with an empty errors list here; a message is allowed
    assert_errors_envelope(http.get(f"secret/metadata/{base}?list=notabool"), 400)

    # list=false is a plain read
    r = http.get(f"secret/metadata/{base}/a?list=false")
    assert r.status_code == 200, r.text
    assert r.json()["data"]["current_version"] == 1


def test_patch_requires_merge_patch_content_type(http):
    p = unique("p415")
    write_secret(http, p, {"a": "1"})
    body = json.dumps({"data": {"a": "2"}})
    r = http.request("PATCH", f"secret/data/{p}", data=body, headers={"Content-Type": "application/json"})
    assert_error(r, 415, "merge-patch+json")
    r = http.request("PATCH", f"secret/data/{p}", data=body)  # no content type at all
    # spec: 415; Vault itself answers 400 ("mime: no media type") here: either is a refusal
    assert r.status_code in (400, 415), r.text
    assert_errors_envelope(r, r.status_code)
    # nothing was written
    assert http.get(f"secret/data/{p}").json()["data"]["data"] == {"a": "1"}

    r = http.merge_patch(f"secret/data/{p}", {"data": {"b": "2"}})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["version"] == 2
    r = http.request(
        "PATCH", f"secret/data/{p}", data=json.dumps({"data": {"c": "3"}}),
        headers={"Content-Type": "application/merge-patch+json; charset=utf-8"},
    )
    assert r.status_code == 200, r.text
    assert http.get(f"secret/data/{p}").json()["data"]["data"] == {"a": "1", "b": "2", "c": "3"}


@pytest.mark.parametrize(
    "method,path",
    [
        ("LIST", "secret/data/{p}"),
        ("GET", "secret/data/{p}?list=true"),
        ("FOO", "secret/data/{p}"),
        ("FOO", "secret/metadata/{p}"),
        ("FOO", "sys/mounts"),
    ],
)
def test_unsupported_method_is_405(http, method, path):
    p = unique("m405")
    write_secret(http, p, {"a": "1"})
    r = http.request(method, path.format(p=p))
    assert_errors_envelope(r, 405)
    assert http.get(f"secret/data/{p}").json()["data"]["data"] == {"a": "1"}


def test_delete_takes_query_parameters_and_ignores_the_body(http):
    p = unique("delq")
    write_secret(http, p, {"v": "1"})
    write_secret(http, p, {"v": "2"})
    # Vault ignores a DELETE body and turns the query string into request data; neither breaks it
    r = http.delete(f"secret/data/{p}?versions=1&unused=x", json={"versions": [1]})
    assert r.status_code in (200, 204), r.text  # 200 is allowed when the server adds warnings
    meta = http.get(f"secret/metadata/{p}").json()["data"]
    assert meta["versions"]["2"]["deletion_time"] != ""  # latest deleted
    assert meta["versions"]["1"]["deletion_time"] == ""  # not version 1 from the body
    r = http.delete(f"secret/metadata/{p}?foo=bar")
    assert r.status_code in (200, 204), r.text
    assert http.get(f"secret/metadata/{p}").status_code == 404


# --------------------------------------------------------------------------------------------
# form bodies and lenient coercion
# --------------------------------------------------------------------------------------------


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_form_encoded_mount_enable(http):
    m = unique("formkv")
    r = http.post(f"sys/mounts/{m}", data="type=kv-v2&description=from+a+form", headers=FORM)
    assert r.status_code == 204, r.text
    entry = http.get(f"sys/mounts/{m}").json()["data"]
    assert entry["type"] == "kv"
    assert entry["options"]["version"] == "2"
    assert entry["description"] == "from a form"
    write_secret(http, "x", {"a": "1"}, mount=m)


def test_form_encoded_metadata_write(http):
    p = unique("formmeta")
    write_secret(http, p, {"a": "1"})
    r = http.post(f"secret/metadata/{p}", data="max_versions=5&cas_required=true", headers=FORM)
    assert r.status_code == 204, r.text
    meta = http.get(f"secret/metadata/{p}").json()["data"]
    assert meta["max_versions"] == 5
    assert meta["cas_required"] is True


def test_lenient_scalar_coercion(http):
    p = unique("coerce")
    write_secret(http, p, {"a": "1"})
    r = http.post(f"secret/metadata/{p}", json={"max_versions": "7", "cas_required": "true"})
    assert r.status_code == 204, r.text
    meta = http.get(f"secret/metadata/{p}").json()["data"]
    assert meta["max_versions"] == 7
    assert meta["cas_required"] is True
    r = http.post(f"secret/data/{p}", json={"data": {"a": "2"}, "options": {"cas": "1"}})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["version"] == 2


def test_unknown_fields_are_ignored_with_a_warning(http):
    p = unique("unk")
    r = http.post(f"secret/data/{p}", json={"data": {"a": "1"}, "bogus_field": 1})
    assert r.status_code == 200, r.text
    warnings = r.json()["warnings"]
    assert isinstance(warnings, list) and warnings, r.text
    assert any("bogus_field" in w and "ignored" in w.lower() for w in warnings), warnings
    assert http.get(f"secret/data/{p}").json()["data"]["data"] == {"a": "1"}


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["{not json", '{"data": {"a": "1"}', "[1, 2", '{"data": }'])
def test_malformed_json_is_400(http, raw):
    p = unique("badjson")
    r = http.post(f"secret/data/{p}", data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    assert http.get(f"secret/data/{p}").status_code == 404


@pytest.mark.parametrize("data", [["a", "b"], "a string", 5, True])
def test_data_not_a_map_is_400(http, data):
    p = unique("notmap")
    r = http.post(f"secret/data/{p}", json={"data": data})
    assert_error(r, 400)
    assert http.get(f"secret/data/{p}").status_code == 404


def test_json_body_not_an_object_is_400(http):
    p = unique("notobj")
    r = http.post(f"secret/data/{p}", data='["data"]', headers={"Content-Type": "application/json"})
    assert_error(r, 400)


def test_missing_data_is_400(http):
    p = unique("nodata")
    assert_error(http.post(f"secret/data/{p}", json={"options": {}}), 400, "no data provided")
    assert_error(http.post(f"secret/data/{p}", data=""), 400, "no data provided")


@pytest.mark.parametrize(
    "path_tmpl,body,phrase",
    [
        ("secret/metadata/{p}", {"max_versions": "abc"}, None),
        ("secret/metadata/{p}", {"cas_required": "notabool"}, None),
        ("secret/metadata/{p}", {"custom_metadata": "not-a-map"}, None),
        ("secret/metadata/{p}", {"delete_version_after": "soon"}, None),
        ("secret/data/{p}", {"data": {"a": "x"}, "options": {"cas": "x"}}, "check-and-set"),
        ("secret/data/{p}", {"data": {"a": "x"}, "options": "not-a-map"}, None),
        ("secret/delete/{p}", {"versions": ["abc"]}, None),
        ("secret/config", {"max_versions": "abc"}, None),
    ],
)
def test_wrong_field_types_are_400(http, path_tmpl, body, phrase):
    p = unique("types")
    write_secret(http, p, {"a": "orig"})
    r = http.post(path_tmpl.format(p=p), json=body)
    if phrase:
        assert_error(r, 400, phrase)
    else:
        assert_error(r, 400)
    meta = http.get(f"secret/metadata/{p}").json()["data"]
    assert meta["current_version"] == 1
    assert meta["max_versions"] == 0
    assert meta["versions"]["1"]["deletion_time"] == ""
    assert http.get("secret/config").json()["data"]["max_versions"] == 0


def test_unknown_mount_is_404_no_handler(http):
    m = unique("nomount")
    for r in (http.get(f"{m}/data/x"), http.post(f"{m}/data/x", json={"data": {"a": "b"}}), http.list(f"{m}/")):
        assert_error(r, 404, "no handler for route")


def test_invalid_path_inside_kv_v2_mount(http):
    r = http.get("secret/foo")
    assert r.status_code == 404, r.text
    body = r.json()
    assert "errors" not in body, body
    assert isinstance(body.get("warnings"), list) and body["warnings"], body
    assert any("Invalid path for a versioned K/V secrets engine" in w for w in body["warnings"]), body
    r = http.post("secret/foo", json={"a": "b"})
    assert r.status_code == 404
    assert any("Invalid path for a versioned K/V secrets engine" in w for w in r.json()["warnings"])


def test_missing_secret_is_404_with_empty_errors(http):
    p = unique("missing")
    for r in (
        http.get(f"secret/data/{p}"),
        http.get(f"secret/metadata/{p}"),
        http.get(f"secret/subkeys/{p}"),
    ):
        assert r.status_code == 404, f"{r.url}: {r.status_code}"
        assert r.json() == {"errors": []}, r.text
    q = unique("exists")
    write_secret(http, q, {"a": "1"})
    r = http.get(f"secret/data/{q}?version=99")
    assert r.status_code == 404
    assert r.json() == {"errors": []}


def test_empty_list_is_404_with_empty_errors(http):
    for r in (http.list(f"secret/metadata/{unique('empty')}"), http.get(f"secret/metadata/{unique('empty')}/?list=true")):
        assert r.status_code == 404, r.text
        assert r.json() == {"errors": []}


# --------------------------------------------------------------------------------------------
# request size
# --------------------------------------------------------------------------------------------


def raw_post(addr, path, headers, chunks, timeout=60.0):
    """POST over a raw socket, stop sending as soon as the server answers (a server may reply 413
    before reading the whole body), then parse the response with http.client."""
    u = urlsplit(addr)
    sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
    try:
        head = [f"POST {path} HTTP/1.1", f"Host: {u.hostname}:{u.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.setblocking(False)
        deadline = time.monotonic() + timeout
        answered = False
        for chunk in chunks:
            view = memoryview(chunk)
            while view and not answered:
                assert time.monotonic() < deadline, "timed out sending the request body"
                readable, writable, _ = select.select([sock], [sock], [], 1.0)
                if readable:
                    answered = True
                    break
                if writable:
                    try:
                        n = sock.send(view[: 256 * 1024])
                    except BlockingIOError:
                        continue
                    except (BrokenPipeError, ConnectionResetError):
                        answered = True
                        break
                    view = view[n:]
            if answered:
                break
        sock.setblocking(True)
        sock.settimeout(max(1.0, deadline - time.monotonic()))
        resp = httpclient.HTTPResponse(sock, method="POST")
        resp.begin()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        sock.close()


def big_json_body(total_size):
    prefix = b'{"data": {"v": "'
    suffix = b'"}}'
    filler = total_size - len(prefix) - len(suffix)
    block = b"A" * MiB

    def gen():
        yield prefix
        left = filler
        while left > 0:
            n = min(left, len(block))
            yield block[:n]
            left -= n
        yield suffix

    return gen


def test_oversize_body_with_content_length_is_413(dev_server, http):
    p = unique("huge")
    size = 33 * MiB
    gen = big_json_body(size)
    status, headers, body = raw_post(
        dev_server.addr,
        f"/v1/secret/data/{p}",
        {"X-Vault-Token": dev_server.token, "Content-Type": "application/json", "Content-Length": str(size)},
        gen(),
    )
    assert status == 413, (status, body[:300])
    assert headers.get("content-type") == "application/json"
    parsed = json.loads(body)
    assert isinstance(parsed["errors"], list) and parsed["errors"], parsed
    assert http.get(f"secret/data/{p}").status_code == 404


def test_oversize_chunked_body_is_413(dev_server, http):
    p = unique("huge-chunked")
    gen = big_json_body(33 * MiB)

    def chunked():
        for c in gen():
            yield f"{len(c):x}\r\n".encode() + c + b"\r\n"
        yield b"0\r\n\r\n"

    status, _headers, body = raw_post(
        dev_server.addr,
        f"/v1/secret/data/{p}",
        {"X-Vault-Token": dev_server.token, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        chunked(),
    )
    assert status == 413, (status, body[:300])
    assert json.loads(body)["errors"]
    assert http.get(f"secret/data/{p}").status_code == 404


def test_large_body_under_the_limit_is_accepted(http):
    p = unique("large")
    value = "x" * (2 * MiB)
    r = http.post(f"secret/data/{p}", json={"data": {"v": value}})
    assert r.status_code == 200, r.text[:300]
    got = http.get(f"secret/data/{p}").json()["data"]["data"]["v"]
    assert got == value


# --------------------------------------------------------------------------------------------
# auth
# --------------------------------------------------------------------------------------------


def test_missing_or_wrong_token_is_403(dev_server, http):
    p = unique("auth")
    write_secret(http, p, {"a": "1"})
    missing = [
        http.get(f"secret/data/{p}", token=None),
        http.post(f"secret/data/{p}", token=None, json={"data": {"a": "evil"}}),
        http.get("sys/mounts", token=None),
        http.get("auth/token/lookup-self", token=None),
        http.get(f"secret/data/{p}", token="", headers={"X-Vault-Token": ""}),
    ]
    for r in missing:
        assert r.status_code == 403, f"{r.request.method} {r.url}: {r.status_code} {r.text}"
        assert r.json() == {"errors": ["permission denied"]}
    # A token that is not (or no longer) valid: Vault's two messages.
    wrong = [
        http.get(f"secret/data/{p}", token="wrong-" + unique()),
        http.post(f"sys/mounts/{unique('evil')}", token="wrong", json={"type": "kv-v2"}),
        http.get(f"secret/data/{p}", token=None, headers={"Authorization": "Bearer wrong"}),
    ]
    for r in wrong:
        assert r.status_code == 403, f"{r.request.method} {r.url}: {r.status_code} {r.text}"
        assert r.json() == {"errors": ["permission denied", "invalid token"]}
    assert http.get(f"secret/data/{p}").json()["data"]["data"] == {"a": "1"}


def test_bearer_token_works_like_x_vault_token(dev_server, http):
    p = unique("bearer")
    r = http.post(
        f"secret/data/{p}", token=None, json={"data": {"a": "1"}},
        headers={"Authorization": f"Bearer {dev_server.token}", "X-Vault-Request": "true"},
    )
    assert r.status_code == 200, r.text
    r = http.get(f"secret/data/{p}", token=None, headers={"Authorization": f"Bearer {dev_server.token}"})
    assert r.status_code == 200
    assert r.json()["data"]["data"] == {"a": "1"}
    r = http.get("auth/token/lookup-self", token=None, headers={"Authorization": f"Bearer {dev_server.token}"})
    assert r.json()["data"]["id"] == dev_server.token


def test_sys_health_is_unauthenticated_and_unwrapped(http):
    for tok in (None, "garbage-token"):
        r = http.get("sys/health", token=tok)
        assert r.status_code == 200, r.text
        assert r.headers.get("Content-Type") == "application/json"
        body = r.json()
        for k in ("request_id", "data", "lease_id", "mount_type"):
            assert k not in body, f"sys/health must not be wrapped in the envelope: {body}"
        assert body["initialized"] is True
        assert body["sealed"] is False
        assert body["standby"] is False
        for k in ("performance_standby", "replication_performance_mode", "replication_dr_mode", "version"):
            assert k in body, f"sys/health lacks {k}: {body}"
        assert isinstance(body["version"], str) and body["version"]
        assert isinstance(body["server_time_utc"], int)
        assert abs(body["server_time_utc"] - time.time()) < 300


# --------------------------------------------------------------------------------------------
# sys/internal/ui/mounts and sys/mounts
# --------------------------------------------------------------------------------------------


def test_internal_ui_mounts(http):
    r = http.get("sys/internal/ui/mounts/secret/foo")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["type"] == "kv"
    assert data["options"]["version"] == "2"
    assert data["path"] == "secret/"
    assert data["accessor"] == http.get("sys/mounts/secret").json()["data"]["accessor"]

    m = unique("uim")
    assert http.post(f"sys/mounts/{m}", json={"type": "kv-v2"}).status_code == 204
    data = http.get(f"sys/internal/ui/mounts/{m}/a/b/c").json()["data"]
    assert data["path"] == f"{m}/"

    r = http.get(f"sys/internal/ui/mounts/{unique('unmounted')}/foo")
    assert_errors_envelope(r, 403)


def test_enable_and_disable_mount_raw(http):
    m = unique("rawkv")
    r = http.post(f"sys/mounts/{m}", json={"type": "kv", "options": {"version": "2"}})
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert f"{m}/" in mount_paths(http)
    r = http.delete(f"sys/mounts/{m}")
    assert r.status_code == 204, r.text
    assert f"{m}/" not in mount_paths(http)
    assert http.get(f"sys/mounts/{m}").status_code in (400, 404)


@pytest.mark.parametrize(
    "body,phrase",
    [
        ({"type": "kv"}, "version"),
        ({"type": "kv", "options": {"version": "1"}}, "version"),
        ({"type": "kv-v1"}, "version"),
        ({"type": "pki"}, None),
        ({"type": "transit"}, None),
        ({}, None),
        ({"type": "kv-v2", "options": "not-a-map"}, None),
    ],
)
def test_mount_enable_refusals(http, body, phrase):
    m = unique("refuse")
    r = http.post(f"sys/mounts/{m}", json=body)
    if phrase:
        assert_error(r, 400, phrase)
    else:
        assert_error(r, 400)
    assert f"{m}/" not in mount_paths(http)


def assert_existing_mount_error(r):
    # Vault's API answers "existing mount at <path>/"; Vault's CLI users know "path is already in use at <path>/"
    errs = " ".join(assert_error(r, 400)).lower()
    assert "existing mount" in errs or "already in use" in errs, errs


def test_mount_existing_or_overlapping_path_is_400(http):
    m = unique("dup")
    assert http.post(f"sys/mounts/{m}", json={"type": "kv-v2"}).status_code == 204
    write_secret(http, "keep", {"a": "1"}, mount=m)
    assert_existing_mount_error(http.post(f"sys/mounts/{m}", json={"type": "kv-v2"}))
    assert_error(http.post(f"sys/mounts/{m}/nested", json={"type": "kv-v2"}), 400)
    assert_existing_mount_error(http.post("sys/mounts/secret", json={"type": "kv-v2"}))
    assert_error(http.post(f"sys/mounts/sys/{unique('x')}", json={"type": "kv-v2"}), 400)
    # the original mount and its data are intact
    assert http.get(f"{m}/data/keep").json()["data"]["data"] == {"a": "1"}


def test_disable_sys_is_400(http):
    assert_error(http.delete("sys/mounts/sys"), 400)
    assert "sys/" in mount_paths(http)
    assert http.get("sys/mounts").status_code == 200
