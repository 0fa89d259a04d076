"""Conformance profile of `gcp-sm` (Google Secret Manager) against the project's GCP fake
(`kvsync-fake gcp`, tests/src/fake/gcp.rs).

- The server reaches the fake's Secret Manager API through `KVSYNC_GCP_SECRET_MANAGER_URL`; the
  destination's service-account JSON key has `token_uri = <fake>/token`, so the connector's signed
  JWT is verified by the fake's token endpoint (RS256, against the test key's public half).
- Bad credentials: the same service account, but a key signed with ANOTHER private key: the fake
  answers `invalid_grant` ("Invalid JWT Signature.").
- Writes: successful `addVersion` + `create` calls. Creating costs two writes (create + first
  version); an update of an existing secret costs one (`addVersion`).
- Tags: GCP stores labels, whose keys are lowercase `[a-z0-9_-]` (kvsync maps a tag key by
  lowercasing it and turning other characters into `-`, see host/src/connectors/gcp_sm/mod.rs), so the
  built-in tag `hashicorp:vault` is stored as the label `hashicorp-vault`. `objects()` reverses that
  one mapping so the shared scenario can check for `hashicorp:vault`; other labels are returned as
  stored.
- Throttling: Google's 429 `RESOURCE_EXHAUSTED` with `Retry-After`, injected on the API routes
  (`/v1/`), not on the token endpoint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from conformance import FakeProfile

PROJECT_ID = "kvsync-test"
CLIENT_EMAIL = "kvsync-sync@kvsync-test.iam.gserviceaccount.com"
PRIVATE_KEY_ID = "5b1c0d5e7a7f4bd0a1c7e0e1b9f6a0d3c2e4f601"

# Throwaway test keys, the same as TEST_PRIVATE_KEY_PEM and OTHER_PRIVATE_KEY_PEM in
# tests/src/fake/gcp.rs (the fake knows the public half of the first one only).
TEST_PRIVATE_KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIIEugIBADANBgkqhkiG9w0BAQEFAASCBKQwggSgAgEAAoIBAQCnihB40NoSIDw1
GJToKlgHrpV4X8FtB9gPgydwD9bsUV9WFQZ4uexiPZ8Ocrs9NSUWsVbTrBsInvd2
2RO1InEMmYIHRMrqwempluz3DD0QWYIjBKJneP9u3q0bn6I+ADi7aC2rhlziTnkh
GUq9HR2vZeYMf8CISOeBIL2MlKF0nyS5ov1XXlB3qX7ERXZj58zjU2bnTxgMG5fu
RsVZxg7PddUAuGCGF3r+B4GgsAg9Pby+HIlawiZaQl30yNHUKg6uEU6Z0Gz9EBsl
r0M5agp6+TRNCVeES5/UrnG5WqFZ6Nh5QeyEr12okAph3KSsc0ryiY0bGohOt1LJ
65nWxB+VAgMBAAECggEAKEhYdIwW2sPYZhXOe9Huj45JDwPLAJmht/0bZuTQEsrv
5sUwZKejb+2MCE/KuElGbSHflA5uA5EhQ/imtecdkl94daHzPiW4tld9C1tsdTlo
Ql4zZDiiBfjRW3Jy8oBgI6NFU9f/DkS6+BvaLgVJpWoVOY0f8ETDMPd7y8jS1zSm
KHTEIGI4kUOb82y1ioPOPMlFo3q/W1AV1gcz0Oz3XcyJQDu2dnVKuD/t2FW4tBc4
9DjclZI5AGNizfG3+BAyk1ltEm3M5Dk1WvroR0PcP2+y156n82DjXQAKJkq7ZiH5
8/hddexpDyszDZpN4jAHJeXCVDPSnhxCeYAnONKEUQKBgQDqVo6BKNOVYbq8+MUt
IdHa+mvnXpfemwlqTlcNVyZK20mijHC8bxpXfWGFs+8gKzzXUJ7prdFH/6dWx+ze
EJe0AabNZoHsZ7fhvrscP+C/VeND0or8IhlL/BTzvAIi/ELgnv8ZAs3cWdNND4gk
su9wCEaWediiTYxi8ZfbkbiiDQKBgQC3BsMU/c5CUc4lt4HtdpqqGZYCIBNZ7uQR
qcPGd6ILFWfoyAN14fs6E3R9B4KPnNY9scKoON9xfHLESLzCxuhX3smWSEIb/H+a
k3CT86DoP82yK0TT8kEqHpTw1kRtKcrYgZ/iv+96JlphmT0z+ZTcB3c3Ob35TmFD
Tkn3ry15qQJ/MIO6/QJ2y3ZwMq9OIwndaHhv3na2+l8ek+OkIh7ozpaXqA9rR5e4
3GQYzJVz7DUHY4xNWhOiQEWtX0oEv/Svc5Tj86JFQ6w1ZYcXNcIDxZkCdAgivhBR
LGoD7HH//z46mkZQid0KwZPXKx0MEoz5BTixZHXVY8SqS9G4nryMfQKBgEzenS6C
zo8SFpfGs94NEzZf2p335Mi/ybAVcfE4K6mmCuc8oh9vkvk4VJNyhQZWI7DzqMLI
aCgc0YLY3dacfdbx7g6dOI7ShLFiPUUWbL0+luC+xYCS3YWYJIvmIgULKXO3NXSh
ki3mT81v88GRkFC9Hffm24AKyFThW7WYMGxJAoGAJr2i8Fg2wuzP4wh+VLht41Fj
Rr6VrVpYQ33SZ4XTiucxxCJPOKGIYvAhy2w7XgEh57RZ3Cdt9jEsOeWZq87YaCze
CmRumsF8P8LJS+BQf3CrtPQ2CklK2BMLQj9abMzGHbCOTl8Vf1TwP9uyAHnsrz8/
5X3XEFF/XDQotozd7SU=
-----END PRIVATE KEY-----
"""

