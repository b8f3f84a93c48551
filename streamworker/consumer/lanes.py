"""Per-key parallelism inside one shard (``parallelism = N``, processors with ``process_record``).

Records of one key (Kinesis: the partition key; Kafka: the message key) run strictly in order,
one at a time; records of different keys run at once, on up to N lanes. What can be checkpointed
is the **low watermark**: the longest prefix of the shard's records, in sequence order, whose
every record has completed; nothing after an unfinished record is ever checkpointed, so a crash
redelivers from the first unfinished record on (records after it that did complete run again:
the duplicates window of a hard failure).

Contract: ``submit`` and the accessors are called from the shard's thread; lanes run on the
executor's threads (``async def`` process_record: awaited on the worker's event loop from them,
so up to N coroutines interleave there); a lane's completion calls ``wake`` so the shard thread
steps at once. A record that raises is retried on its lane with backoff (``retries`` times); one
that keeps failing stops its key (later records of that key wait behind it) and is reported by
``failure()`` for the error policy, which either resolves it (dead-lettered: its key goes on) or
halts the shard.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamworker.backoff import Backoff
from streamworker.records import Record

if TYPE_CHECKING:
    from streamworker.consumer.progress import ConsumerSettings


@dataclass(eq=False)
class Entry:
    """One record on its way through a lane."""

    record: Record
    done: bool = False
    error: BaseException | None = None
    attempts: int = 0
    seconds: float = 0.0  # the successful attempt's wall time


class InlineExecutor(concurrent.futures.Executor):
    """Runs tasks on the caller's thread, one after another (a task submitted while one runs
    waits its turn, so a key's records do not nest): the test harness's lanes, with the same
    ordering and watermark logic as the threads', deterministic."""

    def __init__(self) -> None:
        self._pending: deque[tuple[concurrent.futures.Future[Any], Callable[[], Any]]] = deque()
        self._busy = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._pending.append((future, lambda: fn(*args, **kwargs)))
        if not self._busy:
            self._busy = True
            try:
                while self._pending:
                    f, task = self._pending.popleft()
                    try:
                        f.set_result(task())
                    except BaseException as exc:  # noqa: BLE001 - handed to the future, as a pool does
                        f.set_exception(exc)
            finally:
                self._busy = False
        return future


class _NotStarted(Exception):
    """A queued record found the lanes stopped (or the lease possibly gone) when its turn came."""


@dataclass(frozen=True)
class LaneCall:
    """A ``process_record`` attempt running on a lane: for hang reports."""

    key: str
    sequence_number: str
    started: float  # on the dispatcher's ``monotonic``
    thread_ident: int


