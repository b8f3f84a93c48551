"""Kafka: the same RecordingProcessor class as the Kinesis tests, run unchanged on topics."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.integration.conftest import KafkaTopics, RecordLog, Workers

from .conftest import KAFKA_GROUP_TIMING, running_shards, settled, twice_report, wait_for

pytestmark = pytest.mark.integration


def kafka_args(kafka: KafkaTopics, topic: Any, *extra: Any) -> Any:
    return ["--source", "kafka", "--topic", topic, "--bootstrap-servers", kafka.bootstrap, *KAFKA_GROUP_TIMING,
            *extra]


def split(log: RecordLog, a: str, b: str, total: int = 4) -> set[str] | bool:
    ra, rb = running_shards(log, a), running_shards(log, b)
    return len(ra) + len(rb) == total and ra and rb and not (ra & rb)


def test_group_splits_partitions_and_kill9_resumes_from_committed_offsets(kafka: KafkaTopics, names: dict[str, str], workers: Workers) -> None:
    log = workers.log
    topic = kafka.create(names["stream"])
    a = workers("A", source=kafka_args(kafka, topic))
    workers("B", source=kafka_args(kafka, topic))
    kafka.produce(topic, 0, 400)
    wait_for(lambda: split(log, "A", "B") and set(log.data()) >= set(range(400)), 60, "a split and 400 records")
    a_parts = running_shards(log, "A")
    # more records after the split, so A processes and commits on its own partitions: resuming
    # from A's commits is what this test checks
    kafka.produce(topic, 400, 200)
    wait_for(lambda: {e["shard"] for e in log.events("checkpointed") if e["w"] == "A"} >= a_parts, 30,
             "A's commits")
    a.proc.kill()
    killed_wall = time.time()
    a.proc.wait(5)
    kafka.produce(topic, 600, 200)
    wait_for(lambda: running_shards(log, "B") == {f"{topic}:{p}" for p in range(4)}, 60, "B to get every partition")
    wait_for(lambda: set(log.data()) >= set(range(800)), 60, "all 800 records")
    last_commit: dict[Any, Any] = {}
    for e in log.events("checkpointed"):
        if e["w"] == "A":
            last_commit[e["shard"]] = max(last_commit.get(e["shard"], -1), int(e["seq"]))
    seen: dict[Any, Any] = {}
    for e in log.events("rec"):
        seen.setdefault(int(e["data"]), []).append(e)
    for hits in seen.values():
        if len(hits) > 1:
            first = hits[0]
            assert first["w"] == "A" and first["shard"] in a_parts
            assert int(first["seq"]) > last_commit.get(first["shard"], -1), f"committed record redone: {hits}"
    resumed = [e for e in log.events("init") if e["w"] == "B" and e["t"] > killed_wall and e["shard"] in a_parts]
    assert resumed and all(e["checkpoint"] != "TRIM_HORIZON" for e in resumed)
    # a checkpoint at offset N commits N + 1: 200 per partition once everything is checkpointed
    wait_for(lambda: kafka.committed(names["app"], topic) == {0: 200, 1: 200, 2: 200, 3: 200}, 30,
             "the final commits")


def test_rolling_restart_with_sigterm_processes_nothing_twice(kafka: KafkaTopics, names: dict[str, str], workers: Workers) -> None:
    log = workers.log
    topic = kafka.create(names["stream"])
    a = workers("A", source=kafka_args(kafka, topic))
    b = workers("B", source=kafka_args(kafka, topic))
    kafka.produce(topic, 0, 300)
    wait_for(lambda: split(log, "A", "B") and set(log.data()) >= set(range(300)), 60, "first 300")
    for old, new, start in ((a, "A2", 300), (b, "B2", 600)):
        old.signal(signal.SIGTERM)
        assert old.proc.wait(30) == 0
        workers(new, source=kafka_args(kafka, topic))
        kafka.produce(topic, start, 300)
        wanted = set(range(start + 300))
        wait_for(lambda: set(log.data()) >= wanted, 60, f"records up to {start + 300}")  # noqa: B023 - called here
    data = log.data()
    assert sorted(data) == list(range(900)), "a record was lost or processed twice"
    assert not log.events("lease_lost")


def test_dynamodb_leases_for_kafka_with_commits_mirrored(kafka: KafkaTopics, aws_env: dict[str, str], names: dict[str, str], workers: Workers) -> None:
    log = workers.log
    topic = kafka.create(names["stream"])
    args = kafka_args(kafka, topic, "--coordinator", "dynamodb")
    workers("A", source=args)
    workers("B", source=args)
    kafka.produce(topic, 0, 400)
    wait_for(lambda: settled(names["app"], log, {"A": 2, "B": 2}) and set(log.data()) >= set(range(400)), 60,
             "a 2/2 split by the lease table and 400 records")
    import boto3

    items = boto3.client("dynamodb").scan(TableName=names["app"])["Items"]
    assert sorted(i["leaseKey"]["S"] for i in items) == [f"{topic}:{p}" for p in range(4)]
    wait_for(lambda: sum(v for v in kafka.committed(names["app"], topic).values() if v > 0) == 400, 30,
             "checkpoints mirrored to Kafka's committed offsets")
    data = log.data()
    assert len(data) == len(set(data)) == 400, twice_report(log)


def test_topic_pattern_picks_up_new_topics(kafka: KafkaTopics, names: dict[str, str], workers: Workers) -> None:
    log = workers.log
    prefix = names["stream"]
    first = kafka.create(f"{prefix}-a", partitions=2)
    workers("A", source=["--source", "kafka", "--topic-pattern", f"^{prefix}-.*", "--bootstrap-servers",
                         kafka.bootstrap, *KAFKA_GROUP_TIMING, "-X", "topic.metadata.refresh.interval.ms=1000"])
    kafka.produce(first, 0, 100)
    wait_for(lambda: set(log.data()) >= set(range(100)), 60, "the first topic")
    second = kafka.create(f"{prefix}-b", partitions=2)
    kafka.produce(second, 100, 100)
    wait_for(lambda: set(log.data()) >= set(range(200)), 60, "the topic created later")
    assert {e["shard"] for e in log.events("init")} == {f"{first}:0", f"{first}:1", f"{second}:0", f"{second}:1"}


def test_lag_after_taking_over_a_partition_counts_only_unprocessed_records(kafka: KafkaTopics, names: dict[str, str]) -> None:
    """Issue 11, defect 8: a worker that took over fully processed partitions reported each
    partition's whole record count as lag until new records arrived."""
    from streamworker import Worker, WorkerConfig

    from .inprocess import Collected, CollectingProcessor

    topic = kafka.create(names["stream"])
    kafka.produce(topic, 0, 400)

    def worker(name: Any, out: Any) -> Any:
        cfg = WorkerConfig.load({"source": "kafka", "topics": [topic], "bootstrap_servers": kafka.bootstrap,
                                 "application_name": names["app"], "worker_id": name,
                                 "initial_position": "TRIM_HORIZON",
                                 "kafka_properties": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}})
        w = Worker(cfg, lambda: CollectingProcessor(name, out))
        w.start()
        return w

    def lags(w: Any) -> Any:
        out = {}
        for c in w.consumers():
            lag = w.kafka_lag(c)
            if lag is not None:
                out[c.shard_id] = lag
        return out

    first = Collected()
    a = worker("A", first)
    try:
        wait_for(lambda: sorted(int(d) for d in first.data()) == list(range(400)), 60, "400 records")
        wait_for(lambda: len(lags(a)) == 4 and set(lags(a).values()) == {0}, 30, "A's lag at 0")
    finally:
        assert a.shutdown(30)
    second = Collected()
    b = worker("B", second)
    try:
        wait_for(lambda: len(lags(b)) == 4, 30, "B's lag known for its 4 partitions")
        assert lags(b) == {f"{topic}:{p}": 0 for p in range(4)}  # nothing left: it used to say 100 each
        assert second.data() == []
        kafka.produce(topic, 400, 40)
        wait_for(lambda: len(second.data()) == 40 and set(lags(b).values()) == {0}, 30, "the new records")
    finally:
        b.shutdown(30)
