"""One shard's lifecycle: wait for parents, initialize, process in order, shut down.

States (explicit, KCL-style): WAITING_ON_PARENTS -> INITIALIZING -> PROCESSING -> one of
LEASE_LOST / SHUTTING_DOWN / SHARD_ENDING -> DONE; HALTED when the processor keeps failing.
A prefetch thread reads ahead into a bounded queue (``max_pending_batches``): a slow processor
slows only its own shard's reads.
"""

from __future__ import annotations

import enum
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import structlog

from .aio import EventLoopThread
from .backoff import Backoff
from .checkpointer import Checkpointer, CheckpointStore
from .clock import Clock, SystemClock
from .coordinators.lease import Lease, stream_of
from .errors import CheckpointError, LeaseLostError, ShardEndNotCheckpointedError
from .processor import (
    ChildShard,
    InitializationInput,
    LeaseLostInput,
    ProcessRecordsInput,
    RecordProcessor,
    ShardEndedInput,
    ShutdownRequestedInput,
)
from .records import ExtendedSequenceNumber, StartPosition
from .sources.base import Batch, ShardReader, Source, StopReading
from .sources.kinesis import InvalidStartPosition

if TYPE_CHECKING:
    from .dead_letter import DeadLetterSink
    from .metrics import WorkerMetrics

log = structlog.get_logger("streamworker.shard")


class ConsumerState(str, enum.Enum):
    WAITING_ON_PARENTS = "WAITING_ON_PARENTS"
    INITIALIZING = "INITIALIZING"
    PROCESSING = "PROCESSING"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    SHARD_ENDING = "SHARD_ENDING"
    LEASE_LOST = "LEASE_LOST"
    HALTED = "HALTED"
    DONE = "DONE"


class LeaseAccess(Protocol):
    """What a shard consumer needs from the coordinator."""

    def is_held(self, lease_key: str) -> bool: ...

    def parents_complete(self, lease: Lease) -> bool: ...

    def checkpoint(self, lease_key: str, checkpoint: ExtendedSequenceNumber,
                   pending: ExtendedSequenceNumber | None = None) -> None: ...

    def prepare_checkpoint(self, lease_key: str, pending: ExtendedSequenceNumber) -> None: ...

    def record_children(self, lease_key: str, child_ids: list[str]) -> None: ...

    def ensure_child_leases(self, children: list[tuple[str, tuple[str, ...]]], parent_key: str) -> None: ...

    def release(self, lease_key: str) -> bool: ...

    def forget(self, lease_key: str, reason: str = ...) -> None: ...

    def mark_halted(self, lease_key: str, reason: str | None) -> None: ...

    def hold_off(self, lease_key: str, seconds: float) -> None: ...


@dataclass(frozen=True)
class ConsumerSettings:
    max_pending_batches: int = 4
    processor_retries: int = 3
    retry_backoff: float = 0.5
    parent_poll_interval: float = 1.0
    call_process_records_even_for_empty_list: bool = False
    initial_timestamp: datetime | None = None
    stream: str = ""
    worker_id: str = ""
    dead_letter: DeadLetterSink | None = None
    #: Release a halted shard's lease after this many seconds (None: keep it until restarted).
    release_halted_after: float | None = None
    #: Runs ``async def`` processor methods; its thread starts on first use. The worker shares one.
    event_loop: EventLoopThread = field(default_factory=EventLoopThread)


@dataclass
class ShardProgress:
    """Live figures for status displays."""

    records: int = 0
    bytes: int = 0
    batches: int = 0
    last_sequence: str | None = None
    millis_behind_latest: int | None = None
    failures: int = 0


class _ProcessorFailed(Exception):
    pass


