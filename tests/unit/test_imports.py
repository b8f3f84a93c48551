"""A worker loads only its own source's clients: a Kafka worker never imports boto3 (about 25 MB
resident), a Kinesis worker never imports confluent-kafka. Each check runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BUILD = """
import sys
from streamworker import RecordProcessor, Worker, WorkerConfig

class P(RecordProcessor):
    def process_records(self, p):
        pass

class FakeConsumer:
    def __init__(self, conf):
        pass
"""


def loaded_after(code: str, *modules: str) -> dict[str, bool]:
    probe = f"print({{m: m in sys.modules for m in {modules!r}}})"
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(BUILD + code) + "\n" + probe],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    loaded: dict[str, bool] = eval(out)  # noqa: S307 - our own probe's dict literal
    return loaded


def test_a_kafka_worker_loads_no_aws_sdk() -> None:
    pytest.importorskip("confluent_kafka")
    loaded = loaded_after("""
cfg = WorkerConfig.load({"source": "kafka", "topics": ["t"], "bootstrap_servers": "x:1", "application_name": "app"})
Worker(cfg, P, kafka_consumer_factory=FakeConsumer)
""", "boto3", "botocore")
    assert loaded == {"boto3": False, "botocore": False}


def test_a_kinesis_worker_loads_no_kafka_client() -> None:
    loaded = loaded_after("""
cfg = WorkerConfig.load({"stream": "s", "application_name": "app"})
Worker(cfg, P, kinesis_client=object(), dynamodb_client=object())
""", "confluent_kafka", "streamworker.kafka.client")
    assert loaded == {"confluent_kafka": False, "streamworker.kafka.client": False}
