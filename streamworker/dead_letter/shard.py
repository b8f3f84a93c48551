"""One shard's use of the dead-letter sink: failed batches, records past ``max_record_age``, and the
guard that halts the shard instead when too much goes there (a bad deploy must not empty a stream
into the dead-letter queue)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from streamworker.clock import Clock
from streamworker.dead_letter.sinks import DeadLetterSink, dead_letter_batch
from streamworker.records import Record
from streamworker.sources.base import Batch

if TYPE_CHECKING:
    from streamworker.checkpoint.checkpointer import Checkpointer
    from streamworker.consumer.meters import WorkerMetrics
    from streamworker.consumer.progress import ConsumerSettings


class GuardTripped(Exception):
    """More went to the dead-letter sink than the guard allows: the shard halts."""


@dataclass(frozen=True)
class GuardLimits:
    #: Halt once this many records in a row were dead-lettered (None: no limit).
    max_consecutive: int | None = None
    #: Halt once more than this fraction of the last ``window`` records was dead-lettered.
    max_ratio: float | None = None
    window: int = 1000


class DeadLetterGuard:
    """Counts dead-lettered against processed records, in a row and over a sliding window."""

    def __init__(self, limits: GuardLimits) -> None:
        self.limits = limits
        self.consecutive = 0
        self._recent: deque[tuple[int, int]] = deque()  # (processed, dead-lettered) per batch
        self._processed = self._dead = 0

    def processed(self, n: int) -> None:
        if n:
            self.consecutive = 0
            self._add(n, 0)

    def check(self, n: int) -> None:
        """Raise GuardTripped if dead-lettering ``n`` more records would pass a limit."""
        lim = self.limits
        if lim.max_consecutive is not None and self.consecutive + n > lim.max_consecutive:
            raise GuardTripped(
                f"dead-letter guard: {self.consecutive + n} records in a row would be dead-lettered "
                f"(dead_letter_max_consecutive = {lim.max_consecutive}); a bad deploy? The shard halts "
                f"with its checkpoint kept: fix the processor and restart")
        total = self._processed + self._dead + n
        if lim.max_ratio is not None and total >= min(lim.window, 100) and (self._dead + n) / total > lim.max_ratio:
            raise GuardTripped(
                f"dead-letter guard: {self._dead + n} of the last {total} records would be dead-lettered "
                f"(more than dead_letter_max_ratio = {lim.max_ratio}); the shard halts with its checkpoint kept")

    def dead_lettered(self, n: int) -> None:
        self.consecutive += n
        self._add(0, n)

    def _add(self, processed: int, dead: int) -> None:
        self._recent.append((processed, dead))
        self._processed += processed
        self._dead += dead
        while len(self._recent) > 1 and self._processed + self._dead - sum(self._recent[0]) >= self.limits.window:
            p, d = self._recent.popleft()
            self._processed -= p
            self._dead -= d


class ShardDeadLetters:
    """A shard's dead-letter sink with its guard and the record age limit."""

    def __init__(self, sink: DeadLetterSink | None, shard_id: str, clock: Clock, log: Any, counter: Any,
                 limits: GuardLimits, max_record_age: float | None) -> None:
        self.sink, self.shard_id, self.clock, self.log, self.counter = sink, shard_id, clock, log, counter
        self.guard = DeadLetterGuard(limits)
        self.max_record_age = max_record_age
        #: Why the guard refused a write (the shard's halt reason), once it has.
        self.refused: str | None = None

    @classmethod
    def for_shard(cls, settings: ConsumerSettings, shard_id: str, clock: Clock, log: Any,
                  metrics: WorkerMetrics | None, label: str) -> ShardDeadLetters:
        counter = None if metrics is None else metrics.dead_lettered.labels(label)
        return cls(settings.dead_letter, shard_id, clock, log, counter, settings.dead_letter_guard,
                   settings.max_record_age)

    def write(self, records: list[Record], error: BaseException, checkpointer: Checkpointer) -> bool:
        """Dead-letter ``records`` and checkpoint past them. False (the shard halts): no sink, the
        guard refused (``refused`` says why), the sink or the checkpoint failed."""
        if self.sink is None or not records:
            return False
        try:
            self.guard.check(len(records))
        except GuardTripped as exc:
            self.refused = str(exc)
            self.log.error("shard halted by the dead-letter guard", reason=self.refused)
            return False
        if not dead_letter_batch(self.sink, records, self.shard_id, error, checkpointer, self.counter, self.log):
            return False
        self.guard.dead_lettered(len(records))
        return True

    def expired(self, batch: Batch) -> tuple[list[Record], Batch]:
        """The records at the head of ``batch`` older than ``max_record_age`` (by arrival time), and the rest."""
        if self.max_record_age is None or not batch.records:
            return [], batch
        cutoff = self.clock.time() - self.max_record_age
        n = 0
        for r in batch.records:
            ts = r.approximate_arrival_timestamp
            if ts is None or ts.timestamp() >= cutoff:
                break
            n += 1
        if n == 0:
            return [], batch
        return batch.records[:n], replace(batch, records=batch.records[n:], size=None)


class RecordTooOld(Exception):
    """The error a record past ``max_record_age`` is dead-lettered with."""
