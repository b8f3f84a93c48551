"""What /metrics serves: the worker's counters (``streamworker.consumer.meters``) and gauges read
from the worker when scraped (leases held, lag, halted shards, read retries)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from streamworker.consumer.meters import WorkerMetrics
    from streamworker.ops.view import WorkerView


def attach(metrics: WorkerMetrics, worker: WorkerView) -> None:
    """Add the gauges read from ``worker`` to the registry /metrics serves."""
    metrics.registry.register(_WorkerCollector(worker))


def render(registry: Collector) -> bytes:
    """``registry`` in Prometheus' text format, without the ``_created`` series.

    prometheus_client adds a ``<name>_created`` gauge beside every counter and histogram (per
    label set): the Prometheus text format has no use for it, KCL exports none, and at a thousand
    shards it was half of /metrics (10,064 lines, 821 kB, 0.10 s of the GIL a scrape, against
    5,048, 360 kB and 0.07 s without). Turning it off in prometheus_client is process-global, so
    it is dropped here."""
    return generate_latest(_WithoutCreated(registry))


class _WithoutCreated(Collector):
    def __init__(self, inner: Collector) -> None:
        self.inner = inner

    def collect(self) -> Iterator[Metric]:
        for family in self.inner.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield kept


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
                                    ("cycle_failures", "cycle_failures", "Lease renew or take cycles that failed"),
                                    ("take_cycles", "take_cycles", "Lease take cycles completed")):
                family = CounterMetricFamily(f"streamworker_leases_{name}", doc)
                family.add_metric([], getattr(stats, attr))  # a field of CoordinatorStats
                yield family
            delay = GaugeMetricFamily("streamworker_lease_renewal_delay_seconds",
                                      "How long past its due time the last renew cycle's latest renewal completed")
            delay.add_metric([], stats.renewal_delay)
            yield delay
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