@dataclass(eq=False)
class KeyedDispatcher:
    """One shard's lanes. ``call(record)`` runs the processor's ``process_record`` (awaiting it
    if it is a coroutine) and raises what it raises."""

    call: Callable[[Record], object]
    parallelism: int
    retries: int = 3
    backoff_base: float = 0.5
    wake: Callable[[], None] = lambda: None
    #: Asked before each record starts: False once the lease may be gone (a worker that was
    #: frozen must not go on through its queued records after it wakes).
    may_start: Callable[[], bool] = lambda: True
    #: Told of every failed attempt (on the lane's thread): metrics and the log.
    on_error: Callable[[Entry, BaseException], None] = lambda entry, exc: None
    executor: concurrent.futures.Executor | None = None
    #: The clock hang reports measure lane calls with (the consumer's).
    monotonic: Callable[[], float] = time.monotonic
    _order: deque[Entry] = field(default_factory=deque)
    _calls: dict[str, LaneCall] = field(default_factory=dict)  # key -> its attempt running now
    _queues: dict[str, deque[Entry]] = field(default_factory=dict)
    _running: set[str] = field(default_factory=set)
    _blocked: dict[str, Entry] = field(default_factory=dict)  # key -> its record that keeps failing
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.executor is None:
            self.executor = concurrent.futures.ThreadPoolExecutor(self.parallelism, thread_name_prefix="lane")

    # -- the shard thread ------------------------------------------------------------------------

    def submit(self, records: Iterable[Record]) -> None:
        """Accept records (in the shard's order) and start every idle key among them."""
        start: list[str] = []
        with self._lock:
            for r in records:
                e = Entry(r)
                self._order.append(e)
                key = r.partition_key
                self._queues.setdefault(key, deque()).append(e)
                if key not in self._running and key not in self._blocked and key not in start:
                    start.append(key)
            for key in start:
                self._start(key)

    def completed(self) -> list[Entry]:
        """The records that joined the low watermark since the last call, in order."""
        out: list[Entry] = []
        with self._lock:
            while self._order and self._order[0].done:
                out.append(self._order.popleft())
        return out

    @property
    def outstanding(self) -> int:
        """Records accepted and not yet below the watermark (backpressure counts these)."""
        with self._lock:
            return len(self._order)

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def lane_calls(self) -> list[LaneCall]:
        """The ``process_record`` attempts running now, one per busy lane."""
        with self._lock:
            return list(self._calls.values())

    def failure(self) -> Entry | None:
        """The earliest record that used up its retries and waits for the error policy."""
        with self._lock:
            return min(self._blocked.values(), key=self._order.index) if self._blocked else None

    def resolve(self, entry: Entry) -> None:
        """The error policy took care of ``entry`` (dead-lettered it): it counts as completed and
        its key goes on."""
        key = entry.record.partition_key
        with self._lock:
            entry.done = True
            self._blocked.pop(key, None)
            if not self._stopped.is_set() and self._queues.get(key):
                self._start(key)

    def stop(self) -> None:
        """Start no more records; a retry waiting for its backoff gives up."""
        self._stopped.set()
        with self._lock:
            self._lock.notify_all()

    def wait_drained(self, timeout: float) -> bool:
        """Wait until every accepted record completed (or one keeps failing, or the lanes stopped
        themselves because the lease may be gone); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: bool(self._blocked) or all(e.done for e in self._order)
                                       or (self._stopped.is_set() and not self._running), timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no lane runs (after ``stop``); False if ``timeout`` passed first."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._running, timeout)

    def close(self) -> None:
        self.stop()
        assert self.executor is not None
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- lanes -----------------------------------------------------------------------------------

    def _start(self, key: str) -> None:  # with the lock held
        if not self.may_start():
            self._stopped.set()
            return
        entry = self._queues[key].popleft()
        if not self._queues[key]:
            del self._queues[key]
        self._running.add(key)
        assert self.executor is not None
        future = self.executor.submit(self._run, entry)
        future.add_done_callback(functools.partial(self._finished, entry))

    def _run(self, entry: Entry) -> None:
        # a record waits in the executor's queue while more keys are ready than there are lanes:
        # ask again when it really starts, or a worker whose lease lapsed meanwhile would go on
        # through the queue while the next owner processes the shard
        if self._stopped.is_set() or not self.may_start():
            self._stopped.set()
            raise _NotStarted
        backoff = Backoff(base=self.backoff_base, cap=30.0)
        key = entry.record.partition_key
        while True:
            entry.attempts += 1
            started = time.perf_counter()
            with self._lock:
                self._calls[key] = LaneCall(key, entry.record.sequence_number, self.monotonic(),
                                            threading.get_ident())
            try:
                self.call(entry.record)
                entry.seconds = time.perf_counter() - started
                return
            except Exception as exc:
                entry.error = exc
                self.on_error(entry, exc)
                if entry.attempts > self.retries or self._stopped.is_set():
                    raise
            finally:
                with self._lock:
                    self._calls.pop(key, None)
            with self._lock:  # the backoff, interrupted by stop()
                if self._lock.wait_for(self._stopped.is_set, backoff.next_delay()):
                    raise entry.error

    def _finished(self, entry: Entry, future: concurrent.futures.Future[None]) -> None:
        key = entry.record.partition_key
        with self._lock:
            self._running.discard(key)
            error = future.exception()
            if error is None:
                entry.done, entry.error = True, None
                if not self._stopped.is_set() and self._queues.get(key):
                    self._start(key)
            elif not isinstance(error, _NotStarted) and not self._stopped.is_set():
                self._blocked[key] = entry  # its key waits for the error policy
            self._lock.notify_all()
        self.wake()


#: Per-key mode checkpoints the watermark itself this often unless checkpoint_interval or
#: checkpoint_every say otherwise (process_record is given no checkpointer).
KEYED_CHECKPOINT_INTERVAL = 1.0


def is_per_record(processor: object) -> bool:
    """Whether ``processor`` (an instance or its class) takes its records one at a time: a
    ``PerRecordProcessor``. A ``RecordProcessor`` that defines ``process_record`` (how the mode
    was chosen before there was a base class for it) still is, with a ``FutureWarning`` (shown once per class)."""
    from streamworker.processor import PerRecordProcessor

    cls = processor if isinstance(processor, type) else type(processor)
    if issubclass(cls, PerRecordProcessor):
        return True
    if not callable(getattr(cls, "process_record", None)):
        return False
    warnings.warn(f"{cls.__name__} is a RecordProcessor with process_record: it runs per record; subclass "
                  "PerRecordProcessor instead (choosing the mode by which method is overridden is deprecated)",
                  FutureWarning, stacklevel=1)
    return True


def lanes_for(processor: Any, settings: ConsumerSettings, wake: Callable[[], None],
              may_start: Callable[[], bool],
              on_error: Callable[[Entry, BaseException], None],
              monotonic: Callable[[], float] = time.monotonic) -> KeyedDispatcher:
    """The lanes of a processor that processes records one at a time (``process_record``)."""

    def call(record: Record) -> object:
        return settings.event_loop.run(processor.process_record(record))

    return KeyedDispatcher(call, settings.parallelism, retries=settings.processor_retries,
                           backoff_base=0.0 if settings.inline_lanes else settings.retry_backoff, wake=wake,
                           may_start=may_start, on_error=on_error,
                           executor=InlineExecutor() if settings.inline_lanes else None, monotonic=monotonic)
