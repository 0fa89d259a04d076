"""Differential testing: the same request to kvsync and to OpenBao, compared.

OpenBao (`bao server -dev`) is the reference for every Vault API kvsync serves except Secrets Sync.
`Diff.call` sends one request to both servers and compares

- the status codes and the `Content-Type` / `Cache-Control` headers;
- the JSON bodies by **shape** (keys and value types, recursively) and by **value** where a value
  is not volatile: request ids, UUIDs, timestamps, accessors and Unix times are compared by class
  only (a timestamp against a timestamp, "" against ""), server identity (version strings, cluster
  names, plugin versions) not at all, each server's root token stands for itself, and the texts of
  `errors` / `warnings` only as "none" or "some" (error texts Vault does not publish are kvsync's
  own). Lists of scalars are compared element by element, other lists by the set of their
  element shapes.

A difference fails the call unless the test allowed it with `Diff.allow(Decision)`, where every
`Decision` quotes the README line ("Where kvsync differs from Vault (on purpose)") that it rests on;
the quote is checked against the README, and an allowed difference that never occurred fails the
test too. `DECIDED` lists the decisions whose differences show in nearly every response: they are
allowed in every call, and each is shown by one test that allows it explicitly (so it fails when
the difference is gone). `TRACKED` lists kvsync bugs that show in nearly every response; they are
masked in every call and each is pinned by one `xfail(strict=True)` test, so fixing one turns that
test into a failure until its entry is removed here.

The failure message shows the request and both responses, with each server's root token and
every token a response hands out (wrapping tokens) redacted.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Optional

import requests

from kvsync_helpers import REPO_ROOT, Http

README_SECTION = "## Where kvsync differs from Vault (on purpose)"

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
MOUNT_ACCESSOR_RE = re.compile(r"^([a-z0-9-]+)_[0-9a-f]{8}$")

#: Keys whose integer values are Unix times.
UNIX_TIME_KEYS = {"creation_time", "server_time_utc"}
#: Keys whose string values are random identifiers.
RANDOM_ID_KEYS = {"request_id", "accessor", "uuid", "cluster_id"}
#: Paths (patterns) that name the server, not the data: not compared by value.
SERVER_IDENTITY = ("version", "cluster_name", "**.running_plugin_version", "**.running_sha256")
#: Keys whose list values are human-readable messages.
MESSAGE_LIST_KEYS = {"errors", "warnings"}

STATUS = "$status"
HEADER = "$header"


# --------------------------------------------------------------------------------------------
# allow-list and tracked bugs
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def readme_decisions() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.find(README_SECTION)
    assert start >= 0, f"README.md has no section {README_SECTION!r}"
    end = text.find("\n## ", start + len(README_SECTION))
    return " ".join(text[start:end if end >= 0 else len(text)].split())


@dataclass(frozen=True)
class Decision:
    """A documented, deliberate difference. `readme` is quoted from the README section
    "Where kvsync differs from Vault (on purpose)" (whitespace-insensitive)."""

    where: str  # path pattern of the difference: "data.versions.*.created_by", "$status", ...
    readme: str
    kind: Optional[str] = None  # limit to one kind of difference ("missing", "value", ...)
    request: Optional[str] = None  # regex on "METHOD path" limiting it to some requests

    def verify(self) -> None:
        quote = " ".join(self.readme.split())
        assert quote and quote in readme_decisions(), (
            f"allowed difference {self.where!r} cites {self.readme!r}, which is not in README.md's "
            f"section {README_SECTION!r}: a difference is a kvsync bug unless a written decision says otherwise"
        )


@dataclass(frozen=True)
class TrackedBug:
    """A kvsync bug that shows in (nearly) every response, masked so other tests stay sharp;
    `pinned_by` names the strict-xfail test that shows it."""

    id: str
    where: str
    bug: str
    pinned_by: str
    kind: Optional[str] = None
    request: Optional[str] = None


TRACKED: tuple = ()

#: README quotes of the decisions in DECIDED (the tests that show them use the same constants).
MOUNT_TYPE = "Every response envelope carries `mount_type`"
KV_METADATA_CAS = "KV-v2 has no check-and-set on metadata"

#: Decisions whose differences show in (nearly) every response: allowed in every call. Each is shown
#: by the test named in the comment, which allows it explicitly.
DECIDED = (
    # test_envelope_mount_type
    Decision(where="mount_type", kind="extra", readme=MOUNT_TYPE),
    # test_kv_metadata_cas_fields
    Decision(where="data.metadata_cas_required", kind="missing", readme=KV_METADATA_CAS),
    Decision(where="data.current_metadata_version", kind="missing", readme=KV_METADATA_CAS),
)


def check_pinned(module, test_name: str) -> None:
    """`test_name` in `module` is marked xfail(strict=True) with a reason starting "kvsync bug:"."""
    fn = getattr(module, test_name, None)
    assert fn is not None, f"{module.__name__} has no test {test_name!r} pinning this kvsync bug"
    marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "xfail"]
    assert marks, f"{test_name} must be marked xfail(strict=True, reason='kvsync bug: ...')"
    for m in marks:
        assert m.kwargs.get("strict") is True, f"{test_name}: its xfail must be strict"
        assert str(m.kwargs.get("reason", "")).startswith("kvsync bug:"), (
            f"{test_name}: its xfail reason must start with 'kvsync bug:'"
        )


# --------------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------------


@dataclass
class Difference:
    path: tuple
    kind: str  # status | header | body | missing | extra | type | value | list
    kvsync: Any = None
    bao: Any = None

    @property
    def where(self) -> str:
        return path_str(self.path)

    def describe(self) -> str:
        if self.kind == "missing":
            return f"{self.where}: missing in kvsync (bao: {short(self.bao)})"
        if self.kind == "extra":
            return f"{self.where}: only in kvsync ({short(self.kvsync)})"
        return f"{self.where}: {self.kind}: kvsync {short(self.kvsync)} / bao {short(self.bao)}"


def path_str(path: Iterable) -> str:
    return ".".join(str(p) for p in path) or "<root>"


def short(v: Any, limit: int = 160) -> str:
    s = json.dumps(v, sort_keys=True) if not isinstance(v, str) or v.startswith("<") else json.dumps(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def path_matches(pattern: str, path: tuple) -> bool:
    """Segment-wise glob: `*` matches one segment, `**` any number (also none)."""
    if pattern == "<root>":
        return path == ()
    pat = pattern.split(".")

    def rec(i: int, j: int) -> bool:
        if i == len(pat):
            return j == len(path)
        if pat[i] == "**":
            return any(rec(i + 1, k) for k in range(j, len(path) + 1))
        return j < len(path) and fnmatch.fnmatchcase(str(path[j]), pat[i]) and rec(i + 1, j + 1)

    return rec(0, 0)


def type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def normalise_scalar(v: Any, path: tuple) -> Any:
    """The value as compared: volatile values become their class."""
    key = str(path[-1]) if path else ""
    if any(path_matches(p, path) for p in SERVER_IDENTITY):
        return "<server identity>"
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int) and key in UNIX_TIME_KEYS:
        return "<unix time>"
    if isinstance(v, str):
        if v.startswith("<") and v.endswith(">"):
            return v  # already a placeholder (a redacted token)
        if UUID_RE.match(v):
            return "<uuid>"
        if RFC3339_RE.match(v):
            return "<timestamp>"
        if key == "accessor":
            m = MOUNT_ACCESSOR_RE.match(v)
            return f"<{m.group(1)}_ accessor>" if m else ("<accessor>" if v else "")
        if key in RANDOM_ID_KEYS and v:
            return "<id>"
    return v


def shape_sig(v: Any) -> str:
    """A canonical text of a value's shape (types only), for comparing list elements."""
    if isinstance(v, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{shape_sig(v[k])}" for k in sorted(v)) + "}"
    if isinstance(v, list):
        return "[" + "|".join(sorted({shape_sig(x) for x in v})) + "]"
    return type_name(v)


