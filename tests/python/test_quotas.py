"""Rate-limit quotas (`sys/quotas/rate-limit`, `sys/quotas/config`) and the per-tenant concurrency
cap, end to end against the real binary with hvac.

Quotas here are on fresh mounts (never global), with long intervals, and are deleted when their
test ends, so other tests of the module are never throttled. Enforcement is the Rust host's
(the Node host serves the endpoints but enforces nothing): those tests are `rust_host_only`.
"""

from __future__ import annotations

import hvac
import pytest

from kvsync_helpers import Http, ServerProcess, assert_alive, child_env, unique

DEFAULT_EXEMPT = [
    "sys/generate-recovery-token/attempt",
    "sys/generate-recovery-token/update",
    "sys/generate-root/attempt",
    "sys/generate-root/update",
    "sys/health",
    "sys/seal-status",
    "sys/unseal",
]


@pytest.fixture(autouse=True)
def _server_survives(dev_server):
    yield
    assert_alive(dev_server.server, dev_server.token)


@pytest.fixture
def mount(client):
    """A fresh KV-v2 mount, with one secret."""
    path = unique("qm")
    client.sys.enable_secrets_engine("kv", path=path, options={"version": "2"})
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"}, mount_point=path)
    yield path
    client.sys.disable_secrets_engine(path)


@pytest.fixture
def quotas(client):
    """Names of quotas the test creates: deleted afterwards, and the config restored."""
    names = []
    yield names
    for name in names:
        client.sys.delete_quota(name)
    client.write_data("sys/quotas/config", data={"rate_limit_exempt_paths": DEFAULT_EXEMPT})


def read_secret(http: Http, mount: str, name: str = "app"):
    return http.get(f"{mount}/data/{name}")


def test_quota_crud_with_hvac(client, mount, quotas):
    name = unique("q")
    quotas.append(name)
    resp = client.sys.create_or_update_quota(name=name, rate=897.3, path=f"{mount}/", interval="2m",
                                             block_interval="5m")
    assert resp.status_code == 204
    read = client.sys.read_quota(name)
    assert read["data"] == {
        "block_interval": 300, "inheritable": False, "interval": 120, "name": name, "path": f"{mount}/",
        "rate": 897.3, "role": "", "type": "rate-limit",
    }
    assert name in client.sys.list_quotas()["data"]["keys"]
    # Updating keeps the name; a second quota on the same scope is refused.
    client.sys.create_or_update_quota(name=name, rate=5, path=mount)
    assert client.sys.read_quota(name)["data"]["rate"] == 5
    assert client.sys.read_quota(name)["data"]["interval"] == 1
    with pytest.raises(hvac.exceptions.InvalidRequest, match="similar properties"):
        client.sys.create_or_update_quota(name=unique("dup"), rate=1, path=f"{mount}/")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid mount path"):
        client.sys.create_or_update_quota(name=unique("bad"), rate=1, path="no-such-mount/")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.create_or_update_quota(name=unique("bad"), rate=0)
    assert client.sys.delete_quota(name).status_code == 204
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.sys.read_quota(name)
    quotas.remove(name)


def test_quota_config_defaults_and_replacement(client, quotas):
    config = client.read("sys/quotas/config")["data"]
    assert config == {
        "enable_rate_limit_audit_logging": False,
        "enable_rate_limit_response_headers": False,
        "rate_limit_exempt_paths": DEFAULT_EXEMPT,
    }
    client.write_data("sys/quotas/config", data={"enable_rate_limit_response_headers": True})
    config = client.read("sys/quotas/config")["data"]
    assert config["enable_rate_limit_response_headers"] is True
    assert config["rate_limit_exempt_paths"] == []


@pytest.mark.rust_host_only
def test_past_the_rate_requests_get_429_and_other_paths_do_not(client, http, mount, quotas):
    name = unique("q")
    quotas.append(name)
    client.sys.create_or_update_quota(name=name, rate=2, path=f"{mount}/", interval="1h")
    assert [read_secret(http, mount).status_code for _ in range(2)] == [200, 200]
    refused = read_secret(http, mount)
    assert refused.status_code == 429
    assert refused.json() == {"errors": [f'request path "{mount}/data/app": rate limit quota exceeded']}
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["Cache-Control"] == "no-store"
    # hvac sees the 429 as a rate-limit error.
    with pytest.raises(hvac.exceptions.RateLimitExceeded):
        client.secrets.kv.v2.read_secret_version(path="app", mount_point=mount)
    # Other mounts and the system backend are not limited by this quota.
    assert http.get("secret/data/nothing-here").status_code == 404
    assert http.get("sys/mounts").status_code == 200
    # Deleted: the mount is served again at once.
    client.sys.delete_quota(name)
    quotas.remove(name)
    assert read_secret(http, mount).status_code == 200


@pytest.mark.rust_host_only
def test_the_most_specific_quota_wins(client, http, mount, quotas):
    on_mount, on_app = unique("qm"), unique("qa")
    quotas.extend([on_mount, on_app])
    client.sys.create_or_update_quota(name=on_mount, rate=100, path=mount, interval="1h")
    client.sys.create_or_update_quota(name=on_app, rate=1, path=f"{mount}/data/app*", interval="1h")
    assert read_secret(http, mount).status_code == 200
    assert read_secret(http, mount).status_code == 429
    assert read_secret(http, mount, "application").status_code == 429
    # The rest of the mount has the mount's quota.
    assert http.get(f"{mount}/data/other").status_code == 404
    assert http.get(f"{mount}/metadata/app").status_code == 200


@pytest.mark.rust_host_only
def test_block_interval_headers_and_exempt_paths(client, http, mount, quotas):
    name = unique("q")
    quotas.append(name)
    client.write_data("sys/quotas/config", data={
        "enable_rate_limit_response_headers": True,
        "rate_limit_exempt_paths": DEFAULT_EXEMPT + [f"{mount}/data/ci*"],
    })
    client.sys.create_or_update_quota(name=name, rate=1, path=mount, interval="1s", block_interval="1h")
    first = read_secret(http, mount)
    assert first.status_code == 200
    assert first.headers["X-Ratelimit-Limit"] == "1"
    assert first.headers["X-Ratelimit-Remaining"] == "0"
    blocked = read_secret(http, mount)
    assert blocked.status_code == 429
    # Blocked for the block interval, not just until the bucket refills.
    assert int(blocked.headers["Retry-After"]) > 60
    for _ in range(3):
        assert http.get(f"{mount}/data/ci/job").status_code == 404


@pytest.mark.rust_host_only
def test_the_tenant_concurrency_cap_is_a_flag(kvsync_bin, tmp_path):
    token = "root-" + unique("t")
    argv = [kvsync_bin, "server", "--dev", "--dev-listen-address", "127.0.0.1:0", "--dev-root-token-id", token,
            "--tenant-max-concurrent-requests", "1"]
    srv = ServerProcess(argv, log_dir=tmp_path, env=child_env(), name="capped")
    try:
        addr = srv.wait_for_address()
        h = Http(addr, token)
        # One request at a time per tenant still serves requests one after another.
        for _ in range(3):
            assert h.get("secret/data/none").status_code == 404
        h.close()
    finally:
        srv.stop()
    bad = ServerProcess(argv[:-1] + ["0"], log_dir=tmp_path, env=child_env(), name="zero")
    try:
        assert bad.wait_exit(30) not in (None, 0)
    finally:
        bad.stop()
