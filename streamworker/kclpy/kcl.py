"""amazon-kclpy's ``kcl`` module: the v1 processor base, the checkpointer and ``KCLProcess``,
which speaks the MultiLang protocol on stdin/stdout (so the app also runs as a child of
``streamworker run --properties``, or of KCL's own MultiLangDaemon)."""

from __future__ import annotations

import json
import sys
import traceback
from typing import IO, Any

from streamworker.kclpy import messages
from streamworker.kclpy.checkpoint_error import CheckpointError
from streamworker.kclpy.dispatch import message_decode
from streamworker.kclpy.v2.processor import V1toV2Processor
from streamworker.kclpy.v3.processor import V2toV3Processor

__all__ = ["CheckpointError", "Checkpointer", "KCLProcess", "RecordProcessorBase"]


class _IO:
    def __init__(self, input_file: IO[str], output_file: IO[str], error_file: IO[str]) -> None:
        self.input_file, self.output_file, self.error_file = input_file, output_file, error_file

    def write(self, message: dict[str, Any]) -> None:
        # Blank lines around the JSON keep it whole if the app also prints to stdout.
        self.output_file.write(f"\n{json.dumps(message)}\n")
        self.output_file.flush()

    def read(self) -> Any:
        while True:
            line = self.input_file.readline()
            if not line:
                return None
            if line.strip():
                return json.loads(line, object_hook=message_decode)


class Checkpointer:
    """Asks the daemon to checkpoint and raises CheckpointError with the daemon's error."""

    def __init__(self, io: _IO) -> None:
        self._io = io

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        self._io.write({"action": "checkpoint", "sequenceNumber": sequence_number,
                        "subSequenceNumber": sub_sequence_number})
        reply = self._io.read()
        if not isinstance(reply, messages.CheckpointInput):
            raise CheckpointError("InvalidStateException")
        if reply.error is not None:
            raise CheckpointError(reply.error)


class RecordProcessorBase:
    """v1: ``initialize(shard_id)``, ``process_records(records, checkpointer)`` with record
    dicts, ``shutdown(checkpointer, reason)`` with TERMINATE or ZOMBIE."""

    version = 1

    def initialize(self, shard_id: str) -> None:
        raise NotImplementedError

    def process_records(self, records: list[dict[str, Any]], checkpointer: Any) -> None:
        raise NotImplementedError

    def shutdown(self, checkpointer: Any, reason: str) -> None:
        raise NotImplementedError

    def shutdown_requested(self, checkpointer: Any) -> None:
        """Optional: checkpoint before a requested shutdown."""


def as_v3(processor: Any) -> Any:
    """Any kclpy processor (v1, v2 or v3) behind the v3 interface."""
    version = getattr(processor, "version", 1)
    if version == 3:
        return processor
    if version == 2:
        return V2toV3Processor(processor)
    return V2toV3Processor(V1toV2Processor(processor))


class KCLProcess:
    """The child side of the MultiLang protocol: read an action, dispatch it, report status."""

    def __init__(self, record_processor: Any, input_file: IO[str] = sys.stdin, output_file: IO[str] = sys.stdout,
                 error_file: IO[str] = sys.stderr) -> None:
        self._io = _IO(input_file, output_file, error_file)
        self.checkpointer = Checkpointer(self._io)
        self.processor = as_v3(record_processor)

    def run(self) -> None:
        while True:
            action = self._io.read()
            if action is None:
                return
            try:
                action.dispatch(self.checkpointer, self.processor)
            except SystemExit:
                raise
            except Exception as exc:  # as kclpy: report, then carry on
                self._io.error_file.write(f"Caught exception from action dispatch: {exc}\n")
                traceback.print_exc(file=self._io.error_file)
                self._io.error_file.flush()
            self._io.write({"action": "status", "responseFor": action.action})
