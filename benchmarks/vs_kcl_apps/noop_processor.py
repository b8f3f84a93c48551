"""streamworker's native processor for benchmarks/vs_kcl.py: checkpoints every batch, as the README
shows, and appends one line per batch to $BATCH_LOG (what KclHarness -Dquiet=true does)."""

import json
import os

from streamworker import RecordProcessor


class NoopProcessor(RecordProcessor):
    def initialize(self, i):
        self.shard = i.shard_id
        self.out = open(os.environ["BATCH_LOG"], "a", buffering=1)

    def process_records(self, p):
        if p.records:
            self.out.write(json.dumps({"ev": "batch", "shard": self.shard, "n": len(p.records),
                                       "first": p.records[0].sequence_number,
                                       "seq": p.records[-1].sequence_number}) + "\n")
            p.checkpointer.checkpoint()

    def shard_ended(self, s):
        s.checkpointer.checkpoint()

    def shutdown_requested(self, s):
        s.checkpointer.checkpoint()
