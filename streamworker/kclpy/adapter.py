"""Run an amazon-kclpy processor (v1, v2 or v3 interface) in-process, with kclpy's input objects
and checkpointer semantics: CheckpointError values 'ShutdownException', 'ThrottlingException',
'InvalidStateException'."""

from __future__ import annotations

from typing import Any

from streamworker import errors
from streamworker.checkpoint.checkpointer import Checkpointer as SwCheckpointer
from streamworker.kcl.multilang import record_json
from streamworker.kclpy import messages
from streamworker.kclpy.checkpoint_error import CheckpointError
from streamworker.kclpy.kcl import as_v3
from streamworker.processor import (
    InitializationInput,
    LeaseLostInput,
    ProcessRecordsInput,
    RecordProcessor,
    ShardEndedInput,
    ShutdownRequestedInput,
)


class InProcessCheckpointer:
    """kclpy's ``checkpointer.checkpoint(sequence_number=None, sub_sequence_number=None)``."""

    def __init__(self, checkpointer: SwCheckpointer | None) -> None:
        self._cp = checkpointer

    def checkpoint(self, sequence_number: Any = None, sub_sequence_number: Any = None) -> None:
        if self._cp is None:
            raise CheckpointError("ShutdownException")
        try:
            if sequence_number is None:
                self._cp.checkpoint()
            else:
                sub = int(sub_sequence_number) if sub_sequence_number is not None else None
                self._cp.checkpoint(str(sequence_number), sub)
        except errors.CheckpointError as exc:
            raise CheckpointError(exc.value) from None
        except (ValueError, TypeError):
            raise CheckpointError("InvalidStateException") from None


class KclpyAdapter(RecordProcessor):
    """A streamworker RecordProcessor driving a kclpy processor."""

    def __init__(self, delegate: Any) -> None:
        self.delegate = delegate
        self._p = as_v3(delegate)

    def initialize(self, initialization_input: InitializationInput) -> None:
        esn = initialization_input.extended_sequence_number
        self._p.initialize(messages.InitializeInput({
            "action": "initialize", "shardId": initialization_input.shard_id,
            "sequenceNumber": esn.sequence_number, "subSequenceNumber": esn.sub_sequence_number}))

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        pri = messages.ProcessRecordsInput({
            "action": "processRecords", "millisBehindLatest": process_records_input.millis_behind_latest,
            "records": [record_json(r) for r in process_records_input.records]})
        pri.checkpointer = InProcessCheckpointer(process_records_input.checkpointer)
        self._p.process_records(pri)

    def lease_lost(self, lease_lost_input: LeaseLostInput) -> None:
        self._p.lease_lost(messages.LeaseLostInput({"action": "leaseLost"}))

    def shard_ended(self, shard_ended_input: ShardEndedInput) -> None:
        sei = messages.ShardEndedInput({"action": "shardEnded"})
        sei.checkpointer = InProcessCheckpointer(shard_ended_input.checkpointer)
        self._p.shard_ended(sei)

    def shutdown_requested(self, shutdown_requested_input: ShutdownRequestedInput) -> None:
        sri = messages.ShutdownRequestedInput({"action": "shutdownRequested"})
        sri.checkpointer = InProcessCheckpointer(shutdown_requested_input.checkpointer)
        self._p.shutdown_requested(sri)


def is_kclpy_processor(cls: Any) -> bool:
    """A class written against amazon-kclpy's interface (it carries kclpy's ``version``)."""
    return isinstance(cls, type) and not issubclass(cls, RecordProcessor) and \
        getattr(cls, "version", None) in (1, 2, 3) and callable(getattr(cls, "process_records", None))
