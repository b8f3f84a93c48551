"""Record by record to ``process_record`` on per-key lanes (``lanes.KeyedDispatcher``): the
checkpointable point follows the dispatcher's low watermark.

Per step: take what completed (count it, let it be checkpointed), apply the error policy to a
record that kept failing (dead-letter it and go on, or halt once the lanes stopped), hold the
shard-end batch until every record before it completed, and read the next batch only while fewer
than ``bound`` records are outstanding (backpressure on the reader). ``stop`` stops the lanes and
waits for the running records, so the processor's ending call never overlaps a
``process_record``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamworker.consumer.delivery import Delivery
from streamworker.consumer.lanes import lanes_for
from streamworker.consumer.outcome import BatchDone, End, Halt, Outcome, Wait
from streamworker.sources.base import Batch

if TYPE_CHECKING:
    from streamworker.checkpoint.checkpointer import CheckpointTracker
    from streamworker.checkpoint.policy import CheckpointPolicy
    from streamworker.consumer.calls import ShardCalls
    from streamworker.consumer.intake import BatchIntake
    from streamworker.consumer.lanes import Entry, KeyedDispatcher, LaneCall
    from streamworker.consumer.progress import ConsumerSettings

#: Wait between steps while lanes run (their completion wakes the shard thread sooner).
LANE_WAIT = 0.5


class KeyedDelivery(Delivery):
    """``process_record`` on ``settings.parallelism`` lanes, records of one key in order."""

    def __init__(self, processor: object, intake: BatchIntake, tracker: CheckpointTracker,
                 policy: CheckpointPolicy, settings: ConsumerSettings, calls: ShardCalls, *,
                 wake: Callable[[], None], may_start: Callable[[], bool], monotonic: Callable[[], float],
                 shutdown_requested: Callable[[], bool], log: Any) -> None:
        self.intake, self.tracker, self.policy, self.settings, self.calls = intake, tracker, policy, settings, calls
        self._shutdown_requested, self._log = shutdown_requested, log
        #: ``wake`` is called on a lane's thread when a record completes (the shard steps at once)
        self.dispatcher: KeyedDispatcher = lanes_for(processor, settings, wake, may_start, self.record_failed,
                                                     monotonic)
        self._end: Batch | None = None  # the shard-end batch, held until every record before it completed
        #: Outstanding records (accepted, not yet under the watermark) above which no batch is read.
        self.bound = 100 * settings.parallelism

    @property
    def busy(self) -> bool:
        return self.dispatcher.outstanding > 0

    def lane_calls(self) -> list[LaneCall]:
        return self.dispatcher.lane_calls()

    def step(self) -> Outcome:
        d = self.dispatcher
        if self._shutdown_requested():
            return End("shutdown requested")
        self._progress()
        failed = d.failure()
        if failed is not None:
            assert failed.error is not None
            if self.settings.dead_letter_failures and self.intake.dead_letter([failed.record], failed.error):
                d.resolve(failed)
                return Wait(0.0)
            self.calls.last_failure = failed.error
            self.stop(drain=False)
            self.policy.apply(self.tracker, self._log, final=True)  # everything before it that completed
            return Halt(self.intake.dead_letters.refused or (
                f"process_record failed {failed.attempts} times on {failed.record.sequence_number}: "
                f"{failed.error!r:.300}"))
        if self._end is not None:  # the shard's end waits for every record before it
            if d.outstanding:
                return Wait(LANE_WAIT)
            end, self._end = self._end, None
            return BatchDone(end)
        if d.outstanding >= self.bound:
            return Wait(LANE_WAIT) if self.policy.apply(self.tracker, self._log) else End("lease lost")
        got = self.intake.next(keep_empty=True)
        if not isinstance(got, Batch):
            return got
        if got.records:
            d.submit(got.records)
        if got.shard_end:
            self._end = got
        return Wait(0.0)

    def _progress(self) -> None:
        """Count the records that joined the watermark; they may be checkpointed now."""
        done = self.dispatcher.completed()
        if not done:
            return
        records = [e.record for e in done]
        self.tracker.delivered(records[-1].extended_sequence_number, records)
        self.intake.count(records, None, sum(e.seconds for e in done) / len(done))

    def record_failed(self, entry: Entry, exc: BaseException) -> None:
        """A lane's attempt failed (on the lane's thread): counted and logged like a batch's."""
        self.calls.count_failure()
        final = entry.attempts > self.settings.processor_retries
        self._log.warning("process_record raised" + ("" if final else "; retrying the record"),
                          sequence_number=entry.record.sequence_number, key=entry.record.partition_key,
                          attempt=entry.attempts, error=repr(exc))

    def stop(self, *, drain: bool) -> None:
        """No record starts any more (``drain``: once every record taken completed); the running
        ones finish, within shutdown_timeout in all."""
        d = self.dispatcher
        if drain and not d.wait_drained(self.settings.shutdown_timeout):
            self._log.warning("records taken were not all processed within shutdown_timeout; the next owner "
                              "gets them again", outstanding=d.outstanding)
        d.stop()
        if not d.wait_idle(self.settings.shutdown_timeout):
            self._log.warning("records still running after shutdown_timeout; ending the shard without them",
                              running=d.running)
        self._progress()

    def close(self) -> None:
        self.dispatcher.close()
