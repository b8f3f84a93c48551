"""Aggregate metric records (``{"host", "metric", "value"}`` JSON, keyed by metric name) per shard.

Run it:  streamworker run examples/metrics_processor.py:MetricsProcessor \
             --stream metrics-stream --application-name metrics-app --initial-position TRIM_HORIZON

Two habits worth copying: log through ``initialization_input.log`` (bound to the shard; lines from
many shard threads come out whole), and fold a batch into the totals only once all of it is
read: a batch whose ``process_records`` raises is delivered again (``processor_retries``), and
state changed before the exception would count its records twice.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

from streamworker import (
    InitializationInput,
    ProcessRecordsInput,
    RecordProcessor,
    ShardEndedInput,
    ShutdownRequestedInput,
)


class MetricsProcessor(RecordProcessor):
    CHECKPOINT_EVERY = 5.0  # seconds: fewer lease-table writes than once per batch

    def initialize(self, initialization_input: InitializationInput) -> None:
        self.log: Any = initialization_input.log  # carries shard_id, worker_id and stream
        self.count: dict[str, int] = defaultdict(int)
        self.total: dict[str, float] = defaultdict(float)
        self.last_checkpoint = time.monotonic()
        self.log.info("starting", after=str(initialization_input.extended_sequence_number))

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        count: dict[str, int] = defaultdict(int)
        total: dict[str, float] = defaultdict(float)
        for record in process_records_input.records:
            try:
                m = json.loads(record.data)
                count[m["metric"]] += 1
                total[m["metric"]] += float(m["value"])
            except (ValueError, KeyError, TypeError):
                self.log.warning("skipping a malformed metric", seq=record.sequence_number)
        for metric, n in count.items():  # the whole batch at once: a redelivered batch cannot count twice
            self.count[metric] += n
            self.total[metric] += total[metric]
        if time.monotonic() - self.last_checkpoint >= self.CHECKPOINT_EVERY:
            self.report()
            process_records_input.checkpointer.checkpoint()
            self.last_checkpoint = time.monotonic()

    def report(self) -> None:
        averages = {m: round(self.total[m] / n, 2) for m, n in self.count.items()}
        self.log.info("metric averages", averages=averages)

    def shard_ended(self, shard_ended_input: ShardEndedInput) -> None:
        self.report()
        shard_ended_input.checkpointer.checkpoint()  # writes SHARD_END: the child shards may start

    def shutdown_requested(self, shutdown_requested_input: ShutdownRequestedInput) -> None:
        self.report()
        shutdown_requested_input.checkpointer.checkpoint()
