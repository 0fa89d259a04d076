"""Conformance profile of `aws-sm` (AWS Secrets Manager) against moto behind the fault proxy.

- The double is moto (`moto_server`, pinned in requirements.txt) on 127.0.0.1, behind
  `kvsync-fake proxy --upstream <moto>`, which adds the shared fault table and call log. kvsync
  reaches it through `AWS_ENDPOINT_URL_SECRETS_MANAGER` (and `AWS_ENDPOINT_URL`, for STS) = the
  proxy; the SDK's usual discovery is kept away from the host's own AWS setup (empty config and
  credentials files, no IMDS).
- The profile reads what AWS holds from moto ITSELF (boto3, not through the proxy, so faults never
  hit the oracle): `list_secrets` (names and tags) + `get_secret_value` (values), region us-east-1.
- Writes: the number of secret VERSIONS moto holds, summed over the secrets, plus those of secrets
  seen before and gone since. CreateSecret with a value makes one version and PutSecretValue one
  more, so a version is exactly one landed write; moto keeps every version (it never prunes). The
  proxy's call log cannot tell writes apart: every AWS call is `POST /` (the operation is in the
  `X-Amz-Target` header, which the log does not keep), and it also counts refused calls (the
  PutSecretValue that finds no secret, before CreateSecret). Tag-only calls (TagResource) would not
  show as versions, but the connector makes none (tags are set by CreateSecret).
- Throttling: AWS answers HTTP 400 `{"__type": "ThrottlingException", "message": "Rate exceeded"}`
  and sends no retry header; the fault adds `retry-after: <s>` so the suite can check that a hint,
  when present, reaches the status (the connector honours `Retry-After` on any AWS error answer).
- Bad credentials: moto accepts any key, so the real AWS answer to an unknown key is injected
  instead: 400 `UnrecognizedClientException` ("The security token included in the request is
  invalid."), JSON 1.1. The proxy's faults match method and path only and every AWS call is
  `POST /`, so `bad_credentials()` arms that fault for the next 20 calls (the destination also
  gets a distinct access key id, `AKIABADCREDENTIALS`, for the logs); `objects()` and
  `clear_faults()` disarm it, so it cannot leak into the next test (the scenario reads
  `objects()` right after the refused sync).
- Names: the default template `vault/{{ .MountAccessor }}/{{ .SecretPath }}` (`/{{ .SecretKey }}`
  with secret-key granularity), normalised to `[A-Za-z0-9/_+=.@-]` with `_` for the rest.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import requests

from conformance import FakeProcess, Profile

REGION = "us-east-1"
ACCESS_KEY_ID = "AKIAKVSYNCTESTKEY01"
SECRET_ACCESS_KEY = "kvsync-test-secret-access-key"
BAD_ACCESS_KEY_ID = "AKIABADCREDENTIALS"
INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9/_+=.@-]")
MOTO_START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto_server() -> str:
    local = Path(sys.executable).parent / "moto_server"
    return str(local) if local.exists() else "moto_server"


def start_moto_server(tmp: Path):
    """moto_server on 127.0.0.1, an ephemeral port, logging to tmp/moto.log; waits (bounded) until it
    answers. Returns (url, process, log file)."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "moto.log", "wb")
    proc = subprocess.Popen([_moto_server(), "-H", "127.0.0.1", "-p", str(port)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    session = requests.Session()
    session.trust_env = False
    deadline = time.monotonic() + MOTO_START_TIMEOUT
    try:
        while True:
            try:
                if session.get(f"{url}/moto-api/", timeout=2).status_code == 200:
                    return url, proc, log
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_moto_server(proc, log)
                raise AssertionError(f"moto_server did not start (see {tmp / 'moto.log'})")
            time.sleep(0.1)
    finally:
        session.close()


def stop_moto_server(proc: subprocess.Popen, log) -> None:
    """SIGTERM, a bounded wait, then SIGKILL; closes the log."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if log:
        log.close()


class AwsSecretsManagerProfile(Profile):
    kind = "aws-sm"
    cloud = True

    def __init__(self):
        self.moto: Optional[subprocess.Popen] = None
        self.moto_url = ""
        self.moto_log = None
        self.proxy: Optional[FakeProcess] = None
        self._sm = None
        self._bad_armed = False
        #: ARN -> versions last seen, for secrets that may be gone by the next count.
        self._versions: dict = {}

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, tmp: Path) -> None:
        self.moto_url, self.moto, self.moto_log = start_moto_server(tmp)
        self.proxy = FakeProcess(["proxy", "--upstream", self.moto_url], tmp, "aws-proxy")
        self._sm = self._client()

    def stop(self) -> None:
        if self.proxy:
            self.proxy.stop()
            self.proxy = None
        if self.moto:
            stop_moto_server(self.moto, self.moto_log)
            self.moto = None
            self.moto_log = None

    def _client(self):
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        ).client("secretsmanager", endpoint_url=self.moto_url,
                 config=Config(retries={"max_attempts": 1, "mode": "standard"}))

    def server_env(self) -> dict:
        url = self.proxy.url
        empty = Path(self.moto_log.name).parent / "aws-empty-config"
        empty.write_text("")
        return {
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": url,
            "AWS_ENDPOINT_URL": url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        }

    # ---- destinations ----------------------------------------------------------------------

    def destination(self, name: str, **overrides) -> dict:
        body = {
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            "region": REGION,
            "disable_strict_networking": True,
        }
        body.update(overrides)
        return body

    def bad_credentials(self) -> dict:
        self.proxy.fault(
            method="POST",
            path_prefix="/",
            status=400,
            body={"__type": "UnrecognizedClientException",
                  "message": "The security token included in the request is invalid."},
            headers=[["content-type", "application/x-amz-json-1.1"],
                     ["x-amzn-requestid", "00000000-0000-0000-0000-000000000000"]],
            times=20,
        )
        self._bad_armed = True
        return {"access_key_id": BAD_ACCESS_KEY_ID}

    # ---- the oracle ------------------------------------------------------------------------

    def _secrets(self) -> list:
        out = []
        for page in self._sm.get_paginator("list_secrets").paginate():
            out.extend(page.get("SecretList", []))
        return out

    def objects(self) -> dict:
        if self._bad_armed:
            self.clear_faults()
        out = {}
        for s in self._secrets():
            try:
                value = self._sm.get_secret_value(SecretId=s["ARN"]).get("SecretString")
            except self._sm.exceptions.ResourceNotFoundException:
                continue  # deleted (by the sync worker) since it was listed
            out[s["Name"]] = {"value": value,
                              "tags": {t["Key"]: t.get("Value", "") for t in s.get("Tags", [])}}
        return out

    def writes(self) -> int:
        for s in self._secrets():
            self._versions[s["ARN"]] = len(s.get("SecretVersionsToStages", {}))
        return sum(self._versions.values())

    def throttle(self, times: int, retry_after_s: int) -> None:
        self.proxy.fault(
            method="POST",
            path_prefix="/",
            status=400,
            body={"__type": "ThrottlingException", "message": "Rate exceeded"},
            headers=[["content-type", "application/x-amz-json-1.1"],
                     ["retry-after", str(retry_after_s)]],
            times=times,
        )

    def clear_faults(self) -> None:
        self.proxy.clear_faults()
        self._bad_armed = False

    def expected_name(self, accessor: str, secret: str, key: Optional[str] = None) -> str:
        rendered = f"vault/{accessor}/{secret}" + (f"/{key}" if key is not None else "")
        return INVALID_NAME_CHARS.sub("_", rendered)


PROFILE = AwsSecretsManagerProfile()
