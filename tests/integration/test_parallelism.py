"""Per-key parallelism with real ``streamworker run`` processes: records of one key in order,
different keys at once, the checkpoint at the low watermark, a graceful stop and restart that
process nothing twice, on Kinesis and on Kafka."""

from __future__ import annotations

import signal
from collections import defaultdict

import boto3
import pytest

from .conftest import (
    KAFKA_GROUP_TIMING,
    PER_RECORD_PROCESSOR,
    KafkaTopics,
    RecordLog,
    Workers,
    make_stream,
    produce,
    wait_for,
)

pytestmark = pytest.mark.integration


def in_order_per_key(log: RecordLog) -> list[str]:
    """Records of one key processed out of their production order (first deliveries)."""
    last: dict[str, int] = {}
    seen: set[int] = set()
    out = []
    for e in sorted(log.events("rec"), key=lambda e: e["t"]):
        n = int(e["data"])
        if n in seen:
            continue
        seen.add(n)
        if n < last.get(e["key"], -1):
            out.append(f"{e['key']}: {n} after {last[e['key']]}")
        last[e["key"]] = n
    return out


def lanes_per_shard(log: RecordLog) -> dict[str, int]:
    threads: dict[str, set[str]] = defaultdict(set)
    for e in log.events("rec"):
        threads[e["shard"]].add(e["thread"])
    return {s: len(t) for s, t in threads.items()}


def test_kinesis_keys_in_parallel_in_order_and_a_restart_processes_nothing_twice(workers: Workers, names: dict[str, str],
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    produce(kinesis, names["stream"], 0, 400, keys=40)
    monkeypatch.setenv("RECORD_DELAY", "0.01")
    a = workers("A", processor=PER_RECORD_PROCESSOR, extra=["--parallelism", "8"])
    log = workers.log
    wait_for(lambda: set(log.data()) >= set(range(400)), 60, "400 records on 8 lanes per shard")
    assert sorted(log.data()) == list(range(400))  # each once
    assert not in_order_per_key(log)
    assert all(n > 1 for n in lanes_per_shard(log).values()), lanes_per_shard(log)  # keys ran at once
    a.signal(signal.SIGTERM)
    assert a.proc.wait(30) == 0
    rows = {r["leaseKey"]["S"]: r for r in boto3.client("dynamodb").scan(TableName=names["app"])["Items"]}
    last: dict[str, int] = {}
    for e in log.events("rec"):
        last[e["shard"]] = max(last.get(e["shard"], 0), int(e["seq"]))
    assert {k: int(r["checkpoint"]["S"]) for k, r in rows.items()} == last  # the watermark: everything
    produce(kinesis, names["stream"], 400, 100, keys=40)
    workers("B", processor=PER_RECORD_PROCESSOR, extra=["--parallelism", "8"])
    wait_for(lambda: set(log.data()) >= set(range(500)), 60, "B to go on")
    assert sorted(log.data()) == list(range(500))  # nothing A had done, again
    assert not in_order_per_key(log)


def test_kafka_keys_in_parallel_in_order(kafka: KafkaTopics, names: dict[str, str], workers: Workers,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    topic = kafka.create(names["stream"], partitions=2)
    monkeypatch.setenv("RECORD_DELAY", "0.01")
    a = workers("A", processor=PER_RECORD_PROCESSOR, source=["--source", "kafka", "--topic", topic,
                                                              "--bootstrap-servers", kafka.bootstrap,
                                                              *KAFKA_GROUP_TIMING], extra=["--parallelism", "6"])
    kafka.produce(topic, 0, 300, keys=24)
    log = workers.log
    wait_for(lambda: set(log.data()) >= set(range(300)), 60, "300 records")
    assert sorted(log.data()) == list(range(300))
    assert not in_order_per_key(log)
    assert all(n > 1 for n in lanes_per_shard(log).values()), lanes_per_shard(log)
    a.signal(signal.SIGTERM)
    assert a.proc.wait(30) == 0
    committed = kafka.committed(names["app"], topic, partitions=2)
    by_partition: dict[int, int] = defaultdict(int)
    for e in log.events("rec"):
        p = int(e["shard"].rsplit(":", 1)[1])
        by_partition[p] = max(by_partition[p], int(e["seq"]) + 1)
    assert committed == dict(by_partition)  # everything processed, committed


