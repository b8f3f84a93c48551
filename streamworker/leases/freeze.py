"""Notices that the whole process stood still (SIGSTOP, a stalled VM, a suspended container).

A thread ticks a few times a second; a tick that comes far later than asked means every thread
was frozen. A coordinator whose ownership is kept alive by the process itself (the Kafka group's
heartbeats) may have lost it during the freeze without being told yet: ``wait_until_settled``
holds the caller until the process has been running again for ``settle`` seconds (time for the
group protocol to report a loss), so a frozen worker does not start a new batch on a partition
that has meanwhile moved to another worker.
"""

from __future__ import annotations

import threading
import time

import structlog

log = structlog.get_logger("streamworker.leases.freeze")

TICK = 0.2


class FreezeDetector:
    def __init__(self, threshold: float, settle: float, name: str = "freeze-detector") -> None:
        self.threshold = threshold
        self.settle = settle
        self._tick = time.monotonic()
        self._woke_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        #: Freezes seen (for tests and metrics).
        self.freezes = 0

    def start(self) -> FreezeDetector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            now = time.monotonic()
            gap = now - self._tick
            self._tick = now
            if gap > self.threshold:
                self._woke_at = now
                self.freezes += 1
                log.warning("the process stood still; new batches wait until the group has had time to "
                            "report a lost assignment", frozen_for=round(gap, 1), settle=self.settle)

    def unsettled(self) -> bool:
        """True right after a freeze (or while one is not yet noticed by the ticking thread)."""
        now = time.monotonic()
        if now - self._tick > self.threshold:
            return True
        return self._woke_at is not None and now - self._woke_at < self.settle

    def wait_until_settled(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.unsettled() and time.monotonic() < deadline:
            time.sleep(0.05)
