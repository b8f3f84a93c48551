"""A no-op amazon-kclpy (v3) MultiLang child for benchmarks/vs_kcl.py: one line per batch to
$BATCH_LOG, a checkpoint per batch. Uses amazon_kclpy when importable, else streamworker.kclpy."""

import json
import os

try:
    from amazon_kclpy import kcl
    from amazon_kclpy.v3 import processor
except ImportError:
    from streamworker.kclpy import kcl
    from streamworker.kclpy.v3 import processor


class NoopProcessor(processor.RecordProcessorBase):
    def initialize(self, initialize_input):
        self.shard = initialize_input.shard_id
        self.out = open(os.environ["BATCH_LOG"], "a", buffering=1)

    def process_records(self, process_records_input):
        records = process_records_input.records
        if records:
            self.out.write(json.dumps({"ev": "batch", "shard": self.shard, "n": len(records),
                                       "first": records[0].sequence_number,
                                       "seq": records[-1].sequence_number}) + "\n")
            process_records_input.checkpointer.checkpoint()

    def lease_lost(self, lease_lost_input):
        pass

    def shard_ended(self, shard_ended_input):
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input):
        shutdown_requested_input.checkpointer.checkpoint()


if __name__ == "__main__":
    kcl.KCLProcess(NoopProcessor()).run()
