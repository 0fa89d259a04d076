"""`vercel-project` against the project's Vercel fake (`kvsync-fake vercel`).

The fake seeds project `prj_kvsynctest` owned by team `team_kvsync` and accepts the token
`vercel_test_token`; kvsync reaches it through `KVSYNC_VERCEL_API_URL`. Its state lists the env vars
of that project by key (plaintext value, no tags: Vercel has none) and counts the upsert items written.
"""

from __future__ import annotations

import re
import time
from typing import Optional

from conformance import FakeProfile

TOKEN = "vercel_test_token"
PROJECT_ID = "prj_kvsynctest"
TEAM_ID = "team_kvsync"


def normalize(name: str) -> str:
    """Vercel's name rule as the engine applies it: letters, digits and `_`; every other character
    becomes `_`; a leading digit gets `_` in front."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if out[:1].isdigit():
        out = "_" + out
    return out


class VercelProjectProfile(FakeProfile):
    fake_name = "vercel"
    kind = "vercel-project"
    cloud = False

    def server_env(self) -> dict:
        return {"KVSYNC_VERCEL_API_URL": self._fake().url}

    def destination(self, name: str, **overrides) -> dict:
        body = {
            "access_token": TOKEN,
            "project_id": PROJECT_ID,
            "team_id": TEAM_ID,
            "deployment_environments": ["production", "preview"],
            "disable_strict_networking": True,
        }
        body.update(overrides)
        return body

    def bad_credentials(self) -> dict:
        return {"access_token": "wrong"}

    def throttle(self, times: int, retry_after_s: int) -> None:
        reset = int(time.time()) + retry_after_s
        self._fake().fault(
            path_prefix="/v",
            status=429,
            times=times,
            headers=[
                ["retry-after", str(retry_after_s)],
                ["x-ratelimit-limit", "100"],
                ["x-ratelimit-remaining", "0"],
                ["x-ratelimit-reset", str(reset)],
            ],
            body={"error": {
                "code": "rate_limited",
                "message": f"Rate limit exceeded. Try again in {retry_after_s} seconds.",
                "limit": {"remaining": 0, "reset": reset, "resetMs": reset * 1000, "total": 100},
            }},
        )

    def expected_name(self, accessor: str, secret: str, key: Optional[str] = None) -> str:
        name = f"VAULT_{accessor.upper()}_{secret.upper()}"
        if key is not None:
            name += f"_{key.upper()}"
        return normalize(name)


PROFILE = VercelProjectProfile()
