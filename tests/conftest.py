"""Which servers the tests run against, said at the start (pytest's header) and at the end (the
summary, also under -q): Apache Kafka where Java and Maven exist, else the tansu stand-in."""

from __future__ import annotations

import os

import pytest

from streamworker.local.apache_kafka import KAFKA_VERSION, java_and_maven


def kafka_kind() -> str:
    """Apache Kafka (from Maven Central) wherever Java and Maven exist; tansu, a stand-in, elsewhere.
    STREAMWORKER_TEST_KAFKA=tansu|apache-kafka forces one."""
    forced = os.environ.get("STREAMWORKER_TEST_KAFKA")
    if forced in ("tansu", "apache-kafka"):
        return forced
    return "apache-kafka" if java_and_maven() else "tansu"


def _kafka_line() -> str:
    if kafka_kind() == "apache-kafka":
        return f"kafka broker: Apache Kafka {KAFKA_VERSION} (KRaft, jars from Maven Central, started by the tests)"
    return "kafka broker: tansu 0.6 (a STAND-IN: no Java/Maven here, or STREAMWORKER_TEST_KAFKA=tansu)"


SERVERS = "dynamodb + kinesis: moto server; resharding and fan-out: kinesis-mock"


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [_kafka_line(), SERVERS]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(f"{_kafka_line()}; {SERVERS}")
