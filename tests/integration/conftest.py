"""Local servers and worker processes for the integration tests (started by the tests themselves)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import pytest

from streamworker.local import KafkaBroker, KinesisMock, MotoServer
from streamworker.local.apache_kafka import ApacheKafka

from ..conftest import kafka_kind

if TYPE_CHECKING:
    from confluent_kafka import Producer
    from mypy_boto3_kinesis import KinesisClient

T = TypeVar("T")
HERE = Path(__file__).parent
PROCESSOR = f"{HERE / 'recording_processor.py'}:RecordingProcessor"
PER_RECORD_PROCESSOR = f"{HERE / 'recording_processor.py'}:RecordingPerRecordProcessor"


def wait_for(cond: Callable[[], T | None], timeout: float, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def kinesis_mock() -> Iterator[KinesisMock]:
    try:
        # one per pytest worker for the whole session, and no test deletes its streams: the long
        # run (./dev test-slow) puts more than kinesis-mock's default 50 shards on one worker
        server = KinesisMock(shard_limit=1000).start()
    except Exception as exc:  # pragma: no cover - reported, never silently passed
        pytest.fail(f"kinesis-mock could not start: {exc}")
    yield server
    server.stop()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"AWS_ENDPOINT_URL": moto_server.endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    return env


@pytest.fixture
def names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {"stream": f"stream-{suffix}", "app": f"app-{suffix}"}


def make_stream(client: KinesisClient, name: str, shards: int) -> None:
    client.create_stream(StreamName=name, ShardCount=shards)
    fast: Any = {"Delay": 0.2, "MaxAttempts": 100}  # botocore sleeps a float; the stubs say int
    client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig=fast)


def split_first_shard(kinesis: Any, stream: str) -> str:
    """Split the lowest shard at the middle of its hash range; returns its id once ACTIVE."""
    shard = sorted(kinesis.list_shards(StreamName=stream)["Shards"], key=lambda s: s["ShardId"])[0]
    lo, hi = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
    kinesis.split_shard(StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((lo + hi) // 2))
    wait_for(lambda: kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
             == "ACTIVE", 30, "the split")
    return str(shard["ShardId"])


def produce(client: KinesisClient, stream: str, start: int, count: int, keys: int = 16) -> None:
    """Put records numbered start..start+count-1 (data = the number) over ``keys`` partition keys."""
    n = start
    while n < start + count:
        batch = range(n, min(n + 100, start + count))
        resp = client.put_records(StreamName=stream, Records=[
            {"Data": str(i).encode(), "PartitionKey": f"key-{i % keys}"} for i in batch])
        assert resp.get("FailedRecordCount", 0) == 0
        n += len(batch)


class RecordLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self, ev: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out: list[dict[str, Any]] = []
        for line in self.path.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line cut short by kill -9
            if ev is None or e["ev"] == ev:
                out.append(e)
        return out

    def data(self) -> list[int]:
        return [int(e["data"]) for e in self.events("rec")]


def twice_report(log: RecordLog) -> str:
    """For an assertion message: which records came twice, where, and the lifecycle events of
    those shards (a duplicate is only explained by what happened to its shard)."""
    seen: dict[int, list[str]] = {}
    for e in log.events("rec"):
        seen.setdefault(int(e["data"]), []).append(f"{e['w']}:{e.get('shard')}")
    twice = {d: where for d, where in seen.items() if len(where) > 1}
    shards = {w.split(":", 1)[1] for where in twice.values() for w in where}
    story = [f"{e['w']} {e['ev']} {e.get('shard')} {e.get('checkpoint', '')}".strip() for e in log.events()
             if e["ev"] not in ("rec", "checkpointed") and e.get("shard") in shards]
    return f"{len(twice)} twice, e.g. {sorted(twice.items())[:3]}; their shards' events: {story[:40]}"


def running_shards(log: RecordLog, worker: str) -> set[str]:
    """Shards whose processor in ``worker`` has initialized and not ended."""
    active: set[str] = set()
    for e in log.events():
        if e["w"] != worker:
            continue
        if e["ev"] == "init":
            active.add(e["shard"])
        elif e["ev"] in ("shutdown_requested", "lease_lost", "shard_ended"):
            active.discard(e["shard"])
    return active


def settled(table_name: str, log: RecordLog, expected: dict[str, int]) -> bool:
    """True when the lease table shows ``expected`` owner counts and each worker runs its shards."""
    try:
        owners = lease_owners(table_name)
    except boto3.client("dynamodb").exceptions.ResourceNotFoundException:
        return False  # the first worker has not created the table yet
    counts: dict[str | None, int] = {}
    for o in owners.values():
        counts[o] = counts.get(o, 0) + 1
    if counts != expected:
        return False
    return all(running_shards(log, w) == {k for k, o in owners.items() if o == w} for w in expected)


class WorkerProcess:
    def __init__(self, name: str, names: dict[str, str], env: dict[str, str], log: RecordLog, tmp: Path,
                 failover: float = 3.0, hold_file: Path | None = None, extra: Sequence[str] = (),
                 source: list[str] | None = None, processor: str = PROCESSOR) -> None:
        self.name = name
        self.stderr_path = tmp / f"{name}.stderr"
        source = source or ["--stream", names["stream"]]
        cmd = [sys.executable, "-m", "streamworker", "run", processor, *source,
               "--application-name", names["app"], "--worker-id", name, "--failover-time", str(failover),
               "--initial-position", "TRIM_HORIZON", "--idle-time-between-reads", "0.2",
               "--log-format", "json", *extra]
        penv = {**os.environ, **env, "RECORD_LOG": str(log.path), "WORKER_NAME": name,
                "STREAMWORKER_TAKE_INTERVAL": "0.5"}
        if hold_file:
            penv["HOLD_FILE"] = str(hold_file)
        self.proc = subprocess.Popen(cmd, env=penv, stdout=subprocess.DEVNULL,
                                     stderr=open(self.stderr_path, "w"))

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def stderr(self) -> str:
        return self.stderr_path.read_text()


class Workers:
    """Starts ``streamworker run`` processes that share one record log; stops them all at the end."""

    def __init__(self, names: dict[str, str], env: dict[str, str], tmp: Path) -> None:
        self.names, self.env, self.tmp = names, env, tmp
        self.log = RecordLog(tmp / "records.jsonl")
        self.started: list[WorkerProcess] = []

    def __call__(self, name: str, **kw: Any) -> WorkerProcess:
        w = WorkerProcess(name, self.names, self.env, self.log, self.tmp, **kw)
        self.started.append(w)
        return w


@pytest.fixture
def workers(aws_env: dict[str, str], names: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    started = Workers(names, aws_env, tmp_path)
    yield started
    for w in started.started:
        w.stop()


def lease_owners(table_name: str) -> dict[str, str | None]:
    """Lease key -> owner; a lease in the middle of a handoff is owned by "handoff"."""
    ddb = boto3.client("dynamodb")
    items = ddb.scan(TableName=table_name, ConsistentRead=True)["Items"]
    return {i["leaseKey"]["S"]: "handoff" if "checkpointOwner" in i else i.get("leaseOwner", {}).get("S")
            for i in items}


def owner_counts(table_name: str) -> dict[str | None, int]:
    counts: dict[str | None, int] = {}
    try:
        for owner in lease_owners(table_name).values():
            counts[owner] = counts.get(owner, 0) + 1
    except Exception:
        return {}
    return counts


# -- Kafka --------------------------------------------------------------------------------------

KAFKA_GROUP_TIMING = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000"]


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[ApacheKafka | KafkaBroker]:
    """One broker for the session: Apache Kafka where it can run here, else tansu."""
    broker = ApacheKafka() if kafka_kind() == "apache-kafka" else KafkaBroker()
    with broker:
        yield broker


class KafkaTopics:
    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka.admin import AdminClient

        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.producer: Producer | None = None

    def create(self, name: str, partitions: int = 4) -> str:
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        self.admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(15)
        return name

    def produce(self, topic: str, start: int, count: int, keys: int = 16, partitions: int | None = None,
                created: float | None = None) -> None:
        """Records start..start+count-1; key-N goes to partition N % partitions (librdkafka's
        CRC32 partitioner would put all sixteen keys on two of four partitions). ``created``: the
        records' timestamp (CreateTime, epoch seconds) in place of now."""
        from confluent_kafka import Producer

        if self.producer is None:
            self.producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        if partitions is None:
            partitions = self.partitions(topic)
        for i in range(start, start + count):
            self.producer.produce(topic, key=f"key-{i % keys}".encode(), value=str(i).encode(),
                                  partition=(i % keys) % partitions,
                                  timestamp=0 if created is None else int(created * 1000))
        assert self.producer.flush(15) == 0

    def partitions(self, topic: str) -> int:
        """The topic's partition count, once the metadata shows it: right after create_topics a
        broker can answer with none yet (seen on a loaded machine: 0 partitions, then a modulo by 0)."""
        deadline = time.monotonic() + 15
        while True:
            meta = self.admin.list_topics(topic, timeout=10).topics.get(topic)
            if meta is not None and meta.error is None and meta.partitions:
                return len(meta.partitions)
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic}: no partitions in the metadata after 15 s ({meta and meta.error})")
            time.sleep(0.1)

    def committed(self, group: str, topic: str, partitions: int = 4) -> dict[int, int]:
        """The group's committed offsets; a coordinator still moving or loading is asked again."""
        from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

        moving = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                  KafkaError.COORDINATOR_NOT_AVAILABLE}
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    return {tp.partition: tp.offset for tp in
                            c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)}
                except KafkaException as exc:
                    err = exc.args[0]
                    if not (err.retriable() or err.code() in moving) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            c.close()


@pytest.fixture
def kafka(kafka_broker: ApacheKafka | KafkaBroker) -> KafkaTopics:
    return KafkaTopics(kafka_broker.bootstrap)
