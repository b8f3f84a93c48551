"""``--cloudwatch-metrics``: KCL's metrics (``streamworker.ops.kcl_metrics``) sent to CloudWatch every
``metrics_buffer_time`` with PutMetricData, as KCL's publisher does, so a team's dashboards and
alarms on KCL's names keep working. Before each send, ``sample`` adds the points that are read
rather than counted (leases held, MillisBehindLatest per shard).

A send that fails (no ``cloudwatch:PutMetricData`` permission, throttling, an endpoint that is
down) drops that batch, as KCL does, and is logged (at most once a minute, with the count) and
counted in ``streamworker_cloudwatch_datums_dropped_total``; processing is never held up by it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from streamworker.ops.kcl_metrics import KclMetrics

#: Datums per PutMetricData call: CloudWatch's limit (KCL sends 20, its limit when KCL was
#: written; a thousand shards' metrics then took hundreds of calls every 10 s, at $0.01 per 1,000).
BATCH = 1000
#: A failing send is logged at most this often.
LOG_EVERY = 60.0


class CloudWatchPublisher:
    """A thread that drains ``metrics`` into namespace ``namespace`` every ``interval`` seconds."""

    def __init__(self, client: Any, namespace: str, metrics: KclMetrics, *, interval: float,
                 sample: Callable[[KclMetrics], None], log: Any, registry: CollectorRegistry | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client, self.namespace, self.metrics, self.interval = client, namespace, metrics, interval
        self._sample, self._log, self._monotonic = sample, log, monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloudwatch-metrics", daemon=True)
        self._last_logged: float | None = None
        self._unlogged = 0
        #: Datums sent and dropped since the start.
        self.sent = 0
        self.dropped = 0
        self._dropped_counter = None if registry is None else Counter(
            "streamworker_cloudwatch_datums_dropped", "KCL metric datums CloudWatch did not take (the batch was "
            "dropped, as KCL does)", registry=registry)

    def start(self) -> CloudWatchPublisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop, after one last send (a graceful stop's final figures reach CloudWatch)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval + 30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()
        self.flush()

    def flush(self) -> None:
        """Sample, drain and send what the buffer holds."""
        try:
            self._sample(self.metrics)
        except Exception as exc:  # noqa: BLE001 - a failing sample must not stop the counted metrics
            self._log.warning("sampling KCL metrics failed", error=repr(exc))
        data = self.metrics.drain()
        for start in range(0, len(data), BATCH):
            chunk = data[start:start + BATCH]
            try:
                self.client.put_metric_data(Namespace=self.namespace, MetricData=chunk)
                self.sent += len(chunk)
            except Exception as exc:  # noqa: BLE001 - dropped and reported, as KCL does
                self._dropped(len(chunk), exc)

    def _dropped(self, n: int, exc: BaseException) -> None:
        self.dropped += n
        if self._dropped_counter is not None:
            self._dropped_counter.inc(n)
        self._unlogged += n
        now = self._monotonic()
        if self._last_logged is None or now - self._last_logged >= LOG_EVERY:
            self._log.warning("CloudWatch did not take KCL metrics; dropped", datums=self._unlogged,
                              namespace=self.namespace, error=str(exc)[:300])
            self._last_logged, self._unlogged = now, 0
