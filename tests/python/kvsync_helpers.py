"""Shared helpers for the kvsync end-to-end suite.

Everything that starts a process or polls is bounded in time and count. Servers only ever listen on
127.0.0.1 (ephemeral port) and are stopped by the fixtures that start them, by pid.
"""

from __future__ import annotations

import base64
import calendar
import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Optional

import hvac
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

# The first start may compile the wasm component: allow a generous, but bounded, start-up.
START_TIMEOUT = float(os.environ.get("KVSYNC_START_TIMEOUT", "60"))
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 30.0

# Keys of Vault's success envelope (sdk/logical/translate_response.go HTTPResponse).
ENVELOPE_KEYS = {
    "request_id",
    "lease_id",
    "renewable",
    "lease_duration",
    "data",
    "wrap_info",
    "warnings",
    "auth",
    "mount_type",
}

ACCESSOR_RE = re.compile(r"^kv_[0-9a-f]{8}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Go's time.RFC3339Nano in UTC (trailing zeros of the fraction are trimmed, so 1..9 digits, and a
# timestamp that falls exactly on a second has no fraction at all).
RFC3339_NANO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$"
)

API_ADDR_RE = re.compile(r"Api Address:\s*(https?://127\.0\.0\.1:[1-9][0-9]*)")
FALLBACK_ADDR_RE = re.compile(r"(http://127\.0\.0\.1:[1-9][0-9]*)")


