"""One shard's lifecycle as a synchronous state machine.

``step()`` does one bounded piece of work (one processor call, one attempt of a retried call,
one check) and returns how long to wait before the next step, or None once the shard is done.
Nothing in here starts a thread or sleeps: ``ShardConsumer`` runs it on a thread, the test
harness runs it inline with a fake source and clock, and both get the same behaviour.

    state               does                                          next
    WAITING_ON_PARENTS  parents at SHARD_END?                         INITIALIZING, or wait
    INITIALIZING        initialize (retried), open the reader         PROCESSING | HALTED
    PROCESSING          deliver the next batch (retried)              PROCESSING | SHARD_ENDING | HALTED
    SHARD_ENDING        shard_ended until it checkpoints SHARD_END    ending (shard end)
    HALTED              hold the lease; release after a bound         ending
    any                 lease lost / shutdown requested               ending (lost / shutdown)
    ending              the processor's last call, release or forget  DONE

One end path (``_end``) for every ending: lease lost, shutdown, shard end, already finished. A
checkpoint policy (``checkpoint_policy``) checkpoints processed batches when due and at the end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from streamworker.backoff import Backoff
from streamworker.checkpoint.checkpointer import CheckpointTracker
from streamworker.checkpoint.policy import CheckpointPolicy
from streamworker.clock import Clock
from streamworker.consumer.batches import BatchDelivery
from streamworker.consumer.calls import CallFailed, ProcessorCall, ShardCalls, attempt
from streamworker.consumer.delivery import Delivery
from streamworker.consumer.intake import BatchIntake
from streamworker.consumer.keyed import KeyedDelivery
from streamworker.consumer.lanes import KEYED_CHECKPOINT_INTERVAL, LaneCall, is_per_record
from streamworker.consumer.meters import ShardMeters
from streamworker.consumer.outcome import BatchDone, End, Halt, Interrupted, Outcome, Wait
from streamworker.consumer.progress import BatchFeed, ConsumerSettings, ConsumerState, ShardProgress
from streamworker.dead_letter.shard import ShardDeadLetters
from streamworker.errors import CheckpointError, ShardEndNotCheckpointedError
from streamworker.leases.base import LeaseAccess, ShardLineage
from streamworker.leases.keys import stream_identifier_of
from streamworker.leases.lease import Lease
from streamworker.processor import (
    ChildShard,
    InitializationInput,
    LeaseLostInput,
    RecordProcessor,
    ShardEndedInput,
    ShutdownRequestedInput,
)
from streamworker.sources.base import Batch, Source, SourceAccessDenied

if TYPE_CHECKING:
    from streamworker.consumer.meters import WorkerMetrics

log = structlog.get_logger("streamworker.shard")


class ShardLifecycle:
    """Drives one RecordProcessor over one leased shard, one ``step()`` at a time. PROCESSING is
    its ``delivery``'s (batches, or per-key lanes): each of its steps returns an outcome that the
    lifecycle acts on."""

    def __init__(self, lease: Lease, processor: RecordProcessor, source: Source, leases: LeaseAccess,
                 settings: ConsumerSettings, feed: BatchFeed, clock: Clock, *, label: str, stream: str,
                 lineage: ShardLineage | None = None, metrics: WorkerMetrics | None = None,
                 on_source_denied: Callable[[str], None] | None = None) -> None:
        self.lease, self.processor, self.source, self.leases = lease, processor, source, leases
        self.settings, self.feed, self.clock, self.lineage, self.metrics = settings, feed, clock, lineage, metrics
        self.shard_id, self.label, self.stream = lease.shard_id, label, stream
        #: told when the source refuses a permission (the worker stops; this shard ends as a stop does)
        self.on_source_denied = on_source_denied
        self.state = ConsumerState.WAITING_ON_PARENTS
        self.progress = ShardProgress()
        self.end_reason: str | None = None
        #: Why the shard halted (HALTED state), for health checks and the lease table.
        self.halt_reason: str | None = None
        self._lost = threading.Event()
        self._shutdown = threading.Event()
        self._initialized = False  # the ending calls go only to an initialized processor
        self._init_call: ProcessorCall | None = None
        self._waited_for_parents = False
        self._halt_deadline: float | None = None
        self._halt_calls_processor = False
        self._end_backoff: Backoff | None = None
        self._children: tuple[ChildShard, ...] = ()
        self._log = log.bind(shard_id=self.shard_id, worker_id=settings.worker_id, stream=stream)
        self.meters = ShardMeters(metrics, label, shard_id=self.shard_id,
                                  stream_id=stream_identifier_of(lease.lease_key))
        self.calls = ShardCalls(self.interrupted, clock.monotonic, self._log, self._count_failure)
        self.dead_letters = ShardDeadLetters.for_shard(settings, self.shard_id, clock, self._log, metrics, label)
        # straight down: validation (the tracker), timing, the coordinator (which fences by holding)
        self.tracker = CheckpointTracker(ShardMeters.checkpoint_store(leases, metrics, label), lease, self.shard_id,
                                         lease.checkpoint)
        #: Set by the runner: wakes its thread (a per-key lane completed).
        self.wake_runner: Callable[[], None] = lambda: None
        per_record = is_per_record(processor)
        interval = settings.checkpoint_interval
        if per_record and interval is None and settings.checkpoint_every is None:
            interval = KEYED_CHECKPOINT_INTERVAL  # the processor has no checkpointer in process_record
        self.policy = CheckpointPolicy(clock, interval=interval, every=settings.checkpoint_every)
        intake = BatchIntake(feed, self.tracker, self.policy, self.dead_letters, self.progress, self.meters,
                             settings, lease, self._lease_gone, self._log)
        #: Per-key mode (a processor with process_record): lanes instead of process_records calls.
        self.delivery: Delivery = (
            KeyedDelivery(processor, intake, self.tracker, self.policy, settings, self.calls,
                          wake=lambda: self.wake_runner(), may_start=lambda: not self._lease_gone(),
                          monotonic=clock.monotonic, shutdown_requested=self._shutdown.is_set, log=self._log)
            if per_record else
            BatchDelivery(processor, intake, self.tracker, settings, self.calls, shard_id=self.shard_id,
                          invoke=self._invoke, shutdown_requested=self._shutdown.is_set, log=self._log))
        #: The state table: what ``step()`` does in each state (the ending states are in ``_end``).
        self._handlers: dict[ConsumerState, Callable[[], float | None]] = {
            ConsumerState.WAITING_ON_PARENTS: self._waiting_on_parents,
            ConsumerState.INITIALIZING: self._initializing,
            ConsumerState.PROCESSING: self._processing,
            ConsumerState.SHARD_ENDING: self._shard_ending,
            ConsumerState.HALTED: self._halted,
        }

    # -- inputs (any thread) -------------------------------------------------------------------

    def request_shutdown(self) -> None:
        self._shutdown.set()

    def notify_lease_lost(self) -> None:
        self._lost.set()

    @property
    def done(self) -> bool:
        return self.state == ConsumerState.DONE

    def lane_calls(self) -> list[LaneCall]:
        """Per-key mode: the ``process_record`` attempts running now (else none)."""
        return self.delivery.lane_calls()

    @property
    def busy(self) -> bool:
        """A processor call is being retried (the next step makes its next attempt), or records
        handed to per-key lanes are not all completed."""
        return self._init_call is not None or self.delivery.busy

    @property
    def current_call(self) -> tuple[str, float] | None:
        """(processor method, start on the clock) while a processor call runs: for hang reports."""
        return self.calls.current

    @property
    def last_failure(self) -> BaseException | None:
        """The exception of the processor call that used up its retries, if one did."""
        return self.calls.last_failure

    # -- the machine -----------------------------------------------------------------------------

    def step(self) -> float | None:
        """One piece of work; the seconds to wait before the next step, or None when done."""
        if self.state == ConsumerState.DONE:
            return None
        try:
            return self._handlers[self.state]()
        except SourceAccessDenied as exc:
            self._log.error("reading the shard was refused", error=str(exc))
            if self.on_source_denied is not None:
                self.on_source_denied(str(exc))
            self.request_shutdown()  # the next step ends the shard as a graceful stop does
            return 0.0
        except Exception as exc:
            self._log.exception("shard consumer failed unexpectedly")
            return self._halt(f"unexpected error: {exc!r:.300}")

    def close(self) -> None:
        """After the last step, or when the runner is abandoned: the reader stops."""
        self.feed.stop()
        self.delivery.close()

    # -- states ----------------------------------------------------------------------------------

    def _waiting_on_parents(self) -> float | None:
        if self.lease.is_finished:
            return self._end("already at SHARD_END")
        if self.interrupted():
            return self._end_interrupted()
        if self.lineage is None or self.lineage.parents_complete(self.lease):
            if self._waited_for_parents:
                self._log.info("parent shards complete; starting")
            self.state = ConsumerState.INITIALIZING
            return 0.0
        if not self._waited_for_parents:
            self._log.info("waiting for parent shards to reach SHARD_END", parents=sorted(self.lease.parent_shard_ids))
            self._waited_for_parents = True
        return self.settings.parent_poll_interval

    def _initializing(self) -> float | None:
        if self._init_call is None:
            init = InitializationInput(shard_id=self.shard_id, extended_sequence_number=self.lease.checkpoint,
                                       pending_checkpoint=self.lease.pending_checkpoint, stream=self.stream,
                                       log=self._log)
            self._init_call = ProcessorCall("initialize", lambda: self._invoke(self.processor.initialize, init))
        try:
            wait = attempt(self._init_call, self.calls, retries=self.settings.processor_retries,
                           backoff=self.settings.retry_backoff)
        except CallFailed as failed:
            self._init_call = None
            if failed.__cause__ is None:  # interrupted between attempts: not a failure to halt on
                return self._end_interrupted()
            return self._halt(f"processor initialize failed: {failed.__cause__!r:.300}", call_processor=True)
        if wait is not None:
            return wait
        self._init_call = None
        self._initialized = True
        try:
            position = self.lease.start_position(self.settings.initial_timestamp)
        except ValueError as exc:
            return self._halt(self.lease.unreadable_checkpoint(str(exc)), call_processor=True)
        self.feed.start(self.source.open_reader(self.shard_id, position))
        self._log.info("shard processing started", checkpoint=str(self.lease.checkpoint))
        self.state = ConsumerState.PROCESSING
        return 0.0

    def _processing(self) -> float | None:
        if self._lease_gone():
            return self._end("lease lost")
        return self._act(self.delivery.step())

    def _act(self, outcome: Outcome) -> float | None:
        """Do what a delivery step asks."""
        if isinstance(outcome, Wait):
            return outcome.seconds
        if isinstance(outcome, BatchDone):
            return self._after_batch(outcome.batch)
        if isinstance(outcome, End):
            return self._end(outcome.why, call_processor=outcome.call_processor)
        if isinstance(outcome, Interrupted):
            return self._end_interrupted(call_processor=outcome.call_processor)
        if isinstance(outcome, Halt):
            return self._halt(outcome.reason, call_processor=outcome.call_processor)
        raise TypeError(f"not an outcome: {outcome!r}")

    def _after_batch(self, batch: Batch) -> float | None:
        if not batch.shard_end and not self.policy.apply(self.tracker, self._log):
            return self._end("lease lost")
        if batch.shard_end:
            self._children = batch.child_shards
            self.state = ConsumerState.SHARD_ENDING
            self.feed.stop()
            self.tracker.shard_ended()
            if self._children and self.lineage is not None:
                self.lineage.ensure_child_leases([(c.shard_id, c.parent_shard_ids) for c in self._children],
                                                 self.lease.lease_key)
        return 0.0

    def _shard_ending(self) -> float | None:
        if self._lease_gone():
            return self._end("lease lost")
        if self._end_backoff is not None and self._shutdown.is_set():
            return self._end("shutdown requested", call_processor=False)
        children = self._children
        try:
            self._invoke(self.processor.shard_ended, ShardEndedInput(self.shard_id, self.tracker.checkpointer,
                                                                     children))
        except CheckpointError as exc:
            self._log.warning("checkpoint at shard end refused", error=str(exc))
        except Exception:
            self._log.exception("processor shard_ended raised")
        if not self.policy.apply(self.tracker, self._log, final=True):  # SHARD_END, if the processor did not
            return self._end("lease lost")
        if not self.tracker.last_checkpoint.is_shard_end:
            self._log.error(str(ShardEndNotCheckpointedError.at(self.shard_id, [c.shard_id for c in children])))
            if self._end_backoff is None:
                self._end_backoff = Backoff(base=1.0, cap=30.0, floor=0.5)
            return self._end_backoff.next_delay()
        if children and self.lineage is not None:
            try:
                self.lineage.record_children(self.lease, [c.shard_id for c in children])
            except CheckpointError:
                pass
        return self._end("shard end")

    def _halted(self) -> float | None:
        if self.interrupted():
            return self._end_interrupted(call_processor=self._halt_calls_processor)
        if self._halt_deadline is None:
            return 1.0
        now = self.clock.monotonic()
        if now >= self._halt_deadline:
            limit = self.settings.release_halted_after or 0.0
            self._log.warning("releasing the halted shard's lease so that another worker can take it",
                              halted_for=limit, reason=self.halt_reason)
            self.leases.hold_off(self.lease.lease_key, limit)
            self._shutdown.set()
            return self._end_interrupted(call_processor=self._halt_calls_processor)
        return max(0.01, min(1.0, self._halt_deadline - now))

    def _halt(self, reason: str, *, call_processor: bool = False) -> float:
        """Stop processing the shard, loudly: the reason is logged, kept for health checks and
        written into the lease row. The lease is kept (no other worker loops on the same poison
        batch) until the worker stops, the lease is lost, or ``release_halted_after`` passes.
        The processor's ending call is made only where asked: its usual checkpoint in
        ``shutdown_requested`` could cover the records that failed."""
        self.state = ConsumerState.HALTED
        self.halt_reason = reason
        self._halt_calls_processor = call_processor
        self.feed.stop()
        self._log.error("shard halted", reason=reason, checkpoint=str(self.tracker.last_checkpoint))
        self.leases.mark_halted(self.lease, reason)
        limit = self.settings.release_halted_after
        self._halt_deadline = None if limit is None else self.clock.monotonic() + limit
        return 0.0

    # -- the one end path ------------------------------------------------------------------------

    def _end_interrupted(self, call_processor: bool = True) -> float | None:
        return self._end("lease lost" if self._lease_gone() else "shutdown requested", call_processor=call_processor)

    def _end(self, why: str, *, call_processor: bool = True) -> float | None:
        """End the shard (DONE); returns None, what step() returns once done."""
        self.state = {"lease lost": ConsumerState.LEASE_LOST,
                      "shutdown requested": ConsumerState.SHUTTING_DOWN}.get(why, self.state)
        self.feed.stop()
        # per-key mode: the ending call never overlaps a process_record; a graceful stop first
        # lets every record already taken complete, so the next owner gets none of them again
        self.delivery.stop(drain=why == "shutdown requested" and self.halt_reason is None)
        call = call_processor and self._initialized
        if why == "lease lost":
            if call:
                try:
                    self._invoke(self.processor.lease_lost, LeaseLostInput(self.shard_id))
                except Exception:
                    self._log.exception("processor lease_lost raised")
            if not self._lost.is_set():  # we saw the expiry first: the coordinator counts and logs it
                self.leases.forget(self.lease,
                                   "not renewed within 80 % of the failover time (seen by the shard consumer)")
            self._log.info("shard processing ended: lease lost", records=self.progress.records)
        elif why == "shutdown requested":
            if call:
                try:
                    self._invoke(self.processor.shutdown_requested,
                                 ShutdownRequestedInput(self.shard_id, self.tracker.checkpointer))
                except CheckpointError as exc:
                    self._log.warning("checkpoint at shutdown refused", error=str(exc))
                except Exception:
                    self._log.exception("processor shutdown_requested raised")
            if self._initialized and self.halt_reason is None:  # a halted shard's records are not all done
                self.policy.apply(self.tracker, self._log, final=True)
            released = self.leases.release(self.lease)
            self._log.info("shard processing ended: shutdown requested", records=self.progress.records,
                           checkpoint=str(self.tracker.last_checkpoint), released=released)
        else:  # shard end, or already at SHARD_END
            self.leases.release(self.lease)
            self._log.info("shard processing ended: shard end", records=self.progress.records)
        self.end_reason = why
        self.state = ConsumerState.DONE
        return None

    # -- helpers ---------------------------------------------------------------------------------

    def _invoke(self, method: Callable[..., object], argument: object) -> object:
        """Call a processor method; an ``async def`` one is awaited on the worker's loop."""
        return self.settings.event_loop.run(method(argument))

    def _lease_gone(self) -> bool:
        return self._lost.is_set() or not self.leases.is_held(self.lease)

    def interrupted(self) -> bool:
        """Shutdown requested or the lease gone: a retried call does not try again."""
        return self._shutdown.is_set() or self._lease_gone()

    def _count_failure(self) -> None:
        self.progress.failures += 1
        self.meters.failed()
        if self.metrics is not None:
            self.metrics.processor_failures.labels(self.label).inc()
