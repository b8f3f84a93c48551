"""A broker that goes away and comes back (storage that survives it) loses nothing."""

import uuid

import boto3
import pytest

from streamworker import Worker, WorkerConfig
from streamworker.local import KafkaBroker

from .conftest import KafkaTopics, wait_for
from .inprocess import Collected, CollectingProcessor

pytestmark = pytest.mark.integration


def test_broker_restart_with_durable_storage_loses_nothing(aws_env, moto_server):
    bucket = f"tansu-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    broker = KafkaBroker(storage=f"s3://{bucket}/", s3_endpoint=moto_server.endpoint).start()
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
        broker.stop()  # SIGKILL
        broker = KafkaBroker(storage=f"s3://{bucket}/", s3_endpoint=moto_server.endpoint, port=broker.port).start()
        after = KafkaTopics(broker.bootstrap)
        after.produce(topic, 100, 100, partitions=2)
        wait_for(lambda: set(out.data()) >= {str(i) for i in range(200)}, 90, "the records sent after the restart")
        # the records written before the restart are still on the broker
        from confluent_kafka import Consumer

        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"check-{bucket}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        stored: set[str] = set()
        wait_for(lambda: stored.update(m.value().decode() for m in c.consume(500, 0.5) if not m.error())
                 or len(stored) >= 200, 60, "a fresh group to read all 200 back")
        c.close()
    finally:
        w.shutdown(20)
        broker.stop()
    assert set(out.data()) == {str(i) for i in range(200)}
