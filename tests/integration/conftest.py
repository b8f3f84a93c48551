"""Local servers and worker processes for the integration tests (see DESIGN.md §4)."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from streamworker.local import KinesisMock, MotoServer

HERE = Path(__file__).parent
PROCESSOR = f"{HERE / 'recording_processor.py'}:RecordingProcessor"


def wait_for(cond, timeout, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def moto_server():
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def kinesis_mock():
    try:
        server = KinesisMock().start()
    except Exception as exc:  # pragma: no cover - reported, never silently passed
        pytest.fail(f"kinesis-mock could not start: {exc}")
    yield server
    server.stop()


@pytest.fixture
def aws_env(moto_server, monkeypatch):
    env = {"AWS_ENDPOINT_URL": moto_server.endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    return env


@pytest.fixture
def names():
    suffix = uuid.uuid4().hex[:8]
    return {"stream": f"stream-{suffix}", "app": f"app-{suffix}"}


def make_stream(client, name, shards):
    client.create_stream(StreamName=name, ShardCount=shards)
    client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


def produce(client, stream, start, count, keys=16):
    """Put records numbered start..start+count-1 (data = the number) over ``keys`` partition keys."""
    n = start
    while n < start + count:
        batch = range(n, min(n + 100, start + count))
        resp = client.put_records(StreamName=stream, Records=[
            {"Data": str(i).encode(), "PartitionKey": f"key-{i % keys}"} for i in batch])
        assert resp.get("FailedRecordCount", 0) == 0
        n += len(batch)


class RecordLog:
    def __init__(self, path):
        self.path = path

    def events(self, ev=None):
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line cut short by kill -9
            if ev is None or e["ev"] == ev:
                out.append(e)
        return out

    def data(self):
        return [int(e["data"]) for e in self.events("rec")]


def running_shards(log, worker):
    """Shards whose processor in ``worker`` has initialized and not ended."""
    active = set()
    for e in log.events():
        if e["w"] != worker:
            continue
        if e["ev"] == "init":
            active.add(e["shard"])
        elif e["ev"] in ("shutdown_requested", "lease_lost", "shard_ended"):
            active.discard(e["shard"])
    return active


def settled(table_name, log, expected):
    """True when the lease table shows ``expected`` owner counts and each worker runs its shards."""
    try:
        owners = lease_owners(table_name)
    except boto3.client("dynamodb").exceptions.ResourceNotFoundException:
        return False  # the first worker has not created the table yet
    counts = {}
    for o in owners.values():
        counts[o] = counts.get(o, 0) + 1
    if counts != expected:
        return False
    return all(running_shards(log, w) == {k for k, o in owners.items() if o == w} for w in expected)


class WorkerProcess:
    def __init__(self, name, names, env, log, tmp, failover=3.0, hold_file=None, extra=()):
        self.name = name
        self.stderr_path = tmp / f"{name}.stderr"
        cmd = [sys.executable, "-m", "streamworker", "run", PROCESSOR, "--stream", names["stream"],
               "--application-name", names["app"], "--worker-id", name, "--failover-time", str(failover),
               "--initial-position", "TRIM_HORIZON", "--idle-time-between-reads", "0.2",
               "--log-format", "json", *extra]
        penv = {**os.environ, **env, "RECORD_LOG": str(log.path), "WORKER_NAME": name,
                "STREAMWORKER_TAKE_INTERVAL": "0.5"}
        if hold_file:
            penv["HOLD_FILE"] = str(hold_file)
        self.proc = subprocess.Popen(cmd, env=penv, stdout=subprocess.DEVNULL,
                                     stderr=open(self.stderr_path, "w"))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def stderr(self):
        return self.stderr_path.read_text()


@pytest.fixture
def workers(aws_env, names, tmp_path):
    log = RecordLog(tmp_path / "records.jsonl")
    started = []

    def start(name, **kw):
        w = WorkerProcess(name, names, aws_env, log, tmp_path, **kw)
        started.append(w)
        return w

    start.log = log
    yield start
    for w in started:
        w.stop()


def lease_owners(table_name):
    """Lease key -> owner; a lease in the middle of a handoff is owned by "handoff"."""
    ddb = boto3.client("dynamodb")
    items = ddb.scan(TableName=table_name, ConsistentRead=True)["Items"]
    return {i["leaseKey"]["S"]: "handoff" if "checkpointOwner" in i else i.get("leaseOwner", {}).get("S")
            for i in items}


def owner_counts(table_name):
    counts = {}
    try:
        for owner in lease_owners(table_name).values():
            counts[owner] = counts.get(owner, 0) + 1
    except Exception:
        return {}
    return counts
