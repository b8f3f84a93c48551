"""Aggregate metric records (``{"host", "metric", "value"}`` JSON, keyed by metric name) per shard.

Run it:  streamworker run examples/metrics_processor.py:MetricsProcessor \
             --stream metrics-stream --application-name metrics-app --initial-position TRIM_HORIZON
"""

from __future__ import annotations

import json
import time
from collections import defaultdict

import structlog

from streamworker import (
    InitializationInput,
    ProcessRecordsInput,
    RecordProcessor,
    ShardEndedInput,
    ShutdownRequestedInput,
)

log = structlog.get_logger("metrics")


class MetricsProcessor(RecordProcessor):
    CHECKPOINT_EVERY = 5.0  # seconds: fewer lease-table writes than once per batch

    def initialize(self, initialization_input: InitializationInput) -> None:
        self.shard_id = initialization_input.shard_id
        self.count: dict[str, int] = defaultdict(int)
        self.total: dict[str, float] = defaultdict(float)
        self.last_checkpoint = time.monotonic()
        log.info("starting", shard_id=self.shard_id, after=str(initialization_input.extended_sequence_number))

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        for record in process_records_input.records:
            try:
                m = json.loads(record.data)
                self.count[m["metric"]] += 1
                self.total[m["metric"]] += float(m["value"])
            except (ValueError, KeyError, TypeError):
                log.warning("skipping a malformed metric", shard_id=self.shard_id, seq=record.sequence_number)
        if time.monotonic() - self.last_checkpoint >= self.CHECKPOINT_EVERY:
            self.report()
            process_records_input.checkpointer.checkpoint()
            self.last_checkpoint = time.monotonic()

    def report(self) -> None:
        averages = {m: round(self.total[m] / n, 2) for m, n in self.count.items()}
        log.info("metric averages", shard_id=self.shard_id, averages=averages)

    def shard_ended(self, shard_ended_input: ShardEndedInput) -> None:
        self.report()
        shard_ended_input.checkpointer.checkpoint()  # writes SHARD_END: the child shards may start

    def shutdown_requested(self, shutdown_requested_input: ShutdownRequestedInput) -> None:
        self.report()
        shutdown_requested_input.checkpointer.checkpoint()
