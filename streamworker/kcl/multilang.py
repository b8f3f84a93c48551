"""The KCL MultiLang protocol, natively: streamworker plays the MultiLangDaemon.

Each shard gets one child process (``executableName``) spoken to in JSON lines on its stdin and
stdout: initialize, processRecords (base64 data), checkpoint and its reply, leaseLost,
shardEnded, shutdownRequested; each answered by ``{"action": "status", "responseFor": ...}``.
Lines on the child's stdout that are not JSON (a ``print`` in the app) are logged, as is its
stderr. An amazon-kclpy app, or one in any other MultiLang language, runs unchanged.

Protocol ``v1`` is what KCL 1.x's MultiLangDaemon speaks and amazon-kclpy 1.x understands: a lost
lease and a shard end are both ``{"action": "shutdown", "reason": "ZOMBIE" | "TERMINATE"}``.
amazon-kclpy 2.x and later (``v2``, the default) refuse that message, and 1.x refuses theirs.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Literal

import structlog

from streamworker.checkpoint.checkpointer import Checkpointer
from streamworker.errors import CheckpointError, StreamworkerError
from streamworker.processor import (
    InitializationInput,
    LeaseLostInput,
    ProcessRecordsInput,
    RecordProcessor,
    ShardEndedInput,
    ShutdownRequestedInput,
)
from streamworker.records import Record

log = structlog.get_logger("streamworker.kcl.multilang")


class ChildProcessError(StreamworkerError):
    """The MultiLang child exited or broke the protocol."""


def record_json(r: Record) -> dict[str, Any]:
    ts = r.approximate_arrival_timestamp
    return {
        "action": "record",
        "data": base64.b64encode(r.data).decode("ascii"),
        "partitionKey": r.partition_key,
        "sequenceNumber": r.sequence_number,
        "subSequenceNumber": r.sub_sequence_number,
        "approximateArrivalTimestamp": int(ts.timestamp() * 1000) if ts is not None else 0,
    }


class MultiLangProcessor(RecordProcessor):
    """One shard's MultiLang child. A child that dies is restarted (and initialized again from
    the current checkpoint) before the batch is delivered again."""

    def __init__(self, command: Sequence[str], workdir: str | Path | None = None,
                 response_timeout: float | None = None, protocol: Literal["v1", "v2"] = "v2") -> None:
        self.command = list(command)
        self.workdir = str(workdir) if workdir else None
        self.response_timeout = response_timeout
        self.protocol = protocol
        #: the child's last stderr lines, to say why it exited
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._relay: threading.Thread | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._init: InitializationInput | None = None
        self._checkpointer: Checkpointer | None = None
        self._log = log

    # -- the child ---------------------------------------------------------------------------

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(
            self.command, cwd=self.workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1, env=dict(os.environ))
        self._relay = threading.Thread(target=self._relay_stderr, args=(self._proc.stderr,), daemon=True)
        self._relay.start()

    def _relay_stderr(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        for line in stream:
            if line.strip():
                self._stderr_tail.append(line)
                self._log.info("child stderr", line=line.rstrip("\n"))

    def _send(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None or proc.stdin is None:
            raise ChildProcessError(f"MultiLang child {self.command[-1]} is not running")
        try:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise ChildProcessError(f"MultiLang child {self.command[-1]} closed its input: {exc}") from None

    def _read(self) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            if not line:
                code = proc.wait()
                raise ChildProcessError(f"MultiLang child {self.command[-1]} exited with status {code}"
                                        + self._exit_hint())
            text = line.strip()
            if not text:
                continue
            try:
                message = json.loads(text)
            except ValueError:
                self._log.info("child stdout", line=text)  # a print() in the app, not protocol
                continue
            if isinstance(message, dict) and "action" in message:
                return message
            self._log.info("child stdout", line=text)

    def _exit_hint(self) -> str:
        if self._relay is not None:
            self._relay.join(2)  # the child has exited: its stderr ends at once
        if not any("couldn't be understood" in line for line in list(self._stderr_tail)):
            return ""
        other = "v1" if self.protocol == "v2" else "v2"
        return (f": it did not understand a MultiLang {self.protocol} message (amazon-kclpy 1.x speaks v1, "
                f"2.x and later v2): set multilang_protocol = {other}")

    def _exchange(self, message: dict[str, Any], checkpointer: Checkpointer | None) -> None:
        """Send an action and serve the child's checkpoint requests until it reports status."""
        action = message["action"]
        self._send(message)
        while True:
            reply = self._read()
            kind = reply.get("action")
            if kind == "status":
                if reply.get("responseFor") != action:
                    raise ChildProcessError(f"child answered {reply.get('responseFor')!r} to {action!r}")
                return
            if kind == "checkpoint":
                self._send(self._checkpoint(reply, checkpointer))
                continue
            raise ChildProcessError(f"child sent an unexpected action {kind!r} while handling {action!r}")

    def _checkpoint(self, request: dict[str, Any], checkpointer: Checkpointer | None) -> dict[str, Any]:
        seq = request.get("sequenceNumber")
        sub = request.get("subSequenceNumber")
        response: dict[str, Any] = {"action": "checkpoint", "sequenceNumber": seq, "subSequenceNumber": sub}
        if checkpointer is None:
            response["error"] = "ShutdownException"  # lease lost: no checkpointing
            return response
        try:
            if seq is None:
                checkpointer.checkpoint()
            else:
                checkpointer.checkpoint(str(seq), int(sub) if sub is not None else None)
            done = checkpointer.last_checkpoint
            response["sequenceNumber"] = done.sequence_number
            response["subSequenceNumber"] = done.sub_sequence_number
        except CheckpointError as exc:
            response["error"] = exc.value
        except (ValueError, TypeError):
            response["error"] = "InvalidStateException"
        return response

    def _close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(5)

    def _ensure_child(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        if self._proc is not None:
            self._log.warning("MultiLang child exited; starting it again", status=self._proc.returncode)
        self._spawn()
        assert self._init is not None
        checkpoint = self._checkpointer.last_checkpoint if self._checkpointer else self._init.extended_sequence_number
        self._exchange({"action": "initialize", "shardId": self._init.shard_id,
                        "sequenceNumber": checkpoint.sequence_number,
                        "subSequenceNumber": checkpoint.sub_sequence_number}, None)

    # -- RecordProcessor ---------------------------------------------------------------------

    def initialize(self, initialization_input: InitializationInput) -> None:
        self._init = initialization_input
        self._log = log.bind(shard_id=initialization_input.shard_id, child=self.command[-1])
        self._ensure_child()

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        self._checkpointer = process_records_input.checkpointer
        self._ensure_child()
        self._exchange({"action": "processRecords",
                        "millisBehindLatest": process_records_input.millis_behind_latest,
                        "records": [record_json(r) for r in process_records_input.records]},
                       process_records_input.checkpointer)

    def lease_lost(self, lease_lost_input: LeaseLostInput) -> None:
        try:
            if self._proc is not None and self._proc.poll() is None:
                self._exchange({"action": "shutdown", "reason": "ZOMBIE"} if self.protocol == "v1"
                               else {"action": "leaseLost"}, None)
        finally:
            self._close()

    def shard_ended(self, shard_ended_input: ShardEndedInput) -> None:
        self._checkpointer = shard_ended_input.checkpointer
        try:
            self._ensure_child()
            self._exchange({"action": "shutdown", "reason": "TERMINATE"} if self.protocol == "v1"
                           else {"action": "shardEnded"}, shard_ended_input.checkpointer)
        finally:
            self._close()

    def shutdown_requested(self, shutdown_requested_input: ShutdownRequestedInput) -> None:
        try:
            if self._proc is not None and self._proc.poll() is None:
                self._exchange({"action": "shutdownRequested"}, shutdown_requested_input.checkpointer)
        finally:
            self._close()