def compare(kv: Any, bao: Any, path: tuple = ()) -> list:
    out: list = []
    tk, tb = type_name(kv), type_name(bao)
    if tk != tb:
        out.append(Difference(path, "type", kv, bao))
        return out
    if isinstance(kv, dict):
        for k in sorted(set(kv) | set(bao)):
            if k not in kv:
                out.append(Difference(path + (k,), "missing", None, bao[k]))
            elif k not in bao:
                out.append(Difference(path + (k,), "extra", kv[k], None))
            else:
                out.extend(compare(kv[k], bao[k], path + (k,)))
        return out
    if isinstance(kv, list):
        key = str(path[-1]) if path else ""
        if key in MESSAGE_LIST_KEYS:
            if bool(kv) != bool(bao) or {type_name(x) for x in kv} != {type_name(x) for x in bao}:
                out.append(Difference(path, "list", kv, bao))
            return out
        scalars = all(not isinstance(x, (dict, list)) for x in kv + bao)
        if scalars:
            nk = [normalise_scalar(x, path + ("[]",)) for x in kv]
            nb = [normalise_scalar(x, path + ("[]",)) for x in bao]
            if nk != nb or [type_name(x) for x in kv] != [type_name(x) for x in bao]:
                out.append(Difference(path, "list", kv, bao))
        elif sorted({shape_sig(x) for x in kv}) != sorted({shape_sig(x) for x in bao}):
            out.append(Difference(path + ("[]",), "list", kv, bao))
        return out
    if normalise_scalar(kv, path) != normalise_scalar(bao, path):
        out.append(Difference(path, "value", kv, bao))
    return out


