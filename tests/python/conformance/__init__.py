"""The destination conformance suite's contract: one `Profile` per destination type.

A profile starts the provider double (moto behind the fault proxy, or one of the project's fakes run
by the `kvsync-fake` binary), tells which environment kvsync needs to reach it, builds destination
bodies, and reads back what the provider holds. `test_conformance.py` runs the same scenario against
every profile in `PROFILES`: adding a destination type adds one module here and one line below.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Optional

import requests

from kvsync_helpers import REPO_ROOT

LISTENING_RE = re.compile(r"Listening:\s*(http://127\.0\.0\.1:\d+)")
START_TIMEOUT = 60.0


def fake_bin() -> Path:
    return Path(os.environ.get("KVSYNC_FAKE_BIN") or (REPO_ROOT / "target" / "debug" / "kvsync-fake"))


class FakeProcess:
    """`kvsync-fake <args>` on 127.0.0.1: its address, admin API (state, calls, faults), and stop()."""

    def __init__(self, args: list, log_dir: Path, name: str):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(log_dir / f"fake-{name}.log", "wb")
        # stdin stays open: the fake runs until it closes (or we kill it).
        self.proc = subprocess.Popen([str(fake_bin()), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log)
        self.url = self._wait_for_address()
        self.session = requests.Session()
        self.session.trust_env = False

    def _wait_for_address(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            m = LISTENING_RE.search(line)
            if m:
                return m.group(1)
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"kvsync-fake {self.proc.args} did not start")

    def admin(self, method: str, path: str, **kw) -> requests.Response:
        return self.session.request(method, f"{self.url}/_admin/{path}", timeout=10, **kw)

    def state(self) -> dict:
        r = self.admin("GET", "state")
        r.raise_for_status()
        return r.json()

    def calls(self) -> list:
        r = self.admin("GET", "calls")
        r.raise_for_status()
        return r.json()

    def fault(self, **fault) -> None:
        r = self.admin("POST", "faults", data=json.dumps(fault))
        assert r.status_code == 204, r.text

    def clear_faults(self) -> None:
        self.admin("DELETE", "faults")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


class Profile:
    """One destination type under test. Subclasses fill in every method."""

    kind: str = ""
    #: Whether the type writes tags (cloud types): then objects carry hashicorp:vault + custom tags.
    cloud: bool = False

    def start(self, tmp: Path) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def server_env(self) -> dict:
        """Environment for the kvsync server (endpoint overrides and the like)."""
        return {}

    def destination(self, name: str, **overrides) -> dict:
        """A destination body that reaches the double: credentials, addresses, and
        `disable_strict_networking: true` (the double is on loopback)."""
        raise NotImplementedError

    def bad_credentials(self) -> dict:
        """Overrides that make the provider refuse the credentials."""
        raise NotImplementedError

    def objects(self) -> dict:
        """What the provider holds: {external name: {"value": str, "tags": {k: v}}}."""
        raise NotImplementedError

    def writes(self) -> int:
        """How many write calls (create / put / update / add version) the provider received."""
        raise NotImplementedError

    def throttle(self, times: int, retry_after_s: int) -> None:
        """Make the next `times` provider calls fail as the provider throttles, with a retry hint."""
        raise NotImplementedError

    def clear_faults(self) -> None:
        raise NotImplementedError

    def expected_name(self, accessor: str, secret: str, key: Optional[str] = None) -> str:
        """The external name the default template and the type's normalisation give."""
        raise NotImplementedError


class FakeProfile(Profile):
    """A profile whose double is one `kvsync-fake <fake_name>` process: its state lists the objects
    (`{"objects": {name: {"value", "tags"}}, "writes": N}`) and its fault table throttles."""

    fake_name: str = ""

    def __init__(self) -> None:
        self.fake: Optional[FakeProcess] = None

    def start(self, tmp: Path) -> None:
        self.fake = FakeProcess([self.fake_name], tmp, self.fake_name)

    def stop(self) -> None:
        if self.fake is not None:
            self.fake.stop()
            self.fake = None

    def _fake(self) -> FakeProcess:
        assert self.fake is not None, f"the {self.fake_name} fake is not running"
        return self.fake

    def objects(self) -> dict:
        objects = self._fake().state().get("objects", {})
        return {k: {"value": v["value"], "tags": v.get("tags", {})} for k, v in objects.items()}

    def writes(self) -> int:
        return int(self._fake().state().get("writes", 0))

    def clear_faults(self) -> None:
        self._fake().clear_faults()


#: One module per destination type, each defining PROFILE.
MODULES = ["aws_sm", "azure_kv", "gcp_sm", "gh", "vercel_project"]


def load_profiles() -> list:
    """Every registered profile, one per destination type (import errors are errors, not skips).
    `KVSYNC_CONFORMANCE_ONLY=<module>` loads one of them (while developing a connector)."""
    import importlib

    only = os.environ.get("KVSYNC_CONFORMANCE_ONLY")
    names = [only] if only else MODULES
    return [importlib.import_module(f"conformance.{n}").PROFILE for n in names]
