"""AWS credentials as KCL users configure them, with real `streamworker run` processes on moto."""

from __future__ import annotations

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
