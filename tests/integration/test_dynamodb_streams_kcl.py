"""A KCL application on DynamoDB Streams (AWS's dynamodb-streams-kinesis-adapter on KCL 1.14, the
real Java) and streamworker on one lease table, both ways (kclpy issue #107's users): nothing
processed twice, and KCL's log holds no complaint about the rows streamworker wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamworker.local import MotoServer

from ..kcl import multilang, streams_adapter
from .conftest import RecordLog, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not multilang.available(), reason="needs Java and Maven")]

APP = '''
import json, os, time
from streamworker import RecordProcessor

class Changes(RecordProcessor):
    def initialize(self, i):
        self.shard = i.shard_id
        self.log = open(os.environ["RECORD_LOG"], "a", buffering=1)

    def process_records(self, p):
        for r in p.records:
            self.log.write(json.dumps({"ev": "rec", "w": "sw-1", "shard": self.shard, "t": time.time(),
                                       "seq": r.sequence_number, "name": r.event_name, "data": r.keys["id"]}) + "\\n")
        p.checkpointer.checkpoint()
'''


@pytest.fixture
def setting(aws_env: dict[str, str], moto_server: MotoServer, names: dict[str, str], tmp_path: Path) -> Any:
    ddb = boto3.client("dynamodb")
    arn = ddb.create_table(TableName=names["stream"], KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                           AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                           BillingMode="PAY_PER_REQUEST",
                           StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
                           )["TableDescription"]["LatestStreamArn"]
    (tmp_path / "changes.py").write_text(APP)
    return ddb, arn, RecordLog(tmp_path / "records.jsonl")


def changes(ddb: Any, table: str, start: int, count: int) -> None:
    for n in range(start, start + count):
        ddb.put_item(TableName=table, Item={"id": {"S": str(n)}})


def seen(log: RecordLog, who: str) -> list[int]:
    return [int(e["data"]) for e in log.events("rec") if e["w"].startswith(who)]


def streamworker(arn: str, names: dict[str, str], env: dict[str, str], log: RecordLog, tmp: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "streamworker", "run", f"{tmp / 'changes.py'}:Changes",
                             "--source", "dynamodb-streams", "--stream", arn, "--application-name", names["app"],
                             "--initial-position", "TRIM_HORIZON", "--idle-time-between-reads", "0.2",
                             "--failover-time", "5", "--worker-id", "sw-1"],
                            env={**os.environ, **env, "RECORD_LOG": str(log.path)}, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "sw-1.stderr", "w"))


def test_streamworker_continues_what_kcl_and_the_adapter_checkpointed(setting: Any, names: dict[str, str],
                                                                     moto_server: MotoServer, aws_env: dict[str, str],
                                                                     tmp_path: Path) -> None:
    ddb, arn, log = setting
    changes(ddb, names["stream"], 0, 20)
    k = streams_adapter.StreamsAdapterWorker(arn, names["app"], "kcl-1", log.path, moto_server.endpoint,
                                             tmp_path / "kcl-1.stderr")
    try:
        wait_for(lambda: set(seen(log, "kcl")) >= set(range(20)), 120, "KCL + the adapter to process 20 changes")
    finally:
        assert k.stop() == 0, k.stderr()[-3000:]
    rows = ddb.scan(TableName=names["app"])["Items"]
    assert len(rows) == 1 and rows[0]["checkpoint"]["S"].isdigit()  # the row KCL wrote
    changes(ddb, names["stream"], 20, 10)
    w = streamworker(arn, names, aws_env, log, tmp_path)
    try:
        wait_for(lambda: set(seen(log, "sw")) >= set(range(20, 30)), 60, "streamworker to go on")
    finally:
        w.send_signal(signal.SIGTERM)
        assert w.wait(30) == 0
    assert sorted(seen(log, "sw")) == list(range(20, 30))  # nothing KCL had checkpointed, again
    assert sorted(seen(log, "kcl")) == list(range(20))


def test_kcl_and_the_adapter_continue_what_streamworker_checkpointed(setting: Any, names: dict[str, str],
                                                                    moto_server: MotoServer, aws_env: dict[str, str],
                                                                    tmp_path: Path) -> None:
    ddb, arn, log = setting
    changes(ddb, names["stream"], 0, 20)
    w = streamworker(arn, names, aws_env, log, tmp_path)
    try:
        wait_for(lambda: set(seen(log, "sw")) >= set(range(20)), 60, "streamworker to process 20 changes")
    finally:
        w.send_signal(signal.SIGTERM)
        assert w.wait(30) == 0
    changes(ddb, names["stream"], 20, 10)
    k = streams_adapter.StreamsAdapterWorker(arn, names["app"], "kcl-1", log.path, moto_server.endpoint,
                                             tmp_path / "kcl-1.stderr")
    try:
        wait_for(lambda: set(seen(log, "kcl")) >= set(range(20, 30)), 120, "KCL + the adapter to go on")
    finally:
        k.stop()
    assert sorted(seen(log, "kcl")) == list(range(20, 30))  # nothing streamworker had checkpointed, again
    assert sorted(seen(log, "sw")) == list(range(20))
    assert not streams_adapter.complaints(k.stderr()), streams_adapter.complaints(k.stderr())[:10]
