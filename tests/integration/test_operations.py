"""Metrics and health, lease inspection, the error policy, hang reports, secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from structlog.testing import capture_logs

from streamworker import PerRecordProcessor, RecordProcessor, Worker, WorkerConfig
from tests.integration.conftest import KafkaTopics

from .conftest import PROCESSOR, make_stream, produce, wait_for

pytestmark = pytest.mark.integration


class Poisoned(RecordProcessor):
    """Fails on records whose data is 'poison'; records what it processed."""

    def __init__(self, done: Any) -> None:
        self.done = done

    def process_records(self, p: Any) -> None:
        if any(r.data == b"poison" for r in p.records):
            raise ValueError("cannot parse poison")
        self.done.extend(r.data for r in p.records)
        p.checkpointer.checkpoint()


def start(names: dict[str, str], processor: Any, **settings: Any) -> Any:
    cfg = WorkerConfig.load({"stream": names["stream"], "application_name": names["app"],
                             "initial_position": "TRIM_HORIZON", "idle_time_between_reads": 0.2,
                             "processor_retries": 1, **settings})
    w = Worker(cfg, processor)
    w.start()
    return w


def get(port: Any, path: str) -> tuple[Any, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_and_health_endpoints(aws_env: dict[str, str], names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    produce(kinesis, names["stream"], 0, 50)
    done: list[Any] = []
    w = start(names, lambda: Poisoned(done), metrics_port=0, metrics_host="127.0.0.1")
    port = w._ops.port
    def samples() -> dict[str, float]:
        status, metrics = get(port, "/metrics")
        assert status == 200
        out = {}
        for line in metrics.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def total(s: dict[str, float], prefix: str) -> float:
        return sum(v for k, v in s.items() if k.startswith(prefix))

    try:
        # the counters move after process_records returns: wait on them, not on the processor
        def settled() -> dict[str, float] | None:
            x = samples()
            return x if (total(x, "streamworker_records_processed_total") == 50
                         and total(x, "streamworker_checkpoint_seconds_count") >= 2
                         and total(x, "streamworker_process_records_seconds_count") >= 2) else None

        s = wait_for(settled, 30, "the metrics of 50 records")
        assert sorted(done) == sorted(str(i).encode() for i in range(50))
        assert get(port, "/healthz") == (200, "ok\n")
        status, body = get(port, "/readyz")
        assert status == 200 and "2 shards" in body
        assert total(s, "streamworker_bytes_processed_total") == sum(len(d) for d in done)
        assert s["streamworker_leases_held"] == 2 and s["streamworker_leases_taken_total"] == 2
        assert any(k.startswith("streamworker_millis_behind_latest{") for k in s)
        assert "streamworker_read_throttles_total" in s
    finally:
        w.request_shutdown()
        status, _ = get(port, "/readyz")
        assert status == 503  # not ready while draining (or already stopped)
        w.wait(20)


def test_leases_command_shows_owners_and_shares(aws_env: dict[str, str], names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    produce(kinesis, names["stream"], 0, 10)
    done: list[Any] = []
    w = start(names, lambda: Poisoned(done), worker_id="inspected")
    try:
        wait_for(lambda: len(done) == 10, 30, "10 records")
        env = {**os.environ, **aws_env}
        r = subprocess.run([sys.executable, "-m", "streamworker", "leases", "--application-name", names["app"],
                            "--json"], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert data["workers"] == {"inspected": 2}
        assert {row["owner"] for row in data["leases"]} == {"inspected"}
        assert all(row["checkpoint"].isdigit() for row in data["leases"])
        r = subprocess.run([sys.executable, "-m", "streamworker", "leases", "--application-name", names["app"]],
                           capture_output=True, text=True, env=env, timeout=60)
        assert "shardId-000000000000" in r.stdout and "workers: inspected=2" in r.stdout
        r = subprocess.run([sys.executable, "-m", "streamworker", "status", "--application-name", names["app"],
                            "--count", "2", "--interval", "0.2"], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0 and r.stdout.count("workers: inspected=2") == 2
        r = subprocess.run([sys.executable, "-m", "streamworker", "leases", "--application-name", "no-such-app"],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 1 and "lease table 'no-such-app' not found" in r.stderr
    finally:
        w.shutdown(20)


def poison_stream(names: dict[str, str]) -> Any:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    kinesis.put_record(StreamName=names["stream"], Data=b"before", PartitionKey="k")
    kinesis.put_record(StreamName=names["stream"], Data=b"poison", PartitionKey="k")
    return kinesis


def test_default_policy_halts_the_shard_and_keeps_its_checkpoint(aws_env: dict[str, str], names: dict[str, str]) -> None:
    kinesis = poison_stream(names)
    done: list[Any] = []
    w = start(names, lambda: Poisoned(done), max_records=1)
    try:
        wait_for(lambda: any(c.state.value == "HALTED" for c in w.consumers()), 30, "the shard to halt")
        kinesis.put_record(StreamName=names["stream"], Data=b"after", PartitionKey="k")
        assert done == [b"before"]
        (lease,) = w.table.list_leases()
        assert lease.lease_owner == w.worker_id  # kept, so no other worker loops on the poison
        samples = w.metrics.registry.get_sample_value
        assert samples("streamworker_shards_halted") == 1
        assert samples("streamworker_processor_failures_total", {"shard": "shardId-000000000000"}) == 2
    finally:
        w.shutdown(20)
    assert done == [b"before"]  # never skipped
    (lease,) = w.table.list_leases()
    before_seq = kinesis.get_records(ShardIterator=kinesis.get_shard_iterator(
        StreamName=names["stream"], ShardId="shardId-000000000000",
        ShardIteratorType="TRIM_HORIZON")["ShardIterator"])["Records"][0]["SequenceNumber"]
    assert lease.checkpoint.sequence_number == before_seq


def test_dead_letter_policy_writes_the_batch_and_moves_on(aws_env: dict[str, str], names: dict[str, str], tmp_path: Path) -> None:
    kinesis = poison_stream(names)
    kinesis.put_record(StreamName=names["stream"], Data=b"after", PartitionKey="k")
    dlq = tmp_path / "dead.jsonl"
    done: list[Any] = []
    w = start(names, lambda: Poisoned(done), max_records=1, on_error="dead-letter", dead_letter=f"file:{dlq}")
    try:
        wait_for(lambda: done == [b"before", b"after"], 30, "the records around the poison")
    finally:
        w.shutdown(20)
    (line,) = dlq.read_text().splitlines()
    entry = json.loads(line)
    assert entry["data_base64"] == "cG9pc29u" and "cannot parse poison" in entry["error"]
    assert entry["shard_id"] == "shardId-000000000000" and entry["stream"] == names["stream"]
    assert w.metrics.registry.get_sample_value("streamworker_records_dead_lettered_total",
                                               {"shard": "shardId-000000000000"}) == 1


def test_a_hung_processor_is_reported_with_its_stack(aws_env: dict[str, str], names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    produce(kinesis, names["stream"], 0, 1)
    release = threading.Event()

    class Stuck(RecordProcessor):
        def process_records(self, p: Any) -> None:
            wait_here_forever(release)

    def wait_here_forever(event: Any) -> None:
        event.wait(30)

    with capture_logs() as logs:
        w = start(names, Stuck, processor_timeout=0.5)
        try:
            wait_for(lambda: any("processor_timeout" in e["event"] for e in logs), 30, "the hang report")
        finally:
            release.set()
            w.shutdown(20)
    (report,) = [e for e in logs if "processor_timeout" in e["event"]]
    assert report["call"] == "process_records" and "wait_here_forever" in report["stack"]
    assert w.metrics.registry.get_sample_value("streamworker_processor_hangs_total",
                                               {"shard": "shardId-000000000000"}) == 1


def test_a_hung_processor_fails_healthz_and_a_graceful_stop_leaves_its_lease_to_expire(
        aws_env: dict[str, str], names: dict[str, str]) -> None:
    """A process_records past processor_timeout turns /healthz 503 (200 again once it returns).
    A graceful stop while one never returns releases the other shard's lease but not that one's
    (another worker would take it at once while the call goes on, in an embedding program it
    does): it expires, and the call's checkpoint is refused once it finally returns."""
    from streamworker.errors import LeaseLostError

    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    produce(kinesis, names["stream"], 0, 20)
    release = [threading.Event(), threading.Event()]
    refused: list[str] = []

    class Sticky(RecordProcessor):
        calls = 0

        def initialize(self, i: Any) -> None:
            self.shard = i.shard_id

        def process_records(self, p: Any) -> None:
            if self.shard == "shardId-000000000001" and p.records:
                Sticky.calls += 1
                release[min(Sticky.calls, 2) - 1].wait(60)
            try:
                p.checkpointer.checkpoint()
            except LeaseLostError as exc:
                refused.append(str(exc))

    w = start(names, Sticky, processor_timeout=1.0, shutdown_timeout=1.0, failover_time=4.0, metrics_port=0,
              metrics_host="127.0.0.1")
    port = w._ops.port
    try:
        def unhealthy() -> tuple[int, str] | None:
            r = get(port, "/healthz")
            return r if r[0] == 503 else None

        status, body = wait_for(unhealthy, 30, "a 503")
        assert "1 processor call(s) past processor_timeout (1 s): shardId-000000000001: process_records running" \
            in body, body
        release[0].set()
        wait_for(lambda: get(port, "/healthz") == (200, "ok\n"), 30, "healthy again once the call returned")
        produce(kinesis, names["stream"], 20, 20)
        wait_for(lambda: get(port, "/healthz")[0] == 503, 30, "the second call past the limit")
        stuck = w.coordinator.holding("shardId-000000000001")
        assert stuck is not None
        assert w.shutdown(20)
        rows = {i["leaseKey"]["S"]: i for i in boto3.client("dynamodb").scan(TableName=names["app"])["Items"]}
        assert "leaseOwner" not in rows["shardId-000000000000"]  # released at once
        assert rows["shardId-000000000001"]["leaseOwner"]["S"] == w.worker_id  # left to expire
        # once its validity has lapsed (renewals stopped with the worker), the call's writes are refused
        wait_for(lambda: not w.coordinator.is_held(stuck), 30, "the stuck lease no longer valid")
    finally:
        release[1].set()
    wait_for(lambda: refused, 30, "the late checkpoint refused")
    rows = {i["leaseKey"]["S"]: i for i in boto3.client("dynamodb").scan(TableName=names["app"])["Items"]}
    assert rows["shardId-000000000001"]["leaseOwner"]["S"] == w.worker_id  # nothing written after it expired


