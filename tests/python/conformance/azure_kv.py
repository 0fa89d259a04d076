"""`azure-kv` against the project's Azure fake (`kvsync-fake azure`).

One fake process serves the Microsoft Entra ID token endpoint and one Key Vault. It knows one app
registration (tenant `00000000-0000-0000-0000-000000000001`, client `kvsync-test-client`, secret
`kvsync-test-secret`); kvsync reaches its token endpoint through the standard `AZURE_AUTHORITY_HOST`
and the vault through the destination's `key_vault_uri`. Its state lists the live secrets by name
(current version's plaintext value and tags; soft-deleted ones are listed apart) and counts the PUTs.
"""

from __future__ import annotations

import re
from typing import Optional

from conformance import FakeProfile

TENANT_ID = "00000000-0000-0000-0000-000000000001"
CLIENT_ID = "kvsync-test-client"
CLIENT_SECRET = "kvsync-test-secret"


def normalize(name: str) -> str:
    """Key Vault's name rule as the engine applies it: letters, digits and `-`; every other
    character becomes `-` (one for one, case kept)."""
    return re.sub(r"[^0-9A-Za-z-]", "-", name)


class AzureKeyVaultProfile(FakeProfile):
    fake_name = "azure"
    kind = "azure-kv"
    cloud = True

    def server_env(self) -> dict:
        return {"AZURE_AUTHORITY_HOST": self._fake().url}

    def destination(self, name: str, **overrides) -> dict:
        body = {
            "key_vault_uri": self._fake().url,
            "tenant_id": TENANT_ID,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "disable_strict_networking": True,
        }
        body.update(overrides)
        return body

    def bad_credentials(self) -> dict:
        return {"client_secret": "wrong"}

    def throttle(self, times: int, retry_after_s: int) -> None:
        # Key Vault's answer when a vault's transaction limit is reached.
        self._fake().fault(
            status=429,
            times=times,
            headers=[["retry-after", str(retry_after_s)]],
            body={"error": {
                "code": "Throttled",
                "message": "Request was not processed because too many requests were received. "
                           "Reason: VaultRequestTypeLimitReached",
            }},
        )

    def expected_name(self, accessor: str, secret: str, key: Optional[str] = None) -> str:
        name = f"vault-{accessor.replace('_', '-')}-{secret}"
        if key is not None:
            name += f"-{key}"
        return normalize(name)


PROFILE = AzureKeyVaultProfile()
