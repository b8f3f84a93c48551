"""streamworker beside the software Kafka users already run: Kafka's own Java producer (every
codec, headers, null keys and values, transactions committed and aborted, a compacted topic)
and Kafka's own ``kafka-consumer-groups`` (describe; reset to earliest, to an offset, by
duration, with the workers stopped and running). Apache Kafka only: the Java tools come from
its jars."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest

from streamworker.local.servers import free_port
from tests import kafka_tools
from tests.conftest import kafka_kind
from tests.integration.conftest import (
    KAFKA_GROUP_TIMING,
    KafkaTopics,
    WorkerProcess,
    Workers,
    running_shards,
    wait_for,
)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(kafka_kind() != "apache-kafka" or not kafka_tools.available(),
                                 reason="needs Apache Kafka and its Java tools (Java and Maven)")]

FAILOVER = 6.0


def source(kafka: KafkaTopics, topic: str) -> list[str]:
    return ["--source", "kafka", "--bootstrap-servers", kafka.bootstrap, "--topic", topic, *KAFKA_GROUP_TIMING]


def streamworker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamworker", *args], capture_output=True, text=True, timeout=120)


def stop(w: WorkerProcess) -> None:
    w.signal(signal.SIGTERM)
    assert w.proc.wait(60) == 0, w.stderr()[-2000:]


def recs(workers: Workers, worker: str | None = None) -> list[dict[str, Any]]:
    return [e for e in workers.log.events("rec") if worker is None or e["w"] == worker]


def lags(kafka: KafkaTopics, group: str) -> dict[int, int | None]:
    return {r.partition: r.lag for r in kafka_tools.describe(kafka.bootstrap, group)}


def test_offsets_reset_with_kafka_consumer_groups_are_replayed_exactly(
        kafka: KafkaTopics, names: dict[str, str], workers: Workers) -> None:
    """--reset-offsets --to-earliest (committed 0 on every partition) replays every record; the
    tool refuses while a worker runs; --to-offset and --by-duration replay exactly what they
    say; streamworker leases shows the group as the tool does."""
    topic, group = kafka.create(names["stream"]), names["app"]
    # 250 a partition created an hour ago, 250 now: --by-duration PT30M falls between them however
    # long the tool takes to start (it reads the clock when it runs, not when it is called)
    kafka.produce(topic, 0, 1000, created=time.time() - 3600)
    kafka.produce(topic, 1000, 1000)
    a = workers("A", source=source(kafka, topic), failover=FAILOVER)
    wait_for(lambda: len(recs(workers)) >= 2000 and set(kafka.committed(group, topic).values()) == {500}, 90,
             "2000 records processed and committed")

    # the group as Kafka's tool and as streamworker describe it: the same numbers
    tool = kafka_tools.describe(kafka.bootstrap, group)
    assert [(r.partition, r.current_offset, r.log_end_offset, r.lag) for r in tool] == \
        [(p, 500, 500, 0) for p in range(4)]
    out = streamworker("leases", "--coordinator", "kafka-group", "--application-name", group,
                       "--bootstrap-servers", kafka.bootstrap, "--json")
    assert out.returncode == 0, out.stderr
    ours = json.loads(out.stdout)
    assert ours["state"] == "STABLE" and [m["worker"] for m in ours["members"]] == ["A"]
    assert [(p["shard"], p["owner"], p["committed"], p["log_end"], p["lag"]) for p in ours["partitions"]] == \
        [(f"{topic}:{p}", "A", 500, 500, 0) for p in range(4)]
    text = streamworker("status", "--coordinator", "kafka-group", "--application-name", group, "--bootstrap-servers",
                        kafka.bootstrap, "--count", "1")
    assert text.returncode == 0, text.stderr
    assert "committed = the next offset to read" in text.stdout and "expired" not in text.stdout

    # Kafka refuses a reset while the group has a member: streamworker's commits are untouched
    refused = kafka_tools.consumer_groups(kafka.bootstrap, "--reset-offsets", "--to-earliest", "--execute",
                                          "--group", group, "--topic", topic, check=False)
    assert "inactive" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    assert set(kafka.committed(group, topic).values()) == {500}
    stop(a)

    def replay(worker: str, expected: Counter[int]) -> None:
        w = workers(worker, source=source(kafka, topic), failover=FAILOVER)
        wait_for(lambda: Counter(int(e["data"]) for e in recs(workers, worker)) == expected
                 and sum(kafka.committed(group, topic).values()) == 2000, 90, f"{worker} to replay {len(expected)}")
        stop(w)
        assert Counter(int(e["data"]) for e in recs(workers, worker)) == expected  # nothing more arrived late
        assert "HALTED" not in w.stderr() and "cannot be read" not in w.stderr()

    # to earliest: a committed 0 on every partition, every record again (was: every partition halted)
    kafka_tools.consumer_groups(kafka.bootstrap, "--reset-offsets", "--to-earliest", "--execute", "--group", group,
                                "--topic", topic)
    assert set(kafka.committed(group, topic).values()) == {0}
    replay("B", Counter(range(2000)))
    inits = [e for e in workers.log.events("init") if e["w"] == "B"]
    assert {e["checkpoint"] for e in inits} == {"TRIM_HORIZON"}

    # to an offset on one partition: exactly the records from there on
    kafka_tools.consumer_groups(kafka.bootstrap, "--reset-offsets", "--to-offset", "255", "--execute",
                                "--group", group, "--topic", f"{topic}:0")
    part0 = [int(e["data"]) for e in recs(workers, "A") if e["shard"] == f"{topic}:0"]
    replay("C", Counter(part0[255:]))

    # by duration: what was created in the last 30 minutes (the second half), on every partition
    kafka_tools.consumer_groups(kafka.bootstrap, "--reset-offsets", "--by-duration", "PT30M", "--execute",
                                "--group", group, "--topic", topic)
    replay("D", Counter(range(1000, 2000)))

    # streamworker's own reset to TRIM_HORIZON commits 0 too, and replays everything
    out = streamworker("checkpoint", "set", "--coordinator", "kafka-group", "--application-name", group,
                       "--bootstrap-servers", kafka.bootstrap, "--topic", topic, "--all-shards", "--to", "TRIM_HORIZON")
    assert out.returncode == 0, out.stderr
    replay("E", Counter(range(2000)))

    # the status page for the group from the brokers alone (no worker runs now)
    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "streamworker", "status", "--web", "--no-open", "--port", str(port),
                            "--coordinator", "kafka-group", "--application-name", group,
                            "--bootstrap-servers", kafka.bootstrap], stdout=subprocess.PIPE, text=True)
    try:
        assert web.stdout is not None and "status page for consumer group" in web.stdout.readline()
        doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=10).read())
        assert doc["kind"] == "kafka-group" and doc["workers"] == [] and doc["error"] is None
        assert [(r["shard"], r["owner"], r["checkpoint"], r["lag"], r["state"]) for r in doc["leases"]] == \
            [(f"{topic}:{p}", None, "500", 0, "free") for p in range(4)]
    finally:
        web.terminate()
        web.wait(10)


CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def test_the_java_producers_records_transactions_and_tombstones_on_a_compacted_topic(
        kafka: KafkaTopics, names: dict[str, str], workers: Workers) -> None:
    """Every codec; headers repeated, null and binary-ish; null keys; tombstones and empty values;
    transactions committed and aborted; a compacted topic. Every committed record arrives as the
    producer wrote it, no aborted one does, and the lag Kafka's tool shows reaches 0 (it stood at
    1 or 3 on the transaction markers) and stays 0 after SIGTERM; the worker's lag gauge and its
    status page agree."""
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    # a compacted topic takes keyed records only: null keys go to a plain one beside it
    plain, compacted, group = names["stream"], f"{names['stream']}-compacted", names["app"]
    kafka.create(plain, partitions=2)
    kafka.admin.create_topics([NewTopic(compacted, num_partitions=2, replication_factor=1,
                                        config={"cleanup.policy": "compact"})])[compacted].result(15)
    expected: dict[str, dict[str, Any]] = {}  # "topic:partition/offset" -> what the processor must see
    aborted = 0
    for codec in CODECS:
        with kafka_tools.JavaProducer(kafka.bootstrap, **{"compression.type": codec,
                                                          "transactional.id": f"{names['stream']}-{codec}"}) as p:
            for txn in range(3):
                p.begin()
                sent = []
                for i in range(8):
                    part = i % 2
                    key = None if i in (0, 1) else f"{codec}-{txn}-{i % 3}"
                    topic = plain if i < 4 else compacted
                    value = None if i in (3, 6) else "" if i == 7 else f"{codec}/{txn}/{i}"
                    headers = [("h", "a"), ("h", None), ("codec", codec)] if i % 2 else []
                    off = p.send(topic, value, key=key, partition=part, headers=headers)
                    sent.append((f"{topic}:{part}/{off}", {"key": key, "value": value, "headers": headers}))
                if txn == 1:
                    p.abort()
                    aborted += len(sent)
                else:
                    p.commit()
                    expected.update(sent)
    port = free_port()
    a = workers("A", source=["--source", "kafka", "--bootstrap-servers", kafka.bootstrap, "--topic", plain,
                             "--topic", compacted, *KAFKA_GROUP_TIMING],
                failover=FAILOVER, extra=["--metrics-port", str(port)])

    def seen() -> dict[str, dict[str, Any]]:
        out = {}
        for e in recs(workers):
            out[f"{e['shard']}/{e['seq']}"] = {"key": None if e.get("null_key") else e["key"],
                                               "value": None if e.get("tombstone") else e["data"],
                                               "headers": [tuple(h) for h in e.get("headers", [])]}
        return out

    wait_for(lambda: set(seen()) >= set(expected), 60, f"{len(expected)} committed records")
    assert seen() == {k: {**v, "headers": [tuple(h) for h in v["headers"]]} for k, v in expected.items()}
    assert len(recs(workers)) == len(expected), "a record was delivered twice or an aborted one delivered"
    assert aborted == 40
    wait_for(lambda: set(lags(kafka, group).values()) == {0}, 30, "kafka-consumer-groups to show lag 0")

    def gauge() -> dict[str, float]:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        return {ln.split('"')[1]: float(ln.rsplit(" ", 1)[1]) for ln in body.splitlines()
                if ln.startswith("streamworker_consumer_lag{")}

    shards = {f"{t}:{p}" for t in (plain, compacted) for p in (0, 1)}
    wait_for(lambda: gauge() == dict.fromkeys(shards, 0.0), 30, "the lag gauge at 0")
    doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5).read())
    assert doc["kind"] == "kafka-group" and doc["labels"]["checkpoint"] == "committed"
    tool = {f"{r.topic}:{r.partition}": r for r in kafka_tools.describe(kafka.bootstrap, group)}
    assert {r["shard"]: (r["owner"], r["checkpoint"], r["lag"]) for r in doc["leases"]} == \
        {k: ("A", str(t.current_offset), 0) for k, t in tool.items()}
    assert running_shards(workers.log, "A") == shards
    stop(a)
    assert set(lags(kafka, group).values()) == {0}
