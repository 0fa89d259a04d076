"""Helpers for the durable-sync end-to-end tests (test_durable_sync.py).

- servers with the sync worker's timing knobs: dev mode (`start_sync_dev_server`) and config mode
  (`SyncConfigServer`, for kill -9 + restart on one storage and for the `kvsync sync ...` CLIs);
- `VercelFake`: the project's Vercel fake (`kvsync-fake vercel [--port N]`), restartable on the
  same port, with its objects, write counter, call log (with `at_ms`) and fault table;
- bounded polling (`wait_for`) that fails with a description of the last state seen.

Everything listens on 127.0.0.1 only; whatever is started here is stopped by the test that started
it (by pid, SIGTERM then SIGKILL).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

from conformance import FakeProcess
from conformance.vercel_project import PROJECT_ID, TEAM_ID, TOKEN, normalize
from conftest import ConfigServer, DevServer
from kvsync_helpers import START_TIMEOUT, Http, ServerProcess, child_env

# --------------------------------------------------------------------------------------------
# timing knobs
# --------------------------------------------------------------------------------------------

#: Backoff base / cap and reconciliation interval of every server these tests start.
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 2.0
RECONCILE_S = 2.0
WORKERS = 2

#: `kvsync server` flags (dev mode).
SYNC_FLAGS = [
    "--sync-backoff-base", "200ms",
    "--sync-backoff-cap", "2s",
    "--sync-reconcile-interval", "2s",
    "--sync-workers", str(WORKERS),
]

#: The same settings in the HCL configuration (config mode).
SYNC_HCL = {
    "sync_backoff_base": '"200ms"',
    "sync_backoff_cap": '"2s"',
    "sync_reconcile_interval": '"2s"',
    "sync_workers": str(WORKERS),
}

#: Default bound of every wait for convergence.
CONVERGE_S = 20.0
POLL_S = 0.05


# --------------------------------------------------------------------------------------------
# polling
# --------------------------------------------------------------------------------------------


def wait_for(what: str, probe: Callable[[], tuple], timeout: float = CONVERGE_S, interval: float = POLL_S):
    """Call `probe()` -> (done, observed) until done (bounded in time and count). Returns the last
    `observed`; on timeout fails with `what` and the last observation."""
    deadline = time.monotonic() + timeout
    max_rounds = int(timeout / interval) + 10
    observed = None
    for _ in range(max_rounds):
        done, observed = probe()
        if done:
            return observed
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"{what}: not reached within {timeout:.0f}s; last seen: {observed!r}")


# --------------------------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------------------------


def start_sync_dev_server(kvsync_bin: Path, log_dir: Path, env_extra: Optional[dict] = None,
                          flags: Optional[list] = None) -> DevServer:
    """A dev-mode kvsync (KV-v2 at secret/) with the sync timing knobs on the command line."""
    token = "root-" + secrets.token_hex(12)
    argv = [
        kvsync_bin, "server", "--dev",
        "--dev-listen-address", "127.0.0.1:0",
        "--dev-root-token-id", token,
        *(SYNC_FLAGS if flags is None else flags),
    ]
    srv = ServerProcess(argv, log_dir=log_dir, env=child_env(env_extra), name="dev-sync")
    try:
        addr = srv.wait_for_address(START_TIMEOUT)
    except BaseException:
        srv.stop()
        raise
    return DevServer(addr=addr, token=token, proc=srv.proc, server=srv)


class SyncConfigServer(ConfigServer):
    """A config-mode kvsync whose HCL carries the sync settings and whose processes (server and
    CLI) get `env_extra` (e.g. KVSYNC_VERCEL_API_URL)."""

    def __init__(self, kvsync_bin: Path, base_dir: Path, env_extra: Optional[dict] = None,
                 settings: Optional[dict] = None):
        self.env_extra = dict(env_extra or {})
        self.settings = dict(SYNC_HCL if settings is None else settings)
        super().__init__(kvsync_bin, base_dir)

    def write_config(self) -> None:
        super().write_config()
        extra = "".join(f"{k} = {v}\n" for k, v in self.settings.items())
        with open(self.config_path, "a") as f:
            f.write(extra)

    def _env(self, env_key: Optional[str]) -> dict:  # type: ignore[override]
        env = dict(self.env_extra)
        if env_key is not None:
            env["KVSYNC_ENCRYPTION_KEY"] = env_key
        return child_env(env)

    def run_cli(self, args: list, env_extra: Optional[dict] = None, timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(self.env_extra)
        env.update(env_extra or {})
        return subprocess.run(
            [str(self.bin), *[str(a) for a in args]],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(env),
            cwd=str(self.log_dir),
        )


# --------------------------------------------------------------------------------------------
# the Vercel fake
# --------------------------------------------------------------------------------------------

#: The routes kvsync's vercel-project connector calls (push: POST .../env; delete: GET .../env,
#: then DELETE /v9/.../env/<id>).
ENV_ROUTE = f"/v10/projects/{PROJECT_ID}/env"
DELETE_ROUTE = f"/v9/projects/{PROJECT_ID}/env/"


class VercelFake:
    """`kvsync-fake vercel` that can be stopped and started again on the same port."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.proc: Optional[FakeProcess] = None
        self.port: Optional[int] = None
        self.starts = 0
        self.start()

    @property
    def url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None, "the fake is already running"
        args = ["vercel"] if self.port is None else ["vercel", "--port", str(self.port)]
        self.starts += 1
        last = None
        # The port was ours a moment ago; binding it again may need a (bounded) moment.
        for _ in range(40):
            try:
                self.proc = FakeProcess(args, self.log_dir, f"vercel-{self.starts}")
                break
            except AssertionError as e:
                last = e
                time.sleep(0.1)
        if self.proc is None:
            raise AssertionError(f"kvsync-fake {args} did not start: {last}")
        port = int(self.proc.url.rsplit(":", 1)[1])
        assert self.port is None or port == self.port, (port, self.port)
        self.port = port

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def _p(self) -> FakeProcess:
        assert self.proc is not None, "the Vercel fake is not running"
        return self.proc

    def env(self) -> dict:
        return {"KVSYNC_VERCEL_API_URL": self.url}

    def state(self) -> dict:
        return self._p().state()

    def objects(self) -> dict:
        """{env var key: value} of the test project."""
        return {k: v["value"] for k, v in self.state().get("objects", {}).items()}

    def writes(self) -> int:
        return int(self.state().get("writes", 0))

    def calls(self) -> list:
        return self._p().calls()

    def clear_calls(self) -> None:
        r = self._p().admin("DELETE", "calls")
        assert r.status_code == 204, r.text

    def fault(self, **fault) -> None:
        self._p().fault(**fault)

    def clear_faults(self) -> None:
        r = self._p().admin("DELETE", "faults")
        assert r.status_code == 204, r.text

    def outage(self, status: int = 503) -> None:
        """Every provider route answers `status` (until cleared)."""
        body = {"error": {"code": "service_unavailable", "message": "The service is temporarily unavailable"}}
        self.fault(path_prefix="/v", status=status, body=body, times=1_000_000)

    def slow(self, delay_ms: int, method: Optional[str] = None) -> None:
        """Provider calls (of `method`, or all) answer normally, after `delay_ms`."""
        f = {"path_prefix": "/v", "status": 0, "delay_ms": delay_ms, "times": 1_000_000}
        if method:
            f["method"] = method
        self.fault(**f)


