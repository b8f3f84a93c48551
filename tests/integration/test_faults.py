"""Transient faults: a DynamoDB endpoint that goes away and comes back; dead-letter sinks."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from streamworker import RecordProcessor, Worker, WorkerConfig
from streamworker.dead_letter.sinks import KafkaSink, KinesisSink
from streamworker.local import MotoServer
from streamworker.records import Record
from tests.integration.conftest import KafkaTopics

from .conftest import make_stream, produce, wait_for

pytestmark = pytest.mark.integration


class Collect(RecordProcessor):
    def __init__(self, seen: Any) -> None:
        self.seen = seen

    def process_records(self, p: Any) -> None:
        self.seen.extend(int(r.data) for r in p.records)
        p.checkpointer.checkpoint()


def test_a_dynamodb_outage_drops_no_lease_and_loses_nothing(aws_env: dict[str, str], names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    produce(kinesis, names["stream"], 0, 100)
    ddb_server = MotoServer().start()
    seen: list[Any] = []
    cfg = WorkerConfig.load({"stream": names["stream"], "application_name": names["app"], "failover_time": 10,
                             "initial_position": "TRIM_HORIZON", "idle_time_between_reads": 0.2})
    w = Worker(cfg, lambda: Collect(seen), dynamodb_client=boto3.client("dynamodb", endpoint_url=ddb_server.endpoint))
    w.start()
    try:
        wait_for(lambda: set(seen) >= set(range(100)), 30, "the first 100 records")
        held = w.coordinator.held_keys()
        ddb_server.stop()
        produce(kinesis, names["stream"], 100, 100)
        time.sleep(3)  # the outage itself (a duration under test, not a synchronisation)
        ddb_server.restart()
        wait_for(lambda: set(seen) >= set(range(200)), 60, "the records produced during the outage")
        assert w.coordinator.held_keys() == held
        assert w.coordinator.stats is not None and w.coordinator.stats.lost == 0
    finally:
        w.shutdown(20)
        ddb_server.stop()


def failed_records() -> list[Record]:
    return [Record(data=f"bad-{i}".encode(), partition_key=f"pk{i}", sequence_number=str(100 + i), shard_id="s-1")
            for i in range(3)]


def test_kinesis_dead_letter_sink(aws_env: dict[str, str], names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    KinesisSink(kinesis, names["stream"], "orders").write(failed_records(), "s-1", ValueError("boom"))
    it = kinesis.get_shard_iterator(StreamName=names["stream"], ShardId="shardId-000000000000",
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    got = [json.loads(r["Data"]) for r in kinesis.get_records(ShardIterator=it)["Records"]]
    assert [g["sequence_number"] for g in got] == ["100", "101", "102"]
    assert got[0]["error"] == "ValueError: boom" and got[0]["stream"] == "orders"


def test_kafka_dead_letter_sink(kafka: KafkaTopics, names: dict[str, str]) -> None:
    topic = kafka.create(names["stream"], partitions=1)
    KafkaSink({"bootstrap.servers": kafka.bootstrap}, topic, "orders").write(failed_records(), "s-1",
                                                                             ValueError("boom"))
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "dlq-check", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
    c.subscribe([topic])
    got: list[Any] = []
    def three_read() -> bool:
        got.extend(m for m in c.consume(10, 0.5) if m.error() is None)
        return len(got) >= 3

    wait_for(three_read, 30, "the dead-lettered records")
    c.close()
    assert [m.value() for m in got] == [b"bad-0", b"bad-1", b"bad-2"]
    assert dict(got[0].headers())["streamworker.error"] == b"ValueError: boom"
