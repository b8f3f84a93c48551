"""DynamoDB Streams as a source, on moto's DynamoDB Streams (a stand-in: one shard per stream,
never rolled over), and shard rollover with a scripted stream where moto cannot show it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamworker import RecordProcessor, Worker, WorkerConfig
from streamworker.sources.dynamodb_streams import StreamRecord

from .conftest import RecordLog, wait_for

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent

APP = '''
import json, os
from streamworker import RecordProcessor

class Changes(RecordProcessor):
    def initialize(self, i):
        self.log = open(os.environ["RECORD_LOG"], "a", buffering=1)

    def process_records(self, p):
        for r in p.records:
            self.log.write(json.dumps({"ev": "rec", "name": r.event_name, "keys": r.keys, "new": r.new_image,
                                       "old": r.old_image, "seq": r.sequence_number, "key": r.partition_key,
                                       "raw": json.loads(r.data)["eventName"]}, default=str) + "\\n")
        p.checkpointer.checkpoint()
'''


def table_with_stream(ddb: Any, name: str, view: str = "NEW_AND_OLD_IMAGES") -> str:
    t = ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST", StreamSpecification={"StreamEnabled": True,
                                                                               "StreamViewType": view})
    return str(t["TableDescription"]["LatestStreamArn"])


def run(args: list[str], env: dict[str, str], tmp: Path) -> subprocess.Popen[bytes]:
    app = tmp / "changes.py"
    app.write_text(APP)
    return subprocess.Popen([sys.executable, "-m", "streamworker", "run", f"{app}:Changes", "--source", "dynamodb-streams",
                             *args, "--initial-position", "TRIM_HORIZON", "--idle-time-between-reads", "0.2",
                             "--failover-time", "3"], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "worker.stderr", "a"))


def stop(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 0


def test_changes_with_their_images_and_a_restart_goes_on(aws_env: dict[str, str], names: dict[str, str],
                                                        tmp_path: Path) -> None:
    ddb = boto3.client("dynamodb")
    table = names["stream"]
    table_with_stream(ddb, table)
    ddb.put_item(TableName=table, Item={"id": {"S": "o1"}, "n": {"N": "1"}, "tags": {"SS": ["a", "b"]}})
    ddb.put_item(TableName=table, Item={"id": {"S": "o2"}, "n": {"N": "2"}})
    ddb.update_item(TableName=table, Key={"id": {"S": "o1"}}, UpdateExpression="SET n = :v",
                    ExpressionAttributeValues={":v": {"N": "10"}})
    env = {**os.environ, **aws_env, "RECORD_LOG": str(tmp_path / "log.jsonl")}
    log = RecordLog(tmp_path / "log.jsonl")
    w = run(["--table", table, "--application-name", names["app"]], env, tmp_path)
    wait_for(lambda: len(log.events("rec")) >= 3, 60, "three changes")
    stop(w)
    first = log.events("rec")
    assert [(e["name"], e["keys"]) for e in first] == [("INSERT", {"id": "o1"}), ("INSERT", {"id": "o2"}),
                                                       ("MODIFY", {"id": "o1"})]
    assert first[0]["new"]["n"] == "1" and first[0]["new"]["tags"] in ("{'a', 'b'}", "{'b', 'a'}")  # a set
    assert first[0]["old"] is None
    assert first[2]["old"]["n"] == "1" and first[2]["new"]["n"] == "10" and first[2]["raw"] == "MODIFY"
    assert first[0]["key"] == first[2]["key"] == '{"id":{"S":"o1"}}'  # one item's changes share a key
    ddb.delete_item(TableName=table, Key={"id": {"S": "o2"}})
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    w = run(["--stream", arn, "--application-name", names["app"]], env, tmp_path)  # the ARN works too
    wait_for(lambda: len(log.events("rec")) >= 4, 60, "the delete")
    stop(w)
    later = log.events("rec")[3:]
    assert [(e["name"], e["keys"], e["new"], e["old"]["n"]) for e in later] == [("REMOVE", {"id": "o2"}, None, "2")]
    rows = boto3.client("dynamodb").scan(TableName=names["app"])["Items"]
    assert [r["checkpoint"]["S"] for r in rows] == [later[-1]["seq"]]  # KCL's lease row, at the last change


def test_a_missing_table_and_a_table_without_a_stream_are_one_line(aws_env: dict[str, str], names: dict[str, str],
                                                                    tmp_path: Path) -> None:
    ddb = boto3.client("dynamodb")
    ddb.create_table(TableName=names["stream"], KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    env = {**os.environ, **aws_env, "RECORD_LOG": str(tmp_path / "log.jsonl")}
    for table, message in ((names["stream"], f"DynamoDB table {names['stream']!r} has no stream: enable one "
                                             f"(StreamSpecification, NEW_AND_OLD_IMAGES for both images)"),
                           ("no-such-table", "DynamoDB table 'no-such-table' not found")):
        w = run(["--table", table, "--application-name", names["app"]], env, tmp_path)
        assert w.wait(60) == 1
        errors = [ln for ln in (tmp_path / "worker.stderr").read_text().splitlines()
                  if ln.startswith("streamworker: error:")]
        assert errors[-1] == f"streamworker: error: {message}"


class RolledOverStream:
    """A DynamoDB Streams client for a stream that rolled over: a closed parent shard and its
    open child (moto never closes a shard). Records are scripted; iterators name a position."""

    ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-12-01T00:00:00.000"

    def __init__(self) -> None:
        self.records = {"shardId-parent": [self._record(n) for n in range(1, 6)],
                        "shardId-child": [self._record(n) for n in range(6, 10)]}
        self.meta = boto3.client("dynamodbstreams", region_name="us-east-1").meta
        self.lock = threading.Lock()

    @staticmethod
    def _record(n: int) -> dict[str, Any]:
        return {"eventID": str(n), "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {"Keys": {"id": {"S": f"o{n % 3}"}}, "NewImage": {"id": {"S": f"o{n % 3}"},
                                                                            "n": {"N": str(n)}},
                             "SequenceNumber": str(1000 + n), "SizeBytes": 20, "StreamViewType": "NEW_IMAGE"}}

    def describe_stream(self, StreamArn: str, **kw: Any) -> dict[str, Any]:  # noqa: N803 - the API's names
        return {"StreamDescription": {
            "StreamArn": self.ARN, "StreamStatus": "ENABLED", "TableName": "orders",
            "Shards": [{"ShardId": "shardId-parent",
                        "SequenceNumberRange": {"StartingSequenceNumber": "1001", "EndingSequenceNumber": "1005"}},
                       {"ShardId": "shardId-child", "ParentShardId": "shardId-parent",
                        "SequenceNumberRange": {"StartingSequenceNumber": "1006"}}]}}

    def get_shard_iterator(self, StreamArn: str, ShardId: str, ShardIteratorType: str,  # noqa: N803
                           SequenceNumber: str | None = None) -> dict[str, Any]:
        recs = self.records[ShardId]
        if ShardIteratorType == "TRIM_HORIZON":
            at = 0
        else:
            at = next(i for i, r in enumerate(recs) if r["dynamodb"]["SequenceNumber"] == SequenceNumber)
            at += 1 if ShardIteratorType == "AFTER_SEQUENCE_NUMBER" else 0
        return {"ShardIterator": f"{ShardId}|{at}"}

    def get_records(self, ShardIterator: str, Limit: int = 1000) -> dict[str, Any]:  # noqa: N803
        shard, at = ShardIterator.rsplit("|", 1)
        recs = self.records[shard][int(at):int(at) + 2]  # two a call: several reads per shard
        nxt = int(at) + len(recs)
        out: dict[str, Any] = {"Records": recs}
        if shard == "shardId-child" or nxt < len(self.records[shard]):
            out["NextShardIterator"] = f"{shard}|{nxt}"
        return out


class Collect(RecordProcessor):
    def __init__(self, out: list[tuple[str, str, int]]) -> None:
        self.out = out

    def initialize(self, i: Any) -> None:
        self.shard = i.shard_id

    def process_records(self, p: Any) -> None:
        for r in p.records:
            assert isinstance(r, StreamRecord)
            image = r.new_image
            assert image is not None
            self.out.append((self.shard, r.sequence_number, int(image["n"])))
        p.checkpointer.checkpoint()


def test_a_rolled_over_stream_is_read_parent_first(aws_env: dict[str, str], names: dict[str, str]) -> None:
    out: list[tuple[str, str, int]] = []
    cfg = WorkerConfig.load({"source": "dynamodb-streams", "stream": RolledOverStream.ARN,
                             "application_name": names["app"], "initial_position": "TRIM_HORIZON",
                             "idle_time_between_reads": 0.2, "parent_poll_interval": 0.2})
    w = Worker(cfg, lambda: Collect(out), streams_client=RolledOverStream())
    w.start()
    try:
        wait_for(lambda: len(out) >= 9, 60, "both shards")
    finally:
        w.shutdown()
    assert [n for _, _, n in out] == list(range(1, 10))  # every parent record before any child record
    assert {s for s, _, n in out if n <= 5} == {"shardId-parent"}
    rows = {r["leaseKey"]["S"]: r for r in boto3.client("dynamodb").scan(TableName=names["app"])["Items"]}
    # the parent ended at SHARD_END; its row is deleted once the child checkpointed (cleanup_finished_leases)
    assert "shardId-parent" not in rows or rows["shardId-parent"]["checkpoint"]["S"] == "SHARD_END"
    assert rows["shardId-child"]["checkpoint"]["S"] == "1009" and rows["shardId-child"]["parentShardId"]["SS"] == [
        "shardId-parent"]


def test_images_deserialize_to_python_values() -> None:
    data = json.dumps({"eventName": "MODIFY", "dynamodb": {
        "Keys": {"id": {"S": "o1"}}, "NewImage": {"id": {"S": "o1"}, "n": {"N": "1.5"}, "ok": {"BOOL": True},
                                                  "l": {"L": [{"S": "x"}]}, "m": {"M": {"a": {"NULL": True}}}},
        "SequenceNumber": "7"}}).encode()
    r = StreamRecord(data, '{"id":{"S":"o1"}}', "7")
    assert r.event_name == "MODIFY" and r.keys == {"id": "o1"} and r.old_image is None
    assert r.new_image == {"id": "o1", "n": Decimal("1.5"), "ok": True, "l": ["x"], "m": {"a": None}}