OTHER_PRIVATE_KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCneP+pijuc6rBr
57IrXH+sxfYbZf4yWfR+1JnbGaEjgFptjjDWjo8ZGVHlOnakeLf72hVmRv2pbxGO
Y1dIcd9oKqgJS/zrgIsUcboNbMM4UwFgdFAk4g7OOg93ZFTriC4Dx979XqYXkIXq
MugWg5UCpAtFF992HMAPSrsdLxjqvKOVHlyR0B68ytGfYyr28GwXFA48kw2VuE4B
RfGh9QLluofHpVOs7nOUmRp7sB7ePWbvZoL7HZj7bUxsB/p/WW/XuFyXmdj/c7dA
RYSYN/wmrximux3GIl/aSMKkuGxb4IswrXkRUKRWbJSYwUi8JaZXHCr87CI6E4GX
o6vB6KtJAgMBAAECggEAFG0GV64Ps8WPE3Ycrbu4KcEyUWio7oi4sJBrHIU9eVhC
Dzsouz6Ddwb2zVvKVSiRHhNdCU6uyQ/OJxz4LBKRckHDoXCmbi3NKMbvL4x8qf27
vQEqtjjpH9+Ge+QdlGWVYSorSSFWZijfIG+pjXdqgPozkq+E9oGurh7KABb6tcRu
NXx7fw1qV2s9oKj7m1xAueeq46DIcE7/3vZrAYkiOwWX/vJmoqJ1Yq9u/ZqK/Pkq
FTCLtjt/erU0JKbcgyAH2TyNhFhFW6HR+DodqOoVTNEZRWchbvhGuLWw/Y276tny
1MWscCaT2Fz4Qm/4O0dRPn7bJRh/iUn3cgbeoJQZAQKBgQDTL6Qct9UlvGvDP6IS
Ubp4cP3Oyj9vi9/jSYaB9kqg1sU/ykkefDj2PYhthVVLYFGvny0WEow/dABMY3QZ
48O2berl/XoWifo3ZNT6tIE+m8r08fxa8brvXzsTb6Oo9bqnVEQom3CWsTyuKmEs
yQ8O2ZGD6PPEQrOUBV7OngUgyQKBgQDLArErFr8X8eJr53UOOb+iFj+6u6/ghgxT
sQlxk+GKgvczx4KS0fQ4zkBh25ZOLcrSkKaLbefS67yPXfg0bEN4whije7J6FsPW
wtDraSuwLrZvIS8Nk9rZww+dmcRSAS3Z2HCcFwK7DrbNUSKq/YT8+VjMT5ug6uh5
yS9swEL2gQKBgQCIPv8oy+0GiHYZpC8ClJmx5GvKgq7EX0BVGXVe2S+ybn0ZN39O
3KO/MVmYFuI9W+m3XQEwcUzsDwG2Rp97qHb2dhmKwaqHagL0w+enytZrNwWMW6YM
YlHQ5uZtFqRGeCowk+vZKtdLURMt5geFZj2BvhnkOWEzKDlE8OYGdOooCQKBgQDE
OgbsImF1kK2OJTzFElbEIoNZSJ+5A3kY0E/Tg+CHFQ5C836n0d8hpWMf87O2P5cD
ryP8M7DX9FrfrTID4f3Z1KsiIqeiUSzdApQUaCT9eDmI82da1Wa+BEisynuz1EXw
gsBeb/OIwbE6hklfRAvuxknpuq0wfr9VMHzxvmk7gQKBgC9bpYLHSA2dI9zlNXSO
MgdygC7hx93VIi67E9IAiqGo6jo2CATn0cz64INDfzWe9nCB4Jk8AKGavvA1XuU/
NXxkd0IIQy8FnIjtIFt/jdSa6k4UelKhbw00NwL8WJCDYpMXH1fglNFUS7hqjuzv
hWVvveRJA9xov65I3ekYvclK
-----END PRIVATE KEY-----
"""

#: Label key -> tag key, for the tags whose label differs from the tag (see the module docs).
LABEL_TO_TAG = {"hashicorp-vault": "hashicorp:vault"}

INVALID_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


class GcpSecretManagerProfile(FakeProfile):
    fake_name = "gcp"
    kind = "gcp-sm"
    cloud = True

    def server_env(self) -> dict:
        return {"KVSYNC_GCP_SECRET_MANAGER_URL": self._fake().url}

    def _credentials(self, private_key: str) -> str:
        return json.dumps({
            "type": "service_account",
            "project_id": PROJECT_ID,
            "private_key_id": PRIVATE_KEY_ID,
            "private_key": private_key,
            "client_email": CLIENT_EMAIL,
            "client_id": "104242424242424242424",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": f"{self._fake().url}/token",
            "universe_domain": "googleapis.com",
        })

    def destination(self, name: str, **overrides) -> dict:
        body = {
            "credentials": self._credentials(TEST_PRIVATE_KEY_PEM),
            "project_id": PROJECT_ID,
            "disable_strict_networking": True,
        }
        body.update(overrides)
        return body

    def bad_credentials(self) -> dict:
        return {"credentials": self._credentials(OTHER_PRIVATE_KEY_PEM)}

    def objects(self) -> dict:
        out = {}
        for name, obj in self._fake().state()["objects"].items():
            # A secret without versions (created, first addVersion not yet done) has value None.
            tags = {LABEL_TO_TAG.get(k, k): v for k, v in obj["tags"].items()}
            out[name] = {"value": obj["value"], "tags": tags}
        return out

    def writes(self) -> int:
        state = self._fake().state()
        return state["writes"] + state["creates"]

    def throttle(self, times: int, retry_after_s: int) -> None:
        self._fake().fault(
            path_prefix="/v1/",
            status=429,
            body={"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                            "message": "Quota exceeded for quota metric 'Write requests' and limit "
                                       "'Write requests per minute' of service 'secretmanager.googleapis.com'."}},
            headers=[["retry-after", str(retry_after_s)]],
            times=times,
        )

    def expected_name(self, accessor: str, secret: str, key: Optional[str] = None) -> str:
        # Default template vault/{{ .MountAccessor }}/{{ .SecretPath }}[/{{ .SecretKey }}],
        # normalised to [A-Za-z0-9_-] with "_" for everything else.
        rendered = f"vault/{accessor}/{secret}" + (f"/{key}" if key is not None else "")
        return INVALID_ID_CHARS.sub("_", rendered)


PROFILE = GcpSecretManagerProfile()
