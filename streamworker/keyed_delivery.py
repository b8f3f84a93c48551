"""The shard lifecycle's PROCESSING state in per-key mode: batches go to a ``KeyedDispatcher``
(keyed.py) instead of one ``process_records`` call, and the checkpointable point follows the
dispatcher's low watermark. A part of ``ShardLifecycle`` kept apart; the state it uses is
declared here.

Per step: take what completed (count it, let it be checkpointed), apply the error policy to a
record that kept failing (dead-letter it and go on, or halt after the lanes stop), hold the
shard-end batch until every record before it completed, and read the next batch only while
fewer than ``bound`` records are outstanding (backpressure on the reader). Ending the shard (lease
lost, shutdown, halt) stops the lanes and waits for the running records first, so the processor's
ending call never overlaps a ``process_record``; only a shutdown checkpoints what completed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .keyed import Entry, KeyedDispatcher
from .sources.base import Batch

if TYPE_CHECKING:
    from .checkpoint_policy import CheckpointPolicy
    from .checkpointer import CheckpointTracker
    from .dead_letters import ShardDeadLetters
    from .metrics import ShardMeters, WorkerMetrics
    from .shard_state import ConsumerSettings, ShardProgress

#: Wait between steps while lanes run (their completion wakes the shard thread sooner).
LANE_WAIT = 0.5


class KeyedDelivery:
    """Per-key delivery for ``ShardLifecycle``."""

    settings: ConsumerSettings
    tracker: CheckpointTracker
    progress: ShardProgress
    policy: CheckpointPolicy
    meters: ShardMeters
    metrics: WorkerMetrics | None
    label: str
    dead_letters: ShardDeadLetters
    _keyed: KeyedDispatcher | None
    _keyed_end: Batch | None
    _shutdown: threading.Event
    last_failure: BaseException | None
    _log: Any

    #: Outstanding records (accepted, not yet under the watermark) above which no batch is read.
    @property
    def keyed_bound(self) -> int:
        return 100 * self.settings.parallelism

    def _lease_gone(self) -> bool:
        raise NotImplementedError

    def _end(self, why: str, *, call_processor: bool = True) -> float | None:
        raise NotImplementedError

    def _halt(self, reason: str, *, call_processor: bool = False) -> float:
        raise NotImplementedError

    def _after_batch(self, batch: Batch) -> float | None:
        raise NotImplementedError

    def _next_batch(self, *, keep_empty: bool = False) -> Batch | float | None:
        raise NotImplementedError

    def _dead_letter(self, records: list[Any], error: BaseException) -> bool:
        raise NotImplementedError

    def _processing_keyed(self) -> float | None:
        d = self._keyed
        assert d is not None
        if self._shutdown.is_set():
            return self._end("shutdown requested")
        self._keyed_progress()
        failed = d.failure()
        if failed is not None:
            assert failed.error is not None
            if self.settings.dead_letter_failures and self._dead_letter([failed.record], failed.error):
                d.resolve(failed)
                return 0.0
            self.last_failure = failed.error
            self._stop_lanes()
            self.policy.apply(self.tracker, self._log, final=True)  # everything before it that completed
            return self._halt(self.dead_letters.refused or (
                f"process_record failed {failed.attempts} times on {failed.record.sequence_number}: "
                f"{failed.error!r:.300}"))
        if self._keyed_end is not None:  # the shard's end waits for every record before it
            if d.outstanding:
                return LANE_WAIT
            end, self._keyed_end = self._keyed_end, None
            return self._after_batch(end)
        if d.outstanding >= self.keyed_bound:
            return LANE_WAIT if self.policy.apply(self.tracker, self._log) else self._end("lease lost")
        got = self._next_batch(keep_empty=True)
        if not isinstance(got, Batch):
            return got
        if got.records:
            d.submit(got.records)
        if got.shard_end:
            self._keyed_end = got
        return 0.0

    def _keyed_progress(self) -> None:
        """Count the records that joined the watermark; they may be checkpointed now."""
        assert self._keyed is not None
        done = self._keyed.completed()
        if not done:
            return
        self.tracker.delivered(done[-1].record.extended_sequence_number, [e.record for e in done])
        n, size = len(done), sum(len(e.record.data) for e in done)
        self.progress.batches, self.progress.records, self.progress.bytes = (
            self.progress.batches + 1, self.progress.records + n, self.progress.bytes + size)
        self.progress.last_sequence = done[-1].record.sequence_number
        self.policy.processed(n)
        self.meters.processed(n, size, sum(e.seconds for e in done) / n)

    def _record_failed(self, entry: Entry, exc: BaseException) -> None:
        """A lane's attempt failed (on the lane's thread): counted and logged like a batch's."""
        self.progress.failures += 1
        if self.metrics is not None:
            self.metrics.processor_failures.labels(self.label).inc()
        final = entry.attempts > self.settings.processor_retries
        self._log.warning("process_record raised" + ("" if final else "; retrying the record"),
                          sequence_number=entry.record.sequence_number, key=entry.record.partition_key,
                          attempt=entry.attempts, error=repr(exc))

    def _stop_lanes(self, *, drain: bool = False) -> None:
        """No record starts any more (``drain``: once every record taken completed); the running
        ones finish, within shutdown_timeout in all."""
        d = self._keyed
        if d is None:
            return
        if drain and not d.wait_drained(self.settings.shutdown_timeout):
            self._log.warning("records taken were not all processed within shutdown_timeout; the next owner "
                              "gets them again", outstanding=d.outstanding)
        d.stop()
        if not d.wait_idle(self.settings.shutdown_timeout):
            self._log.warning("records still running after shutdown_timeout; ending the shard without them",
                              running=d.running)
        self._keyed_progress()
