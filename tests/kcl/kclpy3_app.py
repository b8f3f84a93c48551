# mypy: ignore-errors
# (a MultiLang child on amazon-kclpy 3.x, which has no types; it runs on its own interpreter path)
"""AWS's amazon-kclpy 3.2.0 sample app (``samples/sample_kclpy_app.py``, on PYTHONPATH), recording.

The sample's own logic is kept (its checkpoint-with-retries, its largest-sequence tracking, its
lease_lost / shard_ended / shutdown_requested); this subclass only turns its checkpoint interval
from 30 s to every batch, keeps its per-record stderr line quiet (it has no newline: KCL would
hold it until the child exits) and records what it sees as JSON lines in $RECORD_LOG (the events
of tests/integration/recording_processor.py; $QUIET=1: one "batch" line per batch instead of a
"rec" line per record, for benchmarks).
"""

import json
import os
import time

from sample_kclpy_app import RecordProcessor as AwsSample  # noqa: I001  (from the kclpy sdist)


class Recording(AwsSample):
    def __init__(self):
        super().__init__()
        self._CHECKPOINT_FREQ_SECONDS = -1  # every batch (the sample's own knob)
        self._out = open(os.environ["RECORD_LOG"], "a", buffering=1)
        self._worker = os.environ.get("WORKER_NAME", str(os.getpid()))
        self._quiet = bool(os.environ.get("QUIET"))
        self._shard = None

    def log(self, message):
        pass

    def _event(self, ev, **kw):
        self._out.write(json.dumps({"ev": ev, "w": self._worker, "shard": self._shard, "t": time.time(), **kw}) + "\n")

    def initialize(self, initialize_input):
        self._shard = initialize_input.shard_id
        self._event("init", checkpoint=str(initialize_input.sequence_number))
        super().initialize(initialize_input)

    def process_records(self, process_records_input):
        records = process_records_input.records
        if self._quiet and records:
            self._event("batch", n=len(records), first=records[0].sequence_number, seq=records[-1].sequence_number)
        elif not self._quiet:
            for r in records:
                self._event("rec", seq=r.sequence_number, sub=r.sub_sequence_number, key=r.partition_key,
                            data=r.binary_data.decode())
        super().process_records(process_records_input)
        if records:
            self._event("checkpointed", seq=records[-1].sequence_number)

    def lease_lost(self, lease_lost_input):
        self._event("lease_lost")
        super().lease_lost(lease_lost_input)

    def shard_ended(self, shard_ended_input):
        super().shard_ended(shard_ended_input)
        self._event("shard_ended")

    def shutdown_requested(self, shutdown_requested_input):
        super().shutdown_requested(shutdown_requested_input)
        self._event("shutdown_requested")


if __name__ == "__main__":
    from amazon_kclpy import kcl

    kcl.KCLProcess(Recording()).run()