# --------------------------------------------------------------------------------------------
# one request to both servers
# --------------------------------------------------------------------------------------------


def parse_body(r: requests.Response) -> Any:
    if not r.content:
        return "<empty body>"
    try:
        return json.loads(r.content)
    except ValueError:
        return "<not JSON: " + r.content[:200].decode(errors="replace") + ">"


#: Keys whose string values are tokens a response hands out (wrapping tokens, new client tokens).
TOKEN_KEYS = {"token", "client_token"}


def redact(value: Any, secrets: dict) -> Any:
    """Replace every occurrence of a secret string (a root token) by its placeholder, and every
    token a response hands out by "<token>"."""
    if isinstance(value, str):
        for secret, placeholder in secrets.items():
            if secret:
                value = value.replace(secret, placeholder)
        return value
    if isinstance(value, list):
        return [redact(x, secrets) for x in value]
    if isinstance(value, dict):
        return {
            redact(k, secrets): ("<token>" if k in TOKEN_KEYS and isinstance(v, str) and v else redact(v, secrets))
            for k, v in value.items()
        }
    return value


@dataclass(frozen=True)
class Each:
    """A request value that differs per server (a token or accessor each server handed out):
    `Diff.call` sends `kvsync` to kvsync and `bao` to bao, wherever it sits in its keyword
    arguments (a body field, the token, a query parameter)."""

    kvsync: Any
    bao: Any

    def __repr__(self) -> str:  # never print the values: they may be tokens
        return "Each(...)"


