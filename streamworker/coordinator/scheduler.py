"""The scheduler: one thread that turns lease events into shard consumers and ends them.

Lease events arrive from the coordinator's threads (see ``coordinators/base.py``) and are queued,
so a coordinator never blocks on a processor; the scheduler thread starts a consumer per acquired
lease, tells consumers of lost or handed-off leases to end, runs the periodic shard sync and the
ops checks, and performs the one graceful and the one fatal stop. It knows nothing of sources or
configuration: the Worker gives it a consumer factory and callbacks, and unit tests give it fakes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import structlog

from streamworker.clock import Clock, SystemClock
from streamworker.leases.base import Coordinator
from streamworker.leases.lease import Lease

log = structlog.get_logger("streamworker.coordinator.scheduler")


class Consumer(Protocol):
    """What the scheduler needs of a shard consumer (``ShardConsumer``)."""

    shard_id: str

    @property
    def done(self) -> bool: ...

    def start(self) -> None: ...

    def request_shutdown(self) -> None: ...

    def notify_lease_lost(self) -> None: ...

    def join(self, timeout: float | None = None) -> bool: ...


C = TypeVar("C", bound=Consumer)


class Scheduler(Generic[C]):
    """Runs one consumer per held lease; implements ``LeaseListener`` for the coordinator."""

    def __init__(self, coordinator: Coordinator, make_consumer: Callable[[Lease, Callable[[C], None]], C | None], *, shutdown_timeout: float,
                 sync: Callable[[], None] | None = None, sync_interval: float = 60.0,
                 on_tick: Callable[[], None] | None = None, on_stopped: Callable[[], None] | None = None,
                 clock: Clock | None = None, name: str = "scheduler", log_context: dict[str, str] | None = None
                 ) -> None:
        self.coordinator = coordinator
        self._make_consumer = make_consumer
        self._shutdown_timeout = shutdown_timeout
        self._sync = sync
        self._sync_interval = sync_interval
        self._on_tick = on_tick
        self._on_stopped = on_stopped
        self._clock = clock or SystemClock()
        self._name = name
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        #: ``make_consumer(lease, on_done)`` builds the consumer of an acquired lease, or returns
        #: None after releasing the lease (no processor for it, its stream was removed).
        self._consumers: dict[str, C] = {}
        self._lock = threading.Lock()
        self.shutting_down = threading.Event()
        self.stopped = threading.Event()
        #: Why the worker stopped on its own (the lease table refused it or is gone), if it did.
        self.failure: str | None = None
        self._thread: threading.Thread | None = None
        self._log = log.bind(**(log_context or {}))

    # -- LeaseListener (any thread; only queues) ---------------------------------------------------

    def lease_acquired(self, lease: Lease) -> None:
        self._events.put(("acquired", lease))

    def lease_lost(self, lease_key: str) -> None:
        # The consumer is told at once, not when this thread gets to the event: a consumer about
        # to deliver a batch (a worker that stood still) must see the loss before the same
        # partition can be assigned here again, or it would take the new assignment for its own.
        c = self.consumer(lease_key)
        if c is not None:
            c.notify_lease_lost()
        self._events.put(("lost", lease_key))

    def handoff_requested(self, lease_key: str) -> None:
        self._events.put(("handoff", lease_key))

    def coordinator_failed(self, error: str) -> None:
        if self.failure is None:
            self.failure = error
        self._events.put(("fatal", error))

    def source_failed(self, error: str) -> None:
        """The source cannot be read any more (a permission was refused): end every shard as a
        graceful stop does (checkpoint, release) and stop with ``failure`` set."""
        if self.failure is None:
            self.failure = error
        self._events.put(("source_fatal", error))

    # -- control ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def request_shutdown(self) -> None:
        """Begin the graceful stop; returns at once."""
        if not self.shutting_down.is_set():
            self._log.info("graceful shutdown requested")
            self.shutting_down.set()
            self._events.put(("shutdown", None))

    def request_sync(self) -> None:
        self._events.put(("sync", None))

    def wait(self, timeout: float | None = None) -> bool:
        return self.stopped.wait(timeout)

    # -- consumers ---------------------------------------------------------------------------------

    def consumer(self, lease_key: str) -> C | None:
        with self._lock:
            return self._consumers.get(lease_key)

    def all_consumers(self) -> list[C]:
        """Every consumer still registered (a finished one until its done event is handled)."""
        with self._lock:
            return list(self._consumers.values())

    def consumers(self) -> list[C]:
        return [c for c in self.all_consumers() if not c.done]

    # -- the scheduler thread ------------------------------------------------------------------------

    def _run(self) -> None:
        next_sync = self._clock.monotonic() + self._sync_interval
        try:
            while True:
                timeout = max(0.05, min(0.5, next_sync - self._clock.monotonic()))
                try:
                    kind, payload = self._events.get(timeout=timeout)
                except queue.Empty:
                    kind, payload = "tick", None
                if self._on_tick is not None:
                    self._on_tick()
                if kind == "acquired":
                    self._start_consumer(payload)
                elif kind in ("lost", "handoff"):
                    c = self.consumer(payload)
                    if c is not None and kind == "lost":
                        c.notify_lease_lost()
                    elif c is not None:
                        c.request_shutdown()
                elif kind == "done":
                    with self._lock:
                        key = next((k for k, v in self._consumers.items() if v is payload), None)
                        if key is not None:
                            del self._consumers[key]
                elif kind == "shutdown":
                    self._graceful_stop()
                    return
                elif kind == "fatal":
                    self._fatal_stop(str(payload))
                    return
                elif kind == "source_fatal":
                    self._log.error("worker stopping: the source cannot be read", error=str(payload))
                    self.shutting_down.set()
                    self._graceful_stop()
                    return
                elif kind == "sync":
                    next_sync = self._clock.monotonic()
                if self._sync is not None and self._clock.monotonic() >= next_sync:
                    next_sync = self._clock.monotonic() + self._sync_interval
                    try:
                        self._sync()
                    except Exception as exc:
                        self._log.warning("shard sync failed; will retry", error=str(exc))
        finally:
            self.stopped.set()

    def _start_consumer(self, lease: Lease) -> None:
        if self.shutting_down.is_set():
            self.coordinator.release(lease)
            return
        old = self.consumer(lease.lease_key)
        if old is not None and not old.done:
            # A previous consumer of this shard (lease lost, then re-taken) must end first:
            # never two processors on one shard.
            old.notify_lease_lost()
            old.join(self._shutdown_timeout)
        consumer = self._make_consumer(lease, lambda c: self._events.put(("done", c)))
        if consumer is None:
            return
        with self._lock:
            self._consumers[lease.lease_key] = consumer
        consumer.start()

    def _graceful_stop(self) -> None:
        self.coordinator.stop_taking()
        self._end_consumers(lambda c: c.request_shutdown())
        # Anything acquired while stopping is handed straight back; but a lease whose processor
        # call is still running is not released: another worker could take it at once while the
        # call goes on (in an embedding program it does). It is left to expire instead (the
        # renewals stop now), and the call's checkpoints are refused from then on.
        running = {k for k, c in self._snapshot().items() if not c.done}
        for key in self.coordinator.held_keys():
            if key in running:
                self._log.warning("shard did not end in time; its lease is not released and expires after "
                                  "failover_time", shard_id=key)
                continue
            holding = self.coordinator.holding(key)
            if holding is not None:
                self.coordinator.release(holding)
        self._stop_services()
        self._log.info("worker stopped")

    def _snapshot(self) -> dict[str, C]:
        with self._lock:
            return dict(self._consumers)

    def _fatal_stop(self, error: str) -> None:
        """The lease table cannot be used: no lease can be renewed or checkpointed, so every
        shard ends as lost (its processor gets ``lease_lost``; records after its last checkpoint
        are delivered again after a restart) and the worker stops with ``failure`` set."""
        self.shutting_down.set()
        self._log.error("worker stopping: the lease table cannot be used", error=error)
        self._end_consumers(lambda c: c.notify_lease_lost())
        self._stop_services()

    def _end_consumers(self, end: Callable[[C], None]) -> None:
        """Tell every shard consumer to end, then wait for them within ``shutdown_timeout``."""
        consumers = self.all_consumers()
        for c in consumers:
            end(c)
        deadline = self._clock.monotonic() + self._shutdown_timeout
        for c in consumers:
            if not c.join(max(0.0, deadline - self._clock.monotonic())):
                self._log.warning("shard did not end within shutdown_timeout", shard_id=c.shard_id)

    def _stop_services(self) -> None:
        self.coordinator.stop()
        if self._on_stopped is not None:
            self._on_stopped()
