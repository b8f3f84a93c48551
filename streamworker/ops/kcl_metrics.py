"""KCL's CloudWatch metrics, as KCL aggregates them: each data point is added under KCL's metric
name and dimensions, points with the same name, dimensions and unit are folded into one
statistic set (SampleCount, Sum, Minimum, Maximum) until the buffer is drained, which is what
KCL's ``CloudWatchPublisherRunnable`` sends every ``metricsBufferTimeMillis``.

``metricsLevel`` drops points above it (NONE < SUMMARY < DETAILED); ``metricsEnabledDimensions``
keeps only the named dimensions besides ``Operation`` (always kept; ``ALL``: every one); at most
``metricsMaxQueueSize`` distinct series are held between drains (KCL's queue bound), the rest
dropped and counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from streamworker.consumer.meters import BatchFigures
from streamworker.leases.keys import stream_identifier_of

if TYPE_CHECKING:
    from streamworker.leases.lease import Lease
    from streamworker.ops.view import WorkerView

#: KCL's MetricsLevel, by rank.
LEVELS = {"NONE": 0, "SUMMARY": 1, "DETAILED": 2}
#: KCL's dimension names (MetricsUtil).
OPERATION, SHARD_ID, STREAM_ID, WORKER_ID = "Operation", "ShardId", "StreamId", "WorkerIdentifier"
#: KCL's MultiLangDaemon default for metricsEnabledDimensions (KinesisClientLibConfiguration).
DEFAULT_DIMENSIONS = (OPERATION, SHARD_ID)

# KCL's operations and metric names, where streamworker emits them
PROCESS_TASK, APPLICATION_TRACKER = "ProcessTask", "ApplicationTracker"
RENEW_ALL_LEASES, TAKE_LEASES = "RenewAllLeases", "TakeLeases"


@dataclass
class _Stat:
    count: float
    total: float
    low: float
    high: float


class KclMetrics:
    """A thread-safe buffer of KCL-named metric points (``add``), drained as CloudWatch
    ``MetricData`` entries (``drain``)."""

    def __init__(self, *, level: str = "DETAILED", dimensions: Iterable[str] = DEFAULT_DIMENSIONS,
                 max_series: int = 10_000, worker_id: str = "") -> None:
        if level.upper() not in LEVELS:
            raise ValueError(f"metrics level {level!r}: one of {', '.join(LEVELS)}")
        self.level = LEVELS[level.upper()]
        wanted = set(dimensions)
        self.all_dimensions = "ALL" in wanted
        self.dimensions = wanted | {OPERATION}
        self.max_series = max_series
        self.worker_id = worker_id
        #: Points dropped because ``max_series`` series were already held.
        self.dropped = 0
        self._series: dict[tuple[str, tuple[tuple[str, str], ...], str], _Stat] = {}
        self._lock = threading.Lock()

    def enabled(self, level: str) -> bool:
        return self.level > 0 and LEVELS[level] <= self.level

    def add(self, operation: str, name: str, value: float, unit: str, level: str, *, shard_id: str | None = None,
            stream: str | None = None) -> None:
        """One data point of ``name`` (KCL's) under ``operation``, at KCL's ``level`` for it."""
        if not self.enabled(level):
            return
        dims = [(OPERATION, operation)]
        for dim, dim_value in ((SHARD_ID, shard_id), (STREAM_ID, stream), (WORKER_ID, self.worker_id or None)):
            if dim_value is not None and (self.all_dimensions or dim in self.dimensions):
                dims.append((dim, dim_value))
        key = (name, tuple(sorted(dims)), unit)
        with self._lock:
            stat = self._series.get(key)
            if stat is None:
                if len(self._series) >= self.max_series:
                    self.dropped += 1
                    return
                self._series[key] = _Stat(1, value, value, value)
                return
            stat.count += 1
            stat.total += value
            stat.low = min(stat.low, value)
            stat.high = max(stat.high, value)

    def add_success_and_time(self, operation: str, success: bool, millis: float, level: str, *,
                             prefix: str = "", shard_id: str | None = None, stream: str | None = None) -> None:
        """KCL's ``addSuccessAndLatency``: ``[prefix.]Success`` (1 or 0) and ``[prefix.]Time``."""
        dot = f"{prefix}." if prefix else ""
        self.add(operation, f"{dot}Success", 1.0 if success else 0.0, "Count", level, shard_id=shard_id, stream=stream)
        self.add(operation, f"{dot}Time", millis, "Milliseconds", level, shard_id=shard_id, stream=stream)

    def drain(self, timestamp: datetime | None = None) -> list[dict[str, Any]]:
        """Everything added since the last drain, as PutMetricData ``MetricData`` entries."""
        with self._lock:
            series, self._series = self._series, {}
        when = timestamp or datetime.now(timezone.utc)
        return [{"MetricName": name, "Dimensions": [{"Name": d, "Value": v} for d, v in dims], "Unit": unit,
                 "Timestamp": when,
                 "StatisticValues": {"SampleCount": s.count, "Sum": s.total, "Minimum": s.low, "Maximum": s.high}}
                for (name, dims, unit), s in series.items()]


def process_task(kcl: KclMetrics) -> Any:
    """A ``WorkerMetrics.on_batch`` listener: KCL's ProcessTask metrics for each batch processed
    (levels as KCL 2.x/3.x emit them), ``Success`` 0 for a processor call that raised."""

    def on_batch(b: BatchFigures) -> None:
        where: dict[str, Any] = {"shard_id": b.shard_id, "stream": b.stream_id}
        if not b.ok:
            kcl.add(PROCESS_TASK, "Success", 0.0, "Count", "SUMMARY", **where)
            return
        millis = b.seconds * 1000.0
        kcl.add(PROCESS_TASK, "RecordsProcessed", b.records, "Count", "SUMMARY", **where)
        kcl.add(PROCESS_TASK, "DataBytesProcessed", b.size, "Bytes", "SUMMARY", **where)
        kcl.add(PROCESS_TASK, "RecordProcessor.processRecords.Time", millis, "Milliseconds", "SUMMARY", **where)
        kcl.add_success_and_time(PROCESS_TASK, True, millis, "SUMMARY", **where)

    return on_batch


class WorkerSampler:
    """The KCL metrics that are read rather than counted, once per send: leases held, taken and
    lost (KCL's RenewAllLeases and TakeLeases cycles), workers and leases in the take cycle's
    last scan, and MillisBehindLatest per shard and for the application (KCL's ProcessTask and
    ApplicationTracker)."""

    def __init__(self, worker: WorkerView, recent_leases: Callable[[], list[Lease] | None]) -> None:
        self.worker, self.recent_leases = worker, recent_leases
        self._marks = (0, 0)  # leases taken and lost at the last sample

    def __call__(self, kcl: KclMetrics) -> None:
        w = self.worker
        kcl.add(RENEW_ALL_LEASES, "CurrentLeases", w.held_count(), "Count", "SUMMARY")
        stats = w.lease_stats()
        if stats is not None:
            taken, lost = self._marks
            self._marks = (stats.taken, stats.lost)
            kcl.add(RENEW_ALL_LEASES, "LostLeases", stats.lost - lost, "Count", "SUMMARY")
            kcl.add(TAKE_LEASES, "TakenLeases", stats.taken - taken, "Count", "SUMMARY")
        table = self.recent_leases()
        if table is not None:
            kcl.add(TAKE_LEASES, "NumWorkers", len({le.lease_owner for le in table if le.lease_owner}), "Count",
                    "SUMMARY")
            kcl.add(TAKE_LEASES, "TotalLeases", len(table), "Count", "DETAILED")
        for c in w.consumers():
            behind = c.progress.millis_behind_latest
            if behind is not None:
                kcl.add(PROCESS_TASK, "MillisBehindLatest", behind, "Milliseconds", "SUMMARY",
                        shard_id=c.shard_id, stream=stream_identifier_of(c.lease.lease_key))
                kcl.add(APPLICATION_TRACKER, "MillisBehindLatest", behind, "Milliseconds", "SUMMARY")
