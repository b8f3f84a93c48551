"""Where a shard's delivery takes its batches from, and what it does with those that do not go
to the processor: records past ``max_record_age`` and failed ones go to the dead-letter sink;
every batch handled is counted in the shard's progress."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from streamworker.consumer.outcome import BatchDone, End, Halt, Outcome, Wait
from streamworker.dead_letter.shard import RecordTooOld
from streamworker.records import Record
from streamworker.sources.base import Batch, InvalidStartPosition, SourceAccessDenied

if TYPE_CHECKING:
    from streamworker.checkpoint.checkpointer import CheckpointTracker
    from streamworker.checkpoint.policy import CheckpointPolicy
    from streamworker.consumer.meters import ShardMeters
    from streamworker.consumer.progress import BatchFeed, ConsumerSettings, ShardProgress
    from streamworker.dead_letter.shard import ShardDeadLetters
    from streamworker.leases.lease import Lease


class BatchIntake:
    """The feed's batches for a delivery, and the dead-letter sink and counters it shares."""

    def __init__(self, feed: BatchFeed, tracker: CheckpointTracker, policy: CheckpointPolicy,
                 dead_letters: ShardDeadLetters, progress: ShardProgress, meters: ShardMeters,
                 settings: ConsumerSettings, lease: Lease, lease_gone: Callable[[], bool], log: Any) -> None:
        self.feed, self.tracker, self.policy, self.dead_letters = feed, tracker, policy, dead_letters
        self.progress, self.meters, self.settings, self.lease = progress, meters, settings, lease
        self._lease_gone, self._log = lease_gone, log

    def next(self, *, keep_empty: bool = False) -> Batch | Outcome:
        """The next batch to deliver, or what to do instead (wait, halt, end, or go on after an
        empty batch). Raises SourceAccessDenied (the worker stops)."""
        item = self.feed.next()
        if item is None:  # nothing new: an interval checkpoint may still be due
            return Wait(0.0) if self.policy.apply(self.tracker, self._log) else End("lease lost")
        if isinstance(item, BaseException):
            if isinstance(item, SourceAccessDenied):
                raise item
            if isinstance(item, InvalidStartPosition):
                return Halt(self.lease.unreadable_checkpoint(str(item)))
            return Halt(f"reading the shard failed: {item!r:.300}")
        self.progress.millis_behind_latest = item.millis_behind_latest
        old, item = self.dead_letters.expired(item)
        if old:  # past max_record_age: to the dead-letter sink, not the processor
            bound = self.tracker.delivered(old[-1].extended_sequence_number, old)
            if not self.dead_letter(old, RecordTooOld(f"older than {self.settings.max_record_age} s")):
                self.tracker.undeliver(bound)
                return Halt(self.dead_letters.refused or "dead-lettering records past max_record_age failed")
        if not keep_empty and not item.records and not self.settings.call_process_records_even_for_empty_list:
            return BatchDone(item)
        if self._lease_gone():  # again: the wait for the batch may have outlived the lease
            return End("lease lost")
        return item

    def dead_letter(self, records: Sequence[Record], error: BaseException) -> bool:
        """Write ``records`` to the dead-letter sink and checkpoint past them; False (nothing
        written, or the lease gone) when the shard must halt instead."""
        if not self.dead_letters.write(list(records), error, self.tracker.checkpointer):
            return False
        self.progress.batches += 1
        self.policy.processed(len(records))
        return True

    def count(self, records: Sequence[Record], size: int | None, seconds: float) -> None:
        """``records`` were processed in ``seconds`` (wall time): the shard's figures and meters."""
        n = len(records)
        size = size if size is not None else sum(len(r.data) for r in records)
        self.progress.batches, self.progress.records, self.progress.bytes = (
            self.progress.batches + 1, self.progress.records + n, self.progress.bytes + size)
        self.policy.processed(n)
        self.meters.processed(n, size, seconds)
        if records:
            self.progress.last_sequence = records[-1].sequence_number

    @staticmethod
    def now() -> float:
        """Wall time for latencies (a fake clock does not pass while a processor runs)."""
        return time.perf_counter()
