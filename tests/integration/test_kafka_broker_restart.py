"""A broker that is killed and comes back with its storage loses nothing: Apache Kafka on its kept
log dir, or (the stand-in) tansu on S3."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest

from streamworker import Worker, WorkerConfig
from streamworker.local import KafkaBroker, MotoServer
from streamworker.local.apache_kafka import ApacheKafka
from tests.conftest import kafka_kind

from .conftest import KafkaTopics, wait_for
from .inprocess import Collected, CollectingProcessor

pytestmark = pytest.mark.integration


class TansuOnS3:
    """The stand-in: tansu with its storage in a moto S3 bucket, so data survives a restart."""

    def __init__(self, moto_server: MotoServer) -> None:
        self.bucket = f"tansu-{uuid.uuid4().hex[:8]}"
        boto3.client("s3").create_bucket(Bucket=self.bucket)
        self.endpoint = moto_server.endpoint
        self.broker = KafkaBroker(storage=f"s3://{self.bucket}/", s3_endpoint=self.endpoint).start()
        self.bootstrap = self.broker.bootstrap

    def kill_and_start(self) -> None:
        self.broker.stop()  # SIGKILL
        self.broker = KafkaBroker(storage=f"s3://{self.bucket}/", s3_endpoint=self.endpoint,
                                  port=self.broker.port).start()

    def stop(self) -> None:
        self.broker.stop()


class ApacheKafkaWithLogDir:
    """Apache Kafka killed with SIGKILL and started again on the same log dir and port."""

    def __init__(self, tmp_path: Path) -> None:
        self.broker = ApacheKafka(tmp_path / "kafka").start()
        self.bootstrap = self.broker.bootstrap

    def kill_and_start(self) -> None:
        self.broker.kill()
        self.broker.start()

    def stop(self) -> None:
        self.broker.close()


def test_broker_restart_with_durable_storage_loses_nothing(aws_env: dict[str, str], moto_server: MotoServer, tmp_path: Path) -> None:
    broker = ApacheKafkaWithLogDir(tmp_path) if kafka_kind() == "apache-kafka" else TansuOnS3(moto_server)
    bucket = uuid.uuid4().hex[:8]
    topics = KafkaTopics(broker.bootstrap)
    topic = topics.create("durable", partitions=2)
    topics.produce(topic, 0, 100, partitions=2)
    out = Collected()
    cfg = WorkerConfig.load({"source": "kafka", "topics": [topic], "bootstrap_servers": broker.bootstrap,
                             "application_name": "durable-app", "initial_position": "TRIM_HORIZON",
                             "idle_time_between_reads": 0.2,
                             "kafka_properties": ["session.timeout.ms=6000", "heartbeat.interval.ms=1000",
                                                  "reconnect.backoff.max.ms=500"]})
    w = Worker(cfg, lambda: CollectingProcessor("W", out))
    w.start()
    try:
        wait_for(lambda: set(out.data()) >= {str(i) for i in range(100)}, 60, "the first 100 records")
        broker.kill_and_start()
        after = KafkaTopics(broker.bootstrap)
        after.produce(topic, 100, 100, partitions=2)
        wait_for(lambda: set(out.data()) >= {str(i) for i in range(200)}, 90, "the records sent after the restart")
        # the records written before the restart are still on the broker
        from confluent_kafka import Consumer

        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"check-{bucket}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        stored: set[str] = set()
        def read_back() -> bool:
            stored.update((m.value() or b"").decode() for m in c.consume(500, 0.5) if not m.error())
            return len(stored) >= 200

        wait_for(read_back, 60, "a fresh group to read all 200 back")
        c.close()
    finally:
        w.shutdown(20)
        broker.stop()
    assert set(out.data()) == {str(i) for i in range(200)}
