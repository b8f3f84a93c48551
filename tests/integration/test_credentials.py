"""AWS credentials as KCL users configure them, with real `streamworker run` processes on moto."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import boto3
import pytest

from tests.integration.conftest import Workers

from .conftest import make_stream, produce, wait_for

pytestmark = pytest.mark.integration


def test_a_worker_assumes_the_role_it_is_given(aws_env: dict[str, str], names: dict[str, str],
                                                workers: Workers, tmp_path: Path) -> None:
    """--role-arn, and a KCL properties file's KclStsAssumeRoleCredentialsProvider: every client
    signs with STS credentials (moto's STS), and the worker processes as usual."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    role = "arn:aws:iam::123456789012:role/orders-consumer"
    props = tmp_path / "app.properties"
    props.write_text(f"AwsCredentialsProvider = KclStsAssumeRoleCredentialsProvider|{role}|from-properties\n"
                     f"regionName = us-east-1\n")
    workers("A", extra=["--role-arn", role, "--external-id", "x7"])
    workers("B", extra=["--properties", str(props)])
    produce(kinesis, names["stream"], 0, 30)
    wait_for(lambda: set(workers.log.data()) >= set(range(30)), 60, "30 records under assumed roles")
    assert "AccessDenied" not in workers.started[0].stderr() + workers.started[1].stderr()


CREDENTIAL_PROCESS = '''
import datetime, json, os, sys
life = float(os.environ["CREDENTIAL_LIFE"])
with open(os.environ["CREDENTIAL_LOG"], "a") as f:
    f.write("issued\\n")
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=life)
print(json.dumps({"Version": 1, "AccessKeyId": "ASIAEXPIRING", "SecretAccessKey": "testing",
                  "SessionToken": "short-lived", "Expiration": expires.isoformat()}))
'''


def expiring_credentials_run(aws_env: dict[str, str], names: dict[str, str], tmp_path: Path,
                             life: float, duration: float) -> None:
    """Two workers on four shards whose credentials (a credential_process profile) expire every
    ``life`` seconds, records flowing for ``duration``: no lease lost, no record skipped."""
    script = tmp_path / "creds.py"
    script.write_text(CREDENTIAL_PROCESS)
    issued = tmp_path / "issued.log"
    config = tmp_path / "aws-config"
    config.write_text(f"[profile expiring]\ncredential_process = {sys.executable} {script}\nregion = us-east-1\n")
    env = {k: v for k, v in aws_env.items() if not k.startswith("AWS_ACCESS_KEY") and k != "AWS_SECRET_ACCESS_KEY"}
    env.update(AWS_CONFIG_FILE=str(config), AWS_PROFILE="expiring", CREDENTIAL_LIFE=str(life),
               CREDENTIAL_LOG=str(issued))
    kinesis = boto3.client("kinesis")  # the test's own client keeps the static test keys
    make_stream(kinesis, names["stream"], 4)
    saved = {k: os.environ.pop(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if k in os.environ}
    fleet = Workers(names, env, tmp_path)
    began = time.monotonic()
    try:
        # failover 6 s: at 3 s a renewal waiting behind a credential_process that a loaded machine
        # (two suites and a fresh install at once) took seconds to start lost a lease
        fleet("A", failover=6)
        fleet("B", failover=6)
        sent = 0
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            produce(kinesis, names["stream"], sent, 40)
            sent += 40
            time.sleep(1.0)  # the load's pace (40 records/s), not a synchronisation
        wait_for(lambda: set(fleet.log.data()) >= set(range(sent)), 60, f"all {sent} records")
    finally:
        for w in fleet.started:
            w.stop()
        os.environ.update(saved)
    ran = time.monotonic() - began
    events = fleet.log.events()
    assert not [e for e in events if e["ev"] == "lease_lost"], "a lease was lost to expiring credentials"
    assert not [e for e in events if e["ev"] == "checkpoint_refused"]
    refreshes = len(issued.read_text().splitlines())
    assert refreshes >= 2 * (duration / life), f"credentials issued {refreshes} times: not refreshed as they expired"
    # botocore alone fetched them on every call (1,542 times in this test on a loaded machine, the
    # worker's threads queueing behind each fetch, a lease renewal too): now about twice a lifetime
    assert refreshes <= 2 * (ran / (life / 4) + 2), f"credentials issued {refreshes} times in {ran:.0f} s"
    print(f"credentials issued {refreshes} times in {ran:.0f} s by two workers, each lasting {life:.0f} s")
    for w in fleet.started:
        assert "ExpiredToken" not in w.stderr() and "Traceback" not in w.stderr()


def test_credentials_expiring_every_10s_for_half_a_minute(aws_env: dict[str, str], names: dict[str, str],
                                                    tmp_path: Path) -> None:
    expiring_credentials_run(aws_env, names, tmp_path, life=10, duration=30)


@pytest.mark.slow
@pytest.mark.timeout(600)  # five minutes of load, beyond the suite's per-test 300 s
def test_credentials_expiring_every_60s_for_five_minutes(aws_env: dict[str, str], names: dict[str, str],
                                                        tmp_path: Path) -> None:
    expiring_credentials_run(aws_env, names, tmp_path, life=60, duration=300)
