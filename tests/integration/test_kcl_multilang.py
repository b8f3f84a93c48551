"""AWS's MultiLangDaemon (KCL 1.15, the one Maven Central serves here) running AWS's amazon-kclpy
1.5.1 sample app, and ``streamworker run --properties`` running the same app from the same
``.properties`` file, on one lease table, both ways (issue 12, item 4 a/b): nothing processed
twice, and KCL's log holds no complaint about the rows streamworker wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamworker.checkpoint.checkpointer import CheckpointTracker
from streamworker.kcl.multilang import ChildProcessError, MultiLangProcessor
from streamworker.leases.lease import Lease
from streamworker.local import KinesisMock, MotoServer
from streamworker.processor import InitializationInput, ProcessRecordsInput, ShardEndedInput
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import Record

from ..kcl import multilang
from ..unit.kcl.test_multilang import Store
from .conftest import RecordLog, make_stream, produce, split_first_shard, wait_for

pytestmark = pytest.mark.integration
needs_java = pytest.mark.skipif(not multilang.available(), reason="needs Java and Maven")


@pytest.fixture(scope="session")
def daemon_home() -> Path:
    return multilang.install()


@pytest.fixture(scope="session")
def kclpy1() -> Path:
    return multilang.kclpy_sdist(multilang.KCLPY1_VERSION)


class Setting:
    def __init__(self, names: dict[str, str], kinesis_mock: KinesisMock, moto_server: MotoServer,
                 aws_env: dict[str, str], kclpy1: Path, tmp: Path) -> None:
        self.names, self.tmp = names, tmp
        self.kinesis = boto3.client("kinesis", endpoint_url=kinesis_mock.endpoint)
        self.ddb = boto3.client("dynamodb", endpoint_url=moto_server.endpoint)
        self.log = RecordLog(tmp / "records.jsonl")
        self.properties = multilang.write_properties(
            tmp / "app.properties", names["stream"], names["app"], kinesis_mock.endpoint, moto_server.endpoint,
            worker_id="kcl-1", failover_ms=5000)
        self.env = {**os.environ, **aws_env, "PYTHONPATH": multilang.child_pythonpath(kclpy1),
                    "RECORD_LOG": str(self.log.path)}
        self.started: list[Any] = []

    def daemon(self, home: Path) -> multilang.MultiLangDaemon:
        d = multilang.MultiLangDaemon(home, self.properties, {**self.env, "WORKER_NAME": "kcl-1"},
                                      self.tmp / "kcl-1.stderr")
        self.started.append(d)
        return d

    def streamworker(self) -> subprocess.Popen[bytes]:
        """The same .properties and the same child, streamworker as the daemon (protocol v1:
        amazon-kclpy 1.x)."""
        env = {**self.env, "WORKER_NAME": "sw-1", "STREAMWORKER_WORKER_ID": "sw-1",
               "STREAMWORKER_FAILOVER_TIME": "5", "STREAMWORKER_TAKE_INTERVAL": "0.5",
               "STREAMWORKER_LOG_FORMAT": "json"}
        p = subprocess.Popen([sys.executable, "-m", "streamworker", "run", "--properties", str(self.properties),
                              "--multilang-protocol", "v1"], env=env, stdout=subprocess.DEVNULL,
                             stderr=open(self.tmp / "sw-1.stderr", "w"))
        self.started.append(p)
        return p

    def seen(self, who: str) -> list[int]:
        return [int(e["data"]) for e in self.log.events("rec") if e["w"].startswith(who)]

    def rows(self) -> dict[str, dict[str, Any]]:
        items = self.ddb.scan(TableName=self.names["app"], ConsistentRead=True)["Items"]
        return {i["leaseKey"]["S"]: i for i in items}

    def checkpointed_all_seen(self, who: str) -> bool:
        """Every shard's checkpoint is the last sequence number ``who`` recorded on it (or its end)."""
        last: dict[str, int] = {}
        for e in self.log.events("rec"):
            if e["w"].startswith(who):
                last[e["shard"]] = max(last.get(e["shard"], 0), int(e["seq"]))
        try:
            rows = self.rows()
        except self.ddb.exceptions.ResourceNotFoundException:
            return False
        return bool(last) and all(rows.get(s, {}).get("checkpoint", {}).get("S") in (str(seq), "SHARD_END")
                                  for s, seq in last.items())


@pytest.fixture
def setting(names: dict[str, str], kinesis_mock: KinesisMock, moto_server: MotoServer, aws_env: dict[str, str],
            kclpy1: Path, tmp_path: Path) -> Iterator[Setting]:
    s = Setting(names, kinesis_mock, moto_server, aws_env, kclpy1, tmp_path)
    make_stream(s.kinesis, names["stream"], 2)
    yield s
    for p in s.started:
        if isinstance(p, multilang.MultiLangDaemon):
            p.kill()
        elif p.poll() is None:
            p.kill()
            p.wait(10)


def stop_streamworker(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGTERM)  # graceful: shutdownRequested (the app checkpoints), leases released
    assert p.wait(30) == 0


@needs_java
def test_streamworker_takes_over_from_aws_multilang_daemon(setting: Setting, daemon_home: Path) -> None:
    s = setting
    produce(s.kinesis, s.names["stream"], 0, 200)
    d = s.daemon(daemon_home)
    try:
        wait_for(lambda: set(s.seen("kcl")) >= set(range(200)), 120, "KCL's MultiLangDaemon to process 200 records")
        wait_for(lambda: s.checkpointed_all_seen("kcl"), 30, "the sample app's checkpoints")
    finally:
        assert d.stop() == 0, d.stderr()[-3000:]
    assert all(r["leaseOwner"]["S"] == "kcl-1" for r in s.rows().values())  # KCL's own rows, still held
    produce(s.kinesis, s.names["stream"], 200, 100)
    w = s.streamworker()
    wait_for(lambda: set(s.seen("sw")) >= set(range(200, 300)), 90, "streamworker to go on with the same app")
    stop_streamworker(w)
    assert sorted(s.seen("sw")) == list(range(200, 300))  # nothing KCL had checkpointed, again
    assert sorted(s.seen("kcl")) == list(range(200))
    assert '"malformed' not in (s.tmp / "sw-1.stderr").read_text()