def unique(prefix: str = "t") -> str:
    """A path segment that no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def ts_ns(value: str) -> int:
    """Parse an RFC 3339 UTC timestamp with optional nanoseconds into integer ns since the epoch."""
    m = RFC3339_NANO_RE.match(value)
    assert m, f"not an RFC 3339 UTC timestamp with (optional) nanoseconds: {value!r}"
    y, mo, d, h, mi, s, frac = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    nanos = int((frac or "").ljust(9, "0")) if frac else 0
    return secs * 1_000_000_000 + nanos


def assert_recent_ts(value: str, slack_s: float = 300.0) -> int:
    ns = ts_ns(value)
    now = time.time_ns()
    assert abs(now - ns) < slack_s * 1e9, f"timestamp {value!r} is not close to now"
    return ns


class Http:
    """A tiny wrapper around requests: base URL /v1/, token header, never raises on status."""

    _DEFAULT = object()

    def __init__(self, addr: str, token: Optional[str]):
        self.addr = addr.rstrip("/")
        self.base = self.addr + "/v1/"
        self.token = token
        self.session = requests.Session()
        self.session.trust_env = False  # never route 127.0.0.1 through a proxy from the env

    def url(self, path: str) -> str:
        return self.base + path.lstrip("/")

    def request(self, method: str, path: str, *, token=_DEFAULT, headers=None, **kw) -> requests.Response:
        h = {}
        tok = self.token if token is Http._DEFAULT else token
        if tok is not None:
            h["X-Vault-Token"] = tok
        if headers:
            h.update(headers)
        kw.setdefault("timeout", REQUEST_TIMEOUT)
        return self.session.request(method, self.url(path), headers=h, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def list(self, path, **kw):
        return self.request("LIST", path, **kw)

    def merge_patch(self, path, body, **kw):
        headers = {"Content-Type": "application/merge-patch+json"}
        headers.update(kw.pop("headers", None) or {})
        return self.request("PATCH", path, data=json.dumps(body), headers=headers, **kw)

    def close(self):
        self.session.close()


def make_hvac_client(addr: str, token: Optional[str], **kwargs) -> hvac.Client:
    session = requests.Session()
    session.trust_env = False
    return hvac.Client(url=addr, token=token, session=session, timeout=REQUEST_TIMEOUT, **kwargs)


#: Every provider endpoint a kvsync under test could derive from its environment points at a closed
#: loopback port, so that no test can ever reach (or even resolve) a real provider: strict egress
#: refuses these before connecting. Conformance profiles override them with their doubles.
LOOPBACK_PROVIDER_ENV = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:9",
    "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AZURE_AUTHORITY_HOST": "http://127.0.0.1:9",
    "KVSYNC_GCP_SECRET_MANAGER_URL": "http://127.0.0.1:9",
    "KVSYNC_VERCEL_API_URL": "http://127.0.0.1:9",
}


def child_env(extra: Optional[dict] = None, drop_key: bool = True) -> dict:
    env = dict(os.environ)
    env.update(LOOPBACK_PROVIDER_ENV)
    if drop_key:
        env.pop("KVSYNC_ENCRYPTION_KEY", None)
    for k in ("VAULT_TOKEN", "VAULT_ADDR"):
        env.pop(k, None)
    if extra:
        env.update(extra)
    return env


class ServerProcess:
    """One running `kvsync server ...` process whose stdout/stderr go to files in log_dir."""

    def __init__(self, argv: list, log_dir: Path, env: dict, name: str = "server"):
        self.argv = [str(a) for a in argv]
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = uuid.uuid4().hex[:6]
        self.stdout_path = self.log_dir / f"{name}-{stamp}.stdout.log"
        self.stderr_path = self.log_dir / f"{name}-{stamp}.stderr.log"
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=env,
            cwd=str(self.log_dir),
        )
        self.addr: Optional[str] = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout() + "\n" + self.stderr()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def describe(self) -> str:
        out = self.stdout()[-4000:]
        err = self.stderr()[-4000:]
        return f"argv={self.argv}\nrc={self.proc.poll()}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"

    def wait_for_address(self, timeout: float = START_TIMEOUT) -> str:
        """Poll stdout (bounded) for `Api Address: http://127.0.0.1:<port>`, then for sys/health."""
        deadline = time.monotonic() + timeout
        addr = None
        while time.monotonic() < deadline:
            text = self.stdout()
            m = API_ADDR_RE.search(text) or FALLBACK_ADDR_RE.search(text)
            if m:
                addr = m.group(1)
                break
            if not self.alive():
                raise AssertionError("kvsync exited before printing its address\n" + self.describe())
            time.sleep(0.05)
        if addr is None:
            raise AssertionError(f"kvsync printed no 'Api Address:' line within {timeout}s\n" + self.describe())
        # The line is printed once listening; still, give the listener a bounded moment.
        session = requests.Session()
        session.trust_env = False
        last = None
        try:
            for _ in range(200):
                if time.monotonic() > deadline + 10:
                    break
                if not self.alive():
                    raise AssertionError("kvsync exited after printing its address\n" + self.describe())
                try:
                    r = session.get(addr + "/v1/sys/health", timeout=2)
                    if r.status_code == 200:  # initialized, unsealed, active
                        self.addr = addr
                        return addr
                    last = f"status {r.status_code}"
                except requests.RequestException as e:  # not yet accepting
                    last = repr(e)
                time.sleep(0.05)
        finally:
            session.close()
        raise AssertionError(f"kvsync at {addr} never answered sys/health ({last})\n" + self.describe())

    def wait_exit(self, timeout: float) -> Optional[int]:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        """SIGTERM, wait (bounded), then SIGKILL. Returns the exit code observed after SIGTERM
        (None if SIGKILL was needed)."""
        rc = None
        if self.alive():
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            rc = self.wait_exit(timeout)
            if rc is None:
                self.kill9()
        else:
            rc = self.proc.returncode
        self._close_files()
        return rc

    def kill9(self) -> None:
        if self.alive():
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.wait_exit(STOP_TIMEOUT)
        self._close_files()

    def _close_files(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except Exception:
                pass


def assert_alive(server: ServerProcess, token: str) -> None:
    """The server process is running and still answers a valid authenticated request."""
    assert server.alive(), "kvsync died\n" + server.describe()
    h = Http(server.addr, token)
    try:
        r = h.get("sys/health")
        assert r.status_code == 200, f"sys/health after the test: {r.status_code} {r.text[:300]}"
        r = h.get("auth/token/lookup-self")
        assert r.status_code == 200, f"lookup-self after the test: {r.status_code} {r.text[:300]}"
    finally:
        h.close()


def marker_variants(marker: bytes) -> list:
    """Encodings under which a plaintext leak would still be obvious: raw, hex, base64 (any
    alignment: the part of the base64 text that depends only on the marker's bytes)."""
    out = [marker, marker.hex().encode(), marker.hex().upper().encode()]
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + marker)
        # skip the characters touched by the padding prefix and the tail
        start = ((pad + 2) // 3) * 4
        core = enc[start:len(enc) - 4]
        if len(core) >= 16:
            out.append(core)
            out.append(core.replace(b"+", b"-").replace(b"/", b"_"))  # URL-safe alphabet
    return out


def files_containing(root: Path, needles: list, exclude: Optional[set] = None) -> list:
    """Every file under root (recursively) whose bytes contain any needle."""
    exclude = {Path(p).resolve() for p in (exclude or set())}
    hits = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for fn in filenames:
            p = Path(dirpath) / fn
            if p.resolve() in exclude or p.is_symlink() or not p.is_file():
                continue
            data = p.read_bytes()
            for n in needles:
                if n in data:
                    hits.append((str(p), n[:40]))
                    break
    return hits
