"""A worker's metrics row as KCL 3 writes it (its WorkerMetricStatsManager and reporter), so that a
KCL 3 leader counts a streamworker worker among its live workers and weighs its load.

KCL samples each metric every second and, every 30 s, writes the period's average (rounded to 6
decimals; -1 when no sample could be taken) after the last 10 such averages, with the operating
range (the utilisation a worker should stay under: 100 %) and the time of the report. The row is
``WORKER_METRIC_STATS`` in the lease table (KCL 3.5, keyed ``leaseKey`` = the worker id), or an
item of ``<app>-WorkerMetricStats`` (KCL 3.0–3.4, keyed ``wid``). A worker with no metric (no
platform KCL recognises) reports empty maps, which KCL's leader reads as "balance by throughput"
(``WorkerMetricStats.isUsingDefaultWorkerMetric``): idle shards are then never moved.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from streamworker.leases.dynamodb.cpu import CpuMeter, CpuUnreadable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

#: KCL's defaults (WorkerUtilizationAwareAssignmentConfig).
CAPTURE_INTERVAL = 1.0
REPORT_INTERVAL = 30.0
KEPT_AVERAGES = 10
#: KCL's WorkerMetricType.CPU short name, and the operating range it gives every metric.
CPU = "C"
MAX_UTILIZATION = 100
#: WorkerMetricStats.SUPPORT_CODE in KCL 3.5 (its Features list: SINGLE_TABLE_MIGRATION).
SUPPORT_CODE = 1

Layout = Literal["lease-table", "legacy-table"]


@dataclass(frozen=True)
class WorkerMetricsRow:
    """What one report writes."""

    worker_id: str
    last_update: int  # wall-clock epoch seconds
    stats: dict[str, list[float]] = field(default_factory=dict)
    operating_range: dict[str, list[int]] = field(default_factory=dict)

    def key(self, layout: Layout) -> dict[str, Any]:
        return {"leaseKey" if layout == "lease-table" else "wid": {"S": self.worker_id}}

    def update(self, layout: Layout) -> dict[str, Any]:
        """UpdateItem arguments (beside TableName and Key) that write the row as KCL's enhanced
        client does with ``ignoreNulls``: every attribute it sets, nothing else touched."""
        values: dict[str, Any] = {
            ":lut": {"N": str(self.last_update)},
            ":sts": {"M": {k: {"L": [{"N": _number(v)} for v in vs]} for k, vs in self.stats.items()}},
            ":opr": {"M": {k: {"L": [{"N": str(v)} for v in vs]} for k, vs in self.operating_range.items()}},
            ":sup": {"N": str(SUPPORT_CODE)},
            ":slu": {"N": str(self.last_update)},
        }
        sets = ["lut = :lut", "sts = :sts", "opr = :opr", "sup = :sup", "slu = :slu"]
        if layout == "lease-table":
            values[":et"] = {"S": "WORKER_METRIC_STATS"}
            sets.append("entityType = :et")
        return {"UpdateExpression": "SET " + ", ".join(sets), "ExpressionAttributeValues": values}


def _number(v: float) -> str:
    return repr(float(v))


class WorkerMetrics:
    """The in-memory side: ``capture()`` every second, ``report()`` every 30 s."""

    def __init__(self, worker_id: str, meter: CpuMeter | None, *, keep: int = KEPT_AVERAGES,
                 wall: Callable[[], float] = time.time) -> None:
        self.worker_id = worker_id
        self._meter = meter
        self._wall = wall
        self._lock = threading.Lock()
        self._period: list[float] = []
        self._averages: deque[float] = deque(maxlen=keep)
        #: the last reason a sample could not be taken (for the worker's log and health)
        self.last_error: str | None = None

    def capture(self) -> None:
        if self._meter is None:
            return
        try:
            value = self._meter.sample()
        except CpuUnreadable as exc:
            self.last_error = str(exc)
            return
        with self._lock:
            self._period.append(value)

    def report(self) -> WorkerMetricsRow:
        """The row for this period (the period's samples are used up)."""
        now = int(self._wall())
        if self._meter is None:
            return WorkerMetricsRow(self.worker_id, now)
        with self._lock:
            period, self._period = self._period, []
            self._averages.append(round(sum(period) / len(period), 6) if period else -1.0)
            averages = list(self._averages)
        return WorkerMetricsRow(self.worker_id, now, {CPU: averages}, {CPU: [MAX_UTILIZATION]})


def write(client: DynamoDBClient, table: str, row: WorkerMetricsRow, layout: Layout) -> None:
    """Write ``row`` into ``table`` (the lease table, or KCL 3.0–3.4's metrics table)."""
    client.update_item(TableName=table, Key=row.key(layout), **row.update(layout))