@needs_java
def test_aws_multilang_daemon_takes_over_from_streamworker(setting: Setting, daemon_home: Path) -> None:
    s = setting
    produce(s.kinesis, s.names["stream"], 0, 200)
    w = s.streamworker()
    wait_for(lambda: set(s.seen("sw")) >= set(range(200)), 90, "streamworker to process 200 records")
    stop_streamworker(w)
    assert all("leaseOwner" not in r for r in s.rows().values())  # released at the graceful stop
    assert Counter(e["w"] for e in s.log.events("shutdown_requested")) == {"sw-1": 2}
    produce(s.kinesis, s.names["stream"], 200, 100)
    d = s.daemon(daemon_home)
    try:
        wait_for(lambda: set(s.seen("kcl")) >= set(range(200, 300)), 120, "KCL's MultiLangDaemon to go on")
        wait_for(lambda: s.checkpointed_all_seen("kcl"), 30, "the sample app's checkpoints under KCL")
    finally:
        d.stop()
    assert sorted(s.seen("kcl")) == list(range(200, 300))  # nothing streamworker had checkpointed, again
    assert sorted(s.seen("sw")) == list(range(200))
    complaints = multilang.complaints(d.stderr())
    assert not complaints, complaints[:10]



@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_an_amazon_kclpy_1_app_ends_a_shard_only_with_protocol_v1(kclpy1: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    """amazon-kclpy 1.x refuses shardEnded / leaseLost: with v1 it gets KCL 1's shutdown TERMINATE
    and checkpoints SHARD_END; with v2 the error names the setting to change."""
    monkeypatch.setenv("PYTHONPATH", multilang.child_pythonpath(kclpy1))
    monkeypatch.setenv("RECORD_LOG", str(tmp_path / "records.jsonl"))
    store = Store()
    tracker = CheckpointTracker(store, Lease("shard-1"), "shard-1", ESN("5"))
    p = MultiLangProcessor([sys.executable, str(multilang.RECORDING_APP)], protocol=protocol)  # type: ignore[arg-type]
    p.initialize(InitializationInput("shard-1", ESN("5")))
    batch = [Record(data=str(n).encode(), partition_key="k", sequence_number=str(n)) for n in (6, 7)]
    tracker.delivered(batch[-1].extended_sequence_number)
    p.process_records(ProcessRecordsInput(batch, tracker.checkpointer, "shard-1"))
    assert store.writes == [ESN("7")]  # AWS's sample checkpointed its largest sequence number
    tracker.shard_ended()
    if protocol == "v1":
        p.shard_ended(ShardEndedInput("shard-1", tracker.checkpointer))
        assert store.writes[-1] == ESN("SHARD_END")
        assert [e["ev"] for e in RecordLog(tmp_path / "records.jsonl").events()][-1] == "shard_ended"
    else:
        with pytest.raises(ChildProcessError, match="set multilang_protocol = v1"):
            p.shard_ended(ShardEndedInput("shard-1", tracker.checkpointer))
        assert store.writes == [ESN("7")]


@needs_java
@pytest.mark.parametrize("first", ["kcl", "sw"])
def test_a_resharded_stream_changes_hands_between_aws_multilang_daemon_and_streamworker(
        setting: Setting, daemon_home: Path, first: str) -> None:
    """The first daemon reads a shard to SHARD_END across a split (AWS's sample checkpoints on
    TERMINATE) and starts its children; the other continues from those rows."""
    s = setting
    second = "sw" if first == "kcl" else "kcl"

    def start(who: str) -> Any:
        return s.daemon(daemon_home) if who == "kcl" else s.streamworker()

    def stop(who: str, proc: Any) -> None:
        if who == "kcl":
            assert proc.stop() == 0, proc.stderr()[-3000:]
        else:
            stop_streamworker(proc)

    produce(s.kinesis, s.names["stream"], 0, 100)
    a = start(first)
    try:
        wait_for(lambda: set(s.seen(first)) >= set(range(100)), 120, f"{first} to process 100 records")
        parent = split_first_shard(s.kinesis, s.names["stream"])
        produce(s.kinesis, s.names["stream"], 100, 100)
        wait_for(lambda: set(s.seen(first)) >= set(range(200)), 120, f"{first} to read on into the children")
        wait_for(lambda: s.checkpointed_all_seen(first), 30, "the checkpoints of everything read")
    finally:
        stop(first, a)
    rows = s.rows()
    assert rows[parent]["checkpoint"]["S"] == "SHARD_END", rows[parent]
    assert any(e["shard"] == parent for e in s.log.events("shard_ended"))
    children = [k for k, r in rows.items() if parent in r.get("parentShardId", {}).get("SS", [])]
    assert len(children) == 2, rows
    produce(s.kinesis, s.names["stream"], 200, 100)
    b = start(second)
    try:
        wait_for(lambda: set(s.seen(second)) >= set(range(200, 300)), 120, f"{second} to go on")
    finally:
        stop(second, b)
    assert sorted(s.seen(second)) == list(range(200, 300))  # nothing the first had checkpointed, again
    assert sorted(s.seen(first)) == list(range(200))
    if second == "kcl":
        assert not multilang.complaints(b.stderr()), multilang.complaints(b.stderr())[:10]

