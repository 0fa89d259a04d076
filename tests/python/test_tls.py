"""The listener's TLS: `tls_cert_file` / `tls_key_file` serve HTTPS that hvac verifies."""

import json
import re
import shutil
import subprocess
import time

import hvac
import pytest
import requests

from kvsync_helpers import ServerProcess, child_env

HTTPS_ADDR_RE = re.compile(r"Api Address:\s*(https://127\.0\.0\.1:\d+)")


def make_cert(directory):
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_https_listener_serves_kv_to_hvac(kvsync_bin, tmp_path):
    cert, key = make_cert(tmp_path)
    storage = tmp_path / "storage"
    config = tmp_path / "kvsync.hcl"
    config.write_text(
        f'storage "redb" {{ path = {json.dumps(str(storage))} }}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:0"\n'
        f'  tls_cert_file = {json.dumps(str(cert))}\n  tls_key_file = {json.dumps(str(key))}\n}}\n'
    )
    init = subprocess.run([str(kvsync_bin), "operator", "init", "--config", str(config)],
                          capture_output=True, text=True, timeout=120, env=child_env(), stdin=subprocess.DEVNULL)
    assert init.returncode == 0, init.stderr
    token = re.search(r"Initial Root Token:\s*(\S+)", init.stdout).group(1)
    logs = tmp_path / "logs"
    logs.mkdir()
    srv = ServerProcess([kvsync_bin, "server", "--config", config], log_dir=logs, env=child_env(), name="tls")
    try:
        addr = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and addr is None:
            m = HTTPS_ADDR_RE.search(srv.stdout())
            if m:
                addr = m.group(1)
            elif not srv.alive():
                pytest.fail("kvsync exited\n" + srv.describe())
            else:
                time.sleep(0.05)
        assert addr, "no https Api Address line\n" + srv.describe()
        session = requests.Session()
        session.trust_env = False
        r = None
        for _ in range(100):
            try:
                r = session.get(addr + "/v1/sys/health", verify=str(cert), timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        assert r is not None and r.status_code == 200
        # Plain HTTP on the TLS port does not get an answer.
        with pytest.raises(requests.RequestException):
            plain = session.get(addr.replace("https://", "http://") + "/v1/sys/health", timeout=2)
            plain.raise_for_status()
        hvac_session = requests.Session()
        hvac_session.trust_env = False
        hvac_session.verify = str(cert)  # hvac takes `verify` from the session it is given
        client = hvac.Client(url=addr, token=token, session=hvac_session, timeout=10)
        client.sys.enable_secrets_engine("kv", path="tlskv", options={"version": "2"})
        client.secrets.kv.v2.create_or_update_secret("tls/check", {"k": "v"}, mount_point="tlskv")
        read = client.secrets.kv.v2.read_secret_version("tls/check", mount_point="tlskv",
                                                        raise_on_deleted_version=True)
        assert read["data"]["data"] == {"k": "v"}
    finally:
        srv.stop()
