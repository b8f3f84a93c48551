"""The fleet as the status page shows it: every lease of the application with its owner, state,
checkpoint, records/s and how far behind, and the workers with their shares.

Built from the lease table by any observer (a worker's ops server, or ``streamworker status
--web`` with no worker at all), with the observing worker's own shards' live figures where it has
them. Holders write records/s and millis behind into their leases at renewal, so other workers'
shards show figures up to ~20 s old. A Kafka group worker has no table: it shows its own
partitions. Expiry is judged as the coordinators judge it: a counter still for ``failover_time``
on this observer's clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamworker.clock import Clock, SystemClock
from streamworker.leases.dynamodb.balancing import ExpiryTracker
from streamworker.leases.lease import Lease
from streamworker.ops.report import lease_rows


@dataclass(frozen=True)
class LocalShard:
    """A shard the observing worker processes, with its live figures."""

    key: str
    state: str
    records: int
    millis_behind_latest: int | None = None
    lag: int | None = None
    checkpoint: str = ""


class FleetView:
    """Builds the page's JSON document; cached for ``min_interval`` (several open pages cost one
    table scan). Safe to call from any thread."""

    def __init__(self, application: str, *, leases: Callable[[], list[Lease]] | None,
                 malformed: Callable[[], dict[str, str]] | None = None, failover_time: float = 10.0,
                 observer: str = "lease table", local: Callable[[], list[LocalShard]] | None = None,
                 clock: Clock | None = None, min_interval: float = 1.0) -> None:
        self.application, self.observer = application, observer
        self._leases, self._malformed, self._local = leases, malformed, local
        self._tracker = ExpiryTracker(failover_time)
        self.failover_time = failover_time
        self._clock = clock or SystemClock()
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._last: tuple[float, dict[str, Any]] | None = None
        self._marks: dict[str, tuple[int, float]] = {}  # local shard -> (records, when)

    def document(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock.monotonic()
            if self._last is not None and now - self._last[0] < self._min_interval:
                return self._last[1]
            doc = self._build(now)
            self._last = (now, doc)
            return doc

    def _local_rates(self, shards: list[LocalShard], now: float) -> dict[str, float | None]:
        rates: dict[str, float | None] = {}
        for s in shards:
            mark = self._marks.get(s.key)
            self._marks[s.key] = (s.records, now)
            rates[s.key] = None if mark is None or now <= mark[1] or s.records < mark[0] else \
                round((s.records - mark[0]) / (now - mark[1]), 1)
        for gone in set(self._marks) - {s.key for s in shards}:
            del self._marks[gone]
        return rates

    def _build(self, now: float) -> dict[str, Any]:
        error = None
        leases: list[Lease] = []
        if self._leases is not None:
            try:
                leases = self._leases()
            except Exception as exc:  # shown on the page; the last good figures are not invented
                error = f"cannot read the lease table: {exc}"
        expired = self._tracker.observe(leases, now)
        by_key = {le.lease_key: le for le in leases}
        rows = lease_rows(leases, expired, self._malformed() if self._malformed else None)
        local = self._local() if self._local is not None else []
        rates = self._local_rates(local, now)
        mine = {s.key: s for s in local}
        out_rows: list[dict[str, Any]] = []
        for row in rows:
            le = by_key.get(str(row["shard"]))
            s = mine.pop(str(row["shard"]), None)
            rps = rates.get(s.key) if s is not None else None
            out_rows.append({
                **row,
                "records_per_second": rps if rps is not None else (le.records_per_second if le else None),
                "millis_behind_latest": s.millis_behind_latest if s is not None and s.millis_behind_latest is not None
                else (le.millis_behind_latest if le else None),
                "lag": s.lag if s is not None else None,
                "processing_here": s.state if s is not None else None,
            })
        for s in mine.values():  # no lease table (Kafka group): this worker's partitions
            out_rows.append({"shard": s.key, "owner": self.observer, "handoff_from": None, "counter": None,
                             "checkpoint": s.checkpoint, "pending": None, "parents": [], "state": "owned",
                             "halted": None, "records_per_second": rates.get(s.key), "lag": s.lag,
                             "millis_behind_latest": s.millis_behind_latest, "processing_here": s.state})
        workers: dict[str, dict[str, Any]] = {}
        for row in out_rows:
            owner = row["owner"]
            if owner is None or row["state"] == "finished":
                continue
            w = workers.setdefault(owner, {"worker": owner, "leases": 0, "records_per_second": 0.0,
                                           "expired": True})
            w["leases"] += 1
            w["records_per_second"] = round(w["records_per_second"] + (row["records_per_second"] or 0.0), 1)
            w["expired"] = w["expired"] and row["state"] == "expired"
        return {"application": self.application, "observer": self.observer, "time": time.time(),
                "kind": "lease-table", "legend": f"expired = counter still for {self.failover_time:g} s",
                "labels": {"leases": "leases", "checkpoint": "checkpoint", "lease": "lease"},
                "failover_time": self.failover_time, "error": error,
                "leases": sorted(out_rows, key=lambda r: str(r["shard"])),
                "workers": sorted(workers.values(), key=lambda w: str(w["worker"]))}
