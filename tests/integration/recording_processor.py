"""A processor for the integration tests: appends what it sees to RECORD_LOG as JSON lines.

While the file named by HOLD_FILE exists it pauses inside process_records (after recording the
batch, before checkpointing), so a test can freeze a worker mid-batch. With NO_CHECKPOINT=1 it
never checkpoints (the worker's checkpoint policy does). The first time it sees a record whose
data is listed in REPORT_ONCE (comma-separated) it reports it failed (RecordFailures), having
recorded only the records before it. A batch holding a record whose data is listed in POISON
raises (before recording anything), every time."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from streamworker import LeaseLostError, RecordFailures, RecordProcessor


class RecordingProcessor(RecordProcessor):
    def __init__(self) -> None:
        self.log = open(os.environ["RECORD_LOG"], "a", buffering=1)
        self.worker = os.environ.get("WORKER_NAME", str(os.getpid()))
        self.hold = os.environ.get("HOLD_FILE")
        self.shard = None
        self.checkpoints = not os.environ.get("NO_CHECKPOINT")
        self.report_once = {d for d in os.environ.get("REPORT_ONCE", "").split(",") if d}
        self.poison = {d for d in os.environ.get("POISON", "").split(",") if d}

    def _event(self, ev: Any, **kw: Any) -> None:
        self.log.write(json.dumps({"ev": ev, "w": self.worker, "shard": self.shard, "t": time.time(), **kw}) + "\n")

    def initialize(self, i: Any) -> None:
        self.shard = i.shard_id
        self._event("init", checkpoint=str(i.extended_sequence_number))

    def process_records(self, p: Any) -> None:
        if os.environ.get("FAIL_RECORDS") and p.records:
            raise RuntimeError("poison batch")
        if self.poison and any(r.data.decode() in self.poison for r in p.records):
            raise RuntimeError("a poison record")
        for r in p.records:
            if r.data.decode() in self.report_once:
                self.report_once.discard(r.data.decode())
                self._event("reported", seq=r.sequence_number, data=r.data.decode())
                raise RecordFailures([r], cause=ValueError("reported by the test"))
            self._event("rec", seq=r.sequence_number, sub=r.sub_sequence_number, key=r.partition_key,
                        data=r.data.decode(), **kafka_fields(r))
        if self.hold and os.path.exists(self.hold) and p.records:
            self._event("holding")
            while os.path.exists(self.hold):
                time.sleep(0.02)
        if not self.checkpoints:
            return
        try:
            p.checkpointer.checkpoint()
            if p.records:
                self._event("checkpointed", seq=p.records[-1].sequence_number)
        except LeaseLostError as exc:
            self._event("checkpoint_refused", error=str(exc))
            print(f"checkpoint refused: {exc}", file=sys.stderr)

    def lease_lost(self, i: Any) -> None:
        self._event("lease_lost")

    def shard_ended(self, i: Any) -> None:
        if self.checkpoints:
            i.checkpointer.checkpoint()
        self._event("shard_ended")

    def shutdown_requested(self, i: Any) -> None:
        if self.checkpoints:
            i.checkpointer.checkpoint()
        self._event("shutdown_requested")


class RecordingPerRecordProcessor(RecordingProcessor):
    """The same events, one record at a time (``process_record``: per-key lanes when the worker
    runs with ``parallelism`` > 1). streamworker checkpoints the completed records itself. It
    chooses the mode as processors did before ``PerRecordProcessor`` (by defining
    ``process_record``), so the suite keeps that way running.
    With RECORD_DELAY (seconds) each record takes that long, as an I/O call would."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self._write = threading.Lock()
        self.delay = float(os.environ.get("RECORD_DELAY", "0"))

    def _event(self, ev: Any, **kw: Any) -> None:
        with self._write:
            super()._event(ev, **kw)

    def process_record(self, r: Any) -> None:
        if r.data.decode() in self.poison:
            raise RuntimeError("a poison record")
        if self.delay:
            time.sleep(self.delay)
        self._event("rec", seq=r.sequence_number, sub=r.sub_sequence_number, key=r.partition_key,
                    data=r.data.decode(), thread=threading_name())


def kafka_fields(r: Any) -> dict[str, Any]:
    """What only a Kafka record has, when it has it: a null value (tombstone), a null key, headers."""
    if r.topic is None:
        return {}
    out: dict[str, Any] = {}
    if r.tombstone:
        out["tombstone"] = True
    if r.key is None:
        out["null_key"] = True
    if r.headers:
        out["headers"] = [[k, None if v is None else v.decode("utf-8", "replace")] for k, v in r.headers]
    return out


def threading_name() -> str:
    import threading

    return threading.current_thread().name