def vercel_destination(**overrides) -> dict:
    body = {
        "access_token": TOKEN,
        "project_id": PROJECT_ID,
        "team_id": TEAM_ID,
        "deployment_environments": ["production", "preview"],
        "disable_strict_networking": True,
        "granularity": "secret-path",
    }
    body.update(overrides)
    return body


def vercel_name(accessor: str, secret: str, key: Optional[str] = None) -> str:
    name = f"VAULT_{accessor.upper()}_{secret.upper()}"
    if key is not None:
        name += f"_{key.upper()}"
    return normalize(name)


def in_mem_name(accessor: str, secret: str) -> str:
    return f"vault/{accessor}/{secret}"


# --------------------------------------------------------------------------------------------
# API shortcuts (plain status checks; the envelope itself is test_sync_api.py's business)
# --------------------------------------------------------------------------------------------


def expect(r, *statuses):
    statuses = statuses or (200,)
    assert r.status_code in statuses, f"{r.request.method} {r.url}: expected {statuses}, got {r.status_code}: {r.text[:800]}"
    return r


def body(r, *statuses) -> dict:
    return expect(r, *statuses).json()


def kv_write(h: Http, mount: str, path: str, payload: dict) -> dict:
    return body(h.post(f"{mount}/data/{path}", json={"data": payload}))


def kv_current(h: Http, mount: str, path: str) -> Optional[dict]:
    """The data of the current version, or None when it is deleted / destroyed / absent."""
    r = h.get(f"{mount}/data/{path}")
    if r.status_code == 404:
        return None
    return body(r)["data"]["data"]


def accessor(h: Http, mount: str) -> str:
    return body(h.get(f"sys/mounts/{mount}"))["data"]["accessor"]


def new_kv2_mount(h: Http, path: str) -> None:
    expect(h.post(f"sys/mounts/{path}", json={"type": "kv-v2"}), 204)
    for _ in range(100):  # bounded: a fresh mount may need a moment in config mode
        if h.get(f"{path}/config").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"mount {path} never became usable")


def dest(kind: str, name: str) -> str:
    return f"sys/sync/destinations/{kind}/{name}"


def create_dest(h: Http, kind: str, name: str, payload: dict) -> dict:
    return body(h.post(dest(kind, name), json=payload))["data"]


def set_assoc(h: Http, kind: str, name: str, mount: str, secret: str) -> dict:
    r = h.post(f"{dest(kind, name)}/associations/set", json={"mount": mount, "secret_name": secret})
    return body(r)["data"]["associated_secrets"]


def remove_assoc(h: Http, kind: str, name: str, mount: str, secret: str) -> dict:
    r = h.post(f"{dest(kind, name)}/associations/remove", json={"mount": mount, "secret_name": secret})
    return body(r)["data"]["associated_secrets"]


def rows(h: Http, kind: str, name: str) -> dict:
    return body(h.get(f"{dest(kind, name)}/associations"))["data"]["associated_secrets"]


def statuses(h: Http, kind: str, name: str) -> dict:
    return {k: v["sync_status"] for k, v in rows(h, kind, name).items()}


def in_mem_objects(h: Http, name: str) -> dict:
    objs = body(h.get(f"sys/sync/destinations/in-mem/{name}/objects"))["data"]["objects"]
    return {k: v["value"] for k, v in objs.items()}


def as_json(value: Optional[str]):
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value