def test_a_hung_per_key_lane_is_reported_and_the_other_keys_go_on(aws_env: dict[str, str],
                                                                 names: dict[str, str]) -> None:
    """In per-key mode a ``process_record`` stuck on one key is reported (its key, its record, the
    lane's stack) while the lanes of the other keys go on."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    produce(kinesis, names["stream"], 0, 40, keys=4)  # key-0 .. key-3; record 0 is key-0's first
    release = threading.Event()
    done: list[bytes] = []

    class StuckKey(PerRecordProcessor):
        def process_record(self, record: Any) -> None:
            if record.data == b"0":
                wait_on_key_zero(release)
            done.append(record.data)

    def wait_on_key_zero(event: Any) -> None:
        event.wait(30)

    with capture_logs() as logs:
        w = start(names, StuckKey, processor_timeout=0.5, parallelism=4)
        try:
            wait_for(lambda: any("processor_timeout" in e["event"] for e in logs), 30, "the lane's hang report")
            wait_for(lambda: len(done) == 30, 30, "the other three keys' records")
        finally:
            release.set()
            wait_for(lambda: len(done) == 40, 30, "key-0's records once released")
            w.shutdown(20)
    (report,) = [e for e in logs if "processor_timeout" in e["event"]]
    assert report["call"] == "process_record" and report["key"] == "key-0"
    assert "wait_on_key_zero" in report["stack"] and report["sequence_number"]
    assert sorted(int(d) for d in done[:30]) == [i for i in range(40) if i % 4]
    assert w.metrics.registry.get_sample_value("streamworker_processor_hangs_total",
                                               {"shard": "shardId-000000000000"}) == 1


def test_no_secret_reaches_a_log_line(aws_env: dict[str, str], names: dict[str, str], kafka: KafkaTopics, tmp_path: Path) -> None:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    secret_key, sasl_password = "AKSECRETVALUE1234567890abcdef", "hunter2-sasl-password"
    env = {**os.environ, **aws_env, "AWS_SECRET_ACCESS_KEY": secret_key, "RECORD_LOG": str(tmp_path / "r.jsonl"),
           "STREAMWORKER_LOG_LEVEL": "DEBUG"}
    topic = kafka.create(names["stream"] + "-k", partitions=1)
    runs = [
        ["run", PROCESSOR, "--stream", names["stream"], "--application-name", names["app"]],
        ["run", PROCESSOR, "--source", "kafka", "--topic", topic, "--bootstrap-servers", kafka.bootstrap,
         "--application-name", names["app"] + "-k", "-X", f"sasl.password={sasl_password}",
         "-X", "sasl.username=user"],
        ["run", PROCESSOR, "--stream", "no-such-stream", "--application-name", names["app"]],
    ]
    for args in runs:
        p = subprocess.Popen([sys.executable, "-m", "streamworker", *args, "--log-format", "json"], env=env,
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        try:
            out = p.communicate(timeout=8)[1]
        except subprocess.TimeoutExpired:
            p.terminate()
            out = p.communicate(timeout=30)[1]
        assert secret_key not in out and sasl_password not in out, args
        assert out.strip(), "the run logged nothing to check"
