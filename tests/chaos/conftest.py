"""The chaos suite uses the integration fixtures (local servers, worker processes)."""

from __future__ import annotations

from tests.integration.conftest import (  # noqa: F401
    aws_env,
    kafka,
    kafka_broker,
    kinesis_mock,
    moto_server,
    names,
)
