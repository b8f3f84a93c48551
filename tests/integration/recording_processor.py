"""A processor for the integration tests: appends what it sees to RECORD_LOG as JSON lines.

While the file named by HOLD_FILE exists it pauses inside process_records (after recording the
batch, before checkpointing), so a test can freeze a worker mid-batch."""

import json
import os
import sys
import time

from streamworker import LeaseLostError, RecordProcessor


class RecordingProcessor(RecordProcessor):
    def __init__(self):
        self.log = open(os.environ["RECORD_LOG"], "a", buffering=1)
        self.worker = os.environ.get("WORKER_NAME", str(os.getpid()))
        self.hold = os.environ.get("HOLD_FILE")
        self.shard = None

    def _event(self, ev, **kw):
        self.log.write(json.dumps({"ev": ev, "w": self.worker, "shard": self.shard, "t": time.time(), **kw}) + "\n")

    def initialize(self, i):
        self.shard = i.shard_id
        self._event("init", checkpoint=str(i.extended_sequence_number))

    def process_records(self, p):
        if os.environ.get("FAIL_RECORDS") and p.records:
            raise RuntimeError("poison batch")
        for r in p.records:
            self._event("rec", seq=r.sequence_number, sub=r.sub_sequence_number, key=r.partition_key,
                        data=r.data.decode())
        if self.hold and os.path.exists(self.hold) and p.records:
            self._event("holding")
            while os.path.exists(self.hold):
                time.sleep(0.02)
        try:
            p.checkpointer.checkpoint()
            if p.records:
                self._event("checkpointed", seq=p.records[-1].sequence_number)
        except LeaseLostError as exc:
            self._event("checkpoint_refused", error=str(exc))
            print(f"checkpoint refused: {exc}", file=sys.stderr)

    def lease_lost(self, i):
        self._event("lease_lost")

    def shard_ended(self, i):
        i.checkpointer.checkpoint()
        self._event("shard_ended")

    def shutdown_requested(self, i):
        i.checkpointer.checkpoint()
        self._event("shutdown_requested")
