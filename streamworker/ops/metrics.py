"""Prometheus metrics of one worker, in a registry of its own (no process-global state).

Counters and histograms are updated where things happen (the shard consumers); gauges and the
coordinator's lease counts are read from the worker when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from streamworker.checkpoint.store import CheckpointStore, TimedStore

if TYPE_CHECKING:
    from streamworker.ops.view import WorkerView

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
        self.process_seconds = Histogram("streamworker_process_records_seconds", "process_records latency",
                                         ["shard"], buckets=_LATENCY_BUCKETS, registry=r)
        self.checkpoint_seconds = Histogram("streamworker_checkpoint_seconds", "Checkpoint write latency",
                                            ["shard"], buckets=_LATENCY_BUCKETS, registry=r)
        self.checkpoint_failures = Counter("streamworker_checkpoint_failures", "Checkpoints that failed",
                                           ["shard", "error"], registry=r)
        self.processor_failures = Counter("streamworker_processor_failures",
                                          "process_records calls that raised", ["shard"], registry=r)
        self.dead_lettered = Counter("streamworker_records_dead_lettered", "Records written to the dead-letter sink",
                                     ["shard"], registry=r)
        self.hung = Counter("streamworker_processor_hangs", "Processor calls that exceeded the hang timeout",
                            ["shard"], registry=r)

    def attach(self, worker: WorkerView) -> None:
        self.registry.register(_WorkerCollector(worker))


class _WorkerCollector(Collector):
    def __init__(self, worker: WorkerView) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Any]:
        w = self.worker
        held = GaugeMetricFamily("streamworker_leases_held", "Leases (shards) this worker owns")
        held.add_metric([], w.held_count())
        yield held
        stats = w.lease_stats()
        if stats is not None:
            for name, attr, doc in (("taken", "taken", "Leases taken"), ("stolen", "stolen", "Leases stolen (handoffs)"),
                                    ("lost", "lost", "Leases lost"), ("released", "released", "Leases released"),
                                    ("renew_failures", "renew_failures", "Lease renewals that failed"),
                                    ("cycle_failures", "cycle_failures", "Lease renew or take cycles that failed")):
                family = CounterMetricFamily(f"streamworker_leases_{name}", doc)
                family.add_metric([], getattr(stats, attr))  # a field of CoordinatorStats
                yield family
        behind = GaugeMetricFamily("streamworker_millis_behind_latest", "Kinesis MillisBehindLatest", labels=["shard"])
        lag = GaugeMetricFamily("streamworker_consumer_lag", "Kafka records not yet processed", labels=["shard"])
        halted = GaugeMetricFamily("streamworker_shards_halted", "Shards stopped by the error policy")
        n_halted = 0
        for c in w.consumers():
            if c.progress.millis_behind_latest is not None:
                behind.add_metric([c.label], c.progress.millis_behind_latest)
            if c.state.value == "HALTED":
                n_halted += 1
            kafka_lag = w.kafka_lag(c)
            if kafka_lag is not None:
                lag.add_metric([c.shard_id], kafka_lag)
        halted.add_metric([], n_halted)
        yield behind
        yield lag
        yield halted
        reader = w.reader_stats()
        if reader is not None:
            for name, attr, doc in (("read_throttles", "throttles", "Reads throttled"),
                                    ("read_retries", "retries", "Reads retried"),
                                    ("expired_iterators", "expired_iterators", "Shard iterators that expired"),
                                    ("malformed_replies", "malformed_replies",
                                     "Reads whose reply was cut short, garbled or contradicted (retried)")):
                family = CounterMetricFamily(f"streamworker_{name}", doc)
                family.add_metric([], getattr(reader, attr))
                yield family


class ShardMeters:
    """One shard's children of the worker's counters (labelled once, not per batch); no-ops without metrics."""

    @staticmethod
    def checkpoint_store(inner: CheckpointStore, metrics: WorkerMetrics | None, label: str) -> CheckpointStore:
        """``inner`` timed into the worker's checkpoint metrics (as it is without metrics)."""
        if metrics is None:
            return inner
        seconds = metrics.checkpoint_seconds.labels(label)
        return TimedStore(inner, seconds.observe, lambda kind: metrics.checkpoint_failures.labels(label, kind).inc())

    def __init__(self, metrics: WorkerMetrics | None, label: str) -> None:
        self._children = None if metrics is None else (
            metrics.process_seconds.labels(label), metrics.records.labels(label), metrics.bytes.labels(label))

    def processed(self, records: int, size: int, seconds: float) -> None:
        if self._children is not None:
            latency, count, nbytes = self._children
            latency.observe(seconds)
            count.inc(records)
            nbytes.inc(size)
