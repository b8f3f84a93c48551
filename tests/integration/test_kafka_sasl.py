"""SASL through -X on Apache Kafka: SCRAM-SHA-256 with the password read from a file, and
OAUTHBEARER in the broker's unsecured-JWT mode."""

from __future__ import annotations

import json
import os
import time
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


FAKE_SIGNER = '''
import base64, json, os, time

def _b64(d):
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

class MSKAuthTokenProvider:
    @staticmethod
    def generate_auth_token(region, aws_debug_creds=False):
        now = time.time()
        life = float(os.environ["TOKEN_SECONDS"])
        with open(os.environ["TOKEN_LOG"], "a") as f:
            f.write(json.dumps({"t": now, "region": region}) + "\\n")
        # an unsecured JWT, which the broker's OAUTHBEARER test mode accepts in place of an MSK token
        token = _b64({"alg": "none"}) + "." + _b64({"sub": "alice", "iat": int(now), "exp": int(now + life)}) + "."
        return token, int((now + life) * 1000)
'''


def test_kafka_auth_aws_msk_iam_signs_tokens_and_refreshes_them_before_expiry(
        sasl_broker: Any, names: dict[str, str], workers: Workers, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring and the refresh, with a stand-in for AWS's signer (the broker cannot check a
    SigV4 token): --kafka-auth aws-msk-iam, the region from boto3, tokens of 10 s."""
    signer = tmp_path / "signer" / "aws_msk_iam_sasl_signer"
    signer.mkdir(parents=True)
    (signer / "__init__.py").write_text(FAKE_SIGNER)
    log = tmp_path / "tokens.jsonl"
    monkeypatch.setenv("PYTHONPATH", f"{signer.parent}:{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("TOKEN_SECONDS", "10")
    monkeypatch.setenv("TOKEN_LOG", str(log))
    topics = KafkaTopics(sasl_broker.bootstrap)
    topic = topics.create(names["stream"], partitions=2)
    topics.produce(topic, 0, 50, partitions=2)
    workers("A", source=["--source", "kafka", "--topic", topic, "--bootstrap-servers", sasl_broker.sasl_bootstrap,
                         "--kafka-auth", "aws-msk-iam", "-X", "security.protocol=SASL_PLAINTEXT"])
    wait_for(lambda: set(workers.log.data()) >= set(range(50)), 60, "50 records with MSK IAM tokens")

    def calls() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    first = calls()[0]
    assert first["region"] == "us-east-1"  # what boto3 resolves here (the tests' AWS_DEFAULT_REGION)
    wait_for(lambda: len(calls()) >= 2, 30, "a second token")
    assert calls()[1]["t"] < first["t"] + 10, "refreshed before the first token expired"
    wait_for(lambda: time.time() > first["t"] + 11, 15, "the first token to expire")
    topics.produce(topic, 50, 50, partitions=2)
    wait_for(lambda: set(workers.log.data()) >= set(range(100)), 60, "50 more records after it expired")
