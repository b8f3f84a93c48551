"""The scheduler alone, driven with a fake coordinator and fake consumers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from streamworker.coordinator.scheduler import Scheduler
from streamworker.leases.memory import MemoryLeases


def wait_for(cond: Any, timeout: Any=5.0, what: Any="condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class FakeConsumer:
    def __init__(self, lease: Any, on_done: Any, log: Any, linger: Any=0.0) -> None:
        self.lease, self.shard_id, self._on_done, self.log, self.linger = lease, lease.shard_id, on_done, log, linger
        self._done = threading.Event()
        self.started = False

    @property
    def done(self) -> Any:
        return self._done.is_set()

    def start(self) -> None:
        self.started = True
        self.log.append(("start", self.shard_id, id(self)))

    def _end(self, how: Any) -> None:
        self.log.append((how, self.shard_id, id(self)))

        def finish() -> None:
            time.sleep(self.linger)  # a processor's last call still running
            self._done.set()
            self._on_done(self)
        threading.Thread(target=finish, daemon=True).start()

    def request_shutdown(self) -> None:
        self._end("shutdown")

    def notify_lease_lost(self) -> None:
        self._end("lost")

    def join(self, timeout: Any | None = None) -> bool:
        return self._done.wait(timeout)


def make(linger: float = 0.0, sync: Callable[[], None] | None = None, sync_interval: float = 60.0, refuse: Collection[str] = ()) -> tuple[Scheduler[Any], MemoryLeases, list[Any], list[bool]]:
    coordinator = MemoryLeases()
    log: list[Any] = []
    stopped: list[bool] = []

    def factory(lease: Any, on_done: Any) -> Any:
        if lease.lease_key in refuse:
            coordinator.release(lease)
            return None
        return FakeConsumer(lease, on_done, log, linger)

    s = Scheduler(coordinator, factory, shutdown_timeout=5.0, sync=sync, sync_interval=sync_interval,
                  on_stopped=lambda: stopped.append(True))
    s.start()
    return s, coordinator, log, stopped


def test_lease_events_start_end_and_forget_consumers() -> None:
    s, coordinator, log, _ = make()
    for key in ("a", "b", "c"):
        s.lease_acquired(coordinator.acquire(key))
    wait_for(lambda: len(s.consumers()) == 3, what="three consumers")
    assert all(c.started for c in s.consumers())
    s.lease_lost("a")
    s.handoff_requested("b")
    wait_for(lambda: [c.shard_id for c in s.all_consumers()] == ["c"], what="a and b gone")
    assert ("lost", "a") in [(h, k) for h, k, _ in log]
    assert ("shutdown", "b") in [(h, k) for h, k, _ in log]
    s.lease_lost("no-such-lease")  # an event for a shard without a consumer is ignored
    s.request_shutdown()
    assert s.wait(5)


def test_a_retaken_lease_waits_for_its_previous_consumer_to_end() -> None:
    s, coordinator, log, _ = make(linger=0.3)
    s.lease_acquired(coordinator.acquire("a"))
    wait_for(lambda: len(s.consumers()) == 1)
    first = s.consumer("a")
    assert first is not None
    s.lease_acquired(coordinator.acquire("a"))  # lost and re-taken before the old consumer noticed
    wait_for(lambda: s.consumer("a") is not first, what="the new consumer")
    events = [(h, ident) for h, k, ident in log if k == "a"]
    # the old one was told it lost the lease and had ended before the new one started
    assert events[:3] == [("start", id(first)), ("lost", id(first)), ("start", id(s.consumer("a")))]
    assert first.done
    s.request_shutdown()
    assert s.wait(5)


def test_graceful_stop_ends_consumers_releases_everything_then_stops_services() -> None:
    s, coordinator, log, stopped = make()
    for key in ("a", "b"):
        s.lease_acquired(coordinator.acquire(key))
    wait_for(lambda: len(s.consumers()) == 2)
    coordinator.acquire("late")  # acquired by the coordinator while stopping, no consumer yet
    s.request_shutdown()
    assert s.wait(5)
    assert {k for h, k, _ in log if h == "shutdown"} == {"a", "b"}
    assert "late" in coordinator.released
    assert coordinator.calls[:1] == ["stop_taking"] and coordinator.calls[-1] == "stop"
    assert stopped == [True]
    assert s.failure is None and s.shutting_down.is_set()


def test_a_graceful_stop_never_releases_the_lease_of_a_processor_still_running() -> None:
    """A process_records that never returns: the stop waits shutdown_timeout, then releases the
    other leases but not that one (another worker could take it at once while the call runs);
    it expires instead, its renewals stopped."""
    coordinator = MemoryLeases()
    log: list[Any] = []
    hung = threading.Event()

    def factory(lease: Any, on_done: Any) -> Any:
        c = FakeConsumer(lease, on_done, log)
        if lease.lease_key == "stuck":
            c.request_shutdown = lambda: log.append(("shutdown", "stuck", id(c)))  # type: ignore[method-assign]
            c.join = lambda timeout=None: hung.wait(timeout)  # type: ignore[method-assign]
        return c

    s: Scheduler[Any] = Scheduler(coordinator, factory, shutdown_timeout=0.3)
    s.start()
    for key in ("ok", "stuck"):
        s.lease_acquired(coordinator.acquire(key))
    wait_for(lambda: len(s.consumers()) == 2)
    s.request_shutdown()
    assert s.wait(5)
    assert coordinator.released == ["ok"]
    assert coordinator.calls[-1] == "stop"  # renewals stop: the stuck lease expires
    hung.set()


def test_acquired_while_shutting_down_is_handed_back() -> None:
    s, coordinator, log, _ = make(linger=0.5)
    s.lease_acquired(coordinator.acquire("a"))
    wait_for(lambda: len(s.consumers()) == 1)
    s.request_shutdown()
    s.lease_acquired(coordinator.acquire("b"))  # queued behind the shutdown: never started
    assert s.wait(5)
    assert not [k for h, k, _ in log if h == "start" and k == "b"]


def test_fatal_stop_ends_every_shard_as_lost_and_keeps_the_reason() -> None:
    s, coordinator, log, stopped = make()
    s.lease_acquired(coordinator.acquire("a"))
    wait_for(lambda: len(s.consumers()) == 1)
    s.coordinator_failed("lease table 'x' does not exist")
    assert s.wait(5)
    assert [h for h, k, _ in log if k == "a"] == ["start", "lost"]
    assert s.failure == "lease table 'x' does not exist"
    assert stopped == [True]


def test_a_factory_that_declines_registers_nothing() -> None:
    s, coordinator, log, _ = make(refuse={"gone"})
    s.lease_acquired(coordinator.acquire("gone"))
    s.lease_acquired(coordinator.acquire("ok"))
    wait_for(lambda: len(s.consumers()) == 1)
    assert s.consumer("gone") is None and coordinator.released == ["gone"]
    s.request_shutdown()
    assert s.wait(5)


def test_shard_sync_runs_on_its_interval_and_on_request_and_survives_failures() -> None:
    calls = []

    def sync() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("listing failed")

    s, *_ = make(sync=sync, sync_interval=0.2)
    wait_for(lambda: len(calls) >= 3, what="three syncs (the first failed)")
    s2, *_ = make(sync=lambda: calls.append(-1.0), sync_interval=3600)
    s2.request_sync()
    wait_for(lambda: -1.0 in calls, what="a requested sync")
    for x in (s, s2):
        x.request_shutdown()
        assert x.wait(5)


def test_a_lost_lease_reaches_its_consumer_while_the_scheduler_is_busy() -> None:
    """The coordinator's thread tells the consumer itself: a scheduler thread held up (here by a
    slow consumer start) must not leave a consumer believing it still holds a re-assigned key."""
    coordinator = MemoryLeases()
    log: list[Any] = []
    blocked, unblock = threading.Event(), threading.Event()

    def factory(lease: Any, on_done: Any) -> Any:
        if lease.lease_key == "slow":
            blocked.set()
            unblock.wait(5)
        return FakeConsumer(lease, on_done, log)

    s = Scheduler(coordinator, factory, shutdown_timeout=5.0)
    s.start()
    try:
        s.lease_acquired(coordinator.acquire("a"))
        wait_for(lambda: s.consumer("a") is not None, what="a's consumer")
        s.lease_acquired(coordinator.acquire("slow"))
        assert blocked.wait(5)
        s.lease_lost("a")  # the scheduler thread is still inside the slow start
        assert ("lost", "a") in [(h, k) for h, k, _ in log]
    finally:
        unblock.set()
        s.request_shutdown()
        assert s.wait(5)
