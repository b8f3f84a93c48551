"""Chaos: three or more workers on an 8-shard stream (with one resharding) and on an 8-partition
topic while a producer writes numbered records; random kill -9, SIGSTOP/SIGCONT past the failover
time and SIGTERM restarts. The short runs are part of CI; ``./dev test-slow`` adds the long ones."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamworker.local import KinesisMock, MotoServer
from tests.integration.conftest import PER_RECORD_PROCESSOR, KafkaTopics, wait_for

from .driver import PROCESSOR, Fleet, Producer, check, events, run_chaos

pytestmark = pytest.mark.integration
FAILOVER = 3.0
SHORT = {"workers": 3, "duration": 22, "seed": 7}
LONG = {"workers": 4, "duration": 180, "seed": 11}


#: A Kafka worker woken from SIGSTOP waits this long (three heartbeats; its log says ``settle``)
#: before going on, so the tail of the batch it was frozen in may come that much later after
#: SIGCONT; the checker still requires that tail never be checkpointed.
KAFKA_SETTLE = 3.0


def finish(fleet: Any, producer: Any, title: Any, actions: Any, settle: float = 0.0) -> None:
    log = fleet.log
    # everything produced gets processed once the faults stop (every worker is running again)
    try:
        wait_for(lambda: len({int(e["data"]) for e in events(log) if e["ev"] == "rec"}) >= producer.n, 90,
                 f"all {producer.n} records")
    finally:
        fleet.stop_all()  # never leave worker processes behind, also when the run fails
    report = check(log, producer.n, fleet, settle=settle)
    report.actions = actions
    print("\n" + report.table(title))
    assert not report.lost, f"lost records: {report.lost[:20]}"
    assert not report.order_violations, report.order_violations[:10]
    assert not report.unexplained_duplicates, report.unexplained_duplicates[:10]
    assert not report.concurrent, report.concurrent
    assert {"kill -9", "SIGSTOP", "SIGTERM"} <= {a.split()[0] if a[0] != "k" else "kill -9" for a in actions}


#: Per-key parallelism: the per-record processor on 4 lanes per shard (``processor`` and ``extra``).
KEYED: dict[str, Any] = {"processor": PER_RECORD_PROCESSOR, "extra": ["--parallelism", "4"]}


def kinesis_chaos(tmp_path: Path, moto_server: MotoServer, kinesis_mock: KinesisMock, names: dict[str, str], params: Any,
                  processor: str = PROCESSOR, extra: tuple[str, ...] | list[str] = ()) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_mock.endpoint)
    stream = names["stream"]
    kinesis.create_stream(StreamName=stream, ShardCount=8)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    env = {**os.environ, "AWS_ENDPOINT_URL_KINESIS": kinesis_mock.endpoint,
           "AWS_ENDPOINT_URL_DYNAMODB": moto_server.endpoint, "STREAMWORKER_TAKE_INTERVAL": "0.5",
           "STREAMWORKER_SHARD_SYNC_INTERVAL": "2"}
    env.pop("AWS_ENDPOINT_URL", None)
    fleet = Fleet([sys.executable, "-m", "streamworker", "run", processor, "--stream", stream,
                   "--application-name", names["app"], "--failover-time", str(FAILOVER),
                   "--initial-position", "TRIM_HORIZON", "--idle-time-between-reads", "0.2", "--log-format", "json",
                   *extra], env, tmp_path / "records.jsonl", tmp_path)

    def put(batch: Any) -> None:
        kinesis.put_records(StreamName=stream, Records=[{"Data": d, "PartitionKey": k} for k, d in batch])

    def reshard() -> None:
        s = kinesis.list_shards(StreamName=stream)["Shards"][0]
        lo, hi = int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])
        kinesis.split_shard(StreamName=stream, ShardToSplit=s["ShardId"], NewStartingHashKey=str((lo + hi) // 2))

    producer = Producer(put)
    try:
        actions = run_chaos(fleet, producer, failover=FAILOVER, reshard=reshard, **params)
    except BaseException:
        fleet.stop_all()
        raise
    finish(fleet, producer, f"Kinesis, {params['workers']} workers, {params['duration']}s{', '.join(['', *extra])}",
           actions)


def kafka_chaos(tmp_path: Path, kafka: KafkaTopics, names: dict[str, str], params: Any,
                processor: str = PROCESSOR, extra: tuple[str, ...] | list[str] = ()) -> None:
    topic = kafka.create(names["stream"], partitions=8)
    from confluent_kafka import Producer as KafkaProducer

    p = KafkaProducer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5})

    def put(batch: Any) -> None:
        for k, d in batch:
            p.produce(topic, key=k.encode(), value=d, partition=int(k[1:]) % 8)
        p.flush(10)

    env = {**os.environ}
    fleet = Fleet([sys.executable, "-m", "streamworker", "run", processor, *extra, "--source", "kafka", "--topic", topic,
                   "--bootstrap-servers", kafka.bootstrap, "--application-name", names["app"],
                   "--initial-position", "TRIM_HORIZON", "--idle-time-between-reads", "0.2", "--log-format", "json",
                   "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000",
                   # STREAMWORKER_CHAOS_DEBUG=1: librdkafka's group-protocol trail in the worker logs
                   *(["-X", "debug=cgrp", "--log-level", "DEBUG"] if os.environ.get("STREAMWORKER_CHAOS_DEBUG") else [])],
                  env, tmp_path / "records.jsonl", tmp_path)
    producer = Producer(put)
    try:
        actions = run_chaos(fleet, producer, failover=FAILOVER, reshard=None, group_timeout=6.0, **params)
    except BaseException:
        fleet.stop_all()
        raise
    finish(fleet, producer, f"Kafka, {params['workers']} workers, {params['duration']}s{', '.join(['', *extra])}",
           actions, settle=KAFKA_SETTLE)


def test_chaos_kinesis_short(tmp_path: Path, moto_server: MotoServer, kinesis_mock: KinesisMock, names: dict[str, str], aws_env: dict[str, str]) -> None:
    kinesis_chaos(tmp_path, moto_server, kinesis_mock, names, SHORT)


def test_chaos_kafka_short(tmp_path: Path, kafka: KafkaTopics, names: dict[str, str]) -> None:
    kafka_chaos(tmp_path, kafka, names, SHORT)


def test_chaos_kinesis_short_with_key_parallelism(tmp_path: Path, moto_server: MotoServer, kinesis_mock: KinesisMock,
                                                  names: dict[str, str], aws_env: dict[str, str]) -> None:
    kinesis_chaos(tmp_path, moto_server, kinesis_mock, names, SHORT, **KEYED)


def test_chaos_kafka_short_with_key_parallelism(tmp_path: Path, kafka: KafkaTopics, names: dict[str, str]) -> None:
    kafka_chaos(tmp_path, kafka, names, SHORT, **KEYED)


@pytest.mark.slow
def test_chaos_kinesis_long_with_key_parallelism(tmp_path: Path, moto_server: MotoServer, kinesis_mock: KinesisMock,
                                                 names: dict[str, str], aws_env: dict[str, str]) -> None:
    kinesis_chaos(tmp_path, moto_server, kinesis_mock, names, LONG, **KEYED)


@pytest.mark.slow
def test_chaos_kinesis_long(tmp_path: Path, moto_server: MotoServer, kinesis_mock: KinesisMock, names: dict[str, str], aws_env: dict[str, str]) -> None:
    kinesis_chaos(tmp_path, moto_server, kinesis_mock, names, LONG)


@pytest.mark.slow
def test_chaos_kafka_long(tmp_path: Path, kafka: KafkaTopics, names: dict[str, str]) -> None:
    kafka_chaos(tmp_path, kafka, names, LONG)