class _TimedStore:
    """Times checkpoint writes and counts their failures."""

    def __init__(self, inner: LeaseAccess, metrics: WorkerMetrics, label: str) -> None:
        self._inner, self._metrics, self._shard = inner, metrics, label

    def checkpoint(self, lease_key: str, checkpoint: ExtendedSequenceNumber,
                   pending: ExtendedSequenceNumber | None = None) -> None:
        started = time.perf_counter()
        try:
            self._inner.checkpoint(lease_key, checkpoint, pending)
        except CheckpointError as exc:
            self._metrics.checkpoint_failures.labels(self._shard, type(exc).__name__).inc()
            raise
        self._metrics.checkpoint_seconds.labels(self._shard).observe(time.perf_counter() - started)

    def prepare_checkpoint(self, lease_key: str, pending: ExtendedSequenceNumber) -> None:
        self._inner.prepare_checkpoint(lease_key, pending)


class ShardConsumer:
    """Drives one RecordProcessor over one leased shard."""

    def __init__(
        self,
        lease: Lease,
        processor: RecordProcessor,
        source: Source,
        leases: LeaseAccess,
        settings: ConsumerSettings,
        *,
        on_done: Callable[[ShardConsumer], None] | None = None,
        clock: Clock | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.lease = lease
        self.shard_id = lease.shard_id
        #: The shard's stream: a multi-stream lease key names it, else the worker's one.
        self.stream = stream_of(lease.lease_key) or settings.stream
        #: The shard in metrics: shard ids repeat across the streams of a multi-stream worker.
        self.label = f"{self.stream}/{self.shard_id}" if stream_of(lease.lease_key) else self.shard_id
        self.processor = processor
        self.source = source
        self.leases = leases
        self.settings = settings
        self.clock = clock or SystemClock()
        self.state = ConsumerState.WAITING_ON_PARENTS
        self.progress = ShardProgress()
        self.end_reason: str | None = None
        #: Why the shard halted (HALTED state), for health checks and the lease table.
        self.halt_reason: str | None = None
        #: (processor method, monotonic start) while a processor call runs: for hang reports.
        self.current_call: tuple[str, float] | None = None
        self.hang_reported: tuple[str, float] | None = None
        # The ending calls (lease_lost, shutdown_requested) go only to an initialized processor.
        self._initialized = False
        self._on_done = on_done
        self._lost = threading.Event()
        self._shutdown = threading.Event()
        self._wake = threading.Event()
        self._done = threading.Event()
        self._queue: queue.Queue[Batch | BaseException] = queue.Queue(maxsize=max(1, settings.max_pending_batches))
        self._reader_stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"shard-{self.shard_id}", daemon=True)
        self._log = log.bind(shard_id=self.shard_id, worker_id=settings.worker_id, stream=self.stream)
        self.metrics = metrics
        # Labelled once: a labels() lookup per batch is measurable at a million records a second.
        self._metric_children = None if metrics is None else (
            metrics.process_seconds.labels(self.label), metrics.records.labels(self.label),
            metrics.bytes.labels(self.label))
        store: CheckpointStore = leases if metrics is None else _TimedStore(leases, metrics, self.label)
        self.checkpointer = Checkpointer(store, lease.lease_key, self.shard_id, lease.checkpoint)

    # -- control from the scheduler ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def request_shutdown(self) -> None:
        self._shutdown.set()
        self._wake.set()

    def notify_lease_lost(self) -> None:
        self._lost.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # -- helpers -----------------------------------------------------------------------------

    def _invoke(self, method: Callable[..., object], argument: object) -> object:
        """Call a processor method; an ``async def`` one is awaited on the worker's loop."""
        return self.settings.event_loop.run(method(argument))

    def _lease_gone(self) -> bool:
        return self._lost.is_set() or not self.leases.is_held(self.lease.lease_key)

    def _interrupted(self) -> bool:
        return self._shutdown.is_set() or self._lease_gone()

    def _pause(self, seconds: float) -> None:
        self._wake.clear()
        if not self._interrupted():
            self.clock.sleep(seconds, self._wake)

    # -- the lifecycle -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.lease.is_finished:
                self._finish_released("already at SHARD_END")
                return
            if not self._wait_for_parents():
                self._end_interrupted()
                return
            self.state = ConsumerState.INITIALIZING
            if not self._initialize():
                self._end_interrupted()
                return
            self.state = ConsumerState.PROCESSING
            self._process_loop()
        except Exception as exc:
            self._log.exception("shard consumer failed unexpectedly")
            self._halt(f"unexpected error: {exc!r:.300}")
        finally:
            self._reader_stop.set()
            if self.state != ConsumerState.DONE:
                self.state = ConsumerState.DONE
            self._done.set()
            if self._on_done is not None:
                self._on_done(self)

    def _wait_for_parents(self) -> bool:
        waited = False
        while not self._interrupted():
            if self.leases.parents_complete(self.lease):
                if waited:
                    self._log.info("parent shards complete; starting")
                return True
            if not waited:
                self._log.info("waiting for parent shards to reach SHARD_END",
                               parents=sorted(self.lease.parent_shard_ids))
                waited = True
            self._pause(self.settings.parent_poll_interval)
        return False

    def _with_retries(self, what: str, call: Callable[[], object]) -> None:
        backoff: Backoff | None = None  # made on the first failure: seeding a Random is not free
        attempt = 0
        while True:
            try:
                self.current_call = (what, time.monotonic())
                try:
                    call()
                finally:
                    self.current_call = None
                return
            except LeaseLostError:
                raise
            except Exception as exc:  # incl. a checkpoint that failed for a transient reason
                attempt += 1
                self.progress.failures += 1
                if self.metrics is not None:
                    self.metrics.processor_failures.labels(self.label).inc()
                if attempt > self.settings.processor_retries:
                    self._log.error(f"processor {what} failed; shard halted with its checkpoint kept",
                                    attempts=attempt, error=repr(exc), exc_info=True)
                    raise _ProcessorFailed(what) from exc
                if backoff is None:
                    backoff = Backoff(base=self.settings.retry_backoff, cap=10.0, floor=self.settings.retry_backoff / 2)
                delay = backoff.next_delay()
                self._log.warning(f"processor {what} raised; retrying the same records",
                                  attempt=attempt, retry_in=round(delay, 2), error=repr(exc))
                self._pause(delay)
                if self._interrupted():
                    raise _ProcessorFailed(what) from exc

    def _initialize(self) -> bool:
        init = InitializationInput(
            shard_id=self.shard_id, extended_sequence_number=self.lease.checkpoint,
            pending_checkpoint=self.lease.pending_checkpoint, stream=self.stream,
        )
        try:
            self._with_retries("initialize", lambda: self._invoke(self.processor.initialize, init))
            self._initialized = True
        except _ProcessorFailed as failed:
            self._halt(f"processor initialize failed: {failed.__cause__!r:.300}", end=False)
            return False
        try:
            position = StartPosition.from_checkpoint(self.lease.checkpoint, self.settings.initial_timestamp)
        except ValueError as exc:
            self._halt(self._bad_checkpoint(str(exc)), end=False)
            return False
        reader = self.source.open_reader(self.shard_id, position)
        threading.Thread(target=self._prefetch, args=(reader,), name=f"read-{self.shard_id}", daemon=True).start()
        self._log.info("shard processing started", checkpoint=str(self.lease.checkpoint))
        return True

    def _prefetch(self, rd: ShardReader) -> None:
        def close_on_stop() -> None:
            self._reader_stop.wait()
            rd.close()

        threading.Thread(target=close_on_stop, daemon=True).start()
        try:
            while not self._reader_stop.is_set():
                batch = rd.read()
                while not self._reader_stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if batch.shard_end:
                    return
        except StopReading:
            return
        except BaseException as exc:  # hand permanent read errors to the consumer thread
            self._queue.put(exc)
        finally:
            self._wake.set()

    def _process_loop(self) -> None:
        while True:
            if self._lease_gone():
                self._end_lease_lost()
                return
            if self._shutdown.is_set():
                self._end_shutdown()
                return
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                if isinstance(item, InvalidStartPosition):
                    self._halt(self._bad_checkpoint(str(item)))
                else:
                    self._halt(f"reading the shard failed: {item!r:.300}")
                return
            if not self._deliver(item):
                return
            if item.shard_end:
                self._end_shard(item.child_shards)
                return

    def _deliver(self, batch: Batch) -> bool:
        self.progress.millis_behind_latest = batch.millis_behind_latest
        if not batch.records and not self.settings.call_process_records_even_for_empty_list:
            return True
        if self._lease_gone():
            self._end_lease_lost()
            return False
        previous = self.checkpointer.largest_permitted
        if batch.records:
            self.checkpointer._advance(batch.records[-1].extended_sequence_number)
        pri = ProcessRecordsInput(
            records=batch.records, checkpointer=self.checkpointer, shard_id=self.shard_id,
            millis_behind_latest=batch.millis_behind_latest, is_at_shard_end=batch.shard_end,
            child_shards=batch.child_shards,
        )
        started = time.perf_counter()
        try:
            self._with_retries("process_records", lambda: self._invoke(self.processor.process_records, pri))
        except LeaseLostError as exc:
            self._log.warning("checkpoint inside process_records refused", error=str(exc))
            self._end_lease_lost()
            return False
        except _ProcessorFailed as failed:
            if self._dead_letter(batch, failed.__cause__ or failed):
                return True
            self.checkpointer._largest_permitted = previous  # the failed batch is not done
            self._halt(f"process_records failed {self.settings.processor_retries + 1} times: "
                       f"{failed.__cause__!r:.300}")
            return False
        self.progress.batches += 1
        self.progress.records += len(batch.records)
        size = batch.size if batch.size is not None else sum(len(r.data) for r in batch.records)
        self.progress.bytes += size
        if self._metric_children is not None:
            seconds, records, nbytes = self._metric_children
            seconds.observe(time.perf_counter() - started)
            records.inc(len(batch.records))
            nbytes.inc(size)
        if batch.records:
            self.progress.last_sequence = batch.records[-1].sequence_number
        return True

    def _dead_letter(self, batch: Batch, error: BaseException) -> bool:
        """Write the failed batch to the dead-letter sink and checkpoint past it. False (halt)
        when there is no sink or it fails: records are never skipped silently."""
        sink = self.settings.dead_letter
        if sink is None or not batch.records:
            return False
        try:
            sink.write(batch.records, self.shard_id, error)
        except Exception as exc:
            self._log.error("dead-letter write failed; shard halted with its checkpoint kept",
                            sink=sink.describe(), error=repr(exc))
            return False
        try:
            self.checkpointer.checkpoint(batch.records[-1])
        except LeaseLostError:
            return False  # the halt path sees the lease is gone and ends the shard as lost
        except CheckpointError as exc:
            self._log.warning("checkpoint after dead-lettering failed; the records may be dead-lettered again",
                              error=str(exc))
        if self.metrics is not None:
            self.metrics.dead_lettered.labels(self.label).inc(len(batch.records))
        self._log.error("records dead-lettered after the processor kept failing", count=len(batch.records),
                        sink=sink.describe(), first=batch.records[0].sequence_number,
                        last=batch.records[-1].sequence_number, error=repr(error))
        self.progress.batches += 1
        return True

    @property
    def thread_ident(self) -> int | None:
        return self._thread.ident

    def _bad_checkpoint(self, detail: str) -> str:
        return (f"lease {self.lease.lease_key!r}: its checkpoint {str(self.lease.checkpoint)!r} cannot be read "
                f"from ({detail}). Fix the row: set checkpoint to TRIM_HORIZON, LATEST or a sequence number "
                f"of this shard (and checkpointSubSequenceNumber to 0), or delete it to restart the shard at "
                f"the initial position")

    def _halt(self, reason: str, *, call_processor: bool = False, end: bool = True) -> None:
        """Stop processing the shard, loudly: the reason is logged, kept for health checks and
        written into the lease row. The lease is kept (no other worker loops on the same poison
        batch) until the worker stops, the lease is lost, or ``release_halted_after`` passes.
        With ``end`` the shard's ending runs here; else the caller runs it. The processor is not
        called at the end by default: its usual checkpoint in ``shutdown_requested`` could cover
        the records that failed."""
        self.state = ConsumerState.HALTED
        self.halt_reason = reason
        self._log.error("shard halted", reason=reason, checkpoint=str(self.checkpointer.last_checkpoint))
        self.leases.mark_halted(self.lease.lease_key, reason)
        limit = self.settings.release_halted_after
        deadline = None if limit is None else self.clock.monotonic() + limit
        while not self._interrupted():
            if deadline is not None and self.clock.monotonic() >= deadline:
                self._log.warning("releasing the halted shard's lease so that another worker can take it",
                                  halted_for=limit, reason=reason)
                self.leases.hold_off(self.lease.lease_key, limit or 0.0)
                self._shutdown.set()
                break
            self._pause(1.0 if deadline is None else max(0.01, min(1.0, deadline - self.clock.monotonic())))
        if end:
            self._end_interrupted(call_processor=call_processor)

    # -- endings -------------------------------------------------------------------------------

    def _end_interrupted(self, call_processor: bool = True) -> None:
        if self._lease_gone():
            self._end_lease_lost(call_processor)
        else:
            self._end_shutdown(call_processor)

    def _end_lease_lost(self, call_processor: bool = True) -> None:
        self.state = ConsumerState.LEASE_LOST
        self._reader_stop.set()
        if call_processor and self._initialized:
            try:
                self._invoke(self.processor.lease_lost, LeaseLostInput(self.shard_id))
            except Exception:
                self._log.exception("processor lease_lost raised")
        if not self._lost.is_set():  # we saw the expiry first: the coordinator counts and logs it
            self.leases.forget(self.lease.lease_key,
                               "not renewed within 80 % of the failover time (seen by the shard consumer)")
        self.end_reason = "lease lost"
        self._log.info("shard processing ended: lease lost", records=self.progress.records)

    def _end_shutdown(self, call_processor: bool = True) -> None:
        self.state = ConsumerState.SHUTTING_DOWN
        self._reader_stop.set()
        if call_processor and self._initialized:
            try:
                self._invoke(self.processor.shutdown_requested, ShutdownRequestedInput(self.shard_id, self.checkpointer))
            except CheckpointError as exc:
                self._log.warning("checkpoint at shutdown refused", error=str(exc))
            except Exception:
                self._log.exception("processor shutdown_requested raised")
        released = self.leases.release(self.lease.lease_key)
        self.end_reason = "shutdown requested"
        self._log.info("shard processing ended: shutdown requested", records=self.progress.records,
                       checkpoint=str(self.checkpointer.last_checkpoint), released=released)

    def _end_shard(self, children: tuple[ChildShard, ...]) -> None:
        self.state = ConsumerState.SHARD_ENDING
        self._reader_stop.set()
        self.checkpointer._mark_shard_end()
        if children:
            self.leases.ensure_child_leases([(c.shard_id, c.parent_shard_ids) for c in children],
                                            self.lease.lease_key)
        backoff = Backoff(base=1.0, cap=30.0, floor=0.5)
        while True:
            if self._lease_gone():
                self._end_lease_lost()
                return
            try:
                self._invoke(self.processor.shard_ended, ShardEndedInput(self.shard_id, self.checkpointer, children))
            except CheckpointError as exc:
                self._log.warning("checkpoint at shard end refused", error=str(exc))
            except Exception:
                self._log.exception("processor shard_ended raised")
            if self.checkpointer.last_checkpoint.is_shard_end:
                break
            err = ShardEndNotCheckpointedError(
                f"shard {self.shard_id}: shard_ended returned without checkpointing SHARD_END; call "
                f"shard_ended_input.checkpointer.checkpoint() in shard_ended. Its child shards "
                f"{sorted(c.shard_id for c in children) or ''} cannot start until it does; retrying."
            )
            self._log.error(str(err))
            self._pause(backoff.next_delay())
            if self._shutdown.is_set():
                self._end_shutdown(call_processor=False)
                return
        if children:
            try:
                self.leases.record_children(self.lease.lease_key, [c.shard_id for c in children])
            except CheckpointError:
                pass
        self._finish_released("shard end")

    def _finish_released(self, why: str) -> None:
        self.leases.release(self.lease.lease_key)
        self.end_reason = why
        self._log.info("shard processing ended: shard end", records=self.progress.records)
