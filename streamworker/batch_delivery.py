"""The shard lifecycle's batches: taking the next one from the feed, delivering it to the
processor, counting it, dead-lettering it, and (``on_error = bisect``) splitting a failing one to
find its poison records. A part of
``ShardLifecycle`` kept apart; the state it uses is declared here."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .dead_letters import RecordTooOld
from .processor import ProcessRecordsInput, RecordProcessor
from .processor_calls import ProcessorCall
from .record_failures import raise_reported
from .records import Record
from .sources.base import Batch, InvalidStartPosition, SourceAccessDenied

if TYPE_CHECKING:
    from .checkpoint_policy import CheckpointPolicy
    from .checkpointer import CheckpointTracker
    from .coordinators.lease import Lease
    from .dead_letters import ShardDeadLetters
    from .metrics import ShardMeters, WorkerMetrics
    from .shard_state import BatchFeed, ConsumerSettings, ShardProgress


class BatchDelivery:
    """Batches to the processor and what becomes of them."""

    processor: RecordProcessor
    settings: ConsumerSettings
    shard_id: str
    label: str
    tracker: CheckpointTracker
    progress: ShardProgress
    policy: CheckpointPolicy
    meters: ShardMeters
    metrics: WorkerMetrics | None
    dead_letters: ShardDeadLetters
    feed: BatchFeed
    lease: Lease
    _parts: list[Batch]
    _call: ProcessorCall | None
    _log: Any

    def _invoke(self, method: Callable[..., object], argument: object) -> object:
        raise NotImplementedError

    def _end(self, why: str, *, call_processor: bool = True) -> float | None:
        raise NotImplementedError

    def _halt(self, reason: str, *, call_processor: bool = False) -> float:
        raise NotImplementedError

    def _lease_gone(self) -> bool:
        raise NotImplementedError

    def _after_batch(self, batch: Batch) -> float | None:
        raise NotImplementedError

    def _end_interrupted(self, call_processor: bool = True) -> float | None:
        raise NotImplementedError

    def interrupted(self) -> bool:
        raise NotImplementedError

    def _deliver(self, batch: Batch) -> ProcessorCall:
        previous = self.tracker.largest_permitted
        if batch.records:
            previous = self.tracker.delivered(batch.records[-1].extended_sequence_number, batch.records)
        return ProcessorCall("process_records", self._run_batch(batch), batch=batch, previous=previous,
                             started=time.perf_counter())

    def _run_batch(self, batch: Batch) -> Callable[[], object]:
        pri = ProcessRecordsInput(records=batch.records, checkpointer=self.tracker.checkpointer,
                                  shard_id=self.shard_id, millis_behind_latest=batch.millis_behind_latest,
                                  is_at_shard_end=batch.shard_end, child_shards=batch.child_shards)
        return lambda: raise_reported(self._invoke(self.processor.process_records, pri))

    def _count(self, batch: Batch, started: float) -> None:
        n, size = len(batch.records), batch.size if batch.size is not None else sum(len(r.data) for r in batch.records)
        self.progress.batches, self.progress.records, self.progress.bytes = (
            self.progress.batches + 1, self.progress.records + n, self.progress.bytes + size)
        self.policy.processed(n)
        self.meters.processed(n, size, time.perf_counter() - started)  # latency: wall time, not the clock
        if batch.records:
            self.progress.last_sequence = batch.records[-1].sequence_number

    def _dead_letter(self, records: list[Record], error: BaseException) -> bool:
        if not self.dead_letters.write(records, error, self.tracker.checkpointer):
            return False
        self.progress.batches += 1
        self.policy.processed(len(records))
        return True

    def _bisect(self, call: ProcessorCall, exc: Exception) -> bool:
        """Split the failing batch of ``call``: its first half is tried at once, the second waits
        in ``_parts``. A single record is not split: it is retried, then dead-lettered."""
        batch = call.batch
        if batch is None or len(batch.records) < 2 or call.previous is None:
            return False
        half = len(batch.records) // 2
        first = replace(batch, records=batch.records[:half], size=None, shard_end=False, child_shards=())
        self._parts.insert(0, replace(batch, records=batch.records[half:], size=None))
        self.tracker.undeliver(call.previous)  # checkpoint() inside the first half covers only it
        self.tracker.delivered(first.records[-1].extended_sequence_number)
        call.batch, call.run = first, self._run_batch(first)
        self.progress.failures += 1
        if self.metrics is not None:
            self.metrics.processor_failures.labels(self.label).inc()
        self._log.warning("process_records raised; bisecting the batch", records=len(batch.records),
                          first=batch.records[0].sequence_number, error=repr(exc))
        return True

    def _next_batch(self, *, keep_empty: bool = False) -> Batch | float | None:
        """The next batch to deliver, or what step() returns instead (a wait, or an end)."""
        item = self.feed.next()
        if item is None:  # nothing new: an interval checkpoint may still be due
            return 0.0 if self.policy.apply(self.tracker, self._log) else self._end("lease lost")
        if isinstance(item, BaseException):
            if isinstance(item, SourceAccessDenied):
                raise item  # step() ends the shard and stops the worker
            if isinstance(item, InvalidStartPosition):
                return self._halt(self.lease.unreadable_checkpoint(str(item)))
            return self._halt(f"reading the shard failed: {item!r:.300}")
        self.progress.millis_behind_latest = item.millis_behind_latest
        old, item = self.dead_letters.expired(item)
        if old:  # past max_record_age: to the dead-letter sink, not the processor
            bound = self.tracker.delivered(old[-1].extended_sequence_number, old)
            if not self._dead_letter(old, RecordTooOld(f"older than {self.settings.max_record_age} s")):
                self.tracker.undeliver(bound)
                return self._halt(self.dead_letters.refused or "dead-lettering records past max_record_age failed")
        if not keep_empty and not item.records and not self.settings.call_process_records_even_for_empty_list:
            return self._after_batch(item)
        if self._lease_gone():  # again: the wait for the batch may have outlived the lease
            return self._end("lease lost")
        return item

    def _part_done(self, batch: Batch) -> float | None:
        """A batch (or a part of a split one) is done: the next part, else what follows a batch."""
        if not self._parts:
            return self._after_batch(batch)
        if self.interrupted():  # the parts not yet processed are not delivered: the next owner gets them
            self._parts.clear()
            return self._end_interrupted()
        self._call = self._deliver(self._parts.pop(0))
        return 0.0
