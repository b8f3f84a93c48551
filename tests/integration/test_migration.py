"""Migration from amazon-kclpy and KCL Java, tested against the real thing: amazon_kclpy and AWS's
own sample app from the amazon-kclpy 3.2.0 sdist, and lease rows in KCL's serializer format."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef
from mypy_boto3_kinesis.client import KinesisClient

from streamworker import RecordProcessor, Worker, WorkerConfig

from ..kcl import multilang
from .conftest import make_stream, wait_for

pytestmark = pytest.mark.integration

KCLPY_VERSION = "3.2.0"
KCL_ATTRIBUTES = {"leaseKey", "leaseOwner", "leaseCounter", "ownerSwitchesSinceCheckpoint", "checkpoint",
                  "checkpointSubSequenceNumber", "pendingCheckpoint", "pendingCheckpointSubSequenceNumber",
                  "pendingCheckpointState", "parentShardId", "childShardIds", "startingHashKey", "endingHashKey",
                  "throughputKBps", "checkpointOwner", "streamName", "shardId"}
#: streamworker's own attribute: KCL's lease serializer reads the attributes it knows and ignores others.
STREAMWORKER_ATTRIBUTES = {"swRecordsPerSecond", "swMillisBehindLatest"}


@pytest.fixture(scope="session")
def kclpy_sdist() -> Path:
    """amazon-kclpy's sdist (its installer fetches JARs, so it is not installed: the pure-Python
    package and the samples are used from the unpacked sdist)."""
    return multilang.kclpy_sdist(KCLPY_VERSION)


def lease_rows(table: str) -> dict[str, dict[str, AttributeValueTypeDef]]:
    return {i["leaseKey"]["S"]: i for i in boto3.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]}


def shard_tails(kinesis: KinesisClient, stream: Any) -> dict[str, str]:
    """The last sequence number of each shard."""
    tails = {}
    for s in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=s["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        recs = kinesis.get_records(ShardIterator=it, Limit=10000)["Records"]
        if recs:
            tails[s["ShardId"]] = recs[-1]["SequenceNumber"]
    return tails


def fresh(stream: str, table: str) -> Any:
    """The sample's stream and table names are fixed: start from none of either."""
    kinesis, ddb = boto3.client("kinesis"), boto3.client("dynamodb")
    try:
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        kinesis.get_waiter("stream_not_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    except kinesis.exceptions.ResourceNotFoundException:
        pass
    try:
        ddb.delete_table(TableName=table)
    except ddb.exceptions.ResourceNotFoundException:
        pass
    make_stream(kinesis, stream, 2)
    kinesis.put_records(StreamName=stream, Records=[{"Data": f"hello {i}".encode(), "PartitionKey": f"pk-{i}"}
                                                    for i in range(40)])
    return shard_tails(kinesis, stream)


def run_until_checkpointed(cmd: Any, env: Any, table: Any, tails: Any, tmp_path: Path) -> Any:
    err = open(tmp_path / "worker.stderr", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        def done() -> Any:
            try:
                rows = lease_rows(table)
            except Exception:
                return False
            return all(rows.get(s, {}).get("checkpoint", {}).get("S") == seq for s, seq in tails.items())

        wait_for(done, 60, "the app's checkpoints at every shard's last record")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    return (tmp_path / "worker.stderr").read_text()


def test_aws_sample_app_runs_unchanged_as_a_multilang_child(aws_env: dict[str, str], kclpy_sdist: Any, tmp_path: Path) -> None:
    tails = fresh("kclpysample", "PythonKCLSample")
    env = {**os.environ, **aws_env, "PYTHONPATH": str(kclpy_sdist), "STREAMWORKER_LOG_FORMAT": "json",
           "STREAMWORKER_IDLE_TIME_BETWEEN_READS": "0.2"}
    cmd = [sys.executable, "-m", "streamworker", "run", "--properties",
           str(kclpy_sdist / "samples" / "sample.properties")]
    log = run_until_checkpointed(cmd, env, "PythonKCLSample", tails, tmp_path)
    assert "child stderr" in log and "Record (Partition Key: pk-" in log  # the app's own output, relayed
    assert "Shutdown has been requested, checkpointing." in log


def test_aws_sample_app_runs_in_process_with_amazon_kclpy(aws_env: dict[str, str], kclpy_sdist: Any, tmp_path: Path) -> None:
    tails = fresh("kclpysample", "PythonKCLSample")
    env = {**os.environ, **aws_env, "PYTHONPATH": str(kclpy_sdist)}
    cmd = [sys.executable, "-m", "streamworker", "run",
           f"{kclpy_sdist / 'samples' / 'sample_kclpy_app.py'}:RecordProcessor", "--stream", "kclpysample",
           "--application-name", "PythonKCLSample", "--initial-position", "TRIM_HORIZON",
           "--idle-time-between-reads", "0.2", "--log-format", "json"]
    log = run_until_checkpointed(cmd, env, "PythonKCLSample", tails, tmp_path)
    assert "Record (Partition Key: pk-" in log


@pytest.mark.parametrize("mode", ["in-process", "multilang"])
def test_one_changed_import_line_without_amazon_kclpy(aws_env: dict[str, str], kclpy_sdist: Any, tmp_path: Path, mode: Any) -> None:
    app = tmp_path / "app.py"
    source = (kclpy_sdist / "samples" / "sample_kclpy_app.py").read_text()
    source = source.replace("from amazon_kclpy import kcl", "from streamworker.kclpy import kcl")
    source = source.replace("from amazon_kclpy.v3 import processor", "from streamworker.kclpy.v3 import processor")
    imports = [ln for ln in source.splitlines() if ln.startswith(("from ", "import "))]
    assert not [ln for ln in imports if "amazon_kclpy" in ln]
    app.write_text(source)
    tails = fresh("kclpysample", "PythonKCLSample")
    env = {**os.environ, **aws_env, "STREAMWORKER_IDLE_TIME_BETWEEN_READS": "0.2"}
    env.pop("PYTHONPATH", None)
    if mode == "in-process":
        cmd = [sys.executable, "-m", "streamworker", "run", f"{app}:RecordProcessor", "--stream", "kclpysample",
               "--application-name", "PythonKCLSample", "--initial-position", "TRIM_HORIZON"]
    else:
        shutil.copy(kclpy_sdist / "samples" / "sample.properties", tmp_path / "app.properties")
        props = (tmp_path / "app.properties").read_text().replace("sample_kclpy_app.py", "app.py")
        (tmp_path / "app.properties").write_text(props)
        cmd = [sys.executable, "-m", "streamworker", "run", "--properties", str(tmp_path / "app.properties")]
    log = run_until_checkpointed(cmd, env, "PythonKCLSample", tails, tmp_path)
    assert "Record (Partition Key: pk-" in log


class Recorder(RecordProcessor):
    def __init__(self, seen: Any, inits: Any) -> None:
        self.seen, self.inits = seen, inits

    def initialize(self, i: Any) -> None:
        self.inits[i.shard_id] = (str(i.extended_sequence_number), i.pending_checkpoint)

    def process_records(self, p: Any) -> None:
        self.seen.extend((r.shard_id, r.sequence_number) for r in p.records)
        p.checkpointer.checkpoint()


@pytest.mark.parametrize("multi_stream", [False, True], ids=["single-stream", "multi-stream"])
def test_kcl_java_lease_table_is_continued_without_reprocessing(aws_env: dict[str, str], names: dict[str, str], multi_stream: Any) -> None:
    kinesis, ddb = boto3.client("kinesis"), boto3.client("dynamodb")
    stream, table = names["stream"], names["app"]
    make_stream(kinesis, stream, 2)
    kinesis.put_records(StreamName=stream, Records=[{"Data": str(i).encode(), "PartitionKey": f"k{i}"}
                                                    for i in range(60)])
    all_seqs = {}
    for s in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=s["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        all_seqs[s["ShardId"]] = [r["SequenceNumber"] for r in kinesis.get_records(ShardIterator=it)["Records"]]
    (s0, seqs0), (s1, seqs1) = sorted(all_seqs.items())
    prefix = f"123456789012:{stream}:1700000000:" if multi_stream else ""
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    # Rows exactly as KCL Java's DynamoDBLeaseSerializer writes them, owned by a Java worker that is gone.
    ddb.put_item(TableName=table, Item={
        "leaseKey": {"S": prefix + s0}, "leaseOwner": {"S": "java-worker-1"}, "leaseCounter": {"N": "57"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"}, "checkpoint": {"S": seqs0[9]},
        "checkpointSubSequenceNumber": {"N": "0"}, "startingHashKey": {"S": "0"},
        "endingHashKey": {"S": "170141183460469231731687303715884105727"}})
    ddb.put_item(TableName=table, Item={
        "leaseKey": {"S": prefix + s1}, "leaseOwner": {"S": "java-worker-2"}, "leaseCounter": {"N": "12"},
        "ownerSwitchesSinceCheckpoint": {"N": "1"}, "checkpoint": {"S": seqs1[4]},
        "checkpointSubSequenceNumber": {"N": "0"}, "pendingCheckpoint": {"S": seqs1[7]},
        "pendingCheckpointSubSequenceNumber": {"N": "0"}, "throughputKBps": {"N": "1.5"}})
    other = {"leaseKey": {"S": "123456789012:another-stream:1700000000:shardId-000000000000"},
             "leaseOwner": {"S": "java-worker-3"}, "leaseCounter": {"N": "3"}, "checkpoint": {"S": "TRIM_HORIZON"},
             "checkpointSubSequenceNumber": {"N": "0"}, "ownerSwitchesSinceCheckpoint": {"N": "0"}}
    not_a_lease = {"leaseKey": {"S": "kcl3-coordinator-row"}, "entityType": {"S": "CLIENT_VERSION"},
                   "cv": {"S": "CLIENT_VERSION_3x"}}
    if multi_stream:
        ddb.put_item(TableName=table, Item=other)
    ddb.put_item(TableName=table, Item=not_a_lease)

    seen: list[Any] = []
    inits: dict[Any, Any] = {}
    cfg = WorkerConfig.load({"stream": stream, "application_name": table, "failover_time": 1.5,
                             "initial_position": "TRIM_HORIZON", "idle_time_between_reads": 0.2,
                             "take_interval": 0.3})
    w = Worker(cfg, lambda: Recorder(seen, inits))
    w.start()
    try:
        expected = {(s0, q) for q in seqs0[10:]} | {(s1, q) for q in seqs1[5:]}
        wait_for(lambda: set(seen) >= expected, 30, "the records after the Java checkpoints")
    finally:
        w.shutdown(15)
    assert set(seen) == expected and len(seen) == len(expected), "a checkpointed record was processed again"
    assert inits[s0] == (seqs0[9], None)
    assert inits[s1][0] == seqs1[4] and str(inits[s1][1]) == seqs1[7]
    rows = lease_rows(table)
    expected_keys = {prefix + s0, prefix + s1, "kcl3-coordinator-row"} | (
        {other["leaseKey"]["S"]} if multi_stream else set())
    assert set(rows) == expected_keys  # no duplicate single-stream leases
    assert rows["kcl3-coordinator-row"] == not_a_lease
    if multi_stream:
        assert rows[other["leaseKey"]["S"]] == other  # another stream's lease is not ours to take
    for key in (prefix + s0, prefix + s1):
        row = rows[key]
        unknown = set(row) - KCL_ATTRIBUTES - STREAMWORKER_ATTRIBUTES
        assert not unknown, f"attributes neither KCL's nor streamworker's documented one: {unknown}"
        assert "N" in row["leaseCounter"] and "S" in row["checkpoint"] and "N" in row["checkpointSubSequenceNumber"]
        assert int(row["leaseCounter"]["N"]) > 12 and "leaseOwner" not in row  # released on shutdown
    assert rows[prefix + s0]["checkpoint"]["S"] == seqs0[-1] and rows[prefix + s1]["checkpoint"]["S"] == seqs1[-1]
