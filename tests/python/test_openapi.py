"""The OpenAPI document (`GET /v1/sys/internal/specs/openapi`) of a dev server: it validates as
OpenAPI 3.0 with a standard validator (openapi-spec-validator), with the KV-v2 paths per mount and
with generic mount paths, and it needs a token as every other authenticated path does. The schema
fuzzer that runs against this document is `tests/fuzz/schemathesis.sh` (not part of this suite).
"""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.validators import OpenAPIV30SpecValidator

SPEC = "sys/internal/specs/openapi"


@pytest.mark.parametrize("generic", [False, True])
def test_the_document_validates_as_openapi_3_0(http, generic):
    # A second mount, so that per-mount paths and their operation ids are exercised.
    assert http.post("sys/mounts/openapi-kv", json={"type": "kv-v2"}).status_code in (204, 400)
    r = http.get(SPEC, params={"generic_mount_paths": "true"} if generic else None)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["openapi"] == "3.0.2"
    validate(doc, cls=OpenAPIV30SpecValidator)
    paths = doc["paths"]
    if generic:
        assert "/{kv_v2_mount_path}/data/{path}" in paths
        assert not any(p.startswith("/secret/") for p in paths)
    else:
        assert "/secret/data/{path}" in paths and "/openapi-kv/data/{path}" in paths
        assert paths["/secret/data/{path}"]["get"]["operationId"] == "kv-v2-read-secret"
    for fixed in ("/sys/sync/destinations/aws-sm/{name}", "/auth/token/create", "/sys/health", "/" + SPEC):
        assert fixed in paths, fixed
    # The same server state gives the same bytes.
    again = http.get(SPEC, params={"generic_mount_paths": "true"} if generic else None)
    assert again.content == r.content


def test_the_document_needs_a_token(http):
    r = http.get(SPEC, token=None)
    assert r.status_code == 403
    assert r.json() == {"errors": ["permission denied"]}
