"""SASL through -X on Apache Kafka: SCRAM-SHA-256 with the password read from a file, and
OAUTHBEARER in the broker's unsecured-JWT mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamworker.local.apache_kafka import ApacheKafka
from tests.conftest import kafka_kind
from tests.integration.conftest import Workers

from .conftest import KafkaTopics, wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(kafka_kind() != "apache-kafka", reason="needs Apache Kafka (Java and Maven)")]

PASSWORD = "s3cret=with-equals"  # kafka-storage cannot format a SCRAM password with a comma


@pytest.fixture(scope="module")
def sasl_broker() -> Any:
    with ApacheKafka(sasl_users={"alice": PASSWORD}) as broker:
        yield broker


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "OAUTHBEARER"])
def test_a_worker_authenticates_with_sasl_given_through_x(sasl_broker: Any, mechanism: Any, names: dict[str, str], workers: Workers, tmp_path: Path) -> None:
    topics = KafkaTopics(sasl_broker.bootstrap)  # set-up over the plain listener
    topic = topics.create(names["stream"], partitions=2)
    topics.produce(topic, 0, 50, partitions=2)
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    if mechanism == "SCRAM-SHA-256":
        auth = ["-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=alice", "-X", f"sasl.password=@{secret}"]
    else:
        auth = ["-X", "sasl.mechanisms=OAUTHBEARER", "-X", "enable.sasl.oauthbearer.unsecure.jwt=true",
                "-X", "sasl.oauthbearer.config=principal=alice"]
    w = workers("A", source=["--source", "kafka", "--topic", topic, "--bootstrap-servers", sasl_broker.sasl_bootstrap,
                             "-X", "security.protocol=SASL_PLAINTEXT", *auth, "--log-level", "DEBUG"])
    wait_for(lambda: set(workers.log.data()) >= set(range(50)), 60, f"50 records over {mechanism}")
    assert PASSWORD not in w.stderr() and "s3cret" not in w.stderr()
