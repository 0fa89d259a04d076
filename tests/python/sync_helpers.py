"""Helpers for the Secrets Sync end-to-end tests (test_sync_api.py).

- `RecordingHttp`: the suite's `Http`, but every response body is kept (module-wide) so that the last
  test can search all of them for the credentials and KV values the tests sent.
- `Sent`: the registry of those credentials / values (`cred()` and `kv_value()` make and register them).
- envelope / error assertions, small wrappers for destinations, associations and in-mem objects.
- RSA key generation and the GitHub-style key fingerprint (with the `openssl` binary).
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import json
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

from kvsync_helpers import ENVELOPE_KEYS, UUID_RE, Http, unique

# RFC 3339 with an optional fraction (1..9 digits) and either Z or a numeric offset (Go's
# time.Time JSON uses the server's local offset).
RFC3339_ANY_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)

ASSOC_STATUSES = {
    "PENDING",
    "SYNCING",
    "SYNCED",
    "UNSYNCING",
    "UNSYNCED",
    "INTERNAL_VAULT_ERROR",
    "CLIENT_SIDE_ERROR",
    "EXTERNAL_SERVICE_ERROR",
    "UNKNOWN",
}
ERROR_STATUSES = {"INTERNAL_VAULT_ERROR", "CLIENT_SIDE_ERROR", "EXTERNAL_SERVICE_ERROR"}

MASK = "*****"

# Default name templates per destination type, as reads return them materialised in
# `options.secret_name_template` (gcp-sm and in-mem use the aws-sm ones; vercel-project the gh ones).
TPL_PATH_AWS = "vault/{{ .MountAccessor }}/{{ .SecretPath }}"
TPL_KEY_AWS = "vault/{{ .MountAccessor }}/{{ .SecretPath }}/{{ .SecretKey }}"
TPL_PATH_AZURE = 'vault-{{ .MountAccessor | replace "_" "-" }}-{{ .SecretPath }}'
TPL_KEY_AZURE = 'vault-{{ .MountAccessor | replace "_" "-" }}-{{ .SecretPath }}-{{ .SecretKey }}'
TPL_PATH_GH = "VAULT_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}"
TPL_KEY_GH = "VAULT_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}_{{ .SecretKey | uppercase }}"

DEFAULT_TEMPLATES = {
    # type: (default granularity, secret-path template, secret-key template)
    "in-mem": ("secret-path", TPL_PATH_AWS, TPL_KEY_AWS),
    "aws-sm": ("secret-path", TPL_PATH_AWS, TPL_KEY_AWS),
    "gcp-sm": ("secret-path", TPL_PATH_AWS, TPL_KEY_AWS),
    "azure-kv": ("secret-path", TPL_PATH_AZURE, TPL_KEY_AZURE),
    "gh": ("secret-key", TPL_PATH_GH, TPL_KEY_GH),
    "vercel-project": ("secret-key", TPL_PATH_GH, TPL_KEY_GH),
}
CLOUD_TYPES = {"aws-sm", "azure-kv", "gcp-sm"}


# --------------------------------------------------------------------------------------------
# what was sent, what came back
# --------------------------------------------------------------------------------------------


class Sent:
    """Credentials (must never come back, nor reach the logs) and KV values (may come back only
    from KV data reads and from the in-mem objects endpoint; never in the logs)."""

    credentials: set = set()
    kv_values: set = set()


def cred(prefix: str) -> str:
    """A unique credential-looking string, registered as a credential."""
    value = f"{prefix}{secrets.token_hex(16)}"
    Sent.credentials.add(value)
    return value


def kv_value(prefix: str = "kvv") -> str:
    value = f"{prefix}-{secrets.token_hex(12)}"
    Sent.kv_values.add(value)
    return value


class Recorded:
    """(method, url path, status, body text) of every response seen through the recorders."""

    responses: list = []


def record_response(method: str, url: str, status: int, text: str) -> None:
    Recorded.responses.append((method, url, status, text))


class RecordingHttp(Http):
    def request(self, method, path, **kw):
        r = super().request(method, path, **kw)
        record_response(method, r.url, r.status_code, r.text)
        return r


def attach_recorder(session) -> None:
    """Record every response of a requests.Session (used for hvac's session)."""

    def hook(r, *args, **kwargs):
        record_response(r.request.method, r.url, r.status_code, r.text)

    session.hooks.setdefault("response", []).append(hook)


# --------------------------------------------------------------------------------------------
# envelopes
# --------------------------------------------------------------------------------------------


def ok(r, status: int = 200) -> dict:
    """A success response with exactly Vault's envelope keys, mount_type "system"."""
    assert r.status_code == status, f"{r.request.method} {r.url}: expected {status}, got {r.status_code}: {r.text[:800]}"
    assert r.headers.get("Content-Type") == "application/json", r.headers.get("Content-Type")
    assert r.headers.get("Cache-Control") == "no-store", r.headers.get("Cache-Control")
    body = r.json()
    assert set(body) == ENVELOPE_KEYS, f"envelope keys {sorted(body)}"
    assert UUID_RE.match(body["request_id"]), body["request_id"]
    assert body["lease_id"] == ""
    assert body["renewable"] is False
    assert body["lease_duration"] == 0
    assert body["wrap_info"] is None
    assert body["auth"] is None
    assert body["mount_type"] == "system", body["mount_type"]
    assert body["warnings"] is None or (
        isinstance(body["warnings"], list) and all(isinstance(w, str) for w in body["warnings"])
    ), body["warnings"]
    assert isinstance(body["data"], dict), body["data"]
    return body


def data(r, status: int = 200) -> dict:
    return ok(r, status)["data"]


def no_content(r) -> None:
    assert r.status_code == 204, f"{r.request.method} {r.url}: expected 204, got {r.status_code}: {r.text[:800]}"
    assert r.content == b"", r.content[:200]


def errors(r, status) -> list:
    """An error response: status (int, or a set of acceptable ints) and the `{"errors": [...]}` envelope."""
    allowed = {status} if isinstance(status, int) else set(status)
    assert r.status_code in allowed, f"{r.request.method} {r.url}: expected {sorted(allowed)}, got {r.status_code}: {r.text[:800]}"
    assert r.headers.get("Content-Type") == "application/json", r.headers.get("Content-Type")
    assert r.headers.get("Cache-Control") == "no-store", r.headers.get("Cache-Control")
    body = r.json()
    assert set(body) == {"errors"}, body
    assert isinstance(body["errors"], list) and all(isinstance(e, str) for e in body["errors"]), body
    return body["errors"]


def error(r, status, *phrases) -> list:
    """A non-empty errors list mentioning every phrase (case-insensitive)."""
    errs = errors(r, status)
    assert errs, f"expected a non-empty errors list: {r.text[:500]}"
    joined = " ".join(errs).lower()
    for p in phrases:
        assert p.lower() in joined, f"{p!r} not mentioned in {errs}"
    return errs


def empty_404(r) -> None:
    assert r.status_code == 404, f"{r.request.method} {r.url}: expected 404, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("Content-Type") == "application/json"
    assert r.json() == {"errors": []}, r.text[:500]


def ts_ns_any(value: str) -> int:
    m = RFC3339_ANY_RE.match(value)
    assert m, f"not an RFC 3339 timestamp: {value!r}"
    y, mo, d, h, mi, s, frac, off = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    if off != "Z":
        sign = 1 if off[0] == "+" else -1
        secs -= sign * (int(off[1:3]) * 3600 + int(off[4:6]) * 60)
    return secs * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


def assert_updated_at(value, slack_s: float = 300.0) -> int:
    assert isinstance(value, str), value
    ns = ts_ns_any(value)
    assert abs(time.time_ns() - ns) < slack_s * 1e9, f"updated_at {value!r} is not close to now"
    return ns


# --------------------------------------------------------------------------------------------
# KV and mounts
# --------------------------------------------------------------------------------------------


def mount_accessor(http: Http, mount: str) -> str:
    r = http.get(f"sys/mounts/{mount}")
    assert r.status_code == 200, r.text
    return r.json()["data"]["accessor"]


def new_kv2_mount(http: Http, prefix: str = "kv") -> str:
    path = unique(prefix)
    r = http.post(f"sys/mounts/{path}", json={"type": "kv-v2"})
    assert r.status_code == 204, f"mount {path}: {r.status_code} {r.text}"
    return path


def write_kv(http: Http, mount: str, path: str, payload: dict) -> int:
    r = http.post(f"{mount}/data/{path}", json={"data": payload})
    assert r.status_code == 200, f"write {mount}/{path}: {r.status_code} {r.text}"
    return r.json()["data"]["version"]


# --------------------------------------------------------------------------------------------
# destinations / associations / objects
# --------------------------------------------------------------------------------------------


def dest_path(kind: str, name: str) -> str:
    return f"sys/sync/destinations/{kind}/{name}"


def create_dest(http: Http, kind: str, name: str, body: Optional[dict] = None) -> dict:
    return data(http.post(dest_path(kind, name), json=body or {}))


def read_dest(http: Http, kind: str, name: str) -> dict:
    return data(http.get(dest_path(kind, name)))


def set_assoc(http: Http, kind: str, name: str, mount: str, secret: str):
    return http.post(f"{dest_path(kind, name)}/associations/set", json={"mount": mount, "secret_name": secret})


def remove_assoc(http: Http, kind: str, name: str, mount: str, secret: str):
    return http.post(f"{dest_path(kind, name)}/associations/remove", json={"mount": mount, "secret_name": secret})


def read_assocs(http: Http, kind: str, name: str) -> dict:
    d = data(http.get(f"{dest_path(kind, name)}/associations"))
    assert set(d) == {"associated_secrets", "store_name", "store_type"}, sorted(d)
    assert d["store_name"] == name and d["store_type"] == kind, d
    return d["associated_secrets"]


def objects(http: Http, name: str) -> dict:
    d = data(http.get(f"sys/sync/destinations/in-mem/{name}/objects"))
    assert set(d) == {"objects"}, sorted(d)
    objs = d["objects"]
    assert isinstance(objs, dict), objs
    for ext, obj in objs.items():
        assert set(obj) == {"value", "tags"}, (ext, obj)
        assert isinstance(obj["value"], str), (ext, obj)
        assert isinstance(obj["tags"], dict), (ext, obj)
        assert obj["tags"].get("hashicorp:vault") == "", (ext, obj)
    return objs


def delete_dest(http: Http, kind: str, name: str, **params):
    return http.delete(dest_path(kind, name), params={k: str(v).lower() for k, v in params.items()} or None)


def assoc_entry_check(entry: dict, *, accessor: str, mount: str, secret: str, sub_key: Optional[str] = None) -> None:
    expected_keys = {"accessor", "mount", "secret_name", "sync_status", "updated_at"}
    if sub_key is not None:
        expected_keys.add("sub_key")
    if entry.get("sync_status") in ERROR_STATUSES:
        expected_keys.add("error")  # kvsync extension: an entry in an error status says why
    assert set(entry) == expected_keys, f"entry keys {sorted(entry)} != {sorted(expected_keys)}: {entry}"
    assert entry["accessor"] == accessor, entry
    assert entry["mount"] == mount, entry
    assert entry["secret_name"] == secret, entry
    assert entry["sync_status"] in ASSOC_STATUSES, entry
    if sub_key is not None:
        assert entry["sub_key"] == sub_key, entry
    assert_updated_at(entry["updated_at"])


# --------------------------------------------------------------------------------------------
# RSA keys for GitHub Apps
# --------------------------------------------------------------------------------------------


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


def gen_rsa_pem(tmpdir: Path) -> str:
    key = Path(tmpdir) / f"app-{secrets.token_hex(4)}.pem"
    res = subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    return key.read_text()


def github_fingerprint(pem: str) -> str:
    """`SHA256:<standard base64 of sha256(DER SubjectPublicKeyInfo)>`, as GitHub shows it."""
    res = subprocess.run(
        ["openssl", "rsa", "-pubout", "-outform", "DER"], input=pem.encode(), capture_output=True, timeout=60
    )
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    return "SHA256:" + base64.b64encode(hashlib.sha256(res.stdout).digest()).decode()


def pem_body_lines(pem: str) -> list:
    """The base64 lines of a PEM body (without the BEGIN/END lines), long ones only."""
    return [ln.strip() for ln in pem.splitlines() if ln.strip() and not ln.startswith("-----") and len(ln.strip()) >= 40]


def json_value(text: str):
    try:
        return json.loads(text)
    except ValueError as e:  # pragma: no cover - reported as an assertion
        raise AssertionError(f"not JSON: {text!r}") from e
