"""The runner of one shard: a thread that steps the shard's lifecycle (``lifecycle.py``). Kinesis
shards also get a prefetch thread that reads ahead into a bounded queue (``max_pending_batches``),
so a slow processor slows only its own shard's reads; Kafka shards read their partition buffer
on the shard thread itself (``DirectFeed``)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from streamworker.checkpoint.checkpointer import Checkpointer
from streamworker.clock import Clock, SystemClock
from streamworker.consumer.lanes import LaneCall
from streamworker.consumer.lifecycle import ShardLifecycle
from streamworker.consumer.progress import BatchFeed, ConsumerSettings, ConsumerState, ShardProgress
from streamworker.leases.base import LeaseAccess, ShardLineage
from streamworker.leases.lease import Lease, stream_of
from streamworker.processor import RecordProcessor
from streamworker.sources.base import Batch, ShardReader, Source, StopReading

if TYPE_CHECKING:
    from streamworker.consumer.meters import WorkerMetrics

__all__ = ["ConsumerSettings", "ConsumerState", "ShardConsumer", "ShardProgress"]


class _Wake:
    """Put in a feed's queue to cut a waiting ``next`` short."""


class PrefetchFeed:
    """Reads ahead on a thread of its own; ``next`` waits up to ``IDLE_WAIT`` for a batch, and
    ``wake`` cuts that short."""

    #: An idle shard's thread wakes this often (interval checkpoints, lease checks); it woke
    #: every 0.1 s, which at a thousand idle shards was ten thousand wake-ups a second.
    IDLE_WAIT = 1.0

    def __init__(self, shard_id: str, depth: int) -> None:
        self._shard_id = shard_id
        self._queue: queue.Queue[Batch | BaseException | _Wake] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._reader: ShardReader | None = None
        self._lock = threading.Lock()

    def start(self, reader: ShardReader) -> None:
        with self._lock:
            if self._stop.is_set():
                reader.close()
                return
            self._reader = reader
        threading.Thread(target=self._run, args=(reader,), name=f"read-{self._shard_id}", daemon=True).start()

    def next(self) -> Batch | BaseException | None:
        try:
            item = self._queue.get(timeout=self.IDLE_WAIT)
        except queue.Empty:
            return None
        return None if isinstance(item, _Wake) else item

    def stop(self) -> None:
        """Stop reading: the reader is closed here, on the caller's thread, so a read blocked
        in it ends (every reader's ``close`` only sets a flag or closes a socket). It was closed
        by a third thread per shard that waited for the stop: a thousand threads at a thousand
        shards for one call each."""
        with self._lock:
            already, reader = self._stop.is_set(), self._reader
            self._stop.set()
        if reader is not None and not already:
            reader.close()

    def wake(self) -> None:
        try:
            self._queue.put_nowait(_Wake())
        except queue.Full:
            pass  # batches are waiting: next() returns at once

    def _run(self, rd: ShardReader) -> None:
        try:
            while not self._stop.is_set():
                batch = rd.read()
                while not self._stop.is_set():
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


@runtime_checkable
class _Wakeable(Protocol):
    def wake(self) -> None: ...


class DirectFeed:
    """Reads on the shard's own thread, for readers that read memory another thread fills (Kafka)."""

    def __init__(self) -> None:
        self._reader: ShardReader | None = None
        self._stopped = threading.Event()

    def start(self, reader: ShardReader) -> None:
        self._reader = reader

    def next(self) -> Batch | BaseException | None:
        if self._reader is None or self._stopped.is_set():
            return None
        try:
            return self._reader.read()
        except StopReading:
            return None
        except Exception as exc:  # a permanent read error: the lifecycle halts the shard
            return exc

    def stop(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            if self._reader is not None:
                self._reader.close()

    def wake(self) -> None:
        if isinstance(self._reader, _Wakeable):
            self._reader.wake()


class ShardConsumer:
    """Drives one RecordProcessor over one leased shard, on a thread of its own."""

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
        lineage: ShardLineage | None = None,
        feed: BatchFeed | None = None,
        on_source_denied: Callable[[str], None] | None = None,
    ) -> None:
        self.lease = lease
        self.shard_id = lease.shard_id
        #: The shard's stream: a multi-stream lease key names it, else the worker's one.
        self.stream = stream_of(lease.lease_key) or settings.stream
        #: The shard in metrics: shard ids repeat across the streams of a multi-stream worker.
        self.label = f"{self.stream}/{self.shard_id}" if stream_of(lease.lease_key) else self.shard_id
        self.processor = processor
        self.clock = clock or SystemClock()
        if feed is None:
            feed = PrefetchFeed(self.shard_id, settings.max_pending_batches) if settings.read_ahead else DirectFeed()
        self._feed = feed
        self.lifecycle = ShardLifecycle(lease, processor, source, leases, settings, feed, self.clock, label=self.label,
                                        stream=self.stream, lineage=lineage, metrics=metrics,
                                        on_source_denied=on_source_denied)
        self.hang_reported: tuple[str, float] | None = None
        self.lane_hangs_reported: set[tuple[str, float]] = set()  # (key, start) of lane calls
        self._on_done = on_done
        self._wake = threading.Event()
        self.lifecycle.wake_runner = self._wake.set  # a lane completed (per-key mode)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"shard-{self.shard_id}", daemon=True)

    # -- what the scheduler and ops read ------------------------------------------------------

    @property
    def state(self) -> ConsumerState:
        return self.lifecycle.state

    @property
    def progress(self) -> ShardProgress:
        return self.lifecycle.progress

    @property
    def checkpointer(self) -> Checkpointer:
        return self.lifecycle.tracker.checkpointer

    @property
    def halt_reason(self) -> str | None:
        return self.lifecycle.halt_reason

    @property
    def end_reason(self) -> str | None:
        return self.lifecycle.end_reason

    @property
    def current_call(self) -> tuple[str, float] | None:
        return self.lifecycle.current_call

    def lane_calls(self) -> list[LaneCall]:
        """Per-key mode: the ``process_record`` attempts running on lanes now."""
        return self.lifecycle.lane_calls()

    @property
    def thread_ident(self) -> int | None:
        return self._thread.ident

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # -- control from the scheduler ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def request_shutdown(self) -> None:
        self.lifecycle.request_shutdown()
        self._wake.set()
        self._feed.wake()

    def notify_lease_lost(self) -> None:
        self.lifecycle.notify_lease_lost()
        self._wake.set()
        self._feed.wake()

    def join(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                wait = self.lifecycle.step()
                if wait is None:
                    return
                if wait > 0:
                    # cleared before the wait: an interrupt sets its flag first, then wakes us
                    self._wake.clear()
                    if self.lifecycle.state != ConsumerState.DONE:
                        self.clock.sleep(wait, self._wake)
        finally:
            self.lifecycle.close()
            self._done.set()
            if self._on_done is not None:
                self._on_done(self)
