"""Hang detection: a processor call running past ``processor_timeout`` is reported once, with
the stack of the thread it runs on: a shard's ``process_records`` (and the other calls), and in
per-key mode each lane's ``process_record``."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from streamworker.clock import Clock

if TYPE_CHECKING:
    from streamworker.consumer.meters import WorkerMetrics
    from streamworker.consumer.shard_consumer import ShardConsumer


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
            if call is not None and now - call[1] >= self.limit and c.hang_reported != call:
                c.hang_reported = call
                self._report(c, call[0], now - call[1], c.thread_ident)
            lanes = c.lane_calls()
            running = {(lane.key, lane.started) for lane in lanes}
            c.lane_hangs_reported &= running  # forget calls that ended
            for lane in lanes:
                if now - lane.started >= self.limit and (lane.key, lane.started) not in c.lane_hangs_reported:
                    c.lane_hangs_reported.add((lane.key, lane.started))
                    self._report(c, "process_record", now - lane.started, lane.thread_ident,
                                 key=lane.key, sequence_number=lane.sequence_number)

    def hung(self, consumers: Iterable[ShardConsumer]) -> list[str]:
        """The processor calls running past the limit now (for /healthz), one phrase each."""
        if self.limit is None:
            return []
        now = self._clock.monotonic()
        out = []
        for c in consumers:
            call = c.current_call
            if call is not None and now - call[1] >= self.limit:
                out.append(f"{c.label}: {call[0]} running for {now - call[1]:.0f} s")
            out.extend(f"{c.label}: process_record of key {lane.key!r} running for {now - lane.started:.0f} s"
                       for lane in c.lane_calls() if now - lane.started >= self.limit)
        return out

    def _report(self, c: ShardConsumer, call: str, running_for: float, thread: int | None, **about: str) -> None:
        frame = sys._current_frames().get(thread or -1)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"
        self._metrics.hung.labels(c.label).inc()
        self._log.error("processor call is taking longer than processor_timeout", shard_id=c.shard_id,
                        call=call, running_for=round(running_for, 1), stack=stack, **about)