def for_side(value: Any, side: str) -> Any:
    """`value` with every `Each` in it replaced by its `side` ("kvsync" or "bao")."""
    if isinstance(value, Each):
        return getattr(value, side)
    if isinstance(value, dict):
        return {k: for_side(v, side) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(for_side(v, side) for v in value)
    return value


@dataclass
class Pair:
    """Both answers to one request. `kv` / `bao` are the parsed (token-redacted) bodies."""

    request: str
    kvsync_response: requests.Response
    bao_response: requests.Response
    kv: Any
    bao: Any
    differences: list = field(default_factory=list)
    unexplained: list = field(default_factory=list)

    @property
    def status(self) -> int:
        """The reference's status (bao's)."""
        return self.bao_response.status_code


class Diff:
    """Sends each request to kvsync and to bao, compares, fails on an unexplained difference."""

    def __init__(self, kvsync: Http, bao: Http, tracked: Iterable = TRACKED, decided: Iterable = DECIDED,
                 pin_check: Optional[Callable[[str], None]] = None):
        self.pin_check = pin_check
        self.kvsync = kvsync
        self.bao = bao
        self.tracked = list(tracked)
        self.decided = list(decided)
        for d in self.decided:
            d.verify()
        self.allowed: list = []
        self.used: set = set()
        self.history: list = []
        self.secrets = {kvsync.token: "<root token>", bao.token: "<root token>"}

    # ---- allow-list -------------------------------------------------------------------------

    def allow(self, *decisions: Decision) -> None:
        for d in decisions:
            d.verify()
            self.allowed.append(d)

    def untrack(self, bug_id: str) -> None:
        """Stop masking one tracked bug (the test that pins it)."""
        before = len(self.tracked)
        self.tracked = [t for t in self.tracked if t.id != bug_id]
        assert len(self.tracked) == before - 1, f"no tracked bug {bug_id!r}"

    def known_bug(self, where: str, pinned_by: str, kind: Optional[str] = None, request: Optional[str] = None) -> None:
        """Mask one kvsync bug in this test, so the rest of the sequence is still compared. The bug
        must be pinned by a strict-xfail test (`pinned_by`, in the same module) whose reason starts
        with "kvsync bug:"."""
        assert self.pin_check is not None, "known_bug needs the diff fixture (it checks the pinning test)"
        self.pin_check(pinned_by)
        self.allowed.append(TrackedBug(id=f"{pinned_by}:{where}", where=where, bug="", pinned_by=pinned_by,
                                       kind=kind, request=request))

    def unused_allowances(self) -> list:
        return [d for d in self.allowed if d not in self.used]

    @staticmethod
    def _applies(entry, d: Difference, request: str) -> bool:
        if entry.kind is not None and entry.kind != d.kind:
            return False
        if entry.request is not None and not re.search(entry.request, request):
            return False
        return path_matches(entry.where, d.path)

    def _explained(self, d: Difference, request: str) -> bool:
        for entry in self.allowed:
            if self._applies(entry, d, request):
                self.used.add(entry)
                return True
        return any(self._applies(t, d, request) for t in self.tracked + self.decided)

    # ---- requests ---------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        expect: Optional[int] = None,
        project: Optional[Callable[[Any], Any]] = None,
        check: bool = True,
        **kw,
    ) -> Pair:
        """Send `method path` (relative to /v1/, with requests' keyword arguments) to both servers.

        expect:  the status bao must answer (guards what the test means to exercise).
        project: applied to both parsed bodies before comparing (e.g. keep only some mounts).
        check:   False to return the pair without failing on differences.
        """
        request = f"{method} {path}"
        rk = self.kvsync.request(method, path, **for_side(kw, "kvsync"))
        rb = self.bao.request(method, path, **for_side(kw, "bao"))
        kv = redact(parse_body(rk), self.secrets)
        bao = redact(parse_body(rb), self.secrets)
        if project is not None:
            kv, bao = project(kv), project(bao)
        diffs = []
        if rk.status_code != rb.status_code:
            diffs.append(Difference((STATUS,), "status", rk.status_code, rb.status_code))
        for h in ("Content-Type", "Cache-Control"):
            if rk.headers.get(h) != rb.headers.get(h):
                diffs.append(Difference((HEADER, h.lower()), "header", rk.headers.get(h), rb.headers.get(h)))
        diffs.extend(compare(kv, bao))
        pair = Pair(request, rk, rb, kv, bao, diffs, [d for d in diffs if not self._explained(d, request)])
        self.history.append(pair)
        if expect is not None:
            assert rb.status_code == expect, (
                f"the reference (bao) answered {rb.status_code}, the test expects {expect}\n" + self.report(pair, kw)
            )
        if check and pair.unexplained:
            raise AssertionError(self.report(pair, kw))
        return pair

    def issued(self, pair: "Pair", name: str) -> Each:
        """The token each server handed out in `pair` (`auth.client_token`): from now on
        redacted to `<name>` in both servers' bodies, so lookups that show it compare equal."""
        tokens = []
        for resp in (pair.kvsync_response, pair.bao_response):
            token = (resp.json().get("auth") or {}).get("client_token")
            assert token, f"{pair.request}: no auth.client_token in {resp.status_code} {short(parse_body(resp))}"
            self.secrets[token] = f"<{name}>"
            tokens.append(token)
        return Each(*tokens)

    @staticmethod
    def accessors(pair: "Pair") -> Each:
        """The accessor of the token each server handed out in `pair`."""
        return Each(*(r.json()["auth"]["accessor"] for r in (pair.kvsync_response, pair.bao_response)))

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, **kw):
        return self.call("POST", path, **kw)

    def put(self, path, **kw):
        return self.call("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def list(self, path, **kw):
        return self.call("LIST", path, **kw)

    def merge_patch(self, path, body, **kw):
        headers = {"Content-Type": "application/merge-patch+json"}
        headers.update(kw.pop("headers", None) or {})
        return self.call("PATCH", path, data=json.dumps(body), headers=headers, **kw)

    # ---- reporting --------------------------------------------------------------------------

    def report(self, pair: Pair, kw: dict) -> str:
        sent = {k: v for k, v in kw.items() if k in ("json", "data", "params", "headers")}
        lines = [f"kvsync and OpenBao differ on {pair.request}"]
        if sent:
            lines.append("request: " + short(redact(_jsonable(sent), self.secrets), 600))
        for d in pair.unexplained or pair.differences:
            lines.append("  - " + d.describe())
        for name, resp, body in (("kvsync", pair.kvsync_response, pair.kv), ("bao", pair.bao_response, pair.bao)):
            text = json.dumps(body, indent=1, sort_keys=True) if not isinstance(body, str) else body
            if len(text) > 3000:
                text = text[:3000] + "\n... (truncated)"
            lines.append(f"--- {name}: {resp.status_code} {resp.headers.get('Content-Type')}")
            lines.append(text)
        return "\n".join(lines)

    def close(self) -> None:
        self.kvsync.close()
        self.bao.close()


def _jsonable(v: Any) -> Any:
    if isinstance(v, Each):
        return "<per server>"
    if isinstance(v, (bytes, bytearray)):
        return v.decode(errors="replace")
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v
