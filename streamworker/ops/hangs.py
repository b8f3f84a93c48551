"""Hang detection: a processor call running past ``processor_timeout`` is reported once, with
the stack of the thread it runs on."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..clock import Clock

if TYPE_CHECKING:
    from ..metrics import WorkerMetrics
    from ..shard_consumer import ShardConsumer


class HangDetector:
    """Call ``check`` periodically (the scheduler does, every tick)."""

    def __init__(self, limit: float | None, clock: Clock, metrics: WorkerMetrics, log: Any) -> None:
        self.limit, self._clock, self._metrics, self._log = limit, clock, metrics, log

    def check(self, consumers: Iterable[ShardConsumer]) -> None:
        """Report (once per call, with its stack) a processor call running past the limit.
        ``current_call`` holds the consumer's clock's time, so the same clock measures it."""
        if self.limit is None:
            return
        now = self._clock.monotonic()
        for c in consumers:
            call = c.current_call
            if call is None or now - call[1] < self.limit or c.hang_reported == call:
                continue
            c.hang_reported = call
            frame = sys._current_frames().get(c.thread_ident or -1)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"
            self._metrics.hung.labels(c.label).inc()
            self._log.error("processor call is taking longer than processor_timeout", shard_id=c.shard_id,
                            call=call[0], running_for=round(now - call[1], 1), stack=stack)
