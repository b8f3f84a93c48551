"""The counters a worker's shard consumers update, in a registry of the worker's own (no
process-global state); what /metrics serves adds gauges read from the worker when scraped
(``streamworker.ops.metrics``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from streamworker.checkpoint.store import CheckpointStore, TimedStore


@dataclass(frozen=True)
class BatchFigures:
    """One processed batch (or, per key, one completed run of records), for a listener."""

    shard_id: str
    #: ``account:stream:creationEpoch`` in a multi-stream worker, else None.
    stream_id: str | None
    records: int
    size: int
    seconds: float
    ok: bool = True

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class WorkerMetrics:
    """The metrics a worker exports; ``registry`` is what /metrics serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.records = Counter("streamworker_records_processed", "Records delivered to processors and returned",
                               ["shard"], registry=r)
        self.bytes = Counter("streamworker_bytes_processed", "Payload bytes of processed records", ["shard"],
                             registry=r)
        # The latency histograms are the worker's, not a shard's: a labelled histogram is 16
        # series, and at a thousand shards two of them made /metrics 3.4 MB (40,000 lines) that
        # took 1.5-2 s of the GIL to render, starving lease renewals. Per shard: the counters.
        self.process_seconds = Histogram("streamworker_process_records_seconds", "process_records latency",
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.checkpoint_seconds = Histogram("streamworker_checkpoint_seconds", "Checkpoint write latency",
                                            buckets=_LATENCY_BUCKETS, registry=r)
        self.checkpoint_failures = Counter("streamworker_checkpoint_failures", "Checkpoints that failed",
                                           ["shard", "error"], registry=r)
        self.processor_failures = Counter("streamworker_processor_failures",
                                          "process_records calls that raised", ["shard"], registry=r)
        self.dead_lettered = Counter("streamworker_records_dead_lettered", "Records written to the dead-letter sink",
                                     ["shard"], registry=r)
        self.hung = Counter("streamworker_processor_hangs", "Processor calls that exceeded the hang timeout",
                            ["shard"], registry=r)
        #: Told of every batch processed and every processor call that raised (KCL's CloudWatch
        #: metrics listen here, ``cloudwatch_metrics``); on the shard's thread, so it must be quick.
        self.on_batch: Callable[[BatchFigures], None] | None = None


class ShardMeters:
    """One shard's children of the worker's counters (labelled once, not per batch); no-ops without metrics."""

    @staticmethod
    def checkpoint_store(inner: CheckpointStore, metrics: WorkerMetrics | None, label: str) -> CheckpointStore:
        """``inner`` timed into the worker's checkpoint metrics (as it is without metrics)."""
        if metrics is None:
            return inner
        return TimedStore(inner, metrics.checkpoint_seconds.observe, lambda kind: metrics.checkpoint_failures.labels(label, kind).inc())

    def __init__(self, metrics: WorkerMetrics | None, label: str, *, shard_id: str | None = None,
                 stream_id: str | None = None) -> None:
        self._children = None if metrics is None else (
            metrics.process_seconds, metrics.records.labels(label), metrics.bytes.labels(label))
        self._on_batch = None if metrics is None else metrics.on_batch
        self._shard_id, self._stream_id = shard_id or label, stream_id

    def processed(self, records: int, size: int, seconds: float) -> None:
        if self._children is not None:
            latency, count, nbytes = self._children
            latency.observe(seconds)
            count.inc(records)
            nbytes.inc(size)
        if self._on_batch is not None:
            self._on_batch(BatchFigures(self._shard_id, self._stream_id, records, size, seconds))

    def failed(self) -> None:
        """A processor call raised (the Prometheus side counts it in the lifecycle)."""
        if self._on_batch is not None:
            self._on_batch(BatchFigures(self._shard_id, self._stream_id, 0, 0, 0.0, ok=False))
