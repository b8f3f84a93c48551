"""Injectable time, so lease expiry and backoff are tested without sleeping."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences are meaningful."""

    def sleep(self, seconds: float, until: threading.Event | None = None) -> bool:
        """Wait ``seconds`` or until ``until`` is set; return True if it was set."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (records' arrival times are on this clock)."""


class SystemClock:
    """The real monotonic clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float, until: threading.Event | None = None) -> bool:
        if until is None:
            time.sleep(max(0.0, seconds))
            return False
        return until.wait(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told to; ``sleep`` advances it."""

    def __init__(self, start: float = 1000.0, wall: float = 1_767_225_600.0) -> None:
        self._now = start
        self._wall_offset = wall - start  # wall time moves with the fake monotonic clock
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now + self._wall_offset

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float, until: threading.Event | None = None) -> bool:
        if until is not None and until.is_set():
            return True
        self.advance(max(0.0, seconds))
        return until.is_set() if until is not None else False
