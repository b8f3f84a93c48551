"""The automatic checkpoint policy with real `streamworker run` processes: a processor that never
calls checkpoint() resumes where it left off, on Kinesis (lease table) and Kafka (commits)."""

from __future__ import annotations

import signal

import boto3
import pytest

from tests.integration.conftest import KafkaTopics, Workers

from .conftest import KAFKA_GROUP_TIMING, make_stream, produce, wait_for

pytestmark = pytest.mark.integration


def checkpoints(table: str) -> dict[str, str]:
    items = boto3.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
    return {i["leaseKey"]["S"]: i["checkpoint"]["S"] for i in items}


def last_sequence(events: list[dict[str, object]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in events:
        shard, seq = str(e["shard"]), str(e["seq"])
        if int(seq) > int(out.get(shard, "0")):
            out[shard] = seq
    return out


@pytest.fixture
def quiet_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_CHECKPOINT", "1")


def test_kinesis_interval_checkpoints_while_running_and_every_n_resumes_without_duplicates(
        quiet_processor: None, names: dict[str, str], workers: Workers) -> None:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    log = workers.log
    a = workers("A", extra=["--checkpoint-interval", "1"])
    produce(kinesis, names["stream"], 0, 200)
    wait_for(lambda: set(log.data()) >= set(range(200)), 60, "200 records")
    # while A runs: within the interval (plus a read) the table holds the last processed records
    wait_for(lambda: checkpoints(names["app"]) == last_sequence(log.events("rec")), 15,
             "interval checkpoints at the last processed records")
    assert not log.events("checkpointed")  # the processor itself never checkpointed
    a.signal(signal.SIGTERM)
    assert a.proc.wait(30) == 0

    b = workers("B", extra=["--checkpoint-every", "1000"])  # far above what arrives: only shutdown writes
    produce(kinesis, names["stream"], 200, 50)
    wait_for(lambda: set(log.data()) >= set(range(250)), 60, "50 more records")
    b.signal(signal.SIGTERM)
    assert b.proc.wait(30) == 0
    assert checkpoints(names["app"]) == last_sequence(log.events("rec"))  # the graceful stop saved them
    data = log.data()
    assert len(data) == len(set(data)) == 250, "B resumed at A's automatic checkpoints: nothing twice"


def test_kafka_every_n_commits_and_a_restart_processes_nothing_twice(
        quiet_processor: None, kafka: KafkaTopics, names: dict[str, str], workers: Workers) -> None:
    topic = kafka.create(names["stream"])
    log = workers.log
    source = ["--source", "kafka", "--topic", topic, "--bootstrap-servers", kafka.bootstrap, *KAFKA_GROUP_TIMING,
              "--checkpoint-every", "25"]
    a = workers("A", source=source)
    kafka.produce(topic, 0, 400)  # 100 per partition: commits after every batch reaching 25 records
    wait_for(lambda: set(log.data()) >= set(range(400)), 60, "400 records")
    wait_for(lambda: sum(kafka.committed(names["app"], topic).values()) >= 300, 30, "commits from the policy")
    a.signal(signal.SIGTERM)
    assert a.proc.wait(30) == 0
    assert kafka.committed(names["app"], topic) == {p: 100 for p in range(4)}
    b = workers("B", source=source)
    kafka.produce(topic, 400, 40)
    wait_for(lambda: set(log.data()) >= set(range(440)), 60, "40 more records")
    b.signal(signal.SIGTERM)
    assert b.proc.wait(30) == 0
    data = log.data()
    assert len(data) == len(set(data)) == 440
    assert kafka.committed(names["app"], topic) == {p: 110 for p in range(4)}


def test_reported_record_failures_redeliver_from_the_first_one_nothing_lost_or_twice(
        monkeypatch: pytest.MonkeyPatch, names: dict[str, str], workers: Workers) -> None:
    monkeypatch.setenv("REPORT_ONCE", "7,31,55")
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    log = workers.log
    a = workers("A")
    produce(kinesis, names["stream"], 0, 80)
    wait_for(lambda: set(log.data()) >= set(range(80)), 60, "80 records")
    a.signal(signal.SIGTERM)
    assert a.proc.wait(30) == 0
    assert sorted(int(e["data"]) for e in log.events("reported")) == [7, 31, 55]
    data = log.data()
    assert sorted(data) == list(range(80)), "records before a failure are not redelivered, none skipped"
    assert data == list(range(80))  # and in order
    assert checkpoints(names["app"]) == last_sequence(log.events("rec"))
