"""`gh` against the project's GitHub fake (`kvsync-fake github`).

The fake seeds organization `kvsync`, its repository `kvsync/demo` and the personal access token
`ghp_kvsynctest`; kvsync reaches it as a GitHub Enterprise Server (`enterprise_url` → `<url>/api/v3`).
Each scope holds a real X25519 key pair: the fake opens the sealed boxes kvsync sends and its state lists
the repository's secrets by upper-cased name with their plaintext (no tags: GitHub has none), and counts
the accepted PUTs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Optional

from conformance import FakeProfile

TOKEN = "ghp_kvsynctest"
OWNER = "kvsync"
REPO = "demo"
#: An environment of the seeded repository, for destinations with `environment_name`.
ENVIRONMENT = "staging"


def normalize(name: str) -> str:
    """GitHub's name rule as the engine applies it: letters, digits and `_`, every other character
    becomes `_`, upper-cased; a leading digit gets `_` in front."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name).upper()
    if out[:1].isdigit():
        out = "_" + out
    return out


class GitHubProfile(FakeProfile):
    fake_name = "github"
    kind = "gh"
    cloud = False

    def start(self, tmp: Path) -> None:
        super().start(tmp)
        r = self._fake().session.post(f"{self._fake().url}/_fake/environments", timeout=10,
                                   data=json.dumps({"owner": OWNER, "repo": REPO, "name": ENVIRONMENT}))
        assert r.status_code == 201, r.text

    def destination(self, name: str, **overrides) -> dict:
        body = {
            "repository_owner": OWNER,
            "repository_name": REPO,
            "access_token": TOKEN,
            "enterprise_url": self._fake().url,
            "disable_strict_networking": True,
        }
        body.update(overrides)
        return body

    def bad_credentials(self) -> dict:
        return {"access_token": "ghp_wrong"}

    def throttle(self, times: int, retry_after_s: int) -> None:
        # GitHub's secondary rate limit: 429 with `retry-after` (the primary limit's 403 +
        # `x-ratelimit-reset` is covered by the connector's own tests: its hint depends on the clock).
        self._fake().fault(
            path_prefix="/api/v3/",
            status=429,
            times=times,
            headers=[
                ["retry-after", str(retry_after_s)],
                ["x-ratelimit-limit", "5000"],
                ["x-ratelimit-remaining", "4990"],
                ["x-ratelimit-reset", str(int(time.time()) + 3600)],
            ],
            body={
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            },
        )

    def expected_name(self, accessor: str, secret: str, key: Optional[str] = None) -> str:
        name = f"VAULT_{accessor.upper()}_{secret.upper()}"
        if key is not None:
            name += f"_{key.upper()}"
        return normalize(name)


PROFILE = GitHubProfile()
