"""`streamworker checkpoint set` against running `streamworker run` processes: the holder gets
lease_lost, the shard restarts at the new point; nothing before it is reprocessed, nothing after
it skipped. Kafka: a group's offsets are reset only while it is empty."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

import boto3
import pytest

from tests.integration.conftest import KafkaTopics, Workers

from .conftest import KAFKA_GROUP_TIMING, make_stream, produce, wait_for

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

pytestmark = pytest.mark.integration


def checkpoint_set(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamworker", "checkpoint", "set", *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


@pytest.fixture
def kinesis(aws_env: dict[str, str], names: dict[str, str], workers: Workers) -> KinesisClient:
    """A 2-shard stream and worker A running on it."""
    client = boto3.client("kinesis")
    make_stream(client, names["stream"], 2)
    workers("A")
    return client


def test_rewind_one_shard_to_a_sequence_number_while_its_worker_runs(
        kinesis: KinesisClient, aws_env: dict[str, str], names: dict[str, str], workers: Workers) -> None:
    log = workers.log
    produce(kinesis, names["stream"], 0, 100)
    wait_for(lambda: set(log.data()) >= set(range(100)) and len(log.events("checkpointed")) >= 2, 60,
             "100 records processed and checkpointed")
    recs = log.events("rec")
    shard = recs[0]["shard"]
    on_shard = sorted((e for e in recs if e["shard"] == shard), key=lambda e: int(e["seq"]))
    point = on_shard[len(on_shard) // 2]  # resume after this record
    after = {int(e["data"]) for e in on_shard if int(e["seq"]) > int(point["seq"])}

    r = checkpoint_set(aws_env, "--application-name", names["app"], "--shard", shard, "--to", point["seq"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"set {shard}: ") and f"-> {point['seq']} (its holder A loses the lease)" in r.stdout

    wait_for(lambda: Counter(log.data()) == Counter({**{n: 1 for n in range(100)}, **{n: 2 for n in after}}), 60,
             "the records after the point processed once more")
    assert any(e["ev"] == "lease_lost" and e["shard"] == shard for e in log.events())
    inits = [e for e in log.events("init") if e["shard"] == shard]
    assert inits[-1]["checkpoint"] == point["seq"]
    produce(kinesis, names["stream"], 100, 20)  # and it goes on from there
    wait_for(lambda: set(log.data()) >= set(range(120)), 30, "new records after the rewind")


def test_rewind_all_shards_to_a_timestamp_reprocesses_exactly_what_arrived_after_it(
        kinesis: KinesisClient, aws_env: dict[str, str], names: dict[str, str], workers: Workers) -> None:
    log = workers.log
    produce(kinesis, names["stream"], 0, 60)
    point = math.ceil(time.time())  # a whole second: Kinesis timestamps travel as seconds with ms
    wait_for(lambda: time.time() > point + 0.05, 3, "the clock to pass the point")
    produce(kinesis, names["stream"], 60, 40)
    wait_for(lambda: set(log.data()) >= set(range(100)), 60, "100 records")
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(point))

    dry = checkpoint_set(aws_env, "--application-name", names["app"], "--all-shards", "--to", f"AT_TIMESTAMP:{iso}",
                         "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would set") == 2 and "nothing written" in dry.stdout
    r = checkpoint_set(aws_env, "--application-name", names["app"], "--all-shards", "--to", f"AT_TIMESTAMP:{iso}")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: Counter(log.data()) == Counter({**{n: 1 for n in range(60)}, **{n: 2 for n in range(60, 100)}}),
             60, "records 60..99 (after the point) processed once more, 0..59 not")


def test_bad_targets_and_missing_tables_are_one_line(aws_env: dict[str, str], names: dict[str, str]) -> None:
    r = checkpoint_set(aws_env, "--application-name", names["app"], "--all-shards", "--to", "AT_TIMESTAMP:soon")
    assert r.returncode == 2 and r.stderr.startswith("streamworker: configuration error: --to 'AT_TIMESTAMP:soon'")
    r = checkpoint_set(aws_env, "--application-name", names["app"], "--all-shards", "--to", "LATEST")
    assert r.returncode == 1 and r.stderr.startswith("streamworker: error: lease table") and len(
        r.stderr.splitlines()) == 1


def test_kafka_group_reset_is_refused_while_members_run_then_rewinds(
        kafka: KafkaTopics, names: dict[str, str], workers: Workers) -> None:
    topic = kafka.create(names["stream"], partitions=2)
    log = workers.log
    source = ["--source", "kafka", "--topic", topic, "--bootstrap-servers", kafka.bootstrap, *KAFKA_GROUP_TIMING]
    a = workers("A", source=source)
    kafka.produce(topic, 0, 100, partitions=2)
    wait_for(lambda: kafka.committed(names["app"], topic, 2) == {0: 50, 1: 50}, 60, "100 records committed")
    args = ["--coordinator", "kafka-group", "--application-name", names["app"], "--bootstrap-servers",
            kafka.bootstrap, "--topic", topic]
    r = checkpoint_set({}, *args, "--all-shards", "--to", "TRIM_HORIZON")
    assert r.returncode == 1 and "has 1 active member(s)" in r.stderr and "stop its workers first" in r.stderr
    assert kafka.committed(names["app"], topic, 2) == {0: 50, 1: 50}  # untouched
    a.stop()
    wait_for(lambda: checkpoint_set({}, *args, "--shard", f"{topic}:0", "--to", "30").returncode == 0, 60,
             "the group to empty (its session to end) and the reset to pass")
    assert kafka.committed(names["app"], topic, 2) == {0: 30, 1: 50}
    workers("B", source=source)
    wait_for(lambda: kafka.committed(names["app"], topic, 2) == {0: 50, 1: 50}, 60, "B to catch up again")
    again = Counter(e["seq"] for e in log.events("rec") if e["shard"] == f"{topic}:0" and e["w"] == "B")
    assert sorted(int(s) for s in again) == list(range(30, 50))  # offsets 30..49 once more, nothing before
    assert not [e for e in log.events("rec") if e["shard"] == f"{topic}:1" and e["w"] == "B"]

