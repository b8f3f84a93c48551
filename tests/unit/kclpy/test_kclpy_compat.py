"""streamworker.kclpy: the amazon-kclpy API, over the MultiLang protocol and in-process."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest

from streamworker.checkpoint.checkpointer import Checkpointer, CheckpointTracker
from streamworker.errors import LeaseLostError
from streamworker.kclpy import kcl
from streamworker.kclpy.adapter import KclpyAdapter, is_kclpy_processor
from streamworker.kclpy.v2 import processor as v2
from streamworker.kclpy.v3 import processor as v3
from streamworker.leases.lease import Lease
from streamworker.processor import (
    InitializationInput,
    LeaseLostInput,
    ProcessRecordsInput,
    ShardEndedInput,
    ShutdownRequestedInput,
)
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import Record


class V3(v3.RecordProcessorBase):
    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.calls: list[Any] = []

    def initialize(self, i: Any) -> None:
        self.calls.append(("initialize", i.shard_id, i.sequence_number))

    def process_records(self, p: Any) -> None:
        self.seen += [(r.binary_data, r.partition_key, r.sequence_number, r.sub_sequence_number) for r in p.records]
        p.checkpointer.checkpoint(p.records[-1].sequence_number, p.records[-1].sub_sequence_number)

    def lease_lost(self, i: Any) -> None:
        self.calls.append(("lease_lost",))

    def shard_ended(self, i: Any) -> None:
        i.checkpointer.checkpoint()
        self.calls.append(("shard_ended",))

    def shutdown_requested(self, i: Any) -> None:
        i.checkpointer.checkpoint()
        self.calls.append(("shutdown_requested",))


class V2(v2.RecordProcessorBase):
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def initialize(self, i: Any) -> None:
        self.calls.append(("initialize", i.shard_id))

    def process_records(self, p: Any) -> None:
        self.calls.append(("records", len(p.records)))

    def shutdown(self, s: Any) -> None:
        self.calls.append(("shutdown", s.reason))
        if s.reason == "TERMINATE":
            s.checkpointer.checkpoint()
        else:
            with pytest.raises(kcl.CheckpointError) as err:
                s.checkpointer.checkpoint()
            assert err.value.value == "ShutdownException"


class V1(kcl.RecordProcessorBase):
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def initialize(self, shard_id: Any) -> None:
        self.calls.append(("initialize", shard_id))

    def process_records(self, records: Any, checkpointer: Any) -> None:
        self.calls.append(("records", [base64.b64decode(r["data"]) for r in records]))
        checkpointer.checkpoint()

    def shutdown(self, checkpointer: Any, reason: Any) -> None:
        self.calls.append(("shutdown", reason))


class Store:
    def __init__(self, lost: Any=False) -> None:
        self.writes: list[Any] = []
        self.lost = lost

    def checkpoint(self, key: Any, esn: Any, pending: Any=None) -> None:
        if self.lost:
            raise LeaseLostError("gone")
        self.writes.append(esn)

    def prepare_checkpoint(self, key: Any, pending: Any) -> None:
        pass


def records(*seqs: Any) -> Any:
    return [Record(data=f"d{s}".encode(), partition_key=f"k{s}", sequence_number=str(s)) for s in seqs]


def drive(adapter: KclpyAdapter, store: Store, end: str = "shard_ended") -> Checkpointer:
    tracker = CheckpointTracker(store, Lease("shard-1"), "shard-1", ESN("TRIM_HORIZON"))
    cp = tracker.checkpointer
    adapter.initialize(InitializationInput("shard-1", ESN("TRIM_HORIZON")))
    batch = records(1, 2)
    tracker.delivered(batch[-1].extended_sequence_number)
    adapter.process_records(ProcessRecordsInput(batch, cp, "shard-1"))
    if end == "shard_ended":
        tracker.shard_ended()
        adapter.shard_ended(ShardEndedInput("shard-1", cp))
    elif end == "lease_lost":
        adapter.lease_lost(LeaseLostInput("shard-1"))
    else:
        adapter.shutdown_requested(ShutdownRequestedInput("shard-1", cp))
    return cp


def test_v3_processor_in_process() -> None:
    assert is_kclpy_processor(V3) and is_kclpy_processor(V2) and is_kclpy_processor(V1)
    p, store = V3(), Store()
    drive(KclpyAdapter(p), store)
    assert p.calls == [("initialize", "shard-1", "TRIM_HORIZON"), ("shard_ended",)]
    assert p.seen == [(b"d1", "k1", "1", 0), (b"d2", "k2", "2", 0)]
    assert store.writes == [ESN("2"), ESN("SHARD_END")]


def test_v2_and_v1_processors_are_upgraded() -> None:
    p2, store = V2(), Store()
    drive(KclpyAdapter(p2), store)
    assert p2.calls == [("initialize", "shard-1"), ("records", 2), ("shutdown", "TERMINATE")]
    assert store.writes == [ESN("SHARD_END")]
    drive(KclpyAdapter(p2), Store(), end="lease_lost")
    assert p2.calls[-1] == ("shutdown", "ZOMBIE")
    p1, store = V1(), Store()
    drive(KclpyAdapter(p1), store, end="shutdown_requested")
    assert p1.calls == [("initialize", "shard-1"), ("records", [b"d1", b"d2"])]
    assert store.writes == [ESN("2")]


def test_checkpoint_errors_carry_kclpy_values() -> None:
    p = V3()
    with pytest.raises(kcl.CheckpointError) as err:
        drive(KclpyAdapter(p), Store(lost=True))
    assert err.value.value == "ShutdownException"
    tracker = CheckpointTracker(Store(), Lease("s"), "s", ESN("5"))
    cp = tracker.checkpointer
    from streamworker.kclpy.adapter import InProcessCheckpointer

    with pytest.raises(kcl.CheckpointError) as err:
        InProcessCheckpointer(cp).checkpoint("4")
    assert err.value.value == "InvalidStateException"


def test_kcl_process_speaks_the_multilang_protocol() -> None:
    lines = [
        {"action": "initialize", "shardId": "shard-9", "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0},
        {"action": "processRecords", "millisBehindLatest": 0, "records": [
            {"action": "record", "data": base64.b64encode(b"hi").decode(), "partitionKey": "k",
             "sequenceNumber": "7", "subSequenceNumber": 0, "approximateArrivalTimestamp": 1700000000000}]},
        {"action": "checkpoint", "sequenceNumber": "7", "subSequenceNumber": 0},  # the daemon's reply
        {"action": "shutdownRequested"},
        {"action": "checkpoint", "sequenceNumber": "7", "subSequenceNumber": 0, "error": "ShutdownException"},
    ]
    stdin = io.StringIO("".join(json.dumps(x) + "\n" for x in lines))
    stdout, stderr = io.StringIO(), io.StringIO()

    class P(V3):
        def shutdown_requested(self, i: Any) -> None:
            with pytest.raises(kcl.CheckpointError) as err:
                i.checkpointer.checkpoint()
            self.calls.append(("refused", err.value.value))

    p = P()
    kcl.KCLProcess(p, stdin, stdout, stderr).run()
    out = [json.loads(x) for x in stdout.getvalue().splitlines() if x.strip()]
    assert out == [
        {"action": "status", "responseFor": "initialize"},
        {"action": "checkpoint", "sequenceNumber": "7", "subSequenceNumber": 0},
        {"action": "status", "responseFor": "processRecords"},
        {"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None},
        {"action": "status", "responseFor": "shutdownRequested"},
    ]
    assert p.seen == [(b"hi", "k", "7", 0)] and p.calls[-1] == ("refused", "ShutdownException")
