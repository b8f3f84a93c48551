from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from streamworker.clock import FakeClock
from streamworker.leases.dynamodb.table import LeaseTable
from streamworker.leases.lease import Lease


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KINESIS", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def table(aws_env: None) -> Iterator[LeaseTable]:
    """A lease table in moto's in-process mock (no server)."""
    with mock_aws():
        t = LeaseTable(boto3.client("dynamodb"), "unit-app", clock=FakeClock())
        t.ensure_table()
        yield t


def row(table: LeaseTable, lease_key: str) -> Lease:
    """The lease row, which the test expects to exist."""
    lease = table.get(lease_key)
    assert lease is not None, f"no lease {lease_key!r}"
    return lease
