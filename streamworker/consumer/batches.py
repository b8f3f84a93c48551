"""Whole batches to ``process_records``: each delivered, retried with backoff, counted, and when
it keeps failing dead-lettered, split to find its poison records (``on_error = bisect``) or given
up on (the lifecycle halts the shard)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from streamworker.consumer.calls import CallFailed, ProcessorCall, ShardCalls, attempt
from streamworker.consumer.delivery import Delivery
from streamworker.consumer.failures import raise_reported, redeliver_from_first_failure
from streamworker.consumer.outcome import BatchDone, End, Halt, Interrupted, Outcome, Wait
from streamworker.errors import LeaseLostError, RecordFailures
from streamworker.processor import ProcessRecordsInput, RecordProcessor
from streamworker.sources.base import Batch

if TYPE_CHECKING:
    from streamworker.checkpoint.checkpointer import CheckpointTracker
    from streamworker.consumer.intake import BatchIntake
    from streamworker.consumer.progress import ConsumerSettings


class BatchDelivery(Delivery):
    """``process_records`` per batch. Also the ``CallSite`` of those calls: it narrows a failing
    batch (bisect) and takes the records a ``RecordFailures`` report says were done."""

    def __init__(self, processor: RecordProcessor, intake: BatchIntake, tracker: CheckpointTracker,
                 settings: ConsumerSettings, calls: ShardCalls, *, shard_id: str,
                 invoke: Callable[[Callable[..., object], object], object], shutdown_requested: Callable[[], bool],
                 log: Any) -> None:
        self.processor, self.intake, self.tracker, self.settings, self.calls = processor, intake, tracker, settings, calls
        self.shard_id = shard_id
        self._invoke, self._shutdown_requested, self._log = invoke, shutdown_requested, log
        self._call: ProcessorCall | None = None
        #: on_error = bisect: the rest of a split batch, the next part first
        self._parts: list[Batch] = []

    @property
    def busy(self) -> bool:
        return self._call is not None

    def step(self) -> Outcome:
        if self._call is None:
            if self._shutdown_requested():
                return End("shutdown requested")
            got = self.intake.next()
            if not isinstance(got, Batch):
                return got
            self._call = self._deliver(got)
        call = self._call
        assert call.batch is not None and call.previous is not None
        try:
            wait = attempt(call, self, retries=self.settings.processor_retries, backoff=self.settings.retry_backoff)
        except LeaseLostError as exc:
            self._call = None
            self._log.warning("checkpoint inside process_records refused", error=str(exc))
            return End("lease lost")
        except CallFailed as failed:
            self._call = None
            if failed.__cause__ is None:  # interrupted between attempts: redelivered by the next owner
                self.tracker.undeliver(call.previous)
                return Interrupted()
            if self.settings.dead_letter_failures and self.intake.dead_letter(call.batch.records, failed.__cause__):
                return self._part_done(call.batch)
            self.tracker.undeliver(call.previous)  # the failed batch is not done
            return Halt(self.intake.dead_letters.refused or f"process_records failed "
                        f"{self.settings.processor_retries + 1} times: {failed.__cause__!r:.300}")
        if wait is not None:
            return Wait(wait)
        self._call = None
        self.intake.count(call.batch.records, call.batch.size, self.intake.now() - call.started)
        return self._part_done(call.batch)

    def _deliver(self, batch: Batch) -> ProcessorCall:
        previous = self.tracker.largest_permitted
        if batch.records:
            previous = self.tracker.delivered(batch.records[-1].extended_sequence_number, batch.records)
        return ProcessorCall("process_records", self._run(batch), batch=batch, previous=previous,
                             started=self.intake.now())

    def _run(self, batch: Batch) -> Callable[[], object]:
        pri = ProcessRecordsInput(records=batch.records, checkpointer=self.tracker.checkpointer,
                                  shard_id=self.shard_id, millis_behind_latest=batch.millis_behind_latest,
                                  is_at_shard_end=batch.shard_end, child_shards=batch.child_shards)
        return lambda: raise_reported(self._invoke(self.processor.process_records, pri), self.processor)

    def _part_done(self, batch: Batch) -> Outcome:
        """A batch (or a part of a split one) is done: the next part, else what follows a batch."""
        if not self._parts:
            return BatchDone(batch)
        if self.calls.interrupted():  # the parts not yet processed are not delivered: the next owner gets them
            self._parts.clear()
            return Interrupted()
        self._call = self._deliver(self._parts.pop(0))
        return Wait(0.0)

    # -- CallSite ----------------------------------------------------------------------------

    def interrupted(self) -> bool:
        return self.calls.interrupted()

    def call_started(self, what: str | None) -> None:
        self.calls.call_started(what)

    def narrowed(self, call: ProcessorCall, exc: Exception) -> bool:
        """on_error = bisect: split the failing batch of ``call``; its first half is tried at
        once, the second waits. A single record is not split: it is retried, then dead-lettered."""
        batch = call.batch
        if (not self.settings.bisect or isinstance(exc, RecordFailures) or batch is None
                or len(batch.records) < 2 or call.previous is None):
            return False
        half = len(batch.records) // 2
        first = replace(batch, records=batch.records[:half], size=None, shard_end=False, child_shards=())
        self._parts.insert(0, replace(batch, records=batch.records[half:], size=None))
        self.tracker.undeliver(call.previous)  # checkpoint() inside the first half covers only it
        self.tracker.delivered(first.records[-1].extended_sequence_number)
        call.batch, call.run = first, self._run(first)
        self.calls.count_failure()
        self._log.warning("process_records raised; bisecting the batch", records=len(batch.records),
                          first=batch.records[0].sequence_number, error=repr(exc))
        return True

    def call_failed(self, call: ProcessorCall, exc: Exception, final: bool, delay: float) -> None:
        if isinstance(exc, RecordFailures) and (done := redeliver_from_first_failure(call, exc, self.tracker,
                                                                                     self._run)):
            self.intake.count(done, None, self.intake.now() - call.started)  # what came before the failure is done
        self.calls.call_failed(call, exc, final, delay)
